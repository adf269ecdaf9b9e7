//! OS package databases (dpkg now; rpm and apk to come), read from the final
//! filesystem, and the runtime closure that decides which added packages a
//! function can do without: build tools go as whole units, with everything
//! only they needed, unless something the function really loads needs them.
//!
//! Sits between the filesystem index and the analysis: it reads files of the
//! final filesystem (captured small files, or the spooled layers) and knows
//! nothing of classes or strip rules; the analysis hands it its roots.

pub mod apk;
pub mod bdb;
pub mod closure;
pub mod content;
pub mod dpkg;
pub mod rpm;
pub mod seeds;

use serde::Serialize;

/// Which package manager's database an image carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Dpkg,
    Rpm,
    Apk,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Dpkg => "dpkg",
            Manager::Rpm => "rpm",
            Manager::Apk => "apk",
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
    /// Its row in the database (rpm: the header number).
    pub row: i64,
}

/// An image's package database.
#[derive(Clone, Debug)]
pub struct PackageDb {
    pub manager: Manager,
    pub packages: Vec<Package>,
    /// The main database file (dpkg: status, apk: installed) and its raw
    /// text, edited when packages go.
    pub status_path: String,
    pub status_text: String,
    /// What says which packages were asked for (apt's extended_states, apk's
    /// world), with its text.
    pub extended_states: Option<(String, String)>,
}

/// The image's package database, whichever manager wrote it.
pub fn read(
    reader: &content::ContentReader<'_>,
    base: &crate::fsindex::FsIndex,
) -> crate::Result<Option<PackageDb>> {
    if let Some(db) = dpkg::read(reader, base)? {
        return Ok(Some(db));
    }
    if let Some(db) = rpm::read(reader, base)? {
        return Ok(Some(db));
    }
    apk::read(reader, base)
}

/// Database files whose content the layer reader keeps.
pub fn wants_content(path: &str) -> bool {
    dpkg::wants_content(path) || rpm::wants_content(path) || apk::wants_content(path)
}

impl PackageDb {
    /// Why no package can be removed from this database, when coldpress
    /// cannot write it back (rpm's Berkeley DB): its packages all stay.
    pub fn read_only(&self) -> Option<&'static str> {
        (self.manager == Manager::Rpm && self.status_path == rpm::PACKAGES_BDB)
            .then_some(rpm::BDB_READ_ONLY)
    }

    pub fn added(&self) -> impl Iterator<Item = (usize, &Package)> {
        self.packages.iter().enumerate().filter(|(_, p)| !p.in_base)
    }
}
