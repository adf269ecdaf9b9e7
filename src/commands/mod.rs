//! The commands: thin shells that turn flags into library calls.

pub mod analyze;
pub mod audit;
pub mod optimize;
pub mod smoke;

use std::io::Read;
use std::time::Duration;

use crate::analysis::{AnalyzeOptions, StripOptions};
use crate::catalog::{Catalog, CatalogOptions};
use crate::cli::{BaseArgs, ReadArgs, RegistryArgs, StripArgs};
use crate::error::{Error, Result};
use crate::layer::ReadOptions;
use crate::reference::ImageRef;
use crate::transport::TransportOptions;
use crate::transport::registry::credentials::{Credential, Secret};
use crate::transport::registry::{RegistryOptions, RetryPolicy};

/// Transport settings from flags; explicit credentials apply to `named` images' registries.
pub fn transport_options(args: &RegistryArgs, named: &[&ImageRef]) -> Result<TransportOptions> {
    let explicit = match (&args.username, args.password_stdin) {
        (Some(u), true) => {
            let mut pw = String::new();
            std::io::stdin()
                .read_to_string(&mut pw)
                .map_err(|e| Error::io("reading the password from stdin", e))?;
            let pw = pw.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(Error::Usage(
                    "--password-stdin: standard input was empty".into(),
                ));
            }
            Some(Credential::Basic {
                username: u.clone(),
                password: Secret::new(pw),
            })
        }
        _ => None,
    };
    Ok(TransportOptions {
        registry: RegistryOptions {
            insecure: args.insecure_registry.clone(),
            explicit,
            explicit_for: named
                .iter()
                .filter_map(|r| r.as_registry())
                .map(|r| r.registry.clone())
                .collect(),
            connect_timeout: Duration::from_secs(args.connect_timeout),
            io_timeout: Duration::from_secs(args.timeout),
            retry: RetryPolicy {
                attempts: args.retries.max(1),
                ..RetryPolicy::default()
            },
        },
    })
}

/// Analysis settings from the flags every image command shares.
pub fn analyze_options(read: &ReadArgs, strip: &StripArgs) -> AnalyzeOptions {
    AnalyzeOptions {
        strip: StripOptions {
            profile: strip.profile,
            strip: strip.strip.clone(),
            keep: strip.keep.clone(),
            strip_packages: strip.strip_packages.clone(),
            keep_packages: strip.keep_packages.clone(),
        },
        assets: crate::analysis::classify::AssetOptions {
            threshold: strip.assets_threshold,
            globs: strip.assets.clone(),
        },
        jobs: read.jobs,
        read: ReadOptions {
            max_layer_bytes: read.max_layer_size,
            max_entries: read.max_entries,
            ..ReadOptions::default()
        },
        max_image_bytes: read.max_image_size,
        ..AnalyzeOptions::default()
    }
}

/// The catalog's note (a failed refresh, a stale cache), once, after the result:
/// the first thing a user reads is about their image.
pub fn catalog_note(catalog: &Catalog) {
    if let Some(m) = &catalog.status.message {
        crate::ui::note(m);
    }
}

pub fn catalog_options(args: &BaseArgs, transport: &TransportOptions) -> CatalogOptions {
    CatalogOptions {
        offline: args.offline,
        refresh: args.refresh_bases,
        base_images: args.base_image.clone(),
        cache_dir: args.cache_dir.clone(),
        transport: transport.clone(),
    }
}
