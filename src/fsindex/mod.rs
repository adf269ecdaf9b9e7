//! The filesystem an image's layers produce, applied in order with the OCI
//! image-spec rules (layer.md "Applying Changesets"): whiteouts delete from lower
//! layers only; an opaque marker hides a directory's lower contents before the
//! layer's own entries apply, wherever it sits in the tar; a non-directory
//! replacing a directory removes the whole subtree; hard links share their
//! target's content and metadata, even if a later layer deletes the target.
//!
//! Memory grows with the number of paths (compact metadata), never with sizes.

mod path;
mod per_path;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use self::path::PathKey;
pub use self::per_path::{PathId, PerPath};
use crate::error::{Error, Result};
use crate::layer::entry::{FileType, parent};
use crate::layer::{Entry, EntryKind, Meta};

pub type ContentId = u32;

/// One version of a regular file's bytes, as a layer wrote it.
#[derive(Clone, Debug)]
pub struct Content {
    pub layer: u16,
    pub size: u64,
    /// Offset of the data in the layer's uncompressed stream.
    pub data_offset: u64,
    /// xxh3-128 of the data (identity for verification, not for security:
    /// the layer digests and diff_ids carry the cryptographic checks).
    pub hash: Option<u128>,
    /// What last happened to a path holding this version.
    last_loss: Option<Loss>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// Overwritten by a later entry at the same path (or a parent replaced).
    Shadowed,
    /// Removed by a whiteout or an opaque directory.
    Deleted,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub ftype: FileType,
    pub meta: Meta,
    /// The layer whose entry produced this path's current state.
    pub layer: u16,
    pub content: Option<ContentId>,
    /// Symlink target, as written.
    pub target: Option<Box<str>>,
    /// For a path created by a hard-link entry: a path that still shares its
    /// content (settled by `finish`, after later layers had their say).
    pub hardlink_to: Option<Box<str>>,
    /// Created by a hard-link entry (even when it is now its content's last name).
    pub linked: bool,
    pub dev: (u32, u32),
    /// A parent directory the layer did not contain (created like containerd does).
    pub implicit: bool,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.ftype == FileType::Dir
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    pub fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// What one layer did to the filesystem below it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerChanges {
    /// Tar entries that are files (whiteouts not included).
    pub entries: u64,
    /// Sum of regular file sizes in the layer.
    pub file_bytes: u64,
    /// Paths that did not exist below.
    pub added: Count,
    /// Paths that existed below and were replaced.
    pub changed: Count,
    /// Paths of lower layers removed (whiteouts, opaque directories), with their bytes.
    pub deleted: Count,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    pub hardlinks: u64,
    pub implicit_parents: u64,
    /// Bytes this layer wrote that are not in the final filesystem.
    pub wasted_bytes: u64,
    pub shadowed_bytes: u64,
    pub deleted_bytes: u64,
}

#[derive(Default, Clone)]
pub struct FsIndex {
    nodes: BTreeMap<PathKey, Node>,
    pub contents: Vec<Content>,
    /// Captured small-file contents (RECORD, package.json), by content version.
    pub captured: HashMap<ContentId, Box<[u8]>>,
    /// What each ELF file or script needs to run, by content version (noted
    /// by the layer reader for spooled layers).
    pub programs: HashMap<ContentId, Box<crate::layer::program::Program>>,
    pub layers: Vec<LayerChanges>,
    finished: bool,
    /// Paths were added or removed after `finish` (a derived filesystem such as
    /// the expected output): positions moved, so this index hands out no `PathId`s.
    reshaped: bool,
}

fn implicit_dir(layer: u16) -> Node {
    Node {
        ftype: FileType::Dir,
        meta: Meta {
            mode: 0o755,
            ..Meta::default()
        },
        layer,
        content: None,
        target: None,
        hardlink_to: None,
        linked: false,
        dev: (0, 0),
        implicit: true,
    }
}

impl FsIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&PathKey::from(path))
    }

    /// All paths in order; parents come before their children.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `iter()` with each path's id, for reading and building `PerPath`s. Ids
    /// are positions, valid only once no layer can add or remove a path: the
    /// index must be finished and not changed since.
    pub fn iter_ids(&self) -> impl Iterator<Item = (PathId, &str, &Node)> {
        assert!(
            self.finished && !self.reshaped,
            "path ids of an index whose paths can still change"
        );
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (PathId::new(i), k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Descendants of `dir` (not `dir` itself), in order.
    pub fn descendants<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(PathKey::from(prefix.as_str())..)
            .take_while(move |(k, _)| k.as_str().starts_with(&prefix))
            .filter(|(k, _)| !k.as_str().is_empty())
            .map(|(k, v)| (k.as_str(), v))
    }

    fn loss(&mut self, node: &Node, loss: Loss) {
        if let Some(c) = node.content {
            self.contents[c as usize].last_loss = Some(loss);
        }
    }

    /// Remove `path` and everything under it, keeping nodes from `keep_layer`.
    /// Returns (paths removed, bytes of removed files).
    fn remove_tree(&mut self, path: &str, loss: Loss, keep_layer: Option<u16>) -> (u64, u64) {
        let mut removed = Vec::new();
        let key = PathKey::from(path);
        if !path.is_empty()
            && let Some(n) = self.nodes.get(&key)
            && Some(n.layer) != keep_layer
        {
            removed.push(key.clone());
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        for (k, n) in self.nodes.range(PathKey::from(prefix.as_str())..) {
            if !k.as_str().starts_with(&prefix) {
                break;
            }
            if k.as_str().is_empty() || Some(n.layer) == keep_layer {
                continue;
            }
            removed.push(k.clone());
        }
        let mut files = 0;
        let mut bytes = 0;
        for k in removed {
            let n = self.nodes.remove(&k).expect("collected above");
            if !n.is_dir() {
                files += 1;
                bytes += n.content.map_or(0, |c| self.contents[c as usize].size);
            }
            self.loss(&n, loss);
        }
        (files, bytes)
    }

    /// Make sure every parent of `path` is a directory, creating missing ones.
    fn ensure_parents(&mut self, path: &str, layer: u16, what: &str) -> Result<()> {
        let mut end = 0;
        let bytes = path.as_bytes();
        while let Some(pos) = bytes[end..].iter().position(|&b| b == b'/') {
            let dir = &path[..end + pos];
            match self.nodes.get(&PathKey::from(dir)) {
                Some(n) if n.is_dir() => {}
                Some(n) if n.ftype == FileType::Symlink => {
                    return Err(Error::invalid(
                        what,
                        format!("hostile tar entry: {path:?} goes through the symlink {dir:?}"),
                    ));
                }
                Some(_) => {
                    return Err(Error::invalid(
                        what,
                        format!("{path:?}: parent {dir:?} is not a directory"),
                    ));
                }
                None => {
                    self.nodes.insert(PathKey::from(dir), implicit_dir(layer));
                    let l = &mut self.layers[layer as usize];
                    l.implicit_parents += 1;
                    l.added.add(0);
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    /// Apply one layer's entries on top of what is there.
    pub fn apply(&mut self, entries: Vec<Entry>, what: &str) -> Result<()> {
        assert!(!self.finished, "apply after finish");
        let layer = u16::try_from(self.layers.len())
            .map_err(|_| Error::unsupported(what, "more than 65535 layers"))?;
        self.layers.push(LayerChanges::default());

        // Opaque markers act before the layer's own entries, wherever they are.
        for e in entries.iter().filter(|e| e.kind == EntryKind::Opaque) {
            let (files, bytes) = self.remove_tree_children(&e.path);
            let l = &mut self.layers[layer as usize];
            l.opaque_dirs += 1;
            l.deleted.files += files;
            l.deleted.bytes += bytes;
        }

        for e in entries {
            let path: &str = &e.path;
            match &e.kind {
                EntryKind::Opaque => continue,
                EntryKind::Whiteout => {
                    let (files, bytes) = self.remove_tree(path, Loss::Deleted, Some(layer));
                    // The layer wrote under the path before deleting the path itself:
                    // what it wrote would be left without its directory.
                    if self.get(path).is_none() && self.descendants(path).next().is_some() {
                        return Err(Error::invalid(
                            what,
                            format!(
                                "malformed layer: the whiteout of {path:?} comes after entries of the same layer under it"
                            ),
                        ));
                    }
                    let l = &mut self.layers[layer as usize];
                    l.whiteouts += 1;
                    l.deleted.files += files;
                    l.deleted.bytes += bytes;
                    continue;
                }
                _ => {}
            }
            self.ensure_parents(path, layer, what)?;
            let key = PathKey::from(path);
            let existing = self.nodes.get(&key).map(|n| (n.is_dir(), n.layer));
            let is_dir_entry = e.kind == EntryKind::Dir;
            let size = if e.kind == EntryKind::File { e.size } else { 0 };
            {
                let l = &mut self.layers[layer as usize];
                l.entries += 1;
                l.file_bytes += size;
                match existing {
                    Some((_, below)) if below < layer => l.changed.add(size),
                    Some(_) => {}
                    None => l.added.add(size),
                }
            }
            if is_dir_entry
                && let Some(n) = self.nodes.get_mut(&key)
                && n.is_dir()
            {
                // A directory over a directory merges: children stay, metadata is new.
                n.meta = e.meta;
                n.layer = layer;
                n.implicit = false;
                continue;
            }
            match existing {
                Some((true, _)) if !is_dir_entry => {
                    self.remove_tree(path, Loss::Shadowed, None);
                }
                Some((false, _)) => {
                    let old = self.nodes.remove(&key).expect("exists");
                    self.loss(&old, Loss::Shadowed);
                }
                _ => {}
            }
            let node = match e.kind {
                EntryKind::Hardlink(target) => {
                    let t = self.nodes.get(&PathKey::from(&*target)).ok_or_else(|| {
                        Error::invalid(what, format!("hostile tar entry: hard link {path:?} points to {target:?}, which does not exist"))
                    })?;
                    if t.is_dir() {
                        return Err(Error::invalid(
                            what,
                            format!(
                                "hostile tar entry: hard link {path:?} points to the directory {target:?}"
                            ),
                        ));
                    }
                    self.layers[layer as usize].hardlinks += 1;
                    let mut n = t.clone();
                    n.layer = layer;
                    n.hardlink_to = Some(target);
                    n.linked = true;
                    n
                }
                kind => {
                    let (ftype, target, dev) = match kind {
                        EntryKind::File => (FileType::File, None, (0, 0)),
                        EntryKind::Dir => (FileType::Dir, None, (0, 0)),
                        EntryKind::Symlink(t) => (FileType::Symlink, Some(t), (0, 0)),
                        EntryKind::Char(a, b) => (FileType::Char, None, (a, b)),
                        EntryKind::Block(a, b) => (FileType::Block, None, (a, b)),
                        EntryKind::Fifo => (FileType::Fifo, None, (0, 0)),
                        EntryKind::Hardlink(_) | EntryKind::Whiteout | EntryKind::Opaque => {
                            unreachable!()
                        }
                    };
                    let content = if ftype == FileType::File {
                        let id = ContentId::try_from(self.contents.len())
                            .map_err(|_| Error::unsupported(what, "more than 4 billion files"))?;
                        self.contents.push(Content {
                            layer,
                            size: e.size,
                            data_offset: e.data_offset,
                            hash: e.content_hash,
                            last_loss: None,
                        });
                        if let Some(c) = e.captured {
                            self.captured.insert(id, c);
                        }
                        if let Some(p) = e.program {
                            self.programs.insert(id, p);
                        }
                        Some(id)
                    } else {
                        None
                    };
                    Node {
                        ftype,
                        meta: e.meta,
                        layer,
                        content,
                        target,
                        hardlink_to: None,
                        linked: false,
                        dev,
                        implicit: false,
                    }
                }
            };
            self.nodes.insert(key, node);
        }
        Ok(())
    }

    fn remove_tree_children(&mut self, dir: &str) -> (u64, u64) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let children: Vec<String> = self
            .nodes
            .range(PathKey::from(prefix.as_str())..)
            .take_while(|(k, _)| k.as_str().starts_with(&prefix))
            .filter(|(k, _)| !k.as_str().is_empty() && !k.as_str()[prefix.len()..].contains('/'))
            .map(|(k, _)| k.as_str().to_string())
            .collect();
        let mut total = (0, 0);
        for c in children {
            let (f, b) = self.remove_tree(&c, Loss::Deleted, None);
            total.0 += f;
            total.1 += b;
        }
        total
    }

    /// Settle wasted-byte accounting once all layers are applied.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut live = vec![false; self.contents.len()];
        for n in self.nodes.values() {
            if let Some(c) = n.content {
                live[c as usize] = true;
            }
        }
        // Captured texts of versions no path holds any more are of no use.
        self.captured.retain(|id, _| live[*id as usize]);
        self.programs.retain(|id, _| live[*id as usize]);
        self.settle_hardlinks();
        for (i, c) in self.contents.iter().enumerate() {
            if live[i] {
                continue;
            }
            let l = &mut self.layers[c.layer as usize];
            l.wasted_bytes += c.size;
            match c.last_loss {
                Some(Loss::Deleted) => l.deleted_bytes += c.size,
                _ => l.shadowed_bytes += c.size,
            }
        }
    }

    /// A hard link's `hardlink_to` names a path that still shares its content:
    /// the one it was linked to, unless a later layer deleted or overwrote that
    /// path; then another path of the same inode (the first that was not itself
    /// made by a link), or none when the link is the last name left.
    fn settle_hardlinks(&mut self) {
        let stale: Vec<(PathKey, ContentId)> = self
            .nodes
            .iter()
            .filter_map(|(k, n)| {
                let target = n.hardlink_to.as_deref()?;
                let c = n.content?;
                let ok = target != k.as_str()
                    && self
                        .nodes
                        .get(&PathKey::from(target))
                        .and_then(|t| t.content)
                        == Some(c);
                (!ok).then(|| (k.clone(), c))
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let wanted: std::collections::HashSet<ContentId> = stale.iter().map(|(_, c)| *c).collect();
        let mut names: HashMap<ContentId, Vec<(&str, bool)>> = HashMap::new();
        for (k, n) in &self.nodes {
            if let Some(c) = n.content.filter(|c| wanted.contains(c)) {
                names
                    .entry(c)
                    .or_default()
                    .push((k.as_str(), n.hardlink_to.is_some()));
            }
        }
        let fixed: Vec<(PathKey, Option<Box<str>>)> = stale
            .iter()
            .map(|(k, c)| {
                let others = names[c].iter().filter(|(p, _)| *p != k.as_str());
                let pick = others
                    .clone()
                    .find(|(_, linked)| !linked)
                    .or_else(|| others.clone().next())
                    .map(|(p, _)| Box::from(*p));
                (k.clone(), pick)
            })
            .collect();
        for (k, to) in fixed {
            self.nodes.get_mut(&k).expect("collected above").hardlink_to = to;
        }
    }

    pub fn wasted_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.wasted_bytes).sum()
    }

    pub fn content(&self, id: ContentId) -> &Content {
        &self.contents[id as usize]
    }

    pub fn size_of(&self, n: &Node) -> u64 {
        n.content.map_or(0, |c| self.contents[c as usize].size)
    }

    pub fn captured_text(&self, n: &Node) -> Option<&str> {
        n.content
            .and_then(|c| self.captured.get(&c))
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Where a symlink at `path` points, as a normalized path in the image
    /// (following `..` the way the kernel does inside a chroot).
    pub fn symlink_destination(path: &str, target: &str) -> String {
        let mut parts: Vec<&str> = if target.starts_with('/') {
            Vec::new()
        } else {
            parent(path).split('/').filter(|s| !s.is_empty()).collect()
        };
        for c in target.split('/') {
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

    /// Follow symlinks (also in parent directories) to the path that holds the data.
    pub fn resolve(&self, path: &str) -> Option<String> {
        self.resolve_via(path, &mut Vec::new())
    }

    /// `resolve`, also collecting every symlink followed on the way.
    pub fn resolve_via(&self, path: &str, via: &mut Vec<String>) -> Option<String> {
        let mut current = path.to_string();
        for _ in 0..40 {
            // Resolve the parents first, component by component.
            let mut resolved = String::new();
            let comps: Vec<&str> = current.split('/').filter(|s| !s.is_empty()).collect();
            let mut changed = false;
            for (i, c) in comps.iter().enumerate() {
                let candidate = if resolved.is_empty() {
                    c.to_string()
                } else {
                    format!("{resolved}/{c}")
                };
                match self.get(&candidate) {
                    Some(n) if n.ftype == FileType::Symlink && i + 1 < comps.len() => {
                        let dest = Self::symlink_destination(
                            &candidate,
                            n.target.as_deref().unwrap_or(""),
                        );
                        via.push(candidate.clone());
                        let rest = comps[i + 1..].join("/");
                        current = if dest.is_empty() {
                            rest
                        } else {
                            format!("{dest}/{rest}")
                        };
                        changed = true;
                        break;
                    }
                    _ => resolved = candidate,
                }
            }
            if changed {
                continue;
            }
            match self.get(&current) {
                Some(n) if n.ftype == FileType::Symlink => {
                    via.push(current.clone());
                    current =
                        Self::symlink_destination(&current, n.target.as_deref().unwrap_or(""));
                }
                Some(_) => return Some(current),
                None => return None,
            }
        }
        None
    }

    /// Remove paths (the optimize plan's removals) from a finished index. Used to
    /// compute the filesystem the output must have.
    pub fn remove_paths<'a>(&mut self, paths: impl IntoIterator<Item = &'a str>) {
        self.reshaped = true;
        for p in paths {
            self.nodes.remove(&PathKey::from(p));
        }
    }

    /// Give a file new content (an edited database file in the expected output).
    pub fn set_content(&mut self, path: &str, size: u64, hash: u128) {
        let Some(node) = self.nodes.get_mut(&PathKey::from(path)) else {
            return;
        };
        let Some(old) = node.content else { return };
        let mut c = self.contents[old as usize].clone();
        c.size = size;
        c.hash = Some(hash);
        self.contents.push(c);
        node.content = Some((self.contents.len() - 1) as ContentId);
    }

    /// Insert a node directly (building an expected filesystem in tests and verification).
    pub fn insert(&mut self, path: &str, node: Node) {
        self.reshaped = true;
        self.nodes.insert(PathKey::from(path), node);
    }
}

/// One way two filesystems differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Extra(String),
    Changed(String, String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "/{p} is missing"),
            Difference::Extra(p) => write!(f, "/{p} should not be there"),
            Difference::Changed(p, what) => write!(f, "/{p} differs: {what}"),
        }
    }
}

/// Compare two filesystems path by path: type, mode, owner, mtime, xattrs, link
/// targets, device numbers, and content (size and sha256, when both have it).
pub fn compare(expected: &FsIndex, actual: &FsIndex) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut a = expected.nodes.iter().peekable();
    let mut b = actual.nodes.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), None) => {
                out.push(Difference::Missing(ka.as_str().into()));
                a.next();
            }
            (None, Some((kb, _))) => {
                out.push(Difference::Extra(kb.as_str().into()));
                b.next();
            }
            (Some((ka, na)), Some((kb, nb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push(Difference::Missing(ka.as_str().into()));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(Difference::Extra(kb.as_str().into()));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if let Some(d) = node_difference(expected, na, actual, nb) {
                        out.push(Difference::Changed(ka.as_str().into(), d));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

fn node_difference(ei: &FsIndex, e: &Node, ai: &FsIndex, a: &Node) -> Option<String> {
    if e.ftype != a.ftype {
        return Some(format!("type {:?} vs {:?}", e.ftype, a.ftype));
    }
    if e.meta.mode != a.meta.mode {
        return Some(format!("mode {:o} vs {:o}", e.meta.mode, a.meta.mode));
    }
    if (e.meta.uid, e.meta.gid) != (a.meta.uid, a.meta.gid) {
        return Some(format!(
            "owner {}:{} vs {}:{}",
            e.meta.uid, e.meta.gid, a.meta.uid, a.meta.gid
        ));
    }
    if (e.meta.mtime, e.meta.mtime_nsec) != (a.meta.mtime, a.meta.mtime_nsec) {
        return Some(format!(
            "mtime {}.{:09} vs {}.{:09}",
            e.meta.mtime, e.meta.mtime_nsec, a.meta.mtime, a.meta.mtime_nsec
        ));
    }
    if e.meta.xattrs != a.meta.xattrs {
        return Some("xattrs".into());
    }
    if e.target != a.target {
        return Some(format!("link target {:?} vs {:?}", e.target, a.target));
    }
    if e.dev != a.dev {
        return Some("device numbers".into());
    }
    let (ce, ca) = (
        e.content.map(|c| ei.content(c)),
        a.content.map(|c| ai.content(c)),
    );
    if let (Some(ce), Some(ca)) = (ce, ca) {
        if ce.size != ca.size {
            return Some(format!("size {} vs {}", ce.size, ca.size));
        }
        if let (Some(he), Some(ha)) = (ce.hash, ca.hash)
            && he != ha
        {
            return Some("content".into());
        }
    }
    None
}

#[cfg(test)]
mod tests;
