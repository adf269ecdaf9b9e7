//! OS package databases other than the realistic fixture's dpkg: an Alpine
//! image whose apk `installed` database and `world` file are written by hand in
//! the documented format (https://wiki.alpinelinux.org/wiki/Apk_spec), and
//! Amazon Linux-style images whose rpm database dnf writes (sqlite, and the
//! Berkeley DB `Packages` of Amazon Linux 2, written by Berkeley DB's db_load
//! from the same headers). Build-only packages go with what only they needed;
//! a library a kept ELF file needs stays; the database is edited to match (or,
//! for Berkeley DB, which coldpress does not write, the packages stay); umoci
//! and Debian's rpm read the result back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// The packages of an Amazon Linux-style image, built with Debian's rpmbuild
/// into a local repository that dnf installs from: base-files; gcc, which
/// requires binutils (which requires zlib), libstdcxx and /usr/bin/ld; libpq.
fn rpm_repo(work: &Path) -> PathBuf {
    let top = work.join("rpmbuild");
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
    let repo = work.join("repo");
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
    repo
}

/// An image layout and an unpacked bundle that umoci repacks into tags.
struct Bundle {
    layout: PathBuf,
    bundle: PathBuf,
}

impl Bundle {
    /// An empty image, tagged `base`, unpacked.
    fn new(work: &Path) -> Bundle {
        let b = Bundle {
            layout: work.join("img"),
            bundle: work.join("bundle"),
        };
        let umoci = require("umoci", "umoci");
        run(
            std::process::Command::new(&umoci)
                .args(["init", "--layout"])
                .arg(&b.layout),
            "umoci init",
        );
        run(
            std::process::Command::new(&umoci).args(["new", "--image", &b.image("base")]),
            "umoci new",
        );
        run(
            std::process::Command::new(&umoci)
                .args(["unpack", "--image", &b.image("base")])
                .arg(&b.bundle),
            "umoci unpack",
        );
        b
    }

    fn root(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.layout.display())
    }

    /// The bundle's changes as a new layer, tagged `tag`.
    fn repack(&self, tag: &str) {
        run(
            std::process::Command::new(require("umoci", "umoci"))
                .args(["repack", "--refresh-bundle", "--image", &self.image(tag)])
                .arg(&self.bundle),
            "umoci repack",
        )
    }
}

/// The function's native module: a real shared object that needs libstdc++.so.6.
fn native_module(work: &Path, root: &Path) {
    std::fs::write(work.join("m.c"), "int answer(void) { return 42; }\n").unwrap();
    std::fs::create_dir_all(root.join("var/task")).unwrap();
    run(
        std::process::Command::new(require("gcc", "gcc"))
            .args(["-shared", "-fPIC", "-o"])
            .arg(root.join("var/task/native.so"))
            .arg(work.join("m.c"))
            .args([
                "-Wl,--no-as-needed",
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            ]),
        "gcc -shared",
    );
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
    let repo = rpm_repo(work.path());
    // Layers by umoci: base = dnf install base-files; app = + gcc libpq + code.
    let b = Bundle::new(work.path());
    let root = b.root();
    dnf_install(&root, &repo, &["base-files"]);
    b.repack("base");
    dnf_install(&root, &repo, &["gcc", "libpq"]);
    native_module(work.path(), &root);
    b.repack("app");
    let image = |tag: &str| b.image(tag);

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

/// The header blobs of an rpmdb.sqlite, by header number.
fn sqlite_headers(db: &Path) -> Vec<(u32, Vec<u8>)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// rpm's Berkeley DB `Packages` holding `headers`, written by Berkeley DB's
/// own `db_load` from its dump format (`db_dump`'s bytevalue form: a hex line
/// per key, then per value). Keys are header numbers in the database's byte
/// order, as rpm writes them; key 0 is rpm's counter of header numbers.
fn bdb_packages(to: &Path, headers: &[(u32, Vec<u8>)], page_size: u32, big_endian: bool) {
    let n = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut dump =
        format!("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize={page_size}\nHEADER=END\n");
    let next = headers.iter().map(|h| h.0).max().unwrap_or(0) + 1;
    dump.push_str(&format!(" {}\n {}\n", hex(&n(0)), hex(&n(next))));
    for (k, v) in headers {
        dump.push_str(&format!(" {}\n {}\n", hex(&n(*k)), hex(v)));
    }
    dump.push_str("DATA=END\n");
    let file = to.with_extension("dump");
    std::fs::write(&file, dump).unwrap();
    let _ = std::fs::remove_file(to);
    run(
        std::process::Command::new(require("db5.3_load", "db5.3-util"))
            .arg("-c")
            .arg(format!(
                "db_lorder={}",
                if big_endian { 4321 } else { 1234 }
            ))
            .arg("-f")
            .arg(&file)
            .arg(to),
        "db5.3_load",
    );
    std::fs::remove_file(&file).unwrap();
}

/// Swap the root's rpmdb.sqlite for a Berkeley DB `Packages` of the same
/// headers (as Amazon Linux 2 keeps it); the sqlite twin goes to `twin`.
fn to_bdb(root: &Path, twin: &Path) {
    std::fs::create_dir_all(twin).unwrap();
    let db = root.join("var/lib/rpm");
    std::fs::rename(db.join("rpmdb.sqlite"), twin.join("rpmdb.sqlite")).unwrap();
    let headers = sqlite_headers(&twin.join("rpmdb.sqlite"));
    bdb_packages(&db.join("Packages"), &headers, 512, false);
}

/// Package name → (EVR, files).
type Listing = BTreeMap<String, (String, BTreeSet<String>)>;

/// The packages Debian's rpm lists from the database in `dbpath`, with the
/// given backend (`sqlite`, or `bdb_ro`: rpm's own read-only Berkeley DB
/// reader).
fn rpm_lists(dbpath: &Path, backend: &str) -> Listing {
    let out = std::process::Command::new(require("rpm", "rpm"))
        .arg("--define")
        .arg(format!("_db_backend {backend}"))
        .arg("--dbpath")
        .arg(dbpath)
        .args(["-qa", "--qf", "@%{NAME} %{EVR}\\n[%{FILENAMES}\\n]"])
        .output()
        .unwrap();
    support::assert_success(&out, "rpm -qa");
    let mut listing = Listing::new();
    let mut current = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(p) = line.strip_prefix('@') {
            let (name, evr) = p.split_once(' ').unwrap();
            current = name.to_string();
            listing.insert(current.clone(), (evr.to_string(), BTreeSet::new()));
        } else if !line.is_empty() {
            listing
                .get_mut(&current)
                .unwrap()
                .1
                .insert(line.to_string());
        }
    }
    listing
}

/// The same, as coldpress reads a Berkeley DB `Packages` file.
fn coldpress_lists(packages: &Path) -> Listing {
    let file = std::fs::File::open(packages).unwrap();
    coldpress::packages::rpm::bdb_headers(file)
        .unwrap()
        .iter()
        .map(|(_, h)| (h.name(), (h.evr(), h.files().into_iter().collect())))
        .collect()
}

/// An Amazon Linux 2-style image: the same packages as the sqlite test,
/// installed by dnf, but each layer's database is a Berkeley DB `Packages`
/// file written by db_load from dnf's headers. coldpress reads it as Debian's
/// rpm reads it (its sqlite twin, and rpm's own `bdb_ro` reader), in both byte
/// orders, with headers on overflow pages and on the page. It cannot rewrite
/// it, so the build-only packages stay, each saying why, and the database
/// goes out as it came in.
#[test]
fn rpm_berkeley_db_is_read_and_its_packages_stay() {
    let work = tempfile::tempdir().unwrap();
    let repo = rpm_repo(work.path());
    let b = Bundle::new(work.path());
    let root = b.root();
    dnf_install(&root, &repo, &["base-files"]);
    let base_twin = work.path().join("twin-base");
    to_bdb(&root, &base_twin);
    b.repack("base");
    std::fs::remove_file(root.join("var/lib/rpm/Packages")).unwrap();
    std::fs::rename(
        base_twin.join("rpmdb.sqlite"),
        root.join("var/lib/rpm/rpmdb.sqlite"),
    )
    .unwrap();
    dnf_install(&root, &repo, &["gcc", "libpq"]);
    native_module(work.path(), &root);
    let twin = work.path().join("twin-app");
    to_bdb(&root, &twin);
    b.repack("app");

    // The same packages, versions and files as Debian's rpm reads from the
    // sqlite twin and from the Berkeley DB files (rpm's bdb_ro backend).
    let expected = rpm_lists(&twin, "sqlite");
    assert_eq!(
        expected.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "base-files",
            "binutils",
            "gcc",
            "libpq",
            "libstdcxx",
            "zlib"
        ]
    );
    let headers = sqlite_headers(&twin.join("rpmdb.sqlite"));
    let (smallest, largest) = (
        headers.iter().map(|h| h.1.len()).min().unwrap(),
        headers.iter().map(|h| h.1.len()).max().unwrap(),
    );
    // 512-byte pages put every header on overflow pages; 64 KiB pages keep
    // them on the hash page itself.
    assert!(
        smallest > 512 && largest < 65536 / 4,
        "{smallest} {largest}"
    );
    let packages = root.join("var/lib/rpm/Packages");
    assert_eq!(coldpress_lists(&packages), expected);
    assert_eq!(rpm_lists(packages.parent().unwrap(), "bdb_ro"), expected);
    for (page_size, big_endian) in [(512, true), (65536, false), (65536, true)] {
        let dir = work.path().join(format!("bdb-{page_size}-{big_endian}"));
        std::fs::create_dir_all(&dir).unwrap();
        bdb_packages(&dir.join("Packages"), &headers, page_size, big_endian);
        let what = format!("{page_size}-byte pages, big-endian: {big_endian}");
        assert_eq!(coldpress_lists(&dir.join("Packages")), expected, "{what}");
        assert_eq!(rpm_lists(&dir, "bdb_ro"), expected, "{what}");
    }

    let env = Env::new();
    let out_dir = work.path().join("out");
    let r = env.report(&[
        "optimize",
        &format!("oci:{}", b.image("app")),
        &format!("oci:{}:slim", out_dir.display()),
        "--base-image",
        &format!("oci:{}", b.image("base")),
    ]);
    let pk = &r["os_packages"];
    assert_eq!(pk["manager"], "rpm", "{pk}");
    assert_eq!(
        (pk["before"].as_u64(), pk["after"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(pk["removed"].as_array().unwrap().len(), 0, "{pk}");
    let kept: BTreeMap<&str, &str> = pk["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["reason"].as_str().unwrap()))
        .collect();
    let read_only = coldpress::packages::rpm::BDB_READ_ONLY;
    assert_eq!(
        kept.keys().copied().collect::<Vec<_>>(),
        ["binutils", "gcc", "libpq", "libstdcxx", "zlib"]
    );
    // What the sqlite database would have allowed, said in the reason.
    assert!(
        kept["gcc"].starts_with(read_only) && kept["gcc"].contains("otherwise: build-only"),
        "{}",
        kept["gcc"]
    );
    assert!(
        kept["zlib"].starts_with(read_only) && kept["zlib"].contains("auto-installed for binutils"),
        "{}",
        kept["zlib"]
    );
    assert!(
        kept["libstdcxx"].contains("/var/task/native.so"),
        "{}",
        kept["libstdcxx"]
    );
    assert_eq!(kept["libpq"], "explicitly installed");
    assert!(
        r["edited"].as_array().is_none_or(Vec::is_empty),
        "{}",
        r["edited"]
    );
    assert_eq!(r["verified"], true);

    // The output's database is the input's, byte for byte, and the files
    // only the package rule would have removed are there. (Files a file rule
    // matches still go: build-toolchain takes /usr/bin/gcc of the gcc this
    // database still lists; docs/decisions.md names the gap.)
    let out = umoci_unpack(&out_dir, "slim");
    let out_root = rootfs(&out);
    assert_eq!(
        std::fs::read(out_root.join("var/lib/rpm/Packages")).unwrap(),
        std::fs::read(&packages).unwrap()
    );
    for stays in [
        "usr/lib64/libz.so.1",
        "usr/lib64/libpq.so.5",
        "usr/lib64/libstdc++.so.6",
    ] {
        assert!(out_root.join(stays).exists(), "{stays} should stay");
    }
    assert_eq!(rpm_lists(&out_root.join("var/lib/rpm"), "bdb_ro"), expected);
}
