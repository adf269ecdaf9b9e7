//! The smoke run (`coldpress smoke`, `optimize --smoke`): real runtimes — the
//! realistic Python image, a Node.js function with a real `npm install`, and a
//! static custom-runtime bootstrap — started in the sandbox and answering over
//! coldpress's Runtime API. The function side is never mocked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::support::{
    Env, ErrorBlock, assert_success, fixture_cache, realistic_fixture, require, with_lock,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smoke");

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert_success(&out, what);
}

/// An image made the way a user's build makes one: umoci unpacks, files are
/// copied into the root, umoci repacks and sets the config.
fn umoci_image(
    layout: &Path,
    tag: &str,
    root: &Path,
    entrypoint: &[&str],
    cmd: &[&str],
    env: &[&str],
) {
    let umoci = require("umoci", "umoci");
    if !layout.join("index.json").exists() {
        run(
            Command::new(&umoci).arg("init").arg("--layout").arg(layout),
            "umoci init",
        );
    }
    let image = format!("{}:{tag}", layout.display());
    run(
        Command::new(&umoci).args(["new", "--image", &image]),
        "umoci new",
    );
    let bundle = tempfile::tempdir().unwrap();
    let b = bundle.path().join("b");
    run(
        Command::new(&umoci)
            .args(["unpack", "--image", &image])
            .arg(&b),
        "umoci unpack",
    );
    run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", root.display()))
            .arg(b.join("rootfs")),
        "cp -a",
    );
    run(
        Command::new(&umoci)
            .args(["repack", "--image", &image])
            .arg(&b),
        "umoci repack",
    );
    let mut config = Command::new(&umoci);
    config.args([
        "config",
        "--image",
        &image,
        "--config.workingdir",
        "/var/task",
    ]);
    for e in entrypoint {
        config.args(["--config.entrypoint", e]);
    }
    for c in cmd {
        config.args(["--config.cmd", c]);
    }
    for e in env {
        config.args(["--config.env", e]);
    }
    run(&mut config, "umoci config");
}

/// The same image with another CMD (another handler).
fn retag_with_cmd(layout: &Path, from: &str, to: &str, cmd: &str) {
    run(
        Command::new(require("umoci", "umoci"))
            .args([
                "config",
                "--image",
                &format!("{}:{from}", layout.display()),
                "--tag",
                to,
            ])
            .args(["--config.cmd", cmd]),
        "umoci config --tag",
    );
}

/// The custom runtime: tests/fixtures/smoke/bootstrap.c, compiled static (a
/// `provided.al2023` image holds nothing but its bootstrap).
fn custom_image(layout: &Path, orphan: &str) {
    let gcc = require("gcc", "gcc");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("var/runtime")).unwrap();
    fs::create_dir_all(r.join("var/task")).unwrap();
    run(
        Command::new(gcc)
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(r.join("var/runtime/bootstrap"))
            .arg(Path::new(FIXTURES).join("bootstrap.c")),
        "gcc -static bootstrap.c (needs libc6-dev)",
    );
    // Root-owned and 0600: Lambda's runtime user cannot read it.
    fs::write(r.join("var/task/secret.txt"), "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        r.join("var/task/secret.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    umoci_image(
        layout,
        "echo",
        r,
        &["/var/runtime/bootstrap"],
        &["echo"],
        &["PATH=/usr/bin:/bin", &format!("ORPHAN_NAME={orphan}")],
    );
    retag_with_cmd(layout, "echo", "init-error", "init-error");
    retag_with_cmd(layout, "echo", "hang", "hang");
}

/// `node_modules` from a real `npm install` of the function's package.json,
/// cached outside git.
fn npm_install() -> PathBuf {
    let pkg = fs::read(Path::new(FIXTURES).join("node/package.json")).unwrap();
    let key = &coldpress::digest::Digest::of(&pkg).to_string()[7..19];
    let dir = fixture_cache().join(format!("smoke-node-{key}"));
    with_lock("smoke-node", || {
        if dir.join("node_modules/ms/package.json").exists() {
            return;
        }
        let tmp = fixture_cache().join(format!("smoke-node-{key}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("package.json"), &pkg).unwrap();
        run(
            Command::new(require("npm", "npm"))
                .args(["install", "--no-audit", "--no-fund", "--omit=dev"])
                .current_dir(&tmp),
            "npm install (needs access to registry.npmjs.org)",
        );
        fs::rename(&tmp, &dir).unwrap();
    });
    dir
}

/// A Node.js function: the host's node and the libraries it links, the
/// fixture's Runtime API client and handler, and `ms` from npm.
fn node_image(layout: &Path) {
    let node = require("node", "nodejs");
    let node = fs::canonicalize(node).unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let copy = |from: &Path, to: &Path| {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    };
    copy(&node, &r.join("usr/bin/node"));
    let ldd = Command::new("ldd").arg(&node).output().unwrap();
    assert_success(&ldd, "ldd node");
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if let Some(rel) = path.strip_prefix('/') {
            copy(Path::new(path), &r.join(rel));
        }
    }
    let task = r.join("var/task");
    copy(
        &Path::new(FIXTURES).join("node/bootstrap.js"),
        &r.join("var/runtime/bootstrap.js"),
    );
    copy(
        &Path::new(FIXTURES).join("node/index.js"),
        &task.join("index.js"),
    );
    copy(
        &Path::new(FIXTURES).join("node/package.json"),
        &task.join("package.json"),
    );
    run(
        Command::new("cp")
            .arg("-a")
            .arg(npm_install().join("node_modules"))
            .arg(&task),
        "cp node_modules",
    );
    umoci_image(
        layout,
        "node",
        r,
        &["/usr/bin/node", "/var/runtime/bootstrap.js"],
        &["index.handler"],
        &[
            "PATH=/usr/bin:/bin",
            "LAMBDA_TASK_ROOT=/var/task",
            "NODE_PATH=/var/task/node_modules",
        ],
    );
}

/// Init and invoke times of an optimize --smoke report, for the record.
fn print_times(what: &str, report: &Value) {
    let s = &report["smoke"];
    for r in s["runs"].as_array().unwrap() {
        eprintln!(
            "{what} smoke: {} init {} ms, invokes {:?} ms, materialise {} ms ({} files), sandbox {} ms, run total {} ms",
            r["role"],
            r["init_ms"],
            r["invocations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["invoke_ms"].as_f64().unwrap_or(-1.0))
                .collect::<Vec<_>>(),
            r["materialise_ms"],
            r["files"],
            r["sandbox_ms"],
            r["total_ms"]
        );
    }
    eprintln!("{what} smoke: total {} ms", s["total_ms"]);
}

/// Processes whose name is `name` (the custom runtime leaves one behind on purpose).
fn processes_named(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(comm) = fs::read_to_string(e.path().join("comm"))
            && comm.trim() == name
        {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn event(dir: &Path, name: &str, json: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, json).unwrap();
    p.display().to_string()
}

/// Every path under `dir`, for "nothing was left behind".
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn tags(layout: &Path) -> Vec<String> {
    let index: Value = serde_json::from_slice(
        &fs::read(layout.join("index.json")).unwrap_or_else(|_| b"{}".to_vec()),
    )
    .unwrap();
    index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|d| {
                    d["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn custom_runtime_answers_in_a_lambda_like_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    custom_image(&layout, "orphan-custom");
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let ev = event(tmp.path(), "hello.json", r#"{"hello": "world"}"#);
    let host_tmp_file = Path::new("/tmp/written-by-function");
    let _ = fs::remove_file(host_tmp_file);
    let env = Env::new();
    let image = format!("oci:{}:echo", layout.display());
    let report = tmp.path().join("smoke.json");
    let before = listing(&layout);
    let out = env
        .cmd()
        .args([
            "smoke",
            &image,
            "--event",
            &ev,
            "--format",
            "json",
            "--work-dir",
        ])
        .arg(&work)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_success(&out, "coldpress smoke (custom runtime)");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &r["smoke"];
    assert_eq!(s["passed"], true, "{s:#}");
    assert_eq!(s["verdict"], "answered");
    let run = &s["runs"][0];
    let isolation = run["isolation"].as_str().unwrap();
    assert!(
        isolation.contains("namespaces") && isolation.contains("read-only root"),
        "{isolation}"
    );
    assert!(run["init_ms"].as_f64().unwrap() >= 0.0);
    let inv = &run["invocations"][0];
    assert_eq!(inv["outcome"], "response");
    assert!(inv["invoke_ms"].as_f64().is_some());
    // What the function saw from inside, in its own answer.
    let answer: Value = serde_json::from_str(inv["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["echo"], serde_json::json!({"hello": "world"}));
    assert_eq!(answer["uid"], 993, "Lambda's runtime user, not root");
    assert_eq!(answer["gid"], 990);
    assert_eq!(answer["root_writable"], false, "read-only root");
    assert_eq!(answer["root_errno"], 30, "EROFS");
    assert_eq!(answer["tmp_writable"], true, "a private /tmp");
    assert_eq!(
        answer["secret_readable"], false,
        "a root-owned 0600 file stays unreadable"
    );
    assert_eq!(answer["proc"], true);
    assert_eq!(
        answer["pid"], 2,
        "its own PID namespace, under the sandbox's init"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&fs::read(&report).unwrap()).unwrap()["smoke"]["passed"],
        true
    );

    // Nothing outlives the run, nothing is written outside the work dir, and
    // the work dir is left empty.
    assert_eq!(
        processes_named("orphan-custom"),
        Vec::<String>::new(),
        "the daemonised grandchild was killed"
    );
    assert!(
        !host_tmp_file.exists(),
        "the function's /tmp is not the host's"
    );
    assert!(
        listing(&work).is_empty(),
        "work dir left: {:?}",
        listing(&work)
    );
    assert_eq!(listing(&layout), before, "the source layout is untouched");

    // optimize --smoke: the answers carry the wall clock, so byte for byte they
    // differ: exit 1, both answers shown, nothing tagged.
    let out_layout = tmp.path().join("out");
    let differs = env.run(&[
        "optimize",
        &image,
        &format!("oci:{}:slim", out_layout.display()),
        "--smoke",
        &ev,
        "--offline",
        "--format",
        "json",
        "-q",
    ]);
    assert_eq!(differs.status.code(), Some(1));
    let err = String::from_utf8_lossy(&differs.stderr);
    assert!(
        err.contains(
            "the output answers event hello.json differently: the answers differ (byte for byte)"
        ),
        "{err}"
    );
    let r: Value = serde_json::from_slice(&differs.stdout).unwrap();
    assert_eq!(r["smoke"]["verdict"], "differs");
    let d = &r["smoke"]["differences"][0];
    assert!(d["source"].as_str().unwrap().contains("\"at\""));
    assert_ne!(d["source"], d["output"]);
    assert!(tags(&out_layout).is_empty(), "nothing tagged");

    // With the varying field ignored, the re-layered output answers as the source.
    let md = env
        .cmd()
        .args(["optimize", &image])
        .arg(format!("oci:{}:slim", out_layout.display()))
        .args([
            "--smoke",
            &ev,
            "--smoke-ignore",
            "$.at.ns",
            "--offline",
            "--format",
            "markdown",
            "--report",
        ])
        .arg(tmp.path().join("opt.json"))
        .output()
        .unwrap();
    assert_success(&md, "optimize --smoke (custom runtime)");
    let text = String::from_utf8(md.stdout).unwrap();
    assert!(
        text.contains("Smoke run: passed (equal)") && text.contains("| image | init |"),
        "{text}"
    );
    let opt: Value =
        serde_json::from_slice(&fs::read(tmp.path().join("opt.json")).unwrap()).unwrap();
    assert_eq!(opt["smoke"]["verdict"], "equal");
    assert_eq!(opt["smoke"]["ignore"], serde_json::json!(["$.at.ns"]));
    print_times("custom", &opt);
    let runs = opt["smoke"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["role"], "source");
    assert_eq!(runs[1]["role"], "output");
    let answer = |r: &Value| -> Value {
        let mut v: Value =
            serde_json::from_str(r["invocations"][0]["body"].as_str().unwrap()).unwrap();
        v["at"].as_object_mut().unwrap().remove("ns").unwrap();
        v
    };
    assert_eq!(answer(&runs[0]), answer(&runs[1]));
    assert_eq!(tags(&out_layout), vec!["slim".to_string()]);
    assert_eq!(processes_named("orphan-custom"), Vec::<String>::new());
}

#[test]
fn init_error_and_timeout_are_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    custom_image(&layout, "orphan-errors");
    let ev = event(tmp.path(), "e.json", "{}");
    let env = Env::new();

    let out = env.run(&[
        "smoke",
        &format!("oci:{}:init-error", layout.display()),
        "--event",
        &ev,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "init error: Runtime.ConfigError: config file /var/task/settings.toml is missing"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &r["smoke"]["runs"][0];
    assert!(
        first["init_error"]
            .as_str()
            .unwrap()
            .contains("Runtime.ConfigError")
    );
    assert!(
        first["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("settings.toml is missing")
    );
    assert_eq!(first["invocations"][0]["outcome"], "not run");

    let started = Instant::now();
    let out = env.run(&[
        "smoke",
        &format!("oci:{}:hang", layout.display()),
        "--event",
        &ev,
        "--smoke-timeout",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out after 2 s handling event e.json"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 30, "the time limit holds");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["smoke"]["runs"][0]["invocations"][0]["outcome"],
        "timeout"
    );
    assert_eq!(processes_named("orphan-errors"), Vec::<String>::new());

    // An arm64 image on this x86_64 host runs only through qemu-user's binfmt
    // handler; without one the smoke run says so and fails, never passing silently.
    run(
        Command::new(require("umoci", "umoci"))
            .args([
                "config",
                "--image",
                &format!("{}:echo", layout.display()),
                "--tag",
                "arm64",
            ])
            .args(["--architecture", "arm64"]),
        "umoci config --architecture arm64",
    );
    let out = env.run(&[
        "smoke",
        &format!("oci:{}:arm64", layout.display()),
        "--event",
        &ev,
    ]);
    if Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        assert_success(&out, "smoke of an arm64 image through qemu-user");
    } else {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the image is arm64") && err.contains("qemu-user binfmt"),
            "{err}"
        );
    }

    // A source that fails is reported as the source's failure, and nothing is tagged.
    let dst = tmp.path().join("out");
    let out = env.run(&[
        "optimize",
        &format!("oci:{}:hang", layout.display()),
        &format!("oci:{}:slim", dst.display()),
        "--smoke",
        &ev,
        "--smoke-timeout",
        "2",
        "--offline",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the source image itself fails") && err.contains("nothing was tagged"),
        "{err}"
    );
    assert!(tags(&dst).is_empty(), "nothing tagged: {:?}", tags(&dst));
}

#[test]
fn node_function_answers_and_a_stripped_module_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    node_image(&layout);
    let image = format!("oci:{}:node", layout.display());
    let ev = event(
        tmp.path(),
        "duration.json",
        r#"{"duration": "1d", "ms": 7200000}"#,
    );
    let env = Env::new();
    let dst = tmp.path().join("out");

    let r = env.report(&[
        "optimize",
        &image,
        &format!("oci:{}:slim", dst.display()),
        "--smoke",
        &ev,
    ]);
    let s = &r["smoke"];
    assert_eq!(s["verdict"], "equal", "{s:#}");
    print_times("node", &r);
    let body: Value =
        serde_json::from_str(s["runs"][1]["invocations"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["duration_ms"], 86_400_000);
    assert_eq!(body["human"], "2 hours");
    assert_eq!(body["region"], "us-east-1");
    assert_eq!(tags(&dst), vec!["slim".to_string()]);

    // Strip the package the handler requires: caught, named, nothing tagged.
    let out = env.run(&[
        "optimize",
        &image,
        &format!("oci:{}:broken", dst.display()),
        "--smoke",
        &ev,
        "--strip",
        "/var/task/node_modules/ms/**",
        "--offline",
        "--format",
        "json",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the output fails where the source answered"),
        "{err}"
    );
    assert!(err.contains("first missing module ms"), "{err}");
    assert!(err.contains("nothing was tagged"), "{err}");
    assert_eq!(tags(&dst), vec!["slim".to_string()], "no 'broken' tag");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &r["smoke"];
    assert_eq!(s["verdict"], "output failed");
    assert_eq!(s["runs"][1]["missing"], "module ms");
    assert!(
        s["runs"][1]["init_error"]
            .as_str()
            .unwrap()
            .contains("Cannot find module 'ms'")
    );
    assert!(
        s["runs"][1]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("Runtime.ImportModuleError")
    );
    assert_eq!(
        s["runs"][0]["invocations"][0]["outcome"], "response",
        "the source answered"
    );
}

#[test]
fn realistic_python_function_answers_the_same_and_a_stripped_import_is_caught() {
    let layout = realistic_fixture();
    let oci = |t: &str| format!("oci:{}:{t}", layout.display());
    let tmp = tempfile::tempdir().unwrap();
    let ev = event(
        tmp.path(),
        "order.json",
        r#"{"order": {"order_id": "ord-42", "customer": "Initech", "placed_at": "2024-03-31T09:00:00Z",
            "items": [{"sku": "TPS-1", "quantity": 2, "unit_price": "12.50"}]}}"#,
    );
    let sample = event(tmp.path(), "sample.json", "{}");
    let env = Env::new();
    let dst = tmp.path().join("out");
    let r = env.report(&[
        "optimize",
        &oci("app"),
        &format!("oci:{}:slim", dst.display()),
        "--base-image",
        &oci("base"),
        "--smoke",
        &ev,
        "--smoke",
        &sample,
    ]);
    let s = &r["smoke"];
    assert_eq!(s["verdict"], "equal", "{s:#}");
    let runs = s["runs"].as_array().unwrap();
    let (src, out) = (&runs[0]["invocations"], &runs[1]["invocations"]);
    for (a, b) in src.as_array().unwrap().iter().zip(out.as_array().unwrap()) {
        assert_eq!(a["body"], b["body"]);
        assert_eq!(b["outcome"], "response");
    }
    assert_eq!(out.as_array().unwrap().len(), 2);
    let order: Value =
        serde_json::from_str(runs[1]["invocations"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(order["order"]["order_id"], "ord-42");
    assert_eq!(order["totals"]["total"], 30.0);
    assert_eq!(order["function"], "coldpress-smoke");
    assert!(
        runs[1]["files"].as_u64().unwrap() < runs[0]["files"].as_u64().unwrap(),
        "the output has fewer files"
    );
    print_times("realistic", &r);
    assert_eq!(tags(&dst), vec!["slim".to_string()]);

    // numpy is stripped: the handler's import fails, the module is named, nothing is tagged.
    let out = env.run(&[
        "optimize",
        &oci("app"),
        &format!("oci:{}:broken", dst.display()),
        "--base-image",
        &oci("base"),
        "--smoke",
        &ev,
        // The directory too: `numpy/**` alone leaves an empty numpy/ that Python
        // imports as a namespace package (the smoke run catches that too, as a
        // missing attribute).
        "--strip",
        "/var/task/numpy",
        "--strip",
        "/var/task/numpy/**",
        "--offline",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Runtime.ImportModuleError"), "{err}");
    assert!(err.contains("first missing module numpy"), "{err}");
    assert!(err.contains("nothing was tagged"), "{err}");
    assert_eq!(tags(&dst), vec!["slim".to_string()], "no 'broken' tag");
}

#[test]
fn bad_event_files_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let env = Env::new();
    let layout = tmp.path().join("layout");
    env.ok(&["example", layout.to_str().unwrap()]);
    let dst = tmp.path().join("out");
    let bad = event(tmp.path(), "bad.json", "{not json");
    let missing = tmp.path().join("missing.json").display().to_string();
    for (ev, expect) in [(&bad, "bad.json: not JSON"), (&missing, "missing.json")] {
        let out = env.run(&[
            "optimize",
            &format!("oci:{}:app", layout.display()),
            &format!("oci:{}:slim", dst.display()),
            "--smoke",
            ev,
            "--offline",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        // One error (with its causes), naming the file.
        let block = ErrorBlock::parse(&err);
        assert!(block.chain().contains(expect), "{err}");
        assert!(!dst.exists(), "nothing written");
    }
    let out = env.run(&[
        "smoke",
        &format!("oci:{}:app", layout.display()),
        "--event",
        &bad,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json: not JSON"));
    let out = env.run(&[
        "optimize",
        &format!("oci:{}:app", layout.display()),
        &format!("oci:{}:slim", dst.display()),
        "--smoke",
        &bad,
        "--dry-run",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--smoke needs something written"
    );
}
