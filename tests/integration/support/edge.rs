//! Synthetic images that exercise every layer rule the image spec has: whiteouts,
//! opaque directories, type changes, hard links (also to a file a later layer
//! deletes), symlinks, PAX and GNU long names, xattrs, device nodes, sub-second
//! mtimes, big ids, missing parent directories.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use coldpress::digest::Digest;
use coldpress::example::{ImageSpec, meta};
use coldpress::image::{Compression, Descriptor, MediaType};
use coldpress::layer::Meta;
use coldpress::transport::BlobContent;
use coldpress::transport::oci_layout::OciLayoutSink;
use coldpress::writer::{LayerWriter, WriteKind, WrittenLayer};

fn file(w: &mut LayerWriter, path: &str, content: &[u8], m: &Meta) {
    w.append(
        path,
        WriteKind::File {
            size: content.len() as u64,
            data: &mut &content[..],
        },
        m,
    )
    .unwrap();
}

pub const LONG_DIR: &str = "var/task/a-directory-name-that-is-long-enough-to-need-more-than-one-hundred-bytes/and-more-nesting-to-get-past-the-ustar-prefix-limit-of-one-hundred-fifty-five-bytes";

fn layer0(tmp: &Path, c: Compression) -> WrittenLayer {
    let mut w = LayerWriter::create(tmp, c, None).unwrap();
    let d = meta(0o755);
    let f = meta(0o644);
    for dir in [
        "etc", "usr", "usr/bin", "var", "var/task", "d1", "d3", "o", "o/sub", "dev",
    ] {
        w.append(dir, WriteKind::Dir, &d).unwrap();
    }
    file(&mut w, "etc/hostname", b"edge\n", &f);
    file(&mut w, "usr/bin/tool", &vec![7u8; 5000], &meta(0o4755));
    w.append(
        "usr/bin/tool-link",
        WriteKind::Symlink("tool"),
        &meta(0o777),
    )
    .unwrap();
    w.append("usr/bin/tool-hard", WriteKind::Hardlink("usr/bin/tool"), &f)
        .unwrap();
    file(&mut w, "d1/x", b"to be whited out", &f);
    file(&mut w, "d1/keep", b"stays", &f);
    file(&mut w, "f2", b"becomes a directory", &f);
    file(&mut w, "d3/child", b"gone when d3 becomes a file", &f);
    file(&mut w, "o/old", b"hidden by the opaque marker", &f);
    file(&mut w, "o/sub/deep", b"also hidden", &f);
    file(&mut w, "t", &vec![1u8; 3000], &f);
    file(&mut w, "shadowed", &vec![2u8; 1000], &f);
    // Missing parents: "implicit/dir" has no entries of its own.
    file(&mut w, "implicit/dir/file", b"parents not in the tar", &f);
    w.append(
        coldpress::layer::entry::parent(LONG_DIR),
        WriteKind::Dir,
        &d,
    )
    .unwrap();
    w.append(LONG_DIR, WriteKind::Dir, &d).unwrap();
    file(
        &mut w,
        &format!("{LONG_DIR}/file-with-a-long-name.txt"),
        b"long",
        &f,
    );
    let long_target = format!("/{LONG_DIR}/file-with-a-long-name.txt");
    w.append(
        "var/task/long-link",
        WriteKind::Symlink(&long_target),
        &meta(0o777),
    )
    .unwrap();
    let mut xm = meta(0o644);
    xm.xattrs = Some(
        vec![(
            "user.coldpress".into(),
            b"hello".to_vec().into_boxed_slice(),
        )]
        .into_boxed_slice(),
    );
    file(&mut w, "etc/with-xattr", b"x", &xm);
    let mut sub = meta(0o644);
    sub.mtime_nsec = 123_456_789;
    file(&mut w, "etc/subsecond", b"ns", &sub);
    let mut big = meta(0o600);
    big.uid = 3_000_000;
    big.gid = 3_000_001;
    file(&mut w, "etc/big-ids", b"ids", &big);
    w.append("dev/null", WriteKind::Char(1, 3), &meta(0o666))
        .unwrap();
    w.append("dev/loop0", WriteKind::Block(7, 0), &meta(0o660))
        .unwrap();
    w.append("dev/fifo", WriteKind::Fifo, &meta(0o644)).unwrap();
    w.finish().unwrap()
}

fn layer1(tmp: &Path, c: Compression) -> WrittenLayer {
    let mut w = LayerWriter::create(tmp, c, None).unwrap();
    let d = meta(0o755);
    let f = meta(0o644);
    w.append("d1", WriteKind::Dir, &d).unwrap();
    w.append("d1/x", WriteKind::Whiteout, &f).unwrap();
    w.append("o", WriteKind::Dir, &meta(0o750)).unwrap();
    file(&mut w, "o/new", b"after the opaque marker", &f);
    // The opaque marker after the new file: it still applies first.
    file(&mut w, "o/.wh..wh..opq", b"", &f);
    w.append("f2", WriteKind::Dir, &d).unwrap();
    file(&mut w, "f2/child", b"f2 is a directory now", &f);
    file(&mut w, "d3", b"d3 is a file now", &f);
    w.append("l2", WriteKind::Hardlink("t"), &f).unwrap();
    file(&mut w, "shadowed", &vec![3u8; 1200], &f);
    w.finish().unwrap()
}

fn layer2(tmp: &Path, c: Compression) -> WrittenLayer {
    let mut w = LayerWriter::create(tmp, c, None).unwrap();
    // Delete the hard link's target: l2 must keep the content.
    w.append("t", WriteKind::Whiteout, &meta(0o644)).unwrap();
    w.finish().unwrap()
}

/// A layer written with GNU long-name records ('L'/'K') instead of PAX.
fn gnu_layer(tmp: &Path, c: Compression) -> WrittenLayer {
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_data(&mut h, "gnu/", &[][..]).unwrap();
        let long = format!("gnu/{}", "n".repeat(150));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(4);
        b.append_data(&mut h, &long, &b"gnu!"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_link(&mut h, "gnu/long-link", format!("/{long}"))
            .unwrap();
        b.finish().unwrap();
    }
    let diff_id = Digest::of(&raw);
    let tmpf = tempfile::Builder::new().tempfile_in(tmp).unwrap();
    let (mut file, path) = tmpf.into_parts();
    let blob = match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&raw[..], 3).unwrap(),
        Compression::None => raw.clone(),
    };
    file.write_all(&blob).unwrap();
    WrittenLayer {
        path,
        digest: Digest::of(&blob),
        diff_id,
        size: blob.len() as u64,
        uncompressed_size: raw.len() as u64,
        compression: c,
        entries: 3,
    }
}

/// Write the edge-case image into `layout` under `tag`.
pub fn write(layout: &Path, tag: &str, docker: bool, c: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ImageSpec {
        docker,
        ..ImageSpec::lambda(&["handler.handler"])
    };
    spec.add(layer0(tmp.path(), c), "layer 0: everything");
    spec.add(
        layer1(tmp.path(), c),
        "layer 1: whiteouts, opaque, type changes",
    );
    spec.add(layer2(tmp.path(), c), "layer 2: delete a hard link target");
    spec.add(gnu_layer(tmp.path(), c), "layer 3: GNU long names");
    spec.write(&OciLayoutSink::create(layout, Some(tag)).unwrap())
        .unwrap();
}

/// An index with one image and one BuildKit-style attestation manifest.
pub fn write_index_with_attestation(layout: &Path, image_tag: &str, index_tag: &str) {
    use coldpress::transport::{Sink, Source};
    let src =
        coldpress::transport::oci_layout::OciLayoutSource::open(layout, Some(image_tag)).unwrap();
    let m = src.root().unwrap();
    let sink = OciLayoutSink::create(layout, Some(index_tag)).unwrap();
    // The attestation: an in-toto layer under an unknown/unknown platform.
    let statement: Arc<[u8]> = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#.to_vec().into();
    let sdesc = Descriptor::new(
        MediaType::InToto,
        Digest::of(&statement),
        statement.len() as u64,
    );
    sink.put_blob(&sdesc, &statement as &dyn BlobContent)
        .unwrap();
    let cfg: Arc<[u8]> = br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec().into();
    let cdesc = Descriptor::new(MediaType::OciConfig, Digest::of(&cfg), cfg.len() as u64);
    sink.put_blob(&cdesc, &cfg as &dyn BlobContent).unwrap();
    let att = coldpress::writer::image::manifest(false, &cdesc, &[sdesc], None);
    let adesc = Descriptor::new(
        MediaType::OciManifest,
        att.digest.clone(),
        att.bytes.len() as u64,
    );
    let abytes: Arc<[u8]> = att.bytes.clone().into();
    sink.put_blob(&adesc, &abytes as &dyn BlobContent).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OciIndex.as_str(),
        "manifests": [
            {"mediaType": m.media_type.as_str(), "digest": m.digest.to_string(), "size": m.bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": MediaType::OciManifest.as_str(), "digest": att.digest.to_string(), "size": att.bytes.len(),
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": m.digest.to_string()}}
        ]
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    sink.put_manifest(&coldpress::image::RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: MediaType::OciIndex,
    })
    .unwrap();
}

/// The edge image's first layer alone, as a base image (same blob as in the full image).
pub fn write_base(layout: &Path, tag: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ImageSpec::lambda(&[]);
    spec.add(layer0(tmp.path(), Compression::Gzip), "layer 0: everything");
    spec.write(&OciLayoutSink::create(layout, Some(tag)).unwrap())
        .unwrap();
}
