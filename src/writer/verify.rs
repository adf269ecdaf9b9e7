//! Proof before tagging: read the new layers back from the exact bytes written,
//! apply them on the base layers' filesystem, and compare with what the output
//! must be (the source's filesystem minus the removed paths): types, modes,
//! owners, mtimes, xattrs, link targets, devices and content hashes.
//!
//! Reading back happens per layer as soon as it is written (while other layers
//! are still being compressed); the comparison runs once all are back.

use std::fs::File;
use std::io::{BufReader, Read};

use crate::analysis::Analysis;
use crate::digest::VerifyingReader;
use crate::error::{Error, IoContext, Result, from_io};
use crate::fsindex::compare;
use crate::image::Descriptor;
use crate::layer::compression::decoder;
use crate::layer::{Entry, EntryKind, LayerListing, Meta};
use crate::plan::Plan;

use super::rewrite::Written;

/// Decode a written layer from its file with a second tar implementation (the
/// `tar` crate), not the Go-compatible reader that listed the source: a header
/// misread on the way in would be misread again on the way back and pass the
/// comparison. The digest and diff_id are checked too.
pub fn read_back(desc: &Descriptor, w: &Written) -> Result<LayerListing> {
    let f = File::open(&w.layer.path)
        .with_ctx(|| format!("reading back the {} layer", w.class.as_str()))?;
    let what = format!("new {} layer {}", w.class.as_str(), desc.digest);
    let compressed = VerifyingReader::new(
        BufReader::new(f),
        Some((desc.digest.clone(), Some(desc.size))),
        what.clone(),
    );
    let mut compressed = BufReader::new(compressed);
    let raw = decoder(&mut compressed, w.layer.compression).map_err(|e| from_io(&what, e))?;
    let raw = VerifyingReader::new(
        raw,
        Some((w.layer.diff_id.clone(), None)),
        format!("{what}: uncompressed content (diff_id)"),
    );
    let mut archive = tar::Archive::new(raw);
    let mut entries = Vec::new();
    for e in archive.entries().map_err(|e| from_io(&what, e))? {
        let mut e = e.map_err(|e| from_io(&what, e))?;
        if let Some(entry) = independent_entry(&mut e, &what)? {
            entries.push(entry);
        }
    }
    let mut raw = archive.into_inner();
    let uncompressed_size = {
        std::io::copy(&mut raw, &mut std::io::sink()).map_err(|e| from_io(&what, e))?;
        raw.bytes_read()
    };
    drop(raw);
    std::io::copy(&mut compressed, &mut std::io::sink()).map_err(|e| from_io(&what, e))?;
    Ok(LayerListing {
        digest: desc.digest.clone(),
        diff_id: w.layer.diff_id.clone(),
        compressed_size: compressed.get_ref().bytes_read(),
        uncompressed_size,
        compression: w.layer.compression,
        entries,
        spool: None,
        programs: false,
    })
}

/// One entry as the `tar` crate decodes it. Only the OCI path rules (whiteout
/// names) are shared with the source reader; every header field is the tar
/// crate's own reading.
fn independent_entry(e: &mut tar::Entry<impl Read>, what: &str) -> Result<Option<Entry>> {
    let raw = e.path_bytes().into_owned();
    let written =
        std::str::from_utf8(&raw).map_err(|_| Error::invalid(what, "written path is not UTF-8"))?;
    // The writer names the root `./` and directories with a trailing slash.
    let path = match written.trim_end_matches('/') {
        "." | "" => String::new(),
        p => p.strip_prefix("./").unwrap_or(p).to_string(),
    };
    let h = e.header();
    let num = |r: std::io::Result<u64>| r.map_err(|err| from_io(what, err));
    let mut meta = Meta {
        mode: num(h.mode().map(u64::from))? as u32 & 0o7777,
        uid: num(h.uid())?,
        gid: num(h.gid())?,
        mtime: num(h.mtime())? as i64,
        mtime_nsec: 0,
        xattrs: None,
    };
    let etype = h.entry_type();
    let link = e
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let device = (
        num(h.device_major().map(|d| u64::from(d.unwrap_or(0))))? as u32,
        num(h.device_minor().map(|d| u64::from(d.unwrap_or(0))))? as u32,
    );
    let mut xattrs: Vec<(Box<str>, Box<[u8]>)> = Vec::new();
    if let Some(exts) = e.pax_extensions().map_err(|err| from_io(what, err))? {
        for ext in exts {
            let ext = ext.map_err(|err| from_io(what, err))?;
            let key = ext
                .key()
                .map_err(|_| Error::invalid(what, "PAX key not UTF-8"))?;
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.push((name.into(), ext.value_bytes().into()));
            } else if key == "mtime" {
                let v = ext.value().map_err(|_| Error::invalid(what, "PAX mtime"))?;
                let (secs, frac) = v.split_once('.').unwrap_or((v, "0"));
                meta.mtime = secs
                    .parse()
                    .map_err(|_| Error::invalid(what, "written PAX mtime"))?;
                meta.mtime_nsec = format!("{frac:0<9}")[..9]
                    .parse()
                    .map_err(|_| Error::invalid(what, "written PAX mtime"))?;
                // "-1.5" is 1.5 s before the epoch: floor the seconds.
                if v.starts_with('-') && meta.mtime_nsec > 0 {
                    meta.mtime -= 1;
                    meta.mtime_nsec = 1_000_000_000 - meta.mtime_nsec;
                }
            }
        }
    }
    if !xattrs.is_empty() {
        xattrs.sort();
        meta.xattrs = Some(xattrs.into_boxed_slice());
    }
    if let Some(w) = Entry::from_whiteout_name(&path, &meta, 0) {
        return w.map_err(|m| Error::invalid(what, m));
    }
    let kind = match etype {
        tar::EntryType::Regular => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink(link.unwrap_or_default().into()),
        tar::EntryType::Link => EntryKind::Hardlink(link.unwrap_or_default().into()),
        tar::EntryType::Char => EntryKind::Char(device.0, device.1),
        tar::EntryType::Block => EntryKind::Block(device.0, device.1),
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(Error::Verify(format!(
                "{what}: the writer wrote an entry of type {:?} at /{path}; nothing was tagged",
                other.as_byte() as char
            )));
        }
    };
    let mut size = 0;
    let mut content_hash = None;
    if kind == EntryKind::File {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = e.read(&mut buf).map_err(|err| from_io(what, err))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        content_hash = Some(hasher.digest128());
    }
    Ok(Some(Entry {
        path: path.into(),
        kind,
        meta,
        size,
        data_offset: 0,
        content_hash,
        captured: None,
        program: None,
    }))
}

/// Apply the read-back layers (in output order) on the base and compare.
pub fn compare_with_source(
    a: &Analysis,
    plan: &Plan,
    read_back: Vec<(String, LayerListing)>,
) -> Result<()> {
    let expected = plan.expected(a);
    let mut actual = a.base_index.clone();
    for (what, listing) in read_back {
        actual.apply(listing.entries, &what)?;
    }
    let diffs = compare(&expected, &actual);
    if diffs.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = diffs.iter().take(5).map(|d| d.to_string()).collect();
    Err(Error::Verify(format!(
        "the rewritten image differs from the source minus the removed paths in {} place(s): {}; nothing was tagged",
        diffs.len(),
        shown.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{AnalyzeOptions, analyze};
    use crate::catalog::Catalog;
    use crate::layer::ReadOptions;
    use crate::layer::read::read_layer_from;
    use crate::transport::Source;
    use crate::transport::oci_layout::OciLayoutSource;
    use crate::transport::resolve::resolve;

    /// The proof must refuse a rewrite that is not the source minus the removals.
    /// Stand-in for a broken writer: "written" layers that are the source's own,
    /// so every path the plan removes is still there.
    #[test]
    fn a_rewrite_that_kept_the_removed_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::example::write_example(dir.path()).unwrap();
        let src = OciLayoutSource::open(dir.path(), Some("app")).unwrap();
        let image = resolve(&src, None).unwrap();
        let mut opts = AnalyzeOptions::default();
        opts.read.hash_contents = true;
        let a = analyze(&src, image, &Catalog::empty(), &opts).unwrap();
        // Every removed path, directories included.
        let removed = a.strip.decisions.values().filter(|d| d.is_some()).count();
        assert!(removed > 0, "the example has files to strip");
        let plan = Plan::new(&a);

        let read = ReadOptions {
            hash_contents: true,
            ..ReadOptions::default()
        };
        let unchanged: Vec<(String, LayerListing)> = a
            .layers
            .iter()
            .map(|l| {
                let raw = src.open_blob(&l.descriptor).unwrap();
                let listing =
                    read_layer_from(raw, &l.descriptor, &l.diff_id, &read, "source layer").unwrap();
                ("new layer".to_string(), listing)
            })
            .collect();
        let err = compare_with_source(&a, &plan, unchanged).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Verify(_)), "{msg}");
        assert!(
            msg.contains(&format!("in {removed} place(s)")) && msg.contains("nothing was tagged"),
            "one difference per removed path: {msg}"
        );
    }
}
