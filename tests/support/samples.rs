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
