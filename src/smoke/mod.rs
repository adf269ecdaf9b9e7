//! The smoke run: prove the function still answers. Each image (the source,
//! then the slimmed output) is materialised in the work directory, started in a
//! Lambda-like sandbox, and sent every event over a Runtime API that coldpress
//! serves; the answers are compared (docs/smoke.md).
//!
//! materialise (layers → directory) → sandbox (namespaces, mounts, the runtime)
//! → runtime_api (events in, answers out) → compare (bytes or JSON minus ignored paths).

pub mod compare;
pub mod gate;
pub mod materialise;
pub mod runtime_api;
pub mod sandbox;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::image::ImageConfig;
use materialise::LayerStream;
use runtime_api::{ApiEvent, Invocation, RuntimeApi};

pub use compare::{JsonPath, compare_runs};

/// One event file.
#[derive(Clone, Debug)]
pub struct Event {
    /// The file's name, as reports show it.
    pub name: String,
    pub body: Vec<u8>,
}

/// Read event files; each must be JSON, as Lambda's are.
pub fn load_events(paths: &[PathBuf]) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for p in paths {
        let body =
            std::fs::read(p).with_ctx(|| format!("reading the event file {}", p.display()))?;
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
            Error::invalid(
                format!("the event file {}", p.display()),
                format!("not JSON: {e}"),
            )
        })?;
        out.push(Event {
            name: p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            body,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug)]
pub struct SmokeOptions {
    pub events: Vec<Event>,
    /// Init, and then each invocation, must finish within this.
    pub timeout: Duration,
    pub ignore: Vec<JsonPath>,
}

/// An image to run: its config and its layers, bottom first.
pub struct ImageUnderTest<'a> {
    /// `source`, `output` or `image`.
    pub role: &'static str,
    pub reference: String,
    pub config: ImageConfig,
    pub layers: Vec<LayerStream<'a>>,
}

/// What one invocation produced.
#[derive(Serialize, Clone, Debug)]
pub struct InvocationResult {
    pub event: String,
    pub request_id: String,
    /// `response`, `error` (the function reported one), `timeout`, `crashed`, `too large` or `not run`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_ms: Option<f64>,
    /// The response or error document (lossy UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip)]
    pub raw: Option<Vec<u8>>,
}

/// One image's run.
#[derive(Serialize, Clone, Debug)]
pub struct ImageRun {
    pub role: String,
    pub image: String,
    pub isolation: String,
    pub materialise_ms: f64,
    pub files: u64,
    pub bytes: u64,
    /// From starting the helper to the Runtime API socket arriving.
    pub sandbox_ms: f64,
    /// From then to the runtime's first `next` (Lambda's Init Duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_ms: Option<f64>,
    pub invocations: Vec<InvocationResult>,
    /// Why the run did not answer every event, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The init error document, when the runtime posted one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_error: Option<String>,
    /// The first missing module or file the runtime reported (Python, Node.js, the loader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// The last lines the function wrote on stdout and stderr.
    pub stderr_tail: String,
    pub total_ms: f64,
}

impl ImageRun {
    pub fn answered_all(&self) -> bool {
        self.failure.is_none() && self.invocations.iter().all(|i| i.outcome == "response")
    }
}

/// The report's `smoke` section.
#[derive(Serialize, Clone, Debug)]
pub struct SmokeSection {
    pub passed: bool,
    /// `equal`, `differs`, `output failed`, `source failed`, `answered` or `failed`.
    pub verdict: String,
    pub message: String,
    pub timeout_secs: u64,
    pub ignore: Vec<String>,
    pub events: Vec<String>,
    pub runs: Vec<ImageRun>,
    pub differences: Vec<compare::Difference>,
    /// Wall time of the whole smoke run (materialising, sandboxes, events).
    pub total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Request ids are the same for both images, so answers that echo the
/// request id still compare equal.
fn request_id(i: usize) -> String {
    format!("c01d9e55-0000-4000-8000-{:012x}", i + 1)
}

/// The command Lambda starts: ENTRYPOINT + CMD, in WORKDIR, with the config's
/// environment and Lambda's own (which wins).
pub fn launch_spec(config: &ImageConfig, rootfs: &Path) -> sandbox::Spec {
    let rc = config.config.clone().unwrap_or_default();
    let mut argv = rc.entrypoint.clone();
    argv.extend(rc.cmd.iter().cloned());
    let handler = rc.cmd.first().cloned().unwrap_or_default();
    let mut env: Vec<String> = Vec::new();
    let lambda: Vec<(String, String)> = [
        ("_HANDLER", handler.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "coldpress-smoke"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/coldpress-smoke"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]c01d9e55"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_Image"),
        // Dummy credentials: an SDK client can be built, any call fails.
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "coldpress-smoke-dummy-token"),
        ("TZ", ":UTC"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut has = std::collections::HashSet::new();
    for kv in &rc.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        if lambda.iter().any(|(k, _)| k == key) {
            continue;
        }
        has.insert(key.to_string());
        env.push(kv.clone());
    }
    for (k, v) in &lambda {
        env.push(format!("{k}={v}"));
    }
    for (k, v) in [
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("LANG", "en_US.UTF-8"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
    ] {
        if !has.contains(k) {
            env.push(format!("{k}={v}"));
        }
    }
    sandbox::Spec {
        rootfs: rootfs.to_path_buf(),
        argv,
        env,
        cwd: rc
            .working_dir
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        socket_fd: -1,
    }
}

/// The last `lines` lines (at most 8 KiB) of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(8192);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Materialise `image` in `dir`, start it, deliver every event, and record what happened.
pub fn run_image(
    image: ImageUnderTest,
    dir: &Path,
    opts: &SmokeOptions,
    cleaner: &Cleaner,
) -> Result<ImageRun> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).with_ctx(|| format!("creating {}", rootfs.display()))?;
    let _cleanup = RemoveTree(rootfs.clone(), cleaner);
    let stats = materialise::materialise(&rootfs, image.layers)?;
    let materialise_ms = ms(started.elapsed());
    crate::ui::trace(|| {
        format!(
            "smoke: {} materialised ({} files, {} bytes) in {materialise_ms} ms",
            image.role, stats.files, stats.bytes
        )
    });
    let log_path = dir.join("output.log");
    let log = File::create(&log_path).with_ctx(|| format!("creating {}", log_path.display()))?;
    let spec = launch_spec(&image.config, &rootfs);
    let mut run = ImageRun {
        role: image.role.to_string(),
        image: image.reference.clone(),
        isolation: String::new(),
        materialise_ms,
        files: stats.files,
        bytes: stats.bytes,
        sandbox_ms: 0.0,
        init_ms: None,
        invocations: opts
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| InvocationResult {
                event: e.name.clone(),
                request_id: request_id(i),
                outcome: "not run".into(),
                invoke_ms: None,
                body: None,
                error_type: None,
                raw: None,
            })
            .collect(),
        failure: None,
        init_error: None,
        missing: None,
        stderr_tail: String::new(),
        total_ms: 0.0,
    };
    let spawned = Instant::now();
    let mut sb = sandbox::start(&spec, &dir.join("sandbox.json"), &log, opts.timeout)
        .map_err(|e| Error::Smoke(format!("{}: {e}: {}", image.role, tail(&log_path, 5))))?;
    run.sandbox_ms = ms(spawned.elapsed());
    run.isolation = sb.isolation.describe(sb.proc_mounted);
    let api = RuntimeApi::serve(
        sb.listener
            .take()
            .expect("the sandbox hands over its listener"),
        "arn:aws:lambda:us-east-1:000000000000:function:coldpress-smoke".into(),
    )?;
    drive(&mut run, &mut sb, &api, opts);
    crate::ui::trace(|| format!("smoke: {} ran in {} ms", image.role, ms(spawned.elapsed())));
    sb.stop();
    drop(api);
    run.stderr_tail = tail(&log_path, 20);
    let mut texts: Vec<&str> = Vec::new();
    if let Some(e) = &run.init_error {
        texts.push(e);
    }
    for i in &run.invocations {
        if i.outcome != "response"
            && let Some(b) = &i.body
        {
            texts.push(b);
        }
    }
    texts.push(&run.stderr_tail);
    run.missing = texts.iter().find_map(|t| compare::first_missing(t));
    run.total_ms = ms(started.elapsed());
    Ok(run)
}

/// Removes materialised trees on background threads, so deleting the source's
/// (tens of seconds for a 1 GB tree on a busy disk) overlaps the output's run;
/// dropping it waits until every tree is gone.
#[derive(Default)]
pub struct Cleaner {
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Cleaner {
    fn remove(&self, tree: PathBuf) {
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            materialise::make_removable(&tree);
            let _ = std::fs::remove_dir_all(&tree);
            crate::ui::trace(|| {
                format!(
                    "smoke: removed {} in {} ms",
                    tree.display(),
                    ms(started.elapsed())
                )
            });
        });
        if let Ok(mut v) = self.threads.lock() {
            v.push(t);
        }
    }
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        if let Ok(v) = self.threads.get_mut() {
            for t in v.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Hands a tree to the cleaner when the run ends, even on error.
struct RemoveTree<'c>(PathBuf, &'c Cleaner);

impl Drop for RemoveTree<'_> {
    fn drop(&mut self) {
        self.1.remove(std::mem::take(&mut self.0));
    }
}

#[derive(PartialEq)]
enum Phase {
    Init,
    /// Waiting for the runtime to ask for event `i`.
    Idle(usize),
    Invoking(usize),
    Done,
}

fn drive(run: &mut ImageRun, sb: &mut sandbox::Sandbox, api: &RuntimeApi, opts: &SmokeOptions) {
    let n = opts.events.len();
    let mut phase = Phase::Init;
    let mut deadline = sb.ready + opts.timeout;
    let mut delivered_at = sb.ready;
    let secs = opts.timeout.as_secs_f64();
    while phase != Phase::Done {
        let msg = api.reports.recv_timeout(Duration::from_millis(20));
        let (at, ev) = match msg {
            Ok(m) => m,
            Err(RecvTimeoutError::Disconnected) => {
                run.failure = Some("the Runtime API stopped".into());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = sb.exited() {
                    // Drain what the runtime said before it went.
                    if let Ok(m) = api.reports.try_recv() {
                        m
                    } else {
                        let code = status
                            .code()
                            .map_or_else(|| format!("{status}"), |c| format!("status {c}"));
                        run.failure = Some(match phase {
                            Phase::Init => format!("the runtime exited with {code} during init"),
                            Phase::Idle(i) | Phase::Invoking(i) => {
                                run.invocations[i].outcome = "crashed".into();
                                format!(
                                    "the runtime exited with {code} while handling event {}",
                                    opts.events[i].name
                                )
                            }
                            Phase::Done => unreachable!(),
                        });
                        return;
                    }
                } else if Instant::now() >= deadline {
                    run.failure = Some(match phase {
                        Phase::Init => {
                            format!("init timed out after {secs} s (no request for an event)")
                        }
                        Phase::Idle(i) | Phase::Invoking(i) => {
                            run.invocations[i].outcome = "timeout".into();
                            format!(
                                "timed out after {secs} s handling event {}",
                                opts.events[i].name
                            )
                        }
                        Phase::Done => unreachable!(),
                    });
                    return;
                } else {
                    continue;
                }
            }
        };
        match ev {
            ApiEvent::Polled => {
                if phase == Phase::Init {
                    run.init_ms = Some(ms(at.duration_since(sb.ready)));
                    phase = Phase::Idle(0);
                }
                if let Phase::Idle(i) = phase {
                    if i >= n {
                        phase = Phase::Done;
                        continue;
                    }
                    let inv = Invocation {
                        request_id: request_id(i),
                        body: opts.events[i].body.clone(),
                        deadline_ms: runtime_api::now_ms() + opts.timeout.as_millis() as u64,
                    };
                    if api.deliver(inv).is_err() {
                        run.failure = Some("the Runtime API stopped".into());
                        return;
                    }
                    deadline = Instant::now() + opts.timeout;
                    phase = Phase::Invoking(i);
                }
            }
            ApiEvent::Delivered { .. } => delivered_at = at,
            ApiEvent::Response {
                request_id: id,
                body,
            } => {
                answer(
                    run,
                    &mut phase,
                    n,
                    &id,
                    body,
                    None,
                    at.duration_since(delivered_at),
                );
                deadline = Instant::now() + opts.timeout;
            }
            ApiEvent::Error {
                request_id: id,
                body,
                error_type,
            } => {
                answer(
                    run,
                    &mut phase,
                    n,
                    &id,
                    body,
                    Some(error_type.unwrap_or_default()),
                    at.duration_since(delivered_at),
                );
                deadline = Instant::now() + opts.timeout;
            }
            ApiEvent::InitError { body, error_type } => {
                run.init_error = Some(String::from_utf8_lossy(&body).into_owned());
                let summary = compare::error_summary(&body);
                run.failure = Some(match error_type {
                    Some(t) if !summary.starts_with(&t) => format!("init error: {t}: {summary}"),
                    _ => format!("init error: {summary}"),
                });
                return;
            }
            ApiEvent::TooLarge { request_id: id } => {
                if let Phase::Invoking(i) = phase
                    && id == request_id(i)
                {
                    run.invocations[i].outcome = "too large".into();
                    run.failure = Some(format!(
                        "the answer to event {} is over Lambda's 6 MB limit",
                        opts.events[i].name
                    ));
                    return;
                }
            }
            ApiEvent::Unknown { method, path } => {
                crate::ui::trace(|| format!("smoke: the runtime asked for {method} {path} (404)"));
            }
        }
    }
}

/// Record the answer to the pending event; answers to anything else are ignored.
fn answer(
    run: &mut ImageRun,
    phase: &mut Phase,
    n: usize,
    id: &str,
    body: Vec<u8>,
    error_type: Option<String>,
    took: Duration,
) {
    let Phase::Invoking(i) = *phase else {
        crate::ui::trace(|| format!("smoke: an answer for {id}, which is not pending (ignored)"));
        return;
    };
    if id != request_id(i) {
        crate::ui::trace(|| format!("smoke: an answer for {id}, which is not pending (ignored)"));
        return;
    }
    let r = &mut run.invocations[i];
    r.invoke_ms = Some(ms(took));
    r.body = Some(String::from_utf8_lossy(&body).into_owned());
    r.raw = Some(body);
    r.outcome = if error_type.is_some() {
        "error"
    } else {
        "response"
    }
    .into();
    r.error_type = error_type.filter(|t| !t.is_empty());
    *phase = if i + 1 == n {
        Phase::Done
    } else {
        Phase::Idle(i + 1)
    };
}

impl SmokeSection {
    fn new(opts: &SmokeOptions) -> SmokeSection {
        SmokeSection {
            passed: false,
            verdict: String::new(),
            message: String::new(),
            timeout_secs: opts.timeout.as_secs(),
            ignore: opts.ignore.iter().map(|p| p.text.clone()).collect(),
            events: opts.events.iter().map(|e| e.name.clone()).collect(),
            runs: Vec::new(),
            differences: Vec::new(),
            total_ms: 0.0,
        }
    }

    /// The error to exit with when the smoke did not pass.
    pub fn error(&self) -> Option<Error> {
        (!self.passed).then(|| Error::Smoke(self.message.clone()))
    }
}

fn failure_text(run: &ImageRun) -> String {
    let mut why = run.failure.clone().unwrap_or_else(|| {
        run.invocations
            .iter()
            .find(|i| i.outcome != "response")
            .map(|i| {
                format!(
                    "event {} got {}: {}",
                    i.event,
                    i.error_type
                        .as_deref()
                        .map_or("an error".to_string(), |t| format!("the error {t}")),
                    compare::error_summary(i.raw.as_deref().unwrap_or_default())
                )
            })
            .unwrap_or_default()
    });
    if let Some(m) = &run.missing {
        why.push_str(&format!(" (first missing {m})"));
    }
    why
}

/// Run one image (`coldpress smoke`): it passes when it answers every event.
pub fn smoke_image(
    image: ImageUnderTest,
    work: &Path,
    opts: &SmokeOptions,
) -> Result<SmokeSection> {
    let started = Instant::now();
    let mut section = SmokeSection::new(opts);
    let cleaner = Cleaner::default();
    let run = run_image(image, &work.join("smoke-image"), opts, &cleaner)?;
    drop(cleaner);
    section.passed = run.answered_all();
    section.verdict = if section.passed { "answered" } else { "failed" }.into();
    section.message = if section.passed {
        format!("{} answered all {} events", run.image, opts.events.len())
    } else {
        format!("{} did not answer: {}", run.image, failure_text(&run))
    };
    section.runs.push(run);
    section.total_ms = ms(started.elapsed());
    Ok(section)
}

/// Run the source and then the output, and compare their answers event by event.
pub fn smoke_pair(
    source: ImageUnderTest,
    output: ImageUnderTest,
    work: &Path,
    opts: &SmokeOptions,
) -> Result<SmokeSection> {
    let started = Instant::now();
    let mut section = SmokeSection::new(opts);
    let cleaner = Cleaner::default();
    let src = run_image(source, &work.join("smoke-source"), opts, &cleaner)?;
    if !src.answered_all() {
        section.verdict = "source failed".into();
        section.message = format!(
            "the source image itself fails, so the rewrite is not to blame, but nothing can be proven: {}; nothing was tagged",
            failure_text(&src)
        );
        drop(cleaner);
        section.runs.push(src);
        section.total_ms = ms(started.elapsed());
        return Ok(section);
    }
    let out = run_image(output, &work.join("smoke-output"), opts, &cleaner)?;
    drop(cleaner);
    section.differences = compare_runs(&src, &out, &opts.ignore);
    if out.answered_all() && section.differences.is_empty() {
        section.passed = true;
        section.verdict = "equal".into();
        section.message = format!(
            "the output answered all {} events as the source did",
            opts.events.len()
        );
    } else if !out.answered_all() {
        section.verdict = "output failed".into();
        section.message = format!(
            "the output fails where the source answered: {}; nothing was tagged",
            failure_text(&out)
        );
    } else {
        section.verdict = "differs".into();
        let d = &section.differences[0];
        section.message = format!(
            "the output answers event {} differently: {}; nothing was tagged",
            d.event, d.reason
        );
    }
    section.runs.push(src);
    section.runs.push(out);
    section.total_ms = ms(started.elapsed());
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launched_like_lambda() {
        let config = ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/lambda-entrypoint.sh"],"Cmd":["app.handler"],
                "WorkingDir":"/var/task","Env":["PATH=/var/lang/bin:/usr/bin","AWS_REGION=eu-west-1","LANG=C.UTF-8"]}}"#,
            "test config",
        )
        .unwrap();
        let spec = launch_spec(&config, Path::new("/r"));
        assert_eq!(spec.argv, ["/lambda-entrypoint.sh", "app.handler"]);
        assert_eq!(spec.cwd, "/var/task");
        let has = |kv: &str| spec.env.iter().any(|e| e == kv);
        assert!(has("_HANDLER=app.handler"));
        assert!(
            has("PATH=/var/lang/bin:/usr/bin"),
            "the image's PATH is kept"
        );
        assert!(has("LANG=C.UTF-8") && !has("LANG=en_US.UTF-8"));
        assert!(
            has("AWS_REGION=us-east-1") && !has("AWS_REGION=eu-west-1"),
            "Lambda's own wins"
        );
        assert!(has("LAMBDA_TASK_ROOT=/var/task") && has("TZ=:UTC"));
        assert!(spec.env.iter().any(|e| e.starts_with("AWS_SESSION_TOKEN=")));
    }
}
