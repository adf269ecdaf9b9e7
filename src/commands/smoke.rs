//! `coldpress smoke IMAGE --event FILE`, and the `--smoke` gate of `optimize`.

use std::path::Path;
use std::time::Duration;

use crate::analysis::Analysis;
use crate::cli::{Format, SmokeArgs, SmokeGateArgs};
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::report::{Report, render_smoke_markdown, render_smoke_text};
use crate::smoke::materialise::LayerStream;
use crate::smoke::{ImageUnderTest, SmokeOptions, SmokeSection, load_events};
use crate::transport::resolve::resolve;
use crate::transport::{self, Source};
use crate::writer::output::OutLayer;

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
    crate::smoke::gate::arch_check(&image.config)?;
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

/// The `--smoke` gate of `optimize`: fail (nothing tagged) unless the written
/// output answers every event as the source does.
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
    let section = crate::smoke::gate::gate(a, source, written, output_config, work, &opts)?;
    let failed = section.error();
    report.smoke = Some(section);
    failed.map_or(Ok(()), Err)
}
