//! Which added packages stay: the runtime closure.
//!
//! Roots are the files the function runs (the analysis passes them: kept
//! dependency and code files, the entrypoint, `--keep` paths), every package of
//! the base, every package installed by request that is not a build tool, and
//! `--keep-package`. Edges are ELF `DT_NEEDED` (resolved as ld.so does), script
//! shebangs, and package dependencies (Pre-Depends, Depends, Recommends, as apt's
//! autoremove counts them). An added package outside the closure goes, with the
//! reason apt would give; one the closure holds stays, with the file that needs it.

use std::collections::{HashMap, HashSet, VecDeque};

use super::content::ContentReader;
use super::seeds::seed_reason;
use super::{Package, PackageDb};
use crate::error::Result;
use crate::layer::entry::{FileType, basename, parent};
use crate::layer::program::{Dynamic, Program};

/// Default library directories of ld.so (64- and 32-bit, multiarch first).
const DEFAULT_LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

#[derive(Clone, Debug, Default)]
pub struct ClosureInput {
    /// Files the function runs or loads, each with why it is a root.
    pub roots: Vec<(String, String)>,
    pub strip_packages: Vec<String>,
    pub keep_packages: Vec<String>,
    /// The image config's LD_LIBRARY_PATH and PATH.
    pub ld_library_path: Option<String>,
    pub path: Option<String>,
    /// Leading layers that are the matched base's: their files stop the walk.
    pub base_layers: u16,
}

/// The fate of one added package.
#[derive(Clone, Debug)]
pub struct Fate {
    pub package: usize,
    pub removed: bool,
    pub reason: String,
    /// Kept only because a file the function loads needs it.
    pub by_closure: bool,
}

pub struct Decision {
    /// One per added package, in database order.
    pub fates: Vec<Fate>,
    /// Names given to --strip-package / --keep-package that are not installed.
    pub unknown: Vec<String>,
}

impl Decision {
    pub fn removed(&self) -> impl Iterator<Item = &Fate> {
        self.fates.iter().filter(|f| f.removed)
    }
}

struct Walk<'a, 'b> {
    reader: &'a ContentReader<'b>,
    owners: HashMap<&'a str, Vec<usize>>,
    lib_dirs: Vec<String>,
    ld_library_path: Vec<String>,
    path_dirs: Vec<String>,
    base_layers: u16,
}

impl Walk<'_, '_> {
    /// Packages owning `path` or what it resolves to.
    fn owners_of(&self, path: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.owners.get(path).cloned().unwrap_or_default();
        if let Some(real) = self.reader.index.resolve(path)
            && real != path
            && let Some(o) = self.owners.get(real.as_str())
        {
            out.extend(o);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn exists(&self, path: &str) -> bool {
        self.reader
            .index
            .resolve(path)
            .and_then(|p| self.reader.index.get(&p).map(|n| n.ftype == FileType::File))
            .unwrap_or(false)
    }

    /// ld.so's search: RPATH (when there is no RUNPATH), LD_LIBRARY_PATH,
    /// RUNPATH, ld.so.conf, default directories.
    fn find_library(&self, name: &str, origin: &str, d: &Dynamic) -> Option<String> {
        if name.contains('/') {
            let p = name.trim_start_matches('/').to_string();
            return self.exists(&p).then_some(p);
        }
        let expand = |dir: &str| -> String {
            let o = format!("/{origin}");
            dir.replace("${ORIGIN}", &o)
                .replace("$ORIGIN", &o)
                .trim_start_matches('/')
                .to_string()
        };
        let mut dirs: Vec<String> = Vec::new();
        if d.runpath.is_empty() {
            dirs.extend(d.rpath.iter().map(|r| expand(r)));
        }
        dirs.extend(self.ld_library_path.iter().cloned());
        dirs.extend(d.runpath.iter().map(|r| expand(r)));
        dirs.extend(self.lib_dirs.iter().cloned());
        for dir in dirs {
            let dir = normalize(&dir);
            let p = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            if self.exists(&p) {
                // Named as the index and the package lists name it: parents
                // resolved (`lib -> usr/lib`), the link itself kept.
                return Some(super::dpkg::index_path(self.reader.index, &p).unwrap_or(p));
            }
        }
        None
    }

    /// Files `path` makes the loader or kernel open: libraries, interpreters.
    fn edges(&self, path: &str) -> Result<Vec<(String, String)>> {
        let Some(real) = self.reader.index.resolve(path) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match self.reader.program(&real) {
            Some(Program::Elf(d)) => {
                let origin = parent(&real).to_string();
                for name in &d.needed {
                    if let Some(lib) = self.find_library(name, &origin, &d) {
                        out.push((lib, format!("/{real} needs {name}")));
                    }
                }
            }
            Some(Program::Script(line)) => {
                let mut words = line.split_whitespace();
                if let Some(interp) = words.next() {
                    let interp = interp.trim_start_matches('/').to_string();
                    out.push((interp.clone(), format!("/{real} runs /{interp}")));
                    // `#!/usr/bin/env python3`: the program env starts, found on PATH.
                    if basename(&interp) == "env"
                        && let Some(prog) = words.find(|w| !w.starts_with('-'))
                        && let Some(p) = self.on_path(prog)
                    {
                        out.push((p.clone(), format!("/{real} runs {prog} (/{p})")));
                    }
                }
            }
            None => {}
        }
        Ok(out)
    }

    fn on_path(&self, prog: &str) -> Option<String> {
        if prog.contains('/') {
            return Some(prog.trim_start_matches('/').to_string());
        }
        self.path_dirs
            .iter()
            .map(|d| {
                let d = normalize(d);
                if d.is_empty() {
                    prog.to_string()
                } else {
                    format!("{d}/{prog}")
                }
            })
            .find(|p| self.exists(p))
    }
}

fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn split_dirs(v: &str) -> Vec<String> {
    v.split(':')
        .filter(|d| !d.is_empty())
        .map(normalize)
        .collect()
}

/// Directories named in /etc/ld.so.conf and the files it includes.
fn ld_so_conf(reader: &ContentReader<'_>) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    let mut files = vec!["etc/ld.so.conf".to_string()];
    let mut seen = HashSet::new();
    while let Some(f) = files.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Some(raw) = reader.read(&f, 1 << 20)? else {
            continue;
        };
        for line in String::from_utf8_lossy(&raw).lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                let pattern = pattern.trim().trim_start_matches('/');
                // The only form in practice: `include /etc/ld.so.conf.d/*.conf`.
                let (dir, glob) = (parent(pattern), basename(pattern));
                let suffix = glob.trim_start_matches('*');
                let mut found: Vec<String> = reader
                    .index
                    .descendants(dir)
                    .filter(|(p, n)| {
                        parent(p) == dir && !n.is_dir() && basename(p).ends_with(suffix)
                    })
                    .map(|(p, _)| p.to_string())
                    .collect();
                found.sort();
                found.reverse();
                files.extend(found);
            } else if !line.is_empty() {
                dirs.push(normalize(line));
            }
        }
    }
    Ok(dirs)
}

/// Decide the fate of every added package.
pub fn decide(
    db: &PackageDb,
    reader: &ContentReader<'_>,
    input: &ClosureInput,
) -> Result<Decision> {
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in db.packages.iter().enumerate() {
        for f in &p.files {
            owners.entry(f.as_str()).or_default().push(i);
        }
    }
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in db.packages.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
        for v in &p.provides {
            by_name.entry(v.as_str()).or_default().push(i);
        }
    }
    let mut lib_dirs = ld_so_conf(reader)?;
    lib_dirs.extend(DEFAULT_LIB_DIRS.iter().map(|d| d.to_string()));
    let walk = Walk {
        reader,
        owners,
        lib_dirs,
        ld_library_path: input
            .ld_library_path
            .as_deref()
            .map(split_dirs)
            .unwrap_or_default(),
        path_dirs: split_dirs(
            input
                .path
                .as_deref()
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ),
        base_layers: input.base_layers,
    };

    let strip: HashSet<&str> = input.strip_packages.iter().map(String::as_str).collect();
    let keep: HashSet<&str> = input.keep_packages.iter().map(String::as_str).collect();
    let unknown: Vec<String> = strip
        .iter()
        .chain(&keep)
        .filter(|n| !by_name.contains_key(**n))
        .map(|n| n.to_string())
        .collect();

    // Why each package is kept (None: not kept).
    let mut kept: Vec<Option<(String, bool)>> = vec![None; db.packages.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    let keep_pkg = |i: usize,
                    why: String,
                    by_closure: bool,
                    kept: &mut Vec<Option<(String, bool)>>,
                    queue: &mut VecDeque<usize>| {
        if kept[i].is_none() {
            kept[i] = Some((why, by_closure));
            queue.push_back(i);
        }
    };
    for (i, p) in db.packages.iter().enumerate() {
        let name = p.name.as_str();
        if keep.contains(name) {
            keep_pkg(i, "--keep-package".into(), false, &mut kept, &mut queue);
        } else if p.in_base {
            keep_pkg(i, "in the base image".into(), false, &mut kept, &mut queue);
        } else if p.manual && !strip.contains(name) && seed_reason(name).is_none() {
            keep_pkg(
                i,
                "explicitly installed".into(),
                false,
                &mut kept,
                &mut queue,
            );
        }
    }

    // Files: follow what the function really loads.
    let mut seen: HashSet<String> = HashSet::new();
    let mut files: VecDeque<(String, String)> = input.roots.iter().cloned().collect();
    while let Some((path, why)) = files.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let owned = walk.owners_of(&path);
        if !owned.is_empty() {
            for i in owned {
                keep_pkg(i, why.clone(), true, &mut kept, &mut queue);
            }
            // A package's own needs are its declared dependencies.
            continue;
        }
        let Some(real) = reader.index.resolve(&path) else {
            continue;
        };
        match reader.index.get(&real) {
            Some(n) if n.layer >= walk.base_layers && n.ftype == FileType::File => {}
            _ => continue,
        }
        for (next, _) in walk.edges(&real)? {
            let why = format!("/{path} needs /{next}");
            files.push_back((next, why));
        }
    }

    // Packages: what kept packages depend on stays.
    while let Some(i) = queue.pop_front() {
        let pkg: &Package = &db.packages[i];
        for group in &pkg.depends {
            let satisfied = group.iter().any(|alt| {
                by_name
                    .get(alt.as_str())
                    .is_some_and(|c| c.iter().any(|&j| kept[j].is_some()))
            });
            if satisfied {
                continue;
            }
            if let Some(c) = group.iter().find_map(|alt| by_name.get(alt.as_str())) {
                for &j in c {
                    let why = if kept[i].as_ref().is_some_and(|k| k.0 == "in the base image") {
                        format!("needed by {} (in the base image)", pkg.name)
                    } else {
                        format!("needed by kept {}", pkg.name)
                    };
                    let by_closure = kept[i].as_ref().is_some_and(|k| k.1);
                    keep_pkg(j, why, by_closure, &mut kept, &mut queue);
                }
            }
        }
    }

    // The rest of the added packages go; say why as apt would.
    let removed: std::collections::BTreeSet<usize> = (0..db.packages.len())
        .filter(|&i| kept[i].is_none())
        .collect();
    let mut fates = Vec::new();
    for (i, p) in db.packages.iter().enumerate() {
        if p.in_base {
            continue;
        }
        match &kept[i] {
            Some((why, by_closure)) => fates.push(Fate {
                package: i,
                removed: false,
                reason: why.clone(),
                by_closure: *by_closure,
            }),
            None => {
                let reason = if strip.contains(p.name.as_str()) {
                    "--strip-package".to_string()
                } else if p.manual {
                    match seed_reason(&p.name) {
                        Some(r) => format!("build-only: {r}"),
                        None => "build-only".to_string(),
                    }
                } else {
                    let by = removed.iter().copied().filter(|&j| j != i).find(|&j| {
                        db.packages[j]
                            .depends
                            .iter()
                            .flatten()
                            .any(|d| d == &p.name || p.provides.iter().any(|v| v == d))
                    });
                    match by {
                        Some(j) => format!(
                            "auto-installed for {} (removed); nothing kept loads it",
                            db.packages[j].name
                        ),
                        None => "auto-installed; nothing kept needs it".to_string(),
                    }
                };
                // A database coldpress cannot rewrite would go on listing
                // the package: it stays, and says what would have happened.
                let (removed, reason) = match db.read_only() {
                    Some(why) => (false, format!("{why} (otherwise: {reason})")),
                    None => (true, reason),
                };
                fates.push(Fate {
                    package: i,
                    removed,
                    reason,
                    by_closure: false,
                });
            }
        }
    }
    Ok(Decision { fates, unknown })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsindex::FsIndex;
    use crate::layer::{Entry, EntryKind};

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry::bare(path, kind)
    }

    fn index() -> FsIndex {
        let mut ix = FsIndex::new();
        let dirs = [
            "usr",
            "usr/lib",
            "usr/lib/x86_64-linux-gnu",
            "opt",
            "opt/app",
            "opt/app/lib",
            "opt/app/bin",
            "opt/other",
        ];
        let mut entries: Vec<Entry> = dirs.iter().map(|d| e(d, EntryKind::Dir)).collect();
        entries.push(e("lib", EntryKind::Symlink("usr/lib".into())));
        for f in [
            "usr/lib/x86_64-linux-gnu/libz.so.1.2",
            "opt/app/lib/libz.so.1",
            "opt/other/libz.so.1",
        ] {
            entries.push(e(f, EntryKind::File));
        }
        entries.push(e(
            "usr/lib/x86_64-linux-gnu/libz.so.1",
            EntryKind::Symlink("libz.so.1.2".into()),
        ));
        ix.apply(entries, "test").unwrap();
        ix.finish();
        ix
    }

    fn walk<'a, 'b>(reader: &'a ContentReader<'b>, ld: &[&str]) -> Walk<'a, 'b> {
        Walk {
            reader,
            owners: HashMap::new(),
            lib_dirs: DEFAULT_LIB_DIRS.iter().map(|d| d.to_string()).collect(),
            ld_library_path: ld.iter().map(|d| d.to_string()).collect(),
            path_dirs: Vec::new(),
            base_layers: 0,
        }
    }

    #[test]
    fn libraries_resolve_in_ld_so_order() {
        let ix = index();
        let reader = ContentReader::new(&ix, Vec::new(), Vec::new(), 0);
        let plain = Dynamic::default();
        let w = walk(&reader, &[]);
        // Default directories, through the link.
        assert_eq!(
            w.find_library("libz.so.1", "opt/app/bin", &plain)
                .as_deref(),
            Some("usr/lib/x86_64-linux-gnu/libz.so.1")
        );
        // RPATH with $ORIGIN comes before the defaults.
        let rpath = Dynamic {
            rpath: vec!["$ORIGIN/../lib".into()],
            ..Dynamic::default()
        };
        assert_eq!(
            w.find_library("libz.so.1", "opt/app/bin", &rpath)
                .as_deref(),
            Some("opt/app/lib/libz.so.1")
        );
        // LD_LIBRARY_PATH beats RUNPATH, and RUNPATH disables RPATH.
        let w = walk(&reader, &["opt/other"]);
        let both = Dynamic {
            rpath: vec!["$ORIGIN/../lib".into()],
            runpath: vec!["${ORIGIN}/../lib".into()],
            ..Dynamic::default()
        };
        assert_eq!(
            w.find_library("libz.so.1", "opt/app/bin", &both).as_deref(),
            Some("opt/other/libz.so.1")
        );
        assert_eq!(w.find_library("libnope.so.1", "opt/app/bin", &plain), None);
    }

    /// The same added packages go from a database coldpress rewrites and
    /// stay, saying what would have happened, in one it only reads.
    #[test]
    fn a_read_only_database_keeps_what_would_go() {
        let ix = index();
        let reader = ContentReader::new(&ix, Vec::new(), Vec::new(), 0);
        let pkg = |name: &str, manual: bool, depends: &[&str]| Package {
            name: name.into(),
            manual,
            depends: depends.iter().map(|d| vec![d.to_string()]).collect(),
            ..Package::default()
        };
        let mut db = PackageDb {
            manager: super::super::Manager::Rpm,
            packages: vec![pkg("gcc", true, &["binutils"]), pkg("binutils", false, &[])],
            status_path: super::super::rpm::RPMDB.into(),
            status_text: String::new(),
            extended_states: None,
        };
        let fates = |db: &PackageDb| -> Vec<(bool, String)> {
            decide(db, &reader, &ClosureInput::default())
                .unwrap()
                .fates
                .into_iter()
                .map(|f| (f.removed, f.reason))
                .collect()
        };
        let sqlite = fates(&db);
        assert!(sqlite.iter().all(|(removed, _)| *removed), "{sqlite:?}");
        db.status_path = super::super::rpm::PACKAGES_BDB.into();
        let bdb = fates(&db);
        for ((removed, why), (_, would)) in bdb.iter().zip(&sqlite) {
            assert!(!removed);
            assert_eq!(
                why,
                &format!("{} (otherwise: {would})", super::super::rpm::BDB_READ_ONLY)
            );
        }
    }
}
