//! ClamAV databases built at test time, with the build time a test needs.
//!
//! A `.cud` is a CVD container clamd loads without a digital signature:
//! the 512-byte header (`ClamAV-VDB:time:version:sigs:level:md5:dsig:builder:stime`)
//! and a tar of the database files plus a `.info` index whose first line
//! repeats the header. Its header carries the build time the agent judges
//! freshness by — the same field a signed `.cvd`/`.cld` from ClamAV has.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// A container named `name` (e.g. `daily`) holding `hdb` (lines of
/// `md5:size:Name`), built at `built`, as version `version`.
pub fn cud(name: &str, version: u64, built: SystemTime, hdb: &str) -> Vec<u8> {
    cud_with(name, version, built, hdb, &[])
}

/// Like [`cud`], with `extra` files in the container beside the `.hdb`.
pub fn cud_with(name: &str, version: u64, built: SystemTime, hdb: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let stime = built.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let sigs = hdb.lines().filter(|l| !l.trim().is_empty()).count();
    let header_fields =
        |md5: &str| format!("ClamAV-VDB:25 Nov 2026 00-00 +0000:{version}:{sigs}:90:{md5}:X:bucketscan-tests:{stime}");
    let info = format!(
        "{}\n{name}.hdb:{}:{}\n",
        header_fields("X"),
        hdb.len(),
        hex::encode(Sha256::digest(hdb.as_bytes()))
    );
    let mut archive = tar::Builder::new(Vec::new());
    let files = [
        (format!("{name}.info"), info.as_bytes()),
        (format!("{name}.hdb"), hdb.as_bytes()),
    ];
    let extra = extra.iter().map(|(file, data)| (file.to_string(), *data));
    for (file, data) in files.into_iter().chain(extra) {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(stime);
        header.set_cksum();
        archive.append_data(&mut header, file, data).unwrap();
    }
    let body = archive.into_inner().unwrap();
    let md5 = format!("{:x}", md5::compute(&body));
    let mut out = header_fields(&md5).into_bytes();
    out.resize(512, b' ');
    out.extend(body);
    out
}

/// The project's test signatures (`tests/signatures/bucketscan-test.hdb`)
/// plus `extra` lines, as `daily.cud` built at `built`.
pub fn test_database(version: u64, built: SystemTime, extra: &str) -> Vec<u8> {
    let hdb = std::fs::read_to_string(crate::workspace().join("tests/signatures/bucketscan-test.hdb")).unwrap();
    cud("daily", version, built, &format!("{hdb}{extra}"))
}

/// A clamd whose database directory holds a fresh `daily.cud`, with the
/// same database in the world's `signatures` bucket under `clamav/` (as a
/// private mirror would hold it). Returns the clamd and its directory.
pub async fn clamd_with_fresh_database(world: &crate::agent::World) -> (crate::clamd::ClamdServer, tempfile::TempDir) {
    let db = tempfile::tempdir().unwrap();
    let database = test_database(1, SystemTime::now(), "");
    std::fs::write(db.path().join("daily.cud"), &database).unwrap();
    world.aws.s3.create_bucket().bucket("signatures").send().await.unwrap();
    upload(world, "clamav/daily.cud", database).await;
    let clamd =
        crate::clamd::start_with_database(db.path(), crate::free_port(), crate::clamd::STREAM_MAX_BYTES).unwrap();
    (clamd, db)
}

/// `[signatures]` syncing `s3://signatures/clamav/` into `clamd`'s
/// directory every `interval` seconds, with a day's freshness.
pub fn synced_config(clamd: &crate::clamd::ClamdServer, interval: u64, reload_timeout: u64) -> String {
    format!(
        "[signatures]\ndatabase-dir = \"{}\"\nbucket = \"signatures\"\nprefix = \"clamav/\"\n\
         unsigned = [\"clamav/daily.cud\"]\n\
         sync-interval-secs = {interval}\nreload-timeout-secs = {reload_timeout}\nmax-age-secs = 86400\n",
        clamd.database_dir().display()
    )
}

/// Puts `bytes` at `key` in the world's `signatures` bucket.
pub async fn upload(world: &crate::agent::World, key: &str, bytes: Vec<u8>) {
    world
        .aws
        .s3
        .put_object()
        .bucket("signatures")
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

/// How many signatures a database of realistic size holds (ClamAV's own
/// main + daily carry millions): hash signatures by MD5 and size, and
/// body signatures (hex patterns at any offset), which cost clamd time on
/// every byte it reads.
pub const REALISTIC_HASHES: usize = 2_000_000;
pub const REALISTIC_BODIES: usize = 300_000;

/// Writes a synthetic database of realistic size into `dir` beside the
/// test signatures (`synth.hdb`, `synth.ndb`): random MD5s and random
/// 12–40-byte body patterns from a seeded generator, so the same run
/// after run and matching nothing a bench scans. Benches measure against
/// it because clamd's cost per byte grows with its database, and every
/// ratio against a one-line database overstates the agent's share.
pub fn write_realistic_database(dir: &std::path::Path) -> std::io::Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(crate::workspace().join("tests/signatures"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut hashes = std::io::BufWriter::new(std::fs::File::create(dir.join("synth.hdb"))?);
    for i in 0..REALISTIC_HASHES {
        let size = 100 + next() % 10_000_000;
        writeln!(hashes, "{:016x}{:016x}:{size}:Synth.Hash.{i}", next(), next())?;
    }
    hashes.flush()?;
    let mut bodies = std::io::BufWriter::new(std::fs::File::create(dir.join("synth.ndb"))?);
    let mut pattern = String::with_capacity(80);
    for i in 0..REALISTIC_BODIES {
        pattern.clear();
        for _ in 0..12 + next() % 29 {
            write!(pattern, "{:02x}", next() as u8).unwrap();
        }
        writeln!(bodies, "Synth.Body.{i}:0:*:{pattern}")?;
    }
    bodies.flush()
}

/// A world set up for retro-scans: the template's results table, a sweep
/// queue, clamd on a fresh synced database (synced every `interval` s),
/// and the staging pipeline with `retro-scan` (7 days) whose quarantine
/// is also granted production (a retro hit is moved out of it). Returns
/// the config, the sweep queue's URL, clamd and its database directory.
pub async fn retro_world(
    world: &crate::agent::World,
    interval: u64,
) -> (std::path::PathBuf, String, crate::clamd::ClamdServer, tempfile::TempDir) {
    use crate::agent::{PRODUCTION, QUARANTINE, STAGING};
    crate::results::create_table(&world.aws.dynamodb).await;
    let (sweeps, _) = world.queue("sweeps").await;
    let (clamd, db) = clamd_with_fresh_database(world).await;
    let extra = format!(
        "{}[results]\ntable = \"{}\"\n[buckets.{STAGING}.retro-scan]\nwithin-days = 7\n",
        synced_config(&clamd, interval, 60),
        crate::results::TABLE
    );
    let config = world.config(&clamd.address(), &extra);
    crate::agent::World::set_agent_field(&config, "sweep-queues", &format!("[\"{sweeps}\"]"));
    let text = std::fs::read_to_string(&config).unwrap();
    let granted = format!("storage = [\"{QUARANTINE}\", \"{STAGING}\"]");
    assert!(text.contains(&granted), "the world's quarantine grant changed");
    let text = text.replace(
        &granted,
        &format!("storage = [\"{QUARANTINE}\", \"{STAGING}\", \"{PRODUCTION}\"]"),
    );
    std::fs::write(&config, text).unwrap();
    (config, sweeps, clamd, db)
}
