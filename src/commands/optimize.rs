//! `coldpress optimize SRC DEST`: keep the base layers byte for byte, squash the
//! rest into system, deps and code layers (code last), strip by rule, verify,
//! push blobs first and the manifest last.

use super::analyze::emit;
use crate::analysis;
use crate::analysis::Analysis;
use crate::catalog::Catalog;
use crate::cli::{LayerCompression, ManifestFormat, OptimizeArgs};
use crate::error::{Error, Result};
use crate::image::Compression;
use crate::layer::attached;
use crate::layer::cache::LayerCache;
use crate::plan::{Plan, PlanOptions};
use crate::reference::ImageRef;
use crate::report::optimize::Thresholds;
use crate::report::{OptimizeSection, Report};
use crate::transport::resolve::resolve;
use crate::transport::{self, Source};
use crate::transport::{Sink, TransportOptions};
use crate::ui;
use crate::writer::execute::{
    ExecuteOptions, Outcome, prepare, previous_output, warn_zstd_for_lambda,
};
use crate::writer::memo::MemoCache;
use crate::writer::output::{Memos, Settings};
use std::sync::Arc;

pub fn run(args: &OptimizeArgs) -> Result<()> {
    let compression = match args.compression {
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    let thresholds = Thresholds::new(
        args.fail_if_cold_start_bytes_over,
        args.fail_if_savings_under,
        args.dry_run,
    )?;
    if args.manifest_format == Some(ManifestFormat::Docker) && compression == Compression::Zstd {
        return Err(Error::Usage("--compression zstd needs --manifest-format oci (Docker manifests have no zstd layer type)".into()));
    }
    let src = ImageRef::parse(&args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    crate::smoke::load_events(&args.smoke.smoke)?; // bad event files fail before any work
    let topts = super::transport_options(&args.registry, &[&src, &dst])?;
    let source = transport::open_source(&src, &topts)?;
    let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
    let catalog = Catalog::load(&super::catalog_options(&args.base, &topts))?;
    let docker = match (args.manifest_format, compression) {
        (Some(ManifestFormat::Docker), _) => true,
        (Some(ManifestFormat::Oci), _) | (None, Compression::Zstd) => false,
        (None, _) => image.parsed.is_docker(),
    };
    if compression == Compression::Zstd {
        warn_zstd_for_lambda(&image.config);
    }

    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = crate::workdir::create(&work_parent)?;
    // The base is the same from build to build, and so are most upper layers of a
    // redeploy: listings come through the cache, and a layer is spooled again only
    // when a layer that must be written needs its bytes.
    let cache_dir = args
        .base
        .cache_dir
        .clone()
        .or_else(crate::catalog::default_cache_dir);
    let layer_cache = Arc::new(
        LayerCache::new(cache_dir.as_ref().map(|c| c.join("layers")))?
            .with_imports(work.path().join("imported-listings"))?,
    );
    // An earlier output to reuse layers from: `--reuse-from`, else what the
    // destination tag points to now (a docker archive is rewritten whole). The
    // listings attached to it spare reading the layers the source shares with it.
    // A dry run writes nothing and leaves the destination alone.
    let reuse_ref = match (&args.reuse_from, args.no_reuse) {
        _ if args.dry_run => None,
        (_, true) => None,
        (Some(r), _) => Some(ImageRef::parse(r)?),
        (None, _) => (!matches!(dst, ImageRef::DockerArchive { .. })).then(|| dst.clone()),
    };
    let reuse = reuse_ref.and_then(|r| previous_output(&r, &topts, args.read.platform.as_ref()));
    if let Some(p) = &reuse {
        let wanted: Vec<_> = image
            .parsed
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect();
        let max_entries = args.read.max_entries;
        match attached::fetch(
            p.source.as_ref(),
            &p.manifest,
            &layer_cache,
            &wanted,
            max_entries,
        ) {
            Ok(n) => ui::trace(|| format!("{n} layer listings from {}", p.source.describe())),
            // Only a speed-up is lost: the layers are read instead.
            Err(e) => ui::warn(&format!(
                "not using the layer listings attached to {}: {}",
                p.source.describe(),
                crate::error::Chain(&e)
            )),
        }
    }
    let opts = super::analyze_options(&args.read, &args.strip);
    let started = std::time::Instant::now();
    let a = analysis::for_rewrite(
        source.as_ref(),
        image,
        args.read.platform.as_ref(),
        &catalog,
        opts,
        work.path(),
        layer_cache.clone(),
    )?;
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
    if args.dry_run {
        report.optimize = Some(OptimizeSection::planned(&a, &plan));
        emit(&report, args.format, args.report.as_deref(), false)?;
        super::catalog_note(&catalog);
        return Ok(());
    }

    let sink = transport::open_sink(&dst, &topts)?;
    let execute = ExecuteOptions {
        settings: Settings {
            compression,
            level: args.compression_level,
            jobs: args.read.jobs,
            docker,
            verify: !args.no_verify,
        },
        build_all: !args.smoke.smoke.is_empty(),
        work: work.path(),
        memos: Memos {
            cache: MemoCache::new(cache_dir.as_ref().map(|c| c.join("outputs"))),
            reuse: reuse
                .as_ref()
                .map(|p| (p.source.as_ref() as &dyn Source, p.keys.clone())),
        },
        transport: &topts,
    };
    let (source, work) = (source.as_ref(), work.path());
    let prepared = prepare(&a, &plan, source, sink.as_ref(), execute)?;
    drop(reuse);
    let (prepared, mut section) =
        OptimizeSection::never_worse_or_source(&a, &plan, prepared, source, sink.as_ref())?;
    let kept_source = section.is_kept_source();
    report.optimize = Some(section.clone());
    // Gates come before anything is tagged; the written output must answer like
    // the source (a kept source is the source: nothing to compare).
    let (written, config) = (&prepared.written, &prepared.config);
    let gates = thresholds.check(&report).and_then(|()| {
        if kept_source {
            return Ok(());
        }
        super::smoke::gate(&args.smoke, &a, source, written, config, work, &mut report)
    });
    if let Err(e) = gates {
        let _ = emit(&report, args.format, args.report.as_deref(), false);
        return Err(e);
    }
    let outcome = prepared.commit()?;
    section.committed(&outcome);
    report.optimize = Some(section);
    emit(&report, args.format, args.report.as_deref(), false)?;
    if let ImageRef::Registry(_) = dst {
        attach_listings(&a, &dst, &topts, sink.as_ref(), &outcome, &layer_cache);
    }
    super::catalog_note(&catalog);
    Ok(())
}

/// Attach the source layers' listings to the tagged output, for the next
/// redeploy on a runner without this cache. The output is tagged already, and
/// a missing artifact only costs that run time: a failure is a warning.
fn attach_listings(
    a: &Analysis,
    dst: &ImageRef,
    topts: &TransportOptions,
    sink: &dyn Sink,
    outcome: &Outcome,
    cache: &LayerCache,
) {
    let subject = crate::image::Descriptor::new(
        outcome.manifest_media_type.clone(),
        outcome.manifest_digest.clone(),
        outcome.manifest_size,
    );
    let layers: Vec<_> = a
        .image
        .parsed
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    let done = transport::open_source(dst, topts)
        .and_then(|dest| attached::attach(sink, dest.as_ref(), &subject, cache, &layers));
    match done {
        Ok(at) => ui::trace(|| {
            format!(
                "attached the listings of {} source layers as {} (tag {}; {} bytes sent)",
                at.listings,
                at.manifest,
                attached::referrers_tag(&subject.digest),
                at.uploaded_bytes
            )
        }),
        Err(e) => ui::warn(&format!(
            "the output is tagged, but its layer listings were not attached (a redeploy from it on a runner without this cache reads the layers): {}",
            crate::error::Chain(&e)
        )),
    }
}
