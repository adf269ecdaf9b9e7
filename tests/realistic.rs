//! The realistic case, end to end: a naive single-stage Lambda image built from
//! real Debian and PyPI packages (build tools, pip cache, tests, code copied before
//! dependencies). analyze must agree with umoci and find what is wrong; optimize
//! must slim it, keep the base, put code last, and the function must still run.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::listing::{differences, files};
use support::{
    Env, Registry, invoke_handler, layer_descriptors, raw_manifest, realistic_fixture, rootfs,
    skopeo_copy, umoci_unpack, walk,
};

#[test]
fn realistic_lambda_image() {
    let layout = realistic_fixture();
    let oci = |t: &str| format!("oci:{}:{t}", layout.display());
    let registry = Registry::start();
    let host = &registry.host;
    let base = format!("{host}/lambda/python:3.11");
    skopeo_copy(
        &oci("base"),
        &format!("docker://{base}"),
        &["--preserve-digests"],
    );
    for (tag, to) in [
        ("app", "orders/summary:build-1"),
        ("app-v2", "orders/summary:build-2"),
    ] {
        skopeo_copy(
            &oci(tag),
            &format!("docker://{host}/{to}"),
            &["--preserve-digests"],
        );
    }
    let env = Env::new();
    let app = format!("{host}/orders/summary:build-1");

    // analyze: base matched, problems found, final filesystem as umoci sees it.
    let r = env.report(&["analyze", &app, "--base-image", &base, "--list-files"]);
    assert_eq!(r["base"]["image"], base.as_str());
    assert_eq!(r["base"]["layers"], 3);
    assert_eq!(r["base"]["full"], true);
    let app_layers: u64 = r["layers"].as_array().unwrap()[3..]
        .iter()
        .map(|l| l["compressed_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(r["before"]["cold_start_bytes"], app_layers);
    for rule in [
        "build-toolchain",
        "package-manager-cache",
        "tests",
        "dev-dependencies",
        "vcs-editor-litter",
    ] {
        assert!(
            r["strippable"]["by_rule"][rule]["bytes"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{rule}: {}",
            r["strippable"]
        );
    }
    for id in [
        "code-not-last",
        "deps-after-code",
        "build-tools",
        "no-lambda-base",
    ] {
        assert!(
            support::finding_ids(&r).contains(&id.to_string()),
            "{id} missing: {:?}",
            support::finding_ids(&r)
        );
    }
    let pkgs: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["numpy", "pydantic", "requests", "pytest"] {
        assert!(pkgs.contains(p), "{p} not found among {pkgs:?}");
    }
    let listed = files(&r);
    assert_eq!(listed["var/task/numpy/__init__.py"]["class"], "deps");
    assert_eq!(listed["var/task/handler.py"]["class"], "code");
    assert!(
        listed["var/task/handler.py"]["reason"]
            .as_str()
            .unwrap()
            .contains("task root")
    );
    assert_eq!(listed["usr/bin/gcc-12"]["class"], "system");
    let source_bundle = umoci_unpack(&layout, "app");
    let source = walk(&rootfs(&source_bundle));
    let diffs = differences(&listed, &source);
    assert!(
        diffs.is_empty(),
        "coldpress and umoci disagree:\n{}",
        diffs.join("\n")
    );

    // optimize registry → registry.
    let slim = format!("{host}/orders/summary:build-1-slim");
    let o = env.report(&["optimize", &app, &slim, "--base-image", &base]);
    let roles: Vec<&str> = o["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["base", "base", "base", "system", "deps", "code"]);
    assert_eq!(
        layer_descriptors(&raw_manifest(&format!("docker://{slim}")), 3),
        layer_descriptors(&raw_manifest(&format!("docker://{base}")), 3),
        "the base's own blobs, byte for byte"
    );
    assert!(
        o["after"]["cold_start_bytes"].as_u64().unwrap()
            < o["before"]["cold_start_bytes"].as_u64().unwrap()
    );

    // umoci: the output is the source minus exactly the removed paths.
    let out_layout = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{slim}"),
        &format!("oci:{}:slim", out_layout.path().display()),
        &["--preserve-digests"],
    );
    let out_bundle = umoci_unpack(out_layout.path(), "slim");
    let output = walk(&rootfs(&out_bundle));
    let removed: BTreeSet<String> = o["removed"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap()[1..].to_string())
        .collect();
    let mut problems = Vec::new();
    for (p, e) in &source {
        match (removed.contains(p), output.get(p)) {
            (true, Some(_)) => problems.push(format!("{p}: removed but present")),
            (false, None) => problems.push(format!("{p}: missing")),
            (false, Some(x)) if x != e => problems.push(format!("{p}: {e:?} vs {x:?}")),
            _ => {}
        }
    }
    problems.extend(
        output
            .keys()
            .filter(|p| !source.contains_key(*p))
            .map(|p| format!("{p}: only in the output")),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Bytecode for the image's interpreter stays (Lambda's /var/task is read-only).
    assert!(
        output.keys().any(
            |p| p.starts_with("var/task/numpy/__pycache__/") && p.ends_with(".cpython-311.pyc")
        )
    );

    // The function still runs, and gives the same answer.
    let before = invoke_handler(&rootfs(&source_bundle), "handler.handler");
    let after = invoke_handler(&rootfs(&out_bundle), "handler.handler");
    assert!(before.contains("numpy_sum"), "{before}");
    assert_eq!(after, before);

    // The aggressive profile also takes locales, type stubs and the like (a dry run).
    let dry = env.report(&[
        "optimize",
        &app,
        &format!("{host}/orders/summary:never"),
        "--base-image",
        &base,
        "--profile",
        "aggressive",
        "--dry-run",
    ]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["removed"]["by_rule"]["type-stubs"]["bytes"].as_u64().unwrap() > 0,
        "{}",
        dry["removed"]["by_rule"]
    );
    assert!(dry["removed"]["bytes"].as_u64().unwrap() > o["removed"]["bytes"].as_u64().unwrap());

    // A code-only change: same deps layer digest, only the code layer uploaded.
    let o2 = env.report(&[
        "optimize",
        &format!("{host}/orders/summary:build-2"),
        &format!("{host}/orders/summary:build-2-slim"),
        "--base-image",
        &base,
    ]);
    let layer = |r: &Value, role: &str| {
        r["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["role"] == role)
            .unwrap()
            .clone()
    };
    assert_eq!(layer(&o2, "deps")["digest"], layer(&o, "deps")["digest"]);
    assert_ne!(layer(&o2, "code")["digest"], layer(&o, "code")["digest"]);
    assert_eq!(layer(&o2, "deps")["transfer"], "existed");
    assert_eq!(layer(&o2, "code")["transfer"], "uploaded");
    assert_eq!(
        layer(&o2, "system")["digest"],
        layer(&o, "system")["digest"]
    );
    // Code last and smallest: a code-only deploy ships one small layer.
    for r in [&o, &o2] {
        let layers = r["new_layers"].as_array().unwrap();
        let code = layers.last().unwrap();
        assert_eq!(code["role"], "code");
        let code_bytes = code["compressed_bytes"].as_u64().unwrap();
        assert!(
            layers[..layers.len() - 1]
                .iter()
                .filter(|l| l["role"] != "base")
                .all(|l| l["compressed_bytes"].as_u64().unwrap() > code_bytes),
            "{layers:?}"
        );
    }
    eprintln!(
        "code-only change: uploaded {} bytes in {} blobs, reused {} bytes",
        o2["push"]["uploaded_bytes"], o2["push"]["uploaded_blobs"], o2["push"]["reused_bytes"]
    );
    eprintln!(
        "realistic: compressed {} -> {}, cold start {} -> {}, removed {} bytes {}, deps layer {}",
        o["before"]["compressed_bytes"],
        o["after"]["compressed_bytes"],
        o["before"]["cold_start_bytes"],
        o["after"]["cold_start_bytes"],
        o["removed"]["bytes"],
        o["removed"]["by_rule"],
        layer(&o, "deps")["digest"]
    );
}
