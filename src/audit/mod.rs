//! `coldpress audit`: analyze every image of a registry, each shared layer read
//! once, results written per image as they finish (so a rerun resumes), and
//! summarized as JSON, Markdown and a self-contained HTML page.

pub mod html;
pub mod summary;

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use globset::{GlobBuilder, GlobSetBuilder};
use serde_json::{Map, Value, json};

use crate::analysis::{self, AnalyzeOptions};
use crate::catalog::Catalog;
use crate::error::{Error, IoContext, RegistryErrorKind, Result};
use crate::image::Platform;
use crate::layer::cache::LayerCache;
use crate::reference::RegistryRef;
use crate::report::Report;
use crate::transport::TransportOptions;
use crate::transport::registry::{RegistrySource, client_for};
use crate::transport::resolve::{ResolvedImage, resolve};
use crate::ui;

pub const ROWS: &str = "audit.jsonl";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagSelection {
    /// The N newest tags by the config's `created`.
    Newest(usize),
    All,
}

impl std::str::FromStr for TagSelection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "all" {
            return Ok(TagSelection::All);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(TagSelection::Newest(n)),
            _ => Err(format!("'{s}' is not a number of tags or 'all'")),
        }
    }
}

/// `i/n`: this worker's share of the repositories (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a shard (expected i/n with 1 <= i <= n, e.g. 3/16)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) =
            (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a: stable across platforms and versions, unlike std's hasher.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Shard {
    pub fn owns(&self, repository: &str) -> bool {
        stable_hash(repository) % self.count == self.index - 1
    }
}

pub struct AuditOptions {
    pub registry: String,
    pub repos: Vec<String>,
    pub repos_from: Option<PathBuf>,
    pub tags: TagSelection,
    pub concurrency: usize,
    pub shard: Option<Shard>,
    pub output: PathBuf,
    pub platform: Option<Platform>,
    pub analyze: AnalyzeOptions,
    pub transport: TransportOptions,
    pub layer_cache_dir: Option<PathBuf>,
}

/// What happened in one run.
#[derive(Debug, Default)]
pub struct RunStats {
    pub repositories: usize,
    pub images: usize,
    pub analyzed: usize,
    pub skipped: usize,
    pub errors: usize,
    pub layers_read: u64,
    pub layers_cached: u64,
}

struct Job {
    repository: String,
    tag: String,
    resolved: Option<ResolvedImage>,
}

/// Rows already written (for resuming): `(repository, tag, digest)` of successful ones.
pub fn done_rows(path: &Path) -> HashSet<(String, String, String)> {
    let Ok(f) = File::open(path) else {
        return HashSet::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|v| v["status"] == "ok")
        .map(|v| {
            (
                v["repository"].as_str().unwrap_or("").to_string(),
                v["tag"].as_str().unwrap_or("").to_string(),
                v["source"]["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn row(repository: &str, tag: &str, report: Option<&Report>, error: Option<&Error>) -> Value {
    let mut m = Map::new();
    m.insert("repository".into(), json!(repository));
    m.insert("tag".into(), json!(tag));
    m.insert(
        "status".into(),
        json!(if error.is_some() { "error" } else { "ok" }),
    );
    if let Some(e) = error {
        m.insert("error".into(), json!(crate::error::Chain(e).to_string()));
    }
    if let Some(r) = report
        && let Value::Object(fields) = serde_json::to_value(r).expect("reports serialize")
    {
        m.extend(fields);
    }
    Value::Object(m)
}

/// Appends rows as images finish; each line is written whole and flushed.
struct RowWriter {
    file: Mutex<File>,
}

impl RowWriter {
    fn write(&self, v: &Value) -> Result<()> {
        let mut line = serde_json::to_string(v).expect("rows serialize");
        line.push('\n');
        let mut f = self.file.lock().expect("not poisoned");
        f.write_all(line.as_bytes()).ctx("writing audit.jsonl")?;
        f.flush().ctx("writing audit.jsonl")
    }
}

/// A run killed while writing a row leaves a line without its newline; new rows
/// appended after it would be glued to it and lost. Cut it off first.
fn drop_partial_line(path: &Path) -> Result<()> {
    let Ok(data) = std::fs::read(path) else {
        return Ok(());
    };
    if data.is_empty() || data.ends_with(b"\n") {
        return Ok(());
    }
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_ctx(|| format!("opening {}", path.display()))?;
    f.set_len(keep as u64)
        .with_ctx(|| format!("truncating the unfinished last line of {}", path.display()))?;
    ui::note(&format!(
        "{}: dropped an unfinished last line (an interrupted run)",
        path.display()
    ));
    Ok(())
}

fn list_repositories(opts: &AuditOptions, registry: &RegistryRef) -> Result<Vec<String>> {
    let mut repos = match &opts.repos_from {
        Some(file) => std::fs::read_to_string(file)
            .with_ctx(|| format!("reading {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        None => {
            let client = client_for(registry, &opts.transport.registry)?;
            client.catalog().map_err(|e| match e {
                Error::Registry { kind: RegistryErrorKind::Auth | RegistryErrorKind::Protocol, .. } => e.with_hint(
                    "the registry does not let us list repositories: name them in a file, one per line, and pass --repos-from FILE",
                ),
                Error::NotFound { .. } => e.with_hint(
                    "this registry has no /v2/_catalog; list repositories in a file and pass --repos-from FILE",
                ),
                e => e,
            })?
        }
    };
    if !opts.repos.is_empty() {
        let mut b = GlobSetBuilder::new();
        for g in &opts.repos {
            b.add(
                GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Usage(format!("invalid --repo glob '{g}': {e}")))?,
            );
        }
        let set = b
            .build()
            .map_err(|e| Error::Usage(format!("invalid --repo glob: {e}")))?;
        repos.retain(|r| set.is_match(r));
    }
    if let Some(s) = &opts.shard {
        repos.retain(|r| s.owns(r));
    }
    repos.sort();
    repos.dedup();
    Ok(repos)
}

pub fn run(opts: &AuditOptions, catalog: &Catalog) -> Result<RunStats> {
    std::fs::create_dir_all(&opts.output)
        .with_ctx(|| format!("creating {}", opts.output.display()))?;
    let registry = RegistryRef::parse(&format!("{}/coldpress-audit", opts.registry))
        .map_err(|e| Error::Usage(format!("'{}' is not a registry host: {e}", opts.registry)))?;
    let repos = list_repositories(opts, &registry)?;
    let rows_path = opts.output.join(ROWS);
    let done = done_rows(&rows_path);
    drop_partial_line(&rows_path)?;
    let writer = RowWriter {
        file: Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rows_path)
                .with_ctx(|| format!("opening {}", rows_path.display()))?,
        ),
    };
    let cache = Arc::new(LayerCache::new(opts.layer_cache_dir.clone())?);
    let mut analyze_opts = opts.analyze.clone();
    analyze_opts.layer_cache = Some(cache.clone());
    // Layers are already read concurrently across images.
    analyze_opts.jobs = 1;
    let stats = Mutex::new(RunStats {
        repositories: repos.len(),
        ..RunStats::default()
    });
    let fail = |repository: &str, tag: &str, e: &Error| -> Result<()> {
        ui::warn(&format!("{repository}:{tag}: {}", crate::error::Chain(e)));
        stats.lock().expect("not poisoned").errors += 1;
        writer.write(&row(repository, tag, None, Some(e)))
    };
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let keep = |r: Result<()>| {
        if let Err(e) = r {
            first_error.lock().expect("not poisoned").get_or_insert(e);
        }
    };

    // Tags per repository, newest first when only some are wanted.
    let jobs: Mutex<Vec<Job>> = Mutex::new(Vec::new());
    crate::parallel::map(&repos, opts.concurrency, |repo| {
        let r = registry.with_repository(repo, None);
        let tags = match client_for(&r, &opts.transport.registry).and_then(|c| c.list_tags(repo)) {
            Ok(t) => t,
            Err(e) => return keep(fail(repo, "*", &e)),
        };
        // Indexes of referrers (coldpress's listings, signatures) are not images.
        let (referrers, tags): (Vec<String>, Vec<String>) = tags
            .into_iter()
            .partition(|t| crate::layer::attached::is_referrers_tag(t));
        if !referrers.is_empty() {
            ui::trace(|| format!("{repo}: {} referrers tags passed over", referrers.len()));
        }
        match opts.tags {
            TagSelection::All => jobs
                .lock()
                .expect("not poisoned")
                .extend(tags.into_iter().map(|tag| Job {
                    repository: repo.clone(),
                    tag,
                    resolved: None,
                })),
            TagSelection::Newest(n) => {
                let mut dated = Vec::new();
                for tag in tags {
                    match open(&r, &tag, opts).and_then(|src| resolve(&src, opts.platform.as_ref()))
                    {
                        Ok(img) => {
                            dated.push((img.config.created.clone().unwrap_or_default(), tag, img))
                        }
                        Err(e) => keep(fail(repo, &tag, &e)),
                    }
                }
                // RFC 3339 times sort as strings when they share a format; ties by tag.
                dated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                jobs.lock()
                    .expect("not poisoned")
                    .extend(dated.into_iter().take(n).map(|(_, tag, img)| Job {
                        repository: repo.clone(),
                        tag,
                        resolved: Some(img),
                    }));
            }
        }
    });
    let mut jobs = jobs.into_inner().expect("not poisoned");
    jobs.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    stats.lock().expect("not poisoned").images = jobs.len();
    let jobs: Vec<Mutex<Option<Job>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();

    crate::parallel::map(&jobs, opts.concurrency, |slot| {
        let job = slot
            .lock()
            .expect("not poisoned")
            .take()
            .expect("each job once");
        let r = registry.with_repository(&job.repository, Some(&job.tag));
        let result = (|| -> Result<Option<Report>> {
            let source = open(&r, &job.tag, opts)?;
            let image = match job.resolved {
                Some(img) => img,
                None => resolve(&source, opts.platform.as_ref())?,
            };
            if done.contains(&(
                job.repository.clone(),
                job.tag.clone(),
                image.manifest.digest.to_string(),
            )) {
                return Ok(None);
            }
            let a = analysis::analyze(&source, image, catalog, &analyze_opts)?;
            Ok(Some(Report::from_analysis(&a, false)))
        })();
        match result {
            Ok(None) => stats.lock().expect("not poisoned").skipped += 1,
            Ok(Some(report)) => {
                ui::trace(|| format!("audited {}:{}", job.repository, job.tag));
                stats.lock().expect("not poisoned").analyzed += 1;
                keep(writer.write(&row(&job.repository, &job.tag, Some(&report), None)));
            }
            Err(e) => keep(fail(&job.repository, &job.tag, &e)),
        }
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut stats = stats.into_inner().expect("not poisoned");
    stats.layers_read = cache.reads.load(Ordering::Relaxed);
    stats.layers_cached = cache.hits.load(Ordering::Relaxed);
    let shard = opts.shard.map(|s| s.to_string());
    write_outputs(
        &opts.output,
        &opts.registry,
        shard.as_deref(),
        &read_rows(&rows_path)?,
    )?;
    Ok(stats)
}

fn open(r: &RegistryRef, tag: &str, opts: &AuditOptions) -> Result<RegistrySource> {
    RegistrySource::new(
        r.with_repository(&r.repository, Some(tag)),
        &opts.transport.registry,
    )
}

/// All rows of an audit.jsonl; a later row for the same image replaces an earlier one
/// (a resumed run retries failures).
pub fn read_rows(path: &Path) -> Result<Vec<Value>> {
    let f = File::open(path).with_ctx(|| format!("reading {}", path.display()))?;
    let mut by_key: BTreeMap<(String, String), Value> = BTreeMap::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_ctx(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        // A run killed mid-write leaves at most a partial last line: skip it.
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            ui::warn(&format!(
                "{}:{}: skipping a line that is not JSON",
                path.display(),
                n + 1
            ));
            continue;
        };
        let key = (
            v["repository"].as_str().unwrap_or("").to_string(),
            v["tag"].as_str().unwrap_or("").to_string(),
        );
        let replace = match by_key.get(&key) {
            Some(old) => !(old["status"] == "ok" && v["status"] != "ok"),
            None => true,
        };
        if replace {
            by_key.insert(key, v);
        }
    }
    Ok(by_key.into_values().collect())
}

/// Join shard outputs into one report.
pub fn merge(inputs: &[PathBuf], output: &Path) -> Result<usize> {
    let mut by_key: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut registry = String::new();
    for dir in inputs {
        for v in read_rows(&dir.join(ROWS))? {
            let key = (
                v["repository"].as_str().unwrap_or("").to_string(),
                v["tag"].as_str().unwrap_or("").to_string(),
            );
            if by_key.get(&key).is_none_or(|old| old["status"] != "ok") {
                by_key.insert(key, v);
            }
        }
        if registry.is_empty()
            && let Ok(s) = std::fs::read(dir.join("summary.json"))
            && let Ok(v) = serde_json::from_slice::<Value>(&s)
        {
            registry = v["registry"].as_str().unwrap_or("").to_string();
        }
    }
    std::fs::create_dir_all(output).with_ctx(|| format!("creating {}", output.display()))?;
    let rows: Vec<Value> = by_key.into_values().collect();
    let mut text = String::new();
    for r in &rows {
        text.push_str(&serde_json::to_string(r).expect("rows serialize"));
        text.push('\n');
    }
    crate::fsutil::write_atomic(&output.join(ROWS), text.as_bytes())?;
    write_outputs(output, &registry, None, &rows)?;
    Ok(rows.len())
}

/// `summary.json`, `summary.md` and `index.html` from the rows of an audit.
pub fn write_outputs(
    dir: &Path,
    registry: &str,
    shard: Option<&str>,
    rows: &[Value],
) -> Result<summary::Summary> {
    let s = summary::summarize(registry, shard, rows);
    crate::fsutil::write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&s)
            .expect("summaries serialize")
            .as_bytes(),
    )?;
    crate::fsutil::write_atomic(&dir.join("summary.md"), summary::markdown(&s).as_bytes())?;
    crate::fsutil::write_atomic(&dir.join("index.html"), html::page(&s, rows).as_bytes())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_last_row_is_dropped() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "{\"a\":1}\n{\"b\":").unwrap();
        drop_partial_line(f.path()).unwrap();
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), "{\"a\":1}\n");
        drop_partial_line(f.path()).unwrap();
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), "{\"a\":1}\n");
    }

    #[test]
    fn shards_partition() {
        let repos: Vec<String> = (0..500).map(|i| format!("team-{}/fn-{i}", i % 7)).collect();
        let n = 16;
        let mut seen = HashSet::new();
        for i in 1..=n {
            let s = Shard { index: i, count: n };
            for r in repos.iter().filter(|r| s.owns(r)) {
                assert!(seen.insert(r.clone()), "{r} in two shards");
            }
        }
        assert_eq!(seen.len(), repos.len());
        // Pinned to FNV-1a's published test vectors: a shard assignment must not
        // change between coldpress versions, or a resumed sharded audit splits anew.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("foobar"), 0x8594_4171_f739_67e8);
        assert!(
            "0/3".parse::<Shard>().is_err()
                && "4/3".parse::<Shard>().is_err()
                && "2/3".parse::<Shard>().is_ok()
        );
    }
}
