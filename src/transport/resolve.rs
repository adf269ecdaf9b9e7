//! From a reference to one platform's manifest and config, resolved by digest.

use serde::Serialize;

use super::{Source, read_small_blob};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    Descriptor, ImageConfig, Index, MAX_CONFIG_BYTES, Manifest, MediaType, Platform, RawManifest,
};

/// What the reference named when it was an index (manifest list).
#[derive(Clone, Debug, Serialize)]
pub struct IndexInfo {
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<String>,
    /// Entries BuildKit adds for provenance/SBOM (`unknown/unknown`).
    pub attestations: usize,
}

/// One platform's image, read from its source, with the exact bytes of its manifest and config.
pub struct ResolvedImage {
    pub reference: String,
    pub index: Option<IndexInfo>,
    pub manifest: RawManifest,
    pub parsed: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
    pub platform: Platform,
}

const ATTESTATION_ANNOTATION: &str = "vnd.docker.reference.type";

fn is_attestation(d: &Descriptor) -> bool {
    d.annotation(ATTESTATION_ANNOTATION) == Some("attestation-manifest")
        || d.platform.as_ref().is_some_and(Platform::is_unknown)
}

pub fn host_platform() -> Platform {
    Platform::new("linux", std::env::consts::ARCH, None)
}

/// Resolve the source's reference to one image. `wanted` selects among an index's
/// platforms; without it, an index with one runnable platform gives that one, and
/// otherwise the host's platform is taken (as skopeo does).
pub fn resolve(source: &dyn Source, wanted: Option<&Platform>) -> Result<ResolvedImage> {
    let reference = source.describe();
    let root = source.root()?;
    let (index, manifest) = if root.media_type.is_index() {
        let idx = Index::parse(&root.bytes, &reference)?;
        let runnable: Vec<&Descriptor> = idx
            .manifests
            .iter()
            .filter(|d| !is_attestation(d))
            .collect();
        let attestations = idx.manifests.len() - runnable.len();
        let platforms: Vec<String> = runnable
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or("unspecified".into(), |p| p.to_string())
            })
            .collect();
        let list = || {
            if platforms.is_empty() {
                "none".to_string()
            } else {
                platforms.join(", ")
            }
        };
        let chosen = match wanted {
            Some(w) => runnable
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(w)))
                .ok_or_else(|| Error::NotFound {
                    what: format!("{reference}: platform {w}"),
                    hint: format!("the index has: {}", list()),
                })?,
            None => match runnable.as_slice() {
                [only] => only,
                [] => {
                    return Err(Error::invalid(
                        &reference,
                        "the index lists no runnable image (only attestations)",
                    ));
                }
                many => {
                    let host = host_platform();
                    many.iter()
                        .find(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(&host)))
                        .ok_or_else(|| {
                            Error::Usage(format!("{reference} is a multi-platform index without {host}; choose one with --platform (available: {})", list()))
                        })?
                }
            },
        };
        let chosen = (*chosen).clone();
        let m = source.manifest(&chosen)?;
        if m.media_type.is_index() {
            return Err(Error::unsupported(
                &reference,
                "an index nested in an index is not supported; name the inner index by digest",
            ));
        }
        (
            Some(IndexInfo {
                digest: root.digest.clone(),
                media_type: root.media_type.to_string(),
                platforms,
                attestations,
            }),
            m,
        )
    } else {
        (None, root)
    };

    if manifest.media_type.is_schema1() {
        return Err(Error::unsupported(
            &reference,
            "Docker schema 1 manifests are unsupported; re-push the image with a current client (docker push, skopeo copy)",
        ));
    }
    if !manifest.media_type.is_manifest() {
        return Err(Error::unsupported(
            &reference,
            format!("unknown manifest media type '{}'", manifest.media_type),
        ));
    }
    let what = format!("{reference}@{}", manifest.digest);
    let parsed = Manifest::parse(&manifest.bytes, &what)?;
    match &parsed.config.media_type {
        MediaType::OciConfig | MediaType::DockerConfig => {}
        other => {
            return Err(Error::unsupported(
                &what,
                format!("not a container image (config media type '{other}')"),
            ));
        }
    }
    for l in &parsed.layers {
        if l.media_type.layer_compression().is_none() {
            return Err(Error::unsupported(
                &what,
                format!(
                    "layer {} has unknown media type '{}'",
                    l.digest, l.media_type
                ),
            ));
        }
    }
    let config_bytes = read_small_blob(source, &parsed.config, MAX_CONFIG_BYTES)?;
    let config = ImageConfig::parse(
        &config_bytes,
        &format!("{what}: config {}", parsed.config.digest),
    )?;
    if config.rootfs.diff_ids.len() != parsed.layers.len() {
        return Err(Error::invalid(
            &what,
            format!(
                "the config lists {} diff_ids but the manifest has {} layers",
                config.rootfs.diff_ids.len(),
                parsed.layers.len()
            ),
        ));
    }
    let platform = config.platform();
    Ok(ResolvedImage {
        reference,
        index,
        manifest,
        parsed,
        config_bytes,
        config,
        platform,
    })
}
