//! Issue 10, end to end: an ML-like function (numpy from pip, a 96 MiB
//! incompressible model, the handler last) slimmed as v1, then as v2 that
//! changes only handler.py, into one repository. What the redeploy uploaded is
//! read from the registry's access log and skopeo, never from coldpress's report.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support;
use crate::support::ml::{MODEL_BYTES, MODEL_PATH, ml_fixture};
use crate::support::{Env, Registry, raw_manifest, skopeo_copy};

/// Digests whose upload the registry completed (the final `PUT …/blobs/uploads/…?digest=`)
/// in `log` for `repo`.
fn uploaded(log: &str, repo: &str) -> BTreeSet<String> {
    completed(
        log,
        &format!("\"PUT /v2/{repo}/blobs/uploads/"),
        "digest=sha256",
    )
}

/// Digests mounted into `repo` from another repository (`POST …?mount=`, 201).
fn mounted(log: &str, repo: &str) -> BTreeSet<String> {
    completed(
        log,
        &format!("\"POST /v2/{repo}/blobs/uploads/?mount="),
        "mount=sha256",
    )
}

fn completed(log: &str, request: &str, param: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains(request) && l.contains("\" 201 "))
        .filter_map(|l| {
            let at = l.find(param)? + param.len();
            let rest = l[at..].trim_start_matches("%3A").trim_start_matches(':');
            Some(format!(
                "sha256:{}",
                rest.chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect::<String>()
            ))
        })
        .collect()
}

fn layers(m: &Value) -> Vec<(String, u64)> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ml_redeploy_uploads_only_the_code() {
    let layout = ml_fixture();
    let oci = |t: &str| format!("oci:{}:{t}", layout.display());
    let registry = Registry::start();
    let h = &registry.host;
    let base = format!("{h}/lambda/python:3.11");
    skopeo_copy(
        &oci("base"),
        &format!("docker://{base}"),
        &["--preserve-digests"],
    );
    let base_layers = layers(&raw_manifest(&format!("docker://{base}"))).len();

    for layout_name in ["well", "naive"] {
        let repo = format!("ml/{layout_name}");
        let slim = format!("ml/{layout_name}-slim");
        for v in ["v1", "v2"] {
            skopeo_copy(
                &oci(&format!("{layout_name}-{v}")),
                &format!("docker://{h}/{repo}:{v}"),
                &["--preserve-digests"],
            );
        }
        let env = Env::new();
        let run = |v: &str| {
            env.report(&[
                "optimize",
                &format!("{h}/{repo}:{v}"),
                &format!("{h}/{slim}:{v}"),
                "--base-image",
                &base,
            ])
        };
        let r1 = run("v1");
        let mark = registry.log().len();
        let r2 = run("v2");
        let log = registry.log()[mark..].to_string();

        let source1 = raw_manifest(&format!("docker://{h}/{repo}:v1"));
        let out1 = raw_manifest(&format!("docker://{h}/{slim}:v1"));
        let out2 = raw_manifest(&format!("docker://{h}/{slim}:v2"));
        let (l1, l2) = (layers(&out1), layers(&out2));

        // v1 and v2 share every layer but the code, which is last.
        assert_eq!(l1.len(), l2.len(), "{layout_name}: same layer count");
        assert_eq!(
            l1[..l1.len() - 1],
            l2[..l2.len() - 1],
            "{layout_name}: all but the last layer shared"
        );
        assert_ne!(
            l1.last(),
            l2.last(),
            "{layout_name}: the code layer changed"
        );
        let roles: Vec<&str> = r2["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles.last(), Some(&"code"), "{layout_name}: {roles:?}");
        assert!(roles.contains(&"assets"), "{layout_name}: {roles:?}");

        // What v2's push sent, by the registry's log: of the image, the code
        // layer (uploaded, or mounted from the source's repository when it
        // passed through) and the config, nothing else; the manifest was put
        // once. Beside the image, the listings of the source layers that
        // changed, attached for the next runner: small, and only those.
        let code = l2.last().unwrap().clone();
        let config = out2["config"]["digest"].as_str().unwrap().to_string();
        let up = uploaded(&log, &slim);
        let mnt = mounted(&log, &slim);
        let (_, listings) = support::attached_listings(
            &format!("docker://{h}/{slim}"),
            r2["destination"]["digest"].as_str().unwrap(),
        );
        let listing_blobs: BTreeSet<String> = listings.iter().map(|l| l.0.clone()).collect();
        let arrived: BTreeSet<String> = up.union(&mnt).cloned().collect();
        assert_eq!(
            arrived
                .difference(&listing_blobs)
                .cloned()
                .collect::<BTreeSet<_>>(),
            BTreeSet::from([code.0.clone(), config.clone()]),
            "{layout_name}: v2 sent more than code and config:\n{log}"
        );
        let source2 = layers(&raw_manifest(&format!("docker://{h}/{repo}:v2")));
        let changed: BTreeSet<&String> = source2
            .iter()
            .map(|l| &l.0)
            .filter(|d| !layers(&source1).iter().any(|l| &&l.0 == d))
            .collect();
        let listing_bytes: u64 = listings
            .iter()
            .filter(|l| up.contains(&l.0))
            .map(|l| l.1)
            .sum();
        for (blob, size, layer) in &listings {
            assert_eq!(
                up.contains(blob),
                changed.contains(layer),
                "{layout_name}: the listing of {layer} ({size} bytes) is sent only when that layer changed"
            );
        }
        assert_eq!(
            listings.len(),
            source2.len(),
            "{layout_name}: every source layer listed"
        );
        let layer_bytes: u64 = l2
            .iter()
            .filter(|(d, _)| up.contains(d))
            .map(|(_, s)| s)
            .sum();
        assert!(
            layer_bytes <= 64 << 10 && code.1 <= 64 << 10,
            "{layout_name}: {layer_bytes} layer bytes uploaded, code layer of {} bytes",
            code.1
        );
        eprintln!(
            "{layout_name}: v2 uploaded {layer_bytes} layer bytes ({} layer(s) uploaded, {} mounted), code layer {} bytes, {listing_bytes} bytes of listings",
            up.iter().filter(|d| l2.iter().any(|l| &&l.0 == d)).count(),
            mnt.len(),
            code.1
        );
        assert_eq!(
            log.lines()
                .filter(|l| l.contains(&format!("\"PUT /v2/{slim}/manifests/v2 ")))
                .count(),
            1,
            "{layout_name}: one manifest put"
        );

        // The model is in its own layer, the same blob in v1 and v2.
        let model_layer = r2["new_layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["role"] == "assets")
            .unwrap();
        assert!(model_layer["uncompressed_bytes"].as_u64().unwrap() > MODEL_BYTES);
        if layout_name == "well" {
            // The source's model layer passes through with its own digest.
            let src_model = &layers(&source1)[base_layers + 1];
            assert!(
                l2.contains(src_model),
                "well: the source's model layer {src_model:?} is not in {l2:?}"
            );
            assert_eq!(model_layer["origin"], "passed-through");
        }

        // Never worse than the source, measured on the manifests.
        for (src, out) in [
            (&source1, &out1),
            (&raw_manifest(&format!("docker://{h}/{repo}:v2")), &out2),
        ] {
            let cold = |m: &Value| -> u64 { layers(m)[base_layers..].iter().map(|l| l.1).sum() };
            assert!(
                cold(out) <= cold(src),
                "{layout_name}: cold-start bytes {} > the source's {}",
                cold(out),
                cold(src)
            );
        }
        for r in [&r1, &r2] {
            assert_eq!(
                r["never_worse"]["ok"], true,
                "{layout_name}: {}",
                r["never_worse"]
            );
        }
        // The source's code-only redeploy: well-layered, only the handler layer;
        // naive, the COPY layer with the model.
        let redeploy = &r2["redeploy"];
        assert_eq!(redeploy["output"]["bytes"].as_u64().unwrap(), code.1);
        if layout_name == "naive" {
            assert!(redeploy["source"]["bytes"].as_u64().unwrap() > MODEL_BYTES);
        }

        // analyze agrees the well-layered source is right: no finding asks to fix it.
        if layout_name == "well" {
            let a = env.report(&["analyze", &format!("{h}/{repo}:v2"), "--base-image", &base]);
            let ids = support::finding_ids(&a);
            for id in ["code-not-last", "large-code-layer", "assets-with-code"] {
                assert!(!ids.contains(&id.to_string()), "well: {id} in {ids:?}");
            }
        } else {
            let a = env.report(&[
                "analyze",
                &format!("{h}/{repo}:v2"),
                "--base-image",
                &base,
                "--list-files",
            ]);
            assert!(support::finding_ids(&a).contains(&"assets-with-code".to_string()));
            let files = support::listing::files(&a);
            assert_eq!(files[MODEL_PATH]["class"], "assets");
            assert!(
                files[MODEL_PATH]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("extension")
            );
            assert_eq!(files["var/task/handler.py"]["class"], "code");
        }
    }
}
