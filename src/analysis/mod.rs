//! Analysis: read every layer once into the final filesystem, match the base,
//! classify each path, decide what a rewrite would strip, and lint.

pub mod classify;
pub mod findings;
pub mod packages;
pub mod strip;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use crate::catalog::{BaseMatch, Catalog, CatalogStatus};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsindex::{Count, FsIndex, LayerChanges};
use crate::image::{Compression, Descriptor};
use crate::layer::{Entry, EntryKind, LayerListing, ReadOptions, read_layer};
use crate::transport::Source;
use crate::transport::resolve::ResolvedImage;
use crate::ui;

pub use classify::{Class, Classification};
pub use findings::{Finding, FindingId, Severity};
pub use strip::{Profile, StripOptions, StripPlan};

#[derive(Clone)]
pub struct AnalyzeOptions {
    pub strip: StripOptions,
    /// Which task-root files are assets rather than code.
    pub assets: classify::AssetOptions,
    /// Layers read at the same time.
    pub jobs: usize,
    pub read: ReadOptions,
    /// Keep a copy of each non-base layer's uncompressed tar here (for rewriting).
    pub spool_dir: Option<std::path::PathBuf>,
    pub max_image_bytes: u64,
    /// Read layers through this cache (audit: each unique layer once).
    pub layer_cache: Option<std::sync::Arc<crate::layer::cache::LayerCache>>,
    /// Use the cache for the matched base layers only (optimize: the layers it
    /// rewrites must be read, hashed and spooled; the base's need not).
    pub cache_base_only: bool,
    /// With `cache_base_only`: also read upper layers through the cache (hashed
    /// and spooled when read; a cached listing comes without a spool).
    pub cache_upper: bool,
    /// Keep the entries of upper layers that could go into the output unchanged
    /// (gzip, no hard links, no whiteouts): optimize checks and verifies them.
    pub keep_layer_entries: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            strip: StripOptions::default(),
            assets: classify::AssetOptions::default(),
            jobs: 2,
            read: ReadOptions::default(),
            spool_dir: None,
            max_image_bytes: 64 << 30,
            layer_cache: None,
            cache_base_only: false,
            cache_upper: false,
            keep_layer_entries: false,
        }
    }
}

pub struct LayerInfo {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub compression: Compression,
    pub base: bool,
    pub created_by: Option<String>,
    pub changes: LayerChanges,
    /// Final files this layer provides, by class.
    pub classes: BTreeMap<Class, Count>,
    pub spool: Option<tempfile::TempPath>,
    /// The layer's own entries, when it may pass into the output unchanged
    /// (see [`AnalyzeOptions::keep_layer_entries`]).
    pub entries: Option<Vec<crate::layer::Entry>>,
}

pub struct Analysis {
    pub image: ResolvedImage,
    pub layers: Vec<LayerInfo>,
    pub index: FsIndex,
    pub base: Option<BaseMatch>,
    /// The filesystem of the matched base layers alone.
    pub base_index: FsIndex,
    pub classes: Classification,
    pub strip: StripPlan,
    /// OS packages: what goes, what stays, and the database files edited to match.
    pub packages: packages::PackagePlan,
    pub findings: Vec<Finding>,
    pub catalog: CatalogStatus,
    /// The manifest was made up by the transport (docker archives).
    pub synthesized_manifest: bool,
    strip_profile: Profile,
}

impl Analysis {
    pub fn base_layer_count(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.layers)
    }

    /// Final files (not directories) of a class, with bytes.
    pub fn class_totals(&self, class: Class) -> Count {
        let mut c = Count::default();
        for l in &self.layers {
            if let Some(x) = l.classes.get(&class) {
                c.files += x.files;
                c.bytes += x.bytes;
            }
        }
        c
    }

    pub fn strip_profile(&self) -> Profile {
        self.strip_profile
    }

    pub fn cold_start_bytes(&self) -> u64 {
        self.layers
            .iter()
            .filter(|l| !l.base)
            .map(|l| l.descriptor.size)
            .sum()
    }
}

/// The final index, the listings, the base's index and the kept entries of
/// pass-through candidates.
type ReadAll = (FsIndex, Vec<LayerListing>, FsIndex, Vec<Option<Vec<Entry>>>);

/// Read every layer of `image` (several at once, applied in order) into an index.
fn read_all(
    source: &dyn Source,
    image: &ResolvedImage,
    opts: &AnalyzeOptions,
    base_count: usize,
) -> Result<ReadAll> {
    let layers = &image.parsed.layers;
    let diff_ids = &image.config.rootfs.diff_ids;
    let n = layers.len();
    let jobs = opts.jobs.clamp(1, 16);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let window = (Mutex::new(0usize), Condvar::new());
    let (tx, rx) = mpsc::channel::<(usize, Result<LayerListing>)>();
    let mut index = FsIndex::new();
    let mut listings: Vec<LayerListing> = Vec::with_capacity(n);
    let mut base_index = FsIndex::new();
    let mut kept: Vec<Option<Vec<Entry>>> = Vec::with_capacity(n);
    let mut total_uncompressed = 0u64;
    let mut total_entries = 0usize;

    let result = std::thread::scope(|s| -> Result<()> {
        for _ in 0..jobs.min(n.max(1)) {
            let tx = tx.clone();
            let (next, abort, window) = (&next, &abort, &window);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    // Do not run more than `jobs` layers ahead of the one being applied:
                    // finished listings wait in memory.
                    {
                        let mut applied = window.0.lock().expect("not poisoned");
                        while i >= *applied + jobs && !abort.load(Ordering::SeqCst) {
                            applied = window.1.wait(applied).expect("not poisoned");
                        }
                    }
                    if abort.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut ro = opts.read.clone();
                    if i >= base_count {
                        ro.spool_dir = opts.spool_dir.clone();
                        // Which OS packages the function loads is read from these.
                        ro.programs = ro.spool_dir.is_some();
                    }
                    ro.progress = if ui::quiet() {
                        None
                    } else {
                        Some(ui::bytes_bar(
                            layers[i].size,
                            format!("layer {} {}", i, layers[i].digest.short()),
                        ))
                    };
                    let cached = opts
                        .layer_cache
                        .as_ref()
                        .filter(|_| !opts.cache_base_only || opts.cache_upper || i < base_count);
                    let r = match cached {
                        Some(cache) => {
                            if opts.cache_base_only && i < base_count {
                                // Base files are never rewritten: their contents need no hash.
                                ro.hash_contents = false;
                            }
                            cache.get(source, &layers[i], &diff_ids[i], &ro)
                        }
                        None => read_layer(source, &layers[i], &diff_ids[i], &ro),
                    };
                    if let Some(pb) = ro.progress {
                        pb.finish_and_clear();
                    }
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Result<LayerListing>> = BTreeMap::new();
        let mut next_apply = 0;
        let stop = |e: Error| {
            abort.store(true, Ordering::SeqCst);
            window.1.notify_all();
            Err(e)
        };
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&next_apply) {
                let mut listing = match r {
                    Ok(l) => l,
                    Err(e) => return stop(e),
                };
                total_uncompressed += listing.uncompressed_size;
                total_entries += listing.entries.len();
                if total_entries > opts.read.max_entries {
                    return stop(Error::invalid(
                        &image.reference,
                        format!(
                            "more than {} entries in all layers (raise the limit with --max-entries)",
                            opts.read.max_entries
                        ),
                    ));
                }
                if total_uncompressed > opts.max_image_bytes {
                    return stop(Error::invalid(
                        &image.reference,
                        format!(
                            "layers decompress to more than {} bytes (the per-image limit; raise it with --max-image-size)",
                            opts.max_image_bytes
                        ),
                    ));
                }
                let entries = std::mem::take(&mut listing.entries);
                kept.push(
                    (opts.keep_layer_entries
                        && next_apply >= base_count
                        && may_pass_through(&listing, &entries))
                    .then(|| entries.clone()),
                );
                if let Err(e) = index.apply(
                    entries,
                    &format!(
                        "layer {next_apply} ({}) of {}",
                        listing.digest, image.reference
                    ),
                ) {
                    return stop(e);
                }
                listings.push(listing);
                next_apply += 1;
                if next_apply == base_count {
                    base_index = index.clone();
                }
                *window.0.lock().expect("not poisoned") = next_apply;
                window.1.notify_all();
            }
        }
        Ok(())
    });
    result?;
    if listings.len() != n {
        return Err(Error::invalid(&image.reference, "not every layer was read"));
    }
    index.finish();
    Ok((index, listings, base_index, kept))
}

/// The cheap half of the pass-through test, on a layer's own entries: gzip, no
/// hard links, whiteouts or opaque markers (the rest needs the final filesystem).
fn may_pass_through(listing: &LayerListing, entries: &[Entry]) -> bool {
    listing.compression == Compression::Gzip
        && entries.iter().all(|e| {
            !matches!(
                e.kind,
                EntryKind::Hardlink(_) | EntryKind::Whiteout | EntryKind::Opaque
            )
        })
}

/// Files whose contents the analysis reads: Python/Node package records, the
/// OS package databases, ld.so's configuration.
fn wants_content(path: &str) -> bool {
    classify::wants_content(path)
        || crate::packages::wants_content(path)
        || path == "etc/ld.so.conf"
        || crate::layer::entry::parent(path) == "etc/ld.so.conf.d"
}

/// Analyze an image for `optimize`: every upper layer hashed, spooled under
/// `work` and its programs noted; listings through `cache`; each pass-through
/// candidate's entries kept.
pub fn for_rewrite(
    source: &dyn Source,
    image: ResolvedImage,
    wanted: Option<&crate::image::Platform>,
    catalog: &Catalog,
    mut opts: AnalyzeOptions,
    work: &std::path::Path,
    cache: std::sync::Arc<crate::layer::cache::LayerCache>,
) -> Result<Analysis> {
    opts.read.hash_contents = true;
    opts.spool_dir = Some(work.to_path_buf());
    opts.layer_cache = Some(cache.clone());
    opts.cache_base_only = true;
    opts.cache_upper = true;
    opts.keep_layer_entries = true;
    let mut a = analyze(source, image, catalog, &opts)?;
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
        let image = crate::transport::resolve::resolve(source, wanted)?;
        a = analyze(source, image, catalog, &opts)?;
    }
    ui::trace(|| {
        format!(
            "layer listings: {} read from the source, {} from the cache",
            cache.reads.load(Ordering::Relaxed),
            cache.hits.load(Ordering::Relaxed)
        )
    });
    Ok(a)
}

/// Analyze a resolved image.
pub fn analyze(
    source: &dyn Source,
    image: ResolvedImage,
    catalog: &Catalog,
    opts: &AnalyzeOptions,
) -> Result<Analysis> {
    let base = catalog.match_base(&image.config.rootfs.diff_ids, &image.platform);
    let base_count = base.as_ref().map_or(0, |b| b.layers);
    let mut ro = opts.read.clone();
    ro.capture = wants_content;
    let opts = AnalyzeOptions {
        read: ro,
        ..opts.clone()
    };
    let started = std::time::Instant::now();
    let (index, listings, base_index, mut kept) = read_all(source, &image, &opts, base_count)?;
    ui::trace(|| {
        format!(
            "read {} layers ({} paths) in {:.2}s",
            listings.len(),
            index.len(),
            started.elapsed().as_secs_f64()
        )
    });

    let started = std::time::Instant::now();
    let task_root = classify::task_root(image.config.env("LAMBDA_TASK_ROOT"));
    let classes = classify::classify(&index, base_count, &task_root, &opts.assets)?;
    let spools: Vec<Option<std::fs::File>> = listings
        .iter()
        .map(|l| match &l.spool {
            Some(p) => crate::layer::read::open_spool(p).map(Some),
            None => Ok(None),
        })
        .collect::<Result<_>>()?;
    // A layer from the listing cache has no spool, but its listing tells what
    // its programs load, and the package databases are captured.
    let programs: Vec<bool> = listings.iter().map(|l| l.programs).collect();
    let contents_kept =
        (base_count.min(spools.len())..spools.len()).all(|i| spools[i].is_some() || programs[i]);
    let reader = crate::packages::content::ContentReader::new(&index, spools, programs, base_count);
    let keep = strip::keep_set(&opts.strip.keep)?;
    let cfg = image.config.config.as_ref();
    let entrypoint: Vec<String> = cfg
        .map(|c| {
            let first = c.entrypoint.first().or(c.cmd.first());
            first
                .filter(|e| e.starts_with('/'))
                .cloned()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let popts = packages::PackageOptions {
        strip_packages: &opts.strip.strip_packages,
        keep_packages: &opts.strip.keep_packages,
        keep: &keep,
        entrypoint,
        ld_library_path: image.config.env("LD_LIBRARY_PATH").map(str::to_string),
        path: image.config.env("PATH").map(str::to_string),
        base_layers: base_count,
        base_matched: base.is_some(),
        contents_kept,
    };
    // A package the file rules cannot remove whole (a kept link or --keep holds
    // one of its files) stays whole: its record must stay true.
    let mut vetoed: std::collections::HashMap<usize, String> = Default::default();
    let (package_plan, strip) = loop {
        let pp = packages::plan(&reader, &base_index, &classes, &popts, &vetoed)?;
        let strip = strip::plan(&index, &classes, &opts.strip, &base_index, &pp.paths)?;
        let before = vetoed.len();
        for (path, why) in &strip.protected {
            if let Some(Some(i)) = pp.paths.get(path.as_str()) {
                vetoed
                    .entry(*i)
                    .or_insert_with(|| format!("kept whole: /{path} stays ({why})"));
            }
        }
        if vetoed.len() == before || vetoed.len() > 64 {
            break (pp, strip);
        }
    };
    // A file the decision needed was neither captured nor spooled (a database
    // too big to capture, in a layer from the cache): reading again decides.
    let (package_plan, strip) = match reader.missing() {
        Some(path) => {
            ui::trace(|| format!("/{path} is not readable from the cached listing"));
            let pp = packages::undecided(package_plan);
            let strip = strip::plan(&index, &classes, &opts.strip, &base_index, &pp.paths)?;
            (pp, strip)
        }
        None => (package_plan, strip),
    };
    drop(reader);
    ui::trace(|| {
        format!(
            "classified and planned in {:.2}s",
            started.elapsed().as_secs_f64()
        )
    });

    let history = image.config.layer_history();
    let mut layers: Vec<LayerInfo> = listings
        .into_iter()
        .enumerate()
        .map(|(i, l)| LayerInfo {
            descriptor: image.parsed.layers[i].clone(),
            diff_id: l.diff_id,
            compressed_size: l.compressed_size,
            uncompressed_size: l.uncompressed_size,
            compression: l.compression,
            base: i < base_count,
            created_by: history
                .get(i)
                .copied()
                .flatten()
                .and_then(|h| h.created_by.clone()),
            changes: index.layers[i].clone(),
            classes: BTreeMap::new(),
            spool: l.spool,
            entries: kept[i].take(),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (id, _, node) in index.iter_ids() {
        if node.is_dir() {
            continue;
        }
        // Hard-linked names share bytes: count their content once.
        let bytes = match node.content {
            Some(id) if seen.insert(id) => index.content(id).size,
            _ => 0,
        };
        layers[node.layer as usize]
            .classes
            .entry(classes.items[id].class)
            .or_default()
            .add(bytes);
    }
    let synthesized_manifest = image.reference.starts_with("docker-archive:");
    let mut a = Analysis {
        image,
        layers,
        index,
        base,
        base_index,
        classes,
        strip,
        packages: package_plan,
        findings: Vec::new(),
        catalog: catalog.status.clone(),
        synthesized_manifest,
        strip_profile: opts.strip.profile,
    };
    a.findings = findings::compute(&a);
    Ok(a)
}
