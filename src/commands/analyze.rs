//! `coldpress analyze IMAGE`

use std::io::Write;

use crate::analysis;
use crate::catalog::Catalog;
use crate::cli::{AnalyzeArgs, FailOn, Format};
use crate::error::{Error, IoContext, Result};
use crate::reference::ImageRef;
use crate::report::{Report, render_markdown, render_text};
use crate::transport;
use crate::transport::resolve::resolve;

pub fn run(args: &AnalyzeArgs) -> Result<()> {
    let r = ImageRef::parse(&args.image)?;
    let topts = super::transport_options(&args.registry, &[&r])?;
    let source = transport::open_source(&r, &topts)?;
    let image = resolve(source.as_ref(), args.read.platform.as_ref())?;
    // Only now, with the image known to exist, is the base catalog worth a look.
    let catalog = Catalog::load(&super::catalog_options(&args.base, &topts))?;
    let mut opts = super::analyze_options(&args.read, &args.strip);
    // The added layers are kept on disk while analyzing: which OS packages a
    // function can do without depends on what its files load (ELF headers).
    let spool = crate::workdir::create(&std::env::temp_dir())?;
    opts.spool_dir = Some(spool.path().to_path_buf());
    let a = analysis::analyze(source.as_ref(), image, &catalog, &opts)?;
    let report = Report::from_analysis(&a, args.list_files);
    emit(
        &report,
        args.format,
        args.report.as_deref(),
        args.list_files,
    )?;
    super::catalog_note(&catalog);
    fail_on(&report, args.fail_on)
}

/// Print the report on stdout in `format`, and write JSON to `file` if asked.
pub fn emit(
    report: &Report,
    format: Format,
    file: Option<&std::path::Path>,
    list_files: bool,
) -> Result<()> {
    let json = || serde_json::to_string_pretty(report).expect("reports serialize");
    if let Some(path) = file {
        crate::fsutil::write_atomic(path, json().as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    let text = match format {
        Format::Json => json() + "\n",
        Format::Markdown => render_markdown(report),
        Format::Text => {
            let mut t = render_text(report);
            if list_files && let Some(files) = &report.files {
                t.push_str("\n  files\n");
                for f in files {
                    t.push_str(&format!(
                        "    {:<6} {:>10}  L{:<2} {}  [{}]{}\n",
                        f.class.as_str(),
                        f.size,
                        f.layer,
                        f.path,
                        f.reason,
                        f.strip_rule
                            .as_ref()
                            .map(|r| format!(" strip: {r}"))
                            .unwrap_or_default()
                    ));
                }
            }
            t
        }
    };
    out.write_all(text.as_bytes())
        .ctx("writing the report to stdout")?;
    Ok(())
}

pub fn fail_on(report: &Report, level: Option<FailOn>) -> Result<()> {
    let Some(level) = level else { return Ok(()) };
    let min = match level {
        FailOn::Info => analysis::Severity::Info,
        FailOn::Warning => analysis::Severity::Warning,
        FailOn::Error => analysis::Severity::Error,
    };
    let hits: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.severity >= min)
        .map(|f| f.id.as_str())
        .collect();
    if hits.is_empty() {
        return Ok(());
    }
    Err(Error::Threshold(
        format!("--fail-on {:?}: findings {}", level, hits.join(", ")).to_lowercase(),
    ))
}
