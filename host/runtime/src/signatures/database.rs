//! What a ClamAV database directory holds, read from the databases
//! themselves: the build time in the 512-byte header of every container
//! (`.cvd`, `.cld`, `.cud`: `ClamAV-VDB:time:version:sigs:level:md5:dsig:builder:stime`).
//! File times say when a file was copied, not how old its signatures are
//! (a re-upload of an old database would look fresh), so they are never
//! used. Plain signature files (`.hdb`, `.ndb`, …) carry no build time:
//! they add signatures but cannot make a database fresh.
//!
//! Which build decides: ClamAV's own `daily` database when there is one
//! (a freshly built custom container beside it must not make a week-old
//! daily look fresh); otherwise the *oldest* container, since every one of
//! them must be current. A build time in the future is refused: it would
//! stay "fresh" forever.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files clamd loads signatures from.
pub const SIGNATURE_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "ndb", "ndu", "ldb", "ldu", "cdb", "idb", "fp",
    "sfp", "ign", "ign2", "pdb", "gdb", "wdb", "cbc", "crb", "yar", "yara", "info", "cfg",
];

/// Containers with a header that states when they were built.
const CONTAINERS: &[&str] = &["cvd", "cld", "cud"];

/// The header of one container database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub file: String,
    pub version: u64,
    pub built: SystemTime,
}

/// Why a database's freshness cannot be told; each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseError {
    #[error("{file}: not a ClamAV database header")]
    NotAHeader { file: String },
    #[error("{file}: header has no {field}")]
    MissingField { file: String, field: &'static str },
    #[error("{file}: header claims a build time in the future ({stime}); refused")]
    FutureBuild { file: String, stime: u64 },
    #[error("{path}: {detail}")]
    Unreadable { path: String, detail: String },
}

/// Parses a container header (the first 512 bytes).
pub fn parse_header(file: &str, header: &[u8]) -> Result<Build, DatabaseError> {
    let text = String::from_utf8_lossy(&header[..header.len().min(512)]);
    let text = text.trim_end_matches(['\0', ' ', '\n']);
    let fields: Vec<&str> = text.split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 9 {
        return Err(DatabaseError::NotAHeader { file: file.to_owned() });
    }
    let missing = |field| DatabaseError::MissingField {
        file: file.to_owned(),
        field,
    };
    let version = fields[2].trim().parse().map_err(|_| missing("version number"))?;
    let stime: u64 = fields[8].trim().parse().map_err(|_| missing("build time"))?;
    let built = UNIX_EPOCH
        .checked_add(Duration::from_secs(stime))
        .filter(|built| *built <= SystemTime::now() + FUTURE_TOLERANCE)
        .ok_or_else(|| DatabaseError::FutureBuild {
            file: file.to_owned(),
            stime,
        })?;
    Ok(Build {
        file: file.to_owned(),
        version,
        built,
    })
}

/// Clock skew accepted between the database's builder and this machine.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(3600);

/// The build that decides how fresh `dir` is (see the module docs); `Err`
/// when the directory is missing or a container is unreadable or claims a
/// future build, `Ok(None)` when there is no container.
pub fn governing_build(dir: &Path) -> Result<Option<Build>, DatabaseError> {
    let unreadable = |path: &Path, err: std::io::Error| DatabaseError::Unreadable {
        path: path.display().to_string(),
        detail: err.to_string(),
    };
    let entries = std::fs::read_dir(dir).map_err(|err| unreadable(dir, err))?;
    let mut builds: Vec<Build> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let container = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONTAINERS.contains(&e));
        if !container || name.starts_with('.') {
            continue;
        }
        let mut header = [0u8; 512];
        let read = std::fs::File::open(&path).and_then(|mut file| {
            use std::io::Read;
            file.read_exact(&mut header)
        });
        read.map_err(|err| unreadable(&path, err))?;
        builds.push(parse_header(&name, &header)?);
    }
    let daily = builds
        .iter()
        .filter(|b| b.file.starts_with("daily."))
        .max_by_key(|b| (b.version, b.built))
        .cloned();
    Ok(daily.or_else(|| builds.into_iter().min_by_key(|b| b.built)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(stime: u64) -> Vec<u8> {
        let mut h = format!("ClamAV-VDB:25 Nov 2026 10-00 +0000:27001:12:90:0123:X:bucketscan:{stime}").into_bytes();
        h.resize(512, b' ');
        h
    }

    #[test]
    fn the_build_time_comes_from_the_header() {
        let build = parse_header("daily.cld", &header(1_700_000_000)).unwrap();
        assert_eq!(build.version, 27001);
        assert_eq!(build.built, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(parse_header("x.cvd", b"garbage").is_err());
        assert!(parse_header("x.cvd", b"ClamAV-VDB:a:b").is_err());
    }

    fn secs_ago(secs: u64) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - secs
    }

    #[test]
    fn the_daily_database_decides_and_file_times_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let week = 7 * 24 * 3600;
        std::fs::write(dir.path().join("main.cvd"), header(secs_ago(30 * 24 * 3600))).unwrap();
        std::fs::write(dir.path().join("daily.cld"), header(secs_ago(week))).unwrap();
        // A custom container built just now does not make the daily fresh,
        // nor does a plain file just written.
        std::fs::write(dir.path().join("custom.cud"), header(secs_ago(0))).unwrap();
        std::fs::write(dir.path().join("local.hdb"), b"00:1:x\n").unwrap();
        let build = governing_build(dir.path()).unwrap().unwrap();
        assert_eq!(build.file, "daily.cld");
        assert!(build.built.elapsed().unwrap() >= Duration::from_secs(week - 60));
    }

    #[test]
    fn without_a_daily_the_oldest_container_decides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.cud"), header(secs_ago(3600))).unwrap();
        std::fs::write(dir.path().join("b.cud"), header(secs_ago(60))).unwrap();
        assert_eq!(governing_build(dir.path()).unwrap().unwrap().file, "a.cud");
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("local.hdb"), b"00:1:x\n").unwrap();
        assert_eq!(governing_build(empty.path()).unwrap(), None);
    }

    #[test]
    fn a_build_time_in_the_future_is_refused() {
        let future = secs_ago(0) + 30 * 24 * 3600;
        let err = parse_header("daily.cud", &header(future)).unwrap_err();
        assert_eq!(
            err,
            DatabaseError::FutureBuild {
                file: "daily.cud".into(),
                stime: future
            }
        );
        assert!(err.to_string().contains("in the future"), "{err}");
        assert!(
            parse_header("daily.cud", &header(u64::MAX)).is_err(),
            "no overflow panic"
        );
    }
}
