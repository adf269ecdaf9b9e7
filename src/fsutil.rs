//! Files written whole or not at all, and the zstd-compressed JSON the caches keep.
//! A leaf: reports, the audit's pages, the catalog cache, the OCI layout's index and
//! the layer caches all write files this way, so it belongs to none of them.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// The zstd level of cache files: fast, and already a fraction of the JSON.
const CACHE_ZSTD_LEVEL: i32 = 3;

/// Write `bytes` to `path` via a temporary file and a rename, so readers never
/// see a partial file. The data is synced before the rename: these are outputs
/// (reports, `index.json`) that must survive a crash once the call returns.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_via_temp(path, true, |f| {
        f.write_all(bytes)
            .with_ctx(|| format!("writing {}", path.display()))
    })
}

/// Write `value` as zstd-compressed JSON to `path`, atomically (a reader sees the
/// old file, the new one or none). Not synced: these are caches, and a cache
/// lost in a crash only costs speed later. `what` names the value in errors.
pub fn write_json_zst_atomic<T: Serialize>(path: &Path, value: &T, what: &str) -> Result<()> {
    replace_via_temp(path, false, |f| {
        let compress = |e| Error::io(format!("compressing {what}"), e);
        let enc = zstd::stream::write::Encoder::new(f, CACHE_ZSTD_LEVEL).map_err(compress)?;
        // serde_json writes in small pieces; the buffer hands zstd whole blocks.
        let mut w = BufWriter::new(enc);
        serde_json::to_writer(&mut w, value).map_err(|e| compress(e.into()))?;
        w.into_inner()
            .map_err(|e| compress(e.into_error()))?
            .finish()
            .map_err(compress)?;
        Ok(())
    })
}

/// Read what [`write_json_zst_atomic`] wrote. `None` for a missing, truncated or
/// unreadable file: a cache miss, never an error.
pub fn read_json_zst<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let f = File::open(path).ok()?;
    let mut raw = Vec::new();
    // Decompress whole, then parse: serde_json parses a slice far faster than a reader.
    zstd::stream::read::Decoder::new(f)
        .ok()?
        .read_to_end(&mut raw)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Create a temporary file beside `path`, let `write` fill it, optionally sync
/// it, and rename it over `path`. The temporary file is removed on any error.
fn replace_via_temp(
    path: &Path,
    sync: bool,
    write: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_ctx(|| format!("creating a temporary file in {}", dir.display()))?;
    write(tmp.as_file_mut())?;
    if sync {
        tmp.as_file()
            .sync_all()
            .with_ctx(|| format!("writing {}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn json_zst_reads_back_what_was_written_and_a_damaged_file_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json.zst");
        let v = serde_json::json!({"format": "x/v1", "entries": [1, 2, 3]});
        write_json_zst_atomic(&p, &v, "a test value").unwrap();
        assert_eq!(read_json_zst::<serde_json::Value>(&p), Some(v));
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, &raw[..raw.len() / 2]).unwrap();
        assert_eq!(read_json_zst::<serde_json::Value>(&p), None);
        assert_eq!(
            read_json_zst::<serde_json::Value>(&dir.path().join("none")),
            None
        );
    }
}
