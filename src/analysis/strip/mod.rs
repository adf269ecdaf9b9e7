//! Named, explained rules for what a Lambda function does not need at run time.
//! Only files outside the matched base layers are candidates; a file that a kept
//! symlink or hard link points to is never removed; `--keep` wins over everything.

use std::collections::{BTreeMap, HashMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::classify::{Class, Classification, normalize_dist_name};
use crate::error::{Error, Result};
use crate::fsindex::{Count, FsIndex};
use crate::layer::entry::{FileType, basename, parent};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Build-only OS packages, build toolchains, package caches, tests, dev
    /// dependencies, docs and man pages, VCS litter.
    #[default]
    Safe,
    /// Also locales, type stubs, source maps.
    Aggressive,
}

pub struct Rule {
    pub id: &'static str,
    pub reason: &'static str,
    pub profile: Profile,
    pub classes: &'static [Class],
    pub globs: &'static [&'static str],
}

const NON_BASE: &[Class] = &[Class::System, Class::Deps, Class::Assets, Class::Code];
// Assets are task-root files too: a test's data file goes with its test suite.
const PACKAGES_AND_CODE: &[Class] = &[Class::Deps, Class::Assets, Class::Code];

/// The built-in rules, in priority order (the first that matches names the removal).
pub const RULES: &[Rule] = &[
    Rule {
        id: "vcs-editor-litter",
        reason: "version-control metadata and editor/tool leftovers are never used at run time",
        profile: Profile::Safe,
        classes: NON_BASE,
        globs: &[
            "**/.git",
            "**/.git/**",
            "**/.svn/**",
            "**/.hg/**",
            "**/.gitignore",
            "**/.gitattributes",
            "**/.DS_Store",
            "**/*.swp",
            "**/*.swo",
            "**/*~",
            "**/.idea/**",
            "**/.vscode/**",
            "**/.pytest_cache/**",
            "**/.pytest_cache",
            "**/.mypy_cache/**",
            "**/.mypy_cache",
            "**/.ruff_cache/**",
            "**/.tox/**",
            "**/.coverage",
            "**/.nyc_output/**",
        ],
    },
    Rule {
        id: "package-manager-cache",
        reason: "pip/npm/yarn/apt/dnf download caches and package lists are only used while installing",
        profile: Profile::Safe,
        classes: NON_BASE,
        globs: &[
            "/root/.cache/pip/**",
            "/home/*/.cache/pip/**",
            "**/.cache/pip/**",
            "/root/.cache/pypoetry/**",
            "/root/.npm/**",
            "/home/*/.npm/**",
            "**/.npm/_cacache/**",
            "/usr/local/share/.cache/yarn/**",
            "**/.cache/yarn/**",
            "/var/lib/apt/lists/**",
            "/var/cache/apt/**",
            "/var/cache/dnf/**",
            "/var/cache/yum/**",
            "/var/cache/debconf/*-old",
            "/var/lib/dpkg/*-old",
        ],
    },
    Rule {
        id: "build-toolchain",
        reason: "compilers, linkers, headers and static libraries only matter when building",
        profile: Profile::Safe,
        classes: &[Class::System],
        globs: &[
            "/usr/bin/gcc",
            "/usr/bin/gcc-*",
            "/usr/bin/g++",
            "/usr/bin/g++-*",
            "/usr/bin/c++",
            "/usr/bin/cc",
            "/usr/bin/c89*",
            "/usr/bin/c99*",
            "/usr/bin/cpp",
            "/usr/bin/cpp-*",
            "/usr/bin/gcov*",
            "/usr/bin/lto-dump*",
            // Triplet-prefixed names (x86_64-linux-gnu-gcc-12, aarch64-linux-gnu-ld.gold).
            "/usr/bin/*-linux-gnu-*",
            "/usr/bin/*-linux-gnu*-*",
            "/usr/bin/ld",
            "/usr/bin/ld.*",
            "/usr/bin/as",
            "/usr/bin/ar",
            "/usr/bin/ranlib",
            "/usr/bin/nm",
            "/usr/bin/objdump",
            "/usr/bin/objcopy",
            "/usr/bin/strip",
            "/usr/bin/readelf",
            "/usr/bin/addr2line",
            "/usr/bin/c++filt",
            "/usr/bin/elfedit",
            "/usr/bin/gprof*",
            "/usr/bin/gold",
            "/usr/bin/dwp",
            "/usr/bin/make",
            "/usr/bin/gmake",
            "/usr/bin/make-first-existing-target",
            "/usr/bin/cmake",
            "/usr/bin/ctest",
            "/usr/bin/cpack",
            "/usr/bin/pkg-config",
            "/usr/bin/pkgconf",
            "/usr/bin/*-pkg-config",
            "/usr/bin/dpkg-architecture",
            "/usr/bin/dpkg-buildflags",
            "/usr/lib/gcc/**",
            "/usr/libexec/gcc/**",
            "/usr/lib/gcc-cross/**",
            "/usr/include/**",
            "/usr/local/include/**",
            "/usr/share/cmake*/**",
            "/usr/lib/**/*.a",
            "/usr/lib64/**/*.a",
            "/usr/local/lib/**/*.a",
            "/usr/lib/*-linux-gnu/*crt*.o",
            "/usr/lib/**/pkgconfig/**",
            "/usr/share/pkgconfig/**",
            "/usr/lib/python3*/config-*/**",
            "/usr/lib/**/libbfd-*.so",
            "/usr/lib/**/libopcodes-*.so",
            "/usr/lib/**/libctf*.so*",
            "/usr/lib/**/libsframe.so*",
            "/usr/lib/**/libgprofng.so*",
            "/usr/lib/**/libasan.so*",
            "/usr/lib/**/libtsan.so*",
            "/usr/lib/**/liblsan.so*",
            "/usr/lib/**/libubsan.so*",
            "/usr/lib/**/libhwasan.so*",
            "/usr/lib/**/libcc1.so*",
            "/usr/share/perl5/Dpkg/**",
            "/usr/share/dpkg/*.mk",
        ],
    },
    Rule {
        id: "tests",
        reason: "test suites shipped inside packages and the function's own tests are not run in Lambda",
        profile: Profile::Safe,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/tests/**",
            "**/tests",
            "**/__tests__/**",
            "**/__tests__",
            "**/conftest.py",
            // A directory named test inside a package, not a package named "test".
            "**/node_modules/*/**/test/**",
            "**/node_modules/*/**/test",
            "**/*.test.js",
            "**/*.test.ts",
            "**/*.test.mjs",
            "**/*.spec.js",
            "**/*.spec.ts",
        ],
    },
    Rule {
        id: "tests",
        reason: "test suites shipped inside packages and the function's own tests are not run in Lambda",
        profile: Profile::Safe,
        classes: &[Class::Code, Class::Assets],
        // pytest's file convention; not `*_test.py`, which runtime modules use
        // (`ab_test.py`).
        globs: &["**/test_*.py", "**/test/**", "**/test"],
    },
    Rule {
        id: "docs",
        reason: "documentation, man and info pages are never read by a function",
        profile: Profile::Safe,
        classes: &[Class::System],
        globs: &[
            "/usr/share/doc/**",
            "/usr/share/man/**",
            "/usr/share/info/**",
            "/usr/share/gtk-doc/**",
            "/usr/local/share/man/**",
        ],
    },
    Rule {
        id: "docs",
        reason: "documentation, man and info pages are never read by a function",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &["**/node_modules/**/*.md"],
    },
    Rule {
        id: "locales",
        reason: "message translations: a function answers in one language",
        profile: Profile::Aggressive,
        classes: NON_BASE,
        globs: &["/usr/share/locale/**"],
    },
    Rule {
        id: "type-stubs",
        reason: "type stubs are only read by type checkers and editors",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/*.pyi",
            "**/node_modules/**/*.d.ts",
            "**/node_modules/**/*.d.mts",
            "**/node_modules/**/*.d.cts",
        ],
    },
    Rule {
        id: "source-maps",
        reason: "source maps only help debuggers",
        profile: Profile::Aggressive,
        classes: PACKAGES_AND_CODE,
        globs: &[
            "**/*.js.map",
            "**/*.mjs.map",
            "**/*.cjs.map",
            "**/*.css.map",
        ],
    },
];

pub const DEV_DEPENDENCIES: (&str, &str) = (
    "dev-dependencies",
    "test runners, linters, type checkers and build tools installed next to the function",
);
pub const STALE_BYTECODE: (&str, &str) = (
    "stale-bytecode",
    "bytecode for a Python version the image does not run is never loaded",
);

/// Python distributions that only serve development (PEP 503 names).
const DEV_PYTHON: &[&str] = &[
    "pytest",
    "pluggy",
    "iniconfig",
    "py",
    "coverage",
    "pytest-cov",
    "pytest-mock",
    "pytest-asyncio",
    "pytest-xdist",
    "pytest-timeout",
    "execnet",
    "mypy",
    "black",
    "flake8",
    "pyflakes",
    "pycodestyle",
    "mccabe",
    "pylint",
    "astroid",
    "isort",
    "ruff",
    "pre-commit",
    "tox",
    "nox",
    "hypothesis",
    "moto",
    "freezegun",
    "responses",
    "ipython",
    "ipdb",
    "sphinx",
    "wheel",
    "boto3-stubs",
    "botocore-stubs",
    "types-awscrt",
    "types-s3transfer",
    "bandit",
    "safety",
    "twine",
    "build",
    "virtualenv",
];

const DEV_NODE: &[&str] = &[
    "typescript",
    "jest",
    "ts-jest",
    "babel-jest",
    "ts-node",
    "eslint",
    "prettier",
    "nodemon",
    "mocha",
    "chai",
    "sinon",
    "vitest",
    "nyc",
    "webpack",
    "webpack-cli",
    "esbuild",
    "rollup",
    "serverless",
    "aws-cdk",
    "husky",
    "lint-staged",
    "@types",
    "@jest",
    "@typescript-eslint",
    "@vitest",
    "@eslint",
];

fn is_dev_python(key: &str, extra: &HashSet<String>) -> bool {
    DEV_PYTHON.contains(&key)
        || extra.contains(key)
        || key.starts_with("pytest-")
        || key.starts_with("types-")
        || key.ends_with("-stubs")
        || key.starts_with("mypy-boto3-")
        || key.starts_with("flake8-")
}

fn is_dev_node(name: &str, extra: &HashSet<String>) -> bool {
    let scope = name.split('/').next().unwrap_or(name);
    DEV_NODE.contains(&name)
        || DEV_NODE.contains(&scope)
        || extra.contains(name)
        || name.starts_with("eslint-")
        || name.starts_with("@types/")
}

#[derive(Clone, Debug, Default)]
pub struct StripOptions {
    pub profile: Profile,
    pub strip: Vec<String>,
    pub keep: Vec<String>,
    /// OS packages to treat as build-only (`--strip-package`).
    pub strip_packages: Vec<String>,
    /// OS packages to keep whatever the rules say (`--keep-package`).
    pub keep_packages: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub reason: String,
}

/// Which final paths a rewrite would remove, and why.
pub struct StripPlan {
    /// Aligned with `FsIndex::iter()`: the rule (index into `rules`) removing the path.
    pub decisions: Vec<Option<u16>>,
    pub rules: Vec<RuleInfo>,
    pub by_rule: BTreeMap<String, Count>,
    pub total: Count,
    /// Paths a rule matched but that stay, with why.
    pub protected: Vec<(String, String)>,
}

fn glob(pattern: &str) -> Result<globset::Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::Usage(format!("invalid glob '{pattern}': {e}")))
}

/// User globs are absolute; a bare `dir/**` is taken from the root.
fn user_glob(p: &str) -> String {
    if p.starts_with('/') || p.starts_with("**") {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

struct Matcher {
    set: GlobSet,
    /// glob index → rule index
    owner: Vec<u16>,
}

/// The `--keep` globs: `--keep dir` also keeps what is under it.
pub fn keep_set(keep: &[String]) -> Result<GlobSet> {
    let mut keep_builder = GlobSetBuilder::new();
    for g in keep {
        keep_builder.add(glob(&user_glob(g))?);
        if !g.ends_with("**") {
            keep_builder.add(glob(&format!("{}/**", user_glob(g).trim_end_matches('/')))?);
        }
    }
    keep_builder
        .build()
        .map_err(|e| Error::Usage(format!("invalid --keep glob: {e}")))
}

/// `base` is the filesystem of the base layers alone: a path it has is never
/// removed, because without a whiteout (which would touch the base) the base's
/// version would come back.
/// `packages`: paths of removed OS packages (the `build-packages` rule).
pub fn plan(
    index: &FsIndex,
    classes: &Classification,
    opts: &StripOptions,
    base: &FsIndex,
    packages: &HashMap<String, Option<usize>>,
) -> Result<StripPlan> {
    // Rule table: user --strip first, then the built-ins of the profile.
    let mut rules: Vec<RuleInfo> = Vec::new();
    let mut builder = GlobSetBuilder::new();
    let mut owner = Vec::new();
    let mut rule_classes: Vec<&'static [Class]> = Vec::new();
    for g in &opts.strip {
        builder.add(glob(&user_glob(g))?);
        owner.push(rules.len() as u16);
        rules.push(RuleInfo {
            id: "user-strip".into(),
            reason: format!("matched --strip {g}"),
        });
        rule_classes.push(NON_BASE);
    }
    let package_rule = rules.len() as u16;
    rules.push(RuleInfo {
        id: super::packages::RULE.0.into(),
        reason: super::packages::RULE.1.into(),
    });
    for r in RULES.iter().filter(|r| r.profile <= opts.profile) {
        let id = match rules.iter().position(|x| x.id == r.id) {
            Some(i) => i,
            None => {
                rules.push(RuleInfo {
                    id: r.id.into(),
                    reason: r.reason.into(),
                });
                rules.len() - 1
            }
        };
        for g in r.globs {
            builder.add(glob(g)?);
            owner.push(id as u16);
            rule_classes.push(r.classes);
            // `dir/**` also names `dir` itself, which goes once everything in it goes.
            if let Some(dir) = g.strip_suffix("/**") {
                builder.add(glob(dir)?);
                owner.push(id as u16);
                rule_classes.push(r.classes);
            }
        }
    }
    let dev_rule = rules.len() as u16;
    rules.push(RuleInfo {
        id: DEV_DEPENDENCIES.0.into(),
        reason: DEV_DEPENDENCIES.1.into(),
    });
    let pyc_rule = rules.len() as u16;
    rules.push(RuleInfo {
        id: STALE_BYTECODE.0.into(),
        reason: STALE_BYTECODE.1.into(),
    });
    let matcher = Matcher {
        set: builder
            .build()
            .map_err(|e| Error::Usage(format!("invalid glob: {e}")))?,
        owner,
    };
    let keep = keep_set(&opts.keep)?;

    let dev = dev_packages(index, classes);
    let pyc_keep = classes.python_tag.clone();

    // First pass: rule matches.
    let mut decisions: Vec<Option<u16>> = Vec::with_capacity(index.len());
    let mut kept_by_user: Vec<bool> = Vec::with_capacity(index.len());
    let mut shadowing: Vec<bool> = Vec::with_capacity(index.len());
    for ((path, node), c) in index.iter().zip(&classes.items) {
        if c.class == Class::Base {
            decisions.push(None);
            kept_by_user.push(false);
            shadowing.push(false);
            continue;
        }
        let abs = format!("/{path}");
        let mut decision = None;
        for gi in matcher.set.matches(&abs) {
            let rule = matcher.owner[gi];
            if rule_classes[gi].contains(&c.class) && decision.is_none_or(|d| rule < d) {
                decision = Some(rule);
            }
        }
        if decision.is_none_or(|d| package_rule < d) && packages.contains_key(path) {
            decision = Some(package_rule);
        }
        if decision.is_none() && dev.contains(path) {
            decision = Some(dev_rule);
        }
        if decision.is_none()
            && !node.is_dir()
            && let Some(tag) = &pyc_keep
            && let Some(t) = pyc_tag(path)
            && t != tag
        {
            decision = Some(pyc_rule);
        }
        let user_keep = decision.is_some() && keep.is_match(&abs);
        let shadows_base = decision.is_some() && base.get(path).is_some();
        kept_by_user.push(user_keep);
        shadowing.push(shadows_base);
        decisions.push(if user_keep || shadows_base {
            None
        } else {
            decision
        });
    }

    let entries: Vec<(&str, &crate::fsindex::Node)> = index.iter().collect();
    let position: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i))
        .collect();
    let mut protected: Vec<(String, String)> = entries
        .iter()
        .zip(&kept_by_user)
        .filter(|(_, k)| **k)
        .map(|((p, _), _)| (p.to_string(), "matched --keep".to_string()))
        .chain(
            entries
                .iter()
                .zip(&shadowing)
                .filter(|(_, s)| **s)
                .map(|((p, _), _)| {
                    (
                        p.to_string(),
                        "replaces a base-layer path; removing it would bring the base version back"
                            .to_string(),
                    )
                }),
        )
        .collect();

    // Protect link targets until nothing changes: a kept link may protect a link.
    loop {
        let mut changed = false;
        let mut by_content: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, (_, n)) in entries.iter().enumerate() {
            if let Some(c) = n.content {
                by_content.entry(c).or_default().push(i);
            }
        }
        for (i, (path, n)) in entries.iter().enumerate() {
            if decisions[i].is_some() || n.ftype != FileType::Symlink {
                continue;
            }
            let dest = FsIndex::symlink_destination(path, n.target.as_deref().unwrap_or(""));
            // The links on the way to the target must stay too, or this one dangles.
            let mut via = Vec::new();
            let dest = match index.resolve_via(parent(&dest), &mut via) {
                Some(p) if !p.is_empty() => format!("{p}/{}", basename(&dest)),
                _ => dest,
            };
            for link in via {
                if let Some(&j) = position.get(link.as_str()) {
                    changed |= unstrip(&mut decisions, &mut protected, j, &link, || {
                        format!("a kept symlink (/{path}) resolves through it")
                    });
                }
            }
            let Some(&j) = position.get(dest.as_str()) else {
                continue;
            };
            // A link to a directory keeps the directory, not everything in it:
            // merged-/usr links (`/lib -> usr/lib`) would otherwise protect all of /usr.
            changed |= unstrip(&mut decisions, &mut protected, j, &dest, || {
                format!("a kept symlink (/{path}) points to it")
            });
        }
        for members in by_content.values().filter(|m| m.len() > 1) {
            let any_kept = members.iter().any(|&m| decisions[m].is_none());
            if any_kept {
                for &m in members {
                    changed |= unstrip(&mut decisions, &mut protected, m, entries[m].0, || {
                        "a kept hard link shares its content".into()
                    });
                }
            }
        }
        if !changed {
            break;
        }
    }

    // Directories go only when everything under them goes (children before parents).
    let mut has_kept: HashSet<&str> = HashSet::new();
    for i in (0..entries.len()).rev() {
        let (path, n) = entries[i];
        if n.is_dir() && decisions[i].is_some() && has_kept.contains(path) {
            decisions[i] = None;
        }
        if decisions[i].is_none() {
            let mut d = parent(path);
            while !d.is_empty() && has_kept.insert(d) {
                d = parent(d);
            }
        }
    }

    let mut by_rule: BTreeMap<String, Count> = BTreeMap::new();
    let mut total = Count::default();
    let mut seen_content = HashSet::new();
    for (i, (_, n)) in entries.iter().enumerate() {
        let Some(r) = decisions[i] else { continue };
        if n.is_dir() {
            continue;
        }
        let bytes = match n.content {
            Some(c) if seen_content.insert(c) => index.content(c).size,
            _ => 0,
        };
        by_rule
            .entry(rules[r as usize].id.clone())
            .or_default()
            .add(bytes);
        total.add(bytes);
    }
    protected.sort();
    protected.dedup_by(|a, b| a.0 == b.0);
    Ok(StripPlan {
        decisions,
        rules,
        by_rule,
        total,
        protected,
    })
}

/// `__pycache__/mod.cpython-311.pyc` → `cpython-311`.
fn pyc_tag(path: &str) -> Option<&str> {
    if basename(parent(path)) != "__pycache__" {
        return None;
    }
    let name = basename(path).strip_suffix(".pyc")?;
    let tag = name.split('.').find(|s| s.starts_with("cpython-"))?;
    Some(tag)
}

/// Keep entry `j`, which a rule matched, and say why; whether that changed anything.
fn unstrip(
    decisions: &mut [Option<u16>],
    protected: &mut Vec<(String, String)>,
    j: usize,
    path: &str,
    why: impl FnOnce() -> String,
) -> bool {
    if decisions[j].is_none() {
        return false;
    }
    decisions[j] = None;
    protected.push((path.to_string(), why()));
    true
}

/// Distribution names in a requirements file (PEP 503-normalized).
fn requirement_names(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            normalize_dist_name(&name)
        })
        .collect()
}

/// Paths belonging to development-only packages.
fn dev_packages(index: &FsIndex, classes: &Classification) -> HashSet<String> {
    let root = &classes.task_root;
    let text = |name: &str| {
        index
            .get(&format!("{root}/{name}"))
            .and_then(|n| index.captured_text(n))
    };
    let mut extra_py = HashSet::new();
    for name in [
        "requirements-dev.txt",
        "dev-requirements.txt",
        "requirements_dev.txt",
    ] {
        if let Some(t) = text(name) {
            extra_py.extend(requirement_names(t));
        }
    }
    // What the function says it needs at run time is never a dev dependency,
    // whatever its name (a function may well depend on typescript or esbuild).
    let runtime_py = text("requirements.txt")
        .map(requirement_names)
        .unwrap_or_default();
    let mut extra_node = HashSet::new();
    let mut runtime_node = HashSet::new();
    if let Some(t) = text("package.json")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(t)
    {
        let keys = |field: &str| {
            v.get(field)
                .and_then(|d| d.as_object())
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        extra_node.extend(keys("devDependencies"));
        for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
            runtime_node.extend(keys(field));
        }
    }
    let mut out = HashSet::new();
    let mut dev_ids = HashSet::new();
    for (i, p) in classes.packages.iter().enumerate() {
        let dev = match p.ecosystem {
            "python" => is_dev_python(&p.key, &extra_py) && !runtime_py.contains(&p.key),
            _ => is_dev_node(&p.name, &extra_node) && !runtime_node.contains(&p.name),
        };
        if !dev {
            continue;
        }
        dev_ids.insert(i as u32);
        if p.ecosystem == "node" {
            out.insert(p.path.clone());
            out.extend(index.descendants(&p.path).map(|(d, _)| d.to_string()));
        }
    }
    for (path, id) in &classes.listed {
        if dev_ids.contains(id) {
            out.insert(path.clone());
            if let Some(n) = index.get(path)
                && n.is_dir()
            {
                out.extend(index.descendants(path).map(|(d, _)| d.to_string()));
            }
        }
    }
    // Python top-level package directories of dev distributions (e.g. `_pytest/`).
    for (path, n) in index.iter() {
        if n.is_dir()
            && let Some(&id) = classes.listed.get(&format!("{path}/__init__.py"))
            && dev_ids.contains(&id)
        {
            out.insert(path.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyc_tags() {
        assert_eq!(
            pyc_tag("a/__pycache__/m.cpython-311.pyc"),
            Some("cpython-311")
        );
        assert_eq!(
            pyc_tag("a/__pycache__/m.cpython-311.opt-1.pyc"),
            Some("cpython-311")
        );
        assert_eq!(pyc_tag("a/m.pyc"), None);
    }

    #[test]
    fn globs_compile() {
        for r in RULES {
            for g in r.globs {
                glob(g).unwrap();
            }
        }
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;
    use crate::analysis::classify::classify;
    use crate::layer::{Entry, EntryKind, Meta};

    fn e(path: &str, kind: EntryKind, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            meta: Meta {
                mode: 0o755,
                ..Meta::default()
            },
            size,
            data_offset: 0,
            content_hash: None,
            captured: None,
            sparse: false,
        }
    }

    fn plan_for(upper: Vec<Entry>) -> (FsIndex, StripPlan) {
        let mut ix = FsIndex::new();
        ix.apply(
            vec![
                e("usr", EntryKind::Dir, 0),
                e("usr/lib", EntryKind::Dir, 0),
                e("usr/bin", EntryKind::Dir, 0),
                e("lib", EntryKind::Symlink("usr/lib".into()), 0),
            ],
            "base",
        )
        .unwrap();
        let base = ix.clone();
        ix.apply(upper, "app").unwrap();
        ix.finish();
        let classes = classify(&ix, 1, "var/task", &Default::default()).unwrap();
        let plan = plan(
            &ix,
            &classes,
            &StripOptions::default(),
            &base,
            &HashMap::new(),
        )
        .unwrap();
        (ix, plan)
    }

    fn removed(ix: &FsIndex, p: &StripPlan) -> Vec<String> {
        ix.iter()
            .zip(&p.decisions)
            .filter(|(_, d)| d.is_some())
            .map(|((path, _), _)| path.to_string())
            .collect()
    }

    #[test]
    fn a_link_to_a_directory_does_not_protect_its_contents() {
        let (ix, p) = plan_for(vec![
            e("usr/lib/gcc", EntryKind::Dir, 0),
            e("usr/lib/gcc/cc1", EntryKind::File, 100),
        ]);
        assert_eq!(removed(&ix, &p), vec!["usr/lib/gcc", "usr/lib/gcc/cc1"]);
    }

    #[test]
    fn a_kept_link_protects_its_target_file() {
        let (ix, p) = plan_for(vec![
            e("usr/bin/gcc-12", EntryKind::File, 100),
            e("usr/bin/gcc", EntryKind::Symlink("gcc-12".into()), 0),
            e(
                "usr/bin/my-cc",
                EntryKind::Symlink("/usr/bin/gcc-12".into()),
                0,
            ),
        ]);
        // gcc (a toolchain name) goes; my-cc stays, so gcc-12 must stay too.
        assert_eq!(removed(&ix, &p), vec!["usr/bin/gcc"]);
        assert!(
            p.protected
                .iter()
                .any(|(path, why)| path == "usr/bin/gcc-12" && why.contains("my-cc"))
        );
    }

    #[test]
    fn a_kept_link_protects_the_links_it_resolves_through() {
        // `test` matches the function's-own-tests rule, but the kept `data` link
        // reaches its file through it: removing `test` would leave `data` dangling.
        let (ix, p) = plan_for(vec![
            e("var", EntryKind::Dir, 0),
            e("var/task", EntryKind::Dir, 0),
            e("var/task/src", EntryKind::Dir, 0),
            e("var/task/src/fixtures", EntryKind::Dir, 0),
            e("var/task/src/fixtures/d.json", EntryKind::File, 10),
            e(
                "var/task/test",
                EntryKind::Symlink("src/fixtures".into()),
                0,
            ),
            e("var/task/data", EntryKind::Symlink("test/d.json".into()), 0),
        ]);
        let gone = removed(&ix, &p);
        assert!(!gone.contains(&"var/task/test".to_string()), "{gone:?}");
        assert!(
            p.protected
                .iter()
                .any(|(path, why)| path == "var/task/test" && why.contains("resolves through")),
            "{:?}",
            p.protected
        );
    }
}
