//! A small, built-in Lambda-like example: a stand-in base image and a naively
//! built function image on top of it, written into an OCI layout. It lets
//! `coldpress` be tried (and its README command run) with no registry at all.
//!
//! The function image has the usual problems: code copied before dependencies,
//! a compiler and apt lists left in, a pip cache, tests, a dev dependency,
//! VCS litter, a deleted base file, a hard link and a shadowed file.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::{Compression, Descriptor, MediaType, RawManifest};
use crate::layer::Meta;
use crate::transport::oci_layout::OciLayoutSink;
use crate::transport::{BlobContent, Sink};
use crate::writer::image::{config_bytes, manifest};
use crate::writer::{LayerWriter, WriteKind, WrittenLayer};

/// Deterministic filler bytes that do not compress to nothing.
struct Filler {
    state: u64,
    left: u64,
}

impl Read for Filler {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            // Mostly text-like bytes, like binaries and source: compresses about 2:1.
            *b = b"abcdefghijklmnop\n _=()"[(self.state % 22) as usize];
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn seed(path: &str) -> u64 {
    path.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    }) | 1
}

pub const MTIME: i64 = 1_700_000_000;

pub fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME,
        mtime_nsec: 0,
        xattrs: None,
    }
}

/// What goes into an example layer.
pub enum Item<'a> {
    Dir(&'a str),
    /// Generated content of the given size.
    Blob(&'a str, u64),
    Text(&'a str, &'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Gone(&'a str),
}

pub fn write_layer(
    tmp: &Path,
    items: &[Item<'_>],
    compression: Compression,
) -> Result<WrittenLayer> {
    let mut w = LayerWriter::create(tmp, compression, None)?;
    for it in items {
        match *it {
            Item::Dir(p) => w.append(p, WriteKind::Dir, &meta(0o755))?,
            Item::Blob(p, size) => {
                let mode = if p.contains("/bin/") || p.ends_with(".sh") || p.contains("/gcc/") {
                    0o755
                } else {
                    0o644
                };
                let mut f = Filler {
                    state: seed(p),
                    left: size,
                };
                w.append(p, WriteKind::File { size, data: &mut f }, &meta(mode))?
            }
            Item::Text(p, t) => {
                let mode = if t.starts_with("#!") { 0o755 } else { 0o644 };
                w.append(
                    p,
                    WriteKind::File {
                        size: t.len() as u64,
                        data: &mut t.as_bytes(),
                    },
                    &meta(mode),
                )?
            }
            Item::Link(p, target) => w.append(p, WriteKind::Symlink(target), &meta(0o777))?,
            Item::Hard(p, target) => w.append(p, WriteKind::Hardlink(target), &meta(0o644))?,
            Item::Gone(p) => w.append(p, WriteKind::Whiteout, &meta(0))?,
        }
    }
    w.finish()
}

/// Layers plus config, written to a sink as one image.
pub struct ImageSpec {
    pub docker: bool,
    pub layers: Vec<(Descriptor, Digest, String, Arc<dyn BlobContent>)>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub architecture: String,
    /// The config's and history's `created` (fixed: digests must not depend on the clock).
    pub created: String,
}

impl ImageSpec {
    /// An image with the Lambda base's settings (env, entrypoint, /var/task) and `cmd`.
    pub fn lambda(cmd: &[&str]) -> ImageSpec {
        ImageSpec {
            docker: false,
            layers: Vec::new(),
            env: LAMBDA_ENV.iter().map(|s| s.to_string()).collect(),
            entrypoint: vec!["/lambda-entrypoint.sh".into()],
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            architecture: "amd64".into(),
            created: "2024-01-01T00:00:00Z".into(),
        }
    }

    pub fn add(&mut self, l: WrittenLayer, created_by: &str) {
        let desc = Descriptor::new(l.media_type(self.docker), l.digest.clone(), l.size);
        // The spec owns the temporary file: it lives as long as any copy of the spec.
        let content: Arc<dyn BlobContent> = Arc::new(l.path);
        self.layers
            .push((desc, l.diff_id, created_by.to_string(), content));
    }

    pub fn write(&self, sink: &dyn Sink) -> Result<RawManifest> {
        let history: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|(_, _, by, _)| json!({"created": self.created, "created_by": by}))
            .collect();
        let config = json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": self.created,
            "config": {
                "Env": self.env,
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "WorkingDir": "/var/task",
            },
            "rootfs": {"type": "layers", "diff_ids": self.layers.iter().map(|(_, d, _, _)| d.to_string()).collect::<Vec<_>>()},
            "history": history,
        });
        let cfg = config_bytes(&config);
        let cfg_desc = Descriptor::new(
            if self.docker {
                MediaType::DockerConfig
            } else {
                MediaType::OciConfig
            },
            Digest::of(&cfg),
            cfg.len() as u64,
        );
        for (d, _, _, c) in &self.layers {
            sink.put_blob(d, c.as_ref())?;
        }
        let cfg: Arc<[u8]> = cfg.into();
        sink.put_blob(&cfg_desc, &cfg)?;
        let layers: Vec<Descriptor> = self.layers.iter().map(|(d, _, _, _)| d.clone()).collect();
        let m = manifest(self.docker, &cfg_desc, &layers, None);
        sink.put_manifest(&m)?;
        Ok(m)
    }
}

pub const LAMBDA_ENV: [&str; 3] = [
    "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
];

/// The stand-in base: an OS layer and a runtime layer.
pub fn base_layers(tmp: &Path) -> Result<Vec<(WrittenLayer, &'static str)>> {
    use Item::*;
    let os = write_layer(
        tmp,
        &[
            Dir("bin"),
            Dir("etc"),
            Text("etc/os-release", "NAME=\"Example Linux\"\n"),
            Dir("tmp"),
            Dir("usr"),
            Dir("usr/bin"),
            Blob("usr/bin/bash", 900_000),
            Link("bin/sh", "/usr/bin/bash"),
            Dir("usr/lib"),
            Blob("usr/lib/libc.so.6", 2_000_000),
            Dir("usr/share"),
            Dir("usr/share/doc"),
            Dir("usr/share/doc/bash"),
            Blob("usr/share/doc/bash/README", 40_000),
            Dir("var"),
            Dir("var/lib"),
            Dir("var/task"),
        ],
        Compression::Gzip,
    )?;
    let runtime = write_layer(
        tmp,
        &[
            Dir("var"),
            Dir("var/lang"),
            Dir("var/lang/bin"),
            Blob("var/lang/bin/python3.12", 4_000_000),
            Link("var/lang/bin/python3", "python3.12"),
            Dir("var/lang/lib"),
            Dir("var/lang/lib/python3.12"),
            Blob("var/lang/lib/python3.12/os.py", 45_000),
            Blob("var/lang/lib/python3.12/unused_module.py", 30_000),
            Dir("var/lang/lib/python3.12/site-packages"),
            Dir("var/runtime"),
            Blob("var/runtime/bootstrap.py", 20_000),
            Text(
                "lambda-entrypoint.sh",
                "#!/bin/sh\nexec /var/lang/bin/python3 /var/runtime/bootstrap.py \"$1\"\n",
            ),
        ],
        Compression::Gzip,
    )?;
    Ok(vec![
        (os, "ADD os.tar.xz /"),
        (runtime, "ADD runtime.tar.xz /"),
    ])
}

fn record(files: &[&str]) -> String {
    files.iter().map(|f| format!("{f},sha256=x,1\n")).collect()
}

/// The naive function image's own layers (on top of the base).
pub fn app_layers(tmp: &Path, handler: &str) -> Result<Vec<(WrittenLayer, &'static str)>> {
    let mut out = vec![(code_layer(tmp, handler)?, "COPY . /var/task")];
    out.extend(app_rest_layers(tmp)?);
    Ok(out)
}

/// "COPY . /var/task": the function's code, tests and litter.
pub fn code_layer(tmp: &Path, handler: &str) -> Result<WrittenLayer> {
    use Item::*;
    write_layer(
        tmp,
        &[
            Dir("var"),
            Dir("var/task"),
            Text("var/task/handler.py", handler),
            Dir("var/task/app"),
            Blob("var/task/app/__init__.py", 3_000),
            Blob("var/task/app/service.py", 12_000),
            Dir("var/task/tests"),
            Blob("var/task/tests/test_handler.py", 6_000),
            Text("var/task/conftest.py", "import pytest\n"),
            Text("var/task/requirements.txt", "requests==2.32.3\n"),
            Text("var/task/requirements-dev.txt", "pytest==8.3.3\n"),
            Dir("var/task/.git"),
            Text("var/task/.git/HEAD", "ref: refs/heads/main\n"),
            Blob("var/task/.git/index", 50_000),
            Blob("var/task/.handler.py.swp", 12_288),
        ],
        Compression::Gzip,
    )
}

/// The layers after the code: build tools, dependencies (with a pip cache), cleanup.
pub fn app_rest_layers(tmp: &Path) -> Result<Vec<(WrittenLayer, &'static str)>> {
    use Item::*;
    let tools = write_layer(
        tmp,
        &[
            Dir("usr"),
            Dir("usr/bin"),
            Blob("usr/bin/gcc-12", 1_200_000),
            Link("usr/bin/gcc", "gcc-12"),
            Blob("usr/bin/make", 250_000),
            Dir("usr/lib"),
            Dir("usr/lib/gcc"),
            Dir("usr/lib/gcc/x86_64-linux-gnu"),
            Dir("usr/lib/gcc/x86_64-linux-gnu/12"),
            Blob("usr/lib/gcc/x86_64-linux-gnu/12/cc1", 6_000_000),
            Dir("usr/include"),
            Blob("usr/include/stdio.h", 30_000),
            Dir("var"),
            Dir("var/lib"),
            Dir("var/lib/apt"),
            Dir("var/lib/apt/lists"),
            Blob(
                "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
                2_500_000,
            ),
        ],
        Compression::Gzip,
    )?;
    let requests_files = [
        "requests/__init__.py",
        "requests/api.py",
        "requests/__pycache__/api.cpython-312.pyc",
        "requests-2.32.3.dist-info/RECORD",
    ];
    let numpy_files = [
        "numpylite/core.so",
        "numpylite/tests/test_core.py",
        "numpylite-1.0.dist-info/RECORD",
    ];
    let pytest_files = [
        "pytest/__init__.py",
        "_pytest/__init__.py",
        "_pytest/python.py",
        "pytest-8.3.3.dist-info/RECORD",
    ];
    let requests_record = record(&requests_files);
    let pytest_record = record(&pytest_files);
    let numpy_record = record(&numpy_files);
    let deps = write_layer(
        tmp,
        &[
            Dir("var"),
            Dir("var/task"),
            Dir("var/task/requests"),
            Blob("var/task/requests/__init__.py", 5_000),
            Blob("var/task/requests/api.py", 7_000),
            Dir("var/task/requests/__pycache__"),
            Blob("var/task/requests/__pycache__/api.cpython-312.pyc", 6_000),
            Dir("var/task/requests-2.32.3.dist-info"),
            Text(
                "var/task/requests-2.32.3.dist-info/RECORD",
                &requests_record,
            ),
            Dir("var/task/numpylite"),
            Blob("var/task/numpylite/core.so", 3_000_000),
            Dir("var/task/numpylite/tests"),
            Blob("var/task/numpylite/tests/test_core.py", 400_000),
            Dir("var/task/numpylite-1.0.dist-info"),
            Text("var/task/numpylite-1.0.dist-info/RECORD", &numpy_record),
            Dir("var/task/pytest"),
            Blob("var/task/pytest/__init__.py", 4_000),
            Dir("var/task/_pytest"),
            Blob("var/task/_pytest/__init__.py", 2_000),
            Blob("var/task/_pytest/python.py", 300_000),
            Dir("var/task/pytest-8.3.3.dist-info"),
            Text("var/task/pytest-8.3.3.dist-info/RECORD", &pytest_record),
            Dir("root"),
            Dir("root/.cache"),
            Dir("root/.cache/pip"),
            Dir("root/.cache/pip/http"),
            Blob("root/.cache/pip/http/3f2a9c", 3_500_000),
        ],
        Compression::Gzip,
    )?;
    let cleanup = write_layer(
        tmp,
        &[
            Dir("var"),
            Dir("var/lang"),
            Dir("var/lang/lib"),
            Dir("var/lang/lib/python3.12"),
            Gone("var/lang/lib/python3.12/unused_module.py"),
            Dir("var/task"),
            Blob("var/task/app/service.py", 13_000),
            Hard("var/task/handler_alias.py", "var/task/handler.py"),
        ],
        Compression::Gzip,
    )?;
    Ok(vec![
        (
            tools,
            "RUN apt-get update && apt-get install -y build-essential",
        ),
        (
            deps,
            "RUN pip install -r requirements.txt -r requirements-dev.txt -t /var/task",
        ),
        (
            cleanup,
            "RUN rm /var/lang/lib/python3.12/unused_module.py && ln handler.py handler_alias.py",
        ),
    ])
}

pub const HANDLER: &str =
    "import requests\n\ndef handler(event, context):\n    return {\"ok\": True}\n";

/// Write `base` and `app` (and `app-v2`, a code-only change) into an OCI layout.
pub fn write_example(dir: &Path) -> Result<Vec<(String, Digest)>> {
    let tmp = tempfile::tempdir()
        .map_err(|e| crate::error::Error::io("creating a temporary directory", e))?;
    let base = base_layers(tmp.path())?;
    let mut base_spec = ImageSpec::lambda(&[]);
    let mut out = Vec::new();
    for (l, by) in base {
        base_spec.add(l, by);
    }
    let m = base_spec.write(&OciLayoutSink::create(dir, Some("base"))?)?;
    out.push(("base".to_string(), m.digest));
    for (tag, handler) in [
        ("app", HANDLER.to_string()),
        ("app-v2", HANDLER.replace("True", "\"v2\"")),
    ] {
        let mut app = ImageSpec::lambda(&["handler.handler"]);
        app.layers = base_spec.layers.clone();
        for (l, by) in app_layers(tmp.path(), &handler)? {
            app.add(l, by);
        }
        let m = app.write(&OciLayoutSink::create(dir, Some(tag))?)?;
        out.push((tag.to_string(), m.digest));
    }
    Ok(out)
}
