//! A content-addressed cache of layer listings, so a layer shared by many images
//! (a base, a common dependency layer) is downloaded and parsed once per run and,
//! with a cache directory, once ever. Listings live on disk (zstd-compressed JSON),
//! not in memory: memory stays bounded however many images share them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{Entry, LayerListing, ReadOptions, read_layer};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::image::{Compression, Descriptor};
use crate::transport::Source;

// v2: entries carry what ELF files and scripts need to run (`programs`).
const FORMAT: &str = "coldpress.layer-listing/v2";

#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    digest: Digest,
    diff_id: Digest,
    compressed_size: u64,
    uncompressed_size: u64,
    compression: Compression,
    entries: Vec<Entry>,
    programs: bool,
}

pub struct LayerCache {
    dir: PathBuf,
    /// Keeps a temporary directory alive when no cache directory was given.
    _tmp: Option<crate::workdir::RunDir>,
    locks: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Layers read from a source (not from the cache) in this process.
    pub reads: AtomicU64,
    pub hits: AtomicU64,
}

impl LayerCache {
    /// `dir`: a persistent cache; `None`: a temporary one for this run.
    pub fn new(dir: Option<PathBuf>) -> Result<LayerCache> {
        let (dir, tmp) = match dir {
            Some(d) => (d, None),
            None => {
                let t = crate::workdir::create(&std::env::temp_dir())?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
        Ok(LayerCache {
            dir,
            _tmp: tmp,
            locks: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json.zst", d.hex()))
    }

    fn load(&self, d: &Digest) -> Option<LayerListing> {
        let s: Stored = crate::fsutil::read_json_zst(&self.path(d))?;
        if s.format != FORMAT || &s.digest != d {
            return None;
        }
        Some(LayerListing {
            digest: s.digest,
            diff_id: s.diff_id,
            compressed_size: s.compressed_size,
            uncompressed_size: s.uncompressed_size,
            compression: s.compression,
            entries: s.entries,
            spool: None,
            programs: s.programs,
        })
    }

    fn store(&self, l: &LayerListing) -> Result<()> {
        let s = Stored {
            format: FORMAT.into(),
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            compressed_size: l.compressed_size,
            uncompressed_size: l.uncompressed_size,
            compression: l.compression,
            entries: l.entries.clone(),
            programs: l.programs,
        };
        crate::fsutil::write_json_zst_atomic(&self.path(&l.digest), &s, "a listing")
    }

    /// The listing of `desc`, read from `source` only if no one has read it before.
    pub fn get(
        &self,
        source: &dyn Source,
        desc: &Descriptor,
        diff_id: &Digest,
        opts: &ReadOptions,
    ) -> Result<LayerListing> {
        let lock = self
            .locks
            .lock()
            .expect("not poisoned")
            .entry(desc.digest.clone())
            .or_default()
            .clone();
        let _held = lock.lock().expect("not poisoned");
        if let Some(l) = self.load(&desc.digest)
            && &l.diff_id == diff_id
            // A listing stored without content hashes cannot serve a reader that needs them.
            && (!opts.hash_contents
                || l.entries
                    .iter()
                    .all(|e| e.kind != super::EntryKind::File || e.content_hash.is_some()))
            // Nor one without program notes a reader that decides OS packages.
            && (!opts.programs || l.programs)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(l);
        }
        let l = read_layer(source, desc, diff_id, opts)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.store(&l)?;
        Ok(l)
    }
}
