//! Test harness: a real CNCF distribution registry on a free loopback port,
//! skopeo and umoci as independent tools, cached fixtures, and the coldpress binary.
//! A missing tool fails the test with the command that installs it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub const INSTALL_HINT: &str = "run scripts/setup or scripts/test (they install the test tools), or: apt-get install -y docker-registry skopeo umoci apache2-utils debootstrap jq chromium openssl time buildah gcc libc6-dev python3-pip rpm dnf createrepo-c db5.3-util";

/// A command that had to succeed: fail with its stderr, prefixed by `what`.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fail loudly when a tool the test needs is missing.
pub fn require(tool: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("this test needs `{tool}` (Debian package {package}); {INSTALL_HINT}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry` (CNCF distribution 2.8) on 127.0.0.1.
pub struct Registry {
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    pub fn start_htpasswd(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    /// A registry that trusts a token server (`auth: token`).
    pub fn start_token(auth: &str) -> Registry {
        Self::start_inner(None, Some(auth.to_string()), None, "")
    }

    /// A registry that serves `_catalog` in pages of at most `n` repositories and
    /// refuses a larger `n` (distribution's `catalog.maxentries`).
    pub fn start_catalog_pages(n: usize) -> Registry {
        Self::start_inner(None, None, None, &format!("catalog:\n  maxentries: {n}\n"))
    }

    /// A registry that serves HTTPS with the given certificate and key (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Registry {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Self::start_inner(None, None, Some(tls), "")
    }

    fn start_with(credentials: Option<(String, String)>) -> Registry {
        Self::start_inner(credentials, None, None, "")
    }

    fn start_inner(
        credentials: Option<(String, String)>,
        auth_section: Option<String>,
        tls_section: Option<String>,
        top_section: &str,
    ) -> Registry {
        let bin = require("docker-registry", "docker-registry");
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut auth = auth_section.clone().unwrap_or_default();
            if let Some((u, p)) = &credentials {
                let out = Command::new(require("htpasswd", "apache2-utils"))
                    .args(["-Bbn", u, p])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: coldpress-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{top_section}{auth}",
                dir.path().join("data").display(),
                tls = tls_section.as_deref().unwrap_or_default(),
            );
            let cfg = dir.path().join("config.yml");
            fs::write(&cfg, config).unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut command = Command::new(&bin);
            command
                .arg("serve")
                .arg(&cfg)
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            die_with_parent(&mut command);
            let child = command.spawn().expect("start docker-registry");
            let mut reg = Registry {
                host: format!("127.0.0.1:{port}"),
                dir,
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // lost the port race: try another
                }
                if TcpStream::connect(&reg.host).is_ok() {
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The same registry as `0.0.0.0:PORT`: reachable, but not a loopback name, so
    /// coldpress treats it like a remote host (HTTPS unless told otherwise).
    pub fn off_loopback_host(&self) -> String {
        format!("0.0.0.0:{}", self.host.rsplit(':').next().unwrap())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo copy` with TLS off for loopback registries.
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    let out = Command::new(require("skopeo", "skopeo"))
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(extra)
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert_success(&out, &format!("skopeo copy {src} {dst}"));
}

/// An isolated environment for the coldpress binary: its own cache, HOME and docker config.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home/.docker")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Env { dir }
    }

    /// The runs' own TMPDIR: whatever coldpress leaves behind can be seen here.
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coldpress"));
        c.env("HOME", self.home())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("DOCKER_CONFIG", self.home().join(".docker"))
            .env("TMPDIR", self.tmp())
            .env_remove("COLDPRESS_CACHE_DIR")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "coldpress {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a command for its JSON report: offline (no catalog fetch), quiet.
    /// Every optimize run through here is checked to be never worse than its
    /// source on cold-start bytes, by the manifests skopeo reads.
    pub fn report(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--offline", "--format", "json", "-q"]);
        let r = self.json(&all);
        if args.first() == Some(&"optimize") && r["dry_run"] != true {
            self.assert_never_worse(args[1], args[2], &r);
        }
        r
    }

    /// The non-base layers of `dst` weigh no more than `src`'s, compressed:
    /// what Lambda downloads on a cold start. A reference skopeo cannot read
    /// as this environment (a docker archive, whose manifest skopeo makes up;
    /// an index; a registry needing credentials or a CA only the test holds)
    /// is left to the test's own checks.
    fn assert_never_worse(&self, src: &str, dst: &str, r: &serde_json::Value) {
        let layers = |reference: &str| -> Option<Vec<u64>> {
            if reference.starts_with("docker-archive:") {
                return None;
            }
            let reference = if reference.starts_with("oci:") {
                reference.to_string()
            } else {
                format!("docker://{reference}")
            };
            // Some tests put a fault-injecting proxy in front of the registry.
            let inspect = || {
                Command::new(require("skopeo", "skopeo"))
                    .args(["inspect", "--raw", "--tls-verify=false", &reference])
                    .env("HOME", self.home())
                    .env("DOCKER_CONFIG", self.home().join(".docker"))
                    .output()
                    .unwrap()
            };
            let mut out = inspect();
            for _ in 0..8 {
                if out.status.success() {
                    break;
                }
                out = inspect();
            }
            if !out.status.success() {
                // Only a registry that wants what the test alone holds is let go.
                let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
                assert!(
                    [
                        "unauthorized",
                        "authentication required",
                        "denied",
                        "certificate"
                    ]
                    .iter()
                    .any(|w| err.contains(w)),
                    "skopeo inspect {reference}: {err}"
                );
                return None;
            }
            let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let sizes = m["layers"].as_array()?.iter().map(|l| l["size"].as_u64());
            sizes.collect()
        };
        // coldpress's own three checks (cold-start bytes, code layer, redeploy
        // cost): they pass, or the source itself was tagged.
        let nw = &r["never_worse"];
        assert!(
            nw["ok"] == true || nw["kept_source"].is_string(),
            "optimize {src} {dst}: worse than the source and not kept: {nw}"
        );
        let base = r["base"]["layers"].as_u64().unwrap_or(0) as usize;
        if let (Some(s), Some(d)) = (layers(src), layers(dst)) {
            let cold = |l: &[u64]| -> u64 { l.iter().skip(base).sum() };
            assert!(
                cold(&d) <= cold(&s),
                "optimize {src} {dst}: the output's non-base layers weigh {} bytes, the source's {}",
                cold(&d),
                cold(&s)
            );
        }
    }

    /// `analyze REFERENCE --list-files` as JSON.
    pub fn list_files(&self, reference: &str) -> serde_json::Value {
        self.report(&["analyze", reference, "--list-files"])
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

/// One path of an unpacked root filesystem, as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsEntry {
    pub ftype: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub link: Option<String>,
    pub sha256: Option<String>,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Every extended attribute of `path` itself (not a symlink's target), sorted.
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let fail = |what: &str| -> ! {
        panic!(
            "{what} {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: every buffer passed is as long as the length given with it.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        fail("llistxattr");
    }
    let mut names = vec![0u8; size as usize];
    let size = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size < 0 {
        fail("llistxattr");
    }
    names.truncate(size as usize);
    let mut v = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            fail("lgetxattr");
        }
        let mut value = vec![0u8; len as usize];
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            fail("lgetxattr");
        }
        value.truncate(len as usize);
        v.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    v.sort();
    v
}

/// Walk an unpacked root filesystem: every entry's metadata, content hash and xattrs.
pub fn walk(root: &Path) -> BTreeMap<String, FsEntry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            let ftype = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else {
                "fifo"
            };
            let sha256 = if ft.is_file() {
                let mut h = Sha256::new();
                let mut f = fs::File::open(&p).unwrap();
                let mut buf = vec![0; 1 << 16];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Some(hex::encode(h.finalize()))
            } else {
                None
            };
            out.insert(
                rel,
                FsEntry {
                    ftype,
                    mode: md.permissions().mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: (md.mtime(), md.mtime_nsec()),
                    size: if ft.is_file() { md.len() } else { 0 },
                    link: ft
                        .is_symlink()
                        .then(|| fs::read_link(&p).unwrap().to_string_lossy().to_string()),
                    sha256,
                    rdev: md.rdev(),
                    xattrs: xattrs(&p),
                },
            );
            if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// `umoci unpack` an image from an OCI layout; returns the bundle (rootfs inside).
pub fn umoci_unpack(layout: &Path, tag: &str) -> tempfile::TempDir {
    let bundle = tempfile::tempdir().unwrap();
    let target = bundle.path().join("b");
    let out = Command::new(require("umoci", "umoci"))
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack {}:{tag} failed: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bundle
}

pub fn rootfs(bundle: &tempfile::TempDir) -> PathBuf {
    bundle.path().join("b").join("rootfs")
}

/// Where fixtures that take long to build are cached between runs (outside git).
pub fn fixture_cache() -> PathBuf {
    let dir = std::env::var_os("COLDPRESS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("coldpress-fixtures")
        });
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `f` holding an exclusive lock on `name` in the fixture cache, so parallel
/// test processes build a fixture once.
pub fn with_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let path = fixture_cache().join(format!("{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    file.lock().unwrap();
    let r = f();
    file.unlock().unwrap();
    r
}

/// The ids of a report's findings, in report order.
pub fn finding_ids(r: &serde_json::Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

/// The manifest (or index) `reference` names, as skopeo reads it: an independent
/// view of what coldpress wrote or pushed.
pub fn raw_manifest(reference: &str) -> serde_json::Value {
    let out = Command::new(require("skopeo", "skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false", reference])
        .output()
        .unwrap();
    assert_success(&out, "skopeo inspect --raw");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The layer listings coldpress attached to the manifest `digest` in `repo`
/// (`docker://HOST/REPO`), found as any client finds an image's referrers on
/// a registry without the referrers API (the tag `sha256-<hex>`) and read with
/// skopeo: the artifact manifest and its blobs' (digest, size, layer listed).
pub fn attached_listings(
    repo: &str,
    digest: &str,
) -> (serde_json::Value, Vec<(String, u64, String)>) {
    let tag = digest.replace(':', "-");
    let index = raw_manifest(&format!("{repo}:{tag}"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/vnd.coldpress.layer-listings.v1")
        .unwrap_or_else(|| panic!("no listings artifact in {index}"));
    let artifact = raw_manifest(&format!("{repo}@{}", entry["digest"].as_str().unwrap()));
    assert_eq!(artifact["subject"]["digest"], digest, "{artifact}");
    let blobs = artifact["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
                l["annotations"]["dev.coldpress.layer.digest"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    (artifact, blobs)
}

/// The manifest digest `reference` resolves to, as skopeo computes it.
pub fn skopeo_digest(reference: &str) -> String {
    let out = Command::new(require("skopeo", "skopeo"))
        .args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            reference,
        ])
        .output()
        .unwrap();
    assert_success(&out, "skopeo inspect --format {{.Digest}}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The first `n` layer descriptors of a manifest, as (mediaType, digest, size).
pub fn layer_descriptors(manifest: &serde_json::Value, n: usize) -> Vec<(String, String, u64)> {
    let layers = manifest["layers"].as_array().unwrap();
    assert!(layers.len() >= n, "{n} layers expected in {manifest}");
    layers[..n]
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Make a helper server die with the test process, even when a runner's timeout
/// SIGKILLs the test (Drop does not run then).
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Run `command` to completion and return its output and its peak resident memory
/// in KiB, as GNU time reports it. (Not wait4's rusage of our own child: a child
/// spawned from this test process starts with our peak, up to hundreds of MiB
/// of test data, in ru_maxrss; time's own child starts from a small process.)
pub fn run_measured(command: &Command) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rss");
    let mut timed = Command::new(require("time", "time"));
    timed.arg("-f").arg("%M").arg("-o").arg(&report);
    timed.arg(command.get_program()).args(command.get_args());
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = command.get_current_dir() {
        timed.current_dir(d);
    }
    let output = timed.stdin(Stdio::null()).output().unwrap();
    let text = fs::read_to_string(&report).unwrap();
    // A failing command makes time add a "Command exited with non-zero status" line.
    let kib = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {text:?}"));
    (output, kib)
}

pub mod edge;
pub mod listing;
pub mod ml;
pub mod proxy;
pub mod token;

/// The realistic Lambda-like fixture (debootstrap'd Debian + python3, real PyPI
/// packages, a build toolchain left in), built once and cached. Tags: base,
/// base-v2, app, app-v2 (see tests/fixtures/realistic/README.md).
pub fn realistic_fixture() -> PathBuf {
    // Keyed by the recipe, so an edited build.sh never reuses a stale cache.
    let dir = fixture_cache().join(format!("realistic-{}", recipe_key()));
    with_lock("realistic", || {
        if dir.join("index.json").is_file() {
            return;
        }
        for (tool, package) in [
            ("debootstrap", "debootstrap"),
            ("umoci", "umoci"),
            ("jq", "jq"),
        ] {
            require(tool, package);
        }
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/realistic/build.sh");
        eprintln!(
            "building the realistic fixture into {} (several minutes, cached afterwards)",
            dir.display()
        );
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg("--no-verify")
            .env(
                "COLDPRESS_FIXTURE_CACHE",
                std::env::var_os("COLDPRESS_FIXTURE_CACHE")
                    .unwrap_or_else(|| fixture_cache().join("downloads").into()),
            )
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{} failed; it needs root and network access to deb.debian.org and PyPI",
            script.display()
        );
    });
    dir
}

/// Run the function's handler inside an unpacked root filesystem, as Lambda's
/// entrypoint would, and return what it printed.
pub fn invoke_handler(rootfs: &Path, handler: &str) -> String {
    let out = Command::new(require("chroot", "coreutils"))
        .arg(rootfs)
        .args(["/lambda-entrypoint.sh", handler])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .expect("chroot");
    assert!(
        out.status.success(),
        "the handler failed in {}: {}",
        rootfs.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Write an image whose layers are the given raw tar streams (gzip-compressed),
/// for hostile and malformed inputs our own writer would never produce.
pub fn raw_image(layout: &Path, tag: &str, tars: &[Vec<u8>]) {
    use std::io::Write as _;
    let layers: Vec<(Vec<u8>, Vec<u8>, coldpress::image::Compression)> = tars
        .iter()
        .map(|raw| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(raw).unwrap();
            (
                e.finish().unwrap(),
                raw.clone(),
                coldpress::image::Compression::Gzip,
            )
        })
        .collect();
    blob_image(layout, tag, &layers);
}

/// Write an image from (blob, uncompressed tar, compression) triples, taken as
/// they are: the blob need not be what the tar compresses to.
pub fn blob_image(
    layout: &Path,
    tag: &str,
    layers: &[(Vec<u8>, Vec<u8>, coldpress::image::Compression)],
) {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = coldpress::example::ImageSpec {
        docker: false,
        layers: Vec::new(),
        env: vec![],
        entrypoint: vec![],
        cmd: vec![],
        architecture: "amd64".into(),
        created: "2024-01-01T00:00:00Z".into(),
    };
    for (blob, raw, compression) in layers {
        let f = tempfile::Builder::new().tempfile_in(tmp.path()).unwrap();
        let (mut file, path) = f.into_parts();
        file.write_all(blob).unwrap();
        spec.add(
            coldpress::writer::WrittenLayer {
                path,
                digest: coldpress::digest::Digest::of(blob),
                diff_id: coldpress::digest::Digest::of(raw),
                size: blob.len() as u64,
                uncompressed_size: raw.len() as u64,
                compression: *compression,
                entries: 0,
            },
            "raw",
        );
    }
    spec.write(
        &coldpress::transport::oci_layout::OciLayoutSink::create(layout, Some(tag)).unwrap(),
    )
    .unwrap();
}

/// A tar header with every numeric field set, for hand-made tars.
pub fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Set a header's name bytes directly (no validation), and its checksum.
pub fn set_raw_name(h: &mut tar::Header, name: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name.fill(0);
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
}

/// A raw HTTP/1.1 request to a loopback registry; returns the status code.
pub fn http_status(host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    http(host, method, path, headers, &[])
}

/// PUT `body` to `path` on a plain-HTTP registry; the status code.
pub fn http_put(host: &str, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let length = body.len().to_string();
    let headers = [("Content-Type", content_type), ("Content-Length", &length)];
    http(host, "PUT", path, &headers, body)
}

fn http(host: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Write the built-in example images and push `(tag, repository:tag)` pairs of them
/// to `registry` (extra skopeo flags, e.g. credentials, in `flags`).
pub fn push_example(registry: &Registry, pairs: &[(&str, &str)], flags: &[&str]) {
    let layout = tempfile::tempdir().unwrap();
    coldpress::example::write_example(layout.path()).unwrap();
    let mut all = vec!["--preserve-digests"];
    all.extend_from_slice(flags);
    for (tag, to) in pairs {
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.path().display()),
            &format!("docker://{}/{to}", registry.host),
            &all,
        );
    }
}

/// The realistic fixture's cache key, as its build script computes it (a hash of
/// the recipe; scripts/fixture and scripts/bench ask the same script).
fn recipe_key() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/realistic/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--key")
        .output()
        .unwrap();
    assert_success(&out, "build.sh --key");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 12, "build.sh --key printed {key:?}");
    key
}

/// A failed run's stderr in the shape `main` prints it (uv's): one `error:` line
/// naming what failed, `  caused by:` lines from the typed source chain, then at
/// most one `hint:` line. Progress, warnings and notes before it are ignored.
#[derive(Debug)]
pub struct ErrorBlock {
    pub error: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl ErrorBlock {
    /// Parse and check the shape; panics with the whole stderr if it is wrong.
    pub fn parse(stderr: &str) -> ErrorBlock {
        let lines: Vec<&str> = stderr.lines().collect();
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("error"))
            .collect();
        assert_eq!(
            starts.len(),
            1,
            "exactly one error line expected:\n{stderr}"
        );
        let first = lines[starts[0]];
        assert!(first.starts_with("error: "), "{stderr}");
        let mut block = ErrorBlock {
            error: first["error: ".len()..].to_string(),
            causes: Vec::new(),
            hint: None,
        };
        for l in &lines[starts[0] + 1..] {
            if let Some(c) = l.strip_prefix("  caused by: ") {
                assert!(block.hint.is_none(), "a cause after the hint:\n{stderr}");
                block.causes.push(c.to_string());
            } else if let Some(h) = l.strip_prefix("hint: ") {
                assert!(block.hint.is_none(), "more than one hint:\n{stderr}");
                block.hint = Some(h.to_string());
            } else {
                panic!("unexpected line after the error: {l:?}\n{stderr}");
            }
        }
        block
    }

    /// The error and its causes on one line, for "names the thing" checks.
    pub fn chain(&self) -> String {
        std::iter::once(self.error.as_str())
            .chain(self.causes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    }

    pub fn hint(&self) -> &str {
        self.hint.as_deref().unwrap_or("")
    }
}

/// The paths an optimize report says were removed, without the leading `/`.
pub fn removed_paths(r: &serde_json::Value) -> std::collections::BTreeSet<String> {
    r["removed"]["paths"]
        .as_array()
        .expect("an optimize report lists removed paths")
        .iter()
        .map(|p| {
            p["path"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect()
}
