//! Named, explained rules for what a Lambda function does not need at run time.
//! Only files outside the matched base layers are candidates; a file that a kept
//! symlink or hard link points to is never removed; `--keep` wins over everything.
//!
//! The rules are data (`rules`), development-only packages are found by `devdeps`,
//! and this file turns both into a plan: which final path goes, by which rule.

mod devdeps;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use self::devdeps::dev_packages;
pub use self::rules::Profile;
use self::rules::{DEV_DEPENDENCIES, NON_BASE, RULES, STALE_BYTECODE};
use super::classify::{Class, Classification};
use crate::error::{Error, Result};
use crate::fsindex::{Count, FsIndex, PathId, PerPath};
use crate::layer::entry::{FileType, basename, parent};

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
    /// The rule (index into `rules`) removing each path, if one does.
    pub decisions: PerPath<Option<u16>>,
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

    // First pass: rule matches. A match that `--keep` or a base path overrides
    // is noted as protected (sorted below, so the order they come in does not matter).
    let mut protected: Vec<(String, String)> = Vec::new();
    let mut decisions = PerPath::new(index, |id, path, node| {
        let c = &classes.items[id];
        if c.class == Class::Base {
            return None;
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
        if user_keep {
            protected.push((path.to_string(), "matched --keep".to_string()));
        }
        if shadows_base {
            protected.push((
                path.to_string(),
                "replaces a base-layer path; removing it would bring the base version back"
                    .to_string(),
            ));
        }
        if user_keep || shadows_base {
            None
        } else {
            decision
        }
    });

    let entries: Vec<(PathId, &str, &crate::fsindex::Node)> = index.iter_ids().collect();
    let position: HashMap<&str, PathId> = entries.iter().map(|&(id, p, _)| (p, id)).collect();

    // Protect link targets until nothing changes: a kept link may protect a link.
    loop {
        let mut changed = false;
        let mut by_content: HashMap<u32, Vec<(PathId, &str)>> = HashMap::new();
        for &(id, path, n) in &entries {
            if let Some(c) = n.content {
                by_content.entry(c).or_default().push((id, path));
            }
        }
        for &(id, path, n) in &entries {
            if decisions[id].is_some() || n.ftype != FileType::Symlink {
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
            let any_kept = members.iter().any(|&(m, _)| decisions[m].is_none());
            if any_kept {
                for &(m, path) in members {
                    changed |= unstrip(&mut decisions, &mut protected, m, path, || {
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
    for &(id, path, n) in entries.iter().rev() {
        if n.is_dir() && decisions[id].is_some() && has_kept.contains(path) {
            decisions[id] = None;
        }
        if decisions[id].is_none() {
            let mut d = parent(path);
            while !d.is_empty() && has_kept.insert(d) {
                d = parent(d);
            }
        }
    }

    let mut by_rule: BTreeMap<String, Count> = BTreeMap::new();
    let mut total = Count::default();
    let mut seen_content = HashSet::new();
    for &(id, _, n) in &entries {
        let Some(r) = decisions[id] else { continue };
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
    decisions: &mut PerPath<Option<u16>>,
    protected: &mut Vec<(String, String)>,
    j: PathId,
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
            program: None,
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
        ix.iter_ids()
            .filter(|&(id, _, _)| p.decisions[id].is_some())
            .map(|(_, path, _)| path.to_string())
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
