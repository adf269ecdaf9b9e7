//! `coldpress audit` against a real registry with a few dozen images on three
//! bases (some stale), one broken image and one index with attestations:
//! counts, per-image fields equal to `analyze`, each shared layer fetched once
//! (from the registry's access log), resume after a kill, shards, merge, and the
//! HTML page in a real headless browser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coldpress::example::{ImageSpec, Item, app_rest_layers, base_layers, code_layer, write_layer};
use coldpress::image::Compression;
use coldpress::transport::oci_layout::OciLayoutSink;
use serde_json::Value;

use crate::support;
use crate::support::{Env, Registry, assert_success, edge, skopeo_copy};

fn spec(cmd: &[&str]) -> ImageSpec {
    ImageSpec::lambda(cmd)
}

struct Fixture {
    registry: Registry,
    bases: Vec<String>,
    /// (repository, tag) of every image that should analyze fine.
    good: Vec<(String, String)>,
    broken: (String, String),
}

/// Three bases (python v1 and its rebuild v2 under one tag, nodejs), 8 repositories
/// × 3 tags of function images, one broken image, one index with an attestation.
fn fixture() -> Fixture {
    let layout = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let l = layout.path();
    let mut py1 = spec(&[]);
    for (layer, by) in base_layers(tmp.path()).unwrap() {
        py1.add(layer, by);
    }
    let mut py2 = spec(&[]);
    py2.layers = vec![py1.layers[0].clone()];
    py2.add(
        write_layer(
            tmp.path(),
            &[
                Item::Dir("var"),
                Item::Dir("var/runtime"),
                Item::Blob("var/runtime/bootstrap.py", 22_000),
            ],
            Compression::Gzip,
        )
        .unwrap(),
        "runtime rebuilt",
    );
    let mut node = spec(&[]);
    node.add(
        write_layer(
            tmp.path(),
            &[
                Item::Dir("usr"),
                Item::Dir("usr/bin"),
                Item::Blob("usr/bin/node", 3_000_000),
                Item::Dir("var"),
                Item::Dir("var/task"),
            ],
            Compression::Gzip,
        )
        .unwrap(),
        "ADD node.tar.xz /",
    );
    py1.write(&OciLayoutSink::create(l, Some("py1")).unwrap())
        .unwrap();
    py2.write(&OciLayoutSink::create(l, Some("py2")).unwrap())
        .unwrap();
    node.write(&OciLayoutSink::create(l, Some("node")).unwrap())
        .unwrap();
    // Catalog pages of 5, as a registry with distribution's catalog.maxentries
    // serves them: the audit must follow Link headers, and ask without `n` after
    // the registry refuses n=1000.
    let registry = Registry::start_catalog_pages(5);
    let host = registry.host.clone();
    let oci = |t: &str| format!("oci:{}:{t}", l.display());
    skopeo_copy(
        &oci("py1"),
        &format!("docker://{host}/lambda/python:3.12"),
        &["--preserve-digests"],
    );
    skopeo_copy(
        &oci("node"),
        &format!("docker://{host}/lambda/nodejs:20"),
        &["--preserve-digests"],
    );

    // Only the code differs between builds; the other layers are shared, as they
    // would be with a build cache.
    let mut rest = spec(&[]);
    for (layer, by) in app_rest_layers(tmp.path()).unwrap() {
        rest.add(layer, by);
    }
    let mut good = Vec::new();
    for r in 0..8 {
        let repo = format!("team-{}/fn-{r}", r % 3);
        for t in 0..3 {
            let base = match (r, t) {
                (0..=3, 0) => &py1,
                (0..=3, _) => &py2,
                _ => &node,
            };
            let mut app = spec(&["handler.handler"]);
            app.layers = base.layers.clone();
            let handler =
                format!("def handler(event, context):\n    return {{'fn': {r}, 'build': {t}}}\n");
            app.add(
                code_layer(tmp.path(), &handler).unwrap(),
                "COPY . /var/task",
            );
            app.layers.extend(rest.layers.iter().cloned());
            // Later builds are newer; tag order alone would pick b0 and b1 first.
            app.created = format!("2024-03-0{}T00:00:00Z", t + 1);
            let tag = format!("b{t}");
            let name = format!("{r}-{t}");
            app.write(&OciLayoutSink::create(l, Some(&name)).unwrap())
                .unwrap();
            skopeo_copy(
                &oci(&name),
                &format!("docker://{host}/{repo}:{tag}"),
                &["--preserve-digests"],
            );
            good.push((repo.clone(), tag));
        }
    }
    // The python tag moves to the rebuild: images on py1 are now stale.
    skopeo_copy(
        &oci("py2"),
        &format!("docker://{host}/lambda/python:3.12"),
        &["--preserve-digests"],
    );
    good.push(("lambda/python".into(), "3.12".into()));
    good.push(("lambda/nodejs".into(), "20".into()));

    // An index with an attestation manifest.
    edge::write(l, "edge", false, Compression::Gzip);
    edge::write_index_with_attestation(l, "edge", "edge-index");
    skopeo_copy(
        &oci("edge-index"),
        &format!("docker://{host}/multi/arch:latest"),
        &["--all", "--preserve-digests"],
    );
    good.push(("multi/arch".into(), "latest".into()));

    // A broken image: its code layer's bytes are gone from the registry's storage.
    let mut broken = spec(&["handler.handler"]);
    broken.layers = node.layers.clone();
    let code = code_layer(tmp.path(), "def handler(e, c):\n    return 'broken'\n").unwrap();
    let code_digest = code.digest.clone();
    broken.add(code, "COPY . /var/task");
    broken.layers.extend(rest.layers.iter().cloned());
    broken
        .write(&OciLayoutSink::create(l, Some("broken")).unwrap())
        .unwrap();
    skopeo_copy(
        &oci("broken"),
        &format!("docker://{host}/team-x/broken:v1"),
        &["--preserve-digests"],
    );
    let blob = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&code_digest.hex()[..2])
        .join(code_digest.hex())
        .join("data");
    std::fs::remove_file(blob).unwrap();
    Fixture {
        bases: vec![
            format!("{host}/lambda/python:3.12"),
            format!("{host}/lambda/nodejs:20"),
        ],
        registry,
        good,
        broken: ("team-x/broken".into(), "v1".into()),
    }
}

fn audit(env: &Env, f: &Fixture, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "audit".to_string(),
        f.registry.host.clone(),
        "--output".into(),
        out.display().to_string(),
        "--offline".into(),
        "-q".into(),
    ];
    if !extra.contains(&"--tags") {
        args.extend(["--tags".into(), "all".into()]);
    }
    for b in &f.bases {
        args.push("--base-image".into());
        args.push(b.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&a)
}

fn rows(out: &Path) -> Vec<Value> {
    coldpress::audit::read_rows(&out.join("audit.jsonl")).unwrap()
}

fn keys(rows: &[Value]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["repository"].as_str().unwrap().into(),
                r["tag"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Layer blob GETs by coldpress, per digest, from the registry's access log.
fn layer_gets(log: &str, digests: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in log
        .lines()
        .filter(|l| l.contains("coldpress/") && l.contains("\"GET /v2/"))
    {
        if let Some(i) = line.find("/blobs/sha256:") {
            let d = &line[i + 7..i + 7 + 71];
            if digests.contains(d) {
                *counts.entry(d.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[test]
fn every_image_is_audited_as_analyze_sees_it_and_each_shared_layer_fetched_once() {
    let f = fixture();
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    let log_before = f.registry.log().len();
    let started = Instant::now();
    let stdout = audit(&env, &f, out.path(), &["--concurrency", "4"]);
    let first_run = started.elapsed();
    let catalog: Vec<String> = f.registry.log()[log_before..]
        .lines()
        .filter(|l| l.contains("\"GET /v2/_catalog"))
        .map(|l| l.split('"').nth(1).unwrap().to_string())
        .collect();
    let repos: BTreeSet<&str> = f.good.iter().map(|(r, _)| r.as_str()).collect();
    assert!(repos.len() > 10, "more repositories than a page holds");
    assert!(
        // the refused first request, then one page per 5 repositories
        catalog.len() > repos.len().div_ceil(5) && catalog[0].contains("n=1000"),
        "n=1000 refused, then pages of 5 by Link: {catalog:#?}"
    );
    let all = rows(out.path());
    let ok: Vec<&Value> = all.iter().filter(|r| r["status"] == "ok").collect();
    assert_eq!(ok.len(), f.good.len(), "{stdout}");
    let errors: Vec<&Value> = all.iter().filter(|r| r["status"] == "error").collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (
            errors[0]["repository"].as_str().unwrap(),
            errors[0]["tag"].as_str().unwrap()
        ),
        (f.broken.0.as_str(), f.broken.1.as_str())
    );
    assert!(
        errors[0]["error"].as_str().unwrap().contains("not found"),
        "{}",
        errors[0]
    );

    // Each layer was fetched once, however many images share it.
    let digests: BTreeSet<String> = ok
        .iter()
        .flat_map(|r| {
            r["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
        })
        .collect();
    let gets = layer_gets(&f.registry.log()[log_before..], &digests);
    let shared = ok
        .iter()
        .flat_map(|r| r["layers"].as_array().unwrap())
        .count();
    assert!(
        shared > 3 * digests.len(),
        "the fixture shares layers ({shared} uses of {} layers)",
        digests.len()
    );
    assert!(
        gets.values().all(|&n| n == 1),
        "layers fetched more than once: {gets:?}"
    );
    assert_eq!(
        gets.len(),
        digests.len(),
        "every layer read from the registry"
    );

    let s: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["images"], f.good.len());
    assert_eq!(s["errors"], 1);
    assert_eq!(s["unique_layers"], digests.len());
    assert!(
        s["cold_start_bytes"]["after_slimming"].as_u64().unwrap()
            < s["cold_start_bytes"]["now"].as_u64().unwrap()
    );
    let stale: u64 = s["stale_bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["images"].as_u64().unwrap())
        .sum();
    assert_eq!(
        stale, 4,
        "the four images on the superseded python build: {}",
        s["stale_bases"]
    );
    assert_eq!(s["findings"]["attestation-manifests"], 1);
    assert!(
        std::fs::read_to_string(out.path().join("summary.md"))
            .unwrap()
            .contains("Stale bases")
    );

    // Per-image fields equal `coldpress analyze` of the same image.
    for (repo, tag) in [("team-0/fn-0", "b0"), ("multi/arch", "latest")] {
        let reference = format!("{}/{repo}:{tag}", f.registry.host);
        let mut args = vec!["analyze", &reference];
        for b in &f.bases {
            args.push("--base-image");
            args.push(b);
        }
        let mut a = env.report(&args);
        let mut r = (*ok
            .iter()
            .find(|r| r["repository"] == repo && r["tag"] == tag)
            .unwrap())
        .clone();
        for k in ["repository", "tag", "status"] {
            r.as_object_mut().unwrap().remove(k);
        }
        // Only the reference differs: the audit names images by repository and tag.
        a["source"]["reference"] = r["source"]["reference"].clone();
        assert_eq!(r, a, "{repo}:{tag}");
    }

    // A rerun skips what is done and reads no layer again.
    let log_before = f.registry.log().len();
    let started = Instant::now();
    let stdout = audit(&env, &f, out.path(), &[]);
    let rerun = started.elapsed();
    assert!(
        stdout.contains(&format!("({} already done, 1 failed)", f.good.len())),
        "{stdout}"
    );
    assert!(
        layer_gets(&f.registry.log()[log_before..], &digests)
            .values()
            .all(|&n| n == 0)
    );
    eprintln!(
        "audit of {} images: {:.2}s, rerun {:.2}s; {} unique layers, {} unique bytes, cold start {} now, {} after; GETs per layer {:?}",
        f.good.len() + 1,
        first_run.as_secs_f64(),
        rerun.as_secs_f64(),
        s["unique_layers"],
        s["unique_bytes"],
        s["cold_start_bytes"]["now"],
        s["cold_start_bytes"]["after_slimming"],
        gets.values().collect::<BTreeSet<_>>()
    );

    // The page, in a real browser: no console errors, a row per image, sorting.
    let page = out.path().join("index.html");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&shot).unwrap();
    let shot = shot.join("audit.png");
    let html = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/html");
    assert!(
        html.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/html` (scripts/test does)"
    );
    support::require("chromium", "chromium");
    let o = Command::new("node")
        .arg(html.join("check.mjs"))
        .arg(&page)
        .arg(&shot)
        .output()
        .expect("node is needed for the browser test");
    assert_success(&o, "browser check");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "console errors");
    assert_eq!(
        v["requests"],
        serde_json::json!([]),
        "the page loads nothing from outside"
    );
    assert_eq!(v["rows"], f.good.len());
    let asc: Vec<u64> = v["ascending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let desc: Vec<u64> = v["descending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(
        asc.windows(2).all(|w| w[0] <= w[1]) && desc.windows(2).all(|w| w[0] >= w[1]),
        "{asc:?} {desc:?}"
    );
    assert_ne!(asc, desc);
    assert_eq!(v["ariaAsc"], "ascending");
    // One pair of bars (now, after) per repository that has a good image.
    let repos: BTreeSet<&str> = f.good.iter().map(|(r, _)| r.as_str()).collect();
    assert!(repos.len() > 1 && repos.len() <= 40);
    assert_eq!(v["bars"], repos.len(), "a bar per repository");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

#[test]
fn resume_after_kill_and_shards() {
    let f = fixture();
    let env = Env::new();
    let out = tempfile::tempdir().unwrap();
    // Kill the first run once a few images are written.
    let mut args = vec![
        "audit".to_string(),
        f.registry.host.clone(),
        "--output".into(),
        out.path().display().to_string(),
        "--offline".into(),
        "--tags".into(),
        "all".into(),
        "--concurrency".into(),
        "1".into(),
        "-q".into(),
    ];
    for b in &f.bases {
        args.push("--base-image".into());
        args.push(b.clone());
    }
    let mut child = env.cmd().args(&args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::fs::read_to_string(out.path().join("audit.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 5 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = rows(out.path())
        .iter()
        .filter(|r| r["status"] == "ok")
        .count();
    assert!(
        partial >= 4 && partial < f.good.len(),
        "killed after {partial} images"
    );
    let stdout = audit(&env, &f, out.path(), &[]);
    assert!(
        stdout.contains(&format!("({partial} already done")),
        "{stdout}"
    );
    let resumed = rows(out.path());
    assert_eq!(
        resumed.iter().filter(|r| r["status"] == "ok").count(),
        f.good.len()
    );

    // Three shards: disjoint, together the whole; merged, the same as one audit.
    let mut union = BTreeSet::new();
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let d = tempfile::tempdir().unwrap();
        audit(&env, &f, d.path(), &["--shard", &format!("{i}/3")]);
        let repos: BTreeSet<String> = rows(d.path())
            .iter()
            .map(|r| r["repository"].as_str().unwrap().to_string())
            .collect();
        assert!(union.is_disjoint(&repos), "shard {i} overlaps: {repos:?}");
        union.extend(repos);
        dirs.push(d);
    }
    let whole: BTreeSet<String> = resumed
        .iter()
        .map(|r| r["repository"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(union, whole);
    let merged = tempfile::tempdir().unwrap();
    let mut margs = vec!["audit".to_string(), "merge".into()];
    margs.extend(dirs.iter().map(|d| d.path().display().to_string()));
    margs.extend(["--output".into(), merged.path().display().to_string()]);
    env.ok(&margs.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(keys(&rows(merged.path())), keys(&resumed));
    let s: Value =
        serde_json::from_slice(&std::fs::read(merged.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["images"], f.good.len());
    assert!(merged.path().join("index.html").is_file());
}

#[test]
fn repos_from_a_file_and_newest_tags() {
    let f = fixture();
    let env = Env::new();
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        list.path(),
        "# repositories to audit\nteam-0/fn-0\n\nteam-1/fn-1\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    audit(
        &env,
        &f,
        out.path(),
        &["--repos-from", list.path().to_str().unwrap(), "--tags", "2"],
    );
    let got: BTreeSet<(String, String, String)> = keys(&rows(out.path()));
    let repos: BTreeSet<&str> = got.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(repos, BTreeSet::from(["team-0/fn-0", "team-1/fn-1"]));
    // The two newest by the config's `created` (b2, b1), not the first by name.
    let tags: BTreeSet<(&str, &str)> = got
        .iter()
        .map(|(r, t, _)| (r.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from([
            ("team-0/fn-0", "b1"),
            ("team-0/fn-0", "b2"),
            ("team-1/fn-1", "b1"),
            ("team-1/fn-1", "b2")
        ]),
        "{got:?}"
    );
    // --repo GLOB: only the matching repositories, newest tag of each.
    let out = tempfile::tempdir().unwrap();
    audit(&env, &f, out.path(), &["--repo", "team-1/*", "--tags", "1"]);
    let got: BTreeSet<(String, String, String)> = keys(&rows(out.path()));
    let want: BTreeSet<(String, String, String)> = f
        .good
        .iter()
        .filter(|(r, _)| r.starts_with("team-1/"))
        .map(|(r, _)| (r.clone(), "b2".to_string(), "ok".to_string()))
        .collect();
    assert!(want.len() >= 2);
    assert_eq!(got, want);
}

/// An optimized output carries its listings under a referrers tag
/// (`sha256-<hex>`): the audit passes over such tags, whichever tags it takes,
/// instead of failing them as images.
#[test]
fn referrers_tags_are_not_audited_as_images() {
    let registry = Registry::start();
    let h = &registry.host;
    support::push_example(
        &registry,
        &[("base", "lambda/base:1"), ("app", "fn/app:1")],
        &[],
    );
    let env = Env::new();
    let r = env.report(&[
        "optimize",
        &format!("{h}/fn/app:1"),
        &format!("{h}/fn/slim:1"),
        "--base-image",
        &format!("{h}/lambda/base:1"),
    ]);
    let tag = r["destination"]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "-");
    assert_eq!(
        support::raw_manifest(&format!("docker://{h}/fn/slim:{tag}"))["mediaType"],
        "application/vnd.oci.image.index.v1+json",
        "the registry holds the referrers tag"
    );
    for tags in ["all", "1"] {
        let out = tempfile::tempdir().unwrap();
        env.ok(&[
            "audit",
            h,
            "--repo",
            "fn/slim",
            "--tags",
            tags,
            "--output",
            out.path().to_str().unwrap(),
            "--offline",
            "-q",
        ]);
        assert_eq!(
            keys(&rows(out.path())),
            BTreeSet::from([("fn/slim".to_string(), "1".to_string(), "ok".to_string())]),
            "--tags {tags}"
        );
    }
}
