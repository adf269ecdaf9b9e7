//! `coldpress audit REGISTRY` and `coldpress audit merge DIR...`

use crate::audit::{self, AuditOptions};
use crate::catalog::Catalog;
use crate::cli::{AuditArgs, AuditCommand};
use crate::error::{Error, Result};
use crate::reference::ImageRef;

pub fn run(args: &AuditArgs) -> Result<()> {
    if let Some(AuditCommand::Merge(m)) = &args.command {
        let n = audit::merge(&m.inputs, &m.output)?;
        println!(
            "merged {n} images from {} audits into {}",
            m.inputs.len(),
            m.output.display()
        );
        return Ok(());
    }
    let registry = args
        .registry
        .clone()
        .ok_or_else(|| Error::Usage("audit needs a registry".into()))?;
    let output = args
        .output
        .clone()
        .ok_or_else(|| Error::Usage("audit needs --output DIR".into()))?;
    let probe = ImageRef::parse(&format!("{registry}/x"))?;
    let transport = super::transport_options(&args.registry_args, &[&probe])?;
    let catalog = Catalog::load(&super::catalog_options(&args.base, &transport))?;
    let cache_root = args
        .base
        .cache_dir
        .clone()
        .or_else(crate::catalog::default_cache_dir);
    let opts = AuditOptions {
        registry: registry.clone(),
        repos: args.repo.clone(),
        repos_from: args.repos_from.clone(),
        tags: args.tags,
        concurrency: args.concurrency.max(1),
        shard: args.shard,
        output: output.clone(),
        platform: args.read.platform.clone(),
        analyze: super::analyze_options(&args.read, &args.strip),
        transport,
        layer_cache_dir: cache_root.map(|c| c.join("layers")),
    };
    let started = std::time::Instant::now();
    let s = audit::run(&opts, &catalog)?;
    println!(
        "audited {} of {} images in {} repositories ({} already done, {} failed) in {:.1}s; layers read {}, from cache {}; see {}",
        s.analyzed,
        s.images,
        s.repositories,
        s.skipped,
        s.errors,
        started.elapsed().as_secs_f64(),
        s.layers_read,
        s.layers_cached,
        output.join("index.html").display()
    );
    super::catalog_note(&catalog);
    Ok(())
}
