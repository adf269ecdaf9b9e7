//! Flags that change what a run does, one test each, on the built-in example
//! images: `analyze --fail-on`, `optimize --no-verify`, `--compression-level`,
//! `--work-dir`, `--refresh-bases`, the `--fail-if-*` thresholds with and without
//! `--dry-run`, and where the base catalog's note goes.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::support::{Env, ErrorBlock};

fn example() -> tempfile::TempDir {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    layout
}

fn oci(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Whether an OCI layout has an image under `tag`.
fn tagged(layout: &Path, tag: &str) -> bool {
    let Ok(raw) = std::fs::read(layout.join("index.json")) else {
        return false;
    };
    let index: Value = serde_json::from_slice(&raw).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
}

#[test]
fn fail_on_exits_3_naming_the_findings_at_or_above_the_level() {
    let layout = example();
    let env = Env::new();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let report = env.report(&["analyze", &app, "--base-image", &base]);
    let at = |severity: &str| -> Vec<String> {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == severity)
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (warnings, infos, errors) = (at("warning"), at("info"), at("error"));
    // The example is built to have warnings and infos but nothing Lambda rejects,
    // so each level below has something to say.
    assert!(
        !warnings.is_empty() && !infos.is_empty() && errors.is_empty(),
        "{report}"
    );

    for (level, expect) in [
        ("info", [&warnings[..], &infos[..]].concat()),
        ("warning", warnings.clone()),
        ("error", vec![]),
    ] {
        let out = env.run(&[
            "analyze",
            &app,
            "--base-image",
            &base,
            "--offline",
            "-q",
            "--format",
            "json",
            "--fail-on",
            level,
        ]);
        let err = stderr(&out);
        // The report is printed either way: the gate reads it, it does not replace it.
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["findings"], report["findings"], "--fail-on {level}");
        if expect.is_empty() {
            assert_eq!(out.status.code(), Some(0), "--fail-on {level}: {err}");
            assert!(err.trim().is_empty(), "--fail-on {level}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(3), "--fail-on {level}: {err}");
        let e = ErrorBlock::parse(&err);
        assert!(e.error.contains(&format!("--fail-on {level}")), "{e:?}");
        for id in &expect {
            assert!(
                e.error.contains(id.as_str()),
                "--fail-on {level} names {id}: {e:?}"
            );
        }
        let below: Vec<&String> = infos.iter().filter(|_| level == "warning").collect();
        for id in below {
            assert!(
                !e.error.contains(id.as_str()),
                "{id} is below {level}: {e:?}"
            );
        }
    }
}

#[test]
fn no_verify_skips_the_read_back_and_writes_the_same_image() {
    let layout = example();
    let env = Env::new();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let run = |dir: &Path, extra: &[&str]| -> (Value, String) {
        let dst = oci(dir, "slim");
        let mut args = vec![
            "optimize",
            &app,
            &dst,
            "--base-image",
            &base,
            "--offline",
            "--format",
            "json",
            "-v",
        ];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(tagged(dir, "slim"));
        (serde_json::from_slice(&out.stdout).unwrap(), err)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (verified, log) = run(a.path(), &[]);
    let (unverified, quiet_log) = run(b.path(), &["--no-verify"]);
    assert_eq!(verified["verified"], true);
    assert_eq!(unverified["verified"], false);
    assert!(log.contains("verified in"), "{log}");
    assert!(!quiet_log.contains("verified in"), "{quiet_log}");
    assert_eq!(
        verified["destination"]["digest"], unverified["destination"]["digest"],
        "verification reads, it never changes the output"
    );
}

#[test]
fn compression_level_changes_the_bytes_not_the_content() {
    let layout = example();
    let env = Env::new();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let out = tempfile::tempdir().unwrap();
    let run = |level: &str, compression: &str| -> Value {
        let dst = oci(out.path(), &format!("{compression}-{level}"));
        env.report(&[
            "optimize",
            &app,
            &dst,
            "--base-image",
            &base,
            "--compression",
            compression,
            "--compression-level",
            level,
        ])
    };
    let new = |r: &Value| -> Vec<(String, String, u64, u64)> {
        r["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["role"] != "base")
            .map(|l| {
                (
                    l["digest"].as_str().unwrap().to_string(),
                    l["diff_id"].as_str().unwrap().to_string(),
                    l["compressed_bytes"].as_u64().unwrap(),
                    l["uncompressed_bytes"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let stored = new(&run("0", "gzip"));
    let fast = new(&run("1", "gzip"));
    let best = new(&run("9", "gzip"));
    assert!(!stored.is_empty());
    for ((s, f), b) in stored.iter().zip(&fast).zip(&best) {
        assert_eq!((&s.1, &f.1), (&b.1, &b.1), "same tar in every level");
        assert_ne!(s.0, b.0, "level 0 and 9 give different blobs");
        // Level 0 stores: gzip framing makes it a little larger than the tar.
        assert!(s.2 > s.3, "level 0 stores: {s:?}");
        assert!(b.2 <= f.2 && b.2 < s.2, "9 ≤ 1 < 0: {b:?} {f:?} {s:?}");
    }
    let zstd_fast = new(&run("1", "zstd"));
    let zstd_best = new(&run("19", "zstd"));
    // (Sizes are not compared: on the example's random-filled files, level 19 can
    // come out a few bytes larger than level 1.)
    for (f, b) in zstd_fast.iter().zip(&zstd_best) {
        assert_eq!(f.1, b.1, "same tar");
    }
    assert_ne!(
        zstd_fast.iter().map(|l| &l.0).collect::<Vec<_>>(),
        zstd_best.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
}

#[test]
fn work_dir_holds_the_spool_and_is_left_empty() {
    let layout = example();
    let env = Env::new();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let out = tempfile::tempdir().unwrap();
    let dst = oci(out.path(), "slim");

    // A work directory that cannot exist (its parent is a file): the error names
    // it, and nothing is tagged. This is what shows the flag is the one used.
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let bad = file.join("work");
    for via_env in [false, true] {
        let mut cmd = env.cmd();
        cmd.args(["optimize", &app, &dst, "--base-image", &base, "--offline"]);
        if via_env {
            cmd.env("COLDPRESS_WORK_DIR", &bad);
        } else {
            cmd.arg("--work-dir").arg(&bad);
        }
        let o = cmd.output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let e = ErrorBlock::parse(&err);
        assert!(
            e.error.contains("creating a work directory")
                && e.error.contains(&bad.display().to_string()),
            "env {via_env}: {e:?}"
        );
        assert!(!tagged(out.path(), "slim"));
    }

    // A good one: used, and empty again after the run.
    let work = tempfile::tempdir().unwrap();
    let r = env.report(&[
        "optimize",
        &app,
        &dst,
        "--base-image",
        &base,
        "--work-dir",
        work.path().to_str().unwrap(),
    ]);
    assert!(tagged(out.path(), "slim"));
    assert!(!r["new_layers"].as_array().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn thresholds_refuse_dry_run_and_gate_the_written_output() {
    let layout = example();
    let env = Env::new();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let run = |dst: &str, extra: &[&str]| {
        let mut args = vec![
            "optimize",
            &app,
            dst,
            "--base-image",
            &base,
            "--offline",
            "-q",
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };

    // Each threshold with a value the example misses (exit 3) and one it meets (0).
    for (flag, value, code) in [
        ("--fail-if-cold-start-bytes-over", "1KB", 3),
        ("--fail-if-cold-start-bytes-over", "1GB", 0),
        ("--fail-if-savings-under", "99", 3),
        ("--fail-if-savings-under", "1", 0),
    ] {
        let out = tempfile::tempdir().unwrap();
        let dst = oci(out.path(), "slim");
        // A dry run writes no layer, so it has no output size to check: refused
        // as a usage error before any work, whatever the value.
        let o = run(&dst, &[flag, value, "--dry-run"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value} --dry-run: {err}");
        let e = ErrorBlock::parse(&err);
        assert!(
            e.error.starts_with("--dry-run writes no layer") && e.error.contains(flag),
            "{flag} {value} --dry-run: {e:?}"
        );
        assert!(o.stdout.is_empty(), "no report for a refused run");
        assert!(!out.path().join("index.json").exists(), "nothing written");

        // The same gate on a real run is checked on the written layers.
        let o = run(&dst, &[flag, value]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{flag} {value}: {err}");
        if code == 3 {
            let e = ErrorBlock::parse(&err);
            assert!(
                e.error.starts_with("cold-start bytes") && e.error.ends_with("nothing was tagged"),
                "{flag} {value}: {e:?}"
            );
        } else {
            assert!(err.trim().is_empty(), "{flag} {value}: {err}");
        }
        assert_eq!(tagged(out.path(), "slim"), code == 0, "{flag} {value}");
    }
}

/// Stdout and stderr in one stream, in the order they were written.
fn merged(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    // One open file for both, so they share the offset and nothing is overwritten.
    let file = log.reopen().unwrap();
    let status = env
        .cmd()
        .args(args)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .status()
        .unwrap();
    (status.code(), std::fs::read_to_string(log.path()).unwrap())
}

/// A cache that says the AWS catalog was fetched a minute ago, with the example's
/// base recorded as one of its builds.
fn fresh_catalog_cache(env: &Env, base: &str) {
    env.report(&["analyze", base, "--base-image", base]);
    let path = env.dir.path().join("cache/coldpress/bases.json");
    let mut cache: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for b in cache["builds"].as_array_mut().unwrap() {
        b["origin"] = "catalog".into();
    }
    cache["catalog_fetched_at"] = (coldpress::catalog::now() - 60).into();
    std::fs::write(&path, serde_json::to_vec(&cache).unwrap()).unwrap();
}

#[test]
fn refresh_bases_contacts_the_catalog_even_when_the_cache_is_fresh() {
    let layout = example();
    let app = oci(layout.path(), "app");
    let base = oci(layout.path(), "base");
    let env = Env::new();
    fresh_catalog_cache(&env, &base);

    // Fresh cache: used as it is, and its base still matches.
    let out = env.run(&["analyze", &app, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["base_catalog"]["source"], "cache",
        "{}",
        r["base_catalog"]
    );
    assert!(!r["base"].is_null(), "the cached build matches: {r}");
    assert!(!stderr(&out).contains("could not refresh"));

    // --refresh-bases: fetched now. Where public.ecr.aws is reachable that
    // succeeds; where it is not (the test machine), the note says so, after the
    // report, and the cache still serves.
    let (code, log) = merged(&env, &["analyze", &app, "--refresh-bases"]);
    assert_eq!(code, Some(0), "{log}");
    let refreshed = env.report(&["analyze", &app]);
    let online = refreshed["base_catalog"]["source"] == "online"
        || refreshed["base_catalog"]["age_seconds"].as_u64() < Some(60);
    if !online {
        let note = log
            .lines()
            .position(|l| l.starts_with("note: could not refresh the AWS Lambda base catalog"))
            .unwrap_or_else(|| panic!("no refresh note:\n{log}"));
        let result = log
            .lines()
            .position(|l| l.contains("cold start must fetch"))
            .unwrap_or_else(|| panic!("no report:\n{log}"));
        assert!(note > result, "the note comes after the result:\n{log}");
        assert_eq!(log.matches("note:").count(), 1, "{log}");
    }

    assert_eq!(
        env.run(&["analyze", &app, "--refresh-bases", "--offline"])
            .status
            .code(),
        Some(2),
        "--refresh-bases and --offline conflict"
    );
}

#[test]
fn a_missing_image_is_the_first_and_only_thing_said() {
    let layout = example();
    // No cache and no --offline: the catalog would be due, but the image is
    // looked up first, and its absence ends the run before any catalog work.
    let env = Env::new();
    let started = std::time::Instant::now();
    let out = env.run(&["analyze", &oci(layout.path(), "nope")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("note:") && !err.contains("public.ecr.aws"),
        "{err}"
    );
    let e = ErrorBlock::parse(&err);
    assert!(
        e.error.contains("nope") && e.error.contains("not found"),
        "{e:?}"
    );
    assert!(e.hint().contains("app"), "{e:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!env.dir.path().join("cache/coldpress/bases.json").exists());
}

#[test]
fn completions_are_printed_for_each_shell() {
    let env = Env::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef coldpress"),
        ("fish", "complete -c coldpress"),
    ] {
        let script = env.ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["analyze", "optimize", "audit", "fail-on", "work-dir"] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
    }
    // bash can load what it printed.
    let script = env.ok(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coldpress.bash");
    std::fs::write(&file, script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p coldpress",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn jobs_defaults_to_the_available_parallelism() {
    let env = Env::new();
    let help = env.ok(&["analyze", "--help"]);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        help.contains(&format!("[default: {cores}]")),
        "--jobs default is {cores}:\n{help}"
    );
}
