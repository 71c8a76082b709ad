//! The spool: where bytes land while they are scanned. In memory up to a
//! threshold, past it in a temp file whose room is reserved in the spool
//! budget before it is written, and hashed (SHA-256) as they arrive, so
//! the digest is done when the last byte lands. One writer for every
//! source: S3 bodies, decoded content, API uploads.

mod budget;
mod orphans;

pub use budget::{NoRoom, Reservation, SpoolBudget};
pub use orphans::{Cleanup, remove_orphans};

use bucketscan_core::object::{ObjectBody, SpooledFile};
use sha2::Digest;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Where and from what size bytes are spooled to disk.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub threshold_bytes: u64,
    pub dir: PathBuf,
    pub budget: Arc<SpoolBudget>,
}

impl SpoolConfig {
    /// The system temp dir with `budget_bytes` of room, for one-off scans
    /// (`plugin run`): past 16 MiB bytes go to disk.
    pub fn in_temp_dir(budget_bytes: u64) -> Self {
        Self {
            threshold_bytes: 16 << 20,
            dir: std::env::temp_dir(),
            budget: Arc::new(SpoolBudget::new(budget_bytes)),
        }
    }
}

/// Why bytes could not be spooled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The budget has no room now (or never will, for this size).
    #[error("{0}")]
    NoRoom(NoRoom),
    /// More bytes than the writer was allowed.
    #[error("more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The spool file could not be made or written.
    #[error("{0}")]
    Io(String),
}

/// Room reserved for a file whose final size is not known: this much more
/// at a time as it grows.
const GROWTH: u64 = 64 * 1024 * 1024;

/// Bytes being spooled: write them, then [`finish`](SpoolWriter::finish).
pub struct SpoolWriter {
    config: SpoolConfig,
    limit: u64,
    /// The size announced up front (reserved whole when the file starts).
    expected: Option<u64>,
    memory: Vec<u8>,
    file: Option<SpoolFile>,
    hasher: sha2::Sha256,
    written: u64,
}

struct SpoolFile {
    /// Removes the file when dropped: declared first, so it drops before
    /// `handle` releases the file's lock.
    spooled: SpooledFile,
    handle: std::fs::File,
    room: Room,
}

/// What a finished writer holds.
pub struct Spooled {
    pub body: ObjectBody,
    /// SHA-256 (hex) of every byte written.
    pub sha256: String,
    pub len: u64,
    /// Spool budget the file holds (none in memory): a file of unknown
    /// size took room ahead of its bytes.
    pub reserved: u64,
}

impl SpoolWriter {
    /// A writer for at most `limit` bytes; `expected` is the size when it
    /// is known in advance (reserved whole, and the bytes go to disk from
    /// the start when it is over the threshold).
    pub fn new(config: &SpoolConfig, expected: Option<u64>, limit: u64) -> Self {
        Self {
            config: config.clone(),
            limit,
            expected,
            memory: Vec::new(),
            file: None,
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `chunk`.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let total = self.written + chunk.len() as u64;
        if total > self.limit {
            return Err(SpoolError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        let goes_to_disk = self.expected.unwrap_or(total) > self.config.threshold_bytes;
        if self.file.is_none() && goes_to_disk {
            self.start_file()?;
        }
        match &mut self.file {
            Some(file) => {
                let growing = self.expected.is_none();
                file.room
                    .reserve_up_to(total, growing, self.limit, &self.config.budget)?;
                file.handle
                    .write_all(chunk)
                    .map_err(|err| SpoolError::Io(format!("writing the spool file: {err}")))?;
            }
            None => self.memory.extend_from_slice(chunk),
        }
        self.written = total;
        Ok(())
    }

    /// The bytes, their digest and length.
    pub fn finish(self) -> Result<Spooled, SpoolError> {
        let sha256 = hex::encode(self.hasher.finalize());
        let reserved = self.file.as_ref().map_or(0, |file| file.room.reserved);
        let body = match self.file {
            Some(mut file) => {
                file.handle
                    .flush()
                    .map_err(|err| SpoolError::Io(format!("writing the spool file: {err}")))?;
                // The writer's handle keeps the file's lock as long as the
                // file lives.
                let SpoolFile { spooled, room, handle } = file;
                ObjectBody::File(Arc::new(spooled.with_guard((room.reservations, handle))))
            }
            None => ObjectBody::from_bytes(self.memory),
        };
        Ok(Spooled {
            body,
            sha256,
            len: self.written,
            reserved,
        })
    }

    /// Moves to a file: reserves room first, then writes what memory held.
    fn start_file(&mut self) -> Result<(), SpoolError> {
        let dir = self.config.dir.clone();
        let io = |what: &str, err: std::io::Error| SpoolError::Io(format!("{what} in {}: {err}", dir.display()));
        let mut room = Room::default();
        let first = self.expected.unwrap_or(self.written + GROWTH).min(self.limit);
        room.reserve_up_to(first, self.expected.is_none(), self.limit, &self.config.budget)?;
        std::fs::create_dir_all(&self.config.dir).map_err(|err| io("creating the spool dir", err))?;
        let temp = tempfile::Builder::new()
            .prefix(orphans::PREFIX)
            .tempfile_in(&self.config.dir)
            .map_err(|err| io("creating a spool file", err))?;
        // Held as long as the file lives: marks it as no orphan.
        orphans::hold(temp.as_file()).map_err(|err| io("locking a spool file", err))?;
        let (mut handle, path) = temp.keep().map_err(|err| io("keeping a spool file", err.error))?;
        // From here on the file is removed when `spooled` drops, also on
        // error.
        let spooled = SpooledFile::temporary(path).map_err(|err| io("opening a spool file", err))?;
        handle
            .write_all(&self.memory)
            .map_err(|err| io("writing a spool file", err))?;
        self.memory = Vec::new();
        self.file = Some(SpoolFile { spooled, handle, room });
        Ok(())
    }
}

/// Room reserved in the budget for one file.
#[derive(Default)]
struct Room {
    reservations: Vec<Reservation>,
    reserved: u64,
}

impl Room {
    /// Room for `total` bytes in all; a file of unknown size (`growing`)
    /// takes at least [`GROWTH`] more at a time, never past its `limit`,
    /// one of known size just what it needs (a small member must not hold
    /// 64 MiB of the budget).
    fn reserve_up_to(&mut self, total: u64, growing: bool, limit: u64, budget: &SpoolBudget) -> Result<(), SpoolError> {
        if total <= self.reserved {
            return Ok(());
        }
        let least = match growing {
            true => GROWTH
                .min(budget.total().saturating_sub(self.reserved))
                .min(limit.saturating_sub(self.reserved)),
            false => 0,
        };
        let step = (total - self.reserved).max(least);
        let reservation = budget.try_reserve(step).map_err(SpoolError::NoRoom)?;
        self.reservations.push(reservation);
        self.reserved += step;
        Ok(())
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threshold: u64, budget: u64) -> (SpoolConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            threshold_bytes: threshold,
            dir: dir.path().to_owned(),
            budget: Arc::new(SpoolBudget::new(budget)),
        };
        (config, dir)
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn small_bodies_stay_in_memory_and_are_hashed_as_they_arrive() {
        let (config, dir) = config(1024, 1 << 20);
        let mut writer = SpoolWriter::new(&config, None, 4096);
        writer.append(b"hello ").unwrap();
        writer.append(b"world").unwrap();
        let spooled = writer.finish().unwrap();
        assert!(matches!(spooled.body, ObjectBody::Memory(_)));
        assert_eq!(spooled.sha256, sha256(b"hello world"));
        assert_eq!(spooled.len, 11);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_growing_file_never_reserves_past_its_limit() {
        // Growth steps of 64 MiB would take the whole budget for a file
        // allowed 3 MiB: room the writer can never use, taken from others.
        let (config, _dir) = config(0, 8 << 20);
        let mut writer = SpoolWriter::new(&config, None, 3 << 20);
        writer.append(&[1; 1000]).unwrap();
        assert_eq!(config.budget.free_bytes(), 5 << 20);
        writer.append(&vec![2; (3 << 20) - 1000]).unwrap();
        let spooled = writer.finish().unwrap();
        assert_eq!(spooled.reserved, 3 << 20);
        assert_eq!(config.budget.free_bytes(), 5 << 20);
        drop(spooled);
        assert_eq!(config.budget.free_bytes(), 8 << 20);
    }

    #[test]
    fn large_bodies_go_to_a_reserved_file_that_goes_with_the_body() {
        let (config, dir) = config(1024, 10 << 20);
        let payload = vec![7u8; 300_000];
        let mut writer = SpoolWriter::new(&config, None, 1 << 20);
        for chunk in payload.chunks(1000) {
            writer.append(chunk).unwrap();
        }
        let spooled = writer.finish().unwrap();
        assert!(matches!(spooled.body, ObjectBody::File(_)));
        assert_eq!(spooled.body.read_at(0, 400_000).unwrap(), payload);
        assert_eq!(spooled.sha256, sha256(&payload));
        assert!(
            config.budget.free_bytes() < 10 << 20,
            "room is held while the body lives"
        );
        drop(spooled);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the file is gone");
        assert_eq!(config.budget.free_bytes(), 10 << 20, "and its room is back");
    }

    #[test]
    fn past_the_limit_or_the_budget_nothing_is_kept() {
        let (config, dir) = config(16, 1 << 20);
        let mut writer = SpoolWriter::new(&config, None, 100);
        assert_eq!(writer.append(&[0; 101]), Err(SpoolError::TooLarge { limit: 100 }));
        let mut writer = SpoolWriter::new(&config, Some(2 << 20), 4 << 20);
        assert!(matches!(writer.append(&[0; 64]), Err(SpoolError::NoRoom(_))));
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(config.budget.free_bytes(), 1 << 20);
    }
}
