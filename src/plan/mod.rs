//! The rewrite plan: which new layer (`system`, `deps`, `assets`, `code`) each kept
//! path goes to, which base paths need a whiteout (deletions the source made, kept
//! as they were), which paths are removed and why, and which source layers go into
//! the output unchanged (pass-through: same blob, no recompression, no upload).

use std::collections::HashMap;

use serde::Serialize;

use crate::analysis::Analysis;
use crate::analysis::classify::{Class, classify_path};
use crate::fsindex::{FsIndex, PathId, PathKey, PerPath};
use crate::layer::Meta;
use crate::layer::entry::parent;

/// The classes that get a layer of their own, in output order: code last.
pub const LAYER_ORDER: [Class; 4] = [Class::System, Class::Deps, Class::Assets, Class::Code];

#[derive(Clone, Debug, Serialize)]
pub struct Removal {
    pub path: String,
    pub rule: String,
    pub bytes: u64,
}

/// One layer of the output above the base, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputLayer {
    /// Written by coldpress from the placed paths of a class.
    Written(Class),
    /// Source layer `layer`, unchanged: all of it is `class`.
    Source { layer: usize, class: Class },
}

impl OutputLayer {
    pub fn class(self) -> Class {
        match self {
            OutputLayer::Written(c) | OutputLayer::Source { class: c, .. } => c,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Let qualifying source layers through unchanged (gzip output only: a
    /// pass-through layer keeps its own compression).
    pub pass_through: bool,
}

pub struct Plan {
    /// The new layer each path goes to; `None` for paths the base provides and
    /// for removed paths.
    pub placement: PerPath<Option<Class>>,
    /// The path comes with a pass-through layer, so no written layer carries it.
    pub passed: PerPath<bool>,
    /// Every output layer above the base, in order.
    pub outputs: Vec<OutputLayer>,
    /// Base paths the source's upper layers deleted, by the layer that deletes them again.
    pub whiteouts: Vec<(String, Class)>,
    /// Classes with something to write, in output order.
    pub layers: Vec<Class>,
    pub removed: Vec<Removal>,
    /// Database files written with new content: path → index in
    /// `Analysis::packages.edited`.
    pub edited: HashMap<String, usize>,
    /// Path → id in the analysed index.
    position: HashMap<String, PathId>,
}

impl Plan {
    pub fn new(a: &Analysis) -> Plan {
        Self::with_options(a, PlanOptions::default())
    }

    pub fn with_options(a: &Analysis, opts: PlanOptions) -> Plan {
        let base_count = a.base_layer_count();
        let mut removed = Vec::new();
        let mut position = HashMap::with_capacity(a.index.len());
        let mut placement = PerPath::new(&a.index, |id, path, node| {
            position.insert(path.to_string(), id);
            if (node.layer as usize) < base_count {
                return None;
            }
            if let Some(r) = a.strip.decisions[id] {
                removed.push(Removal {
                    path: format!("/{path}"),
                    rule: a.strip.rules[r as usize].id.clone(),
                    bytes: a.index.size_of(node),
                });
                return None;
            }
            Some(a.classes.items[id].class)
        });

        // Deletions of base paths: the topmost missing path of each deleted subtree.
        let mut whiteouts = Vec::new();
        let mut skip: Option<String> = None;
        for (path, _) in a.base_index.iter() {
            if path.is_empty() {
                continue;
            }
            if let Some(s) = &skip
                && path.starts_with(s.as_str())
            {
                continue;
            }
            if a.index.get(path).is_some() {
                continue;
            }
            skip = Some(format!("{path}/"));
            let p = parent(path);
            let parent_is_dir = p.is_empty() || a.index.get(p).is_some_and(|n| n.is_dir());
            if !parent_is_dir {
                // The parent became a file or a link: that entry already replaces the subtree.
                continue;
            }
            let class = classify_path(
                path,
                false,
                &a.classes.task_root,
                &a.classes.listed,
                &HashMap::new(),
            )
            .class;
            whiteouts.push((path.to_string(), class));
        }

        let mut passed = PerPath::new(&a.index, |_, _, _| false);
        let sources = if opts.pass_through {
            pass_through(a, &mut placement, &mut passed, &position)
        } else {
            Vec::new()
        };
        let layers: Vec<Class> = LAYER_ORDER
            .into_iter()
            .filter(|c| {
                placement
                    .iter()
                    .any(|(id, p)| *p == Some(*c) && !passed[id])
                    || whiteouts.iter().any(|(_, w)| w == c)
            })
            .collect();
        let edited = a
            .packages
            .edited
            .iter()
            .enumerate()
            .filter(|(_, e)| position.contains_key(&e.path))
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        let mut outputs = Vec::new();
        for c in LAYER_ORDER {
            outputs.extend(
                sources
                    .iter()
                    .filter(|(_, sc)| *sc == c)
                    .map(|&(layer, class)| OutputLayer::Source { layer, class }),
            );
            if layers.contains(&c) {
                outputs.push(OutputLayer::Written(c));
            }
        }
        Plan {
            placement,
            passed,
            outputs,
            whiteouts,
            layers,
            removed,
            edited,
            position,
        }
    }

    /// Source layers the output carries unchanged.
    pub fn passed_layers(&self) -> impl Iterator<Item = (usize, Class)> + '_ {
        self.outputs.iter().filter_map(|o| match o {
            OutputLayer::Source { layer, class } => Some((*layer, *class)),
            OutputLayer::Written(_) => None,
        })
    }

    pub fn class_of(&self, path: &str) -> Option<Class> {
        self.position.get(path).and_then(|&id| self.placement[id])
    }

    /// Metadata for a directory written into `layer` only because something below
    /// it is. The final metadata when no higher new layer writes the directory
    /// itself; otherwise a stand-in that does not depend on the higher layer's
    /// content (the base's version, or the final one with mtime 0), so that e.g.
    /// the deps layer does not change when the code changes `/var/task`'s mtime.
    pub fn parent_meta(&self, a: &Analysis, path: &str, layer: Class) -> Meta {
        let node = a.index.get(path).expect("parents of kept paths exist");
        match self.class_of(path) {
            Some(own) if own > layer => match a.base_index.get(path) {
                Some(b) if b.is_dir() => b.meta.clone(),
                _ => Meta {
                    mtime: 0,
                    mtime_nsec: 0,
                    ..node.meta.clone()
                },
            },
            _ => node.meta.clone(),
        }
    }

    /// The new content of an edited database file.
    pub fn edited_content<'a>(&self, a: &'a Analysis, path: &str) -> Option<&'a [u8]> {
        self.edited
            .get(path)
            .map(|&i| a.packages.edited[i].content.as_slice())
    }

    /// The final filesystem the output must have: the source's minus the
    /// removed paths, with the edited paths' new content.
    pub fn expected(&self, a: &Analysis) -> FsIndex {
        let mut e = a.index.clone();
        e.remove_paths(self.removed.iter().map(|r| &r.path[1..]));
        for (path, &i) in &self.edited {
            let c = &a.packages.edited[i].content;
            e.set_content(path, c.len() as u64, xxhash_rust::xxh3::xxh3_128(c));
        }
        e
    }
}

/// Merge the index's placed paths and the whiteouts of one class into one sorted stream.
pub enum Item<'a> {
    Path(&'a str, &'a crate::fsindex::Node),
    Whiteout(&'a str),
}

pub fn items<'a>(a: &'a Analysis, plan: &'a Plan, class: Class) -> Vec<Item<'a>> {
    let mut paths = a
        .index
        .iter_ids()
        .filter(|&(id, _, _)| plan.placement[id] == Some(class) && !plan.passed[id])
        .map(|(_, path, node)| Item::Path(path, node))
        .peekable();
    let mut wh = plan
        .whiteouts
        .iter()
        .filter(|(_, c)| *c == class)
        .map(|(p, _)| p.as_str())
        .peekable();
    let mut out = Vec::new();
    loop {
        let take_path = match (paths.peek(), wh.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(Item::Path(p, _)), Some(w)) => PathKey::from(*p) <= PathKey::from(*w),
            (Some(Item::Whiteout(_)), _) => unreachable!(),
        };
        if take_path {
            out.push(paths.next().expect("peeked"));
        } else {
            out.push(Item::Whiteout(wh.next().expect("peeked")));
        }
    }
    out
}

/// Which upper source layers can be output layers as they are: every file of the
/// layer is in the final filesystem as that layer left it, none is stripped, all
/// are one class; it is gzip, names its parents and has no hard links or
/// whiteouts (checked while reading, see `AnalyzeOptions::keep_layer_entries`).
/// Its directories must not undo a later layer's version of them in the output.
/// Claims the layer's final paths (`passed`) and returns (layer, class) pairs.
fn pass_through(
    a: &Analysis,
    placement: &mut PerPath<Option<Class>>,
    passed: &mut PerPath<bool>,
    position: &HashMap<String, PathId>,
) -> Vec<(usize, Class)> {
    let base_count = a.base_layer_count();
    // A layer holding a package database file that is edited is not the same
    // layer any more.
    let edited: std::collections::HashSet<&str> =
        a.packages.edited.iter().map(|e| e.path.as_str()).collect();
    // First the per-layer test that does not depend on other layers' choices.
    let mut candidates: Vec<(usize, Class)> = Vec::new();
    'layer: for (l, info) in a.layers.iter().enumerate().skip(base_count) {
        let Some(entries) = &info.entries else {
            continue;
        };
        if info.changes.implicit_parents > 0
            || info.descriptor.media_type.layer_compression()
                != Some(crate::image::Compression::Gzip)
        {
            continue;
        }
        let mut class = None;
        let mut seen = std::collections::HashSet::new();
        for e in entries
            .iter()
            .filter(|e| e.kind != crate::layer::EntryKind::Dir)
        {
            let Some(&i) = position.get(&*e.path) else {
                continue 'layer;
            };
            if edited.contains(&*e.path) {
                continue 'layer;
            }
            let node = a.index.get(&e.path).expect("positions come from the index");
            let Some(c) = placement[i] else {
                continue 'layer; // stripped
            };
            if node.layer as usize != l || !seen.insert(i) || class.is_some_and(|k| k != c) {
                continue 'layer;
            }
            class = Some(c);
        }
        if let Some(c) = class {
            candidates.push((l, c));
        }
    }
    // Then the directories, against the placements the candidates make; a
    // candidate that fails is dropped and the rest checked again.
    loop {
        let mut claimed = placement.clone();
        for &(l, c) in &candidates {
            for e in a.layers[l].entries.iter().flatten() {
                if let Some(&i) = position.get(&*e.path)
                    && a.index.get(&e.path).is_some_and(|n| n.layer as usize == l)
                {
                    claimed[i] = Some(c);
                }
            }
        }
        let bad = candidates.iter().position(|&(l, c)| {
            a.layers[l].entries.iter().flatten().any(|e| {
                if e.kind != crate::layer::EntryKind::Dir {
                    return false;
                }
                let Some(&i) = position.get(&*e.path) else {
                    return true;
                };
                let node = a.index.get(&e.path).expect("positions come from the index");
                if !node.is_dir() {
                    return true;
                }
                match claimed[i] {
                    None => true,
                    Some(_) if node.layer as usize == l => false,
                    // A later output layer writes the final version, or ours is it.
                    Some(d) => d < c && e.meta != node.meta,
                }
            })
        });
        match bad {
            Some(k) => {
                candidates.remove(k);
            }
            None => {
                for &(l, c) in &candidates {
                    for e in a.layers[l].entries.iter().flatten() {
                        if let Some(&i) = position.get(&*e.path)
                            && a.index.get(&e.path).is_some_and(|n| n.layer as usize == l)
                        {
                            placement[i] = Some(c);
                            passed[i] = true;
                        }
                    }
                }
                return candidates;
            }
        }
    }
}
