//! `docker save` tarballs. The archive has a `manifest.json` (config path, layer
//! paths, RepoTags) and, since Docker 25, an OCI layout beside it. There is no
//! registry manifest inside, so the source synthesizes a Docker v2 schema 2
//! manifest whose layer digests are those of the files as stored.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::oci_layout::store_blob;
use super::{BlobContent, BlobOutcome, Sink, Source};
use crate::digest::{Digest, hash_reader};
use crate::error::{Error, IoContext, Result, from_io};
use crate::image::{
    Compression, Descriptor, ImageConfig, Manifest, MediaType, RawManifest, sniff_compression,
};

#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A member of the outer tar: where its bytes are.
#[derive(Clone, Copy, Debug)]
struct Member {
    offset: u64,
    size: u64,
}

pub struct DockerArchiveSource {
    file: PathBuf,
    name: Option<String>,
    blobs: HashMap<Digest, Member>,
    manifest: RawManifest,
}

fn describe(file: &Path, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("docker-archive:{}:{n}", file.display()),
        None => format!("docker-archive:{}", file.display()),
    }
}

fn normalize_member(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}

impl DockerArchiveSource {
    pub fn open(file: &Path, name: Option<&str>) -> Result<Self> {
        let what = describe(file, name);
        let f = File::open(file).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound {
                    what: what.clone(),
                    hint: String::new(),
                }
            } else {
                Error::io(&what, e)
            }
        })?;
        // Index the outer tar once; members are then read in place.
        let mut members: HashMap<String, Member> = HashMap::new();
        let mut archive = tar::Archive::new(f);
        let entries = archive
            .entries_with_seek()
            .with_ctx(|| format!("{what}: reading archive"))?;
        for entry in entries {
            let entry = entry.with_ctx(|| format!("{what}: reading archive"))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .with_ctx(|| format!("{what}: reading archive"))?;
            members.insert(
                normalize_member(&path.to_string_lossy()),
                Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
            );
        }
        let mut f = File::open(file).with_ctx(|| &what)?;
        let read_member = |f: &mut File, name: &str, max: u64| -> Result<Vec<u8>> {
            let m = members.get(&normalize_member(name)).ok_or_else(|| {
                Error::invalid(&what, format!("the archive has no member '{name}'"))
            })?;
            if m.size > max {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "member '{name}' is {} bytes, over the {max}-byte limit",
                        m.size
                    ),
                ));
            }
            let mut buf = vec![0; m.size as usize];
            f.seek(SeekFrom::Start(m.offset)).with_ctx(|| &what)?;
            f.read_exact(&mut buf).with_ctx(|| &what)?;
            Ok(buf)
        };
        let manifest_json = read_member(&mut f, "manifest.json", crate::image::MAX_MANIFEST_BYTES)
            .map_err(|_| Error::invalid(&what, "not a docker save archive (no manifest.json)"))?;
        let entries: Vec<ArchiveEntry> = serde_json::from_slice(&manifest_json)
            .map_err(|e| Error::invalid(format!("{what}: manifest.json"), e))?;
        let entry = match name {
            Some(n) => entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| t == n || t.ends_with(&format!("/{n}")))
                })
                .ok_or_else(|| Error::NotFound {
                    what: what.clone(),
                    hint: format!("images in the archive: {}", archive_tags(&entries)),
                })?,
            None => match entries.as_slice() {
                [only] => only,
                [] => return Err(Error::invalid(&what, "manifest.json lists no images")),
                _ => {
                    return Err(Error::Usage(format!(
                        "{what} holds {} images; name one with docker-archive:FILE:NAME:TAG ({})",
                        entries.len(),
                        archive_tags(&entries)
                    )));
                }
            },
        };

        let config_bytes = read_member(&mut f, &entry.config, crate::image::MAX_CONFIG_BYTES)?;
        let config_digest = Digest::of(&config_bytes);
        let config = ImageConfig::parse(&config_bytes, &format!("{what}: config"))?;
        let mut blobs = HashMap::new();
        blobs.insert(
            config_digest.clone(),
            *members
                .get(&normalize_member(&entry.config))
                .expect("read above"),
        );
        let mut layers = Vec::new();
        for (i, layer_name) in entry.layers.iter().enumerate() {
            let m = *members.get(&normalize_member(layer_name)).ok_or_else(|| {
                Error::invalid(
                    &what,
                    format!("the archive has no layer member '{layer_name}'"),
                )
            })?;
            f.seek(SeekFrom::Start(m.offset)).with_ctx(|| &what)?;
            let mut magic = [0u8; 4];
            let n = (&mut f).take(4).read(&mut magic).with_ctx(|| &what)?;
            let compression = sniff_compression(&magic[..n]);
            // Docker 25+ names members by digest; legacy layer.tar members are the
            // uncompressed tar, whose digest is the diff_id. Anything else is hashed.
            let digest = match (layer_name.strip_prefix("blobs/sha256/"), compression) {
                (Some(hex), _) => format!("sha256:{hex}")
                    .parse::<Digest>()
                    .map_err(|e| Error::invalid(&what, e))?,
                (None, Compression::None) if i < config.rootfs.diff_ids.len() => {
                    config.rootfs.diff_ids[i].clone()
                }
                (None, _) => {
                    f.seek(SeekFrom::Start(m.offset)).with_ctx(|| &what)?;
                    hash_reader((&mut f).take(m.size)).with_ctx(|| &what)?.0
                }
            };
            blobs.insert(digest.clone(), m);
            layers.push(json!({
                "mediaType": MediaType::layer(true, compression).as_str(),
                "size": m.size,
                "digest": digest.to_string(),
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::DockerManifest.as_str(),
            "config": {
                "mediaType": MediaType::DockerConfig.as_str(),
                "size": config_bytes.len(),
                "digest": config_digest.to_string(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec_pretty(&manifest).expect("JSON values serialize");
        let manifest = RawManifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type: MediaType::DockerManifest,
        };
        Ok(DockerArchiveSource {
            file: file.to_path_buf(),
            name: name.map(str::to_string),
            blobs,
            manifest,
        })
    }
}

fn archive_tags(entries: &[ArchiveEntry]) -> String {
    let tags: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.repo_tags.iter().flatten())
        .map(String::as_str)
        .collect();
    if tags.is_empty() {
        "untagged".into()
    } else {
        tags.join(", ")
    }
}

impl Source for DockerArchiveSource {
    fn describe(&self) -> String {
        describe(&self.file, self.name.as_deref())
    }

    fn root(&self) -> Result<RawManifest> {
        Ok(self.manifest.clone())
    }

    fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        Err(Error::NotFound {
            what: format!("{}: manifest {}", self.describe(), desc.digest),
            hint: "docker archives hold no image indexes".into(),
        })
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let m = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| Error::NotFound {
                what: format!("{}: blob {}", self.describe(), desc.digest),
                hint: String::new(),
            })?;
        let mut f = File::open(&self.file).with_ctx(|| self.describe())?;
        f.seek(SeekFrom::Start(m.offset))
            .with_ctx(|| self.describe())?;
        Ok(Box::new(io::BufReader::with_capacity(
            256 * 1024,
            f.take(m.size),
        )))
    }
}

/// Collects blobs in a private directory next to the destination, and writes the
/// archive (Docker 25+ layout: OCI layout plus `manifest.json`) in one go when the
/// manifest arrives, renaming it into place so no partial archive is ever visible.
pub struct DockerArchiveSink {
    file: PathBuf,
    name: Option<String>,
    staging: tempfile::TempDir,
}

impl DockerArchiveSink {
    pub fn create(file: &Path, name: Option<&str>) -> Result<Self> {
        let what = describe(file, name);
        if let Some(n) = name
            && crate::reference::RegistryRef::parse(n).is_err()
        {
            return Err(Error::Usage(format!(
                "{what}: '{n}' is not a valid NAME:TAG for the archive"
            )));
        }
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(".coldpress-archive-")
            .tempdir_in(parent)
            .with_ctx(|| {
                format!(
                    "{what}: creating a staging directory in {}",
                    parent.display()
                )
            })?;
        Ok(DockerArchiveSink {
            file: file.to_path_buf(),
            name: name.map(str::to_string),
            staging,
        })
    }

    fn blob_file(&self, d: &Digest) -> PathBuf {
        self.staging
            .path()
            .join("blobs")
            .join("sha256")
            .join(d.hex())
    }
}

fn append_file(
    b: &mut tar::Builder<impl Write>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

impl Sink for DockerArchiveSink {
    fn describe(&self) -> String {
        describe(&self.file, self.name.as_deref())
    }

    fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.blob_file(&desc.digest).is_file())
    }

    fn put_blob(&self, desc: &Descriptor, content: &dyn BlobContent) -> Result<BlobOutcome> {
        if self.has_blob(desc)? {
            return Ok(BlobOutcome::Existed);
        }
        store_blob(self.staging.path(), desc, content, &self.describe())?;
        Ok(BlobOutcome::Uploaded)
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let what = self.describe();
        let m = Manifest::parse(&manifest.bytes, &what)?;
        let bytes: Arc<[u8]> = manifest.bytes.clone().into();
        let mdesc = Descriptor::new(
            manifest.media_type.clone(),
            manifest.digest.clone(),
            bytes.len() as u64,
        );
        self.put_blob(&mdesc, &bytes)?;

        let repo_tags: Vec<String> = self
            .name
            .iter()
            .map(|n| {
                let r = crate::reference::RegistryRef::parse(n).expect("validated in create");
                let short = r
                    .repository
                    .strip_prefix("library/")
                    .filter(|_| r.registry == "docker.io")
                    .unwrap_or(&r.repository)
                    .to_string();
                let repo = if r.registry == "docker.io" {
                    short
                } else {
                    format!("{}/{}", r.registry, r.repository)
                };
                format!("{repo}:{}", r.tag.as_deref().unwrap_or("latest"))
            })
            .collect();
        let blob_name = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let docker_manifest = json!([{
            "Config": blob_name(&m.config.digest),
            "RepoTags": repo_tags,
            "Layers": m.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
        }]);
        let mut index_entry = json!({
            "mediaType": manifest.media_type.as_str(),
            "digest": manifest.digest.to_string(),
            "size": bytes.len(),
        });
        if let Some(tag) = repo_tags.first() {
            index_entry["annotations"] = json!({
                "io.containerd.image.name": tag,
                "org.opencontainers.image.ref.name": tag.rsplit_once(':').map_or("latest", |(_, t)| t),
            });
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OciIndex.as_str(),
            "manifests": [index_entry],
        });

        let parent = self.staging.path().parent().expect("staging has a parent");
        let tmp = tempfile::NamedTempFile::new_in(parent)
            .with_ctx(|| format!("{what}: creating the archive"))?;
        let mut b = tar::Builder::new(io::BufWriter::new(tmp));
        let write = |b: &mut tar::Builder<_>| -> io::Result<()> {
            let mut digests: Vec<&Digest> = vec![&m.config.digest];
            digests.extend(m.layers.iter().map(|l| &l.digest));
            digests.push(&manifest.digest);
            let mut seen = std::collections::HashSet::new();
            for d in digests {
                if !seen.insert(d) {
                    continue;
                }
                let f = File::open(self.blob_file(d))?;
                let size = f.metadata()?.len();
                append_file(b, &blob_name(d), size, f)?;
            }
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
            append_file(b, "oci-layout", layout.len() as u64, &layout[..])?;
            let idx = serde_json::to_vec(&index).expect("JSON values serialize");
            append_file(b, "index.json", idx.len() as u64, &idx[..])?;
            let dm = serde_json::to_vec(&docker_manifest).expect("JSON values serialize");
            append_file(b, "manifest.json", dm.len() as u64, &dm[..])?;
            b.finish()
        };
        write(&mut b).map_err(|e| from_io(format!("{what}: writing the archive"), e))?;
        let w = b
            .into_inner()
            .with_ctx(|| format!("{what}: writing the archive"))?;
        let tmp = w
            .into_inner()
            .map_err(|e| Error::io(format!("{what}: writing the archive"), e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .with_ctx(|| format!("{what}: writing the archive"))?;
        tmp.persist(&self.file)
            .map_err(|e| Error::io(format!("{what}: writing the archive"), e.error))?;
        Ok(())
    }
}
