//! Spool files left behind by a process that died without cleaning up.
//!
//! A spool file is removed when its body drops; a SIGKILL, an OOM kill
//! or a power cut skips every destructor, and the files stay on a disk
//! the budget no longer counts. Each file is named after the process that
//! wrote it, so a starting agent can tell a dead writer's files (removed)
//! from those of a live one sharing the directory (left alone).

use std::path::Path;

const PREFIX: &str = "bucketscan-spool-";

/// The name a spool file of this process starts with.
pub(super) fn file_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// What [`remove_orphans`] did.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub removed: usize,
    /// Files it could not remove, with why (e.g. another user's, in a
    /// shared sticky temp dir).
    pub failed: Vec<String>,
}

/// Removes the spool files in `dir` whose writer no longer runs. Anything
/// not named like a spool file is left alone, and so is a file whose
/// writer cannot be told (a reused process id keeps its predecessor's
/// files until it, too, is gone); symlinks are never followed or removed.
/// `Err` only when the directory cannot be read.
pub fn remove_orphans(dir: &Path) -> std::io::Result<Cleanup> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Cleanup::default()),
        Err(err) => return Err(err),
    };
    let mut cleanup = Cleanup::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(writer_of) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if !is_file || is_running(writer) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => cleanup.removed += 1,
            // Another agent starting beside us took it first.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => cleanup.failed.push(format!("{}: {err}", entry.path().display())),
        }
    }
    Ok(cleanup)
}

/// The process id a spool file's name carries.
fn writer_of(name: &str) -> Option<i32> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('-')?;
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Whether process `pid` exists (as another user's, too).
fn is_running(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only checks the process exists.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_dead_writers_files_go_and_a_live_ones_and_strangers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!("{PREFIX}{}-abc123", dead_pid()));
        let ours = dir.path().join(format!("{}xyz789", file_prefix()));
        let stranger = dir.path().join("bucketscan-spool-notapid-1");
        let unrelated = dir.path().join("report.json");
        for path in [&dead, &ours, &stranger, &unrelated] {
            std::fs::write(path, b"bytes").unwrap();
        }
        let cleanup = remove_orphans(dir.path()).unwrap();
        assert_eq!((cleanup.removed, cleanup.failed.len()), (1, 0));
        assert!(!dead.exists(), "the dead writer's file is removed");
        assert!(ours.exists() && stranger.exists() && unrelated.exists());
    }

    #[test]
    fn a_link_named_like_a_dead_writers_file_is_left_with_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let link = dir.path().join(format!("{PREFIX}{}-abc", dead_pid()));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(remove_orphans(dir.path()).unwrap().removed, 0);
        assert!(link.symlink_metadata().is_ok() && target.exists());
    }

    #[test]
    fn a_missing_directory_has_nothing_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove_orphans(&dir.path().join("not-yet")).unwrap().removed, 0);
    }

    #[test]
    fn names_carry_their_writer() {
        assert_eq!(writer_of("bucketscan-spool-42-a1b2"), Some(42));
        assert_eq!(writer_of("bucketscan-spool-0-a1b2"), None, "0 is no process");
        assert_eq!(writer_of("bucketscan-spool--1-x"), None);
        assert_eq!(
            writer_of("bucketscan-42-a1b2"),
            None,
            "the old name is no spool file of ours"
        );
    }
}
