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
use crate::error::{Error, IoContext, Result, from_io};
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
    /// Listings another run attached to an image ([`import`](Self::import)):
    /// used by this run, never stored in `dir`, so a run that did not ask to
    /// reuse an image's listings never plans with one.
    imported: Option<PathBuf>,
    /// Keeps a temporary directory alive when no cache directory was given.
    _tmp: Option<crate::workdir::RunDir>,
    locks: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// The file each listing this run used came from (or went to): current,
    /// so [`stored_file`](Self::stored_file) need not read it again.
    served: Mutex<HashMap<Digest, PathBuf>>,
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
            imported: None,
            _tmp: tmp,
            locks: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    /// Take imported listings into `dir` (this run's own directory).
    pub fn with_imports(mut self, dir: PathBuf) -> Result<LayerCache> {
        std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
        self.imported = Some(dir);
        Ok(self)
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(file_name(d))
    }

    /// The current listing of `d` and its file: this cache's own, else an imported one.
    fn stored(&self, d: &Digest) -> Option<(Stored, PathBuf)> {
        let imported = self.imported.as_ref().map(|i| i.join(file_name(d)));
        std::iter::once(self.path(d)).chain(imported).find_map(|p| {
            let s: Stored = crate::fsutil::read_json_zst(&p)?;
            (s.format == FORMAT && &s.digest == d).then_some((s, p))
        })
    }

    fn load(&self, d: &Digest) -> Option<(LayerListing, PathBuf)> {
        let (s, path) = self.stored(d)?;
        let listing = LayerListing {
            digest: s.digest,
            diff_id: s.diff_id,
            compressed_size: s.compressed_size,
            uncompressed_size: s.uncompressed_size,
            compression: s.compression,
            entries: s.entries,
            spool: None,
            programs: s.programs,
        };
        Some((listing, path))
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
        let path = self.path(&l.digest);
        crate::fsutil::write_json_zst_atomic(&path, &s, "a listing")?;
        self.served_from(&l.digest, path);
        Ok(())
    }

    fn served_from(&self, d: &Digest, path: PathBuf) {
        self.served
            .lock()
            .expect("not poisoned")
            .insert(d.clone(), path);
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
        if let Some((l, path)) = self.load(&desc.digest)
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
            self.served_from(&desc.digest, path);
            return Ok(l);
        }
        let l = read_layer(source, desc, diff_id, opts)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.store(&l)?;
        Ok(l)
    }

    /// The file that holds `d`'s listing, when this cache has a current one.
    /// Its bytes are the same on every runner that read the same layer the
    /// same way, so a copy another run attached is found in the registry.
    pub fn stored_file(&self, d: &Digest) -> Option<PathBuf> {
        let served = self.served.lock().expect("not poisoned").get(d).cloned();
        served.or_else(|| self.stored(d).map(|(_, p)| p))
    }

    /// Whether a listing file for `d` is here (cheap: not read).
    pub fn holds(&self, d: &Digest) -> bool {
        self.path(d).exists()
            || self
                .imported
                .as_ref()
                .is_some_and(|i| i.join(file_name(d)).exists())
    }

    /// Add, for this run, the listing of layer `d` from a file another run's
    /// cache held (see [`stored_file`](Self::stored_file)), read from `r`: at
    /// most `max` bytes once decompressed and `max_entries` entries. `what`
    /// names it in errors.
    ///
    /// It comes from a registry: it must be about `d`, and every path in it
    /// must be one the layer reader could have produced. Whether it is true
    /// to the layer cannot be checked without reading the layer, which is
    /// what it saves (docs/decisions.md).
    pub fn import(
        &self,
        d: &Digest,
        mut r: impl std::io::Read,
        max: u64,
        max_entries: usize,
        what: &str,
    ) -> Result<()> {
        use std::io::Read as _;
        let Some(dir) = &self.imported else {
            return Err(Error::Usage(format!(
                "{what}: this listing cache takes no imports"
            )));
        };
        // Removed on every error below: nothing half-checked stays.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_ctx(|| format!("creating a temporary file in {}", dir.display()))?;
        std::io::copy(&mut r, tmp.as_file_mut()).map_err(|e| from_io(what, e))?;
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(tmp.path()).with_ctx(|| what)?)
            .and_then(|z| z.take(max + 1).read_to_end(&mut raw))
            .map_err(|e| from_io(what, e))?;
        if raw.len() as u64 > max {
            return Err(Error::invalid(
                what,
                format!("decompresses to more than {max} bytes"),
            ));
        }
        let stored: Stored = serde_json::from_slice(&raw).map_err(|e| Error::invalid(what, e))?;
        drop(raw);
        if stored.format != FORMAT {
            return Err(Error::unsupported(
                what,
                format!("listing format {:?}", stored.format),
            ));
        }
        if &stored.digest != d {
            return Err(Error::invalid(
                what,
                format!("it is the listing of {}, not {d}", stored.digest),
            ));
        }
        if stored.entries.len() > max_entries {
            return Err(Error::invalid(
                what,
                format!("more than {max_entries} entries"),
            ));
        }
        if let Some(bad) = stored.entries.iter().find_map(bad_path) {
            return Err(Error::invalid(what, format!("it holds the path {bad:?}")));
        }
        tmp.persist(dir.join(file_name(d)))
            .map_err(|e| Error::io(format!("storing {what}"), e.error))?;
        Ok(())
    }
}

fn file_name(d: &Digest) -> String {
    format!("{}.json.zst", d.hex())
}

/// A path (or hard-link target) the layer reader would never have produced.
fn bad_path(e: &Entry) -> Option<String> {
    let normal = |p: &str| super::entry::normalize_path(p.as_bytes()).as_deref() == Ok(p);
    // Only the root directory's own entry (`./`) and an opaque marker at the
    // root have an empty path; a hard link to `./` has an empty target.
    let root_ok = matches!(e.kind, super::EntryKind::Dir | super::EntryKind::Opaque);
    let path_ok = normal(&e.path) && (!e.path.is_empty() || root_ok);
    match &e.kind {
        _ if !path_ok => Some(e.path.to_string()),
        super::EntryKind::Hardlink(t) if !normal(t) => Some(t.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::EntryKind;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry::bare(path, kind)
    }

    fn listing(layer: &Digest, entries: Vec<Entry>) -> LayerListing {
        LayerListing {
            digest: layer.clone(),
            diff_id: Digest::of(b"diff"),
            compressed_size: 1,
            uncompressed_size: 2,
            compression: Compression::Gzip,
            entries,
            spool: None,
            programs: true,
        }
    }

    /// A cache and, beside it, the directory its imports go to.
    fn cache() -> (tempfile::TempDir, LayerCache) {
        let d = tempfile::tempdir().unwrap();
        let c = LayerCache::new(Some(d.path().join("layers")))
            .unwrap()
            .with_imports(d.path().join("imported"))
            .unwrap();
        (d, c)
    }

    /// What one runner stored, another imports byte for byte: that is what
    /// lets a registry hold each listing once. The import serves this run
    /// only: the cache's own directory does not get it.
    #[test]
    fn a_stored_listing_imports_byte_for_byte_for_this_run_only() {
        let layer = Digest::of(b"layer");
        let (_a, a) = cache();
        a.store(&listing(
            &layer,
            vec![
                entry("", EntryKind::Dir),
                entry("", EntryKind::Opaque),
                entry("usr/bin/x", EntryKind::File),
                entry("usr/bin/y", EntryKind::Hardlink("usr/bin/x".into())),
            ],
        ))
        .unwrap();
        let file = a.stored_file(&layer).unwrap();
        assert!(a.stored_file(&Digest::of(b"other")).is_none());

        let (dir, b) = cache();
        assert!(!b.holds(&layer));
        b.import(
            &layer,
            std::fs::File::open(&file).unwrap(),
            1 << 20,
            10,
            "test",
        )
        .unwrap();
        assert!(b.holds(&layer));
        assert_eq!(
            std::fs::read(b.stored_file(&layer).unwrap()).unwrap(),
            std::fs::read(&file).unwrap()
        );
        assert_eq!(b.load(&layer).unwrap().0.entries.len(), 4);
        let own = LayerCache::new(Some(dir.path().join("layers"))).unwrap();
        assert!(
            own.load(&layer).is_none(),
            "not in the cache's own directory"
        );
        assert!(
            own.import(
                &layer,
                std::fs::File::open(&file).unwrap(),
                1 << 20,
                10,
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn import_refuses_what_the_reader_could_not_have_written() {
        let layer = Digest::of(b"layer");
        let other = Digest::of(b"other");
        let refused = |l: LayerListing, d: &Digest, max: u64| -> String {
            let (_a, a) = cache();
            a.store(&l).unwrap();
            let (dir, b) = cache();
            let f = std::fs::File::open(a.path(&l.digest)).unwrap();
            let e = b
                .import(d, f, max, 100, "listing X")
                .unwrap_err()
                .to_string();
            assert!(!b.holds(d), "nothing stored for {e}");
            let left = std::fs::read_dir(dir.path().join("imported"))
                .unwrap()
                .count();
            assert_eq!(left, 0, "no temporary file is left for {e}");
            e
        };
        let ok = || vec![entry("etc/passwd", EntryKind::File)];
        assert!(refused(listing(&other, ok()), &layer, 1 << 20).contains(&format!("not {layer}")));
        for (bad, kind) in [
            ("../etc/passwd", EntryKind::File),
            ("/etc/passwd", EntryKind::File),
            ("a//b", EntryKind::File),
            ("", EntryKind::File),
            ("bin/x", EntryKind::Hardlink("../../x".into())),
        ] {
            let e = refused(listing(&layer, vec![entry(bad, kind)]), &layer, 1 << 20);
            assert!(e.starts_with("listing X: it holds the path"), "{bad}: {e}");
        }
        let many = |n: usize| {
            (0..n)
                .map(|i| entry(&format!("f{i}"), EntryKind::File))
                .collect()
        };
        let e = refused(listing(&layer, many(1000)), &layer, 1000);
        assert!(e.contains("decompresses to more than 1000 bytes"), "{e}");
        let e = refused(listing(&layer, many(101)), &layer, 1 << 20);
        assert!(e.contains("more than 100 entries"), "{e}");
    }
}
