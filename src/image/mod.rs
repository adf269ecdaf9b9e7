//! The OCI image spec and Docker v2 schema 2 as types: media types, descriptors,
//! manifests, indexes and the parts of the image config that coldpress reads.
//!
//! We parse these for reading only. Manifests and configs we did not change are
//! always passed on as their original bytes, because re-serializing changes digests.

pub mod platform;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub use platform::Platform;

/// Media types, as an enum so the rest of the code never compares strings.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum MediaType {
    OciManifest,
    OciIndex,
    OciConfig,
    OciLayer,
    OciLayerGzip,
    OciLayerZstd,
    OciLayerNondistributable,
    OciLayerNondistributableGzip,
    OciLayerNondistributableZstd,
    DockerManifest,
    DockerManifestList,
    DockerConfig,
    DockerLayer,
    DockerLayerGzip,
    DockerForeignLayerGzip,
    DockerSchema1,
    DockerSchema1Signed,
    InToto,
    Other(String),
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
pub const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// What the first bytes of a blob say its compression is. Beside the media types,
/// not in `layer`, because sources check it too (a docker archive's layers carry no
/// media type).
pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

impl MediaType {
    pub fn as_str(&self) -> &str {
        use MediaType::*;
        match self {
            OciManifest => "application/vnd.oci.image.manifest.v1+json",
            OciIndex => "application/vnd.oci.image.index.v1+json",
            OciConfig => "application/vnd.oci.image.config.v1+json",
            OciLayer => "application/vnd.oci.image.layer.v1.tar",
            OciLayerGzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            OciLayerZstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            OciLayerNondistributable => "application/vnd.oci.image.layer.nondistributable.v1.tar",
            OciLayerNondistributableGzip => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            }
            OciLayerNondistributableZstd => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            }
            DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            DockerManifestList => "application/vnd.docker.distribution.manifest.list.v2+json",
            DockerConfig => "application/vnd.docker.container.image.v1+json",
            DockerLayer => "application/vnd.docker.image.rootfs.diff.tar",
            DockerLayerGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            DockerForeignLayerGzip => "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            DockerSchema1 => "application/vnd.docker.distribution.manifest.v1+json",
            DockerSchema1Signed => "application/vnd.docker.distribution.manifest.v1+prettyjws",
            InToto => "application/vnd.in-toto+json",
            Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> MediaType {
        use MediaType::*;
        // Parameters such as "; charset=utf-8" are not part of the type.
        let s = s.split(';').next().unwrap_or("").trim();
        for known in [
            OciManifest,
            OciIndex,
            OciConfig,
            OciLayer,
            OciLayerGzip,
            OciLayerZstd,
            OciLayerNondistributable,
            OciLayerNondistributableGzip,
            OciLayerNondistributableZstd,
            DockerManifest,
            DockerManifestList,
            DockerConfig,
            DockerLayer,
            DockerLayerGzip,
            DockerForeignLayerGzip,
            DockerSchema1,
            DockerSchema1Signed,
            InToto,
        ] {
            if known.as_str() == s {
                return known;
            }
        }
        Other(s.to_string())
    }

    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    pub fn is_schema1(&self) -> bool {
        matches!(
            self,
            MediaType::DockerSchema1 | MediaType::DockerSchema1Signed
        )
    }

    pub fn is_docker(&self) -> bool {
        self.as_str().starts_with("application/vnd.docker.")
    }

    /// The compression a layer media type declares, or `None` if this is not a
    /// layer type we can read.
    pub fn layer_compression(&self) -> Option<Compression> {
        use MediaType::*;
        match self {
            OciLayer | OciLayerNondistributable | DockerLayer => Some(Compression::None),
            OciLayerGzip
            | OciLayerNondistributableGzip
            | DockerLayerGzip
            | DockerForeignLayerGzip => Some(Compression::Gzip),
            OciLayerZstd | OciLayerNondistributableZstd => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Foreign/non-distributable layers must never be uploaded by us.
    pub fn is_nondistributable(&self) -> bool {
        use MediaType::*;
        matches!(
            self,
            OciLayerNondistributable
                | OciLayerNondistributableGzip
                | OciLayerNondistributableZstd
                | DockerForeignLayerGzip
        )
    }

    /// The layer media type for `compression` in the Docker or OCI family.
    pub fn layer(docker: bool, compression: Compression) -> MediaType {
        match (docker, compression) {
            (true, Compression::Gzip) => MediaType::DockerLayerGzip,
            (true, Compression::None) => MediaType::DockerLayer,
            // Docker has no zstd type; zstd layers always use OCI media types.
            (_, Compression::Zstd) => MediaType::OciLayerZstd,
            (false, Compression::Gzip) => MediaType::OciLayerGzip,
            (false, Compression::None) => MediaType::OciLayer,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MediaType::parse(&String::deserialize(d)?))
    }
}

/// A content descriptor (image-spec descriptor.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type,
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<MediaType>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<MediaType>,
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Manifests and configs larger than this are refused: real ones are a few KiB,
/// and a hostile registry must not make us allocate without bound.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Raw manifest bytes with what we know about them.
#[derive(Clone, Debug)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: MediaType,
    pub digest: Digest,
}

/// What a manifest document is, decided from its content when the transport did
/// not say (OCI allows omitting `mediaType`).
pub fn sniff_media_type(bytes: &[u8], what: &str) -> Result<MediaType> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        fs_layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(what, format!("manifest is not valid JSON: {e}")))?;
    if p.schema_version == Some(1) || p.fs_layers.is_some() {
        return Ok(MediaType::DockerSchema1);
    }
    if let Some(mt) = p.media_type {
        return Ok(MediaType::parse(&mt));
    }
    if p.manifests.is_some() {
        return Ok(MediaType::OciIndex);
    }
    if p.layers.is_some() {
        return Ok(MediaType::OciManifest);
    }
    Err(Error::invalid(
        what,
        "document is neither an image manifest nor an index",
    ))
}

impl Manifest {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(what, format!("malformed image manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(Error::unsupported(
                what,
                format!(
                    "manifest schemaVersion {} is unsupported; re-push the image with a current client",
                    m.schema_version
                ),
            ));
        }
        Ok(m)
    }

    /// Docker v2s2 or OCI, from the declared type.
    pub fn is_docker(&self) -> bool {
        self.media_type.as_ref().is_some_and(MediaType::is_docker)
            || self.config.media_type == MediaType::DockerConfig
    }
}

impl Index {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Index> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(what, format!("malformed image index: {e}")))
    }
}

/// Image configuration (image-spec config.md), the fields coldpress reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<History>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig> {
        let c: ImageConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(what, format!("malformed image config: {e}")))?;
        Ok(c)
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        let cfg = self.config.as_ref()?;
        cfg.env.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// History entries that correspond to layers (not `empty_layer`), in order.
    pub fn layer_history(&self) -> Vec<Option<&History>> {
        let mut out: Vec<Option<&History>> = self
            .history
            .iter()
            .filter(|h| !h.empty_layer)
            .map(Some)
            .collect();
        out.resize(self.rootfs.diff_ids.len(), None);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_round_trip() {
        for s in [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/x-custom",
        ] {
            assert_eq!(MediaType::parse(s).as_str(), s);
        }
        assert_eq!(
            MediaType::parse("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            MediaType::OciIndex
        );
    }

    #[test]
    fn sniffs_untyped_documents() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#, "x").unwrap(),
            MediaType::OciIndex
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#, "x").unwrap(),
            MediaType::DockerSchema1
        );
    }

    #[test]
    fn config_tolerates_nulls() {
        let c = ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Entrypoint":null,"Labels":null},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            "cfg",
        )
        .unwrap();
        assert!(c.config.unwrap().env.is_empty());
    }
}
