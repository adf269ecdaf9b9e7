//! The rewrite plan: which new layer (`system`, `deps`, `code`) each kept path goes
//! to, which base paths need a whiteout (deletions the source made, kept as they
//! were), and which paths are removed and why.

use std::collections::HashMap;

pub mod verify;

use serde::Serialize;

use crate::analysis::Analysis;
use crate::analysis::classify::{Class, classify_path};
use crate::fsindex::{FsIndex, PathKey};
use crate::layer::Meta;
use crate::layer::entry::parent;

/// The classes that get a layer of their own, in output order: code last.
pub const LAYER_ORDER: [Class; 3] = [Class::System, Class::Deps, Class::Code];

#[derive(Clone, Debug, Serialize)]
pub struct Removal {
    pub path: String,
    pub rule: String,
    pub bytes: u64,
}

pub struct Plan {
    /// Aligned with `FsIndex::iter()`: the new layer a path goes to; `None` for
    /// paths the base provides and for removed paths.
    pub placement: Vec<Option<Class>>,
    /// Base paths the source's upper layers deleted, by the layer that deletes them again.
    pub whiteouts: Vec<(String, Class)>,
    /// Classes with something to write, in output order.
    pub layers: Vec<Class>,
    pub removed: Vec<Removal>,
    /// Database files written with new content: path → index in
    /// `Analysis::packages.edited`.
    pub edited: HashMap<String, usize>,
    /// Path → position in index order.
    position: HashMap<String, usize>,
}

impl Plan {
    pub fn new(a: &Analysis) -> Plan {
        let base_count = a.base_layer_count();
        let mut placement = Vec::with_capacity(a.index.len());
        let mut removed = Vec::new();
        let mut position = HashMap::with_capacity(a.index.len());
        for (i, (((path, node), c), d)) in a
            .index
            .iter()
            .zip(&a.classes.items)
            .zip(&a.strip.decisions)
            .enumerate()
        {
            position.insert(path.to_string(), i);
            if (node.layer as usize) < base_count {
                placement.push(None);
                continue;
            }
            if let Some(r) = d {
                removed.push(Removal {
                    path: format!("/{path}"),
                    rule: a.strip.rules[*r as usize].id.clone(),
                    bytes: a.index.size_of(node),
                });
                placement.push(None);
                continue;
            }
            placement.push(Some(c.class));
        }

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

        let layers = LAYER_ORDER
            .into_iter()
            .filter(|c| placement.contains(&Some(*c)) || whiteouts.iter().any(|(_, w)| w == c))
            .collect();
        let edited = a
            .packages
            .edited
            .iter()
            .enumerate()
            .filter(|(_, e)| position.contains_key(&e.path))
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        Plan {
            placement,
            whiteouts,
            layers,
            removed,
            edited,
            position,
        }
    }

    pub fn class_of(&self, path: &str) -> Option<Class> {
        self.position.get(path).and_then(|&i| self.placement[i])
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
        .iter()
        .zip(&plan.placement)
        .filter(|(_, p)| **p == Some(class))
        .map(|((path, node), _)| Item::Path(path, node))
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
