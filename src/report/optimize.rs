//! The `optimize` part of the report, from the plan (a dry run) or from the
//! written output, and the CI thresholds checked on it before anything is tagged.

use std::collections::HashSet;

use super::{
    Destination, EditedPath, NeverWorse, NewLayerRow, OptimizeSection, PushStats, Redeploy,
    Removed, RemovedPath, Report, Totals, never_worse, redeploy, rule_counts,
};
use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::plan::{OutputLayer, Plan};
use crate::transport::{BlobOutcome, Sink, Source};
use crate::writer::execute::{Outcome, Prepared, keep_source};
use crate::writer::output::OutLayer;

impl OptimizeSection {
    /// A dry run's section: what the plan removes and the layers it would
    /// write, sized by their file contents (nothing is compressed).
    pub fn planned(a: &Analysis, plan: &Plan) -> OptimizeSection {
        let new_layers = planned_layers(a, plan);
        OptimizeSection {
            after: after_totals(a, plan, &new_layers),
            new_layers,
            dry_run: true,
            ..common(a, plan)
        }
    }

    /// The section of an output written but not yet tagged: the layers as
    /// written, the totals and the never-worse checks (a warning for each that
    /// fails). [`OptimizeSection::committed`] adds how the blobs travelled.
    pub fn prepared(a: &Analysis, plan: &Plan, p: &Prepared) -> OptimizeSection {
        let new_layers = layer_rows(a, &p.layers, &p.written);
        let after = after_totals(a, plan, &new_layers);
        let redeploy = redeploy(a, &new_layers);
        let nw = never_worse(a, &after, &new_layers, &redeploy);
        for c in nw.checks.iter().filter(|c| !c.ok) {
            crate::ui::warn(&format!(
                "the output is worse than the source on {}: {} bytes, the source {}",
                c.id, c.output, c.source
            ));
        }
        OptimizeSection {
            after,
            new_layers,
            redeploy: Some(redeploy),
            never_worse: Some(nw),
            ..common(a, plan)
        }
    }

    /// The section of a prepared output, or, when that output is worse than the
    /// source on a never-worse check, the source itself prepared for tagging in
    /// its place (with a warning): never worse than the source.
    pub fn never_worse_or_source<'a>(
        a: &Analysis,
        plan: &Plan,
        prepared: Prepared<'a>,
        source: &dyn Source,
        sink: &'a dyn Sink,
    ) -> Result<(Prepared<'a>, OptimizeSection)> {
        let mut section = OptimizeSection::prepared(a, plan, &prepared);
        let nw = section.never_worse.take();
        match nw.as_ref().and_then(NeverWorse::failed) {
            Some(why) => {
                crate::ui::warn(&format!(
                    "keeping the source's layers: the output would be worse than the source on {why}"
                ));
                let kept = keep_source(a, source, sink)?;
                let section = OptimizeSection::kept_source(a, &kept, nw.unwrap_or_default(), why);
                Ok((kept, section))
            }
            None => {
                section.never_worse = nw;
                Ok((prepared, section))
            }
        }
    }

    /// The source image was kept in place of the output.
    pub fn is_kept_source(&self) -> bool {
        self.never_worse
            .as_ref()
            .is_some_and(|nw| nw.kept_source.is_some())
    }

    /// The output was worse than the source on `nw`'s failed checks, so the
    /// source is tagged as it is: nothing removed, every layer the source's.
    pub fn kept_source(a: &Analysis, p: &Prepared, mut nw: NeverWorse, why: String) -> Self {
        let base_count = a.base_layer_count();
        let new_layers: Vec<NewLayerRow> = p
            .layers
            .iter()
            .enumerate()
            .map(|(i, d)| match i < base_count {
                true => source_row(a, i, d, "base"),
                false => NewLayerRow {
                    origin: "passed-through".into(),
                    ..source_row(a, i, d, "source")
                },
            })
            .collect();
        let cold: u64 = new_layers[base_count.min(new_layers.len())..]
            .iter()
            .map(|r| r.compressed_bytes)
            .sum();
        nw.kept_source = Some(why);
        let source_redeploy = redeploy(a, &new_layers).source;
        OptimizeSection {
            after: Totals {
                layers: new_layers.len(),
                compressed_bytes: new_layers.iter().map(|r| r.compressed_bytes).sum(),
                uncompressed_bytes: new_layers.iter().map(|r| r.uncompressed_bytes).sum(),
                cold_start_bytes: cold,
                files: a.index.iter().filter(|(_, n)| !n.is_dir()).count() as u64,
                wasted_bytes: None,
            },
            new_layers,
            redeploy: Some(Redeploy {
                output: source_redeploy.clone(),
                source: source_redeploy,
            }),
            never_worse: Some(nw),
            ..OptimizeSection::default()
        }
    }

    /// Add what tagging `o` did: bytes pushed and reused, each layer's transfer,
    /// the destination's digest.
    pub fn committed(&mut self, o: &Outcome) {
        let mut push = PushStats::default();
        for (d, t) in &o.blobs {
            if *t == BlobOutcome::Uploaded {
                push.uploaded_bytes += d.size;
                push.uploaded_blobs += 1;
            } else {
                push.reused_bytes += d.size;
                push.reused_blobs += 1;
            }
        }
        for (row, (_, t)) in self.new_layers.iter_mut().zip(&o.blobs) {
            row.transfer = match t {
                BlobOutcome::Uploaded => "uploaded",
                BlobOutcome::Existed => "existed",
                BlobOutcome::Mounted => "mounted",
            }
            .into();
        }
        self.push = push;
        self.verified = o.verified;
        self.destination = Destination {
            reference: o.destination.clone(),
            digest: o.manifest_digest.to_string(),
            media_type: o.manifest_media_type.to_string(),
        };
    }
}

/// What every optimize section says: the removed paths and the edited package files.
fn common(a: &Analysis, plan: &Plan) -> OptimizeSection {
    OptimizeSection {
        removed: removed_section(a, plan),
        edited: a
            .packages
            .edited
            .iter()
            .map(|e| EditedPath {
                path: format!("/{}", e.path),
                why: e.why.clone(),
                bytes: e.content.len() as u64,
            })
            .collect(),
        ..OptimizeSection::default()
    }
}

fn removed_section(a: &Analysis, plan: &Plan) -> Removed {
    Removed {
        files: a.strip.total.files,
        bytes: a.strip.total.bytes,
        by_rule: rule_counts(a),
        paths: plan
            .removed
            .iter()
            .map(|r| RemovedPath {
                path: r.path.clone(),
                rule: r.rule.clone(),
                bytes: r.bytes,
            })
            .collect(),
    }
}

/// A row for the source's own layer `i`, stored as `d`.
fn source_row(a: &Analysis, i: usize, d: &Descriptor, role: &str) -> NewLayerRow {
    NewLayerRow {
        index: i,
        role: role.into(),
        digest: d.digest.to_string(),
        diff_id: a.layers[i].diff_id.to_string(),
        media_type: d.media_type.to_string(),
        compressed_bytes: d.size,
        uncompressed_bytes: a.layers[i].uncompressed_size,
        entries: a.layers[i].changes.entries,
        ..NewLayerRow::default()
    }
}

fn layer_rows(a: &Analysis, descs: &[Descriptor], written: &[OutLayer]) -> Vec<NewLayerRow> {
    let base_count = a.base_layer_count();
    let mut rows = Vec::new();
    for (i, d) in descs.iter().enumerate() {
        if i < base_count {
            rows.push(source_row(a, i, d, "base"));
        } else {
            let w = &written[i - base_count];
            rows.push(NewLayerRow {
                index: i,
                role: w.class.as_str().into(),
                digest: d.digest.to_string(),
                diff_id: w.diff_id.to_string(),
                media_type: d.media_type.to_string(),
                compressed_bytes: w.desc.size,
                uncompressed_bytes: w.uncompressed_size,
                entries: w.entries,
                hardlink_copy_bytes: w.hardlink_copy_bytes,
                whiteouts: w.whiteouts,
                origin: w.origin.as_str().into(),
                transfer: String::new(),
            });
        }
    }
    rows
}

/// For --dry-run: the layers the plan would write, sized by their file contents.
fn planned_layers(a: &Analysis, plan: &Plan) -> Vec<NewLayerRow> {
    let base_count = a.base_layer_count();
    let mut rows: Vec<NewLayerRow> = (0..base_count)
        .map(|i| NewLayerRow {
            index: i,
            role: "base".into(),
            digest: a.layers[i].descriptor.digest.to_string(),
            diff_id: a.layers[i].diff_id.to_string(),
            media_type: a.layers[i].descriptor.media_type.to_string(),
            compressed_bytes: a.layers[i].descriptor.size,
            uncompressed_bytes: a.layers[i].uncompressed_size,
            entries: a.layers[i].changes.entries,
            ..NewLayerRow::default()
        })
        .collect();
    for (k, out) in plan.outputs.iter().enumerate() {
        let class = out.class();
        if let OutputLayer::Source { layer, .. } = *out {
            let l = &a.layers[layer];
            rows.push(NewLayerRow {
                index: base_count + k,
                role: class.as_str().into(),
                digest: l.descriptor.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                compressed_bytes: l.descriptor.size,
                uncompressed_bytes: l.uncompressed_size,
                entries: l.changes.entries,
                origin: "passed-through".into(),
                ..NewLayerRow::default()
            });
            continue;
        }
        let mut entries = 0;
        let mut bytes = 0;
        for (id, _, n) in a.index.iter_ids() {
            if plan.placement[id] == Some(class) && !plan.passed[id] {
                entries += 1;
                bytes += a.index.size_of(n);
            }
        }
        for path in plan.edited.keys() {
            if plan.class_of(path) == Some(class)
                && let (Some(n), Some(c)) = (a.index.get(path), plan.edited_content(a, path))
            {
                bytes = bytes - a.index.size_of(n) + c.len() as u64;
            }
        }
        rows.push(NewLayerRow {
            index: base_count + k,
            role: class.as_str().into(),
            entries,
            uncompressed_bytes: bytes,
            whiteouts: plan.whiteouts.iter().filter(|(_, c)| *c == class).count() as u64,
            origin: "written".into(),
            ..NewLayerRow::default()
        });
    }
    rows
}

fn after_totals(a: &Analysis, plan: &Plan, rows: &[NewLayerRow]) -> Totals {
    let base_count = a.base_layer_count();
    let removed: HashSet<&str> = plan.removed.iter().map(|r| &r.path[1..]).collect();
    let files = a
        .index
        .iter()
        .filter(|(p, n)| !n.is_dir() && !removed.contains(p))
        .count() as u64;
    Totals {
        layers: rows.len(),
        compressed_bytes: rows.iter().map(|r| r.compressed_bytes).sum(),
        uncompressed_bytes: rows.iter().map(|r| r.uncompressed_bytes).sum(),
        cold_start_bytes: rows[base_count..].iter().map(|r| r.compressed_bytes).sum(),
        files,
        wasted_bytes: None,
    }
}

/// The CI gates of `optimize` (`--fail-if-*`), checked on the written output
/// before it is tagged. A dry run writes no layer, so it has no output to check
/// (docs/decisions.md, "Thresholds need the written output").
#[derive(Clone, Copy, Debug, Default)]
pub struct Thresholds {
    /// Fail when the output's cold-start bytes are over this.
    pub cold_start_bytes_over: Option<u64>,
    /// Fail when cold-start bytes shrink by less than this percentage.
    pub savings_under: Option<f64>,
}

impl Thresholds {
    /// The gates as asked for. A dry run writes no layer, so it has no output
    /// size to check: refused rather than passed unchecked (docs/decisions.md).
    pub fn new(
        cold_start_bytes_over: Option<u64>,
        savings_under: Option<f64>,
        dry_run: bool,
    ) -> Result<Thresholds> {
        let flag = match (cold_start_bytes_over, savings_under) {
            (Some(_), _) => "--fail-if-cold-start-bytes-over",
            (None, Some(_)) => "--fail-if-savings-under",
            (None, None) => "",
        };
        if dry_run && !flag.is_empty() {
            return Err(Error::Usage(format!(
                "--dry-run writes no layer, so there is no output size for {flag} to check; drop --dry-run (a failed threshold tags nothing)"
            )));
        }
        Ok(Thresholds {
            cold_start_bytes_over,
            savings_under,
        })
    }

    /// Every threshold `r`'s optimize section crosses, as one error (exit 3).
    pub fn check(&self, r: &Report) -> Result<()> {
        let Some(opt) = &r.optimize else {
            return Ok(());
        };
        let mut failed = Vec::new();
        if let Some(max) = self.cold_start_bytes_over
            && opt.after.cold_start_bytes > max
        {
            failed.push(format!(
                "cold-start bytes {} are over {}",
                opt.after.cold_start_bytes, max
            ));
        }
        if let Some(min) = self.savings_under {
            let before = r.before.cold_start_bytes as f64;
            let saved = if before > 0.0 {
                (before - opt.after.cold_start_bytes as f64) * 100.0 / before
            } else {
                0.0
            };
            if saved < min {
                failed.push(format!(
                    "cold-start bytes shrank by {saved:.1}%, under {min}%"
                ));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Threshold(format!(
                "{}; nothing was tagged",
                failed.join("; ")
            )))
        }
    }
}
