//! `coldpress optimize`: the output's filesystem equals the source's minus exactly
//! the removed paths (checked with umoci, independently of coldpress), the base
//! layers are kept byte for byte, new layers are what Lambda accepts, the result
//! is deterministic, and every transport works as a destination.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use coldpress::image::Compression;
use serde_json::Value;

use crate::support;
use crate::support::{
    Env, FsEntry, Registry, assert_success, edge, layer_descriptors, raw_manifest, removed_paths,
    rootfs, skopeo_copy, skopeo_digest, umoci_unpack, walk,
};

fn optimize(env: &Env, src: &str, dst: &str, extra: &[&str]) -> Value {
    let mut args = vec!["optimize", src, dst];
    args.extend_from_slice(extra);
    env.report(&args)
}

/// The source tree minus the removed paths must be the output tree, field by field.
fn assert_same_minus_removed(
    source: &BTreeMap<String, FsEntry>,
    output: &BTreeMap<String, FsEntry>,
    removed: &BTreeSet<String>,
) {
    assert_same_minus_removed_but(source, output, removed, &[]);
}

/// `unpack_time`: directories no tar entry describes, which umoci creates with the
/// time of the unpack (so their mtime differs between any two unpacks).
fn assert_same_minus_removed_but(
    source: &BTreeMap<String, FsEntry>,
    output: &BTreeMap<String, FsEntry>,
    removed: &BTreeSet<String>,
    unpack_time: &[&str],
) {
    let mut problems = Vec::new();
    for (p, e) in source {
        if removed.contains(p) {
            if output.contains_key(p) {
                problems.push(format!("{p}: reported removed but present"));
            }
            continue;
        }
        match output.get(p) {
            None => problems.push(format!("{p}: missing from the output")),
            Some(o)
                if unpack_time.contains(&p.as_str())
                    && FsEntry {
                        mtime: e.mtime,
                        ..o.clone()
                    } == *e => {}
            Some(o) if o != e => {
                problems.push(format!("{p}: differs\n  source {e:?}\n  output {o:?}"))
            }
            _ => {}
        }
    }
    for p in output.keys() {
        if !source.contains_key(p) {
            problems.push(format!("{p}: only in the output"));
        }
    }
    for p in removed {
        if !source.contains_key(p) {
            problems.push(format!("{p}: reported removed but not in the source"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn history_layers(layout: &Path, tag: &str) -> (usize, usize) {
    let out = std::process::Command::new(support::require("skopeo", "skopeo"))
        .args([
            "inspect",
            "--config",
            &format!("oci:{}:{tag}", layout.display()),
        ])
        .output()
        .unwrap();
    assert_success(&out, "skopeo inspect --config");
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    let history = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    (layers, history)
}

#[test]
fn example_output_equals_source_minus_removed_and_is_deterministic() {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let env = Env::new();
    let src = |t: &str| format!("oci:{}:{t}", layout.path().display());
    let base = src("base");
    let r = optimize(
        &env,
        &src("app"),
        &format!("oci:{}:slim", out.path().display()),
        &["--base-image", &base],
    );

    let source = walk(&rootfs(&umoci_unpack(layout.path(), "app")));
    let output = walk(&rootfs(&umoci_unpack(out.path(), "slim")));
    let removed = removed_paths(&r);
    assert_same_minus_removed(&source, &output, &removed);
    assert_eq!(r["never_worse"]["ok"], true, "{}", r["never_worse"]);
    for expected in [
        "usr/bin/gcc-12",
        "root/.cache/pip/http/3f2a9c",
        "var/task/tests/test_handler.py",
        "var/task/.git",
        "var/task/_pytest/python.py",
        "var/task/numpylite/tests",
    ] {
        assert!(
            removed.contains(expected),
            "{expected} should be removed: {removed:?}"
        );
    }
    assert!(
        output.contains_key("var/task/handler_alias.py"),
        "the hard link is written as a file"
    );
    assert_eq!(r["verified"], true);

    // Layers: the base's two, then system, deps, code — code last.
    let roles: Vec<&str> = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["base", "base", "system", "deps", "code"]);
    // Byte for byte, by skopeo's reading: the output's first layers are the base
    // image's own descriptors (media type, digest, size).
    assert_eq!(
        layer_descriptors(
            &raw_manifest(&format!("oci:{}:slim", out.path().display())),
            2
        ),
        layer_descriptors(&raw_manifest(&base), 2),
        "base layers kept byte for byte"
    );
    let out_manifest = raw_manifest(&format!("oci:{}:slim", out.path().display()));
    assert_eq!(
        out_manifest["annotations"]["org.opencontainers.image.base.digest"],
        skopeo_digest(&base).as_str(),
        "provenance: the base image's manifest digest"
    );
    let (layers, history) = history_layers(out.path(), "slim");
    assert_eq!(layers, history, "one history entry per layer");
    assert!(
        r["after"]["cold_start_bytes"].as_u64().unwrap()
            < r["before"]["cold_start_bytes"].as_u64().unwrap() / 3
    );

    // The new layers are what Lambda accepts: gzip, parents present, no hard links.
    let again = env.report(&[
        "analyze",
        &format!("oci:{}:slim", out.path().display()),
        "--base-image",
        &base,
    ]);
    for l in &again["layers"].as_array().unwrap()[2..] {
        assert_eq!(l["compression"], "gzip");
        assert_eq!(l["missing_parents"], 0, "{l}");
        assert_eq!(l["hardlinks"], 0, "{l}");
    }
    let ids: Vec<&str> = again["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    for gone in [
        "code-not-last",
        "deps-after-code",
        "build-tools",
        "hardlinks",
        "missing-parent-dirs",
    ] {
        assert!(!ids.contains(&gone), "{gone} still reported: {ids:?}");
    }

    // Same input, same bytes; and a code-only change keeps the deps layer.
    let r2 = optimize(
        &env,
        &src("app"),
        &format!("oci:{}:slim-again", out.path().display()),
        &["--base-image", &base],
    );
    assert_eq!(r2["destination"]["digest"], r["destination"]["digest"]);
    let v2 = optimize(
        &env,
        &src("app-v2"),
        &format!("oci:{}:slim-v2", out.path().display()),
        &["--base-image", &base],
    );
    let digest = |r: &Value, role: &str| {
        r["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["role"] == role)
            .unwrap()["digest"]
            .clone()
    };
    assert_eq!(
        digest(&v2, "deps"),
        digest(&r, "deps"),
        "deps layer unchanged by a code-only change"
    );
    assert_eq!(digest(&v2, "system"), digest(&r, "system"));
    assert_ne!(digest(&v2, "code"), digest(&r, "code"));
    let transfers: Vec<&str> = v2["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["transfer"].as_str().unwrap())
        .collect();
    assert_eq!(
        transfers,
        ["existed", "existed", "existed", "existed", "uploaded"],
        "only the code layer is new"
    );
}

#[test]
fn whiteouts_hardlinks_into_the_base_and_special_files_survive() {
    let layout = tempfile::tempdir().unwrap();
    edge::write(layout.path(), "edge", false, Compression::Gzip);
    edge::write_base(layout.path(), "edge-base");
    let out = tempfile::tempdir().unwrap();
    let env = Env::new();
    let base = format!("oci:{}:edge-base", layout.path().display());
    let r = optimize(
        &env,
        &format!("oci:{}:edge", layout.path().display()),
        &format!("oci:{}:out", out.path().display()),
        &["--base-image", &base],
    );
    assert_eq!(r["base"]["layers"], 1);
    let source = walk(&rootfs(&umoci_unpack(layout.path(), "edge")));
    let output = walk(&rootfs(&umoci_unpack(out.path(), "out")));
    assert_same_minus_removed_but(
        &source,
        &output,
        &removed_paths(&r),
        &["implicit", "implicit/dir"],
    );
    // The deletions the source made to base files are whiteouts in the output.
    let whiteouts: u64 = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["whiteouts"].as_u64().unwrap())
        .sum();
    assert!(whiteouts >= 4, "d1/x, t, o/old, o/sub: {whiteouts}");
    // l2 is a hard link to a base file: written as a copy, and the cost reported.
    let copied: u64 = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["hardlink_copy_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 3000);
}

#[test]
fn registry_to_registry_with_mounts_and_every_destination_transport() {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let registry = Registry::start();
    let base = format!("{}/lambda/base:1", registry.host);
    let app = format!("{}/fn/app:build-1", registry.host);
    skopeo_copy(
        &format!("oci:{}:base", layout.path().display()),
        &format!("docker://{base}"),
        &["--preserve-digests"],
    );
    skopeo_copy(
        &format!("oci:{}:app", layout.path().display()),
        &format!("docker://{app}"),
        &["--preserve-digests"],
    );
    let env = Env::new();
    let slim = format!("{}/fn/app-slim:1", registry.host);
    let r = optimize(&env, &app, &slim, &["--base-image", &base]);
    let transfers: Vec<&str> = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["transfer"].as_str().unwrap())
        .collect();
    assert_eq!(
        &transfers[..2],
        ["mounted", "mounted"],
        "base layers mounted from the source repository"
    );
    assert_eq!(&transfers[2..], ["uploaded", "uploaded", "uploaded"]);

    // skopeo reads the result, digest for digest.
    let copy = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{slim}"),
        &format!("oci:{}:slim", copy.path().display()),
        &["--preserve-digests"],
    );
    let source = walk(&rootfs(&umoci_unpack(layout.path(), "app")));
    let output = walk(&rootfs(&umoci_unpack(copy.path(), "slim")));
    assert_same_minus_removed(&source, &output, &removed_paths(&r));

    // A docker archive as destination, read back by skopeo.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("slim.tar");
    let ra = optimize(
        &env,
        &app,
        &format!("docker-archive:{}:app:slim", archive.display()),
        &["--base-image", &base],
    );
    assert_eq!(
        ra["destination"]["digest"], r["destination"]["digest"],
        "same image whatever the destination"
    );
    let via = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:x", via.path().display()),
        &[],
    );
    let output = walk(&rootfs(&umoci_unpack(via.path(), "x")));
    assert_same_minus_removed(&source, &output, &removed_paths(&ra));
    let entries: Vec<String> = tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(
        entries.contains(&"manifest.json".to_string())
            && entries.contains(&"index.json".to_string())
    );
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
fn dry_run_thresholds_and_zstd() {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let env = Env::new();
    let src = format!("oci:{}:app", layout.path().display());
    let base = format!("oci:{}:base", layout.path().display());
    let out = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:x", out.path().display());

    let r = optimize(&env, &src, &dst, &["--base-image", &base, "--dry-run"]);
    assert_eq!(r["dry_run"], true);
    assert!(r["removed"]["files"].as_u64().unwrap() > 0);
    assert!(
        !out.path().join("index.json").exists(),
        "a dry run writes nothing"
    );

    // CI gates: exit 3 and no tag when a threshold is missed, 0 (and, with -q, a
    // silent stderr) when it is met.
    for (flag, value, code, says) in [
        (
            "--fail-if-cold-start-bytes-over",
            "1KB",
            3,
            Some("cold-start bytes"),
        ),
        (
            "--fail-if-savings-under",
            "99",
            3,
            Some("nothing was tagged"),
        ),
        ("--fail-if-savings-under", "50", 0, None),
    ] {
        let o = env.run(&[
            "optimize",
            &src,
            &dst,
            "--offline",
            "--base-image",
            &base,
            flag,
            value,
            "-q",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{flag} {value}: {err}");
        match says {
            Some(says) => assert!(err.contains(says), "{flag} {value}: {err}"),
            None => assert!(err.trim().is_empty(), "{flag} {value}: {err}"),
        }
        assert_eq!(tagged(out.path(), "x"), code == 0, "{flag} {value}");
    }

    let o = env.run(&[
        "optimize",
        &src,
        &format!("oci:{}:z", out.path().display()),
        "--offline",
        "--base-image",
        &base,
        "--compression",
        "zstd",
        "--format",
        "json",
    ]);
    assert_success(&o, "optimize --compression zstd");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("zstd layers are for images that run elsewhere")
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let new: Vec<&Value> = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] != "base")
        .collect();
    assert_eq!(new.len(), 3, "system, deps and code layers");
    assert!(
        new.iter()
            .all(|l| l["media_type"] == "application/vnd.oci.image.layer.v1.tar+zstd")
    );
    // umoci 0.4 cannot read zstd: skopeo (containers/image) converts the layers
    // back to gzip, then the unpacked tree must be the source's minus the removals.
    let gz = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("oci:{}:z", out.path().display()),
        &format!("oci:{}:z", gz.path().display()),
        &["--dest-compress-format", "gzip"],
    );
    let source = walk(&rootfs(&umoci_unpack(layout.path(), "app")));
    let output = walk(&rootfs(&umoci_unpack(gz.path(), "z")));
    assert_same_minus_removed(&source, &output, &removed_paths(&r));
    let o = env.run(&[
        "optimize",
        &src,
        &dst,
        "--offline",
        "--compression",
        "zstd",
        "--manifest-format",
        "docker",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

fn config_of(reference: &str) -> Value {
    let out = std::process::Command::new(support::require("skopeo", "skopeo"))
        .args(["inspect", "--tls-verify=false", "--config", reference])
        .output()
        .unwrap();
    assert_success(&out, "skopeo inspect --config");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_recompressed_base_is_written_as_the_bases_own_blobs() {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let registry = Registry::start();
    let h = &registry.host;
    skopeo_copy(
        &format!("oci:{}:base", layout.path().display()),
        &format!("docker://{h}/lambda/base:1"),
        &["--preserve-digests"],
    );
    // The user's image carries every layer recompressed to zstd (base included).
    // (Recompressed into a layout first: towards a registry, skopeo would reuse
    // the gzip blobs it knows are there.)
    let zstd = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("oci:{}:app", layout.path().display()),
        &format!("oci:{}:z", zstd.path().display()),
        &["--dest-compress-format", "zstd"],
    );
    skopeo_copy(
        &format!("oci:{}:z", zstd.path().display()),
        &format!("docker://{h}/fn/app-zstd:1"),
        &["--preserve-digests"],
    );
    let env = Env::new();
    let base = format!("{h}/lambda/base:1");
    let before = env.report(&[
        "analyze",
        &format!("{h}/fn/app-zstd:1"),
        "--base-image",
        &base,
    ]);
    assert_eq!(
        before["base"]["layers"], 2,
        "matched by diff_id, whatever the compression"
    );
    assert_eq!(before["layers"][0]["compression"], "zstd");
    let r = optimize(
        &env,
        &format!("{h}/fn/app-zstd:1"),
        &format!("{h}/fn/app-slim:1"),
        &["--base-image", &base],
    );
    // skopeo's reading of what was pushed: the base's own gzip descriptors.
    assert_eq!(
        layer_descriptors(&raw_manifest(&format!("docker://{h}/fn/app-slim:1")), 2),
        layer_descriptors(&raw_manifest(&format!("docker://{base}")), 2),
        "the base layers are the base's gzip blobs"
    );
    // And the registry's log: those blobs were mounted from the base's repository
    // (201 Created), never uploaded.
    let log = registry.log();
    for i in 0..2 {
        assert_eq!(r["new_layers"][i]["transfer"], "mounted");
        let digest = r["new_layers"][i]["digest"].as_str().unwrap();
        let hex = digest.trim_start_matches("sha256:");
        let mounts: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"POST /v2/fn/app-slim/blobs/uploads/?") && l.contains(hex))
            .collect();
        assert!(
            mounts.len() == 1 && mounts[0].contains("from=lambda") && mounts[0].contains("\" 201 "),
            "one mount of {digest} answered 201: {mounts:#?}"
        );
        assert!(
            !log.lines()
                .any(|l| l.contains("PUT /v2/fn/app-slim/blobs/uploads/") && l.contains(hex)),
            "{digest} was uploaded"
        );
    }
    // The pushed image, pulled by skopeo, is the source minus the removed paths.
    let copy = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{h}/fn/app-slim:1"),
        &format!("oci:{}:x", copy.path().display()),
        &[],
    );
    let source = walk(&rootfs(&umoci_unpack(layout.path(), "app")));
    let output = walk(&rootfs(&umoci_unpack(copy.path(), "x")));
    assert_same_minus_removed(&source, &output, &removed_paths(&r));
}

#[test]
fn index_in_manifest_out_family_kept_provenance_recorded() {
    let layout = tempfile::tempdir().unwrap();
    edge::write(layout.path(), "img", false, Compression::Gzip);
    edge::write_index_with_attestation(layout.path(), "img", "idx");
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    let r = optimize(
        &env,
        &format!("oci:{}:idx", layout.path().display()),
        &format!("oci:{}:one", out.path().display()),
        &[],
    );
    assert_eq!(
        r["destination"]["media_type"], "application/vnd.oci.image.manifest.v1+json",
        "one manifest out of an index"
    );

    // A Docker v2s2 source stays Docker (made by skopeo, an independent producer).
    let registry = Registry::start();
    let h = &registry.host;
    coldpress::example::write_example(layout.path()).unwrap();
    skopeo_copy(
        &format!("oci:{}:app", layout.path().display()),
        &format!("docker://{h}/fn/app:docker"),
        &["--format", "v2s2"],
    );
    let r = optimize(
        &env,
        &format!("{h}/fn/app:docker"),
        &format!("{h}/fn/app:slim"),
        &[],
    );
    assert_eq!(
        r["destination"]["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        r["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["media_type"] == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
    let r2 = optimize(
        &env,
        &format!("{h}/fn/app:docker"),
        &format!("{h}/fn/app:slim-oci"),
        &["--manifest-format", "oci"],
    );
    assert_eq!(
        r2["destination"]["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // No base here: everything was squashed by class, code last, except the
    // stand-in base's runtime layer: all system, nothing stripped, it passes
    // through as it is.
    let roles: Vec<(&str, &str)> = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["role"].as_str().unwrap(), l["origin"].as_str().unwrap()))
        .collect();
    // The example base's OS layer carries /usr/share/doc, which the safe profile
    // strips: no source layer is whole, so none passes through.
    assert_eq!(
        roles,
        [
            ("system", "written"),
            ("deps", "written"),
            ("code", "written")
        ]
    );

    let cfg = config_of(&format!("docker://{h}/fn/app:slim"));
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["dev.coldpress.source.digest"], r["source"]["digest"]);
    assert!(labels["dev.coldpress.version"].is_string());
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/lambda-entrypoint.sh"]),
        "runtime settings kept"
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["handler.handler"]));
    assert_eq!(cfg["config"]["WorkingDir"], "/var/task");
}

#[test]
fn strip_globs_remove_user_paths_and_keep_globs_win_over_every_rule() {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    let r = optimize(
        &env,
        &format!("oci:{}:app", layout.path().display()),
        &format!("oci:{}:x", out.path().display()),
        &[
            "--base-image",
            &format!("oci:{}:base", layout.path().display()),
            "--strip",
            "/var/task/app/**",
            "--keep",
            "/usr/bin/make",
            "--keep",
            "/var/task/.git",
        ],
    );
    let rules: std::collections::BTreeMap<&str, &str> = r["removed"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(rules.get("/var/task/app/service.py"), Some(&"user-strip"));
    assert!(
        !rules.contains_key("/usr/bin/make"),
        "--keep wins over build-toolchain"
    );
    assert!(
        !rules.contains_key("/var/task/.git/HEAD"),
        "--keep DIR keeps what is in it"
    );
    assert_eq!(rules.get("/usr/bin/gcc-12"), Some(&"build-toolchain"));
}

/// A registry with the example's base (`lambda/base:1`) and two builds of
/// its app that differ in the code only (`fn/app:build-1`, `fn/app:build-2`).
fn two_builds() -> Registry {
    let registry = Registry::start();
    support::push_example(
        &registry,
        &[
            ("base", "lambda/base:1"),
            ("app", "fn/app:build-1"),
            ("app-v2", "fn/app:build-2"),
        ],
        &[],
    );
    registry
}

/// Issue 10, the ephemeral CI runner: build 2 (a code-only change) optimized with
/// an empty cache finds build 1's layers by the keys its config records, builds
/// only the code layer, and its output is what a full rebuild gives.
#[test]
fn a_redeploy_with_an_empty_cache_reuses_the_previous_outputs_layers() {
    let registry = two_builds();
    let h = &registry.host;
    let base = format!("{h}/lambda/base:1");
    let slim = format!("{h}/fn/app-slim");
    let by_origin = |r: &Value| -> Vec<(String, String, String)> {
        r["new_layers"].as_array().unwrap()[2..]
            .iter()
            .map(|l| {
                (
                    l["role"].as_str().unwrap().to_string(),
                    l["origin"].as_str().unwrap().to_string(),
                    l["transfer"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let r1 = optimize(
        &Env::new(),
        &format!("{h}/fn/app:build-1"),
        &format!("{slim}:1"),
        &["--base-image", &base],
    );
    let keys =
        config_of(&format!("docker://{slim}:1"))["config"]["Labels"]["dev.coldpress.layer-keys"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(
        keys.split(' ').count(),
        3,
        "one key per written layer: {keys}"
    );

    // A new runner: empty cache, build 2, reusing build 1's output.
    let log_mark = registry.log().len();
    let r2 = optimize(
        &Env::new(),
        &format!("{h}/fn/app:build-2"),
        &format!("{slim}:2"),
        &["--base-image", &base, "--reuse-from", &format!("{slim}:1")],
    );
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        by_origin(&r2),
        [
            t("system", "memoized", "existed"),
            t("deps", "memoized", "existed"),
            t("code", "written", "uploaded")
        ]
    );
    assert_eq!(r2["verified"], true);
    let log = registry.log()[log_mark..].to_string();
    // The registry saw one image layer upload (the code) besides the config;
    // the rest were listings of the source layers that changed, attached to
    // build 2's output for the runner after it.
    let (_, listings) = support::attached_listings(
        &format!("docker://{slim}"),
        r2["destination"]["digest"].as_str().unwrap(),
    );
    let puts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"PUT /v2/fn/app-slim/blobs/uploads/") && l.contains("\" 201 "))
        .filter(|l| !listings.iter().any(|(d, _, _)| l.contains(&d[7..])))
        .collect();
    assert_eq!(puts.len(), 2, "code layer and config only: {puts:#?}");
    // Build 1's output carried the listings of its source's layers: this
    // runner downloaded the layers build 2 changed, and of those it shares
    // with build 1 only ones holding code (the code layer is written from
    // their bytes); none holding only what the memoized layers hold.
    let layers_of = |t: &str| -> Vec<String> {
        raw_manifest(&format!("docker://{h}/fn/app:{t}"))["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (b1, b2) = (layers_of("build-1"), layers_of("build-2"));
    // A download of the blob from any repository counts (the base's too).
    let fetched = |d: &str| {
        log.lines()
            .any(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{d} ")))
    };
    let mut spared = 0;
    for (i, d) in b2.iter().enumerate() {
        let code = r2["layers"][i]["classes"]["code"]["files"]
            .as_u64()
            .unwrap_or(0);
        if !b1.contains(d) {
            assert!(fetched(d), "layer {i} changed: it is read");
        } else if code == 0 {
            assert!(
                !fetched(d),
                "layer {i} is build 1's and holds no code: {log}"
            );
            spared += 1;
        }
    }
    assert!(
        spared >= 3,
        "the base and dependency layers are not read ({spared})"
    );
    assert_eq!(listings.len(), b2.len(), "every source layer is listed");

    // Same output as building every layer again.
    let full = optimize(
        &Env::new(),
        &format!("{h}/fn/app:build-2"),
        &format!("{slim}:2-full"),
        &["--base-image", &base, "--no-reuse"],
    );
    assert!(by_origin(&full).iter().all(|(_, o, _)| o == "written"));
    assert_eq!(full["destination"]["digest"], r2["destination"]["digest"]);
    assert_ne!(r1["destination"]["digest"], r2["destination"]["digest"]);

    // The default reuse source is the destination tag's current image; and a
    // runner's own cache is enough without any registry keys.
    let env = Env::new();
    let again = optimize(
        &env,
        &format!("{h}/fn/app:build-2"),
        &format!("{slim}:2"),
        &["--base-image", &base],
    );
    assert!(by_origin(&again).iter().all(|(_, o, _)| o == "memoized"));
    let cached = optimize(
        &env,
        &format!("{h}/fn/app:build-1"),
        &format!("{slim}:1-again"),
        &["--base-image", &base, "--no-reuse"],
    );
    assert_eq!(
        by_origin(&cached)
            .iter()
            .map(|(_, o, _)| o.as_str())
            .collect::<Vec<_>>(),
        ["memoized", "memoized", "written"],
        "system and deps from the local cache, build 1's code written"
    );
    assert_eq!(cached["destination"]["digest"], r1["destination"]["digest"]);
}

/// The listings go only beside a registry image, only under the referrers
/// tag, and never over what another tool put there: an output the same as an
/// earlier one keeps one coldpress entry in its referrers index, an OCI
/// layout destination holds one image, and a tag that is not an index stays
/// as it was (a warning; the output is still tagged).
#[test]
fn listings_are_attached_beside_registry_images_only_and_never_over_another_tag() {
    let registry = Registry::start();
    let h = &registry.host;
    support::push_example(
        &registry,
        &[("base", "lambda/base:1"), ("app", "fn/app:build-1")],
        &[],
    );
    let base = format!("{h}/lambda/base:1");
    let src = format!("{h}/fn/app:build-1");
    let env = Env::new();
    let run = |dst: &str| {
        let out = env.run(&[
            "optimize",
            &src,
            dst,
            "--base-image",
            &base,
            "--offline",
            "--format",
            "json",
        ]);
        assert_success(&out, "optimize");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let digest = r["destination"]["digest"].as_str().unwrap().to_string();
        (digest, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (digest, stderr) = run(&format!("{h}/fn/slim:1"));
    assert!(!stderr.contains("listing"), "{stderr}");
    let tag = digest.replace(':', "-");
    let (artifact, blobs) = support::attached_listings(&format!("docker://{h}/fn/slim"), &digest);
    assert_eq!(
        artifact["artifactType"],
        "application/vnd.coldpress.layer-listings.v1"
    );
    assert_eq!(
        artifact["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let source_layers = raw_manifest(&format!("docker://{src}"))["layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(blobs.len(), source_layers);

    // The same output again (a second tag): the index keeps one entry of ours.
    let (again, _) = run(&format!("{h}/fn/slim:1-again"));
    assert_eq!(again, digest);
    let index = raw_manifest(&format!("docker://{h}/fn/slim:{tag}"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");

    // Another repository whose referrers tag for that digest already names
    // an image, not an index: it is left alone.
    skopeo_copy(
        &format!("docker://{base}"),
        &format!("docker://{h}/fn/other:{tag}"),
        &["--preserve-digests"],
    );
    let (other, stderr) = run(&format!("{h}/fn/other:1"));
    assert_eq!(other, digest, "the output is tagged");
    assert!(
        stderr.contains("its layer listings were not attached")
            && stderr.contains("not an index of referrers"),
        "{stderr}"
    );
    assert_eq!(
        skopeo_digest(&format!("docker://{h}/fn/other:{tag}")),
        skopeo_digest(&format!("docker://{base}")),
        "the other tag still names what it named"
    );

    // An OCI layout destination holds the one image, and no warning is given.
    let out = tempfile::tempdir().unwrap();
    let (_, stderr) = run(&format!("oci:{}:slim", out.path().display()));
    assert!(!stderr.contains("listing"), "{stderr}");
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
}

/// Listings from a registry are checked one by one: a listing that names
/// another layer than the one it is attached for is refused with a warning
/// that says so, one from another coldpress version is passed over, and
/// either way that layer is read; the output is what a run that read every
/// layer makes.
#[test]
fn a_forged_or_foreign_listing_is_not_used() {
    let registry = two_builds();
    let h = &registry.host;
    let base = format!("{h}/lambda/base:1");
    let r1 = optimize(
        &Env::new(),
        &format!("{h}/fn/app:build-1"),
        &format!("{h}/fn/slim:1"),
        &["--base-image", &base],
    );
    let digest = r1["destination"]["digest"].as_str().unwrap();
    let tag = digest.replace(':', "-");
    let index = raw_manifest(&format!("docker://{h}/fn/slim:{tag}"));
    let mut artifact = raw_manifest(&format!(
        "docker://{h}/fn/slim@{}",
        index["manifests"][0]["digest"].as_str().unwrap()
    ));
    // Swap what the first two listings claim to list; mark another one of
    // a layer build 2 shares as another version's.
    let build2: Vec<Value> = raw_manifest(&format!("docker://{h}/fn/app:build-2"))["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    let layers = artifact["layers"].as_array_mut().unwrap();
    let key = "dev.coldpress.layer.digest";
    // One the code layer does not need (it would be read for its bytes anyway).
    let no_code = |i: usize| {
        r1["layers"][i]["classes"]["code"]["files"]
            .as_u64()
            .unwrap_or(0)
            == 0
    };
    let third = (2..layers.len())
        .find(|&i| build2.contains(&layers[i]["annotations"][key]) && no_code(i))
        .expect("build 2 shares a layer without code above the first two");
    let (a, b) = (
        layers[0]["annotations"][key].clone(),
        layers[1]["annotations"][key].clone(),
    );
    layers[0]["annotations"][key] = b.clone();
    layers[1]["annotations"][key] = a.clone();
    layers[third]["annotations"]["dev.coldpress.version"] = "0.0.0-elsewhere".into();
    let other_version = layers[third]["annotations"][key]
        .as_str()
        .unwrap()
        .to_string();
    let forged = serde_json::to_vec(&artifact).unwrap();
    let forged_digest = coldpress::digest::Digest::of(&forged).to_string();
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let put = |path: &str, ct: &str, body: &[u8]| {
        let status = support::http_put(h, path, ct, body);
        assert_eq!(status, 201, "PUT {path}");
    };
    put(
        &format!("/v2/fn/slim/manifests/{forged_digest}"),
        oci_manifest,
        &forged,
    );
    let mut index = index.clone();
    index["manifests"][0]["digest"] = forged_digest.clone().into();
    index["manifests"][0]["size"] = forged.len().into();
    put(
        &format!("/v2/fn/slim/manifests/{tag}"),
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );

    let mark = registry.log().len();
    let out = Env::new().run(&[
        "optimize",
        &format!("{h}/fn/app:build-2"),
        &format!("{h}/fn/slim:2"),
        "--base-image",
        &base,
        "--reuse-from",
        &format!("{h}/fn/slim:1"),
        "--offline",
        "-v",
        "--format",
        "json",
    ]);
    assert_success(&out, "optimize");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not using a layer listing"))
        .collect();
    assert_eq!(refused.len(), 2, "{stderr}");
    for (claimed, is) in [(&b, &a), (&a, &b)] {
        assert!(
            refused.iter().any(|l| l.contains(&format!(
                "it is the listing of {}, not {}",
                is.as_str().unwrap(),
                claimed.as_str().unwrap()
            ))),
            "{stderr}"
        );
    }
    // The three layers whose listings went unused were read.
    let log = registry.log()[mark..].to_string();
    for d in [a.as_str().unwrap(), b.as_str().unwrap(), &other_version] {
        assert!(
            log.lines()
                .any(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{d} "))),
            "{d} was read:\n{stderr}"
        );
    }
    let r2: Value = serde_json::from_slice(&out.stdout).unwrap();
    let full = optimize(
        &Env::new(),
        &format!("{h}/fn/app:build-2"),
        &format!("{h}/fn/slim:2-full"),
        &["--base-image", &base, "--no-reuse"],
    );
    assert_eq!(r2["destination"]["digest"], full["destination"]["digest"]);
}

/// Words for text that compresses like source code does: much better at level
/// 9 than at level 1.
fn prose(seed: u64, bytes: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "function",
        "return",
        "const",
        "module",
        "exports",
        "require",
        "value",
        "index",
        "length",
        "object",
        "string",
        "number",
        "undefined",
        "prototype",
        "callback",
        "error",
        "result",
        "options",
        "buffer",
        "stream",
        "promise",
        "resolve",
        "reject",
        "this",
        "that",
        "else",
        "if",
        "for",
        "while",
        "var",
        "let",
        "new",
        "typeof",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(bytes + 16);
    while out.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out
}

fn noise(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A function image whose two dependency layers were compressed at level 9:
/// `optimize --compression-level 1` merges them into one deps layer that is
/// bigger than both, so the output would be worse than the source.
fn write_well_compressed(layout: &Path) {
    use coldpress::example::{ImageSpec, base_layers, meta};
    use coldpress::transport::oci_layout::OciLayoutSink;
    use coldpress::writer::{LayerWriter, WriteKind};
    let tmp = tempfile::tempdir().unwrap();
    let mut base = ImageSpec::lambda(&[]);
    for (l, by) in base_layers(tmp.path()).unwrap() {
        base.add(l, by);
    }
    base.write(&OciLayoutSink::create(layout, Some("base")).unwrap())
        .unwrap();
    let layer = |files: &[(&str, Vec<u8>)]| {
        let mut w = LayerWriter::create(tmp.path(), Compression::Gzip, Some(9)).unwrap();
        let mut dirs = BTreeSet::new();
        for (path, _) in files {
            let mut p = Path::new(path).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_str().unwrap().to_string());
                p = d.parent();
            }
        }
        for d in &dirs {
            w.append(d, WriteKind::Dir, &meta(0o755)).unwrap();
        }
        for (path, data) in files {
            w.append(
                path,
                WriteKind::File {
                    size: data.len() as u64,
                    data: &mut &data[..],
                },
                &meta(0o644),
            )
            .unwrap();
        }
        w.finish().unwrap()
    };
    let mut app = ImageSpec::lambda(&["index.handler"]);
    app.layers = base.layers.clone();
    for (seed, name) in [(1, "alpha"), (2, "beta")] {
        let dir = format!("var/task/node_modules/{name}");
        let mut files = vec![
            (
                format!("{dir}/package.json"),
                format!(r#"{{"name":"{name}","version":"1.0.0"}}"#).into_bytes(),
            ),
            (format!("{dir}/index.js"), prose(seed, 1 << 20)),
        ];
        if name == "alpha" {
            // Incompressible, and stripped by the `tests` rule: at level 6 the
            // output gains more here than the recompression costs; at level 1 not.
            files.push((format!("{dir}/test/fixture.bin"), noise(64 << 10)));
        }
        let files: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
        app.add(layer(&files), &format!("RUN npm install {name}"));
    }
    app.add(
        layer(&[(
            "var/task/index.js",
            b"exports.handler = async () => ({ ok: true });\n".to_vec(),
        )]),
        "COPY index.js /var/task/",
    );
    app.write(&OciLayoutSink::create(layout, Some("app")).unwrap())
        .unwrap();
}

#[test]
fn an_output_worse_than_its_source_is_not_written_and_the_source_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    write_well_compressed(&layout);
    let env = Env::new();
    let src = format!("oci:{}:app", layout.display());
    let dst = format!("oci:{}:slim", layout.display());
    let base = format!("oci:{}:base", layout.display());
    let out = env.run(&[
        "optimize",
        &src,
        &dst,
        "--base-image",
        &base,
        "--compression-level",
        "1",
        "--offline",
        "--format",
        "json",
    ]);
    assert_success(&out, "optimize");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The rewritten deps layer (level 1) is bigger than the two level-9 layers.
    let nw = &r["never_worse"];
    assert_eq!(nw["ok"], false, "{nw}");
    let failed: Vec<&str> = nw["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["cold-start-bytes"], "{nw}");
    assert!(
        nw["kept_source"]
            .as_str()
            .is_some_and(|w| w.contains("cold-start-bytes")),
        "{nw}"
    );
    assert!(stderr.contains("keeping the source's layers"), "{stderr}");
    // The destination is the source image itself: same manifest, byte for byte
    // (read with skopeo, not coldpress), and the report says so.
    assert_eq!(skopeo_digest(&dst), skopeo_digest(&src));
    eprintln!("kept: {}", r["never_worse"]);
    assert_eq!(r["removed"]["files"], 0, "{}", r["removed"]);
    assert_eq!(
        r["after"]["cold_start_bytes"],
        r["before"]["cold_start_bytes"]
    );
    // At the default level the same image slims: the stripped test data pays
    // for the recompression.
    let ok = optimize(
        &env,
        &src,
        &format!("oci:{}:slim2", layout.display()),
        &["--base-image", &base],
    );
    assert_eq!(ok["never_worse"]["ok"], true, "{}", ok["never_worse"]);
    assert!(ok["never_worse"].get("kept_source").is_none());
    assert_eq!(ok["removed"]["files"], 1, "{}", ok["removed"]);
    assert_ne!(
        skopeo_digest(&format!("oci:{}:slim2", layout.display())),
        skopeo_digest(&src)
    );
}
