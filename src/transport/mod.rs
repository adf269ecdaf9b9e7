//! Where images live. Every transport (registry, OCI layout, docker archive)
//! implements the same two narrow traits, so every command works with all of them.
//! A new transport is one new module here.

pub mod docker_archive;
pub mod oci_layout;
pub mod registry;
pub mod resolve;

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result, from_io};
use crate::image::{Descriptor, MediaType, RawManifest, sniff_media_type};
use crate::reference::ImageRef;

/// Reads an image: its top-level manifest (or index), manifests by digest, blobs.
pub trait Source: Send + Sync {
    /// How to name this source in messages, e.g. `oci:./layout:app`.
    fn describe(&self) -> String;

    /// The manifest or index the reference names, as exact bytes.
    fn root(&self) -> Result<RawManifest>;

    /// A manifest an index points to.
    fn manifest(&self, desc: &Descriptor) -> Result<RawManifest>;

    /// A stream of a blob's bytes, unverified: use [`open_verified`].
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>>;

    /// The registry location, for cross-repository mounts.
    fn registry_ref(&self) -> Option<&crate::reference::RegistryRef> {
        None
    }

    /// A manifest under another tag of the same repository (where artifacts
    /// about the image are found, see [`Sink::put_tagged`]); `None` when the
    /// tag does not exist or the transport keeps no such tags.
    fn tagged(&self, _tag: &str) -> Result<Option<RawManifest>> {
        Ok(None)
    }
}

/// Something that can be read from the start as often as needed (retries re-open it).
pub trait BlobContent: Send + Sync {
    fn open(&self) -> Result<Box<dyn Read + Send>>;
}

impl BlobContent for PathBuf {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        let f = File::open(self).with_ctx(|| format!("opening {}", self.display()))?;
        Ok(Box::new(f))
    }
}

impl BlobContent for tempfile::TempPath {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        let f = File::open(self).with_ctx(|| format!("opening {}", self.display()))?;
        Ok(Box::new(f))
    }
}

impl BlobContent for Arc<[u8]> {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.clone())))
    }
}

/// A blob copied from a source as it is (base layers: never recompressed).
pub struct FromSource<'a> {
    pub source: &'a dyn Source,
    pub desc: Descriptor,
}

impl BlobContent for FromSource<'_> {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_verified(self.source, &self.desc)?))
    }
}

/// What happened to one blob during a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The destination already had it.
    Existed,
    /// Cross-repository mount in the same registry.
    Mounted,
    /// Bytes were sent.
    Uploaded,
}

/// Writes an image. Blobs first, manifest last: `put_manifest` is what makes the
/// image visible under its tag, so a failure before it leaves no partial image.
pub trait Sink: Send + Sync {
    fn describe(&self) -> String;

    fn has_blob(&self, desc: &Descriptor) -> Result<bool>;

    /// Store a blob whose content hashes to `desc.digest`. Implementations verify
    /// the digest while writing and never make a mismatching blob visible.
    fn put_blob(&self, desc: &Descriptor, content: &dyn BlobContent) -> Result<BlobOutcome>;

    /// Store a blob that exists in `from`, mounting it when both are in one
    /// registry. The default copies the bytes.
    fn copy_blob(&self, desc: &Descriptor, from: &dyn Source) -> Result<BlobOutcome> {
        if self.has_blob(desc)? {
            return Ok(BlobOutcome::Existed);
        }
        self.put_blob(
            desc,
            &FromSource {
                source: from,
                desc: desc.clone(),
            },
        )
    }

    /// Store the manifest and point the destination's tag at it.
    fn put_manifest(&self, manifest: &RawManifest) -> Result<()>;

    /// Store a manifest that is not the image itself (an artifact about it) in
    /// the destination's repository, under `tag` or, with `None`, by digest
    /// only. The destination's own tag is left alone. Only registries keep
    /// such manifests: a layout or archive destination is handed to tools that
    /// expect one image in it.
    fn put_tagged(&self, manifest: &RawManifest, _tag: Option<&str>) -> Result<()> {
        Err(Error::Unsupported {
            what: self.describe(),
            message: format!(
                "only a registry keeps artifacts beside an image (manifest {})",
                manifest.digest
            ),
        })
    }
}

/// Settings shared by all transports (mostly registry ones).
#[derive(Clone, Debug, Default)]
pub struct TransportOptions {
    pub registry: registry::RegistryOptions,
}

/// Open an image for reading.
pub fn open_source(r: &ImageRef, opts: &TransportOptions) -> Result<Box<dyn Source>> {
    Ok(match r {
        ImageRef::Registry(rr) => {
            Box::new(registry::RegistrySource::new(rr.clone(), &opts.registry)?)
        }
        ImageRef::OciLayout { dir, tag } => {
            Box::new(oci_layout::OciLayoutSource::open(dir, tag.as_deref())?)
        }
        ImageRef::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveSource::open(file, name.as_deref())?,
        ),
    })
}

/// Open a destination for writing.
pub fn open_sink(r: &ImageRef, opts: &TransportOptions) -> Result<Box<dyn Sink>> {
    Ok(match r {
        ImageRef::Registry(rr) => {
            Box::new(registry::RegistrySink::new(rr.clone(), &opts.registry)?)
        }
        ImageRef::OciLayout { dir, tag } => {
            Box::new(oci_layout::OciLayoutSink::create(dir, tag.as_deref())?)
        }
        ImageRef::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveSink::create(file, name.as_deref())?,
        ),
    })
}

/// A blob stream that fails (at EOF at the latest) unless the bytes match the descriptor.
pub fn open_verified(
    source: &dyn Source,
    desc: &Descriptor,
) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
    let r = source.open_blob(desc)?;
    Ok(VerifyingReader::new(
        r,
        Some((desc.digest.clone(), Some(desc.size))),
        format!("blob {} from {}", desc.digest, source.describe()),
    ))
}

/// Read a small blob (a config) completely, verified, refusing anything over `max` bytes.
pub fn read_small_blob(source: &dyn Source, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
    let what = format!("blob {} from {}", desc.digest, source.describe());
    if desc.size > max {
        return Err(Error::invalid(
            &what,
            format!(
                "{} bytes is over the {max}-byte limit for this kind of blob",
                desc.size
            ),
        ));
    }
    let mut out = Vec::with_capacity(desc.size as usize);
    let mut r = open_verified(source, desc)?;
    r.read_to_end(&mut out).map_err(|e| from_io(&what, e))?;
    Ok(out)
}

/// Check a manifest fetched by digest and work out its media type.
pub fn manifest_from_bytes(
    bytes: Vec<u8>,
    declared: Option<MediaType>,
    expected: Option<&Digest>,
    what: &str,
) -> Result<RawManifest> {
    if bytes.len() as u64 > crate::image::MAX_MANIFEST_BYTES {
        return Err(Error::invalid(
            what,
            format!(
                "manifest of {} bytes is over the {}-byte limit",
                bytes.len(),
                crate::image::MAX_MANIFEST_BYTES
            ),
        ));
    }
    let digest = Digest::of(&bytes);
    if let Some(exp) = expected
        && exp != &digest
    {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: exp.to_string(),
            actual: digest.to_string(),
        });
    }
    let sniffed = sniff_media_type(&bytes, what)?;
    // Trust the document over a generic Content-Type (e.g. application/json).
    let media_type = match declared {
        Some(d) if d.is_index() || d.is_manifest() || d.is_schema1() => d,
        _ => sniffed,
    };
    Ok(RawManifest {
        bytes,
        media_type,
        digest,
    })
}
