//! The catalog of base images whose layers count as pre-cached: the official AWS
//! Lambda bases (shipped as data in `catalog/lambda-bases.json`, resolved at run
//! time) plus any `--base-image`. Resolved builds are cached on disk with the time
//! they were fetched, and the cache keeps superseded builds, so an image built on
//! an older build of a tag is still recognized (and reported as stale).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, ImageConfig, Index, MAX_CONFIG_BYTES, Manifest, Platform};
use crate::reference::ImageRef;
use crate::transport::{self, Source, TransportOptions, read_small_blob};
use crate::ui;

const CATALOG_DATA: &str = include_str!("../../catalog/lambda-bases.json");
const CACHE_SCHEMA: &str = "coldpress.bases/v1";
/// How long a fetched catalog is used before it is refreshed.
pub const REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct CatalogData {
    registry: String,
    images: Vec<CatalogImage>,
}

#[derive(Deserialize)]
struct CatalogImage {
    repository: String,
    tags: Vec<String>,
}

/// The references the shipped catalog lists, e.g. `public.ecr.aws/lambda/python:3.12`.
pub fn catalog_references() -> Vec<String> {
    let data: CatalogData =
        serde_json::from_str(CATALOG_DATA).expect("catalog/lambda-bases.json is valid");
    let registry = &data.registry;
    data.images
        .iter()
        .flat_map(|i| {
            i.tags
                .iter()
                .map(move |t| format!("{registry}/{}:{t}", i.repository))
        })
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BaseLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One build of a base image for one platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseBuild {
    /// The name users know, e.g. `public.ecr.aws/lambda/python:3.12`.
    pub image: String,
    /// Where the blobs can be read (a reference any transport understands).
    pub location: String,
    /// `catalog` (AWS Lambda base) or `user` (`--base-image`).
    pub origin: String,
    pub platform: Platform,
    pub manifest_digest: Digest,
    #[serde(default)]
    pub manifest_media_type: String,
    pub layers: Vec<BaseLayer>,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Whether the tag pointed at this build when last checked.
    pub current: bool,
}

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    schema: String,
    /// When the shipped catalog was last resolved online.
    #[serde(default)]
    catalog_fetched_at: Option<u64>,
    builds: Vec<BaseBuild>,
}

/// Where the catalog's knowledge came from this run.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogStatus {
    /// `online`, `cache`, or `none`.
    pub source: String,
    pub fetched_at: Option<u64>,
    pub age_seconds: Option<u64>,
    pub builds: usize,
    pub message: Option<String>,
}

pub struct Catalog {
    pub builds: Vec<BaseBuild>,
    pub status: CatalogStatus,
    /// Manifest digests of the builds named with `--base-image` in this run:
    /// they win over cached builds that share as many layers.
    pub explicit: Vec<Digest>,
}

#[derive(Clone, Debug, Default)]
pub struct CatalogOptions {
    pub offline: bool,
    pub refresh: bool,
    pub base_images: Vec<String>,
    pub cache_dir: Option<PathBuf>,
    pub transport: TransportOptions,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `$XDG_CACHE_HOME/coldpress` or `~/.cache/coldpress`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("coldpress"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("coldpress"))
}

fn read_cache(path: &std::path::Path) -> CacheFile {
    match std::fs::read(path) {
        Ok(raw) => match serde_json::from_slice::<CacheFile>(&raw) {
            Ok(c) if c.schema == CACHE_SCHEMA => c,
            _ => {
                ui::warn(&format!(
                    "ignoring unreadable base cache {}",
                    path.display()
                ));
                CacheFile::default()
            }
        },
        Err(_) => CacheFile::default(),
    }
}

/// Record fresh builds of `image`: they become current, others of the same image
/// and platform are superseded but kept.
fn record(cache: &mut CacheFile, fresh: Vec<BaseBuild>) {
    let t = now();
    for mut b in fresh {
        for old in cache.builds.iter_mut() {
            if old.image == b.image
                && same_platform(&old.platform, &b.platform)
                && old.manifest_digest != b.manifest_digest
            {
                old.current = false;
            }
        }
        if let Some(existing) = cache
            .builds
            .iter_mut()
            .find(|o| o.image == b.image && o.manifest_digest == b.manifest_digest)
        {
            existing.last_seen = t;
            existing.current = true;
            existing.location = b.location;
        } else {
            b.first_seen = t;
            b.last_seen = t;
            b.current = true;
            cache.builds.push(b);
        }
    }
}

fn same_platform(a: &Platform, b: &Platform) -> bool {
    a.os == b.os && a.architecture == b.architecture
}

/// Resolve every runnable platform of an image reference into builds.
pub fn resolve_builds(
    reference: &str,
    name: &str,
    origin: &str,
    opts: &TransportOptions,
) -> Result<Vec<BaseBuild>> {
    let r = ImageRef::parse(reference)?;
    let source = transport::open_source(&r, opts)?;
    let root = source.root()?;
    let mut out = Vec::new();
    let location_for = |d: &Digest| match &r {
        ImageRef::Registry(rr) => rr.with_digest(d).to_string(),
        other => other.to_string(),
    };
    if root.media_type.is_index() {
        let idx = Index::parse(&root.bytes, reference)?;
        for d in &idx.manifests {
            let Some(p) = &d.platform else { continue };
            if p.is_unknown() || d.annotation("vnd.docker.reference.type").is_some() {
                continue;
            }
            let m = source.manifest(d)?;
            out.push(build_from(
                source.as_ref(),
                name,
                origin,
                &location_for(&m.digest),
                &m.bytes,
                &m.digest,
                m.media_type.as_str(),
            )?);
        }
    } else {
        out.push(build_from(
            source.as_ref(),
            name,
            origin,
            &location_for(&root.digest),
            &root.bytes,
            &root.digest,
            root.media_type.as_str(),
        )?);
    }
    Ok(out)
}

fn build_from(
    source: &dyn Source,
    name: &str,
    origin: &str,
    location: &str,
    manifest: &[u8],
    digest: &Digest,
    media_type: &str,
) -> Result<BaseBuild> {
    let what = format!("{name}@{digest}");
    let m = Manifest::parse(manifest, &what)?;
    let cfg_bytes = read_small_blob(source, &m.config, MAX_CONFIG_BYTES)?;
    let cfg = ImageConfig::parse(&cfg_bytes, &what)?;
    if cfg.rootfs.diff_ids.len() != m.layers.len() {
        return Err(Error::invalid(&what, "diff_ids and layers disagree"));
    }
    Ok(BaseBuild {
        image: name.to_string(),
        location: location.to_string(),
        origin: origin.to_string(),
        platform: cfg.platform(),
        manifest_digest: digest.clone(),
        manifest_media_type: media_type.to_string(),
        layers: m
            .layers
            .iter()
            .zip(&cfg.rootfs.diff_ids)
            .map(|(l, d): (&Descriptor, &Digest)| BaseLayer {
                digest: l.digest.clone(),
                diff_id: d.clone(),
                size: l.size,
                media_type: l.media_type.to_string(),
            })
            .collect(),
        first_seen: 0,
        last_seen: 0,
        current: true,
    })
}

impl Catalog {
    /// Load the catalog: disk cache, an online refresh when due (unless offline),
    /// and the `--base-image` references (always resolved, they are explicit).
    pub fn load(opts: &CatalogOptions) -> Result<Catalog> {
        let cache_path = opts
            .cache_dir
            .clone()
            .or_else(default_cache_dir)
            .map(|d| d.join("bases.json"));
        let mut cache = cache_path.as_deref().map(read_cache).unwrap_or_default();
        cache.schema = CACHE_SCHEMA.into();
        let t = now();
        let mut message = None;
        let mut fetched_online = false;

        let due = opts.refresh
            || cache
                .catalog_fetched_at
                .is_none_or(|f| t.saturating_sub(f) > REFRESH_AFTER.as_secs());
        if !opts.offline && due {
            match fetch_catalog(&opts.transport) {
                Ok(fresh) => {
                    for (_, builds) in fresh {
                        record(&mut cache, builds);
                    }
                    cache.catalog_fetched_at = Some(t);
                    fetched_online = true;
                }
                Err(e) => {
                    message = Some(format!(
                        "could not refresh the AWS Lambda base catalog ({})",
                        crate::error::Chain(&e)
                    ));
                }
            }
        }

        let mut explicit = Vec::new();
        for reference in &opts.base_images {
            let builds = resolve_builds(reference, reference, "user", &opts.transport)?;
            explicit.extend(builds.iter().map(|b| b.manifest_digest.clone()));
            record(&mut cache, builds);
        }

        if let Some(p) = &cache_path
            && (fetched_online || !opts.base_images.is_empty())
        {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let bytes = serde_json::to_vec_pretty(&cache).expect("cache serializes");
            if let Err(e) = crate::fsutil::write_atomic(p, &bytes) {
                ui::warn(&format!(
                    "could not write the base cache: {}",
                    crate::error::Chain(&e)
                ));
            }
        }

        let catalog_builds = cache
            .builds
            .iter()
            .filter(|b| b.origin == "catalog")
            .count();
        let status = if fetched_online {
            CatalogStatus {
                source: "online".into(),
                fetched_at: Some(t),
                age_seconds: Some(0),
                builds: cache.builds.len(),
                message,
            }
        } else if let Some(f) = cache.catalog_fetched_at.filter(|_| catalog_builds > 0) {
            let age = t.saturating_sub(f);
            let note = format!(
                "using the cached AWS Lambda base catalog from {} ago",
                human_age(age)
            );
            CatalogStatus {
                source: "cache".into(),
                fetched_at: Some(f),
                age_seconds: Some(age),
                builds: cache.builds.len(),
                message: Some(match message {
                    Some(m) => format!("{m}; {note}"),
                    None => note,
                }),
            }
        } else {
            let why = if opts.offline {
                "offline and no cached AWS Lambda base catalog"
            } else {
                "no AWS Lambda base catalog available"
            };
            let m = match (message, opts.base_images.is_empty()) {
                (Some(m), true) => format!("{m}; {why}: no base could be checked"),
                (Some(m), false) => format!("{m}; {why}: only --base-image images are checked"),
                (None, true) => format!("{why}: no base could be checked"),
                (None, false) => format!("{why}: only --base-image images are checked"),
            };
            CatalogStatus {
                source: "none".into(),
                fetched_at: None,
                age_seconds: None,
                builds: cache.builds.len(),
                message: Some(m),
            }
        };
        Ok(Catalog {
            builds: cache.builds,
            status,
            explicit,
        })
    }

    pub fn empty() -> Catalog {
        Catalog {
            explicit: Vec::new(),
            builds: Vec::new(),
            status: CatalogStatus {
                source: "none".into(),
                fetched_at: None,
                age_seconds: None,
                builds: 0,
                message: None,
            },
        }
    }

    /// The longest run of leading diff_ids shared with a known build of the same
    /// platform. Ties go to a build named on the command line (a cached build of
    /// another image with the same layers must not take its credit), then to a
    /// complete match, then to a current build, then to the
    /// shortest build (the most specific base), then to the smallest image name and
    /// manifest digest, so the answer never depends on catalog order.
    pub fn match_base(&self, diff_ids: &[Digest], platform: &Platform) -> Option<BaseMatch> {
        use std::cmp::Reverse;
        let mut best = None;
        for b in &self.builds {
            if !same_platform(&b.platform, platform) {
                continue;
            }
            let n = b
                .layers
                .iter()
                .zip(diff_ids)
                .take_while(|(l, d)| &l.diff_id == *d)
                .count();
            if n == 0 {
                continue;
            }
            let full = n == b.layers.len();
            let key = (
                n,
                self.explicit.contains(&b.manifest_digest),
                full,
                b.current,
                Reverse(b.layers.len()),
                Reverse(b.image.as_str()),
                Reverse(b.manifest_digest.to_string()),
            );
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, b));
            }
        }
        let ((n, _, full, ..), b) = best?;
        let newer = self
            .builds
            .iter()
            .find(|o| {
                o.current
                    && o.image == b.image
                    && same_platform(&o.platform, &b.platform)
                    && o.manifest_digest != b.manifest_digest
            })
            .map(|o| o.manifest_digest.clone());
        Some(BaseMatch {
            image: b.image.clone(),
            origin: b.origin.clone(),
            digest: b.manifest_digest.clone(),
            location: b.location.clone(),
            layers: n,
            build_layers: b.layers.len(),
            full,
            current: b.current,
            stale: !b.current || !full,
            newer,
            base_layers: b.layers[..n].to_vec(),
        })
    }
}

/// Which known base an image starts with, and how much of it.
#[derive(Clone, Debug)]
pub struct BaseMatch {
    pub image: String,
    pub origin: String,
    pub digest: Digest,
    pub location: String,
    /// Leading layers of the image that are this base's layers.
    pub layers: usize,
    pub build_layers: usize,
    /// All of the build's layers matched (not just a shared prefix).
    pub full: bool,
    pub current: bool,
    /// An older build of its tag, or only partly shared with the current build.
    pub stale: bool,
    /// The tag's current build, when this is not it.
    pub newer: Option<Digest>,
    pub base_layers: Vec<BaseLayer>,
}

fn fetch_catalog(opts: &TransportOptions) -> Result<Vec<(String, Vec<BaseBuild>)>> {
    let refs = catalog_references();
    let mut t = opts.clone();
    // The catalog is a convenience: fail fast when the network is not there.
    t.registry.retry.attempts = 2;
    t.registry.retry.deadline = Duration::from_secs(30);
    // A runner with no route to public.ecr.aws learns that within seconds.
    t.registry.connect_timeout = Duration::from_secs(3);
    // One tag first: when nothing is reachable, say so at once.
    let first = resolve_builds(&refs[0], &refs[0], "catalog", &t)?;
    let rest = crate::parallel::map(&refs[1..], 6, |r| {
        match resolve_builds(r, r, "catalog", &t) {
            Ok(b) => Some((r.clone(), b)),
            // A tag AWS retired is not an error of ours.
            Err(e) => {
                ui::trace(|| format!("base catalog: skipping {r}: {}", crate::error::Chain(&e)));
                None
            }
        }
    });
    let mut out = vec![(refs[0].clone(), first)];
    out.extend(rest.into_iter().flatten());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn build(image: &str, diffs: &[u8], current: bool) -> BaseBuild {
        BaseBuild {
            image: image.into(),
            location: image.into(),
            origin: "catalog".into(),
            platform: Platform::new("linux", "amd64", None),
            manifest_digest: Digest::of(format!("{image}{diffs:?}").as_bytes()),
            manifest_media_type: String::new(),
            layers: diffs
                .iter()
                .map(|&n| BaseLayer {
                    digest: d(n + 100),
                    diff_id: d(n),
                    size: 10,
                    media_type: String::new(),
                })
                .collect(),
            first_seen: 0,
            last_seen: 0,
            current,
        }
    }

    #[test]
    fn longest_prefix_wins_and_staleness_is_reported() {
        let cat = Catalog {
            explicit: Vec::new(),
            builds: vec![
                build("provided:al2023", &[1, 2], true),
                build("python:3.12", &[1, 3, 4], true),
                build("python:3.12", &[1, 3, 5], false),
            ],
            status: Catalog::empty().status,
        };
        let amd64 = Platform::new("linux", "amd64", None);
        let m = cat.match_base(&[d(1), d(3), d(4), d(9)], &amd64).unwrap();
        assert_eq!(
            (m.image.as_str(), m.layers, m.full, m.stale),
            ("python:3.12", 3, true, false)
        );

        let m = cat.match_base(&[d(1), d(3), d(5), d(9)], &amd64).unwrap();
        assert!(
            m.stale && m.full && m.newer.is_some(),
            "older build of the tag"
        );

        // Only the shared OS layer: partial, so stale, and the shortest base wins the tie.
        let m = cat.match_base(&[d(1), d(7)], &amd64).unwrap();
        assert_eq!(
            (m.image.as_str(), m.layers, m.full, m.stale),
            ("provided:al2023", 1, false, true)
        );

        assert!(cat.match_base(&[d(9)], &amd64).is_none());
        assert!(
            cat.match_base(&[d(1)], &Platform::new("linux", "arm64", None))
                .is_none()
        );
    }

    #[test]
    fn equal_matches_resolve_the_same_in_any_catalog_order() {
        let amd64 = Platform::new("linux", "amd64", None);
        let builds = vec![
            build("python:3.13", &[1, 2], true),
            build("nodejs:22", &[1, 2], true),
            build("java:21", &[1, 2], true),
        ];
        let mut picked = Vec::new();
        for rotation in 0..builds.len() {
            let mut b = builds.clone();
            b.rotate_left(rotation);
            let cat = Catalog {
                explicit: Vec::new(),
                builds: b,
                status: Catalog::empty().status,
            };
            picked.push(cat.match_base(&[d(1), d(2)], &amd64).unwrap().image);
        }
        assert_eq!(picked, vec!["java:21"; 3]);
    }

    /// Two images with the same base layers, built on differently named bases:
    /// after a run with A's base, a run naming B's base credits B's, not the
    /// cached A's (which sorts first by name).
    #[test]
    fn the_base_named_on_the_command_line_wins_at_equal_length() {
        let amd64 = Platform::new("linux", "amd64", None);
        let a = build("registry/a:base", &[1, 2], true);
        let b = build("registry/b:base", &[1, 2], true);
        let mut cat = Catalog {
            explicit: Vec::new(),
            builds: vec![a.clone(), b.clone()],
            status: Catalog::empty().status,
        };
        let m = cat.match_base(&[d(1), d(2), d(3)], &amd64).unwrap();
        assert_eq!(
            m.image, "registry/a:base",
            "without a choice, the name order decides"
        );
        cat.explicit = vec![b.manifest_digest.clone()];
        let m = cat.match_base(&[d(1), d(2), d(3)], &amd64).unwrap();
        assert_eq!(
            (m.image.as_str(), &m.digest),
            ("registry/b:base", &b.manifest_digest)
        );
        // A longer match still beats the named one: the credit follows the layers.
        cat.builds.push(build("registry/c:base", &[1, 2, 3], true));
        let m = cat.match_base(&[d(1), d(2), d(3)], &amd64).unwrap();
        assert_eq!(m.image, "registry/c:base");
    }

    #[test]
    fn shipped_catalog_parses() {
        let refs = catalog_references();
        assert!(refs.contains(&"public.ecr.aws/lambda/python:3.12".to_string()));
        assert!(refs.iter().all(|r| ImageRef::parse(r).is_ok()));
    }
}
