//! HTTPS, the transport every real registry (ECR, public.ecr.aws, GHCR) uses: a
//! distribution registry serving TLS with a certificate from a private CA, reached
//! as `0.0.0.0:PORT` (not a loopback name, so coldpress insists on HTTPS).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use crate::support::{Env, Registry, assert_success, require};

/// A private CA and a server certificate it signed for the IP address 0.0.0.0.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let openssl = require("openssl", "openssl");
        let run = |args: &[&str], what: &str| {
            let out = Command::new(&openssl)
                .current_dir(dir.path())
                .args(args)
                .output()
                .unwrap();
            assert_success(&out, what);
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &["-subj", "/CN=coldpress test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign"],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
            "openssl req (CA)",
        );
        run(
            &[
                &["req", "-nodes", "-subj", "/CN=0.0.0.0"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
            "openssl req (server)",
        );
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:0.0.0.0,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
            "openssl x509 (sign)",
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn coldpress(env: &Env, ca: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd();
    // No CA from the environment running the tests: trust is exactly what the test sets.
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd.args(args).output().unwrap()
}

#[test]
fn an_untrusted_ca_is_refused_with_a_hint_and_ssl_cert_file_trusts_it() {
    let pki = Pki::new();
    let registry = Registry::start_tls(&pki.path("server.pem"), &pki.path("server.key"));
    support::push_example(&registry, &[("app", "app:v1")], &[]);
    let host = registry.off_loopback_host();
    let env = Env::new();

    // Untrusted: one line that names the registry and the way to trust it.
    let out = coldpress(
        &env,
        None,
        &[
            "analyze",
            &format!("{host}/app:v1"),
            "--offline",
            "--retries",
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let e = support::ErrorBlock::parse(&err);
    assert!(
        e.error.contains(&host)
            && e.error.contains("not signed by a trusted CA")
            && e.hint().contains("SSL_CERT_FILE"),
        "names the registry, and how to trust its CA in the hint: {e:?}"
    );

    // Trusted through SSL_CERT_FILE: pull, slim and push, all over TLS.
    let ca = pki.path("ca.pem");
    let out = coldpress(
        &env,
        Some(&ca),
        &[
            "optimize",
            &format!("{host}/app:v1"),
            &format!("{host}/app:slim"),
            "--offline",
            "--format",
            "json",
            "-q",
        ],
    );
    assert_success(&out, "optimize over HTTPS");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = report["destination"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(report["push"]["uploaded_bytes"].as_u64().unwrap() > 0);

    // The registry saw TLS requests only, and skopeo finds what we pushed.
    let log = registry.log();
    assert!(
        log.contains("PUT /v2/app/manifests/slim"),
        "the push went to this registry:\n{log}"
    );
    assert!(
        !log.contains("first record does not look like a TLS handshake"),
        "no connection fell back to plain HTTP:\n{log}"
    );
    let out = Command::new(require("skopeo", "skopeo"))
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{}/app:slim", registry.host))
        .output()
        .unwrap();
    assert_success(&out, "skopeo inspect");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
}
