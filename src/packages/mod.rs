//! OS package databases (dpkg now; rpm and apk to come), read from the final
//! filesystem, and the runtime closure that decides which added packages a
//! function can do without: build tools go as whole units, with everything
//! only they needed, unless something the function really loads needs them.
//!
//! Sits between the filesystem index and the analysis: it reads files of the
//! final filesystem (captured small files, or the spooled layers) and knows
//! nothing of classes or strip rules; the analysis hands it its roots.

pub mod closure;
pub mod content;
pub mod dpkg;
pub mod elf;
pub mod seeds;

use serde::Serialize;

/// Which package manager's database an image carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Dpkg,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Dpkg => "dpkg",
        }
    }
}

/// One installed package, as its database records it.
#[derive(Clone, Debug, Default)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Paths it owns, relative, as the index names them (parents resolved
    /// through symlinks such as merged-/usr's `lib -> usr/lib`).
    pub files: Vec<String>,
    /// Dependencies that keep a package installed (dpkg: Pre-Depends, Depends,
    /// Recommends, as apt's autoremove counts them): groups of alternatives.
    pub depends: Vec<Vec<String>>,
    /// Virtual names it provides.
    pub provides: Vec<String>,
    /// Installed by request, not as a dependency (apt's extended_states).
    pub manual: bool,
    /// In the matched base image's database.
    pub in_base: bool,
    /// The database's own files about this package (dpkg: info/<pkg>.*).
    pub db_files: Vec<String>,
}

/// An image's package database.
#[derive(Clone, Debug)]
pub struct PackageDb {
    pub manager: Manager,
    pub packages: Vec<Package>,
    /// The status file (dpkg) and its raw text, edited when packages go.
    pub status_path: String,
    pub status_text: String,
    /// apt's auto-installed marks, when the image has them.
    pub extended_states: Option<(String, String)>,
}

impl PackageDb {
    pub fn added(&self) -> impl Iterator<Item = (usize, &Package)> {
        self.packages.iter().enumerate().filter(|(_, p)| !p.in_base)
    }
}
