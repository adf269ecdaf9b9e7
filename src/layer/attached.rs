//! Layer listings that travel with an image in its registry. A runner with an
//! empty cache (an ephemeral CI job) that optimizes build 2 after build 1 would
//! otherwise download, decompress and hash every layer build 2 shares with
//! build 1 only to learn what it already knew. `optimize` attaches the
//! listings of its source's layers to its output as an OCI artifact, and the
//! next run, given that output as `--reuse-from` (the destination by default),
//! seeds its listing cache with them.
//!
//! The artifact is an image manifest whose `subject` is the output's manifest
//! (image-spec 1.1), found through the distribution spec's referrers tag
//! schema: the tag `sha256-<hex of the subject>` names an index of the
//! subject's referrers. Every registry serves a tag, registry 2.x included,
//! and a tagged index keeps the artifact from the CNCF registry's garbage
//! collection. Other tools' entries in that index are kept.
//!
//! Each layer's listing is a blob of its own, the listing cache's file as it
//! is: the same on every runner, so a redeploy uploads only the listings of
//! the layers that changed, and a run fetches only those it lacks.

use std::sync::Arc;

use serde_json::{Value, json};

use super::cache::LayerCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, MediaType, RawManifest};
use crate::transport::{self, BlobContent, BlobOutcome, Sink, Source};

/// `artifactType` of the listings artifact.
pub const ARTIFACT_TYPE: &str = "application/vnd.coldpress.layer-listings.v1";
/// Media type of each blob: a listing cache file.
const LISTING_MEDIA_TYPE: &str = "application/vnd.coldpress.layer-listing.v1.json+zstd";
/// Annotation on each blob: the digest of the layer it lists.
const LAYER_ANNOTATION: &str = "dev.coldpress.layer.digest";
/// Annotation on each blob: the coldpress that wrote it. Another version may
/// capture other files or note programs otherwise under the same format, so
/// its listings are not used: after an upgrade, the first redeploy reads.
const VERSION_ANNOTATION: &str = "dev.coldpress.version";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// image-spec 1.1's empty descriptor, the config of an artifact without one.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";

/// Largest listing fetched, and what it may decompress to: listings are
/// metadata, a few hundred bytes per file.
const MAX_LISTING: u64 = 64 << 20;
const MAX_LISTING_RAW: u64 = 512 << 20;

/// The referrers tag of a manifest (distribution spec, "Referrers Tag Schema").
pub fn referrers_tag(subject: &Digest) -> String {
    let s = subject.to_string();
    let (alg, hex) = s.split_once(':').expect("digests are ALG:HEX");
    format!("{alg}-{hex}")
}

/// Whether `tag` has the referrers tag schema's shape (`sha256-<64 hex>`, or
/// sha512's digest cut to 64): it names an index of some manifest's referrers
/// (signatures, listings), not an image. A CI tag like `main-<git sha>` does
/// not match: only the registered digest algorithms do.
pub fn is_referrers_tag(tag: &str) -> bool {
    tag.split_once('-').is_some_and(|(alg, hex)| {
        matches!(alg, "sha256" | "sha512")
            && hex.len() == 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What [`attach`] did.
pub struct Attached {
    pub manifest: Digest,
    pub listings: usize,
    /// Listing bytes sent (the rest were in the repository already).
    pub uploaded_bytes: u64,
}

/// Attach the cached listings of `layers` to `subject`, an image in `sink`'s
/// repository; `dest` reads the same repository (for the referrers index that
/// may already be there).
pub fn attach(
    sink: &dyn Sink,
    dest: &dyn Source,
    subject: &Descriptor,
    cache: &LayerCache,
    layers: &[Digest],
) -> Result<Attached> {
    let mut blobs = Vec::new();
    let mut uploaded_bytes = 0;
    for layer in layers {
        let Some(file) = cache.stored_file(layer) else {
            continue;
        };
        // Read once: a concurrent run may replace the file (atomically) meanwhile.
        let bytes: Arc<[u8]> = std::fs::read(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?
            .into();
        let mut d = Descriptor::new(
            MediaType::Other(LISTING_MEDIA_TYPE.into()),
            Digest::of(&bytes),
            bytes.len() as u64,
        );
        if sink.put_blob(&d, &bytes as &dyn BlobContent)? == BlobOutcome::Uploaded {
            uploaded_bytes += d.size;
        }
        d.annotations = Some(
            [
                (LAYER_ANNOTATION.to_string(), layer.to_string()),
                (VERSION_ANNOTATION.to_string(), VERSION.to_string()),
            ]
            .into(),
        );
        blobs.push(d);
    }
    if blobs.is_empty() {
        return Err(Error::invalid(
            sink.describe(),
            "no listing of the source's layers is in the cache",
        ));
    }
    let empty = Descriptor::new(
        MediaType::Other(EMPTY_MEDIA_TYPE.into()),
        Digest::of(EMPTY),
        EMPTY.len() as u64,
    );
    sink.put_blob(&empty, &(Arc::from(EMPTY) as Arc<[u8]>) as &dyn BlobContent)?;
    let manifest = raw(
        MediaType::OciManifest,
        &json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OciManifest.as_str(),
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": empty.digest.to_string(),
                "size": empty.size,
                "data": "e30=",
            },
            "layers": blobs,
            "subject": {
                "mediaType": subject.media_type.as_str(),
                "digest": subject.digest.to_string(),
                "size": subject.size,
            },
        }),
    );
    sink.put_tagged(&manifest, None)?;

    // The referrers index: what is there, less an earlier listings artifact,
    // plus this one.
    let tag = referrers_tag(&subject.digest);
    let mut entries: Vec<Value> = match dest.tagged(&tag)? {
        None => Vec::new(),
        // What is under the tag is not ours to replace (distribution spec:
        // report a failure and stop).
        Some(m) if !m.media_type.is_index() => {
            return Err(Error::unsupported(
                format!("{}: tag {tag}", dest.describe()),
                format!(
                    "it is a {}, not an index of referrers",
                    m.media_type.as_str()
                ),
            ));
        }
        Some(m) => serde_json::from_slice::<Value>(&m.bytes)
            .ok()
            .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
            .ok_or_else(|| {
                Error::invalid(
                    format!("{}: tag {tag}", dest.describe()),
                    "an index without a manifests list",
                )
            })?,
    };
    entries.retain(|e| e.get("artifactType").and_then(Value::as_str) != Some(ARTIFACT_TYPE));
    entries.push(json!({
        "mediaType": MediaType::OciManifest.as_str(),
        "digest": manifest.digest.to_string(),
        "size": manifest.bytes.len(),
        "artifactType": ARTIFACT_TYPE,
    }));
    let index = raw(
        MediaType::OciIndex,
        &json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OciIndex.as_str(),
            "manifests": entries,
        }),
    );
    sink.put_tagged(&index, Some(&tag))?;
    Ok(Attached {
        manifest: manifest.digest,
        listings: blobs.len(),
        uploaded_bytes,
    })
}

fn raw(media_type: MediaType, v: &Value) -> RawManifest {
    let bytes = serde_json::to_vec(v).expect("JSON values serialize");
    RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type,
    }
}

/// Seed `cache` with the listings of `wanted` layers that are attached to
/// `subject` in `source`'s repository and not cached yet; how many were
/// added. No artifact is no error (`Ok(0)`).
pub fn fetch(
    source: &dyn Source,
    subject: &Digest,
    cache: &LayerCache,
    wanted: &[Digest],
    max_entries: usize,
) -> Result<usize> {
    let tag = referrers_tag(subject);
    let Some(index) = source.tagged(&tag)? else {
        return Ok(0);
    };
    if !index.media_type.is_index() {
        return Ok(0);
    }
    let what = format!("{}: referrers of {subject}", source.describe());
    // Other tools' entries are theirs: read only what identifies ours.
    let index: Value =
        serde_json::from_slice(&index.bytes).map_err(|e| Error::invalid(&what, e))?;
    let Some(entry) = index
        .get("manifests")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|d| d.get("artifactType").and_then(Value::as_str) == Some(ARTIFACT_TYPE))
        })
    else {
        return Ok(0);
    };
    let desc: Descriptor =
        serde_json::from_value(entry.clone()).map_err(|e| Error::invalid(&what, e))?;
    let desc = &desc;
    let m = source.manifest(desc)?;
    let what = format!("{}: layer listings {}", source.describe(), m.digest);
    let v: Value = serde_json::from_slice(&m.bytes).map_err(|e| Error::invalid(&what, e))?;
    // The tag is only a name: the artifact must say what it is about.
    let about = v.pointer("/subject/digest").and_then(Value::as_str);
    if about != Some(subject.to_string().as_str()) {
        return Err(Error::invalid(
            &what,
            format!("its subject is {about:?}, not {subject}"),
        ));
    }
    let blobs: Vec<Descriptor> = v
        .get("layers")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Error::invalid(&what, e))?
        .unwrap_or_default();
    let mut added = 0;
    for blob in blobs {
        let Some(layer) = blob
            .annotation(LAYER_ANNOTATION)
            .and_then(|l| l.parse::<Digest>().ok())
        else {
            continue;
        };
        if blob.media_type.as_str() != LISTING_MEDIA_TYPE
            || blob.annotation(VERSION_ANNOTATION) != Some(VERSION)
            || !wanted.contains(&layer)
            || cache.holds(&layer)
        {
            continue;
        }
        let what = format!("{what}: listing {} of layer {layer}", blob.digest);
        // One listing that cannot be used costs reading its layer, not the others.
        let got = if blob.size > MAX_LISTING {
            Err(Error::invalid(
                &what,
                format!("{} bytes is over the {MAX_LISTING}-byte limit", blob.size),
            ))
        } else {
            transport::open_verified(source, &blob)
                .and_then(|r| cache.import(&layer, r, MAX_LISTING_RAW, max_entries, &what))
        };
        match got {
            Ok(()) => added += 1,
            Err(e) => crate::ui::warn(&format!(
                "not using a layer listing: {}",
                crate::error::Chain(&e)
            )),
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tags_are_told_from_release_tags() {
        let d = Digest::of(b"x");
        assert!(is_referrers_tag(&referrers_tag(&d)));
        for tag in [
            "latest",
            "v1.2.3",
            "sha256",
            "sha256-abc",
            "build-1",
            "main-2f3a9c1",
        ] {
            assert!(!is_referrers_tag(tag), "{tag}");
        }
        let upper = referrers_tag(&d).to_uppercase().replace("SHA256", "sha256");
        assert!(!is_referrers_tag(&upper));
    }
}
