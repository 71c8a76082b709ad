//! The object under scan: its metadata and its bytes, fetched once and
//! shared by every stage of a pipeline run.

use serde::Serialize;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Metadata of one object version, fixed for the whole pipeline run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: u64,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

/// The bytes of the object: held in memory when small, spooled to a local
/// file when large, so ranged reads never load more than asked for.
#[derive(Debug, Clone)]
pub enum ObjectBody {
    Memory(Arc<[u8]>),
    File(Arc<SpooledFile>),
}

/// A local file holding an object's bytes. Removed on drop when it was a
/// temporary spool file.
#[derive(Debug)]
pub struct SpooledFile {
    path: PathBuf,
    file: std::fs::File,
    remove_on_drop: bool,
}

impl SpooledFile {
    /// Opens an existing file (kept on drop).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(path)?,
            path: path.to_owned(),
            remove_on_drop: false,
        })
    }

    /// Adopts a temporary file that is removed when the body is dropped.
    pub fn temporary(path: PathBuf) -> io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(&path)?,
            path,
            remove_on_drop: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpooledFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ObjectBody {
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::Memory(bytes.into())
    }

    pub fn len(&self) -> io::Result<u64> {
        match self {
            Self::Memory(bytes) => Ok(bytes.len() as u64),
            Self::File(file) => Ok(file.file.metadata()?.len()),
        }
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `len` bytes at `offset`; fewer at the end, none past it.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Self::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(len).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Self::File(spooled) => {
                let mut buf = vec![0; len];
                let mut filled = 0;
                while filled < len {
                    let n = spooled.file.read_at(&mut buf[filled..], offset + filled as u64)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_reads_stop_at_the_end() {
        let body = ObjectBody::from_bytes(b"0123456789".to_vec());
        assert_eq!(body.read_at(0, 4).unwrap(), b"0123");
        assert_eq!(body.read_at(8, 4).unwrap(), b"89");
        assert!(body.read_at(10, 4).unwrap().is_empty());
        assert!(body.read_at(u64::MAX, 4).unwrap().is_empty());
    }

    #[test]
    fn file_bodies_read_the_same_as_memory() {
        let dir = std::env::temp_dir().join(format!("bucketscan-object-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let body = ObjectBody::File(Arc::new(SpooledFile::temporary(dir.clone()).unwrap()));
        assert_eq!(body.read_at(3, 100).unwrap(), b"3456789");
        assert_eq!(body.len().unwrap(), 10);
        drop(body);
        assert!(!dir.exists(), "temporary spool file is removed on drop");
    }
}
