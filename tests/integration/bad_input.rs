//! Bad input gets one clear error naming the thing (first line; causes and a hint
//! under it), a non-zero exit, and no panic.

use std::fs;
use std::path::Path;

use crate::support;
use crate::support::{Env, ErrorBlock, Registry, skopeo_copy};

fn example() -> tempfile::TempDir {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    layout
}

/// Run, expect `code`, and return the error: one `error:` line, its causes, a hint.
fn fails(env: &Env, args: &[&str], code: i32) -> ErrorBlock {
    let out = env.run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "coldpress {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    ErrorBlock::parse(&err)
}

/// `analyze REFERENCE --offline` must fail with exit 1 and one error.
fn analyze_fails(env: &Env, reference: &str) -> ErrorBlock {
    fails(env, &["analyze", reference, "--offline"], 1)
}

fn manifest_of(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_slice(&fs::read(blob(layout, &d)).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn references_that_do_not_parse_are_input_errors() {
    let env = Env::new();
    for bad in ["Not/A/Valid:Ref", "repo:bad tag", "ftp://host/x", "oci:"] {
        let e = fails(&env, &["analyze", bad, "--offline"], 1);
        assert!(e.error.contains("invalid image reference"), "{e:?}");
    }
}

/// 0.0.0.0 reaches the loopback registry but is not a loopback name, so it is treated
/// like any remote host: HTTPS unless the user names it with --insecure-registry.
#[test]
fn plain_http_off_loopback_needs_insecure_registry() {
    let registry = Registry::start();
    support::push_example(&registry, &[("app", "app:v1")], &[]);
    let host = registry.off_loopback_host();
    let image = format!("{host}/app:v1");
    let env = Env::new();
    let e = fails(&env, &["analyze", &image, "--offline", "--retries", "1"], 1);
    assert!(
        e.error.contains(&host) && e.hint().contains("--insecure-registry"),
        "names the registry, and the way out in the hint: {e:?}"
    );
    let r = env.report(&["analyze", &image, "--insecure-registry", &host]);
    assert_eq!(r["source"]["reference"], image.as_str());
    assert_eq!(r["before"]["layers"], 6);
}

#[test]
fn unknown_images_name_what_was_missing() {
    let layout = example();
    let registry = Registry::start();
    skopeo_copy(
        &format!("oci:{}:app", layout.path().display()),
        &format!("docker://{}/app:v1", registry.host),
        &[],
    );
    let env = Env::new();
    let closed = format!("127.0.0.1:{}", support::free_port());
    // (reference, what the error line names, what the hint says)
    let cases = [
        (
            format!("{}/app:nope", registry.host),
            vec!["app:nope", "not found"],
            "check the repository and tag",
        ),
        (
            format!("{}/nothing/here:v1", registry.host),
            vec!["nothing/here", "not found"],
            "check the repository and tag",
        ),
        (
            format!("oci:{}:nope", layout.path().display()),
            vec!["nope", "not found"],
            "tags in this layout: base, app, app-v2",
        ),
        (
            format!("{closed}/app:v1"),
            vec![closed.as_str(), "connection failed"],
            "",
        ),
    ];
    for (reference, expect, hint) in &cases {
        let e = fails(
            &env,
            &["analyze", reference, "--offline", "--retries", "1"],
            1,
        );
        assert!(
            expect.iter().all(|x| e.error.contains(x)) && e.hint().contains(hint),
            "{reference}: {e:?}"
        );
    }
}

#[test]
fn a_corrupted_blob_is_caught_and_named() {
    let layout = example();
    let m = manifest_of(layout.path(), "app");
    let digest = m["layers"][3]["digest"].as_str().unwrap();
    let path = blob(layout.path(), digest);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let env = Env::new();
    let e = analyze_fails(&env, &format!("oci:{}:app", layout.path().display()));
    // Flipping a byte inside the deflate stream breaks either the gzip CRC or our digest check;
    // both must name the layer.
    assert!(e.error.contains(digest), "{e:?}");

    // Through a registry the same: the blob is served as stored.
    let layout2 = example();
    let registry = Registry::start();
    skopeo_copy(
        &format!("oci:{}:app", layout2.path().display()),
        &format!("docker://{}/app:v1", registry.host),
        &["--preserve-digests"],
    );
    let stored = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..])
        .join("data");
    let mut bytes = fs::read(&stored).unwrap();
    let n = bytes.len();
    bytes[n - 9] ^= 0xff; // inside the gzip trailer: the CRC/size check or the digest fails
    fs::write(&stored, bytes).unwrap();
    let e = analyze_fails(&env, &format!("{}/app:v1", registry.host));
    assert!(e.error.contains(digest), "{e:?}");
}

/// Rewrite the app image's config or manifest in the layout, keeping it consistent.
fn tamper(layout: &Path, f: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value)) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let mut m = manifest_of(layout, "app");
    let mut cfg: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(layout, m["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    f(&mut m, &mut cfg);
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let cfg_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cfg_bytes))
    );
    fs::write(blob(layout, &cfg_digest), &cfg_bytes).unwrap();
    m["config"]["digest"] = cfg_digest.into();
    m["config"]["size"] = cfg_bytes.len().into();
    let m_bytes = serde_json::to_vec(&m).unwrap();
    let m_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&m_bytes))
    );
    fs::write(blob(layout, &m_digest), &m_bytes).unwrap();
    for e in index["manifests"].as_array_mut().unwrap() {
        if e["annotations"]["org.opencontainers.image.ref.name"] == "app" {
            e["digest"] = m_digest.clone().into();
            e["size"] = m_bytes.len().into();
        }
    }
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_wrong_diff_id_is_caught() {
    let layout = example();
    let mut wrong = String::new();
    tamper(layout.path(), |_, cfg| {
        wrong = "sha256:".to_string() + &"ab".repeat(32);
        cfg["rootfs"]["diff_ids"][2] = wrong.clone().into();
    });
    let env = Env::new();
    let e = analyze_fails(&env, &format!("oci:{}:app", layout.path().display()));
    assert!(
        e.error.contains("diff_id") && e.error.contains(&wrong),
        "{e:?}"
    );
}

#[test]
fn media_type_and_content_must_agree() {
    let layout = example();
    tamper(layout.path(), |m, _| {
        m["layers"][2]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    });
    let env = Env::new();
    let e = analyze_fails(&env, &format!("oci:{}:app", layout.path().display()));
    assert!(
        e.error.contains("says zstd") && e.error.contains("gzip"),
        "{e:?}"
    );
}

#[test]
fn schema1_and_unknown_types_are_refused_clearly() {
    let layout = example();
    let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s1))
    );
    fs::write(blob(layout.path(), &digest), s1).unwrap();
    let index_path = layout.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "digest": digest, "size": s1.len(),
            "annotations": {"org.opencontainers.image.ref.name": "old"}
        }));
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let env = Env::new();
    let e = analyze_fails(&env, &format!("oci:{}:old", layout.path().display()));
    assert!(
        e.error.contains("schema 1") && e.error.contains("re-push"),
        "{e:?}"
    );

    tamper(layout.path(), |m, _| {
        m["layers"][0]["mediaType"] = "application/x-unknown-layer".into();
    });
    let e = analyze_fails(&env, &format!("oci:{}:app", layout.path().display()));
    assert!(e.error.contains("application/x-unknown-layer"), "{e:?}");
}

#[test]
fn truncated_compressed_layers_are_caught() {
    use coldpress::image::Compression;
    use std::io::Write;
    let layout = tempfile::tempdir().unwrap();
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut h = support::header(tar::EntryType::Regular, 200_000);
        support::set_raw_name(&mut h, b"data.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    // The descriptors describe the truncated blobs, so only decompression can tell.
    support::blob_image(
        layout.path(),
        "gzip",
        &[(gz[..gz.len() / 2].to_vec(), raw.clone(), Compression::Gzip)],
    );
    support::blob_image(
        layout.path(),
        "zstd",
        &[(
            zst[..zst.len() / 2].to_vec(),
            raw.clone(),
            Compression::Zstd,
        )],
    );
    let env = Env::new();
    for tag in ["gzip", "zstd"] {
        let e = analyze_fails(&env, &format!("oci:{}:{tag}", layout.path().display()));
        // e.g. "…: reading tar: incomplete deflate stream" / "incomplete frame"
        assert!(
            e.error.contains("layer sha256:") && e.chain().contains("incomplete"),
            "{tag}: {e:?}"
        );
    }
}

#[test]
fn malformed_and_oversized_manifests_are_refused() {
    let layout = example();
    let index_path = layout.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    for (tag, body) in [
        ("broken", b"{\"schemaVersion\": 2, \"layers\": [".to_vec()),
        ("huge", {
            let mut v = b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"annotations\":{\"x\":\"".to_vec();
            v.extend(std::iter::repeat_n(b'a', 5 << 20));
            v.extend_from_slice(b"\"}}");
            v
        }),
    ] {
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
        );
        fs::write(blob(layout.path(), &digest), &body).unwrap();
        index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": body.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
    }
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let env = Env::new();
    let e = analyze_fails(&env, &format!("oci:{}:broken", layout.path().display()));
    assert!(
        e.error.contains("not valid JSON") || e.error.contains("malformed"),
        "{e:?}"
    );
    let e = analyze_fails(&env, &format!("oci:{}:huge", layout.path().display()));
    assert!(
        e.error.contains("too large") || e.error.contains("limit"),
        "{e:?}"
    );
}
