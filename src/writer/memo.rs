//! Memoized output layers. A written layer's bytes depend only on the entries
//! the plan puts in it (paths, metadata, content) and on how it is compressed,
//! so a hash of those is a key for the blob. A redeploy whose deps did not
//! change finds the deps layer under its key and neither builds nor compresses
//! it again: from the local cache (with its read-back listing) or, on a runner
//! with an empty cache, from the keys an earlier output records in its config
//! (label [`KEYS_LABEL`]) — the default being the image the destination tag
//! points to now.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::rewrite::{Encoding, Step, walk_layer};
use crate::analysis::{Analysis, Class};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::image::{Compression, Descriptor};
use crate::layer::Entry;
use crate::layer::entry::FileType;
use crate::plan::Plan;
use crate::transport::resolve::ResolvedImage;

/// Bump when the writer would produce other bytes for the same entries.
pub const WRITER_VERSION: u32 = 1;

/// Config label of an output: `KEY=DIGEST` pairs, space-separated, one per
/// written layer.
pub const KEYS_LABEL: &str = "dev.coldpress.layer-keys";

const FORMAT: &str = "coldpress.layer-memo/v1";

/// The memo key of `class`'s written layer; `None` when a content hash is
/// missing (then the layer is always built).
pub fn key(a: &Analysis, plan: &Plan, class: Class, enc: Encoding) -> Result<Option<String>> {
    let mut h = Sha256::new();
    let level = match enc.compression {
        Compression::Gzip => enc
            .level
            .map_or(super::layer::DEFAULT_GZIP_LEVEL as i32, |l| l.clamp(0, 9)),
        Compression::Zstd => enc.level.unwrap_or(super::layer::DEFAULT_ZSTD_LEVEL),
        Compression::None => 0,
    };
    h.update(format!("{FORMAT}\0{WRITER_VERSION}\0{}\0{level}\0", enc.compression).as_bytes());
    let mut complete = true;
    let meta = |h: &mut Sha256, m: &crate::layer::Meta| {
        h.update(m.mode.to_le_bytes());
        h.update(m.uid.to_le_bytes());
        h.update(m.gid.to_le_bytes());
        h.update(m.mtime.to_le_bytes());
        h.update(m.mtime_nsec.to_le_bytes());
        for (k, v) in m.xattrs.iter().flatten() {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update([0xff]);
    };
    let path = |h: &mut Sha256, tag: u8, p: &str| {
        h.update([tag]);
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    };
    walk_layer(a, plan, class, |step| {
        match step {
            Step::Dir(p, m) => {
                path(&mut h, b'd', p);
                meta(&mut h, &m);
            }
            Step::Whiteout(p) => path(&mut h, b'w', p),
            Step::Node(p, n) => {
                let tag = match n.ftype {
                    FileType::File => b'f',
                    FileType::Symlink => b'l',
                    FileType::Char => b'c',
                    FileType::Block => b'b',
                    FileType::Fifo => b'p',
                    FileType::Dir => b'd',
                };
                path(&mut h, tag, p);
                meta(&mut h, &n.meta);
                let target = n.target.as_deref().unwrap_or("");
                h.update((target.len() as u64).to_le_bytes());
                h.update(target.as_bytes());
                h.update(n.dev.0.to_le_bytes());
                h.update(n.dev.1.to_le_bytes());
                if let Some(bytes) = plan.edited_content(a, p) {
                    // An edited package database: its new content is what is written.
                    h.update((bytes.len() as u64).to_le_bytes());
                    h.update(xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes());
                } else if let Some(c) = n.content {
                    let c = a.index.content(c);
                    h.update(c.size.to_le_bytes());
                    match c.hash {
                        Some(x) => h.update(x.to_le_bytes()),
                        None => complete = false,
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(complete.then(|| hex::encode(h.finalize())))
}

/// What is known about a memoized layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Memo {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: u64,
    pub hardlink_copy_bytes: u64,
    pub whiteouts: u64,
    /// The layer's entries as read back from its bytes, for verification
    /// without reading it again (absent for keys found in a registry).
    pub listing: Option<Vec<Entry>>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    key: String,
    memo: Memo,
}

/// Memoized layers on disk (`<cache>/outputs/<key>.json.zst`); no blobs, only
/// what a manifest needs and the listing.
pub struct MemoCache {
    dir: Option<PathBuf>,
}

impl MemoCache {
    pub fn new(dir: Option<PathBuf>) -> MemoCache {
        MemoCache { dir }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        // Keys are hex: nothing in them can leave the directory.
        self.dir
            .as_ref()
            .filter(|_| key.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|d| d.join(format!("{key}.json.zst")))
    }

    pub fn load(&self, key: &str) -> Option<Memo> {
        let s: Stored = crate::fsutil::read_json_zst(&self.path(key)?)?;
        (s.format == FORMAT && s.key == key).then_some(s.memo)
    }

    /// Store a memo; a cache that cannot be written only costs speed later.
    pub fn store(&self, key: &str, memo: &Memo) -> Result<()> {
        let (Some(dir), Some(path)) = (&self.dir, self.path(key)) else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
        let stored = Stored {
            format: FORMAT.into(),
            key: key.into(),
            memo: memo.clone(),
        };
        crate::fsutil::write_json_zst_atomic(&path, &stored, "a layer memo")
    }
}

/// The label value recording `(key, layer digest)` pairs.
pub fn keys_label(pairs: &[(String, Digest)]) -> String {
    pairs
        .iter()
        .map(|(k, d)| format!("{k}={d}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Layers an earlier output recorded: memo key → (descriptor, diff_id).
pub type RecordedKeys = HashMap<String, (Descriptor, Digest)>;

/// The layers an earlier output recorded under their keys.
pub fn recorded_keys(image: &ResolvedImage) -> RecordedKeys {
    let mut out = HashMap::new();
    let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&image.config_bytes) else {
        return out;
    };
    let Some(label) = cfg
        .pointer("/config/Labels")
        .and_then(|l| l.get(KEYS_LABEL))
        .and_then(|v| v.as_str())
    else {
        return out;
    };
    let diff_ids = &image.config.rootfs.diff_ids;
    for pair in label.split_whitespace() {
        let Some((key, digest)) = pair.split_once('=') else {
            continue;
        };
        let Ok(digest) = digest.parse::<Digest>() else {
            continue;
        };
        if let Some(i) = image.parsed.layers.iter().position(|l| l.digest == digest)
            && let Some(diff_id) = diff_ids.get(i)
        {
            out.insert(
                key.to_string(),
                (image.parsed.layers[i].clone(), diff_id.clone()),
            );
        }
    }
    out
}
