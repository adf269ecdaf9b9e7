//! The `--smoke` gate of `optimize`: the source and the written output, each
//! run as Lambda would run it, must answer every event alike before the output
//! is tagged.

use std::path::Path;

use super::materialise::LayerStream;
use super::{ImageUnderTest, SmokeOptions, SmokeSection};
use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::image::{Compression, ImageConfig};
use crate::layer::ReadOptions;
use crate::transport::Source;
use crate::writer::output::{Origin, OutLayer};

/// Lambda runs the image's own architecture; a foreign one needs qemu-user's
/// binfmt handler, and without it the smoke cannot run (it never passes silently).
pub fn arch_check(config: &ImageConfig) -> Result<()> {
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

/// Run the source and the written output (the base's layers, then `written`,
/// with `output_config`) on every event. The section says whether they agreed
/// ([`SmokeSection::error`]); an error here means the runs could not be made.
pub fn gate(
    a: &Analysis,
    source: &dyn Source,
    written: &[OutLayer],
    output_config: &[u8],
    work: &Path,
    opts: &SmokeOptions,
) -> Result<SmokeSection> {
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
    let section = super::smoke_pair(
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
        opts,
    );
    let _ = std::fs::remove_dir_all(&spool_dir);
    section
}
