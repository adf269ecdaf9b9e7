//! Write an image's final filesystem into a directory, one streamed layer at a
//! time: files, directories, symlinks and hard links with their modes and
//! mtimes, whiteouts and opaque directories applied. Device nodes and FIFOs are
//! skipped (the sandbox provides its own minimal `/dev`).
//!
//! The tree is owned by whoever runs coldpress. So that a file the image makes
//! unreadable to Lambda's runtime user stays unreadable in the sandbox, every
//! mode is rewritten at the end to what that user would get from the image's
//! uid, gid and mode (see [`effective_mode`]), in all three permission triplets.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result, from_io};
use crate::image::Compression;
use crate::layer::compression::decoder;
use crate::layer::entry::{
    OPAQUE_MARKER, WHITEOUT_PREFIX, basename, normalize_path, whiteout_target,
};

/// Lambda's runtime user, `sbx_user1051`.
pub const RUNTIME_UID: u64 = 993;
pub const RUNTIME_GID: u64 = 990;

type Opener<'a> = Box<dyn FnOnce() -> Result<Box<dyn Read + 'a>> + 'a>;

/// One layer's uncompressed tar stream, opened when its turn comes, and how to
/// name it in errors.
pub struct LayerStream<'a> {
    pub what: String,
    pub open: Opener<'a>,
}

impl<'a> LayerStream<'a> {
    /// A blob on disk (a layer coldpress just wrote), decompressed as it is read.
    pub fn compressed_file(path: PathBuf, compression: Compression, what: String) -> Self {
        let w = what.clone();
        LayerStream {
            what,
            open: Box::new(move || {
                let f = File::open(&path).with_ctx(|| format!("opening {}", path.display()))?;
                decoder(BufReader::with_capacity(1 << 20, f), compression)
                    .with_ctx(|| format!("{w}: starting to decompress"))
            }),
        }
    }

    /// An uncompressed spool of a layer that was already read and verified.
    pub fn spool(path: PathBuf, what: String) -> Self {
        LayerStream {
            what,
            open: Box::new(move || {
                let f =
                    File::open(&path).with_ctx(|| format!("opening spool {}", path.display()))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, f)) as Box<dyn Read>)
            }),
        }
    }

    /// A layer blob of `source`, verified against its digest and decompressed as it streams.
    pub fn blob(source: &'a dyn crate::transport::Source, desc: crate::image::Descriptor) -> Self {
        let what = format!("layer {} of {}", desc.digest, source.describe());
        let w = what.clone();
        LayerStream {
            what,
            open: Box::new(move || {
                let compression = desc.media_type.layer_compression().ok_or_else(|| {
                    Error::unsupported(
                        &w,
                        format!("unknown layer media type '{}'", desc.media_type),
                    )
                })?;
                let raw = crate::transport::open_verified(source, &desc)?;
                decoder(BufReader::with_capacity(1 << 20, raw), compression)
                    .with_ctx(|| format!("{w}: starting to decompress"))
            }),
        }
    }
}

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Materialised {
    pub files: u64,
    pub bytes: u64,
    pub skipped_devices: u64,
}

#[derive(Clone, Copy)]
struct Recorded {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    dir: bool,
}

/// Apply `layers` in order to the empty directory `root`.
pub fn materialise(root: &Path, layers: Vec<LayerStream>) -> Result<Materialised> {
    let mut stats = Materialised::default();
    let mut meta: HashMap<String, Recorded> = HashMap::new();
    for layer in layers {
        apply_layer(root, layer, &mut meta, &mut stats)?;
    }
    // Lambda's /tmp, and mount points for the sandbox's /proc and /dev.
    for dir in ["tmp", "proc", "dev"] {
        let p = root.join(dir);
        if fs::symlink_metadata(&p).is_err() {
            fs::create_dir(&p).with_ctx(|| format!("creating {}", p.display()))?;
        }
    }
    // Deepest first: a directory that becomes untraversable must come after its children.
    let mut paths: Vec<(&String, &Recorded)> = meta.iter().collect();
    paths.sort_by(|a, b| b.0.cmp(a.0));
    for (path, rec) in paths {
        let p = root.join(path);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue; // whited out later
        };
        if m.is_dir() != rec.dir || m.file_type().is_symlink() {
            continue;
        }
        let mode = effective_mode(rec.mode, rec.uid, rec.gid);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .with_ctx(|| format!("setting the mode of {}", p.display()))?;
        if rec.dir {
            set_mtime(&p, rec.mtime)?;
        }
    }
    Ok(stats)
}

/// The permission bits Lambda's runtime user gets on a file with this owner and
/// mode, repeated for owner, group and others; set-id bits dropped (the root is
/// mounted nosuid anyway), the sticky bit kept.
pub fn effective_mode(mode: u32, uid: u64, gid: u64) -> u32 {
    let bits = if uid == RUNTIME_UID {
        (mode >> 6) & 7
    } else if gid == RUNTIME_GID {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    (mode & 0o1000) | bits << 6 | bits << 3 | bits
}

fn set_mtime(p: &Path, mtime: i64) -> Result<()> {
    let t = if mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        UNIX_EPOCH
    };
    let f = File::open(p).with_ctx(|| format!("opening {}", p.display()))?;
    f.set_modified(t)
        .with_ctx(|| format!("setting the mtime of {}", p.display()))
}

/// Refuse a path whose parent goes through a symlink (as the analysis does), and
/// create missing parent directories.
fn prepare_parents(root: &Path, path: &str, what: &str) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    let mut rel = String::new();
    let comps: Vec<&str> = path.split('/').collect();
    for c in &comps[..comps.len() - 1] {
        cur.push(c);
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::invalid(
                    what,
                    format!("hostile tar entry: {path:?} goes through the symlink /{rel}"),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(
                    what,
                    format!("tar entry {path:?}: /{rel} is not a directory"),
                ));
            }
            Err(_) => {
                fs::create_dir(&cur).with_ctx(|| format!("creating {}", cur.display()))?;
            }
        }
    }
    Ok(root.join(path))
}

/// Remove whatever is at `p` (not following symlinks).
fn remove(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_ctx(|| format!("removing {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_ctx(|| format!("removing {}", p.display())),
        Err(_) => Ok(()),
    }
}

/// An opaque directory hides what lower layers put in it, not what this layer adds.
fn clear_lower(dir: &Path, rel: &str, this_layer: &HashSet<String>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let e = e.with_ctx(|| format!("listing {}", dir.display()))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        if this_layer.contains(&child) {
            let m =
                fs::symlink_metadata(e.path()).with_ctx(|| format!("{}", e.path().display()))?;
            if m.is_dir() {
                clear_lower(&e.path(), &child, this_layer)?;
            }
        } else {
            remove(&e.path())?;
        }
    }
    Ok(())
}

fn apply_layer(
    root: &Path,
    layer: LayerStream,
    meta: &mut HashMap<String, Recorded>,
    stats: &mut Materialised,
) -> Result<()> {
    let what = layer.what;
    let mut archive = tar::Archive::new((layer.open)()?);
    let mut this_layer: HashSet<String> = HashSet::new();
    let entries = archive.entries().map_err(|e| from_io(&what, e))?;
    for entry in entries {
        let mut e = entry.map_err(|err| from_io(format!("{what}: reading tar"), err))?;
        let etype = e.header().entry_type();
        if matches!(
            etype,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let raw = e.path_bytes().into_owned();
        let path = normalize_path(&raw)
            .map_err(|m| Error::invalid(&what, format!("hostile tar entry: {m}")))?;
        if path.is_empty() {
            continue; // the root itself
        }
        let base = basename(&path);
        if base.starts_with(WHITEOUT_PREFIX) {
            let Some((target, opaque)) =
                whiteout_target(&path).map_err(|m| Error::invalid(&what, m))?
            else {
                continue;
            };
            let p = root.join(&target);
            if opaque || base == OPAQUE_MARKER {
                clear_lower(&p, &target, &this_layer)?;
            } else {
                remove(&p)?;
            }
            continue;
        }
        let h = e.header();
        let rec = Recorded {
            mode: h.mode().map_err(|err| from_io(&what, err))? & 0o7777,
            uid: h.uid().map_err(|err| from_io(&what, err))?,
            gid: h.gid().map_err(|err| from_io(&what, err))?,
            mtime: h.mtime().map_err(|err| from_io(&what, err))? as i64,
            dir: etype == tar::EntryType::Directory,
        };
        let p = prepare_parents(root, &path, &what)?;
        let existing = fs::symlink_metadata(&p).ok();
        match etype {
            tar::EntryType::Directory => {
                match existing {
                    Some(m) if m.is_dir() && !m.file_type().is_symlink() => {}
                    Some(_) => {
                        remove(&p)?;
                        fs::create_dir(&p).with_ctx(|| format!("creating {}", p.display()))?;
                    }
                    None => fs::create_dir(&p).with_ctx(|| format!("creating {}", p.display()))?,
                }
                meta.insert(path.clone(), rec);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if existing.is_some() {
                    remove(&p)?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)
                    .with_ctx(|| format!("creating {}", p.display()))?;
                let n = io::copy(&mut e, &mut f)
                    .map_err(|err| from_io(format!("{what}: writing {path}"), err))?;
                let t = if rec.mtime >= 0 {
                    UNIX_EPOCH + Duration::from_secs(rec.mtime as u64)
                } else {
                    UNIX_EPOCH
                };
                f.set_modified(t)
                    .with_ctx(|| format!("setting the mtime of {}", p.display()))?;
                stats.files += 1;
                stats.bytes += n;
                meta.insert(path.clone(), rec);
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| {
                    Error::invalid(&what, format!("symlink {path:?} has no target"))
                })?;
                let target = std::str::from_utf8(&target)
                    .map_err(|_| {
                        Error::invalid(&what, format!("link target of {path:?} is not UTF-8"))
                    })?
                    .to_string();
                if existing.is_some() {
                    remove(&p)?;
                }
                std::os::unix::fs::symlink(&target, &p)
                    .with_ctx(|| format!("creating the symlink {}", p.display()))?;
                meta.remove(&path);
                stats.files += 1;
            }
            tar::EntryType::Link => {
                let raw = e.link_name_bytes().ok_or_else(|| {
                    Error::invalid(&what, format!("hard link {path:?} has no target"))
                })?;
                let target = normalize_path(&raw).map_err(|m| {
                    Error::invalid(
                        &what,
                        format!("hostile tar entry: hard link {path:?} to {m}"),
                    )
                })?;
                let t = prepare_parents(root, &target, &what)?;
                match fs::symlink_metadata(&t) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(Error::invalid(
                            &what,
                            format!(
                                "hard link {path:?}: its target {target:?} does not exist or is a directory"
                            ),
                        ));
                    }
                }
                if t != p {
                    if existing.is_some() {
                        remove(&p)?;
                    }
                    fs::hard_link(&t, &p)
                        .with_ctx(|| format!("linking {} to {}", p.display(), t.display()))?;
                }
                if let Some(r) = meta.get(&target).copied() {
                    meta.insert(path.clone(), r);
                }
                stats.files += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                stats.skipped_devices += 1;
            }
            other => {
                return Err(Error::unsupported(
                    &what,
                    format!(
                        "tar entry {path:?} has unsupported type {:?}",
                        other.as_byte() as char
                    ),
                ));
            }
        }
        this_layer.insert(path);
    }
    // Read to the end, so a blob's digest is checked after the end-of-archive marker.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| from_io(&what, e))?;
    Ok(())
}

/// Make every directory under `root` writable again so the tree can be deleted
/// by a user without CAP_DAC_OVERRIDE.
pub fn make_removable(root: &Path) {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if let Ok(m) = fs::symlink_metadata(&d)
            && m.is_dir()
            && m.uid() == unsafe { libc::geteuid() }
        {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(e.path());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtime_of(p: &Path) -> Option<std::time::SystemTime> {
        fs::symlink_metadata(p).and_then(|m| m.modified()).ok()
    }

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> LayerStream<'static> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        LayerStream {
            what: "test layer".into(),
            open: {
                let data = b.into_inner().unwrap();
                Box::new(move || Ok(Box::new(io::Cursor::new(data)) as Box<dyn Read>))
            },
        }
    }

    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        path: &str,
        data: &[u8],
        mode: u32,
        link: Option<&str>,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn layers_whiteouts_links_and_modes() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let lower = tar_of(|b| {
            add(b, T::Directory, "app", b"", 0o755, None);
            add(b, T::Regular, "app/a.py", b"a", 0o644, None);
            add(b, T::Regular, "app/gone.py", b"g", 0o644, None);
            add(b, T::Directory, "opq", b"", 0o755, None);
            add(b, T::Regular, "opq/old", b"o", 0o644, None);
            add(b, T::Regular, "secret", b"s", 0o600, None);
            add(b, T::Char, "dev/null", b"", 0o666, None);
        });
        let upper = tar_of(|b| {
            add(b, T::Regular, "app/.wh.gone.py", b"", 0o644, None);
            add(b, T::Regular, "opq/new", b"n", 0o755, None);
            add(b, T::Regular, "opq/.wh..wh..opq", b"", 0o644, None);
            add(b, T::Symlink, "app/link.py", b"", 0o777, Some("a.py"));
            add(b, T::Link, "app/hard.py", b"", 0o644, Some("app/a.py"));
        });
        let stats = materialise(root, vec![lower, upper]).unwrap();
        assert_eq!(stats.skipped_devices, 1);
        assert_eq!(fs::read(root.join("app/a.py")).unwrap(), b"a");
        assert!(!root.join("app/gone.py").exists());
        assert!(!root.join("opq/old").exists(), "opaque hides lower files");
        assert!(root.join("opq/new").exists(), "but not this layer's");
        assert_eq!(
            fs::read_link(root.join("app/link.py")).unwrap(),
            Path::new("a.py")
        );
        assert_eq!(
            fs::metadata(root.join("app/hard.py")).unwrap().ino(),
            fs::metadata(root.join("app/a.py")).unwrap().ino()
        );
        let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(
            mode("app/a.py"),
            0o444,
            "root's 0644 is read-only for the runtime user"
        );
        assert_eq!(mode("secret"), 0o000, "root's 0600 is unreadable for it");
        assert_eq!(mode("opq/new"), 0o555);
        assert_eq!(mode("app"), 0o555);
        assert!(root.join("tmp").is_dir() && root.join("proc").is_dir());
        assert_eq!(
            mtime_of(&root.join("app/a.py")).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        make_removable(root);
    }

    #[test]
    fn refuses_entries_through_symlinks() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let l = tar_of(|b| {
            add(b, T::Symlink, "etc", b"", 0o777, Some("/tmp"));
            add(b, T::Regular, "etc/passwd", b"x", 0o644, None);
        });
        let err = materialise(dir.path(), vec![l]).unwrap_err().to_string();
        assert!(err.contains("goes through the symlink /etc"), "{err}");
    }

    #[test]
    fn effective_modes() {
        assert_eq!(effective_mode(0o750, RUNTIME_UID, 0), 0o777);
        assert_eq!(effective_mode(0o750, 0, RUNTIME_GID), 0o555);
        assert_eq!(effective_mode(0o1777, 0, 0), 0o1777);
        assert_eq!(effective_mode(0o4755, 0, 0), 0o555);
    }
}
