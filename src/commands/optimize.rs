//! `coldpress optimize SRC DEST`: keep the base layers byte for byte, squash the
//! rest into system, deps and code layers (code last), strip by rule, verify,
//! push blobs first and the manifest last.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::analyze::emit;
use crate::analysis::{self, Analysis, Class};
use crate::catalog::Catalog;
use crate::cli::{LayerCompression, ManifestFormat, OptimizeArgs};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::resolve::resolve;
use crate::image::{Compression, Descriptor, MediaType};
use crate::layer::LayerListing;
use crate::layer::ReadOptions;
use crate::plan::Plan;
use crate::plan::verify::{compare_with_source, read_back};
use crate::reference::ImageRef;
use crate::report::{
    Destination, NewLayerRow, OptimizeSection, PushStats, RemovedPath, Report, Totals,
};
use crate::transport::{self, BlobContent, BlobOutcome, Sink, Source};
use crate::ui;
use crate::writer::image::{config_bytes, manifest};
use crate::writer::rewrite::{Encoding, Spools, Written, write_layer};

pub const SOURCE_DIGEST_LABEL: &str = "dev.coldpress.source.digest";
pub const VERSION_LABEL: &str = "dev.coldpress.version";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";

pub fn run(args: &OptimizeArgs) -> Result<()> {
    let src = ImageRef::parse(&args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    let topts = super::transport_options(&args.registry, &[&src, &dst])?;
    let catalog = Catalog::load(&super::catalog_options(&args.base, &topts))?;
    if let Some(m) = &catalog.status.message {
        ui::note(m);
    }
    let compression = match args.compression {
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    let source = transport::open_source(&src, &topts)?;
    let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
    let docker = match (args.manifest_format, compression) {
        (Some(ManifestFormat::Docker), Compression::Zstd) => {
            return Err(Error::Usage("--compression zstd needs --manifest-format oci (Docker manifests have no zstd layer type)".into()));
        }
        (Some(ManifestFormat::Docker), _) => true,
        (Some(ManifestFormat::Oci), _) | (None, Compression::Zstd) => false,
        (None, _) => image.parsed.is_docker(),
    };
    let looks_like_lambda = image.config.env("LAMBDA_TASK_ROOT").is_some()
        || image
            .config
            .config
            .as_ref()
            .is_some_and(|c| c.entrypoint.iter().any(|e| e.contains("lambda-entrypoint")));
    if compression == Compression::Zstd && looks_like_lambda {
        ui::warn(
            "zstd layers are for images that run elsewhere (ECS/Fargate); AWS Lambda is only known to accept gzip",
        );
    }

    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("coldpress-")
        .tempdir_in(&work_parent)
        .map_err(|e| {
            Error::io(
                format!("creating a work directory in {}", work_parent.display()),
                e,
            )
        })?;
    let mut opts = super::analyze_options(&args.read, &args.strip);
    opts.read.hash_contents = true;
    opts.spool_dir = Some(work.path().to_path_buf());
    // The base is the same from build to build: its listing is read once.
    opts.layer_cache = Some(std::sync::Arc::new(crate::layer::cache::LayerCache::new(
        args.base
            .cache_dir
            .clone()
            .or_else(crate::catalog::default_cache_dir)
            .map(|c| c.join("layers")),
    )?));
    opts.cache_base_only = true;
    let started = std::time::Instant::now();
    let a = analysis::analyze(source.as_ref(), image, &catalog, &opts)?;
    let plan = Plan::new(&a);
    ui::trace(|| {
        format!(
            "analyzed and spooled in {:.2}s",
            started.elapsed().as_secs_f64()
        )
    });
    let mut report = Report::from_analysis(&a, false);
    let mut section = OptimizeSection {
        removed: removed_section(&a, &plan),
        edited: a
            .packages
            .edited
            .iter()
            .map(|e| crate::report::EditedPath {
                path: format!("/{}", e.path),
                why: e.why.clone(),
                bytes: e.content.len() as u64,
            })
            .collect(),
        dry_run: args.dry_run,
        ..OptimizeSection::default()
    };

    if args.dry_run {
        section.new_layers = planned_layers(&a, &plan);
        section.after = after_totals(&a, &plan, &section.new_layers);
        report.optimize = Some(section);
        emit(&report, args.format, args.report.as_deref(), false)?;
        return thresholds(args, &report);
    }

    let spools = spools(&a, &plan, source.as_ref(), work.path())?;
    let sink = transport::open_sink(&dst, &topts)?;
    let base_source = base_blob_source(&a, &topts)?;
    let base_src: &dyn Source = base_source.as_deref().unwrap_or(source.as_ref());
    let base_descs = base_descriptors(&a, docker);

    // The base's blobs go up while the new layers are written, and each new layer
    // is read back and uploaded as soon as it is written. Blobs are harmless
    // without a manifest: nothing is tagged before verification and the gates.
    let phase = std::time::Instant::now();
    let (produced, base_outcomes) = std::thread::scope(|s| {
        let base = s.spawn(|| copy_blobs(sink.as_ref(), &base_descs, base_src, 2));
        let produced = write_all(
            &a,
            &plan,
            &spools,
            work.path(),
            WriteSettings {
                compression,
                level: args.compression_level,
                jobs: args.read.jobs,
                docker,
                verify: !args.no_verify,
            },
            sink.as_ref(),
        );
        (produced, base.join().expect("blob transfers do not panic"))
    });
    let produced = produced?;
    let mut outcomes = base_outcomes?;
    ui::trace(|| {
        format!(
            "wrote, read back and pushed {} new layers in {:.2}s",
            produced.len(),
            phase.elapsed().as_secs_f64()
        )
    });
    let mut written = Vec::new();
    let mut back = Vec::new();
    let mut descs = base_descs.clone();
    for p in produced {
        outcomes.push(p.outcome);
        if let Some(l) = p.read_back {
            back.push((format!("new {} layer", p.written.class.as_str()), l));
        }
        descs.push(p.desc);
        written.push(p.written);
    }
    if !args.no_verify {
        let phase = std::time::Instant::now();
        compare_with_source(&a, &plan, back)?;
        ui::trace(|| format!("verified in {:.2}s", phase.elapsed().as_secs_f64()));
    }

    let config = rewrite_config(&a, &written)?;
    let config: Arc<[u8]> = config.into();
    let config_desc = Descriptor::new(
        if docker {
            MediaType::DockerConfig
        } else {
            MediaType::OciConfig
        },
        Digest::of(&config),
        config.len() as u64,
    );
    let mut annotations = Map::new();
    if let Some(b) = &a.base {
        annotations.insert(BASE_DIGEST.into(), json!(b.digest.to_string()));
        annotations.insert(BASE_NAME.into(), json!(b.image));
    }
    let out_manifest = manifest(docker, &config_desc, &descs, Some(&annotations));

    section.new_layers = layer_rows(&a, &descs, &written);
    section.after = after_totals(&a, &plan, &section.new_layers);
    report.optimize = Some(section.clone());
    // Gates come before anything is tagged.
    thresholds(args, &report).inspect_err(|_| {
        let _ = emit(&report, args.format, args.report.as_deref(), false);
    })?;
    outcomes.push(sink.put_blob(&config_desc, &config as &dyn BlobContent)?);
    sink.put_manifest(&out_manifest)?;
    let jobs: Vec<&Descriptor> = descs.iter().chain(std::iter::once(&config_desc)).collect();

    let mut push = PushStats::default();
    for (d, o) in jobs.iter().zip(&outcomes) {
        if *o == BlobOutcome::Uploaded {
            push.uploaded_bytes += d.size;
            push.uploaded_blobs += 1;
        } else {
            push.reused_bytes += d.size;
            push.reused_blobs += 1;
        }
    }
    for (row, o) in section.new_layers.iter_mut().zip(&outcomes) {
        row.transfer = match o {
            BlobOutcome::Uploaded => "uploaded",
            BlobOutcome::Existed => "existed",
            BlobOutcome::Mounted => "mounted",
        }
        .into();
    }
    section.push = push;
    section.verified = !args.no_verify;
    section.destination = Destination {
        reference: sink.describe(),
        digest: out_manifest.digest.to_string(),
        media_type: out_manifest.media_type.to_string(),
    };
    report.optimize = Some(section);
    emit(&report, args.format, args.report.as_deref(), false)
}

fn removed_section(a: &Analysis, plan: &Plan) -> crate::report::Removed {
    crate::report::Removed {
        files: a.strip.total.files,
        bytes: a.strip.total.bytes,
        by_rule: crate::report::rule_counts(a),
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

/// Spools for every source layer whose content a new layer needs. Non-base layers
/// were spooled while analyzing; a base layer is read again only when a kept
/// hard link in an upper layer points into it.
fn spools(
    a: &Analysis,
    plan: &Plan,
    source: &dyn Source,
    work: &std::path::Path,
) -> Result<Spools> {
    let base_count = a.base_layer_count();
    let mut files: Vec<Option<std::fs::File>> = Vec::with_capacity(a.layers.len());
    for l in &a.layers {
        files.push(match &l.spool {
            Some(p) => Some(crate::layer::read::open_spool(p)?),
            None => None,
        });
    }
    let mut needed = std::collections::BTreeSet::new();
    for ((_, n), p) in a.index.iter().zip(&plan.placement) {
        if p.is_some()
            && let Some(c) = n.content
        {
            let layer = a.index.content(c).layer as usize;
            if layer < base_count {
                needed.insert(layer);
            }
        }
    }
    let mut keep = Vec::new();
    for layer in needed {
        let opts = ReadOptions {
            spool_dir: Some(work.to_path_buf()),
            ..ReadOptions::default()
        };
        let l = crate::layer::read_layer(
            source,
            &a.layers[layer].descriptor,
            &a.layers[layer].diff_id,
            &opts,
        )?;
        let path = l.spool.expect("asked to spool");
        files[layer] = Some(crate::layer::read::open_spool(&path)?);
        keep.push(path);
    }
    // The files stay open; the paths may go.
    drop(keep);
    Ok(Spools { files })
}

#[derive(Clone, Copy)]
struct WriteSettings {
    compression: Compression,
    level: Option<i32>,
    jobs: usize,
    docker: bool,
    verify: bool,
}

/// One new layer: written, read back (when verifying), and stored in the sink.
struct Produced {
    written: Written,
    desc: Descriptor,
    read_back: Option<LayerListing>,
    outcome: BlobOutcome,
}

/// Write the new layers (several at once); read each back as soon as it is
/// written and hand it to the sink.
fn write_all(
    a: &Analysis,
    plan: &Plan,
    spools: &Spools,
    work: &std::path::Path,
    w: WriteSettings,
    sink: &dyn Sink,
) -> Result<Vec<Produced>> {
    let encoding = Encoding {
        compression: w.compression,
        level: w.level,
        threads: w.jobs,
    };
    crate::parallel::map(&plan.layers, w.jobs, |class| {
        let written = write_layer(a, plan, *class, spools, work, encoding)?;
        let desc = Descriptor::new(
            written.layer.media_type(w.docker),
            written.layer.digest.clone(),
            written.layer.size,
        );
        let read_back = if w.verify {
            Some(read_back(&desc, &written)?)
        } else {
            None
        };
        let path = written.layer.path.to_path_buf();
        let outcome = sink.put_blob(&desc, &path as &dyn BlobContent)?;
        Ok(Produced {
            written,
            desc,
            read_back,
            outcome,
        })
    })
    .into_iter()
    .collect()
}

/// The base image's own blobs: the source's when it carries them unchanged,
/// otherwise (e.g. recompressed to zstd) the base build's originals.
fn base_descriptors(a: &Analysis, docker: bool) -> Vec<Descriptor> {
    let Some(b) = &a.base else { return Vec::new() };
    a.layers[..b.layers]
        .iter()
        .zip(&b.base_layers)
        .map(|(src, orig)| {
            let (digest, size, mt) = if src.descriptor.digest == orig.digest {
                (
                    src.descriptor.digest.clone(),
                    src.descriptor.size,
                    src.descriptor.media_type.clone(),
                )
            } else {
                (
                    orig.digest.clone(),
                    orig.size,
                    MediaType::parse(&orig.media_type),
                )
            };
            let compression = mt.layer_compression().unwrap_or(Compression::Gzip);
            Descriptor::new(MediaType::layer(docker, compression), digest, size)
        })
        .collect()
}

/// A source for the base build's blobs when the image carries them recompressed.
fn base_blob_source(
    a: &Analysis,
    topts: &transport::TransportOptions,
) -> Result<Option<Box<dyn Source>>> {
    let Some(b) = &a.base else { return Ok(None) };
    let same = a.layers[..b.layers]
        .iter()
        .zip(&b.base_layers)
        .all(|(l, o)| l.descriptor.digest == o.digest);
    if same {
        return Ok(None);
    }
    ui::note(&format!(
        "the image carries {}'s layers recompressed; writing the base's original blobs",
        b.image
    ));
    Ok(Some(transport::open_source(
        &ImageRef::parse(&b.location)?,
        topts,
    )?))
}

fn class_name(c: Class) -> &'static str {
    c.as_str()
}

fn rewrite_config(a: &Analysis, written: &[Written]) -> Result<Vec<u8>> {
    let what = "the source config";
    let mut cfg: Value =
        serde_json::from_slice(&a.image.config_bytes).map_err(|e| Error::invalid(what, e))?;
    let base_count = a.base_layer_count();
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "not a JSON object"))?;
    let created = obj.get("created").cloned();

    let mut diff_ids: Vec<Value> = a.image.config.rootfs.diff_ids[..base_count]
        .iter()
        .map(|d| json!(d.to_string()))
        .collect();
    diff_ids.extend(written.iter().map(|w| json!(w.layer.diff_id.to_string())));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers"}));
    rootfs["diff_ids"] = Value::Array(diff_ids);

    let empty = |h: &Value| {
        h.get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let old: Vec<Value> = obj
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut history = Vec::new();
    let mut seen = 0;
    let mut idx = 0;
    while seen < base_count && idx < old.len() {
        if !empty(&old[idx]) {
            seen += 1;
        }
        history.push(old[idx].clone());
        idx += 1;
    }
    while seen < base_count {
        history.push(json!({"created_by": format!("base layer {seen}")}));
        seen += 1;
    }
    // Configuration steps of the source (ENV, CMD…) are not layers: keep them.
    history.extend(old[idx..].iter().filter(|h| empty(h)).cloned());
    for w in written {
        let mut h = Map::new();
        if let Some(c) = &created {
            h.insert("created".into(), c.clone());
        }
        h.insert(
            "created_by".into(),
            json!(format!(
                "coldpress optimize: {} layer ({} entries)",
                class_name(w.class),
                w.layer.entries
            )),
        );
        h.insert(
            "comment".into(),
            json!(format!("coldpress {}", env!("CARGO_PKG_VERSION"))),
        );
        history.push(Value::Object(h));
    }
    obj.insert("history".into(), Value::Array(history));

    let config = obj.entry("config").or_insert_with(|| json!({}));
    if config.is_null() {
        *config = json!({});
    }
    let labels = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "config is not an object"))?
        .entry("Labels")
        .or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    let labels = labels
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "Labels is not an object"))?;
    if let Some(b) = &a.base {
        labels.insert(BASE_DIGEST.into(), json!(b.digest.to_string()));
        labels.insert(BASE_NAME.into(), json!(b.image));
    }
    labels.insert(
        SOURCE_DIGEST_LABEL.into(),
        json!(a.image.manifest.digest.to_string()),
    );
    labels.insert(VERSION_LABEL.into(), json!(env!("CARGO_PKG_VERSION")));
    Ok(config_bytes(&cfg))
}

fn layer_rows(a: &Analysis, descs: &[Descriptor], written: &[Written]) -> Vec<NewLayerRow> {
    let base_count = a.base_layer_count();
    let mut rows = Vec::new();
    for (i, d) in descs.iter().enumerate() {
        if i < base_count {
            rows.push(NewLayerRow {
                index: i,
                role: "base".into(),
                digest: d.digest.to_string(),
                diff_id: a.layers[i].diff_id.to_string(),
                media_type: d.media_type.to_string(),
                compressed_bytes: d.size,
                uncompressed_bytes: a.layers[i].uncompressed_size,
                entries: a.layers[i].changes.entries,
                ..NewLayerRow::default()
            });
        } else {
            let w = &written[i - base_count];
            rows.push(NewLayerRow {
                index: i,
                role: class_name(w.class).into(),
                digest: d.digest.to_string(),
                diff_id: w.layer.diff_id.to_string(),
                media_type: d.media_type.to_string(),
                compressed_bytes: w.layer.size,
                uncompressed_bytes: w.layer.uncompressed_size,
                entries: w.layer.entries,
                hardlink_copy_bytes: w.hardlink_copy_bytes,
                whiteouts: w.whiteouts,
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
    for (k, class) in plan.layers.iter().enumerate() {
        let mut entries = 0;
        let mut bytes = 0;
        for ((_, n), p) in a.index.iter().zip(&plan.placement) {
            if *p == Some(*class) {
                entries += 1;
                bytes += a.index.size_of(n);
            }
        }
        for path in plan.edited.keys() {
            if plan.class_of(path) == Some(*class)
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
            whiteouts: plan.whiteouts.iter().filter(|(_, c)| c == class).count() as u64,
            ..NewLayerRow::default()
        });
    }
    rows
}

fn after_totals(a: &Analysis, plan: &Plan, rows: &[NewLayerRow]) -> Totals {
    let base_count = a.base_layer_count();
    let removed: std::collections::HashSet<&str> =
        plan.removed.iter().map(|r| &r.path[1..]).collect();
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

fn thresholds(args: &OptimizeArgs, r: &Report) -> Result<()> {
    let Some(opt) = &r.optimize else {
        return Ok(());
    };
    let mut failed = Vec::new();
    if let Some(max) = args.fail_if_cold_start_bytes_over
        && !args.dry_run
        && opt.after.cold_start_bytes > max
    {
        failed.push(format!(
            "cold-start bytes {} are over {}",
            opt.after.cold_start_bytes, max
        ));
    }
    if let Some(min) = args.fail_if_savings_under
        && !args.dry_run
    {
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

/// Copy blobs (the base's) from `from` with bounded concurrency; outcomes in order.
fn copy_blobs(
    sink: &dyn Sink,
    descs: &[Descriptor],
    from: &dyn Source,
    parallel: usize,
) -> Result<Vec<BlobOutcome>> {
    crate::parallel::map(descs, parallel, |d| sink.copy_blob(d, from))
        .into_iter()
        .collect()
}
