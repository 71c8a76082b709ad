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
