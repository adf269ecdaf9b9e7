//! The differential tar corpus (tests/tar_corpus/generate.py): every header
//! quirk read three ways — `coldpress analyze --list-files`, `coldpress
//! optimize` then `umoci unpack` of the output, and `umoci unpack` of the source
//! (Go's archive/tar, the reader containerd and Docker use). Each case must give
//! equal trees, or a refusal with the message the generator names.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The layer tars of one case, as the generator wrote them.
fn case_layers(corpus: &Path, case: &Value) -> Vec<Vec<u8>> {
    case["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| std::fs::read(corpus.join(f.as_str().unwrap())).unwrap())
        .collect()
}

fn generate(out: &Path) -> Vec<Value> {
    let python = require("python3", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tar_corpus/generate.py");
    let status = Command::new(python).arg(&script).arg(out).output().unwrap();
    assert_success(&status, "generating the tar corpus");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(out.join("cases.json")).unwrap()).unwrap();
    cases.as_array().unwrap().clone()
}

/// `umoci unpack`, or its error.
fn unpack(layout: &Path, tag: &str) -> Result<tempfile::TempDir, String> {
    let bundle = tempfile::tempdir().unwrap();
    let out = Command::new(require("umoci", "umoci"))
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle.path().join("b"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(bundle)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The unpacked tree, and the directories umoci had to invent because no entry
/// named them: they carry the time of the unpack (every corpus entry's mtime is
/// years earlier), so their mtime is not compared.
fn tree(rootfs: &Path, since: i64) -> (BTreeMap<String, FsEntry>, Vec<String>) {
    let mut t = walk(rootfs);
    let mut implicit = Vec::new();
    for (p, e) in t.iter_mut() {
        if e.ftype == "dir" && e.mtime.0 >= since {
            e.mtime = (0, 0);
            implicit.push(p.clone());
        }
    }
    (t, implicit)
}

#[test]
fn every_tar_quirk_reads_as_go_reads_it_or_is_refused_by_name() {
    let corpus = tempfile::tempdir().unwrap();
    let cases = generate(corpus.path());
    assert!(cases.len() >= 40, "at least 40 cases: {}", cases.len());
    let env = Env::new();
    let layout = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut agreed = 0;
    let mut refused = 0;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 5;
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let tars = case_layers(corpus.path(), c);
        raw_image(layout.path(), name, &tars);
        let src = format!("oci:{}:{name}", layout.path().display());
        let dst = format!("oci:{}:{name}", out.path().display());
        let listing = env.run(&[
            "analyze",
            &src,
            "--list-files",
            "--format",
            "json",
            "--offline",
        ]);
        let optimized = env.run(&[
            "optimize",
            &src,
            &dst,
            "--offline",
            "--format",
            "json",
            "-q",
        ]);
        if c["expect"] == "refuse" {
            let says = c["says"].as_str().unwrap();
            for (what, o) in [("analyze", &listing), ("optimize", &optimized)] {
                let err = String::from_utf8_lossy(&o.stderr);
                let first = err.lines().find(|l| l.starts_with("error")).unwrap_or("");
                if o.status.code() != Some(1) || !first.contains(says) {
                    failures.push(format!(
                        "{name}: {what} must refuse with {says:?}, got {:?}: {err}",
                        o.status.code()
                    ));
                }
            }
            refused += 1;
            continue;
        }
        if !listing.status.success() || !optimized.status.success() {
            failures.push(format!(
                "{name}: coldpress refused what Go reads: {}{}",
                String::from_utf8_lossy(&listing.stderr),
                String::from_utf8_lossy(&optimized.stderr)
            ));
            continue;
        }
        let source_bundle = match unpack(layout.path(), name) {
            Ok(b) => b,
            Err(e) if c["expect"] == "umoci-differs" => {
                // umoci refuses what containerd accepts: check the umoci error is the
                // known one, and coldpress's listing against containerd's rule.
                let umoci_says = c["umoci_says"].as_str().unwrap();
                if !e.contains(umoci_says) {
                    failures.push(format!("{name}: umoci: expected {umoci_says:?}: {e}"));
                }
                let report: Value = serde_json::from_slice(&listing.stdout).unwrap();
                let paths: Vec<String> = listing::files(&report).keys().cloned().collect();
                let want: Vec<String> = c["paths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                if paths != want {
                    failures.push(format!(
                        "{name}: listed {paths:?}, containerd gives {want:?}"
                    ));
                }
                agreed += 1;
                continue;
            }
            Err(e) => {
                failures.push(format!("{name}: umoci could not unpack the source: {e}"));
                continue;
            }
        };
        let report: Value = serde_json::from_slice(&listing.stdout).unwrap();
        let ours = listing::files(&report);
        let (theirs, implicit) = tree(&rootfs(&source_bundle), started);
        assert!(
            !theirs.is_empty(),
            "{name}: umoci unpacked nothing, so nothing was compared"
        );
        for d in listing::differences(&ours, &theirs) {
            if !implicit
                .iter()
                .any(|p| d.starts_with(&format!("{p}: mtime")))
            {
                failures.push(format!("{name}: analyze vs umoci: {d}"));
            }
        }
        let r: Value = serde_json::from_slice(&optimized.stdout).unwrap();
        let removed = removed_paths(&r);
        let output_bundle = match unpack(out.path(), name) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!(
                    "{name}: umoci could not unpack coldpress's output: {e}"
                ));
                continue;
            }
        };
        let (mut output, _) = tree(&rootfs(&output_bundle), i64::MAX);
        for p in &implicit {
            if let Some(e) = output.get_mut(p) {
                e.mtime = (0, 0);
            }
        }
        let mut expected = theirs.clone();
        expected.retain(|p, _| {
            !removed
                .iter()
                .any(|r| p == r || p.starts_with(&format!("{r}/")))
        });
        if output != expected {
            for (p, e) in &expected {
                match output.get(p) {
                    None => failures.push(format!("{name}: optimize lost {p}")),
                    Some(o) if o != e => {
                        failures.push(format!("{name}: optimize changed {p}: {e:?} -> {o:?}"))
                    }
                    _ => {}
                }
            }
            for p in output.keys().filter(|p| !expected.contains_key(*p)) {
                failures.push(format!("{name}: optimize added {p}"));
            }
        }
        agreed += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        agreed >= 30 && refused >= 10,
        "{agreed} agreed, {refused} refused"
    );
}

/// `hardlink_to` in --list-files names a path that still shares the content.
#[test]
fn listing_hardlink_to_follows_whiteouts_and_overwrites() {
    let corpus = tempfile::tempdir().unwrap();
    let cases = generate(corpus.path());
    let env = Env::new();
    let layout = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("hardlink-target-whited-out", "/link.txt"),
        ("hardlink-target-overwritten", "/l.txt"),
    ] {
        let c = cases.iter().find(|c| c["name"] == name).unwrap();
        let tars = case_layers(corpus.path(), c);
        raw_image(layout.path(), name, &tars);
        let r = env.list_files(&format!("oci:{}:{name}", layout.path().display()));
        let f = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{name}: {path} is listed"));
        assert_eq!(
            f["hardlink_to"],
            Value::Null,
            "{name}: {path}'s target was deleted or replaced: {f}"
        );
    }
}
