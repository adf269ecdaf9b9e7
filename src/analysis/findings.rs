//! Lints with stable ids: what makes this image slow to start or rejected by
//! Lambda. The ids are part of the report schema; never renumber or reuse them.

use std::fmt;

use serde::{Serialize, Serializer};

use super::Analysis;
use super::classify::Class;
use crate::image::MediaType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    /// Lambda rejects the image.
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    pub message: String,
}

pub const MIB: u64 = 1024 * 1024;
/// Lambda's limit on an image's uncompressed size, all layers included.
pub const LAMBDA_MAX_UNCOMPRESSED: u64 = 10 * 1024 * MIB;
/// Below this much function content, a .zip package usually starts faster.
pub const ZIP_THRESHOLD: u64 = 50 * MIB;
pub const LARGE_CODE: u64 = 5 * MIB;
pub const WASTE_THRESHOLD: u64 = MIB;

/// Declares [`FindingId`] from one table, so its list ([`FindingId::ALL`]), its ids
/// and its meanings cannot drift apart: a finding `compute` can emit is in `ALL`,
/// and a test checks each one against docs/findings.md.
macro_rules! finding_ids {
    ($($variant:ident = $id:literal: $meaning:literal,)*) => {
        /// A finding's stable id. The ids are part of the report schema: never
        /// rename or reuse one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FindingId {
            $(#[doc = $meaning] $variant,)*
        }

        impl FindingId {
            /// Every id, in catalog order.
            pub const ALL: &[FindingId] = &[$(FindingId::$variant,)*];

            /// The id as reports and docs/findings.md spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FindingId::$variant => $id,)*
                }
            }

            /// One line on what the finding means.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(FindingId::$variant => $meaning,)*
                }
            }
        }
    };
}

finding_ids! {
    IndexManifest = "index-manifest": "the reference is an image index / manifest list; Lambda needs a single-platform manifest",
    AttestationManifests = "attestation-manifests": "the index carries provenance/SBOM attestation manifests (BuildKit default); Lambda rejects it",
    Over10Gib = "over-10-gib": "over 10 GiB uncompressed; Lambda rejects images this large",
    DockerUncompressedLayer = "docker-uncompressed-layer": "uncompressed layer with a Docker media type; Lambda rejects it (UnsupportedImageLayerDetected)",
    Hardlinks = "hardlinks": "layers with hard-link entries, a reported cause of UnsupportedImageLayerDetected",
    MissingParentDirs = "missing-parent-dirs": "layers without entries for parent directories (Lambda: MissingParentDirectory)",
    NoLambdaBase = "no-lambda-base": "not on an official AWS Lambda base image; nothing is shared with Lambda's cache",
    StaleBase = "stale-base": "an older build of a Lambda base; fewer functions share it, so fewer of its bytes are cached",
    BuildTools = "build-tools": "compilers and build tools are in the image",
    CodeNotLast = "code-not-last": "function code is not in the last layer",
    DepsAfterCode = "deps-after-code": "a dependency layer comes after a code layer: every code change invalidates it",
    LargeCodeLayer = "large-code-layer": "the function code is large for a layer that changes on every deploy",
    AssetsWithCode = "assets-with-code": "model or data files share a layer with the code: every deploy re-uploads them",
    X86_64 = "x86-64": "x86_64 image; arm64 (Graviton) costs less per GB-second",
    SmallFunction = "small-function": "little function content; a .zip package may start faster",
    WastedBytes = "wasted-bytes": "bytes shipped in layers but shadowed or deleted by later layers",
    Strippable = "strippable": "content a rewrite would remove",
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the text report aligns ids in a column.
        f.pad(self.as_str())
    }
}

/// Serialized as its id string, so the JSON report is what it was with strings.
impl Serialize for FindingId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn mb(b: u64) -> String {
    crate::units::human_bytes(b)
}

pub fn compute(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |id: FindingId, severity, message: String| {
        out.push(Finding {
            id,
            severity,
            message,
        })
    };

    if let Some(idx) = &a.image.index {
        push(
            FindingId::IndexManifest,
            Severity::Error,
            format!(
                "the reference names an index ({} platforms); deploy the single-platform manifest {} instead",
                idx.platforms.len(),
                a.image.manifest.digest
            ),
        );
        if idx.attestations > 0 {
            push(
                FindingId::AttestationManifests,
                Severity::Error,
                format!(
                    "the index holds {} attestation manifest(s); build with --provenance=false --sbom=false",
                    idx.attestations
                ),
            );
        }
    }
    let uncompressed: u64 = a.layers.iter().map(|l| l.uncompressed_size).sum();
    if uncompressed > LAMBDA_MAX_UNCOMPRESSED {
        push(
            FindingId::Over10Gib,
            Severity::Error,
            format!(
                "{} uncompressed; Lambda's limit is 10 GiB",
                mb(uncompressed)
            ),
        );
    }
    if !a.synthesized_manifest {
        let n = a
            .layers
            .iter()
            .filter(|l| l.descriptor.media_type == MediaType::DockerLayer)
            .count();
        if n > 0 {
            push(
                FindingId::DockerUncompressedLayer,
                Severity::Error,
                format!(
                    "{n} layer(s) are uncompressed with media type {}",
                    MediaType::DockerLayer
                ),
            );
        }
    }
    let with_links: Vec<usize> = a
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.changes.hardlinks > 0)
        .map(|(i, _)| i)
        .collect();
    if !with_links.is_empty() {
        let total: u64 = a.layers.iter().map(|l| l.changes.hardlinks).sum();
        push(
            FindingId::Hardlinks,
            Severity::Warning,
            format!(
                "{total} hard-link entries in layer(s) {}",
                list(&with_links)
            ),
        );
    }
    let missing: Vec<usize> = a
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.changes.implicit_parents > 0)
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        push(
            FindingId::MissingParentDirs,
            Severity::Warning,
            format!(
                "layer(s) {} lack entries for some parent directories",
                list(&missing)
            ),
        );
    }
    match &a.base {
        None => push(
            FindingId::NoLambdaBase,
            Severity::Warning,
            "no known AWS Lambda base image matched; every layer is fetched on a cold start".into(),
        ),
        Some(b) if b.origin != "catalog" => push(
            FindingId::NoLambdaBase,
            Severity::Info,
            format!(
                "the base {} is a --base-image, not an official AWS Lambda base",
                b.image
            ),
        ),
        Some(_) => {}
    }
    if let Some(b) = &a.base
        && b.stale
    {
        let msg = if !b.full {
            format!(
                "shares only {} of {} layers with the known build of {}; rebuild on its current build",
                b.layers, b.build_layers, b.image
            )
        } else {
            format!(
                "built on an older build of {} ({}); the current one is {}",
                b.image,
                b.digest,
                b.newer.as_ref().map_or("unknown".into(), |d| d.to_string())
            )
        };
        push(FindingId::StaleBase, Severity::Warning, msg);
    }
    let toolchain = a.strip.by_rule.get("build-toolchain");
    let packages = a.strip.by_rule.get(super::packages::RULE.0);
    if toolchain.is_some() || packages.is_some() {
        let files = toolchain.map_or(0, |c| c.files) + packages.map_or(0, |c| c.files);
        let bytes = toolchain.map_or(0, |c| c.bytes) + packages.map_or(0, |c| c.bytes);
        let removed = a.packages.section.as_ref().map_or(0, |s| s.removed.len());
        push(
            FindingId::BuildTools,
            Severity::Warning,
            if removed > 0 {
                format!(
                    "{files} build-tool files ({}) are in the image, {removed} OS packages of them only served the build",
                    mb(bytes)
                )
            } else {
                format!("{files} build-tool files ({}) are in the image", mb(bytes))
            },
        );
    }

    let last = a.layers.len().saturating_sub(1);
    let code_layers: Vec<usize> = layers_with(a, Class::Code);
    let deps_layers: Vec<usize> = layers_with(a, Class::Deps);
    if code_layers.iter().any(|&l| l != last) {
        push(
            FindingId::CodeNotLast,
            Severity::Warning,
            format!(
                "function code is in layer(s) {}, not only in the last layer ({last})",
                list(&code_layers)
            ),
        );
    }
    if let (Some(&first_code), Some(&last_deps)) = (code_layers.first(), deps_layers.last())
        && last_deps > first_code
    {
        push(
            FindingId::DepsAfterCode,
            Severity::Warning,
            format!(
                "dependencies in layer {last_deps} come after code in layer {first_code}: every code change rebuilds and re-uploads them"
            ),
        );
    }
    let code = a.class_totals(Class::Code);
    if code.bytes > LARGE_CODE {
        push(
            FindingId::LargeCodeLayer,
            Severity::Warning,
            format!(
                "{} of function code changes with every deploy",
                mb(code.bytes)
            ),
        );
    }
    let mixed: Vec<usize> = layers_with(a, Class::Assets)
        .into_iter()
        .filter(|l| code_layers.contains(l))
        .collect();
    if !mixed.is_empty() {
        let bytes: u64 = mixed
            .iter()
            .filter_map(|&l| a.layers[l].classes.get(&Class::Assets))
            .map(|c| c.bytes)
            .sum();
        push(
            FindingId::AssetsWithCode,
            Severity::Warning,
            format!(
                "{} of model/data files share layer(s) {} with the code: every deploy re-uploads them (optimize gives them their own layer)",
                mb(bytes),
                list(&mixed)
            ),
        );
    }
    if a.image.platform.architecture == "amd64" {
        push(
            FindingId::X86_64,
            Severity::Info,
            "x86_64 image: arm64 (Graviton) has up to 34% better price-performance on Lambda"
                .into(),
        );
    }
    let function = a.class_totals(Class::Code).bytes
        + a.class_totals(Class::Assets).bytes
        + a.class_totals(Class::Deps).bytes
        + a.class_totals(Class::System).bytes;
    if a.base.is_some() && function < ZIP_THRESHOLD {
        push(
            FindingId::SmallFunction,
            Severity::Info,
            format!(
                "only {} of function content on top of the base; a .zip package may start faster",
                mb(function)
            ),
        );
    }
    let wasted = a.index.wasted_bytes();
    if wasted >= WASTE_THRESHOLD {
        push(
            FindingId::WastedBytes,
            Severity::Warning,
            format!(
                "{} in layers are shadowed or deleted by later layers",
                mb(wasted)
            ),
        );
    }
    if a.strip.total.files > 0 {
        push(
            FindingId::Strippable,
            Severity::Info,
            format!(
                "{} files ({}) could be removed: {}",
                a.strip.total.files,
                mb(a.strip.total.bytes),
                a.strip
                    .by_rule
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn layers_with(a: &Analysis, class: Class) -> Vec<usize> {
    a.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.classes.get(&class).is_some_and(|c| c.files > 0))
        .map(|(i, _)| i)
        .collect()
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::FindingId;

    const DOC: &str = include_str!("../../docs/findings.md");

    /// `compute` can only emit a `FindingId`, and `ALL` holds every one (the macro
    /// writes both from one table), so this covers every finding a report can carry.
    #[test]
    fn every_finding_id_is_documented() {
        for id in FindingId::ALL {
            assert!(
                DOC.contains(&format!("| `{id}` |")),
                "docs/findings.md lacks {id}"
            );
        }
    }

    #[test]
    fn every_documented_finding_id_exists() {
        let documented: Vec<&str> = DOC
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        let ids: Vec<&str> = FindingId::ALL.iter().map(|id| id.as_str()).collect();
        assert_eq!(
            documented, ids,
            "docs/findings.md lists other ids, or in another order"
        );
    }

    #[test]
    fn ids_serialize_as_their_strings() {
        assert_eq!(
            serde_json::to_string(&FindingId::X86_64).unwrap(),
            r#""x86-64""#
        );
        assert_eq!(format!("{:<8}|", FindingId::Hardlinks), "hardlinks|");
        assert_eq!(format!("{:<12}|", FindingId::Hardlinks), "hardlinks   |");
    }
}
