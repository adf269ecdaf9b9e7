//! The repository's Dockerfile, built with buildah (no daemon) and run: coldpress on
//! the entrypoint, CA certificates, a non-root user that can write its cache.
//!
//! This machine reaches package registries only, so neither `FROM` image can be
//! pulled. The Debian base is stood in for by the realistic fixture's debootstrap'd
//! Debian 12 (the release of `debian:bookworm-slim`), tagged with that name, and the
//! build stage by the binary under test: the runtime stage is built exactly as the
//! Dockerfile writes it; the Rust toolchain stage is the part not run here.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{realistic_fixture, require};

struct Buildah {
    bin: std::path::PathBuf,
    storage: tempfile::TempDir,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        // Its own storage: nothing leaks into (or is reused from) the machine's.
        c.arg("--root")
            .arg(self.storage.path().join("root"))
            .arg("--runroot")
            .arg(self.storage.path().join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        check(&out, &format!("buildah {args:?}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Dockerfile with its build stage replaced by the binary under test.
fn runtime_stage_only(dockerfile: &str) -> String {
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(
        dockerfile.contains("COPY --from=build /out/coldpress "),
        "the runtime stage takes the binary from the build stage"
    );
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").unwrap() + 1..];
    format!("FROM scratch AS build\nCOPY coldpress /out/coldpress\n\n{runtime}")
}

#[test]
fn dockerfile_builds_and_runs_coldpress_as_a_non_root_user() {
    let buildah = Buildah {
        bin: require("buildah", "buildah"),
        storage: tempfile::tempdir().unwrap(),
    };
    let fixture = realistic_fixture();
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let base = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .next_back()
        .unwrap()
        .trim()
        .to_string();
    assert!(base.contains("debian:bookworm"), "{base}");

    let id = buildah.ok(&["pull", "-q", &format!("oci:{}:base", fixture.display())]);
    buildah.ok(&["tag", &id, &base]);

    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_coldpress"),
        ctx.path().join("coldpress"),
    )
    .unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        runtime_stage_only(&dockerfile),
    )
    .unwrap();
    // chroot isolation: no daemon, no user namespaces needed. The RUN step
    // fetches ca-certificates from deb.debian.org.
    buildah.ok(&[
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "-t",
        "coldpress-under-test",
        ctx.path().to_str().unwrap(),
    ]);

    let config = buildah.ok(&[
        "inspect",
        "--format",
        "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
        "coldpress-under-test",
    ]);
    assert_eq!(config, "10001:10001 [/usr/local/bin/coldpress]");

    let container = buildah.ok(&["from", "coldpress-under-test"]);
    let run = |script: &str| -> String {
        buildah.ok(&[
            "run",
            "--isolation",
            "chroot",
            &container,
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
    };
    assert_eq!(
        run("/usr/local/bin/coldpress --version"),
        format!("coldpress {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run("id -u"), "10001", "runs as the image's non-root user");
    assert_eq!(
        run("test -s /etc/ssl/certs/ca-certificates.crt && echo present"),
        "present"
    );
    // As that user, in its home: write images, analyze them, keep a cache.
    let report = run(
        "coldpress example ex >/dev/null && coldpress analyze oci:ex:app --base-image oci:ex:base --offline -q --format json",
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["before"]["layers"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        run("test -s $HOME/.cache/coldpress/bases.json && echo cached"),
        "cached"
    );
    buildah.ok(&["rm", &container]);
}
