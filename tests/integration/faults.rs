//! Registry faults: with 10% of requests failing (5xx, 429 with Retry-After,
//! resets, stalls, truncated bodies) between coldpress and a real registry,
//! optimize and audit still finish and produce the same digests as without faults.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use crate::support::proxy::{Config, Proxy};
use crate::support::{Env, Registry};

/// Flags that keep a faulty run bounded: stalls are cut after 1 s, retries are plenty.
const PATIENT: [&str; 6] = [
    "--timeout",
    "1",
    "--connect-timeout",
    "2",
    "--retries",
    "12",
];

fn setup() -> (Registry, Proxy) {
    let registry = Registry::start();
    support::push_example(
        &registry,
        &[
            ("base", "lambda/base:1"),
            ("app", "fn/app:v1"),
            ("app-v2", "fn/app:v2"),
            ("app", "other/app:v1"),
        ],
        &[],
    );
    let proxy = Proxy::start(
        &registry.host,
        Config {
            rate: 0.0,
            seed: 0,
            stall: Duration::from_secs(3),
            delay: Duration::ZERO,
        },
    );
    (registry, proxy)
}

fn optimize(env: &Env, proxy: &Proxy, dest_repo: &str) -> Value {
    let p = proxy.host();
    let (src, dst, base) = (
        format!("{p}/fn/app:v1"),
        format!("{p}/{dest_repo}:slim"),
        format!("{p}/lambda/base:1"),
    );
    let mut args = vec!["optimize", &src, &dst, "--base-image", &base];
    args.extend_from_slice(&PATIENT);
    env.report(&args)
}

#[test]
fn optimize_survives_ten_percent_faults() {
    let (registry, proxy) = setup();
    let reference = optimize(&Env::new(), &proxy, "reference/slim");
    let digest = reference["destination"]["digest"].clone();
    let started = Instant::now();
    let runs = 20;
    for seed in 1..=runs {
        proxy.reseed(0.10, seed);
        let r = optimize(&Env::new(), &proxy, &format!("seed{seed}/slim"));
        assert_eq!(
            r["destination"]["digest"], digest,
            "seed {seed}: a different image"
        );
        assert_eq!(r["verified"], true);
        // What the tag points at, read past the proxy by skopeo.
        assert_eq!(
            support::skopeo_digest(&format!("docker://{}/seed{seed}/slim:slim", registry.host)),
            digest.as_str().unwrap(),
            "seed {seed}: the tag"
        );
    }
    let (requests, faults) = (
        proxy.counters.requests.load(Ordering::Relaxed),
        proxy.counters.faults.load(Ordering::Relaxed),
    );
    eprintln!(
        "optimize: {runs} runs at 10% faults: {faults} faults in {requests} requests, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(faults >= runs, "faults were injected ({faults})");
}

#[test]
fn audit_survives_ten_percent_faults() {
    let (_registry, proxy) = setup();
    let audit = |out: &std::path::Path| {
        let env = Env::new();
        let base = format!("{}/lambda/base:1", proxy.host());
        let out_s = out.display().to_string();
        let host = proxy.host();
        let mut args = vec![
            "audit",
            &host,
            "--output",
            &out_s,
            "--offline",
            "--base-image",
            &base,
            "--tags",
            "all",
            "-q",
        ];
        args.extend_from_slice(&PATIENT);
        env.ok(&args);
        let mut rows = coldpress::audit::read_rows(&out.join("audit.jsonl")).unwrap();
        for r in &mut rows {
            r.as_object_mut().unwrap().remove("base_catalog");
        }
        rows
    };
    let reference = audit(tempfile::tempdir().unwrap().path());
    assert!(
        reference.iter().all(|r| r["status"] == "ok") && reference.len() == 4,
        "{reference:?}"
    );
    let runs = 20;
    for seed in 1..=runs {
        proxy.reseed(0.10, seed);
        let out = tempfile::tempdir().unwrap();
        assert_eq!(audit(out.path()), reference, "seed {seed}");
    }
    assert!(proxy.counters.faults.load(Ordering::Relaxed) >= runs);
    eprintln!(
        "audit: {runs} runs at 10% faults: {} faults in {} requests",
        proxy.counters.faults.load(Ordering::Relaxed),
        proxy.counters.requests.load(Ordering::Relaxed)
    );
}

#[test]
fn a_registry_that_always_fails_ends_in_bounded_time() {
    let (_registry, proxy) = setup();
    // Every request fails (stalls, resets, 5xx, 429): retries back off, the
    // per-request timeout cuts stalls, and --deadline bounds the whole run.
    proxy.reseed(1.0, 3);
    let env = Env::new();
    let started = Instant::now();
    let out = env.run(&[
        "analyze",
        &format!("{}/fn/app:v1", proxy.host()),
        "--offline",
        "--timeout",
        "1",
        "--deadline",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("error:")), "{err}");
}
