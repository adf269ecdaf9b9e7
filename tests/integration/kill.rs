//! SIGKILL at random points during `optimize`: the destination tag never points at
//! a partial or different image, and the next run finishes, reusing what was
//! already uploaded.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use crate::support::proxy::{Config, Proxy};
use crate::support::{Env, Registry, require, skopeo_copy};

/// The manifest digest the tag points at, or None when the tag does not exist.
fn tag_digest(reference: &str) -> Option<String> {
    let out = Command::new(require("skopeo", "skopeo"))
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    if out.status.success() {
        return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "unexpected skopeo error: {err}"
    );
    None
}

#[test]
fn killed_pushes_never_leave_a_partial_tag() {
    let registry = Registry::start();
    support::push_example(
        &registry,
        &[("base", "lambda/base:1"), ("app", "fn/app:v1")],
        &[],
    );
    // A little latency per request widens the window in which a push is in flight.
    let proxy = Proxy::start(
        &registry.host,
        Config {
            rate: 0.0,
            seed: 0,
            stall: Duration::ZERO,
            delay: Duration::from_millis(60),
        },
    );
    let p = proxy.host();
    let (src, base) = (format!("{p}/fn/app:v1"), format!("{p}/lambda/base:1"));
    let args = |dst: &str| -> Vec<String> {
        [
            "optimize",
            &src,
            dst,
            "--offline",
            "--base-image",
            &base,
            "--format",
            "json",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let env = Env::new();
    let started = Instant::now();
    let reference: Value = serde_json::from_str(
        &env.ok(&args(&format!("{p}/reference/slim:1"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()),
    )
    .unwrap();
    let full_run = started.elapsed();
    let expected = reference["destination"]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let dst = format!("{p}/fn/app-slim:1");
    let direct = format!("{}/fn/app-slim:1", registry.host);
    let new_layers: Vec<String> = reference["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] != "base")
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    // The new layers the destination repository has.
    let present = || -> Vec<&String> {
        new_layers
            .iter()
            .filter(|d| {
                support::http_status(
                    &registry.host,
                    "HEAD",
                    &format!("/v2/fn/app-slim/blobs/{d}"),
                    &[],
                ) == 200
            })
            .collect()
    };
    let forget = |tagged: bool| {
        // Start the next round clean: no tag and none of the new layers (the
        // registry keeps base blobs, which are mounted from the source anyway).
        if tagged {
            let status = support::http_status(
                &registry.host,
                "DELETE",
                &format!("/v2/fn/app-slim/manifests/{expected}"),
                &[],
            );
            assert_eq!(status, 202, "deleting the manifest");
        }
        for d in &new_layers {
            let status = support::http_status(
                &registry.host,
                "DELETE",
                &format!("/v2/fn/app-slim/blobs/{d}"),
                &[],
            );
            // 404: the killed run never got to upload it.
            assert!(status == 202 || status == 404, "deleting {d}: {status}");
        }
    };
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    // A kill at a random time in [lo, hi) ms.
    let mut random_kill = |lo: u64, hi: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = Duration::from_millis(lo + x % (hi.saturating_sub(lo) + 1));
        let mut child = env
            .cmd()
            .args(args(&dst))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        match tag_digest(&direct) {
            None => (false, present().len(), at),
            Some(d) => {
                assert_eq!(d, expected, "the tag points at a different image");
                // And the image is whole: every blob can be pulled.
                let pulled = tempfile::tempdir().unwrap();
                skopeo_copy(
                    &format!("docker://{direct}"),
                    &format!("oci:{}:x", pulled.path().display()),
                    &[],
                );
                (true, new_layers.len(), at)
            }
        }
    };
    let (mut untagged, mut tagged, mut mid_push) = (0, 0, 0);
    let whole = full_run.as_millis() as u64;
    for _ in 0..20 {
        let (is_tagged, uploaded, _) = random_kill(0, whole);
        if is_tagged {
            tagged += 1;
        } else {
            untagged += 1;
            if uploaded > 0 {
                mid_push += 1;
            }
        }
        forget(is_tagged);
    }
    // Kill once more while the push is under way, then let a run finish. The
    // window narrows to where uploads happen: later after a kill that came
    // before any upload, earlier after one that came after the tag (a loaded
    // machine shifts the phases of a run).
    let mut reusable = 0;
    let (mut lo, mut hi) = (0, whole);
    for _ in 0..30 {
        let (is_tagged, uploaded, at) = random_kill(lo, hi);
        if !is_tagged && uploaded > 0 {
            reusable = uploaded;
            break;
        }
        let at = at.as_millis() as u64;
        if is_tagged {
            hi = at.max(lo + 1);
        } else {
            lo = at.min(hi.saturating_sub(1));
        }
        forget(is_tagged);
    }
    assert!(
        reusable > 0,
        "no kill landed while layers were being uploaded"
    );
    // Killed runs leave their spools; the next run sweeps them (their locks are free).
    let left_by_kills = walkdir_count(&env.tmp());
    assert!(
        left_by_kills > 0,
        "the kills left spools behind, so the sweep is tested"
    );
    // The next run completes, reusing the blobs the killed runs uploaded: the
    // registry's log shows no upload of any of them.
    let up_before = present();
    assert_eq!(up_before.len(), reusable);
    let log_start = registry.log().len();
    let after: Value =
        serde_json::from_str(&env.ok(&args(&dst).iter().map(String::as_str).collect::<Vec<_>>()))
            .unwrap();
    assert_eq!(after["destination"]["digest"].as_str().unwrap(), expected);
    let reused = after["push"]["reused_blobs"].as_u64().unwrap();
    let base_layers = reference["base"]["layers"].as_u64().unwrap();
    assert!(
        reused >= base_layers + reusable as u64,
        "the uploaded layers are reused: {}",
        after["push"]
    );
    let log = registry.log()[log_start..].to_string();
    let uploads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/blobs/uploads/"))
        .collect();
    for d in &up_before {
        let hex = d.trim_start_matches("sha256:");
        assert!(
            uploads.iter().all(|l| !l.contains(hex)),
            "{d} was uploaded again:\n{uploads:#?}"
        );
    }
    assert!(
        log.contains("PUT /v2/fn/app-slim/manifests/"),
        "the final run tagged:\n{log}"
    );
    let left_after = walkdir_count(&env.tmp());
    assert_eq!(
        left_after,
        0,
        "the next run deleted what {left_by_kills} files of killed runs left in its TMPDIR: {:?}",
        walkdir_list(&env.tmp())
    );
    eprintln!(
        "20 kills within {:.2}s runs: {untagged} left no tag ({mid_push} of them after new layers were uploaded), {tagged} had completed; after a kill with {reusable} new layers up, the next run reused {reused} blobs and uploaded {}",
        full_run.as_secs_f64(),
        after["push"]["uploaded_blobs"]
    );
}

/// Files and directories below `dir` (not `dir` itself).
fn walkdir_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    1 + if e.file_type().unwrap().is_dir() {
                        walkdir_count(&e.path())
                    } else {
                        0
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn walkdir_list(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Option<std::time::Duration>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let age = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok());
        out.push((e.path(), age));
        if e.file_type().unwrap().is_dir() {
            out.extend(walkdir_list(&e.path()));
        }
    }
    out
}
