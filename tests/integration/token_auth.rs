//! Bearer-token auth against a real token flow: the distribution registry in
//! `auth: token` mode and a token server that signs JWTs. Covers the GET flow with
//! basic credentials, the OAuth2 refresh-token flow (`identitytoken`), multi-scope
//! tokens for cross-repository mounts, the catalog scope, and refused credentials.
//! No password, refresh token or issued token appears in any output.

use std::process::Output;

use base64::Engine;
use serde_json::json;

use crate::support;
use crate::support::token::TokenServer;
use crate::support::{Env, Registry, assert_success};

const USER: &str = "deployer";
const PASSWORD: &str = "t0ken-flow-Secret-42";
const REFRESH: &str = "refresh-token-do-not-leak-7f3a";

fn check_no_secrets(out: &Output, issued: &[String]) {
    check_bytes_for_secrets(&out.stdout, issued);
    check_bytes_for_secrets(&out.stderr, issued);
}

fn check_bytes_for_secrets(bytes: &[u8], issued: &[String]) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let s = String::from_utf8_lossy(bytes);
    for secret in [PASSWORD, REFRESH, basic.as_str()] {
        assert!(!s.contains(secret), "a secret leaked:\n{s}");
    }
    for t in issued {
        // The signature part is unique to each token.
        let sig = t.rsplit('.').next().unwrap();
        assert!(!s.contains(sig), "an issued token leaked:\n{s}");
    }
}

#[test]
fn every_token_flow_gets_access_and_no_secret_is_printed_or_written() {
    let tokens = TokenServer::start(USER, PASSWORD, REFRESH);
    let registry = Registry::start_token(&tokens.registry_auth());
    let creds = format!("--dest-creds={USER}:{PASSWORD}");
    support::push_example(
        &registry,
        &[("base", "lambda/base:1"), ("app", "fn/app:v1")],
        &[&creds],
    );
    let host = registry.host.clone();
    let (app, base) = (format!("{host}/fn/app:v1"), format!("{host}/lambda/base:1"));
    let env = Env::new();
    let config = |v: serde_json::Value| {
        std::fs::write(env.home().join(".docker/config.json"), v.to_string()).unwrap()
    };
    let mut outputs: Vec<Output> = Vec::new();

    // Anonymous: the token server hands out a token without access.
    let out = env.run(&["analyze", &app, "--offline", "-v"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    outputs.push(out);

    // Basic credentials exchanged for a bearer token.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    config(json!({"auths": {host.clone(): {"auth": auth}}}));
    let out = env.run(&[
        "analyze",
        &app,
        "--offline",
        "--base-image",
        &base,
        "--format",
        "json",
        "-vv",
    ]);
    assert_success(&out, "analyze through the token server");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GET token from"),
        "the token flow was used"
    );
    outputs.push(out);

    // A mount needs one token for two repositories (push here, pull there).
    let files = tempfile::tempdir().unwrap();
    let report = files.path().join("slim.json");
    let out = env.run(&[
        "optimize",
        &app,
        &format!("{host}/fn/app-slim:1"),
        "--offline",
        "--base-image",
        &base,
        "--format",
        "json",
        "--report",
        report.to_str().unwrap(),
        "-v",
    ]);
    assert_success(&out, "optimize through the token server");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let transfers: Vec<&str> = r["new_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["transfer"].as_str().unwrap())
        .collect();
    assert_eq!(&transfers[..2], ["mounted", "mounted"]);
    outputs.push(out);

    // The catalog has its own scope (registry:catalog:*).
    let dir = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "audit",
        &host,
        "--output",
        &dir.path().display().to_string(),
        "--offline",
        "--base-image",
        &base,
        "-v",
    ]);
    assert_success(&out, "audit through the token server");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audited 3 of 3 images"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    outputs.push(out);

    // An identity token (what `docker login` stores for OAuth2 registries).
    let env2 = Env::new();
    std::fs::write(
        env2.home().join(".docker/config.json"),
        json!({"auths": {host.clone(): {"identitytoken": REFRESH}}}).to_string(),
    )
    .unwrap();
    let out = env2.run(&["analyze", &app, "--offline", "-v"]);
    assert_success(&out, "analyze with an identity token");
    outputs.push(out);

    // Refused credentials: the error names the registry and where they came from.
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong-password"));
    config(json!({"auths": {host.clone(): {"auth": wrong}}}));
    let out = env.run(&["analyze", &app, "--offline", "-v"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let e = support::ErrorBlock::parse(&err);
    assert!(
        e.error.contains(&host)
            && e.error.contains("refused")
            && e.error.contains("credentials from auths in"),
        "{e:?}"
    );
    assert!(!err.contains("wrong-password"));
    outputs.push(out);

    let issued = tokens.issued.lock().unwrap().clone();
    assert!(issued.len() >= 5, "tokens were issued ({})", issued.len());
    for out in &outputs {
        check_no_secrets(out, &issued);
    }
    // And every file the runs wrote: the optimize report and the audit's outputs.
    let mut written = vec![report];
    for e in std::fs::read_dir(dir.path()).unwrap() {
        written.push(e.unwrap().path());
    }
    assert!(
        written.len() >= 5,
        "report, audit.jsonl, summaries, page: {written:?}"
    );
    for f in written.iter().filter(|f| f.is_file()) {
        check_bytes_for_secrets(&std::fs::read(f).unwrap(), &issued);
    }
}
