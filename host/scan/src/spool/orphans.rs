//! Spool files left behind by a process that died without cleaning up.
//!
//! A spool file is removed when its body drops; a SIGKILL, an OOM kill
//! or a power cut skips every destructor, and the files stay on a disk
//! the budget no longer counts. Each writer holds an exclusive lock
//! (`flock`) on its file for as long as the file lives, and the kernel
//! drops the lock with the process, however it ends. A starting agent
//! removes the files nobody holds. A lock, unlike a process id, means the
//! same thing in a container whose agent restarts with the same pid, and
//! to agents in other containers (or, on NFS/EFS, hosts) sharing the dir.

use std::fs::{File, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The name every spool file starts with.
pub(super) const PREFIX: &str = "bucketscan-spool-";

/// A file younger than this may be a writer's between its creation and its
/// lock: left alone.
const GRACE: Duration = Duration::from_secs(5);

/// Takes the lock that marks `file` as a live writer's.
pub(super) fn hold(file: &File) -> std::io::Result<()> {
    file.try_lock().map_err(|err| match err {
        TryLockError::Error(err) => err,
        TryLockError::WouldBlock => std::io::Error::other("a new spool file is locked by someone else"),
    })
}

/// What [`remove_orphans`] did.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub removed: usize,
    /// Files it could not remove, with why (e.g. another user's, in a
    /// shared sticky temp dir).
    pub failed: Vec<String>,
}

/// Removes the spool files in `dir` that no live writer holds. Anything
/// not named like a spool file is left alone, and so are files younger
/// than a few seconds; symlinks are never followed or removed. `Err` only when
/// the directory cannot be read.
pub fn remove_orphans(dir: &Path) -> std::io::Result<Cleanup> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Cleanup::default()),
        Err(err) => return Err(err),
    };
    let mut cleanup = Cleanup::default();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        match remove_if_orphaned(&entry.path()) {
            Ok(true) => cleanup.removed += 1,
            Ok(false) => {}
            Err(err) => cleanup.failed.push(format!("{}: {err}", entry.path().display())),
        }
    }
    Ok(cleanup)
}

/// Removes `path` if it is an old regular file nobody holds a lock on;
/// whether it did.
fn remove_if_orphaned(path: &Path) -> std::io::Result<bool> {
    let Ok(metadata) = path.symlink_metadata() else {
        return Ok(false); // gone already (another agent starting beside us)
    };
    let age = metadata
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok());
    if !metadata.is_file() || age.is_none_or(|age| age < GRACE) {
        return Ok(false);
    }
    // O_NOFOLLOW: a link swapped in since the check is refused, not followed.
    let file = match File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(false), // a live writer's
        Err(TryLockError::Error(err)) => return Err(err),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spool-named file in `dir`, last written `age` ago.
    fn spool_file(dir: &Path, name: &str, age: Duration) -> std::path::PathBuf {
        let path = dir.join(format!("{PREFIX}{name}"));
        let file = File::create(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    const OLD: Duration = Duration::from_secs(3600);

    #[test]
    fn an_unheld_file_goes_and_a_held_one_a_fresh_one_and_strangers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let orphan = spool_file(dir.path(), "orphan", OLD);
        let held = spool_file(dir.path(), "held", OLD);
        let writer = File::open(&held).unwrap();
        hold(&writer).unwrap();
        let fresh = spool_file(dir.path(), "fresh", Duration::ZERO);
        let stranger = dir.path().join("report.json");
        std::fs::write(&stranger, b"bytes").unwrap();
        File::open(&stranger)
            .unwrap()
            .set_modified(SystemTime::now() - OLD)
            .unwrap();

        let cleanup = remove_orphans(dir.path()).unwrap();
        assert_eq!((cleanup.removed, cleanup.failed.len()), (1, 0));
        assert!(!orphan.exists(), "nobody holds it: removed");
        assert!(held.exists(), "a live writer holds it");
        assert!(fresh.exists(), "maybe a writer between creating and locking it");
        assert!(stranger.exists(), "not named like a spool file");
    }

    #[test]
    fn a_writer_that_dies_releases_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = spool_file(dir.path(), "dies", OLD);
        let writer = File::open(&path).unwrap();
        hold(&writer).unwrap();
        assert_eq!(remove_orphans(dir.path()).unwrap().removed, 0);
        drop(writer); // what the kernel does for a killed process
        assert_eq!(remove_orphans(dir.path()).unwrap().removed, 1);
        assert!(!path.exists());
    }

    #[test]
    fn a_link_named_like_a_spool_file_is_left_with_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        File::open(&target)
            .unwrap()
            .set_modified(SystemTime::now() - OLD)
            .unwrap();
        let link = dir.path().join(format!("{PREFIX}link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(remove_orphans(dir.path()).unwrap().removed, 0);
        assert!(link.symlink_metadata().is_ok() && target.exists());
    }

    #[test]
    fn a_missing_directory_has_nothing_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove_orphans(&dir.path().join("not-yet")).unwrap().removed, 0);
    }
}
