//! Scratch space that survives no run: one coldpress-owned work root per
//! temporary directory, a directory per run inside it, and a lock per run.
//!
//! A killed run (SIGKILL, a CI job cancelled) cannot clean up after itself; a
//! spool can be a gigabyte. So every run first deletes the directories of runs
//! whose lock nobody holds any more: their process is gone (the kernel drops
//! an flock(2) lock when its holder dies, however it dies).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file inside each run's directory.
const LOCK: &str = ".lock";

/// This run's directory, deleted when dropped (and the work root with it
/// when no other run is using it).
pub struct RunDir {
    dir: Option<tempfile::TempDir>,
    lock: Option<File>,
    root: PathBuf,
}

impl RunDir {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("until dropped").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        drop(self.lock.take());
        // Fails, harmlessly, while another run has its directory there.
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// `PARENT/coldpress-UID`: per user, so a shared /tmp never mixes owners.
pub fn root(parent: &Path) -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    parent.join(format!("coldpress-{uid}"))
}

/// Create this run's directory under `parent` (the system temporary directory
/// or `--work-dir`), after deleting what killed runs left there.
pub fn create(parent: &Path) -> Result<RunDir> {
    let root = root(parent);
    let what = || format!("creating a work directory in {}", root.display());
    let mut tries = 0;
    let dir = loop {
        std::fs::create_dir_all(&root).map_err(|e| Error::io(what(), e))?;
        sweep(&root);
        let made = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&root)
            .and_then(|d| Ok((File::create(d.path().join(LOCK))?, d)));
        match made {
            Ok(d) => break d,
            // Another run that just ended removed the empty root, or swept our
            // directory while it was still empty: make it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
            Err(e) => return Err(Error::io(what(), e)),
        }
    };
    let (lock, dir) = dir;
    lock.lock().map_err(|e| Error::io(what(), e))?;
    Ok(RunDir {
        dir: Some(dir),
        lock: Some(lock),
        root,
    })
}

/// Delete the run directories under `root` whose lock is free. A directory
/// without a lock file is a run that is just starting, or one killed between
/// its mkdir and its lock: it goes when it is empty (a starting run then makes
/// another) or once it is a minute old.
pub fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("run-") {
            continue;
        }
        let abandoned = match File::open(path.join(LOCK)) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) if std::fs::remove_dir(&path).is_ok() => {
                removed += 1;
                continue;
            }
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60),
        };
        if abandoned && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_run_is_kept_and_an_abandoned_one_is_swept() {
        let parent = tempfile::tempdir().unwrap();
        let live = create(parent.path()).unwrap();
        // A killed run: its directory and lock file are there, nobody holds the lock.
        let dead = root(parent.path()).join("run-dead");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("layer-1"), vec![0u8; 4096]).unwrap();

        // Killed between its mkdir and its lock: empty, it goes at once; a
        // young one with files in it may be a run starting, and stays.
        let unlocked = root(parent.path()).join("run-unlocked");
        std::fs::create_dir_all(&unlocked).unwrap();
        let starting = root(parent.path()).join("run-starting");
        std::fs::create_dir_all(&starting).unwrap();
        std::fs::write(starting.join("x"), b"").unwrap();

        let other = create(parent.path()).unwrap();
        assert!(!dead.exists(), "the abandoned run was swept");
        assert!(
            !unlocked.exists(),
            "an empty directory without a lock was swept"
        );
        assert!(starting.exists(), "a young directory with files stays");
        assert!(live.path().exists(), "a run whose lock is held stays");
        let (a, b) = (live.path().to_path_buf(), other.path().to_path_buf());
        drop(live);
        drop(other);
        assert!(
            !a.exists() && !b.exists(),
            "a run removes its own directory"
        );
    }
}
