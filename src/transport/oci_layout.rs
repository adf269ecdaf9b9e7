//! OCI image layout directories (image-spec image-layout.md): `oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`. Tags are `org.opencontainers.image.ref.name`
//! annotations on `index.json` entries, as skopeo and umoci write them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{BlobContent, BlobOutcome, Sink, Source, manifest_from_bytes};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result, from_io};
use crate::fsutil::write_atomic;
use crate::image::{Descriptor, Index, RawManifest};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub struct OciLayoutSource {
    dir: PathBuf,
    tag: Option<String>,
    root: Descriptor,
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

fn describe(dir: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("oci:{}:{t}", dir.display()),
        None => format!("oci:{}", dir.display()),
    }
}

/// Does an `index.json` entry carry this tag? containerd writes full references
/// (`docker.io/library/app:v1`), skopeo and umoci the bare tag.
fn entry_has_tag(d: &Descriptor, tag: &str) -> bool {
    match d.annotation(REF_NAME) {
        Some(name) if name == tag => true,
        Some(name) => name.contains('/') && name.rsplit_once(':').is_some_and(|(_, t)| t == tag),
        None => false,
    }
}

impl OciLayoutSource {
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self> {
        let what = describe(dir, tag);
        let layout_file = dir.join("oci-layout");
        if !layout_file.is_file() {
            return Err(Error::NotFound {
                what: format!("{what}: {}", layout_file.display()),
                hint: "not an OCI image layout directory".into(),
            });
        }
        let index_path = dir.join("index.json");
        let bytes = fs::read(&index_path).with_ctx(|| format!("{what}: reading index.json"))?;
        let index = Index::parse(&bytes, &format!("{what}: index.json"))?;
        let root = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| entry_has_tag(d, t))
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: what.clone(),
                    hint: format!("tags in this layout: {}", list_tags(&index)),
                })?,
            None => match index.manifests.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(Error::NotFound {
                        what,
                        hint: "the layout's index.json lists no images".into(),
                    });
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "{what} holds {} images; name one with oci:DIR:TAG (tags: {})",
                        index.manifests.len(),
                        list_tags(&index)
                    )));
                }
            },
        };
        Ok(OciLayoutSource {
            dir: dir.to_path_buf(),
            tag: tag.map(str::to_string),
            root,
        })
    }

    fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let what = format!("{}: manifest {}", self.describe(), desc.digest);
        if desc.size > crate::image::MAX_MANIFEST_BYTES {
            return Err(Error::invalid(
                &what,
                format!("{} bytes is too large for a manifest", desc.size),
            ));
        }
        let bytes = fs::read(blob_path(&self.dir, &desc.digest)).with_ctx(|| &what)?;
        manifest_from_bytes(
            bytes,
            Some(desc.media_type.clone()),
            Some(&desc.digest),
            &what,
        )
    }
}

fn list_tags(index: &Index) -> String {
    let tags: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| d.annotation(REF_NAME))
        .collect();
    if tags.is_empty() {
        "none".into()
    } else {
        tags.join(", ")
    }
}

impl Source for OciLayoutSource {
    fn describe(&self) -> String {
        describe(&self.dir, self.tag.as_deref())
    }

    fn root(&self) -> Result<RawManifest> {
        self.read_manifest(&self.root)
    }

    fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.read_manifest(desc)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let path = blob_path(&self.dir, &desc.digest);
        let f = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound {
                    what: format!("{}: blob {}", self.describe(), desc.digest),
                    hint: String::new(),
                }
            } else {
                Error::io(format!("opening {}", path.display()), e)
            }
        })?;
        Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)))
    }
}

/// Writes into an OCI layout, creating it if needed. Blobs land under their digest
/// only after their bytes were verified; `index.json` is replaced atomically last.
pub struct OciLayoutSink {
    dir: PathBuf,
    tag: Option<String>,
}

impl OciLayoutSink {
    pub fn create(dir: &Path, tag: Option<&str>) -> Result<Self> {
        let what = describe(dir, tag);
        fs::create_dir_all(dir.join("blobs").join("sha256"))
            .with_ctx(|| format!("{what}: creating layout"))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#)?;
        }
        Ok(OciLayoutSink {
            dir: dir.to_path_buf(),
            tag: tag.map(str::to_string),
        })
    }
}

/// Copy `content` into `dir/blobs/sha256/<hex>`, verifying it on the way.
pub fn store_blob(
    dir: &Path,
    desc: &Descriptor,
    content: &dyn BlobContent,
    what: &str,
) -> Result<()> {
    let target = blob_path(dir, &desc.digest);
    let parent = target.parent().expect("blob path has a parent");
    fs::create_dir_all(parent).with_ctx(|| format!("creating {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_ctx(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut r = VerifyingReader::new(
        content.open()?,
        Some((desc.digest.clone(), Some(desc.size))),
        format!("{what}: blob {}", desc.digest),
    );
    io::copy(&mut r, tmp.as_file_mut())
        .map_err(|e| from_io(format!("{what}: writing blob {}", desc.digest), e))?;
    tmp.persist(&target)
        .map_err(|e| Error::io(format!("{what}: storing blob {}", desc.digest), e.error))?;
    Ok(())
}

impl Sink for OciLayoutSink {
    fn describe(&self) -> String {
        describe(&self.dir, self.tag.as_deref())
    }

    fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        let p = blob_path(&self.dir, &desc.digest);
        Ok(p.metadata().is_ok_and(|m| m.len() == desc.size))
    }

    fn put_blob(&self, desc: &Descriptor, content: &dyn BlobContent) -> Result<BlobOutcome> {
        if self.has_blob(desc)? {
            return Ok(BlobOutcome::Existed);
        }
        store_blob(&self.dir, desc, content, &self.describe())?;
        Ok(BlobOutcome::Uploaded)
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let what = self.describe();
        let desc = Descriptor::new(
            manifest.media_type.clone(),
            manifest.digest.clone(),
            manifest.bytes.len() as u64,
        );
        let bytes: std::sync::Arc<[u8]> = manifest.bytes.clone().into();
        store_blob(&self.dir, &desc, &bytes, &what)?;

        let index_path = self.dir.join("index.json");
        let raw = fs::read(&index_path).with_ctx(|| format!("{what}: reading index.json"))?;
        let mut index: Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(format!("{what}: index.json"), e))?;
        let manifests = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                Error::invalid(format!("{what}: index.json"), "has no manifests array")
            })?;
        let mut entry = json!({
            "mediaType": manifest.media_type.as_str(),
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
        });
        match &self.tag {
            Some(tag) => {
                manifests.retain(|m| {
                    m.pointer("/annotations/org.opencontainers.image.ref.name")
                        .and_then(Value::as_str)
                        != Some(tag)
                });
                entry["annotations"] = json!({ REF_NAME: tag });
            }
            None => manifests.retain(|m| {
                m.get("digest").and_then(Value::as_str) != Some(&manifest.digest.to_string())
            }),
        }
        manifests.push(entry);
        let out = serde_json::to_vec(&index).expect("JSON values serialize");
        write_atomic(&index_path, &out)
    }
}
