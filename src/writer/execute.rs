//! Carrying out a plan: spool what the new layers need, write (or reuse) them
//! and hand each to the sink, copy the base's blobs, read everything back and
//! compare it with the source, and author the config and manifest.
//!
//! Two steps, because the gates sit between them: [`prepare`] leaves every
//! layer blob in the destination but tags nothing, and [`Prepared::commit`]
//! puts the config and the manifest. A caller runs its thresholds and the smoke
//! run on the [`Prepared`] output, and commits only if they pass; blobs without
//! a manifest are harmless.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, json};

use super::config::{BASE_DIGEST, BASE_NAME, rewrite_config};
use super::image::manifest;
use super::memo::RecordedKeys;
use super::output::{Io, Memos, OutLayer, Settings, lookup, produce_all};
use super::rewrite::Spools;
use crate::analysis::{Analysis, Class};
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{Compression, Descriptor, ImageConfig, MediaType, Platform, RawManifest};
use crate::layer::ReadOptions;
use crate::plan::Plan;
use crate::reference::ImageRef;
use crate::transport::resolve::resolve;
use crate::transport::{self, BlobContent, BlobOutcome, Sink, Source, TransportOptions};
use crate::ui;
use crate::writer::verify::compare_with_source;

/// How a plan is carried out.
pub struct ExecuteOptions<'a> {
    pub settings: Settings,
    /// Build every new layer in this run, reusing none an earlier run left: a
    /// smoke run must run the bytes about to be tagged (the memo keys stay).
    pub build_all: bool,
    /// Where spools and written layers live; the caller removes it.
    pub work: &'a Path,
    /// The memo cache and the earlier output whose layers may be reused.
    pub memos: Memos<'a>,
    /// For opening the base build itself when the image carries its layers recompressed.
    pub transport: &'a TransportOptions,
}

/// An output whose layer blobs are all in the destination, untagged.
pub struct Prepared<'a> {
    sink: &'a dyn Sink,
    /// The new layers above the base, in order (their files live until this is dropped).
    pub written: Vec<OutLayer>,
    /// Every layer of the output: the base's, then `written`'s.
    pub layers: Vec<Descriptor>,
    /// How each of `layers` reached the destination.
    pub transfers: Vec<BlobOutcome>,
    pub config: Arc<[u8]>,
    pub config_desc: Descriptor,
    pub manifest: RawManifest,
    /// The layers were read back and compared with the source.
    pub verified: bool,
}

/// A tagged output.
pub struct Outcome {
    /// Every blob of the output (the layers, then the config) and how it reached the destination.
    pub blobs: Vec<(Descriptor, BlobOutcome)>,
    pub manifest_digest: Digest,
    pub manifest_media_type: MediaType,
    pub manifest_size: u64,
    /// The destination as the sink names it.
    pub destination: String,
    pub verified: bool,
}

/// Write `plan`'s layers to `sink` and build the config and manifest over
/// them; nothing is tagged (see [`Prepared::commit`]).
pub fn prepare<'a>(
    a: &Analysis,
    plan: &Plan,
    source: &dyn Source,
    sink: &'a dyn Sink,
    opts: ExecuteOptions,
) -> Result<Prepared<'a>> {
    let ExecuteOptions {
        settings,
        build_all,
        work,
        memos,
        transport,
    } = opts;
    let mut found = lookup(a, plan, settings, &memos, sink)?;
    if build_all {
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
    let spools = spools(a, plan, &memoized, source, work)?;
    let base_source = base_blob_source(a, transport)?;
    let base_src: &dyn Source = base_source.as_deref().unwrap_or(source);
    let base_descs = base_descriptors(a, settings.docker);

    // The base's blobs go up while the new layers are written, and each new layer
    // is read back and uploaded as soon as it is written. Blobs are harmless
    // without a manifest: nothing is tagged before verification and the gates.
    let phase = std::time::Instant::now();
    let (produced, base_outcomes) = std::thread::scope(|s| {
        let base = s.spawn(|| copy_blobs(sink, &base_descs, base_src, 2));
        let produced = produce_all(
            a,
            plan,
            &spools,
            work,
            settings,
            Io {
                source,
                sink,
                memos: &memos,
            },
            found,
        );
        (produced, base.join().expect("blob transfers do not panic"))
    });
    let produced = produced?;
    let mut transfers = base_outcomes?;
    ui::trace(|| {
        format!(
            "wrote, read back and pushed {} new layers in {:.2}s",
            produced.len(),
            phase.elapsed().as_secs_f64()
        )
    });
    let mut written = Vec::new();
    let mut back = Vec::new();
    let mut layers = base_descs;
    for p in produced {
        transfers.push(p.outcome);
        back.extend(p.read_back);
        layers.push(p.layer.desc.clone());
        written.push(p.layer);
    }
    if settings.verify {
        let phase = std::time::Instant::now();
        compare_with_source(a, plan, back)?;
        ui::trace(|| format!("verified in {:.2}s", phase.elapsed().as_secs_f64()));
    }

    let config: Arc<[u8]> = rewrite_config(a, &written)?.into();
    let config_desc = Descriptor::new(
        if settings.docker {
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
    let manifest = manifest(settings.docker, &config_desc, &layers, Some(&annotations));
    Ok(Prepared {
        sink,
        written,
        layers,
        transfers,
        config,
        config_desc,
        manifest,
        verified: settings.verify,
    })
}

/// The source image itself, for the destination, when the rewritten output
/// turned out worse than it (docs/decisions.md, "Never worse than the
/// source"): its layer blobs copied as they are, its config and manifest byte
/// for byte, so the destination gets the source's digest. Nothing is tagged.
pub fn keep_source<'a>(
    a: &Analysis,
    source: &dyn Source,
    sink: &'a dyn Sink,
) -> Result<Prepared<'a>> {
    let layers = a.image.parsed.layers.clone();
    let transfers = copy_blobs(sink, &layers, source, 2)?;
    let config: Arc<[u8]> = a.image.config_bytes.clone().into();
    Ok(Prepared {
        sink,
        written: Vec::new(),
        layers,
        transfers,
        config,
        config_desc: a.image.parsed.config.clone(),
        manifest: a.image.manifest.clone(),
        // Every blob is the source's own, checked against its digest on copy:
        // there is no rewrite to read back.
        verified: true,
    })
}

impl Prepared<'_> {
    /// Tag the output: its config blob, then its manifest. Call it only once
    /// every gate has passed.
    pub fn commit(self) -> Result<Outcome> {
        let config_outcome = self
            .sink
            .put_blob(&self.config_desc, &self.config as &dyn BlobContent)?;
        self.sink.put_manifest(&self.manifest)?;
        let blobs = self
            .layers
            .into_iter()
            .zip(self.transfers)
            .chain(std::iter::once((self.config_desc, config_outcome)))
            .collect();
        Ok(Outcome {
            blobs,
            manifest_digest: self.manifest.digest,
            manifest_size: self.manifest.bytes.len() as u64,
            manifest_media_type: self.manifest.media_type,
            destination: self.sink.describe(),
            verified: self.verified,
        })
    }
}

/// zstd layers suit ECS/Fargate; say so when the image looks like a Lambda
/// function's, which Lambda is only known to run with gzip layers.
pub fn warn_zstd_for_lambda(config: &ImageConfig) {
    let looks_like_lambda = config.env("LAMBDA_TASK_ROOT").is_some()
        || config
            .config
            .as_ref()
            .is_some_and(|c| c.entrypoint.iter().any(|e| e.contains("lambda-entrypoint")));
    if looks_like_lambda {
        ui::warn(
            "zstd layers are for images that run elsewhere (ECS/Fargate); AWS Lambda is only known to accept gzip",
        );
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
    work: &Path,
) -> Result<Spools> {
    let mut files: Vec<Option<std::fs::File>> = Vec::with_capacity(a.layers.len());
    for l in &a.layers {
        files.push(match &l.spool {
            Some(p) => Some(crate::layer::read::open_spool(p)?),
            None => None,
        });
    }
    let mut needed = std::collections::BTreeSet::new();
    for (id, _, n) in a.index.iter_ids() {
        if let Some(class) = &plan.placement[id]
            && !plan.passed[id]
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
fn base_blob_source(a: &Analysis, topts: &TransportOptions) -> Result<Option<Box<dyn Source>>> {
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

/// An earlier output of this pipeline, whose layers a redeploy may reuse.
pub struct Previous {
    pub source: Box<dyn Source>,
    /// Its manifest's digest (what its attached listings are about).
    pub manifest: Digest,
    /// The memo keys its config records.
    pub keys: RecordedKeys,
}

/// The earlier output `r` and the layer keys it records; `None` (with a trace
/// of why) when there is none to use: its absence is no error.
pub fn previous_output(
    r: &ImageRef,
    topts: &TransportOptions,
    platform: Option<&Platform>,
) -> Option<Previous> {
    let found = transport::open_source(r, topts).and_then(|s| {
        let image = resolve(s.as_ref(), platform)?;
        Ok((s, image))
    });
    match found {
        Ok((source, image)) => {
            let keys = super::memo::recorded_keys(&image);
            ui::trace(|| format!("{} records {} layer keys", image.reference, keys.len()));
            Some(Previous {
                source,
                manifest: image.manifest.digest,
                keys,
            })
        }
        Err(e) => {
            ui::trace(|| format!("nothing to reuse from {}: {e}", r));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{AnalyzeOptions, analyze};
    use crate::catalog::Catalog;
    use crate::transport::oci_layout::{OciLayoutSink, OciLayoutSource};
    use crate::writer::memo::MemoCache;

    /// The gates run between the two steps, so `prepare` must leave the output
    /// untagged with every layer in place, and `commit` tag exactly what it prepared.
    #[test]
    fn prepare_stores_every_layer_and_tags_nothing_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        crate::example::write_example(dir.path()).unwrap();
        let src = OciLayoutSource::open(dir.path(), Some("app")).unwrap();
        let mut opts = AnalyzeOptions::default();
        opts.read.hash_contents = true;
        opts.keep_layer_entries = true;
        let image = resolve(&src, None).unwrap();
        let a = analyze(&src, image, &Catalog::empty(), &opts).unwrap();
        let plan = Plan::new(&a);
        let out = tempfile::tempdir().unwrap();
        let sink = OciLayoutSink::create(out.path(), Some("slim")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let settings = Settings {
            compression: Compression::Gzip,
            level: None,
            jobs: 2,
            docker: false,
            verify: true,
        };
        let opts = ExecuteOptions {
            settings,
            build_all: false,
            work: work.path(),
            memos: Memos {
                cache: MemoCache::new(None),
                reuse: None,
            },
            transport: &TransportOptions::default(),
        };
        let prepared = prepare(&a, &plan, &src, &sink, opts).unwrap();

        assert_eq!(prepared.layers.len(), prepared.transfers.len());
        assert!(!prepared.written.is_empty());
        for d in &prepared.layers {
            assert!(sink.has_blob(d).unwrap(), "{} is stored", d.digest);
        }
        assert!(
            matches!(
                OciLayoutSource::open(out.path(), Some("slim")),
                Err(crate::error::Error::NotFound { .. })
            ),
            "nothing is tagged before commit"
        );

        let manifest = prepared.manifest.digest.clone();
        let outcome = prepared.commit().unwrap();
        assert_eq!(outcome.manifest_digest, manifest);
        assert!(outcome.verified);
        let tagged = OciLayoutSource::open(out.path(), Some("slim")).unwrap();
        let output = resolve(&tagged, None).unwrap();
        assert_eq!(output.manifest.digest, manifest);
        let layers: Vec<&Digest> = outcome.blobs.iter().map(|(d, _)| &d.digest).collect();
        let mut expect: Vec<&Digest> = output.parsed.layers.iter().map(|d| &d.digest).collect();
        expect.push(&output.parsed.config.digest);
        assert_eq!(layers, expect, "the layers, then the config");
    }
}
