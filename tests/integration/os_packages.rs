//! OS package databases other than the realistic fixture's dpkg: an Alpine
//! image whose apk `installed` database and `world` file are written by hand in
//! the documented format (https://wiki.alpinelinux.org/wiki/Apk_spec). Build-only
//! packages go with what only they needed; a library a kept ELF file needs stays;
//! the database is edited to match; umoci reads the result back.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support;
use crate::support::{Env, raw_image, require, rootfs, umoci_unpack};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>),
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_path(format!("{p}/")).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                h.set_path(p).unwrap();
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

const MUSL: &str = "C:Q1musl=\nP:musl\nV:1.2.4-r2\nA:x86_64\nT:the musl c library\np:so:libc.musl-x86_64.so.1=1\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\n";
const ADDED: &str = "C:Q1zlib=\nP:zlib\nV:1.3.1-r0\nA:x86_64\nD:so:libc.musl-x86_64.so.1\np:so:libz.so.1=1.3.1\nF:usr/lib\nR:libz.so.1\n\nC:Q1stdc=\nP:libstdc++\nV:13.2.1_git20231014-r0\nA:x86_64\nD:so:libc.musl-x86_64.so.1\np:so:libstdc++.so.6=6.0.32\nF:usr/lib\nR:libstdc++.so.6\n\nC:Q1binu=\nP:binutils\nV:2.41-r0\nA:x86_64\nD:so:libc.musl-x86_64.so.1 so:libz.so.1\nF:usr/bin\nR:ld\nR:as\n\nC:Q1gcc=\nP:gcc\nV:13.2.1_git20231014-r0\nA:x86_64\nD:binutils libstdc++ !gcc-doc\nF:usr/bin\nR:gcc\nF:usr/libexec/gcc\nR:cc1\n\n";

#[test]
fn apk_build_packages_go_and_a_needed_library_stays() {
    // A real ELF shared object whose DT_NEEDED names libstdc++.so.6.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("m.c"), "int answer(void) { return 42; }\n").unwrap();
    let so = work.path().join("native.so");
    let out = std::process::Command::new(require("gcc", "gcc"))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(work.path().join("m.c"))
        // By path: the soname goes into DT_NEEDED, no -dev package needed.
        .args([
            "-Wl,--no-as-needed",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        ])
        .output()
        .unwrap();
    support::assert_success(&out, "gcc -shared");
    let native = std::fs::read(&so).unwrap();

    let base = tar_of(&[
        E::Dir("etc"),
        E::Dir("etc/apk"),
        E::File("etc/apk/world", b"musl\n".to_vec()),
        E::Dir("lib"),
        E::Dir("lib/apk"),
        E::Dir("lib/apk/db"),
        E::File("lib/apk/db/installed", MUSL.as_bytes().to_vec()),
        E::File("lib/ld-musl-x86_64.so.1", vec![1; 1000]),
        E::File("lib/libc.musl-x86_64.so.1", vec![2; 1000]),
        E::Dir("usr"),
        E::Dir("usr/bin"),
        E::Dir("usr/lib"),
        E::Dir("var"),
        E::Dir("var/task"),
    ]);
    let added = tar_of(&[
        E::File("etc/apk/world", b"gcc\nmusl\n".to_vec()),
        E::File(
            "lib/apk/db/installed",
            format!("{MUSL}{ADDED}").into_bytes(),
        ),
        E::File("usr/bin/gcc", vec![3; 5000]),
        E::File("usr/bin/ld", vec![4; 4000]),
        E::File("usr/bin/as", vec![5; 3000]),
        E::Dir("usr/libexec"),
        E::Dir("usr/libexec/gcc"),
        E::File("usr/libexec/gcc/cc1", vec![6; 20000]),
        E::File("usr/lib/libz.so.1", vec![7; 2000]),
        E::File("usr/lib/libstdc++.so.6", vec![8; 9000]),
        E::File("var/task/native.so", native),
        E::File(
            "var/task/handler.py",
            b"def handler(e, c):\n    return 1\n".to_vec(),
        ),
    ]);
    let layout = work.path().join("img");
    raw_image(&layout, "base", std::slice::from_ref(&base));
    raw_image(&layout, "app", &[base, added]);

    let env = Env::new();
    let out_dir = work.path().join("out");
    let r = env.report(&[
        "optimize",
        &format!("oci:{}:app", layout.display()),
        &format!("oci:{}:slim", out_dir.display()),
        "--base-image",
        &format!("oci:{}:base", layout.display()),
    ]);
    let pk = &r["os_packages"];
    assert_eq!(pk["manager"], "apk", "{pk}");
    let names = |k: &str| -> BTreeSet<String> {
        pk[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("removed"),
        ["binutils", "gcc", "zlib"].map(String::from).into(),
        "{pk}"
    );
    assert_eq!(names("kept"), ["libstdc++"].map(String::from).into());
    let why = pk["kept"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains("/var/task/native.so") && why.contains("libstdc++.so.6"),
        "{why}"
    );
    assert_eq!(
        (pk["before"].as_u64(), pk["after"].as_u64()),
        (Some(5), Some(2))
    );
    let edited: BTreeSet<&str> = r["edited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(edited, ["/etc/apk/world", "/lib/apk/db/installed"].into());
    assert_eq!(r["verified"], true);

    // umoci's view of the output: files and database agree.
    let bundle = umoci_unpack(&out_dir, "slim");
    let root = rootfs(&bundle);
    let exists = |p: &str| root.join(p).exists();
    for gone in [
        "usr/bin/gcc",
        "usr/bin/ld",
        "usr/libexec/gcc/cc1",
        "usr/lib/libz.so.1",
    ] {
        assert!(!exists(gone), "{gone} should be gone");
    }
    for kept in [
        "usr/lib/libstdc++.so.6",
        "var/task/native.so",
        "lib/libc.musl-x86_64.so.1",
    ] {
        assert!(exists(kept), "{kept} should stay");
    }
    let installed = std::fs::read_to_string(root.join("lib/apk/db/installed")).unwrap();
    let listed: BTreeSet<&str> = installed
        .lines()
        .filter_map(|l| l.strip_prefix("P:"))
        .collect();
    assert_eq!(listed, ["libstdc++", "musl"].into());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/apk/world")).unwrap(),
        "musl\n"
    );
    assert_every_listed_file_exists(&root, &installed);
}

/// Every file the apk database lists is in the root filesystem.
fn assert_every_listed_file_exists(root: &Path, installed: &str) {
    let mut dir = "";
    for line in installed.lines() {
        if let Some(d) = line.strip_prefix("F:") {
            dir = d;
        } else if let Some(f) = line.strip_prefix("R:") {
            let p = root.join(dir).join(f);
            assert!(p.exists(), "{} is listed but missing", p.display());
        }
    }
}

/// Run a command, failing the test with its output.
fn run(cmd: &mut std::process::Command, what: &str) {
    let out = cmd.output().unwrap();
    support::assert_success(&out, what);
}

/// An rpm package built with Debian's rpmbuild: noarch, the given files (with
/// content), and the given requirements (names or paths).
fn rpm_package(top: &Path, name: &str, requires: &[&str], files: &[(&str, Vec<u8>)]) {
    let specs = top.join("SPECS");
    std::fs::create_dir_all(&specs).unwrap();
    let src = top.join("SOURCES").join(name);
    std::fs::create_dir_all(&src).unwrap();
    let mut spec = format!(
        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: {name}\nLicense: MIT\nBuildArch: noarch\nAutoReqProv: no\n"
    );
    for r in requires {
        spec.push_str(&format!("Requires: {r}\n"));
    }
    spec.push_str(&format!(
        "%description\n{name} (coldpress test package)\n%install\n"
    ));
    for (i, (path, data)) in files.iter().enumerate() {
        std::fs::write(src.join(i.to_string()), data).unwrap();
        spec.push_str(&format!(
            "mkdir -p %{{buildroot}}{dir} && cp {s}/{i} %{{buildroot}}{path}\n",
            dir = Path::new(path).parent().unwrap().display(),
            s = src.display(),
        ));
    }
    spec.push_str("%files\n");
    for (path, _) in files {
        spec.push_str(&format!("{path}\n"));
    }
    let file = specs.join(format!("{name}.spec"));
    std::fs::write(&file, spec).unwrap();
    run(
        std::process::Command::new(require("rpmbuild", "rpm"))
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&file),
        &format!("rpmbuild {name}"),
    );
}

/// `dnf --installroot` from a local repository, with the database where
/// Amazon Linux keeps it (Debian's rpm puts it under ~/.rpmdb by default).
fn dnf_install(root: &Path, repo: &Path, packages: &[&str]) {
    let debian_db = root.join("root/.rpmdb");
    let al_db = root.join("var/lib/rpm");
    if al_db.join("rpmdb.sqlite").exists() {
        std::fs::create_dir_all(&debian_db).unwrap();
        std::fs::rename(al_db.join("rpmdb.sqlite"), debian_db.join("rpmdb.sqlite")).unwrap();
    }
    run(
        std::process::Command::new(require("dnf", "dnf"))
            .env("HOME", "/root")
            .args(["-y", "-q", "--installroot"])
            .arg(root)
            .args(["--setopt=reposdir=/dev/null", "--repofrompath"])
            .arg(format!("local,file://{}", repo.display()))
            .args([
                "--repo=local",
                "--setopt=local.gpgcheck=0",
                "--releasever=1",
                "--nodocs",
                "install",
            ])
            .args(packages),
        &format!("dnf install {packages:?}"),
    );
    std::fs::create_dir_all(&al_db).unwrap();
    std::fs::rename(debian_db.join("rpmdb.sqlite"), al_db.join("rpmdb.sqlite")).unwrap();
    std::fs::remove_dir_all(root.join("root")).unwrap();
    for f in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal", ".rpm.lock"] {
        let _ = std::fs::remove_file(debian_db.join(f));
    }
}

/// An Amazon Linux-style image: the base has a real sqlite rpmdb written by
/// dnf; the app layer installs gcc (binutils, zlib and libstdcxx come as its
/// dependencies) and libpq by request, plus the function, whose native module
/// needs libstdc++.so.6. gcc, binutils and zlib go; libstdcxx stays because the
/// module needs it, libpq because it was asked for. Debian's rpm reads the
/// output's database back.
#[test]
fn rpm_build_packages_go_and_the_rpmdb_follows() {
    let work = tempfile::tempdir().unwrap();
    let top = work.path().join("rpmbuild");
    rpm_package(
        &top,
        "base-files",
        &[],
        &[
            ("/etc/os-release", b"NAME=test\n".to_vec()),
            ("/usr/lib64/libc.so.6", vec![1; 3000]),
        ],
    );
    rpm_package(
        &top,
        "zlib",
        &[],
        &[("/usr/lib64/libz.so.1", vec![2; 2000])],
    );
    rpm_package(
        &top,
        "binutils",
        &["zlib"],
        &[("/usr/bin/ld", vec![3; 4000])],
    );
    rpm_package(
        &top,
        "libstdcxx",
        &[],
        &[("/usr/lib64/libstdc++.so.6", vec![4; 9000])],
    );
    rpm_package(
        &top,
        "gcc",
        &["binutils", "libstdcxx", "/usr/bin/ld"],
        &[
            ("/usr/bin/gcc", vec![5; 5000]),
            ("/usr/libexec/gcc/cc1", vec![6; 20000]),
        ],
    );
    rpm_package(
        &top,
        "libpq",
        &[],
        &[("/usr/lib64/libpq.so.5", vec![7; 6000])],
    );
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for e in std::fs::read_dir(top.join("RPMS/noarch")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, repo.join(p.file_name().unwrap())).unwrap();
    }
    run(
        std::process::Command::new(require("createrepo_c", "createrepo-c"))
            .arg("-q")
            .arg(&repo),
        "createrepo_c",
    );

    // Layers by umoci: base = dnf install base-files; app = + gcc libpq + code.
    let layout = work.path().join("img");
    let bundle = work.path().join("bundle");
    let umoci = require("umoci", "umoci");
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    run(
        std::process::Command::new(&umoci)
            .args(["init", "--layout"])
            .arg(&layout),
        "umoci init",
    );
    run(
        std::process::Command::new(&umoci).args(["new", "--image", &image("base")]),
        "umoci new",
    );
    run(
        std::process::Command::new(&umoci)
            .args(["unpack", "--image", &image("base")])
            .arg(&bundle),
        "umoci unpack",
    );
    let root = bundle.join("rootfs");
    dnf_install(&root, &repo, &["base-files"]);
    let repack = |tag: &str| {
        run(
            std::process::Command::new(&umoci)
                .args(["repack", "--refresh-bundle", "--image", &image(tag)])
                .arg(&bundle),
            "umoci repack",
        )
    };
    repack("base");
    dnf_install(&root, &repo, &["gcc", "libpq"]);
    std::fs::write(work.path().join("m.c"), "int answer(void) { return 42; }\n").unwrap();
    std::fs::create_dir_all(root.join("var/task")).unwrap();
    run(
        std::process::Command::new(require("gcc", "gcc"))
            .args(["-shared", "-fPIC", "-o"])
            .arg(root.join("var/task/native.so"))
            .arg(work.path().join("m.c"))
            .args([
                "-Wl,--no-as-needed",
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            ]),
        "gcc -shared",
    );
    repack("app");

    let env = Env::new();
    let out_dir = work.path().join("out");
    let r = env.report(&[
        "optimize",
        &format!("oci:{}", image("app")),
        &format!("oci:{}:slim", out_dir.display()),
        "--base-image",
        &format!("oci:{}", image("base")),
    ]);
    let pk = &r["os_packages"];
    assert_eq!(pk["manager"], "rpm", "{pk}");
    let names = |k: &str| -> BTreeSet<String> {
        pk[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("removed"),
        ["binutils", "gcc", "zlib"].map(String::from).into(),
        "{pk}"
    );
    assert_eq!(
        names("kept"),
        ["libpq", "libstdcxx"].map(String::from).into()
    );
    for k in pk["kept"].as_array().unwrap() {
        let why = k["reason"].as_str().unwrap();
        match k["name"].as_str().unwrap() {
            "libstdcxx" => assert!(why.contains("/var/task/native.so"), "{why}"),
            _ => assert_eq!(why, "explicitly installed"),
        }
    }
    assert_eq!(r["edited"][0]["path"], "/var/lib/rpm/rpmdb.sqlite");
    assert_eq!(r["verified"], true);

    // Debian's rpm reads the output's database: exactly the kept packages,
    // and every file they own is there.
    let out = umoci_unpack(&out_dir, "slim");
    let out_root = rootfs(&out);
    let q = std::process::Command::new(require("rpm", "rpm"))
        .arg("--root")
        .arg(&out_root)
        .args(["--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NAME}\\n"])
        .output()
        .unwrap();
    support::assert_success(&q, "rpm -qa");
    let listed: BTreeSet<String> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed,
        ["base-files", "libpq", "libstdcxx"]
            .map(String::from)
            .into()
    );
    let files = std::process::Command::new(require("rpm", "rpm"))
        .arg("--root")
        .arg(&out_root)
        .args(["--dbpath", "/var/lib/rpm", "-qal"])
        .output()
        .unwrap();
    support::assert_success(&files, "rpm -qal");
    for f in String::from_utf8_lossy(&files.stdout).lines() {
        assert!(
            out_root.join(f.trim_start_matches('/')).exists(),
            "{f} is listed but missing"
        );
    }
    for gone in [
        "usr/bin/gcc",
        "usr/bin/ld",
        "usr/lib64/libz.so.1",
        "usr/libexec/gcc/cc1",
    ] {
        assert!(!out_root.join(gone).exists(), "{gone} should be gone");
    }
}
