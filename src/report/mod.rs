//! Reports: one serde model (`coldpress.report/v1`, documented in
//! docs/report-schema.md), rendered as JSON, text or Markdown.

pub mod optimize;
mod render;

use std::collections::BTreeMap;

use serde::Serialize;

pub use render::{render_markdown, render_smoke_markdown, render_smoke_text, render_text};

use crate::analysis::{Analysis, Class, Finding};
use crate::catalog::CatalogStatus;
use crate::fsindex::Count;

pub const SCHEMA: &str = "coldpress.report/v1";

#[derive(Serialize, Clone, Debug)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Serialize, Clone, Debug)]
pub struct SourceInfo {
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<crate::transport::resolve::IndexInfo>,
}

#[derive(Serialize, Clone, Debug)]
pub struct BaseInfo {
    pub image: String,
    pub digest: String,
    /// Leading layers of the image that are the base's.
    pub layers: usize,
    /// Compressed bytes of those layers in this image.
    pub bytes: u64,
    pub stale: bool,
    /// Every layer of the base build matched.
    pub full: bool,
    pub build_layers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_digest: Option<String>,
    /// `catalog` (official AWS Lambda base) or `user` (`--base-image`).
    pub origin: String,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Totals {
    pub layers: usize,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub cold_start_bytes: u64,
    pub files: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_bytes: Option<u64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct LayerRow {
    pub index: usize,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub compression: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    /// Tar entries that are files, directories or links (whiteouts not counted).
    pub entries: u64,
    pub base: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub added: Count,
    pub changed: Count,
    pub deleted: Count,
    /// What this layer wrote that is not in the final filesystem; the sum of
    /// `shadowed_bytes` (overwritten later) and `deleted_bytes` (whited out later).
    pub wasted_bytes: u64,
    pub shadowed_bytes: u64,
    pub deleted_bytes: u64,
    pub hardlinks: u64,
    pub missing_parents: u64,
    /// Final files this layer provides, by class.
    pub classes: BTreeMap<Class, Count>,
}

#[derive(Serialize, Clone, Debug)]
pub struct RuleCount {
    pub files: u64,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Strippable {
    pub profile: String,
    pub files: u64,
    pub bytes: u64,
    pub by_rule: BTreeMap<String, RuleCount>,
    /// Cold-start bytes after `optimize`, estimated: the content that stays
    /// (waste and strippable files gone) at the image's current compression ratio.
    pub estimated_cold_start_bytes_after: u64,
}

#[derive(Serialize, Clone, Debug)]
pub struct FileRow {
    pub path: String,
    #[serde(rename = "type")]
    pub ftype: crate::layer::entry::FileType,
    pub class: Class,
    pub reason: String,
    pub layer: u16,
    pub size: u64,
    /// Permission bits in octal, e.g. "0755".
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch, with nanoseconds when the layer recorded them.
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardlink_to: Option<String>,
    /// "major,minor" for device nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Extended attribute names and values (values as lossy UTF-8).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_rule: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct PackageRow {
    pub ecosystem: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub path: String,
}

/// The analyze report; `optimize` fills the optional sections.
#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub schema: &'static str,
    pub tool: Tool,
    pub source: SourceInfo,
    pub base: Option<BaseInfo>,
    pub base_catalog: CatalogStatus,
    pub before: Totals,
    pub classes: BTreeMap<Class, Count>,
    pub layers: Vec<LayerRow>,
    pub strippable: Strippable,
    pub packages: Vec<PackageRow>,
    /// OS packages (dpkg): counts before and after, which added ones go and
    /// which stay, each with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_packages: Option<crate::analysis::packages::OsPackages>,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileRow>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub optimize: Option<crate::report::OptimizeSection>,
    /// `optimize --smoke`: the source and the output run with the same events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smoke: Option<crate::smoke::SmokeSection>,
}

/// What `optimize` adds (see issue #3 / docs/report-schema.md).
#[derive(Serialize, Clone, Debug, Default)]
pub struct OptimizeSection {
    pub after: Totals,
    pub removed: Removed,
    /// Package database files written with new content (path and why).
    pub edited: Vec<EditedPath>,
    pub new_layers: Vec<NewLayerRow>,
    pub push: PushStats,
    pub destination: Destination,
    pub verified: bool,
    pub dry_run: bool,
    /// What a code-only change would upload, for the source and for the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeploy: Option<Redeploy>,
    /// The output compared with the source on what must never get worse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub never_worse: Option<NeverWorse>,
}

/// Layer bytes a change to the function's code alone would upload.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Redeploy {
    pub source: RedeployCost,
    pub output: RedeployCost,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct RedeployCost {
    /// Indexes of the layers that change.
    pub layers: Vec<usize>,
    pub bytes: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct NeverWorse {
    /// Every check held.
    pub ok: bool,
    pub checks: Vec<Check>,
    /// When a check failed: the source image was tagged as it is, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_source: Option<String>,
}

impl NeverWorse {
    /// The checks that failed, as `id (output N bytes, source M)`, or `None`.
    pub fn failed(&self) -> Option<String> {
        let f: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({} bytes, the source {})", c.id, c.output, c.source))
            .collect();
        (!f.is_empty()).then(|| f.join(", "))
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Check {
    /// `cold-start-bytes`, `code-layer-bytes` or `redeploy-bytes`.
    pub id: &'static str,
    pub source: u64,
    pub output: u64,
    pub ok: bool,
}

/// A code-only change in the source rebuilds, as Docker's cache works, the
/// lowest layer holding code and every layer above it. In the output only the
/// code layers change: every other layer is written deterministically from
/// content the change does not touch, so its blob is the one already pushed.
pub fn redeploy(a: &Analysis, rows: &[NewLayerRow]) -> Redeploy {
    let code_holding = |l: &crate::analysis::LayerInfo| {
        !l.base && l.classes.get(&Class::Code).is_some_and(|c| c.files > 0)
    };
    let source = match a.layers.iter().position(code_holding) {
        Some(first) => RedeployCost {
            layers: (first..a.layers.len()).collect(),
            bytes: a.layers[first..].iter().map(|l| l.descriptor.size).sum(),
        },
        None => RedeployCost::default(),
    };
    let code_rows: Vec<&NewLayerRow> = rows.iter().filter(|r| r.role == "code").collect();
    Redeploy {
        source,
        output: RedeployCost {
            layers: code_rows.iter().map(|r| r.index).collect(),
            bytes: code_rows.iter().map(|r| r.compressed_bytes).sum(),
        },
    }
}

/// The invariants of docs/decisions.md ("Never worse than the source"): cold-start
/// bytes, the code layer against the source's code-holding layers, and the
/// redeploy cost.
pub fn never_worse(a: &Analysis, after: &Totals, rows: &[NewLayerRow], r: &Redeploy) -> NeverWorse {
    let source_code: u64 = a
        .layers
        .iter()
        .filter(|l| !l.base && l.classes.get(&Class::Code).is_some_and(|c| c.files > 0))
        .map(|l| l.descriptor.size)
        .sum();
    let output_code: u64 = rows
        .iter()
        .filter(|r| r.role == "code")
        .map(|r| r.compressed_bytes)
        .sum();
    let check = |id, source, output| Check {
        id,
        source,
        output,
        ok: output <= source,
    };
    let checks = vec![
        check(
            "cold-start-bytes",
            a.cold_start_bytes(),
            after.cold_start_bytes,
        ),
        check("code-layer-bytes", source_code, output_code),
        check("redeploy-bytes", r.source.bytes, r.output.bytes),
    ];
    NeverWorse {
        ok: checks.iter().all(|c| c.ok),
        checks,
        kept_source: None,
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Removed {
    pub files: u64,
    pub bytes: u64,
    pub by_rule: BTreeMap<String, RuleCount>,
    pub paths: Vec<RemovedPath>,
}

#[derive(Serialize, Clone, Debug)]
pub struct EditedPath {
    pub path: String,
    pub why: String,
    /// Size of the new content.
    pub bytes: u64,
}

#[derive(Serialize, Clone, Debug)]
pub struct RemovedPath {
    pub path: String,
    pub rule: String,
    pub bytes: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct NewLayerRow {
    pub index: usize,
    /// `base`, `system`, `deps`, `assets` or `code`.
    pub role: String,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    /// Bytes written again because a hard link became a regular file.
    pub hardlink_copy_bytes: u64,
    pub whiteouts: u64,
    /// `written` (built by coldpress), `passed-through` (a source layer, same
    /// blob) or `memoized` (an earlier run's identical layer); empty for base layers.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// How the blob reached the destination: uploaded, existed, mounted (empty for dry runs).
    pub transfer: String,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct PushStats {
    pub uploaded_bytes: u64,
    pub reused_bytes: u64,
    pub uploaded_blobs: u64,
    pub reused_blobs: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Destination {
    pub reference: String,
    pub digest: String,
    pub media_type: String,
}

impl Report {
    pub fn from_analysis(a: &Analysis, list_files: bool) -> Report {
        let base_name = a.base.as_ref().map(|b| b.image.as_str());
        let base = a.base.as_ref().map(|b| BaseInfo {
            image: b.image.clone(),
            digest: b.digest.to_string(),
            layers: b.layers,
            bytes: a
                .layers
                .iter()
                .filter(|l| l.base)
                .map(|l| l.descriptor.size)
                .sum(),
            stale: b.stale,
            full: b.full,
            build_layers: b.build_layers,
            newer_digest: b.newer.as_ref().map(|d| d.to_string()),
            origin: b.origin.clone(),
        });
        let files = a.index.iter().filter(|(_, n)| !n.is_dir()).count() as u64;
        let before = Totals {
            layers: a.layers.len(),
            compressed_bytes: a.layers.iter().map(|l| l.descriptor.size).sum(),
            uncompressed_bytes: a.layers.iter().map(|l| l.uncompressed_size).sum(),
            cold_start_bytes: a.cold_start_bytes(),
            files,
            wasted_bytes: Some(a.index.wasted_bytes()),
        };
        let mut classes = BTreeMap::new();
        for c in [
            Class::Base,
            Class::System,
            Class::Deps,
            Class::Assets,
            Class::Code,
        ] {
            classes.insert(c, a.class_totals(c));
        }
        let layers = a
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRow {
                index: i,
                digest: l.descriptor.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                media_type: l.descriptor.media_type.to_string(),
                compression: l.compression.to_string(),
                compressed_bytes: l.descriptor.size,
                uncompressed_bytes: l.uncompressed_size,
                entries: l.changes.entries,
                base: l.base,
                created_by: l.created_by.clone(),
                added: l.changes.added,
                changed: l.changes.changed,
                deleted: l.changes.deleted,
                wasted_bytes: l.changes.wasted_bytes,
                shadowed_bytes: l.changes.shadowed_bytes,
                deleted_bytes: l.changes.deleted_bytes,
                hardlinks: l.changes.hardlinks,
                missing_parents: l.changes.implicit_parents,
                classes: l.classes.clone(),
            })
            .collect();
        let nonbase_uncompressed: u64 = a
            .layers
            .iter()
            .filter(|l| !l.base)
            .map(|l| l.uncompressed_size)
            .sum();
        let function_bytes: u64 = [Class::System, Class::Deps, Class::Assets, Class::Code]
            .iter()
            .map(|c| a.class_totals(*c).bytes)
            .sum();
        let estimated = if nonbase_uncompressed == 0 {
            0
        } else {
            let ratio = before.cold_start_bytes as f64 / nonbase_uncompressed as f64;
            (function_bytes.saturating_sub(a.strip.total.bytes) as f64 * ratio) as u64
        };
        let strippable = Strippable {
            profile: format!("{:?}", a.strip_profile()).to_lowercase(),
            files: a.strip.total.files,
            bytes: a.strip.total.bytes,
            by_rule: rule_counts(a),
            estimated_cold_start_bytes_after: estimated,
        };
        let packages = a
            .classes
            .packages
            .iter()
            .map(|p| PackageRow {
                ecosystem: p.ecosystem,
                name: p.name.clone(),
                version: p.version.clone(),
                path: format!("/{}", p.path),
            })
            .collect();
        let files = list_files.then(|| {
            a.index
                .iter_ids()
                .map(|(id, path, n)| (path, n, &a.classes.items[id], a.strip.decisions[id]))
                .map(|(path, n, c, d)| FileRow {
                    path: format!("/{path}"),
                    ftype: n.ftype,
                    class: c.class,
                    reason: a.classes.explain(c, base_name),
                    layer: n.layer,
                    size: a.index.size_of(n),
                    mode: format!("{:04o}", n.meta.mode),
                    uid: n.meta.uid,
                    gid: n.meta.gid,
                    mtime: if n.meta.mtime_nsec == 0 {
                        n.meta.mtime.to_string()
                    } else {
                        format!("{}.{:09}", n.meta.mtime, n.meta.mtime_nsec)
                    },
                    link: n.target.as_ref().map(|t| t.to_string()),
                    hardlink_to: n.hardlink_to.as_ref().map(|t| format!("/{t}")),
                    device: matches!(
                        n.ftype,
                        crate::layer::entry::FileType::Char | crate::layer::entry::FileType::Block
                    )
                    .then(|| format!("{},{}", n.dev.0, n.dev.1)),
                    xattrs: n
                        .meta
                        .xattrs
                        .iter()
                        .flat_map(|x| x.iter())
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                        .collect(),
                    strip_rule: d.map(|r| a.strip.rules[r as usize].id.clone()),
                })
                .collect()
        });
        Report {
            schema: SCHEMA,
            tool: Tool {
                name: "coldpress",
                version: env!("CARGO_PKG_VERSION"),
            },
            source: SourceInfo {
                reference: a.image.reference.clone(),
                digest: a.image.manifest.digest.to_string(),
                media_type: a.image.manifest.media_type.to_string(),
                platform: a.image.platform.to_string(),
                index: a.image.index.clone(),
            },
            base,
            base_catalog: a.catalog.clone(),
            before,
            classes,
            layers,
            strippable,
            packages,
            os_packages: a.packages.section.clone(),
            findings: a.findings.clone(),
            files,
            optimize: None,
            smoke: None,
        }
    }
}

pub fn rule_counts(a: &Analysis) -> BTreeMap<String, RuleCount> {
    a.strip
        .by_rule
        .iter()
        .map(|(id, c)| {
            let reason = a
                .strip
                .rules
                .iter()
                .find(|r| &r.id == id)
                .map(|r| r.reason.clone())
                .unwrap_or_default();
            (
                id.clone(),
                RuleCount {
                    files: c.files,
                    bytes: c.bytes,
                    reason,
                },
            )
        })
        .collect()
}
