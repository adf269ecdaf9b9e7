//! Credentials as users have them set up, against a real registry with htpasswd
//! basic auth: docker config `auths`, `credHelpers`, `credsStore`, and
//! `--username/--password-stdin`. Secrets never appear in any output.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use base64::Engine;

use crate::support;
use crate::support::{Env, Registry, assert_success, skopeo_copy};

const USER: &str = "ci-robot";
const PASSWORD: &str = "s3cret-Pa55-do-not-print";

fn setup() -> (Registry, String, tempfile::TempDir) {
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let image = format!("{}/private/app:v1", registry.host);
    skopeo_copy(
        &format!("oci:{}:app", layout.path().display()),
        &format!("docker://{image}"),
        &[&format!("--dest-creds={USER}:{PASSWORD}")],
    );
    (registry, image, layout)
}

fn assert_no_secret(out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        let s = String::from_utf8_lossy(stream);
        assert!(!s.contains(PASSWORD), "the password leaked:\n{s}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        assert!(!s.contains(&b64), "the encoded credentials leaked:\n{s}");
    }
}

fn write_config(env: &Env, json: serde_json::Value) {
    std::fs::write(env.home().join(".docker/config.json"), json.to_string()).unwrap();
}

#[test]
fn no_credentials_is_a_clear_error() {
    let (registry, image, _l) = setup();
    let env = Env::new();
    let out = env.run(&["analyze", &image, "--offline", "-v"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let e = support::ErrorBlock::parse(&err);
    assert!(
        e.error.contains(&registry.host)
            && e.error.contains("access denied")
            && e.error.contains("no credentials found")
            && e.hint().contains("docker login"),
        "{e:?}"
    );
}

#[test]
fn docker_config_auths_work_and_wrong_ones_say_where_they_came_from() {
    let (registry, image, _l) = setup();
    let env = Env::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    write_config(
        &env,
        serde_json::json!({"auths": {registry.host.clone(): {"auth": auth}}}),
    );
    let out = env.run(&["analyze", &image, "--offline", "--format", "json", "-v"]);
    assert_success(&out, "analyze with docker-config auth");
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source"]["reference"], image);

    let wrong =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:not-the-password"));
    write_config(
        &env,
        serde_json::json!({"auths": {format!("http://{}/v2/", registry.host): {"auth": wrong}}}),
    );
    let out = env.run(&["analyze", &image, "--offline", "-v"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access denied")
            && err.contains("credentials from auths in")
            && err.contains("config.json"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"));
}

#[test]
fn password_stdin_authenticates_without_printing_the_secret() {
    let (_registry, image, _l) = setup();
    let env = Env::new();
    let mut child = env
        .cmd()
        .args([
            "analyze",
            &image,
            "--offline",
            "--username",
            USER,
            "--password-stdin",
            "--format",
            "json",
            "-v",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "analyze with --password-stdin");
    assert_no_secret(&out);
}

#[test]
fn cred_helpers_and_stores_are_asked_and_a_missing_helper_says_install() {
    let (registry, image, _l) = setup();
    let env = Env::new();
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A helper that answers like docker-credential-ecr-login does.
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\necho \"$server\" > \"$0.asked\"\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"),
    )
    .unwrap();
    let empty = bin.join("docker-credential-empty");
    std::fs::write(
        &empty,
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
    )
    .unwrap();
    for p in [&helper, &empty] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    write_config(
        &env,
        serde_json::json!({"credHelpers": {registry.host.clone(): "fake"}}),
    );
    let out = env
        .cmd()
        .env("PATH", &path)
        .args(["analyze", &image, "--offline", "-v"])
        .output()
        .unwrap();
    assert_success(&out, "analyze with credHelpers");
    assert_no_secret(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("credHelpers 'fake'"));
    assert_eq!(
        std::fs::read_to_string(bin.join("docker-credential-fake.asked"))
            .unwrap()
            .trim(),
        registry.host
    );

    write_config(&env, serde_json::json!({"credsStore": "fake"}));
    let out = env
        .cmd()
        .env("PATH", &path)
        .args(["analyze", &image, "--offline"])
        .output()
        .unwrap();
    assert_success(&out, "credsStore");
    assert_no_secret(&out);

    // A store that has nothing for this registry means anonymous, which is denied here.
    write_config(&env, serde_json::json!({"credsStore": "empty"}));
    let out = env
        .cmd()
        .env("PATH", &path)
        .args(["analyze", &image, "--offline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    write_config(
        &env,
        serde_json::json!({"credHelpers": {registry.host.clone(): "missing"}}),
    );
    let out = env
        .cmd()
        .env("PATH", &path)
        .args(["analyze", &image, "--offline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let e = support::ErrorBlock::parse(&err);
    assert!(
        e.error.contains("docker-credential-missing") && e.hint().contains("install"),
        "{e:?}"
    );
}
