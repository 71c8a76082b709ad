//! The whole-file hash signatures of the database directory, indexed for
//! the scan path's hashes plan (`bucketscan_core::hashes`): the plain
//! `.hdb`/`.hsb` files (and `.fp`/`.sfp`/`.ign`/`.ign2`) and those inside
//! `.cvd`/`.cld`/`.cud` containers, read as a stream — ClamAV's own
//! `main.cvd` holds millions of lines, of which only the few for objects
//! over the size limits are kept.

use super::CANARY_FILE;
use bucketscan_core::hashes::{HashFileRole, HashSignatures};
use std::io::{BufReader, Read};
use std::path::Path;

/// The index of `dir`'s hash signatures for objects over `floor` bytes;
/// `Err` names the file (and line) the host could not read.
pub fn load(dir: &Path, floor: u64) -> Result<HashSignatures, String> {
    let mut index = HashSignatures::new(floor);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|err| format!("reading {}: {err}", dir.display()))?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && name != CANARY_FILE)
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let extension = name.rsplit_once('.').map(|(_, extension)| extension);
        match extension {
            Some("cvd" | "cld" | "cud") => add_container(&mut index, &path, &name)?,
            _ if HashFileRole::of(&name).is_some() => {
                let file = std::fs::File::open(&path).map_err(|err| format!("{}: {err}", path.display()))?;
                index
                    .add_reader(&name, false, BufReader::new(file))
                    .map_err(|err| err.to_string())?;
            }
            _ => {}
        }
    }
    Ok(index)
}

/// The hash files inside one container: a 512-byte header, then a tar
/// (gzip-compressed in `.cvd`/`.cud`, plain in `.cld`). clamd reports the
/// signatures of `.cvd` and `.cld` (Talos's) without `.UNOFFICIAL`.
fn add_container(index: &mut HashSignatures, path: &Path, name: &str) -> Result<(), String> {
    let failed = |err: std::io::Error| format!("{}: {err}", path.display());
    let mut file = BufReader::new(std::fs::File::open(path).map_err(failed)?);
    std::io::copy(&mut (&mut file).take(512), &mut std::io::sink()).map_err(failed)?;
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(failed)?
        .starts_with(&[0x1f, 0x8b]);
    let body: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let official = !name.ends_with(".cud");
    let mut archive = tar::Archive::new(body);
    for entry in archive.entries().map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let member = entry.path().map_err(failed)?.to_string_lossy().into_owned();
        if HashFileRole::of(&member).is_none() {
            continue;
        }
        index
            .add_reader(&format!("{name}/{member}"), official, BufReader::new(entry))
            .map_err(|err| err.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    /// A container as ClamAV builds one: header, then a gzip'd tar.
    fn container(files: &[(&str, &str)]) -> Vec<u8> {
        let mut archive = tar::Builder::new(Vec::new());
        for (name, text) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive.append_data(&mut header, name, text.as_bytes()).unwrap();
        }
        let tar = archive.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        let mut out = b"ClamAV-VDB:test".to_vec();
        out.resize(512, b' ');
        out.extend(gzip.finish().unwrap());
        out
    }

    fn md5() -> Vec<u8> {
        hex::decode(MD5).unwrap()
    }

    #[test]
    fn signatures_inside_containers_and_plain_files_are_indexed_with_clamds_names() {
        let dir = tempfile::tempdir().unwrap();
        let hdb = format!("{MD5}:9000:In.Container\n");
        std::fs::write(dir.path().join("main.cvd"), container(&[("main.hdb", &hdb)])).unwrap();
        std::fs::write(dir.path().join("local.hsb"), format!("{MD5}:9001:In.Plain.File\n")).unwrap();
        std::fs::write(dir.path().join("daily.ndb"), "not:a:hash:file\n").unwrap();
        let index = load(dir.path(), 1000).unwrap();
        assert_eq!(index.len(), 2);
        use bucketscan_core::hashes::HashKind::Md5;
        let found = index.lookup(&[(Md5, &md5())], 9000).unwrap();
        assert_eq!(
            (found.name.as_str(), found.file.as_str()),
            ("In.Container", "main.cvd/main.hdb")
        );
        let found = index.lookup(&[(Md5, &md5())], 9001).unwrap();
        assert_eq!(found.name, "In.Plain.File.UNOFFICIAL");
    }

    #[test]
    fn a_broken_line_inside_a_container_is_named_by_container_member_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let hdb = format!("{MD5}:9000:Fine\nnonsense\n");
        std::fs::write(dir.path().join("daily.cud"), container(&[("daily.hdb", &hdb)])).unwrap();
        let err = load(dir.path(), 1000).unwrap_err();
        assert!(err.starts_with("daily.cud/daily.hdb line 2:"), "{err}");
    }
}
