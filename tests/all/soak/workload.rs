//! What the soak uploads: a mix of clean, infected (in place, in a zip, in
//! a tar.gz), blocked and unscannable objects, plus objects that only a
//! signature update made mid-run turns infected, and a few large objects
//! that exhaust the agents' spool budget.

use super::faults::Fault;
use bucketscan_tests::samples;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Clean,
    Infected,
    InfectedInZip,
    /// clamav-testfiles' `clam.tar.gz`: the test file, gzipped in a tar.
    InfectedInTarGz,
    /// An executable disguised as a PDF: the file-type filter blocks it.
    Blocked,
    /// An encrypted zip: clamd cannot look inside.
    Unscannable,
    /// Bytes only the signature update (a fault) names: uploaded after it
    /// is live, they must be found.
    LateInfected,
    /// Clean text overwritten with EICAR while in flight: the EICAR must
    /// end in quarantine and never in production; the clean first bytes
    /// may be promoted.
    Overwritten,
    /// The same on the versioned bucket, whose events name their version:
    /// the clean first version must be promoted, the EICAR version
    /// quarantined, and no EICAR version left behind.
    VersionedOverwrite,
}

impl Kind {
    /// The `bucketscan-result` tag the object must end with.
    pub fn expected_result(self) -> &'static str {
        match self {
            Kind::Clean => "clean",
            Kind::Infected
            | Kind::InfectedInZip
            | Kind::InfectedInTarGz
            | Kind::LateInfected
            | Kind::Overwritten
            | Kind::VersionedOverwrite => "infected",
            Kind::Blocked => "blocked",
            Kind::Unscannable => "unscannable",
        }
    }

    /// Everything but clean must never be seen in production.
    pub fn is_bad(self) -> bool {
        self != Kind::Clean
    }
}

/// The versioned staging bucket (its events are sent by the soak, with
/// version IDs, as S3 sends them: the local server's carry none).
pub const VSTAGING: &str = "vstaging";

pub struct Upload {
    /// `staging` or `vstaging`.
    pub bucket: &'static str,
    pub key: String,
    pub kind: Kind,
    /// What the key holds in the end.
    pub bytes: Vec<u8>,
    pub content_type: Option<&'static str>,
    /// What the key held first, overwritten `overwrite_after` later.
    pub first: Option<Vec<u8>>,
    pub overwrite_after: std::time::Duration,
}

impl Upload {
    fn new(key: String, kind: Kind, bytes: Vec<u8>, content_type: Option<&'static str>) -> Self {
        Self {
            bucket: bucketscan_tests::agent::STAGING,
            key,
            kind,
            bytes,
            content_type,
            first: None,
            overwrite_after: std::time::Duration::ZERO,
        }
    }
}

/// One round: its uploads, then its fault.
pub struct Round {
    pub fault: Fault,
    /// Streamed through the round.
    pub uploads: std::sync::Arc<Vec<Upload>>,
    /// Large objects the fault uploads itself, when it needs them in
    /// flight (a spool file to orphan, a spool budget to fill).
    pub burst: Vec<Upload>,
}

/// Large enough that two at once do not fit the soak's spool budget.
pub const LARGE_OBJECT_BYTES: usize = 5 << 20;

/// `per_round` objects for each fault in `faults`, numbered across rounds.
/// Objects in rounds after the signature update include late-infected
/// ones; the spool-pressure round adds four large clean objects.
pub fn plan(faults: &[Fault], per_round: usize) -> Vec<Round> {
    let eicar = samples::eicar();
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    let tar_gz = std::fs::read(samples::clamav_testfile("clam.tar.gz")).unwrap();
    let mut signatures_updated = false;
    let mut index = 0;
    let mut rounds = Vec::new();
    for &fault in faults {
        let mut uploads = Vec::new();
        for _ in 0..per_round {
            let i = index;
            index += 1;
            if i % 8 == 4 {
                let versioned = (i / 8) % 2 == 1;
                let kind = if versioned {
                    Kind::VersionedOverwrite
                } else {
                    Kind::Overwritten
                };
                let mut upload = Upload::new(format!("soak/{i:05}-overwritten.txt"), kind, eicar.clone(), None);
                if versioned {
                    upload.bucket = VSTAGING;
                }
                upload.first = Some(samples::pseudo_random_text(2_000, i as u64 + 1));
                upload.overwrite_after = std::time::Duration::from_millis(40 * (i as u64 / 16 % 6));
                uploads.push(upload);
                continue;
            }
            let (kind, bytes, content_type, name) = match i % 8 {
                1 => (Kind::Infected, eicar.clone(), None, "eicar.txt"),
                2 => (
                    Kind::InfectedInZip,
                    samples::zip_of("inner.com", &eicar),
                    None,
                    "bundle.zip",
                ),
                3 => (Kind::InfectedInTarGz, tar_gz.clone(), None, "backup.tar.gz"),
                5 => (Kind::Blocked, exe.clone(), Some("application/pdf"), "invoice.pdf"),
                6 => (Kind::Unscannable, samples::encrypted_zip(), None, "secret.zip"),
                7 if signatures_updated => (Kind::LateInfected, late_sample(i), None, "late.txt"),
                _ => {
                    let size = [1 << 10, 20 << 10, 200 << 10, 1 << 20][(i / 8) % 4];
                    (
                        Kind::Clean,
                        samples::pseudo_random_text(size, i as u64 + 1),
                        None,
                        "notes.txt",
                    )
                }
            };
            uploads.push(Upload::new(format!("soak/{i:05}-{name}"), kind, bytes, content_type));
        }
        let burst = match fault {
            Fault::KillAgent => large_objects(1, 1 << 20, index),
            Fault::SpoolPressure => large_objects(4, LARGE_OBJECT_BYTES, index),
            _ => Vec::new(),
        };
        signatures_updated |= fault == Fault::SignatureUpdate;
        rounds.push(Round {
            fault,
            uploads: std::sync::Arc::new(uploads),
            burst,
        });
    }
    rounds
}

/// `count` clean objects of `size` bytes (past the spool threshold), named
/// after the upload number they follow.
fn large_objects(count: usize, size: usize, index: usize) -> Vec<Upload> {
    (0..count)
        .map(|n| {
            let bytes = samples::pseudo_random_text(size, 7_000 + (index * 10 + n) as u64);
            Upload::new(format!("soak/large-{index:05}-{n}.txt"), Kind::Clean, bytes, None)
        })
        .collect()
}

/// The bytes of late-infected object `index`: random text no signature
/// names until the update adds its hash.
pub fn late_sample(index: usize) -> Vec<u8> {
    samples::pseudo_random_text(3_000 + index % 100, 1_000_000 + index as u64)
}

/// The hash signatures (`md5:size:Name` lines) the update adds: one for
/// every late sample a plan of `objects` could hold.
pub fn late_signatures(objects: usize) -> String {
    (0..objects)
        .filter(|i| i % 8 == 7)
        .map(|i| {
            let bytes = late_sample(i);
            format!("{:x}:{}:Bucketscan.Soak.Late\n", md5::compute(&bytes), bytes.len())
        })
        .collect()
}
