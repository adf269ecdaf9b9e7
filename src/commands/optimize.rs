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
use crate::image::{Compression, Descriptor, MediaType};
use crate::layer::ReadOptions;
use crate::plan::{OutputLayer, Plan, PlanOptions};
use crate::reference::ImageRef;
use crate::report::{
    Destination, NewLayerRow, OptimizeSection, PushStats, RemovedPath, Report, Totals,
};
use crate::transport::resolve::resolve;
use crate::transport::{self, BlobContent, BlobOutcome, Sink, Source};
use crate::ui;
use crate::writer::image::{config_bytes, manifest};
use crate::writer::memo::{KEYS_LABEL, MemoCache, RecordedKeys, keys_label};
use crate::writer::output::{Io, Memos, OutLayer, Settings, lookup, produce_all};
use crate::writer::rewrite::Spools;
use crate::writer::verify::compare_with_source;

pub const SOURCE_DIGEST_LABEL: &str = "dev.coldpress.source.digest";
pub const VERSION_LABEL: &str = "dev.coldpress.version";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";

pub fn run(args: &OptimizeArgs) -> Result<()> {
    let src = ImageRef::parse(&args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    crate::smoke::load_events(&args.smoke.smoke)?; // bad event files fail before any work
    let topts = super::transport_options(&args.registry, &[&src, &dst])?;
    let compression = match args.compression {
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    let source = transport::open_source(&src, &topts)?;
    let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
    let catalog = Catalog::load(&super::catalog_options(&args.base, &topts))?;
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
    let work = crate::workdir::create(&work_parent)?;
    let mut opts = super::analyze_options(&args.read, &args.strip);
    opts.read.hash_contents = true;
    opts.spool_dir = Some(work.path().to_path_buf());
    // The base is the same from build to build, and so are most upper layers of a
    // redeploy: each listing is read once; a layer is spooled again only when a
    // layer that must be written needs its bytes.
    let cache_dir = args
        .base
        .cache_dir
        .clone()
        .or_else(crate::catalog::default_cache_dir);
    opts.layer_cache = Some(std::sync::Arc::new(crate::layer::cache::LayerCache::new(
        cache_dir.as_ref().map(|c| c.join("layers")),
    )?));
    opts.cache_base_only = true;
    opts.cache_upper = true;
    opts.keep_layer_entries = true;
    let started = std::time::Instant::now();
    let mut a = analysis::analyze(source.as_ref(), image, &catalog, &opts)?;
    if a.packages.needs_contents() {
        // Cached listings note what every program loads and carry the package
        // databases, but a database file too big to capture (an rpmdb.sqlite)
        // is only on disk. Read the upper layers again rather than let the
        // output depend on what the cache happened to hold.
        ui::trace(|| {
            "reading the upper layers again: a package database file was not in the listing cache"
                .into()
        });
        opts.cache_upper = false;
        let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
        a = analysis::analyze(source.as_ref(), image, &catalog, &opts)?;
    }
    if let Some(c) = &opts.layer_cache {
        ui::trace(|| {
            format!(
                "layer listings: {} read from the source, {} from the cache",
                c.reads.load(std::sync::atomic::Ordering::Relaxed),
                c.hits.load(std::sync::atomic::Ordering::Relaxed)
            )
        });
    }
    let plan = Plan::with_options(
        &a,
        PlanOptions {
            pass_through: compression == Compression::Gzip,
        },
    );
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
        super::catalog_note(&catalog);
        return thresholds(args, &report);
    }

    let settings = Settings {
        compression,
        level: args.compression_level,
        jobs: args.read.jobs,
        docker,
        verify: !args.no_verify,
    };
    let reuse_ref = reuse_from(args, &dst)?;
    let reuse_source = reuse_ref
        .as_ref()
        .and_then(|r| previous_output(r, &topts, args.read.platform.as_ref()));
    let memos = Memos {
        cache: MemoCache::new(cache_dir.as_ref().map(|c| c.join("outputs"))),
        reuse: reuse_source
            .as_ref()
            .map(|(s, keys)| (s.as_ref() as &dyn Source, keys.clone())),
    };
    let sink = transport::open_sink(&dst, &topts)?;
    let mut found = lookup(&a, &plan, settings, &memos, sink.as_ref())?;
    if !args.smoke.smoke.is_empty() {
        // The smoke run runs the bytes about to be tagged: every new layer is built
        // here rather than reused from where an earlier run left it (the keys stay).
        for f in &mut found {
            f.1 = None;
        }
    }
    let memoized: Vec<Class> = plan
        .outputs
        .iter()
        .zip(&found)
        .filter(|(_, (_, hit))| hit.is_some())
        .map(|(o, _)| o.class())
        .collect();
    let spools = spools(&a, &plan, &memoized, source.as_ref(), work.path())?;
    let base_source = base_blob_source(&a, &topts)?;
    let base_src: &dyn Source = base_source.as_deref().unwrap_or(source.as_ref());
    let base_descs = base_descriptors(&a, docker);

    // The base's blobs go up while the new layers are written, and each new layer
    // is read back and uploaded as soon as it is written. Blobs are harmless
    // without a manifest: nothing is tagged before verification and the gates.
    let phase = std::time::Instant::now();
    let (produced, base_outcomes) = std::thread::scope(|s| {
        let base = s.spawn(|| copy_blobs(sink.as_ref(), &base_descs, base_src, 2));
        let produced = produce_all(
            &a,
            &plan,
            &spools,
            work.path(),
            settings,
            Io {
                source: source.as_ref(),
                sink: sink.as_ref(),
                memos: &memos,
            },
            found,
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
        back.extend(p.read_back);
        descs.push(p.layer.desc.clone());
        written.push(p.layer);
    }
    if !args.no_verify {
        let phase = std::time::Instant::now();
        compare_with_source(&a, &plan, back)?;
        ui::trace(|| format!("verified in {:.2}s", phase.elapsed().as_secs_f64()));
    }

    let config = rewrite_config(&a, &written)?;
    drop(reuse_source);
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
    let redeploy = crate::report::redeploy(&a, &section.new_layers);
    let nw = crate::report::never_worse(&a, &section.after, &section.new_layers, &redeploy);
    for c in nw.checks.iter().filter(|c| !c.ok) {
        ui::warn(&format!(
            "the output is worse than the source on {}: {} bytes, the source {}",
            c.id, c.output, c.source
        ));
    }
    section.redeploy = Some(redeploy);
    section.never_worse = Some(nw);
    report.optimize = Some(section.clone());
    // Gates come before anything is tagged.
    thresholds(args, &report).inspect_err(|_| {
        let _ = emit(&report, args.format, args.report.as_deref(), false);
    })?;
    // The written output must answer like the source before it is tagged.
    super::smoke::gate(
        &args.smoke,
        &a,
        source.as_ref(),
        &written,
        &config,
        work.path(),
        &mut report,
    )
    .inspect_err(|_| {
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
    emit(&report, args.format, args.report.as_deref(), false)?;
    super::catalog_note(&catalog);
    Ok(())
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

/// Spools for every source layer whose content a layer to write needs. Layers
/// read while analyzing were spooled then; one whose listing came from the
/// cache (a base layer a kept hard link points into, an upper layer unchanged
/// since an earlier run) is read again only if a layer to write needs it.
fn spools(
    a: &Analysis,
    plan: &Plan,
    memoized: &[Class],
    source: &dyn Source,
    work: &std::path::Path,
) -> Result<Spools> {
    let mut files: Vec<Option<std::fs::File>> = Vec::with_capacity(a.layers.len());
    for l in &a.layers {
        files.push(match &l.spool {
            Some(p) => Some(crate::layer::read::open_spool(p)?),
            None => None,
        });
    }
    let mut needed = std::collections::BTreeSet::new();
    for (((_, n), p), passed) in a.index.iter().zip(&plan.placement).zip(&plan.passed) {
        if let Some(class) = p
            && !passed
            && !memoized.contains(class)
            && let Some(c) = n.content
        {
            let layer = a.index.content(c).layer as usize;
            if files[layer].is_none() {
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

fn rewrite_config(a: &Analysis, written: &[OutLayer]) -> Result<Vec<u8>> {
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
    diff_ids.extend(written.iter().map(|w| json!(w.diff_id.to_string())));
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
        let how = match w.origin {
            crate::writer::output::Origin::PassedThrough(n) => {
                format!(", source layer {n} unchanged")
            }
            _ => String::new(),
        };
        h.insert(
            "created_by".into(),
            json!(format!(
                "coldpress optimize: {} layer ({} entries{how})",
                class_name(w.class),
                w.entries
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
    let keys: Vec<(String, Digest)> = written
        .iter()
        .filter_map(|w| Some((w.key.clone()?, w.desc.digest.clone())))
        .collect();
    if keys.is_empty() {
        labels.remove(KEYS_LABEL);
    } else {
        labels.insert(KEYS_LABEL.into(), json!(keys_label(&keys)));
    }
    Ok(config_bytes(&cfg))
}

fn layer_rows(a: &Analysis, descs: &[Descriptor], written: &[OutLayer]) -> Vec<NewLayerRow> {
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
        for (((_, n), p), passed) in a.index.iter().zip(&plan.placement).zip(&plan.passed) {
            if *p == Some(class) && !passed {
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

/// The image whose recorded layer keys a run may reuse: `--reuse-from`, else
/// the destination (what its tag points to now), unless `--no-reuse`.
fn reuse_from(args: &OptimizeArgs, dst: &ImageRef) -> Result<Option<ImageRef>> {
    if args.no_reuse {
        return Ok(None);
    }
    match &args.reuse_from {
        Some(r) => Ok(Some(ImageRef::parse(r)?)),
        // A docker archive is rewritten whole: there is nothing to reuse from it.
        None => Ok((!matches!(dst, ImageRef::DockerArchive { .. })).then(|| dst.clone())),
    }
}

/// The earlier output and the layer keys it records; `None` (with a note when
/// something other than absence is wrong) when there is none to use.
fn previous_output(
    r: &ImageRef,
    topts: &transport::TransportOptions,
    platform: Option<&crate::image::Platform>,
) -> Option<(Box<dyn Source>, RecordedKeys)> {
    let found = transport::open_source(r, topts).and_then(|s| {
        let image = resolve(s.as_ref(), platform)?;
        Ok((s, image))
    });
    match found {
        Ok((s, image)) => {
            let keys = crate::writer::memo::recorded_keys(&image);
            ui::trace(|| format!("{} records {} layer keys", image.reference, keys.len()));
            Some((s, keys))
        }
        Err(e) => {
            ui::trace(|| format!("nothing to reuse from {}: {e}", r));
            None
        }
    }
}
