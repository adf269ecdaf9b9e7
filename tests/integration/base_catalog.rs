//! Matching an image to its base: a `--base-image` in a real registry, a newer
//! build of the same tag (stale), a partial match, the disk cache and its age,
//! and no catalog at all.

use coldpress::example::{ImageSpec, Item, app_layers, base_layers, write_layer};
use coldpress::image::Compression;
use coldpress::transport::oci_layout::OciLayoutSink;
use serde_json::Value;

use crate::support;
use crate::support::{Env, Registry, skopeo_copy};

fn spec(cmd: &[&str]) -> ImageSpec {
    ImageSpec::lambda(cmd)
}

/// base-v1, base-v2 (same OS layer, rebuilt runtime layer) and app on base-v1.
fn images(layout: &std::path::Path) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut v1 = spec(&[]);
    let mut v2 = spec(&[]);
    let mut layers = base_layers(tmp.path()).unwrap().into_iter();
    let (os, by) = layers.next().unwrap();
    let os_again = base_layers(tmp.path())
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .0;
    assert_eq!(os.digest, os_again.digest, "base layers are deterministic");
    v1.add(os, by);
    let (rt, by) = layers.next().unwrap();
    v1.add(rt, by);
    v2.add(os_again, by);
    let rt2 = write_layer(
        tmp.path(),
        &[
            Item::Dir("var"),
            Item::Dir("var/runtime"),
            Item::Blob("var/runtime/bootstrap.py", 21_000),
        ],
        Compression::Gzip,
    )
    .unwrap();
    v2.add(rt2, "ADD runtime.tar.xz / (rebuilt)");
    let d1 = v1
        .write(&OciLayoutSink::create(layout, Some("base-v1")).unwrap())
        .unwrap()
        .digest;
    let d2 = v2
        .write(&OciLayoutSink::create(layout, Some("base-v2")).unwrap())
        .unwrap()
        .digest;
    let mut app = spec(&["handler.handler"]);
    app.layers = v1.layers.clone();
    for (l, by) in app_layers(tmp.path(), coldpress::example::HANDLER).unwrap() {
        app.add(l, by);
    }
    app.write(&OciLayoutSink::create(layout, Some("app")).unwrap())
        .unwrap();
    (d1.to_string(), d2.to_string())
}

fn analyze(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["analyze", "--format", "json", "-q"];
    a.extend_from_slice(args);
    env.json(&a)
}

#[test]
fn base_matching_staleness_and_cache() {
    let layout = tempfile::tempdir().unwrap();
    let (v1, v2) = images(layout.path());
    let registry = Registry::start();
    let base_ref = format!("{}/lambda/python:3.12", registry.host);
    let app = format!("{}/fn/app:v1", registry.host);
    let oci = |t: &str| format!("oci:{}:{t}", layout.path().display());
    skopeo_copy(
        &oci("base-v1"),
        &format!("docker://{base_ref}"),
        &["--preserve-digests"],
    );
    skopeo_copy(
        &oci("app"),
        &format!("docker://{app}"),
        &["--preserve-digests"],
    );

    // A current build of the base: matched in full.
    let env = Env::new();
    let r = analyze(&env, &[&app, "--offline", "--base-image", &base_ref]);
    assert_eq!(r["base"]["image"], base_ref.as_str());
    assert_eq!(r["base"]["digest"], v1.as_str());
    assert_eq!(r["base"]["layers"], 2);
    assert_eq!(r["base"]["full"], true);
    assert_eq!(r["base"]["stale"], false);
    let app_layers: u64 = r["layers"].as_array().unwrap()[2..]
        .iter()
        .map(|l| l["compressed_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        r["before"]["cold_start_bytes"], app_layers,
        "only the layers above the base are fetched"
    );
    assert_eq!(
        r["base"]["bytes"].as_u64().unwrap() + app_layers,
        r["before"]["compressed_bytes"].as_u64().unwrap()
    );
    assert!(!support::finding_ids(&r).contains(&"stale-base".to_string()));

    // The tag moves to a newer build; the cache remembers the old one: stale.
    skopeo_copy(
        &oci("base-v2"),
        &format!("docker://{base_ref}"),
        &["--preserve-digests"],
    );
    let r = analyze(&env, &[&app, "--offline", "--base-image", &base_ref]);
    assert_eq!(r["base"]["digest"], v1.as_str());
    assert_eq!(r["base"]["stale"], true);
    assert_eq!(r["base"]["newer_digest"], v2.as_str());
    assert!(support::finding_ids(&r).contains(&"stale-base".to_string()));

    // A fresh machine that only knows the new build: the shared OS layer matches.
    let fresh = Env::new();
    let r = analyze(&fresh, &[&app, "--offline", "--base-image", &base_ref]);
    assert_eq!(r["base"]["layers"], 1);
    assert_eq!(r["base"]["full"], false);
    assert_eq!(r["base"]["stale"], true);

    // Nothing known at all: say so and carry on.
    let none = Env::new();
    let r = analyze(&none, &[&app, "--offline"]);
    assert!(r["base"].is_null());
    assert_eq!(r["base_catalog"]["source"], "none");
    assert!(
        r["base_catalog"]["message"]
            .as_str()
            .unwrap()
            .contains("no base could be checked")
    );
    assert_eq!(
        r["before"]["cold_start_bytes"],
        r["before"]["compressed_bytes"]
    );
    assert!(support::finding_ids(&r).contains(&"no-lambda-base".to_string()));

    // An aged cache of the AWS catalog, offline: used, and its age reported.
    let cached = Env::new();
    let mut cache: Value = serde_json::from_slice(
        &std::fs::read(env.dir.path().join("cache/coldpress/bases.json")).unwrap(),
    )
    .unwrap();
    let three_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3 * 86_400
        - 60;
    cache["catalog_fetched_at"] = three_days_ago.into();
    for b in cache["builds"].as_array_mut().unwrap() {
        b["image"] = "public.ecr.aws/lambda/python:3.12".into();
        b["origin"] = "catalog".into();
    }
    std::fs::create_dir_all(cached.dir.path().join("cache/coldpress")).unwrap();
    std::fs::write(
        cached.dir.path().join("cache/coldpress/bases.json"),
        cache.to_string(),
    )
    .unwrap();
    let r = analyze(&cached, &[&app, "--offline"]);
    assert_eq!(r["base"]["image"], "public.ecr.aws/lambda/python:3.12");
    assert_eq!(r["base"]["origin"], "catalog");
    assert_eq!(
        r["base"]["stale"], true,
        "v2 is the current build in the copied cache"
    );
    assert_eq!(r["base_catalog"]["source"], "cache");
    assert!(
        r["base_catalog"]["message"]
            .as_str()
            .unwrap()
            .contains("3 days"),
        "{}",
        r["base_catalog"]
    );
    assert!(!support::finding_ids(&r).contains(&"no-lambda-base".to_string()));
}

/// Two bases with the same layers but different manifests (a rebuilt config, a
/// copy under another name): the one named on the command line gets the credit,
/// even when the other is cached from an earlier run and sorts first.
#[test]
fn the_base_named_on_the_command_line_wins_over_a_cached_one() {
    let layout = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (a_digest, _) = images(layout.path());
    let tmp = tempfile::tempdir().unwrap();
    let mut b = spec(&[]);
    b.env.push("BASE_FLAVOUR=b".into());
    for (l, by) in base_layers(tmp.path()).unwrap() {
        b.add(l, by);
    }
    let b_digest = b
        .write(&OciLayoutSink::create(layout.path(), Some("base-x")).unwrap())
        .unwrap()
        .digest
        .to_string();
    assert_ne!(a_digest, b_digest);
    let oci = |t: &str| format!("oci:{}:{t}", layout.path().display());
    let env = Env::new();
    let optimize = |base: &str, dst: &str| -> Value {
        env.json(&[
            "optimize",
            &oci("app"),
            &format!("oci:{}:{dst}", out.path().display()),
            "--offline",
            "--base-image",
            base,
            "--format",
            "json",
            "-q",
        ])
    };
    let r = optimize(&oci("base-v1"), "out-a");
    assert_eq!(r["base"]["digest"], a_digest.as_str());
    // base-v1 is now cached, and its name sorts before base-b's.
    let r = optimize(&oci("base-x"), "out-b");
    assert_eq!(r["base"]["image"], oci("base-x").as_str());
    assert_eq!(r["base"]["digest"], b_digest.as_str());
    let m = support::raw_manifest(&format!("oci:{}:out-b", out.path().display()));
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        b_digest.as_str(),
        "{m}"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.name"],
        oci("base-x").as_str()
    );
    let config = std::process::Command::new(support::require("skopeo", "skopeo"))
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}:out-b", out.path().display()))
        .output()
        .unwrap();
    support::assert_success(&config, "skopeo inspect --config");
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.base.digest"],
        b_digest.as_str()
    );
}
