//! The ML-like fixture of issue 10: on the realistic fixture's Lambda base, numpy
//! installed by the real pip into the task root, a 96 MiB incompressible model
//! file, and a handler; v2 differs only in `handler.py`. Two layouts:
//!
//! - `well-v1`/`well-v2`: base | pip install -t /var/task numpy | COPY model/ | COPY handler.py
//! - `naive-v1`/`naive-v2`: base | COPY . /var/task (model, handler, requirements) | pip install
//!
//! Layers are plain tar streams (the `tar` crate) compressed by flate2, as a
//! build tool other than coldpress would make them; every mtime is pinned (as
//! with SOURCE_DATE_EPOCH), so the layers v1 and v2 share are the same blobs.
//! Built once under $COLDPRESS_FIXTURES/ml-<key> (about 10 s), never committed.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use coldpress::digest::Digest;
use coldpress::image::{Descriptor, MediaType};
use coldpress::transport::BlobContent;

use super::{assert_success, fixture_cache, realistic_fixture, with_lock};

/// Bump when the recipe changes: the cache directory is keyed by it.
const RECIPE: &str = "ml-1";
pub const MODEL_BYTES: u64 = 96 << 20;
pub const MODEL_PATH: &str = "var/task/model/weights.bin";
const EPOCH: u64 = 1_709_251_200; // 2024-03-01
const NUMPY: &str = "numpy==1.26.4";

/// The handler: loads the model's header with numpy, as a real one would.
fn handler(version: &str) -> String {
    format!(
        "import numpy as np\n\nVERSION = \"{version}\"\nWEIGHTS = \"/var/task/model/weights.bin\"\n\n\ndef handler(event, context):\n    w = np.fromfile(WEIGHTS, dtype=np.uint8, count=16)\n    return {{\"version\": VERSION, \"checksum\": int(w.sum())}}\n"
    )
}

/// Bytes no compressor can shrink (xorshift64*), generated as they are read.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What a layer holds.
enum Item<'a> {
    Dir(&'a str),
    Text(&'a str, String),
    Model,
    /// A directory tree from disk, placed under the given path.
    Tree(&'a Path, &'a str),
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(EPOCH);
    h.set_size(size);
    h
}

/// A written layer blob: (file, digest, diff_id, size).
type Blob = (PathBuf, Digest, Digest, u64);

/// A gzip tar layer written to `dir`.
fn layer(dir: &Path, items: &[Item<'_>]) -> Blob {
    let tar_path = dir.join("layer.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&tar_path).unwrap());
        for it in items {
            match it {
                Item::Dir(p) => {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    b.append_data(&mut h, format!("{p}/"), std::io::empty())
                        .unwrap();
                }
                Item::Text(p, t) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, t.len() as u64);
                    b.append_data(&mut h, p, t.as_bytes()).unwrap();
                }
                Item::Model => {
                    let mut h = header(tar::EntryType::Regular, 0o644, MODEL_BYTES);
                    let data = Noise {
                        state: 0x9e37_79b9_7f4a_7c15,
                        left: MODEL_BYTES,
                    };
                    b.append_data(&mut h, MODEL_PATH, data).unwrap();
                }
                Item::Tree(root, under) => append_tree(&mut b, root, under),
            }
        }
        b.finish().unwrap();
    }
    let raw = fs::read(&tar_path).unwrap();
    let diff_id = Digest::of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let blob = gz.finish().unwrap();
    let digest = Digest::of(&blob);
    let path = dir.join(digest.hex());
    fs::write(&path, &blob).unwrap();
    fs::remove_file(&tar_path).unwrap();
    (path, digest, diff_id, blob.len() as u64)
}

/// Every path under `root`, sorted, parents first, with pinned metadata.
fn append_tree(b: &mut tar::Builder<fs::File>, root: &Path, under: &str) {
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().to_str().unwrap();
        let name = format!("{under}/{rel}");
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, format!("{name}/"), std::io::empty())
                .unwrap();
        } else if md.file_type().is_symlink() {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, &name, fs::read_link(&p).unwrap())
                .unwrap();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if md.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut h = header(tar::EntryType::Regular, mode, md.len());
            b.append_data(&mut h, &name, fs::File::open(&p).unwrap())
                .unwrap();
        }
    }
}

/// numpy for the base's CPython 3.11 on x86_64, installed by pip into a directory.
fn pip_numpy(dir: &Path) -> PathBuf {
    let target = dir.join("site");
    let pip = super::require("pip3", "python3-pip");
    let out = Command::new(pip)
        .args([
            "install",
            "--quiet",
            "--no-compile",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--target",
        ])
        .arg(&target)
        .arg(NUMPY)
        .output()
        .unwrap();
    assert_success(&out, "pip install numpy (needs network access to PyPI)");
    target
}

/// The fixture layout; tags `base`, `well-v1`, `well-v2`, `naive-v1`, `naive-v2`.
pub fn ml_fixture() -> PathBuf {
    let dir = fixture_cache().join(format!("ml-{}", key()));
    let base_layout = realistic_fixture();
    with_lock("ml", || {
        if dir.join("index.json").is_file() {
            return;
        }
        let tmp = fixture_cache().join(format!("ml.tmp.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        build(&base_layout, &tmp);
        fs::rename(tmp.join("layout"), &dir).unwrap();
        fs::remove_dir_all(&tmp).unwrap();
    });
    dir
}

fn key() -> String {
    Digest::of(format!("{RECIPE} {NUMPY} {MODEL_BYTES}").as_bytes())
        .hex()
        .chars()
        .take(12)
        .collect()
}

fn build(base_layout: &Path, tmp: &Path) {
    let site = pip_numpy(tmp);
    let blobs = tmp.join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let layout = tmp.join("layout");
    let sink =
        coldpress::transport::oci_layout::OciLayoutSink::create(&layout, Some("base")).unwrap();
    drop(sink);

    // The base's layers, as they are.
    let src =
        coldpress::transport::oci_layout::OciLayoutSource::open(base_layout, Some("base")).unwrap();
    let base = coldpress::transport::resolve::resolve(&src, None).unwrap();
    let base_layers: Vec<(Descriptor, Digest, Arc<dyn BlobContent>)> = base
        .parsed
        .layers
        .iter()
        .zip(&base.config.rootfs.diff_ids)
        .map(|(d, id)| {
            let path = base_layout.join("blobs/sha256").join(d.digest.hex());
            (
                d.clone(),
                id.clone(),
                Arc::new(path) as Arc<dyn BlobContent>,
            )
        })
        .collect();

    let task = |items: Vec<Item<'_>>| {
        let mut all = vec![Item::Dir("var"), Item::Dir("var/task")];
        all.extend(items);
        layer(&blobs, &all)
    };
    let deps = task(vec![Item::Tree(&site, "var/task")]);
    let model = task(vec![Item::Dir("var/task/model"), Item::Model]);
    let requirements = || Item::Text("var/task/requirements.txt", format!("{NUMPY}\n"));
    let images: Vec<(&str, Vec<(&str, Blob)>)> = ["1.0.0", "1.1.0"]
        .iter()
        .enumerate()
        .flat_map(|(i, version)| {
            let code = task(vec![Item::Text("var/task/handler.py", handler(version))]);
            let copy_all = task(vec![
                Item::Text("var/task/handler.py", handler(version)),
                Item::Dir("var/task/model"),
                Item::Model,
                requirements(),
            ]);
            let well = (
                ["well-v1", "well-v2"][i],
                vec![
                    ("pip install -t /var/task numpy", deps.clone()),
                    ("COPY model/ /var/task/model/", model.clone()),
                    ("COPY handler.py /var/task/", code),
                ],
            );
            let naive = (
                ["naive-v1", "naive-v2"][i],
                vec![
                    ("COPY . /var/task", copy_all),
                    ("pip install -r requirements.txt -t /var/task", deps.clone()),
                ],
            );
            [well, naive]
        })
        .collect();
    let mut tags = vec![("base", Vec::new())];
    tags.extend(images);
    for (tag, own) in tags {
        let mut spec = coldpress::example::ImageSpec::lambda(&["handler.handler"]);
        spec.created = "2024-03-01T00:00:00Z".into();
        for (d, id, content) in &base_layers {
            spec.layers
                .push((d.clone(), id.clone(), "base".into(), content.clone()));
        }
        for (by, (path, digest, diff_id, size)) in own {
            spec.layers.push((
                Descriptor::new(MediaType::OciLayerGzip, digest, size),
                diff_id,
                by.into(),
                Arc::new(path) as Arc<dyn BlobContent>,
            ));
        }
        let sink =
            coldpress::transport::oci_layout::OciLayoutSink::create(&layout, Some(tag)).unwrap();
        spec.write(&sink).unwrap();
    }
}
