//! `coldpress smoke IMAGE --event FILE`, and the `--smoke` gate of `optimize`.

use std::path::Path;
use std::time::Duration;

use crate::analysis::Analysis;
use crate::cli::{Format, SmokeArgs, SmokeGateArgs};
use crate::error::{Error, Result};
use crate::image::{Compression, ImageConfig};
use crate::layer::ReadOptions;
use crate::reference::ImageRef;
use crate::report::{Report, render_smoke_markdown, render_smoke_text};
use crate::smoke::materialise::LayerStream;
use crate::smoke::{ImageUnderTest, SmokeOptions, SmokeSection, load_events};
use crate::transport::resolve::resolve;
use crate::transport::{self, Source};
use crate::writer::output::{Origin, OutLayer};

/// The run's directory under the per-user work root, so a killed smoke run's
/// materialised trees are swept by the next run (src/workdir.rs).
fn work_dir(parent: Option<&Path>) -> Result<crate::workdir::RunDir> {
    let parent = parent
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    crate::workdir::create(&parent)
}

pub fn run(args: &SmokeArgs) -> Result<()> {
    let opts = SmokeOptions {
        events: load_events(&args.event)?,
        timeout: Duration::from_secs(args.smoke_timeout.max(1)),
        ignore: Vec::new(),
    };
    let src = ImageRef::parse(&args.image)?;
    let topts = super::transport_options(&args.registry, &[&src])?;
    let source = transport::open_source(&src, &topts)?;
    let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
    arch_check(&image.config)?;
    let work = work_dir(args.work_dir.as_deref())?;
    let layers = image
        .parsed
        .layers
        .iter()
        .map(|d| LayerStream::blob(source.as_ref(), d.clone()))
        .collect();
    let section = crate::smoke::smoke_image(
        ImageUnderTest {
            role: "image",
            reference: source.describe(),
            config: image.config.clone(),
            layers,
        },
        work.path(),
        &opts,
    )?;
    emit(&section, args.format, args.report.as_deref())?;
    section.error().map_or(Ok(()), Err)
}

fn emit(section: &SmokeSection, format: Format, file: Option<&Path>) -> Result<()> {
    let doc = serde_json::json!({
        "schema": "coldpress.smoke/v1",
        "tool": {"name": "coldpress", "version": env!("CARGO_PKG_VERSION")},
        "smoke": section,
    });
    let json = serde_json::to_string_pretty(&doc).expect("reports serialize");
    if let Some(path) = file {
        crate::fsutil::write_atomic(path, json.as_bytes())?;
    }
    let text = match format {
        Format::Json => json + "\n",
        Format::Text => render_smoke_text(section),
        Format::Markdown => render_smoke_markdown(section),
    };
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing the report to stdout", e))
}

/// Lambda runs the image's own architecture; a foreign one needs qemu-user's
/// binfmt handler, and without it the smoke cannot run (it never passes silently).
fn arch_check(config: &ImageConfig) -> Result<()> {
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let arch = config.architecture.as_str();
    if arch.is_empty() || arch == host {
        return Ok(());
    }
    let qemu = match arch {
        "arm64" => "qemu-aarch64",
        "amd64" => "qemu-x86_64",
        other => other,
    };
    if Path::new("/proc/sys/fs/binfmt_misc").join(qemu).exists() {
        return Ok(());
    }
    Err(Error::Smoke(format!(
        "the image is {arch} and this host is {host} without a qemu-user binfmt handler ({qemu}; apt-get install qemu-user-binfmt): the smoke run cannot run it, so nothing was proven"
    )))
}

/// The `--smoke` gate of `optimize`: run the source and the written output, and
/// fail (nothing tagged) unless the output answers every event as the source does.
pub fn gate(
    args: &SmokeGateArgs,
    a: &Analysis,
    source: &dyn Source,
    written: &[OutLayer],
    output_config: &[u8],
    work: &Path,
    report: &mut Report,
) -> Result<()> {
    if args.smoke.is_empty() {
        return Ok(());
    }
    let opts = SmokeOptions {
        events: load_events(&args.smoke)?,
        timeout: Duration::from_secs(args.smoke_timeout.max(1)),
        ignore: args.smoke_ignore.clone(),
    };
    arch_check(&a.image.config)?;
    let spool_dir = work.join("smoke-spools");
    std::fs::create_dir_all(&spool_dir)
        .map_err(|e| Error::io(format!("creating {}", spool_dir.display()), e))?;
    // Layers the analysis did not spool (the base's) are read once, for both runs.
    let mut spools = Vec::new();
    for l in &a.layers {
        spools.push(match &l.spool {
            Some(p) => p.to_path_buf(),
            None => {
                let listing = crate::layer::read_layer(
                    source,
                    &l.descriptor,
                    &l.diff_id,
                    &ReadOptions {
                        spool_dir: Some(spool_dir.clone()),
                        ..ReadOptions::default()
                    },
                )?;
                listing
                    .spool
                    .expect("asked to spool")
                    .keep()
                    .map_err(|e| Error::io("keeping a smoke spool", e.error))?
            }
        });
    }
    let what = |i: usize| format!("layer {i} of {}", source.describe());
    let src_layers = spools
        .iter()
        .enumerate()
        .map(|(i, p)| LayerStream::spool(p.clone(), what(i)))
        .collect();
    let base = a.base_layer_count();
    let mut out_layers: Vec<LayerStream> = spools[..base]
        .iter()
        .enumerate()
        .map(|(i, p)| LayerStream::spool(p.clone(), what(i)))
        .collect();
    for w in written {
        let what = format!("the new {} layer", w.class.as_str());
        out_layers.push(match (w.origin, &w.file) {
            (Origin::PassedThrough(n), _) => LayerStream::spool(spools[n].clone(), what),
            (_, Some(file)) => LayerStream::compressed_file(
                file.to_path_buf(),
                w.desc
                    .media_type
                    .layer_compression()
                    .unwrap_or(Compression::Gzip),
                what,
            ),
            // optimize builds every layer when smoking (no memoized layer is reused).
            (_, None) => {
                return Err(Error::Smoke(format!(
                    "{what} was not written in this run, so it cannot be smoke-tested"
                )));
            }
        });
    }
    let section = crate::smoke::smoke_pair(
        ImageUnderTest {
            role: "source",
            reference: source.describe(),
            config: a.image.config.clone(),
            layers: src_layers,
        },
        ImageUnderTest {
            role: "output",
            reference: "the written output".into(),
            config: ImageConfig::parse(output_config, "the output config")?,
            layers: out_layers,
        },
        work,
        &opts,
    );
    let _ = std::fs::remove_dir_all(&spool_dir);
    let section = section?;
    let failed = section.error();
    report.smoke = Some(section);
    failed.map_or(Ok(()), Err)
}
