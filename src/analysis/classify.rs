//! Which part of the image each final path belongs to: `base` (matched base
//! layers), `system` (added after the base, outside the code and dependency
//! roots), `deps` (third-party packages under the task root and /opt), `assets`
//! (large or data files in the task root that change rarely: model weights,
//! datasets), `code` (the rest of the task root). Every decision keeps its reason.
//!
//! The order of [`Class`] is the order of the output layers: what changes least
//! goes lowest, so a code-only change re-uploads only the top layer.

use std::collections::HashMap;

use serde::Serialize;

use crate::fsindex::{FsIndex, PerPath};
use crate::layer::entry::{basename, parent};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Base,
    System,
    Deps,
    Assets,
    Code,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Base => "base",
            Class::System => "system",
            Class::Deps => "deps",
            Class::Assets => "assets",
            Class::Code => "code",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BaseLayer(u16),
    OutsideRoots,
    /// Listed in a Python distribution's RECORD / installed-files.txt.
    Listed(u32),
    /// A directory holding a distribution's files.
    PackageDir(u32),
    SitePackages,
    NodeModules,
    Jar,
    OptOther,
    TaskRoot,
    /// A data or model file by its extension (`.bin`, `.onnx`, `.parquet`…).
    AssetExtension,
    /// A non-source file at or over the size threshold.
    AssetSize,
    /// Matched an `--assets` glob (the index of the glob).
    AssetGlob(u16),
    /// A source file or `bootstrap`: stays code whatever its size.
    SourceFile,
    /// A task-root file the source keeps in a layer (this one) below its code,
    /// holding no source files: moving it up would make redeploys carry it.
    BelowCode(u16),
    /// A task-root directory whose files are all of one other class (a model
    /// directory): it goes with them, not with the code.
    Holds,
}

/// Which task-root files count as assets besides the built-in extensions.
#[derive(Clone, Debug)]
pub struct AssetOptions {
    /// Non-source files of at least this many bytes are assets.
    pub threshold: u64,
    /// `--assets` globs (absolute, like `--strip`).
    pub globs: Vec<String>,
}

pub const DEFAULT_ASSET_THRESHOLD: u64 = 4 << 20;

impl Default for AssetOptions {
    fn default() -> Self {
        AssetOptions {
            threshold: DEFAULT_ASSET_THRESHOLD,
            globs: Vec::new(),
        }
    }
}

/// Model weights, datasets and archives: large, and rarely changed with the code.
const ASSET_EXTENSIONS: &[&str] = &[
    "bin",
    "pt",
    "pth",
    "onnx",
    "safetensors",
    "gguf",
    "h5",
    "keras",
    "tflite",
    "pb",
    "pkl",
    "joblib",
    "npy",
    "npz",
    "parquet",
    "arrow",
    "feather",
    "csv",
    "tsv",
    "sqlite",
    "db",
    "zip",
    "tar",
    "gz",
    "tgz",
    "bz2",
    "xz",
    "zst",
    "7z",
];

/// Files the runtime loads as code: they stay in the code layer, whatever their size.
const SOURCE_EXTENSIONS: &[&str] = &[
    "py", "js", "mjs", "cjs", "ts", "rb", "php", "java", "class", "go",
];

fn extension(path: &str) -> Option<&str> {
    let base = basename(path);
    let (stem, ext) = base.rsplit_once('.')?;
    (!stem.is_empty()).then_some(ext)
}

struct AssetMatcher<'a> {
    opts: &'a AssetOptions,
    globs: globset::GlobSet,
}

impl<'a> AssetMatcher<'a> {
    fn new(opts: &'a AssetOptions) -> crate::error::Result<Self> {
        let mut b = globset::GlobSetBuilder::new();
        for g in &opts.globs {
            let pattern = if g.starts_with('/') || g.starts_with("**") {
                g.clone()
            } else {
                format!("/{g}")
            };
            b.add(
                globset::GlobBuilder::new(&pattern)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| {
                        crate::error::Error::Usage(format!("invalid --assets glob '{g}': {e}"))
                    })?,
            );
        }
        let globs = b
            .build()
            .map_err(|e| crate::error::Error::Usage(format!("invalid --assets glob: {e}")))?;
        Ok(AssetMatcher { opts, globs })
    }

    /// The asset reason for a regular file of the task root, or `SourceFile` for
    /// code that must stay code; `None` for the rest (plain code).
    fn reason(&self, path: &str, size: u64) -> Option<Reason> {
        if let Some(i) = self.globs.matches(format!("/{path}")).first() {
            return Some(Reason::AssetGlob(*i as u16));
        }
        let ext = extension(path).map(|e| e.to_ascii_lowercase());
        if basename(path) == "bootstrap"
            || ext
                .as_deref()
                .is_some_and(|e| SOURCE_EXTENSIONS.contains(&e))
        {
            return Some(Reason::SourceFile);
        }
        if ext
            .as_deref()
            .is_some_and(|e| ASSET_EXTENSIONS.contains(&e))
        {
            return Some(Reason::AssetExtension);
        }
        (size >= self.opts.threshold).then_some(Reason::AssetSize)
    }
}

/// A third-party package found in the image.
#[derive(Clone, Debug, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `python` or `node`.
    pub ecosystem: &'static str,
    /// The `*.dist-info` / `*.egg-info` directory or `node_modules/<name>`.
    pub path: String,
    /// Normalized name (PEP 503 for Python).
    #[serde(skip)]
    pub key: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Classified {
    pub class: Class,
    pub reason: Reason,
}

pub struct Classification {
    /// Each path's class, and why.
    pub items: PerPath<Classified>,
    pub packages: Vec<Package>,
    /// Python files listed by a distribution, with the package index.
    pub listed: HashMap<String, u32>,
    pub task_root: String,
    /// `cpython-311` style tag of the interpreter the image runs, when exactly one
    /// Python 3 interpreter is in the image.
    pub python_tag: Option<String>,
    pub assets: AssetOptions,
}

impl Classification {
    pub fn explain(&self, c: &Classified, base_name: Option<&str>) -> String {
        match c.reason {
            Reason::BaseLayer(l) => match base_name {
                Some(b) => format!("from base layer {l} ({b})"),
                None => format!("from base layer {l}"),
            },
            Reason::OutsideRoots => format!(
                "added after the base, outside /{}, /opt and package directories",
                self.task_root
            ),
            Reason::Listed(p) => format!("listed in {}", record_name(&self.packages[p as usize])),
            Reason::PackageDir(p) => {
                format!("directory of {}", record_name(&self.packages[p as usize]))
            }
            Reason::SitePackages => "under site-packages".into(),
            Reason::NodeModules => "under node_modules".into(),
            Reason::Jar => ".jar library".into(),
            Reason::OptOther => "under /opt, not a recognized package".into(),
            Reason::TaskRoot => format!(
                "in the task root /{}, not part of a package",
                self.task_root
            ),
            Reason::AssetExtension => "a data or model file (by its extension), kept apart from the code that changes on every deploy".into(),
            Reason::AssetSize => format!(
                "a non-source file of {} or more (--assets-threshold), kept apart from the code",
                crate::units::human_bytes(self.assets.threshold)
            ),
            Reason::AssetGlob(i) => format!(
                "matched --assets {}",
                self.assets.globs.get(i as usize).map_or("", String::as_str)
            ),
            Reason::BelowCode(l) => format!(
                "the source keeps it in layer {l}, below the code and without source files: an asset"
            ),
            Reason::Holds => "a directory holding only files of this class".into(),
            Reason::SourceFile => format!(
                "a source file in the task root /{}: code, whatever its size",
                self.task_root
            ),
        }
    }
}

fn record_name(p: &Package) -> String {
    if p.path.ends_with(".dist-info") {
        format!("/{}/RECORD", p.path)
    } else if p.path.ends_with(".egg-info") {
        format!("/{}/installed-files.txt", p.path)
    } else {
        format!("/{}", p.path)
    }
}

/// Files whose contents the analysis needs; the layer reader captures them.
pub fn wants_content(path: &str) -> bool {
    let base = basename(path);
    let dir = basename(parent(path));
    (base == "RECORD" && dir.ends_with(".dist-info"))
        || (base == "installed-files.txt" && dir.ends_with(".egg-info"))
        || (base == "package.json" && !path.contains("/node_modules/"))
        || matches!(
            base,
            "requirements.txt"
                | "requirements-dev.txt"
                | "dev-requirements.txt"
                | "requirements_dev.txt"
        )
}

/// PEP 503 normalization: lowercase, runs of `-_.` become `-`.
pub fn normalize_dist_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn join_normalized(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The first CSV field of a RECORD line (paths with commas are quoted).
fn record_path(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    Some(line.split(',').next()?.to_string())
}

fn dist_name_version(dir_name: &str) -> (String, String) {
    let stem = dir_name
        .trim_end_matches(".dist-info")
        .trim_end_matches(".egg-info");
    match stem.split_once('-') {
        Some((n, rest)) => (
            n.to_string(),
            rest.split('-').next().unwrap_or("").to_string(),
        ),
        None => (stem.to_string(), String::new()),
    }
}

/// Normalized path of `LAMBDA_TASK_ROOT` (default `/var/task`).
pub fn task_root(env_value: Option<&str>) -> String {
    let raw = env_value
        .filter(|v| v.starts_with('/') && v.len() > 1)
        .unwrap_or("/var/task");
    raw.trim_matches('/').to_string()
}

fn under(path: &str, root: &str) -> bool {
    path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes()[root.len()] == b'/')
}

pub fn classify(
    index: &FsIndex,
    base_layers: usize,
    task_root: &str,
    assets: &AssetOptions,
) -> crate::error::Result<Classification> {
    let matcher = AssetMatcher::new(assets)?;
    let mut packages: Vec<Package> = Vec::new();
    let mut listed: HashMap<String, u32> = HashMap::new();
    let mut interpreters = std::collections::BTreeSet::new();

    for (path, node) in index.iter() {
        let base = basename(path);
        let dir = parent(path);
        let dir_name = basename(dir);
        if !node.is_dir()
            && let Some(v) = python_version_from_path(path)
        {
            interpreters.insert(v);
        }
        let Some(text) = index.captured_text(node) else {
            continue;
        };
        let (kind_ok, rel_base) = if base == "RECORD" && dir_name.ends_with(".dist-info") {
            (true, parent(dir))
        } else if base == "installed-files.txt" && dir_name.ends_with(".egg-info") {
            (true, dir)
        } else {
            (false, "")
        };
        if !kind_ok {
            continue;
        }
        let (name, version) = dist_name_version(dir_name);
        let id = packages.len() as u32;
        packages.push(Package {
            key: normalize_dist_name(&name),
            name,
            version,
            ecosystem: "python",
            path: dir.to_string(),
        });
        for line in text.lines() {
            let Some(rel) = record_path(line) else {
                continue;
            };
            if let Some(p) = join_normalized(rel_base, &rel) {
                listed.entry(p).or_insert(id);
            }
            // `pip install --target DIR` moves console scripts to DIR/bin, while
            // RECORD keeps them relative to where they were built (`../../../bin/x`).
            if rel.starts_with("../")
                && basename(parent(&rel)) == "bin"
                && let Some(p) = join_normalized(rel_base, &format!("bin/{}", basename(&rel)))
            {
                listed.entry(p).or_insert(id);
            }
        }
        listed.entry(dir.to_string()).or_insert(id);
    }
    // Node packages: node_modules/<name> and node_modules/@scope/<name>.
    for (path, node) in index.iter() {
        if !node.is_dir() {
            continue;
        }
        if let Some(name) = node_package_name(path) {
            packages.push(Package {
                key: name.clone(),
                name,
                version: String::new(),
                ecosystem: "node",
                path: path.to_string(),
            });
        }
    }

    // Directories below a distribution's install root that hold its files belong to it.
    let mut package_dirs: HashMap<String, u32> = HashMap::new();
    // Sorted, so a directory two packages share is credited the same way every run.
    let mut sorted: Vec<(&String, &u32)> = listed.iter().collect();
    sorted.sort();
    for (p, &id) in sorted {
        let pkg = &packages[id as usize];
        let site = if pkg.path.ends_with(".dist-info") {
            parent(&pkg.path)
        } else {
            &pkg.path[..]
        };
        let mut d = parent(p);
        while under(d, site) && d != site {
            package_dirs.entry(d.to_string()).or_insert(id);
            d = parent(d);
        }
    }

    let mut items = PerPath::new(index, |_, path, node| {
        if (node.layer as usize) < base_layers {
            Classified {
                class: Class::Base,
                reason: Reason::BaseLayer(node.layer),
            }
        } else {
            let c = classify_path(path, node.is_dir(), task_root, &listed, &package_dirs);
            // Only plain task-root files are candidates: packages stay deps.
            match (c.reason, node.content) {
                (Reason::TaskRoot, Some(id)) if !node.is_dir() && path != task_root => {
                    match matcher.reason(path, index.content(id).size) {
                        Some(Reason::SourceFile) => Classified {
                            class: Class::Code,
                            reason: Reason::SourceFile,
                        },
                        Some(reason) => Classified {
                            class: Class::Assets,
                            reason,
                        },
                        None => c,
                    }
                }
                _ => c,
            }
        }
    });
    respect_source_layers(index, &mut items);
    dirs_follow_files(index, task_root, &mut items);

    Ok(Classification {
        items,
        packages,
        listed,
        task_root: task_root.to_string(),
        // With two interpreters in the image we cannot tell which one the
        // function runs: then no bytecode counts as stale.
        python_tag: (interpreters.len() == 1)
            .then(|| interpreters.into_iter().next().expect("one")),
        assets: assets.clone(),
    })
}

/// Plain task-root files of a layer below the topmost code-holding one that holds
/// no source file (e.g. `COPY config/ …` before `COPY handler.py …`) stay below
/// the code: they become assets.
fn respect_source_layers(index: &FsIndex, items: &mut PerPath<Classified>) {
    let code_file =
        |n: &crate::fsindex::Node, c: &Classified| !n.is_dir() && c.class == Class::Code;
    let Some(top) = index
        .iter_ids()
        .filter(|&(id, _, n)| code_file(n, &items[id]))
        .map(|(_, _, n)| n.layer)
        .max()
    else {
        return;
    };
    let with_source: std::collections::HashSet<u16> = index
        .iter_ids()
        .filter(|&(id, _, n)| code_file(n, &items[id]) && items[id].reason == Reason::SourceFile)
        .map(|(_, _, n)| n.layer)
        .collect();
    for (id, _, n) in index.iter_ids() {
        let c = &mut items[id];
        if code_file(n, c)
            && c.reason == Reason::TaskRoot
            && n.layer < top
            && !with_source.contains(&n.layer)
        {
            *c = Classified {
                class: Class::Assets,
                reason: Reason::BelowCode(n.layer),
            };
        }
    }
}

/// A plain task-root directory goes with its files when they are all of one
/// class other than code (`model/` with the weights), so that a layer of only
/// model files stays one class and the code layer does not carry its directories.
fn dirs_follow_files(index: &FsIndex, task_root: &str, items: &mut PerPath<Classified>) {
    // Per directory: the one class of its files so far, or None once mixed.
    let mut seen: HashMap<&str, Option<Class>> = HashMap::new();
    for (id, path, n) in index.iter_ids() {
        if n.is_dir() || !under(path, task_root) {
            continue;
        }
        let class = items[id].class;
        let mut d = parent(path);
        while under(d, task_root) && d != task_root {
            let e = seen.entry(d).or_insert(Some(class));
            if *e != Some(class) {
                *e = None;
            }
            d = parent(d);
        }
    }
    for (id, path, n) in index.iter_ids() {
        let c = &mut items[id];
        if n.is_dir()
            && c.reason == Reason::TaskRoot
            && let Some(Some(class)) = seen.get(path)
            && *class != Class::Code
        {
            *c = Classified {
                class: *class,
                reason: Reason::Holds,
            };
        }
    }
}

fn node_package_name(path: &str) -> Option<String> {
    let (before, after) = path.rsplit_once("node_modules/")?;
    if !(before.is_empty() || before.ends_with('/')) {
        return None;
    }
    let parts: Vec<&str> = after.split('/').collect();
    match parts.as_slice() {
        [scope, name] if scope.starts_with('@') => Some(format!("{scope}/{name}")),
        [name] if !name.starts_with('@') && !name.starts_with('.') => Some(name.to_string()),
        _ => None,
    }
}

/// `usr/lib/python3.11/...` or `.../bin/python3.12` → `cpython-311`.
fn python_version_from_path(path: &str) -> Option<String> {
    let base = basename(path);
    let dir = basename(parent(path));
    if dir != "bin" {
        return None;
    }
    let v = base.strip_prefix("python3.")?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("cpython-3{v}"))
}

pub fn classify_path(
    path: &str,
    is_dir: bool,
    task_root: &str,
    listed: &HashMap<String, u32>,
    package_dirs: &HashMap<String, u32>,
) -> Classified {
    let in_task = under(path, task_root);
    let in_opt = under(path, "opt");
    let c = |class, reason| Classified { class, reason };
    // Debian's own Python modules are system packages, whatever their layout.
    if under(path, "usr/lib/python3/dist-packages")
        || under(path, "usr/lib/python2.7/dist-packages")
    {
        return c(Class::System, Reason::OutsideRoots);
    }
    if path == task_root {
        return c(Class::Code, Reason::TaskRoot);
    }
    if let Some(&id) = listed.get(path) {
        return c(Class::Deps, Reason::Listed(id));
    }
    if is_dir && let Some(&id) = package_dirs.get(path) {
        return c(Class::Deps, Reason::PackageDir(id));
    }
    // Third-party packages count as dependencies wherever pip or npm put them.
    let mut segs = path.split('/').peekable();
    while let Some(s) = segs.next() {
        let inside = segs.peek().is_some();
        if inside && (s == "site-packages" || s == "dist-packages") {
            return c(Class::Deps, Reason::SitePackages);
        }
        if inside && s == "node_modules" {
            return c(Class::Deps, Reason::NodeModules);
        }
    }
    if !in_task && !in_opt {
        return c(Class::System, Reason::OutsideRoots);
    }
    if path == "opt" {
        return c(Class::System, Reason::OptOther);
    }
    if !is_dir && path.ends_with(".jar") {
        return c(Class::Deps, Reason::Jar);
    }
    if in_opt {
        return c(Class::System, Reason::OptOther);
    }
    c(Class::Code, Reason::TaskRoot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_parsing() {
        assert_eq!(
            record_path("numpy/__init__.py,sha256=abc,123").as_deref(),
            Some("numpy/__init__.py")
        );
        assert_eq!(
            record_path("\"a,b.py\",sha256=x,1").as_deref(),
            Some("a,b.py")
        );
        assert_eq!(
            join_normalized("var/task", "../../bin/x").as_deref(),
            Some("bin/x")
        );
        assert_eq!(
            dist_name_version("python_dateutil-2.9.0.post0.dist-info"),
            ("python_dateutil".into(), "2.9.0.post0".into())
        );
        assert_eq!(normalize_dist_name("Python_Dateutil"), "python-dateutil");
    }

    #[test]
    fn asset_rules() {
        let opts = AssetOptions {
            threshold: 4 << 20,
            globs: vec!["/var/task/data/**".into()],
        };
        let m = AssetMatcher::new(&opts).unwrap();
        let r = |p: &str, size: u64| m.reason(p, size);
        assert_eq!(
            r("var/task/model/weights.bin", 10),
            Some(Reason::AssetExtension)
        );
        assert_eq!(
            r("var/task/m.SafeTensors", 10),
            Some(Reason::AssetExtension)
        );
        assert_eq!(r("var/task/big.json", 4 << 20), Some(Reason::AssetSize));
        assert_eq!(r("var/task/small.json", (4 << 20) - 1), None);
        // A big source file stays code: it changes with the code.
        assert_eq!(
            r("var/task/generated.py", 50 << 20),
            Some(Reason::SourceFile)
        );
        assert_eq!(r("var/task/bootstrap", 30 << 20), Some(Reason::SourceFile));
        assert_eq!(
            r("var/task/data/lookup.json", 1),
            Some(Reason::AssetGlob(0))
        );
        assert_eq!(r("var/task/.bin", 1), None, "a dot file has no extension");
        assert!(matches!(
            AssetMatcher::new(&AssetOptions {
                threshold: 1,
                globs: vec!["/a/[".into()]
            }),
            Err(crate::error::Error::Usage(_))
        ));
    }

    /// The source's layering decides for plain task-root files: a layer of
    /// config files below the code's layer stays below it (assets), and a model
    /// directory goes with its files.
    #[test]
    fn layering_and_directories() {
        use crate::layer::{Entry, EntryKind, Meta};
        let e = |path: &str, kind: EntryKind, size: u64| Entry {
            path: path.into(),
            kind,
            meta: Meta::default(),
            size,
            data_offset: 0,
            content_hash: None,
            captured: None,
            program: None,
        };
        let dir = |p: &str| e(p, EntryKind::Dir, 0);
        let file = |p: &str, size| e(p, EntryKind::File, size);
        let mut ix = FsIndex::new();
        ix.apply(vec![dir("var"), dir("var/task")], "base").unwrap();
        ix.apply(
            vec![dir("var/task/config"), file("var/task/config/app.json", 10)],
            "config",
        )
        .unwrap();
        ix.apply(
            vec![dir("var/task/model"), file("var/task/model/w", 10 << 20)],
            "model",
        )
        .unwrap();
        ix.apply(
            vec![
                file("var/task/handler.py", 100),
                file("var/task/settings.json", 10),
            ],
            "code",
        )
        .unwrap();
        ix.finish();
        let c = classify(&ix, 1, "var/task", &AssetOptions::default()).unwrap();
        let got: HashMap<&str, (Class, Reason)> = ix
            .iter_ids()
            .map(|(id, p, _)| (p, (c.items[id].class, c.items[id].reason)))
            .collect();
        assert_eq!(
            got["var/task/config/app.json"],
            (Class::Assets, Reason::BelowCode(1))
        );
        assert_eq!(got["var/task/config"], (Class::Assets, Reason::Holds));
        assert_eq!(got["var/task/model/w"], (Class::Assets, Reason::AssetSize));
        assert_eq!(got["var/task/model"], (Class::Assets, Reason::Holds));
        // In the code's own layer, a small non-source file is code.
        assert_eq!(
            got["var/task/settings.json"],
            (Class::Code, Reason::TaskRoot)
        );
        assert_eq!(
            got["var/task/handler.py"],
            (Class::Code, Reason::SourceFile)
        );
    }

    #[test]
    fn path_rules() {
        let listed = HashMap::from([("var/task/numpy/core.py".to_string(), 0u32)]);
        let dirs = HashMap::from([("var/task/numpy".to_string(), 0u32)]);
        let cl = |p: &str, d: bool| classify_path(p, d, "var/task", &listed, &dirs).class;
        assert_eq!(cl("var/task/numpy/core.py", false), Class::Deps);
        assert_eq!(cl("var/task/numpy", true), Class::Deps);
        assert_eq!(cl("var/task/handler.py", false), Class::Code);
        assert_eq!(cl("var/task", true), Class::Code);
        assert_eq!(cl("usr/bin/gcc", false), Class::System);
        assert_eq!(
            cl("opt/python/lib/python3.12/site-packages/x.py", false),
            Class::Deps
        );
        assert_eq!(
            cl("opt/nodejs/node_modules/left-pad/index.js", false),
            Class::Deps
        );
        assert_eq!(cl("opt/extensions/agent", false), Class::System);
        assert_eq!(cl("var/task/lib/guava.jar", false), Class::Deps);
        assert_eq!(
            cl(
                "var/lang/lib/python3.12/site-packages/requests/api.py",
                false
            ),
            Class::Deps
        );
        assert_eq!(
            cl("var/lang/lib/python3.12/site-packages", true),
            Class::System
        );
        assert_eq!(
            cl("usr/lib/python3/dist-packages/pip/__init__.py", false),
            Class::System
        );
        assert_eq!(
            node_package_name("var/task/node_modules/@types/node").as_deref(),
            Some("@types/node")
        );
        assert_eq!(
            node_package_name("var/task/node_modules/a/node_modules/b").as_deref(),
            Some("b")
        );
        assert_eq!(
            python_version_from_path("usr/bin/python3.11").as_deref(),
            Some("cpython-311")
        );
    }
}
