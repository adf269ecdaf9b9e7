//! One tar entry of a layer, as compact metadata, and the path rules that decide
//! what an entry means (image-spec layer.md: whiteouts, opaque directories).

use serde::{Deserialize, Serialize};

/// Extended attributes: (name, value), sorted by name.
pub type Xattrs = Box<[(Box<str>, Box<[u8]>)]>;

/// File metadata that must survive a rewrite unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// `SCHILY.xattr.*` PAX records, sorted by name.
    pub xattrs: Option<Xattrs>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(Box<str>),
    /// A hard link to another path (normalized like entry paths).
    Hardlink(Box<str>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// `.wh.NAME`: delete `path` from lower layers.
    Whiteout,
    /// `.wh..wh..opq` in `path`: hide everything lower layers put in this directory.
    Opaque,
}

/// A tar entry, resolved: normalized path, meaning, metadata and where its data is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the root, no leading `/` or `./`, no trailing `/`.
    pub path: Box<str>,
    pub kind: EntryKind,
    pub meta: Meta,
    pub size: u64,
    /// Offset of the file data in the uncompressed layer stream.
    pub data_offset: u64,
    /// xxh3-128 of the file data, when the reader was asked to hash contents.
    pub content_hash: Option<u128>,
    /// Contents of small metadata files the analysis reads (dist-info RECORD, package.json).
    pub captured: Option<Box<[u8]>>,
    /// What running this file makes the loader open (ELF dependencies, a
    /// script's interpreter), noted when the layer was spooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Box<super::program::Program>>,
}

impl Entry {
    /// What an entry named `path` means when its name is a whiteout: `None` when
    /// it is not one; `Some(None)` for AUFS bookkeeping, which carries nothing.
    pub fn from_whiteout_name(
        path: &str,
        meta: &Meta,
        data_offset: u64,
    ) -> Option<Result<Option<Entry>, String>> {
        if !basename(path).starts_with(WHITEOUT_PREFIX) {
            return None;
        }
        Some(whiteout_target(path).map(|t| {
            t.map(|(target, opaque)| Entry {
                path: target.into(),
                kind: if opaque {
                    EntryKind::Opaque
                } else {
                    EntryKind::Whiteout
                },
                meta: meta.clone(),
                size: 0,
                data_offset,
                content_hash: None,
                captured: None,
                program: None,
            })
        }))
    }
}

#[cfg(test)]
impl Entry {
    /// An entry with default metadata and no data, for tests.
    pub fn bare(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            meta: Meta::default(),
            size: 0,
            data_offset: 0,
            content_hash: None,
            captured: None,
            program: None,
        }
    }
}

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Normalize a path from a tar header, refusing anything that could escape the root.
pub fn normalize_path(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| format!("path {} is not valid UTF-8", String::from_utf8_lossy(raw)))?;
    if s.contains('\0') {
        return Err(format!("path {s:?} contains a NUL byte"));
    }
    if s.starts_with('/') {
        return Err(format!("absolute path {s:?}"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in s.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(format!("path {s:?} climbs out of the root with '..'")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The parent directory of a normalized path (`""` for top-level entries).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

pub fn basename(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

/// What a name means under the whiteout rules: `Ok(None)` for AUFS bookkeeping
/// entries (`.wh..wh.plnk` etc.), which Docker skips and so do we.
pub fn whiteout_target(path: &str) -> Result<Option<(String, bool)>, String> {
    let base = basename(path);
    if base == OPAQUE_MARKER {
        return Ok(Some((parent(path).to_string(), true)));
    }
    if base.starts_with(".wh..wh.") {
        return Ok(None);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        Some("") => Err(format!("whiteout {path:?} names nothing")),
        Some(name) => {
            let p = parent(path);
            Ok(Some((
                if p.is_empty() {
                    name.to_string()
                } else {
                    format!("{p}/{name}")
                },
                false,
            )))
        }
        None => unreachable!("caller checks the prefix"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        assert_eq!(normalize_path(b"./var/task/").unwrap(), "var/task");
        assert_eq!(normalize_path(b"a//b/./c").unwrap(), "a/b/c");
        assert_eq!(normalize_path(b"./").unwrap(), "");
        assert!(normalize_path(b"../etc/passwd").is_err());
        assert!(normalize_path(b"a/../../b").is_err());
        assert!(normalize_path(b"/etc/passwd").is_err());
        assert!(normalize_path(b"a\xffb").is_err());
    }

    #[test]
    fn whiteouts() {
        assert_eq!(
            whiteout_target("a/b/.wh.c").unwrap(),
            Some(("a/b/c".into(), false))
        );
        assert_eq!(
            whiteout_target(".wh.top").unwrap(),
            Some(("top".into(), false))
        );
        assert_eq!(
            whiteout_target("a/.wh..wh..opq").unwrap(),
            Some(("a".into(), true))
        );
        assert_eq!(whiteout_target("a/.wh..wh.plnk").unwrap(), None);
        assert!(whiteout_target("a/.wh.").is_err());
    }
}
