//! The `build-packages` rule: OS packages added after the base that only served
//! the build go as whole units (with what only they needed, as `apt-get
//! autoremove` would decide), unless the runtime closure holds them. The
//! package database is edited to match, so scanners see what is really there.

use std::collections::{BTreeSet, HashMap, HashSet};

use globset::GlobSet;
use serde::Serialize;

use super::classify::{Class, Classification};
use crate::error::Result;
use crate::fsindex::FsIndex;
use crate::layer::entry::{FileType, basename, parent};
use crate::packages::closure::{ClosureInput, Decision, decide};
use crate::packages::content::ContentReader;
use crate::packages::{Manager, PackageDb, apk, dpkg, rpm};

pub const RULE: (&str, &str) = (
    "build-packages",
    "OS packages that only served the build (and what only they needed); nothing the function loads needs them",
);

#[derive(Serialize, Clone, Debug)]
pub struct PackageRow {
    pub name: String,
    pub version: String,
    pub files: u64,
    pub bytes: u64,
    pub reason: String,
}

/// The OS packages section of the report.
#[derive(Serialize, Clone, Debug, Default)]
pub struct OsPackages {
    pub manager: String,
    /// Installed packages in the image (the vulnerability surface).
    pub before: usize,
    /// Installed packages after the removals.
    pub after: usize,
    /// Packages the matched base does not have.
    pub added: usize,
    pub removed: Vec<PackageRow>,
    /// Added packages that stay, with why.
    pub kept: Vec<PackageRow>,
    /// When nothing was decided: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
}

/// A database file rewritten in the output.
#[derive(Serialize, Clone, Debug)]
pub struct Edited {
    pub path: String,
    pub why: String,
    #[serde(skip)]
    pub content: Vec<u8>,
}

pub const CONTENTS_UNKNOWN: &str =
    "the layers' contents were not kept, so what the function loads is unknown";

impl PackagePlan {
    /// Nothing was decided because the added layers' contents were not on disk
    /// (their listings came from the cache): reading them again decides.
    pub fn needs_contents(&self) -> bool {
        self.section.as_ref().and_then(|s| s.undecided.as_deref()) == Some(CONTENTS_UNKNOWN)
    }
}

/// The same database, nothing decided: what `plan` would have said had the
/// contents been missing from the start.
pub fn undecided(p: PackagePlan) -> PackagePlan {
    let section = p.section.map(|mut s| {
        s.after = s.before;
        s.removed.clear();
        s.kept.clear();
        s.undecided = Some(CONTENTS_UNKNOWN.into());
        s
    });
    PackagePlan {
        section,
        db: p.db,
        ..PackagePlan::default()
    }
}

#[derive(Default)]
pub struct PackagePlan {
    pub section: Option<OsPackages>,
    /// Paths the rule removes, by the package (index in `db`) they belong to;
    /// `None` for leftovers (bytecode, alternatives links) of removed packages.
    pub paths: HashMap<String, Option<usize>>,
    pub edited: Vec<Edited>,
    pub db: Option<PackageDb>,
    pub decision: Option<Decision>,
}

pub struct PackageOptions<'a> {
    pub strip_packages: &'a [String],
    pub keep_packages: &'a [String],
    pub keep: &'a GlobSet,
    pub entrypoint: Vec<String>,
    pub ld_library_path: Option<String>,
    pub path: Option<String>,
    pub base_layers: usize,
    pub base_matched: bool,
    /// Every non-base layer's content is readable (spooled or captured).
    pub contents_kept: bool,
}

/// Decide which added packages go; `vetoed` are packages the strip plan could
/// not remove whole (a kept link or `--keep` holds one of their files).
pub fn plan(
    reader: &ContentReader<'_>,
    base: &FsIndex,
    classes: &Classification,
    o: &PackageOptions<'_>,
    vetoed: &HashMap<usize, String>,
) -> Result<PackagePlan> {
    let index = reader.index;
    let Some(mut db) = crate::packages::read(reader, base)? else {
        return Ok(PackagePlan::default());
    };
    let mut section = OsPackages {
        manager: db.manager.as_str().into(),
        before: db.packages.len(),
        after: db.packages.len(),
        added: db.added().count(),
        ..OsPackages::default()
    };
    let undecided = if !o.base_matched {
        Some("no base image matched: which packages were added is unknown")
    } else if !o.contents_kept {
        Some(CONTENTS_UNKNOWN)
    } else {
        None
    };
    if let Some(u) = undecided {
        section.undecided = Some(u.into());
        return Ok(PackagePlan {
            section: Some(section),
            db: Some(db),
            ..PackagePlan::default()
        });
    }

    // Roots: what the function runs.
    let base_layers = o.base_layers as u16;
    let owned: HashSet<&str> = db
        .packages
        .iter()
        .flat_map(|p| p.files.iter().map(String::as_str))
        .collect();
    let mut roots: Vec<(String, String)> = Vec::new();
    for (id, path, n) in index.iter_ids() {
        if n.is_dir() {
            continue;
        }
        let keep = o.keep.is_match(format!("/{path}"));
        let c = &classes.items[id];
        let root = match c.class {
            Class::Deps | Class::Assets | Class::Code => true,
            // Files no package owns stay (unless a file rule takes them): what
            // they load stays too. Links of that kind are update-alternatives'.
            // Package managers' own records and caches run nothing (maintainer
            // scripts of a removed package must not keep its interpreter).
            Class::System => {
                n.ftype == FileType::File
                    && !owned.contains(path)
                    && ![
                        "var/lib/dpkg/",
                        "var/lib/apt/",
                        "var/lib/rpm/",
                        "var/lib/dnf/",
                        "lib/apk/",
                        "var/cache/",
                        "var/log/",
                    ]
                    .iter()
                    .any(|d| path.starts_with(d))
            }
            Class::Base => false,
        };
        if root || keep {
            let why = if keep {
                format!("/{path} matches --keep")
            } else {
                format!("/{path} ({})", c.class.as_str())
            };
            roots.push((path.to_string(), why));
        }
    }
    for e in &o.entrypoint {
        roots.push((
            e.trim_start_matches('/').to_string(),
            format!("the entrypoint {e}"),
        ));
    }
    // Vetoed packages stay as if asked to.
    let mut keep_packages: Vec<String> = o.keep_packages.to_vec();
    keep_packages.extend(vetoed.keys().map(|&i| db.packages[i].name.clone()));
    let input = ClosureInput {
        roots,
        strip_packages: o.strip_packages.to_vec(),
        keep_packages,
        ld_library_path: o.ld_library_path.clone(),
        path: o.path.clone(),
        base_layers,
    };
    let mut decision = decide(&db, reader, &input)?;
    for f in decision.fates.iter_mut() {
        if let Some(why) = vetoed.get(&f.package) {
            f.reason = why.clone();
        }
    }

    let removed: BTreeSet<usize> = decision.removed().map(|f| f.package).collect();
    // A path stays if any kept package also lists it (shared directories).
    let mut kept_paths: HashSet<&str> = HashSet::new();
    for (i, p) in db.packages.iter().enumerate() {
        if !removed.contains(&i) {
            kept_paths.extend(p.files.iter().map(String::as_str));
        }
    }
    let mut paths: HashMap<String, Option<usize>> = HashMap::new();
    let non_base = |p: &str| index.get(p).is_some_and(|n| n.layer >= base_layers);
    for &i in &removed {
        let p = &db.packages[i];
        for f in p.files.iter().chain(&p.db_files) {
            if non_base(f) && !kept_paths.contains(f.as_str()) {
                paths.entry(f.clone()).or_insert(Some(i));
            }
        }
    }
    leftovers(index, classes, &owned, &kept_paths, base_layers, &mut paths);

    // Per package: files and bytes that go (hard-linked content counted once).
    let mut counted = HashSet::new();
    let mut per: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut paths_sorted: Vec<(&String, &Option<usize>)> = paths.iter().collect();
    paths_sorted.sort();
    for (path, owner) in paths_sorted {
        let (Some(i), Some(n)) = (owner, index.get(path)) else {
            continue;
        };
        if n.is_dir() {
            continue;
        }
        let e = per.entry(*i).or_default();
        e.0 += 1;
        if let Some(c) = n.content
            && counted.insert(c)
        {
            e.1 += index.content(c).size;
        }
    }
    for f in &decision.fates {
        let p = &db.packages[f.package];
        let (files, bytes) = per.get(&f.package).copied().unwrap_or_default();
        let row = PackageRow {
            name: p.name.clone(),
            version: p.version.clone(),
            files: if f.removed {
                files
            } else {
                p.files.len() as u64
            },
            bytes,
            reason: f.reason.clone(),
        };
        if f.removed {
            section.removed.push(row);
        } else {
            section.kept.push(row);
        }
    }
    section
        .removed
        .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    section.kept.sort_by(|a, b| a.name.cmp(&b.name));
    section.after = section.before - removed.len();

    // The database, edited to match.
    let mut edited = Vec::new();
    if !removed.is_empty() {
        let gone: HashSet<(String, String)> = removed
            .iter()
            .map(|&i| (db.packages[i].name.clone(), db.packages[i].arch.clone()))
            .collect();
        let names: Vec<&str> = removed
            .iter()
            .map(|&i| db.packages[i].name.as_str())
            .collect();
        let why = format!("records of the {} removed packages dropped", names.len());
        let names: HashSet<String> = gone.iter().map(|(n, _)| n.clone()).collect();
        if non_base(&db.status_path) {
            let content = match db.manager {
                Manager::Dpkg => dpkg::without_packages(&db.status_text, &gone).into_bytes(),
                Manager::Apk => apk::without_packages(&db.status_text, &names).into_bytes(),
                Manager::Rpm => {
                    let rows: Vec<i64> = removed.iter().map(|&i| db.packages[i].row).collect();
                    rpm::without_packages(reader, &rows)?
                }
            };
            edited.push(Edited {
                path: db.status_path.clone(),
                why: why.clone(),
                content,
            });
        }
        if let Some((path, text)) = &db.extended_states
            && non_base(path)
        {
            let new = match db.manager {
                Manager::Apk => apk::world_without(text, &names),
                _ => dpkg::without_packages(text, &gone),
            };
            if new != *text {
                edited.push(Edited {
                    path: path.clone(),
                    why,
                    content: new.into_bytes(),
                });
            }
        }
    }
    // The raw texts are not needed any more.
    db.status_text = String::new();
    Ok(PackagePlan {
        section: Some(section),
        paths,
        edited,
        db: Some(db),
        decision: Some(decision),
    })
}

/// What removed packages leave behind that no package lists: bytecode that
/// `py3compile` wrote for their modules, and update-alternatives links (and
/// their records) that would point at nothing.
fn leftovers(
    index: &FsIndex,
    classes: &Classification,
    owned: &HashSet<&str>,
    kept_paths: &HashSet<&str>,
    base_layers: u16,
    paths: &mut HashMap<String, Option<usize>>,
) {
    let system: Vec<(&str, &crate::fsindex::Node)> = index
        .iter_ids()
        .filter(|&(id, _, n)| classes.items[id].class == Class::System && n.layer >= base_layers)
        .map(|(_, path, n)| (path, n))
        .collect();
    for (path, n) in &system {
        if n.is_dir() || !path.ends_with(".pyc") || basename(parent(path)) != "__pycache__" {
            continue;
        }
        let stem = basename(path).split('.').next().unwrap_or("");
        let source = format!("{}/{stem}.py", parent(parent(path)));
        if paths.contains_key(&source) && !owned.contains(path) {
            paths.insert(path.to_string(), None);
        }
    }
    loop {
        let mut changed = false;
        for (path, n) in &system {
            if n.ftype != FileType::Symlink
                || paths.contains_key(*path)
                || kept_paths.contains(path)
            {
                continue;
            }
            let mut via = Vec::new();
            let dest = index.resolve_via(path, &mut via);
            let hits = dest
                .iter()
                .chain(via.iter().skip(1))
                .any(|p| paths.contains_key(p.as_str()));
            if hits {
                paths.insert(path.to_string(), None);
                changed = true;
                if let Some(name) = path.strip_prefix("etc/alternatives/") {
                    let record = format!("var/lib/dpkg/alternatives/{name}");
                    if index.get(&record).is_some_and(|n| n.layer >= base_layers) {
                        paths.insert(record, None);
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
}
