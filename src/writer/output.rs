//! Producing every output layer above the base, in the plan's order: written
//! ones are built (or taken from the memo of earlier runs), pass-through ones are
//! the source's own blob. Each is handed to the sink as soon as it exists and,
//! when verifying, comes back as a listing for the final comparison.

use crate::analysis::{Analysis, Class};
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{Compression, Descriptor, MediaType};
use crate::layer::LayerListing;
use crate::plan::{OutputLayer, Plan};
use crate::transport::{BlobContent, BlobOutcome, Sink, Source};

use super::memo::{self, Memo, MemoCache, RecordedKeys};
use super::rewrite::{Encoding, Spools, write_layer};
use super::verify::read_back;

/// How an output layer came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Built and compressed in this run.
    Written,
    /// The source's layer `n`, unchanged.
    PassedThrough(usize),
    /// An earlier run's layer with the same memo key: not built again.
    Memoized,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Written => "written",
            Origin::PassedThrough(_) => "passed-through",
            Origin::Memoized => "memoized",
        }
    }
}

/// One output layer above the base, however it was produced.
#[derive(Debug)]
pub struct OutLayer {
    pub class: Class,
    pub origin: Origin,
    pub desc: Descriptor,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: u64,
    pub hardlink_copy_bytes: u64,
    pub whiteouts: u64,
    /// The written file, while this run holds it.
    pub file: Option<tempfile::TempPath>,
    /// Memo key of a written (or memoized) layer.
    pub key: Option<String>,
}

/// Where memoized layers are looked up: the local cache and an earlier output.
pub struct Memos<'a> {
    pub cache: MemoCache,
    /// The `--reuse-from` image (default: the destination's current image) and
    /// the keys its config records.
    pub reuse: Option<(&'a dyn Source, RecordedKeys)>,
}

/// Where layers come from and go.
#[derive(Clone, Copy)]
pub struct Io<'a> {
    pub source: &'a dyn Source,
    pub sink: &'a dyn Sink,
    pub memos: &'a Memos<'a>,
}

/// A memoized layer usable for one output layer.
pub struct Hit {
    pub key: String,
    pub memo: Memo,
    /// The destination already holds the blob; otherwise it comes from the reuse image.
    pub in_sink: bool,
}

/// The memo key and, when one is usable, the hit for every output layer.
pub fn lookup(
    a: &Analysis,
    plan: &Plan,
    w: Settings,
    memos: &Memos,
    sink: &dyn Sink,
) -> Result<Vec<(Option<String>, Option<Hit>)>> {
    let encoding = Encoding {
        compression: w.compression,
        level: w.level,
        threads: w.jobs,
    };
    let media = MediaType::layer(w.docker, w.compression);
    let mut out = Vec::with_capacity(plan.outputs.len());
    for o in &plan.outputs {
        let OutputLayer::Written(class) = *o else {
            out.push((None, None));
            continue;
        };
        let Some(key) = memo::key(a, plan, class, encoding)? else {
            out.push((None, None));
            continue;
        };
        let remote = memos.reuse.as_ref().and_then(|(_, keys)| keys.get(&key));
        let mut hit = None;
        if let Some(m) = memos.cache.load(&key) {
            let desc = Descriptor::new(media.clone(), m.digest.clone(), m.size);
            let from_reuse = remote.is_some_and(|(d, _)| d.digest == m.digest);
            // Verifying needs the listing: stored, or read from the reuse image.
            let checkable = !w.verify || m.listing.is_some() || from_reuse;
            let in_sink = checkable && sink.has_blob(&desc)?;
            if in_sink || (checkable && from_reuse) {
                hit = Some(Hit {
                    key: key.clone(),
                    memo: m,
                    in_sink,
                });
            }
        }
        if hit.is_none()
            && let Some((d, diff_id)) = remote
        {
            let desc = Descriptor::new(media.clone(), d.digest.clone(), d.size);
            hit = Some(Hit {
                key: key.clone(),
                memo: Memo {
                    digest: d.digest.clone(),
                    size: d.size,
                    diff_id: diff_id.clone(),
                    uncompressed_size: 0,
                    entries: 0,
                    hardlink_copy_bytes: 0,
                    whiteouts: 0,
                    listing: None,
                },
                in_sink: sink.has_blob(&desc)?,
            });
        }
        out.push((Some(key), hit));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
pub struct Settings {
    pub compression: Compression,
    pub level: Option<i32>,
    pub jobs: usize,
    pub docker: bool,
    pub verify: bool,
}

/// One output layer with its read-back listing (when verifying) and its transfer.
pub struct Produced {
    pub layer: OutLayer,
    pub read_back: Option<(String, LayerListing)>,
    pub outcome: BlobOutcome,
}

/// Produce every output layer of `plan` (several at once) and store each in `sink`.
pub fn produce_all(
    a: &Analysis,
    plan: &Plan,
    spools: &Spools,
    work: &std::path::Path,
    w: Settings,
    io: Io,
    found: Vec<(Option<String>, Option<Hit>)>,
) -> Result<Vec<Produced>> {
    let Io {
        source,
        sink,
        memos,
    } = io;
    let encoding = Encoding {
        compression: w.compression,
        level: w.level,
        threads: w.jobs,
    };
    let jobs: Vec<(OutputLayer, Option<String>, Option<Hit>)> = plan
        .outputs
        .iter()
        .zip(found)
        .map(|(o, (k, h))| (*o, k, h))
        .collect();
    crate::parallel::map(&jobs, w.jobs, |(out, key, hit)| match (*out, hit) {
        (OutputLayer::Written(class), Some(hit)) => reuse(class, hit, w, sink, memos),
        (OutputLayer::Written(class), None) => {
            let written = write_layer(a, plan, class, spools, work, encoding)?;
            let desc = Descriptor::new(
                written.layer.media_type(w.docker),
                written.layer.digest.clone(),
                written.layer.size,
            );
            let read_back = if w.verify {
                Some((
                    format!("new {} layer", class.as_str()),
                    read_back(&desc, &written)?,
                ))
            } else {
                None
            };
            let outcome = sink.put_blob(&desc, &written.layer.path as &dyn BlobContent)?;
            if let Some(k) = key {
                memos.cache.store(
                    k,
                    &Memo {
                        digest: desc.digest.clone(),
                        size: desc.size,
                        diff_id: written.layer.diff_id.clone(),
                        uncompressed_size: written.layer.uncompressed_size,
                        entries: written.layer.entries,
                        hardlink_copy_bytes: written.hardlink_copy_bytes,
                        whiteouts: written.whiteouts,
                        listing: read_back.as_ref().map(|(_, l)| l.entries.clone()),
                    },
                )?;
            }
            Ok(Produced {
                layer: OutLayer {
                    class,
                    origin: Origin::Written,
                    desc,
                    diff_id: written.layer.diff_id.clone(),
                    uncompressed_size: written.layer.uncompressed_size,
                    entries: written.layer.entries,
                    hardlink_copy_bytes: written.hardlink_copy_bytes,
                    whiteouts: written.whiteouts,
                    file: Some(written.layer.path),
                    key: key.clone(),
                },
                read_back,
                outcome,
            })
        }
        (OutputLayer::Source { layer, class }, _) => {
            let l = &a.layers[layer];
            let entries = l
                .entries
                .as_ref()
                .expect("pass-through layers keep entries");
            // Same bytes; only the manifest family's name for gzip may differ.
            let desc = Descriptor::new(
                MediaType::layer(w.docker, Compression::Gzip),
                l.descriptor.digest.clone(),
                l.descriptor.size,
            );
            let outcome = sink.copy_blob(&desc, source)?;
            // The entries were read from these very bytes (digest and diff_id checked).
            let read_back = w.verify.then(|| {
                (
                    format!("source layer {layer} (passed through)"),
                    LayerListing {
                        digest: l.descriptor.digest.clone(),
                        diff_id: l.diff_id.clone(),
                        compressed_size: l.compressed_size,
                        uncompressed_size: l.uncompressed_size,
                        compression: l.compression,
                        entries: entries.clone(),
                        spool: None,
                        programs: false,
                    },
                )
            });
            Ok(Produced {
                layer: OutLayer {
                    class,
                    origin: Origin::PassedThrough(layer),
                    desc,
                    diff_id: l.diff_id.clone(),
                    uncompressed_size: l.uncompressed_size,
                    entries: l.changes.entries,
                    hardlink_copy_bytes: 0,
                    whiteouts: 0,
                    file: None,
                    key: None,
                },
                read_back,
                outcome,
            })
        }
    })
    .into_iter()
    .collect()
}

/// An output layer an earlier run already built: make sure the destination
/// has the blob, and get its listing for verification (the memo's, or read
/// back from the reuse image's bytes).
fn reuse(class: Class, hit: &Hit, w: Settings, sink: &dyn Sink, memos: &Memos) -> Result<Produced> {
    let m = &hit.memo;
    let desc = Descriptor::new(
        MediaType::layer(w.docker, w.compression),
        m.digest.clone(),
        m.size,
    );
    let from = memos.reuse.as_ref().map(|(s, _)| *s);
    let outcome = match (hit.in_sink, from) {
        (true, _) => BlobOutcome::Existed,
        (false, Some(from)) => sink.copy_blob(&desc, from)?,
        (false, None) => unreachable!("lookup only keeps hits the destination can get"),
    };
    let what = format!("memoized {} layer", class.as_str());
    let mut memo = m.clone();
    let read_back = match (&m.listing, w.verify) {
        (_, false) => None,
        (Some(entries), true) => Some(LayerListing {
            digest: m.digest.clone(),
            diff_id: m.diff_id.clone(),
            compressed_size: m.size,
            uncompressed_size: m.uncompressed_size,
            compression: w.compression,
            entries: entries.clone(),
            spool: None,
            programs: false,
        }),
        (None, true) => {
            let from = from.expect("a memo without a listing comes from the reuse image");
            let opts = crate::layer::ReadOptions {
                hash_contents: true,
                ..Default::default()
            };
            let l = crate::layer::read_layer(from, &desc, &m.diff_id, &opts)?;
            memo.uncompressed_size = l.uncompressed_size;
            memo.entries = l.entries.len() as u64;
            memo.listing = Some(l.entries.clone());
            memos.cache.store(&hit.key, &memo)?;
            Some(l)
        }
    };
    Ok(Produced {
        layer: OutLayer {
            class,
            origin: Origin::Memoized,
            desc,
            diff_id: memo.diff_id.clone(),
            uncompressed_size: memo.uncompressed_size,
            entries: memo.entries,
            hardlink_copy_bytes: memo.hardlink_copy_bytes,
            whiteouts: memo.whiteouts,
            file: None,
            key: Some(hit.key.clone()),
        },
        read_back: read_back.map(|l| (what, l)),
        outcome,
    })
}
