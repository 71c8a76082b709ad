//! Sample files, generated at test time (EICAR is never committed) or taken
//! from Debian's clamav-testfiles.

use std::path::{Path, PathBuf};

/// The 68-byte EICAR test string, assembled here so the repository never
/// holds it in one piece.
pub fn eicar() -> Vec<u8> {
    let parts = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!",
        "$H+H*",
    ];
    let bytes = parts.concat().into_bytes();
    assert_eq!(bytes.len(), 68);
    bytes
}

/// A file from Debian's clamav-testfiles (e.g. `clam.exe`, `clam.zip`).
pub fn clamav_testfile(name: &str) -> PathBuf {
    let path = Path::new("/usr/share/clamav-testfiles").join(name);
    assert!(
        path.exists(),
        "{} is missing: apt-get install clamav-testfiles (scripts/test does this)",
        path.display()
    );
    path
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Harmless text that matches no signature.
pub fn clean_text() -> Vec<u8> {
    b"Quarterly report\n\nNothing to see here but plain text.\n".repeat(20)
}

/// `size` lowercase letters from a seeded xorshift: matches no signature
/// and no magic number, and differs per seed.
pub fn pseudo_random_text(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect()
}

/// Bytes the test signature database flags wherever they lie in a file
/// (`tests/signatures/bucketscan-test.ndb`, a body signature): for data
/// hidden inside a structure, where a whole-file hash cannot see it.
pub fn body_marker() -> Vec<u8> {
    // Joined at run time: the test binaries do not carry it whole.
    ["bucketscan test body ", "signature: found anywhere in a file"]
        .concat()
        .into_bytes()
}

/// Two 128-byte blocks with the same MD5 (the collision Wang et al.
/// published in 2004), so the same S3 ETag, and different SHA-256s. The
/// test signature database flags the second by its SHA-256
/// (`tests/signatures/bucketscan-test.hsb`): an attacker's "clean" file and
/// its infected twin.
pub fn md5_collision() -> (Vec<u8>, Vec<u8>) {
    let hex = |text: &str| -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let clean = hex(concat!(
        "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f89",
        "55ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5b",
        "d8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0",
        "e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70",
    ));
    let infected = hex(concat!(
        "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f89",
        "55ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5b",
        "d8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0",
        "e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70",
    ));
    (clean, infected)
}

/// A zip whose only entry, `secret.txt`, has the "encrypted" flag set:
/// clamd cannot look inside it.
pub fn encrypted_zip() -> Vec<u8> {
    stored_zip("secret.txt", &[0x42u8; 24], true)
}

/// A zip holding `data` as `name`, stored (not compressed): clamd unpacks
/// it and scans the entry.
pub fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    stored_zip(name, data, false)
}

fn stored_zip(name: &str, data: &[u8], encrypted: bool) -> Vec<u8> {
    let name = name.as_bytes();
    let crc = crc32(data);
    let flags: u16 = if encrypted { 1 } else { 0 };
    let sizes = |zip: &mut Vec<u8>| {
        zip.extend(crc.to_le_bytes());
        zip.extend((data.len() as u32).to_le_bytes());
        zip.extend((data.len() as u32).to_le_bytes());
        zip.extend((name.len() as u16).to_le_bytes());
    };
    let mut zip = Vec::new();
    zip.extend(b"PK\x03\x04");
    zip.extend(20u16.to_le_bytes()); // version needed
    zip.extend(flags.to_le_bytes());
    zip.extend(0u16.to_le_bytes()); // stored
    zip.extend([0, 0, 0, 0]); // time, date
    sizes(&mut zip);
    zip.extend(0u16.to_le_bytes()); // extra length
    zip.extend(name);
    zip.extend(data);
    let central_start = zip.len();
    zip.extend(b"PK\x01\x02");
    zip.extend(20u16.to_le_bytes()); // made by
    zip.extend(20u16.to_le_bytes()); // needed
    zip.extend(flags.to_le_bytes());
    zip.extend(0u16.to_le_bytes());
    zip.extend([0, 0, 0, 0]);
    sizes(&mut zip);
    zip.extend([0u8; 12]); // extra len, comment len, disk, int attr, ext attr
    zip.extend(0u32.to_le_bytes()); // local header offset
    zip.extend(name);
    let central_len = zip.len() - central_start;
    zip.extend(b"PK\x05\x06");
    zip.extend([0u8; 4]);
    zip.extend(1u16.to_le_bytes());
    zip.extend(1u16.to_le_bytes());
    zip.extend((central_len as u32).to_le_bytes());
    zip.extend((central_start as u32).to_le_bytes());
    zip.extend(0u16.to_le_bytes());
    zip
}

/// CRC-32 (IEEE), bit by bit: samples are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
