//! Reading an uploaded file from a request body: bounded in size (413,
//! before reading a byte when the length is announced), bounded in
//! patience (408 when the client stops sending), hashed (SHA-256) on the
//! way, in memory up to the spool threshold and in a temp file past it.

use crate::errors::ApiError;
use bucketscan_core::object::{ObjectBody, SpooledFile};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Where bodies go and how far they may grow.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_bytes: u64,
    /// Larger bodies go to a file in `spool_dir`.
    pub spool_threshold: u64,
    pub spool_dir: PathBuf,
    /// The longest silence between two chunks.
    pub idle: Duration,
    /// After the first `idle`, the body must have averaged this rate.
    pub min_rate: u64,
    /// Shared with the agent's spooled objects.
    pub budget: std::sync::Arc<bucketscan_scan::spool::SpoolBudget>,
}

/// A received body.
pub struct Received {
    pub body: ObjectBody,
    pub sha256: String,
    pub size: u64,
}

/// Where the body goes. A spool file is a `NamedTempFile` until the body
/// is complete: an aborted upload removes it on drop.
enum Sink {
    Memory(Vec<u8>),
    File(tempfile::NamedTempFile, bucketscan_scan::spool::Reservation),
}

/// Writes off the async workers' backs (a slow disk must not stall them).
fn write(file: &mut std::fs::File, bytes: &[u8]) -> Result<(), ApiError> {
    tokio::task::block_in_place(|| file.write_all(bytes))
        .map_err(|err| ApiError::internal(format!("spool file: {err}")))
}

pub async fn receive(mut body: Incoming, announced: Option<u64>, limits: &BodyLimits) -> Result<Received, ApiError> {
    if announced.is_some_and(|length| length > limits.max_bytes) {
        return Err(ApiError::too_large(limits.max_bytes));
    }
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut sink = Sink::Memory(Vec::new());
    let started = std::time::Instant::now();
    loop {
        // The body's deadline grows with what arrived: idle + size / rate.
        let allowed = limits.idle + Duration::from_secs_f64(size as f64 / limits.min_rate.max(1) as f64);
        let left = allowed.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(ApiError::request_timeout(format!(
                "the body arrives slower than {} bytes/s ({size} bytes in {:.1} s)",
                limits.min_rate,
                started.elapsed().as_secs_f64()
            )));
        }
        let frame = match tokio::time::timeout(limits.idle.min(left), body.frame()).await {
            Err(_) if left < limits.idle => continue, // the rate check above answers
            Err(_) => {
                return Err(ApiError::request_timeout(format!(
                    "no body bytes for {} s after {size} bytes",
                    limits.idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(ApiError::bad_request(format!("reading the body: {err}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        size += data.len() as u64;
        if size > limits.max_bytes {
            return Err(ApiError::too_large(limits.max_bytes));
        }
        hasher.update(&data);
        if let Sink::Memory(bytes) = &mut sink
            && size > limits.spool_threshold
        {
            // Disk for the whole body (as announced, or the most it may
            // be), before a byte of it is written.
            let wanted = announced.unwrap_or(limits.max_bytes);
            let reserved = limits.budget.try_reserve(wanted).map_err(|why| match why {
                bucketscan_scan::spool::NoRoom::Never { .. } => ApiError::too_large(limits.max_bytes.min(wanted)),
                bucketscan_scan::spool::NoRoom::NotNow { .. } => {
                    ApiError::overloaded(format!("no spool space for a {wanted}-byte body now: {why}"))
                }
            })?;
            let mut file = spool_file(&limits.spool_dir)?;
            write(file.as_file_mut(), bytes)?;
            sink = Sink::File(file, reserved);
        }
        match &mut sink {
            Sink::Memory(bytes) => bytes.extend_from_slice(&data),
            Sink::File(file, _) => write(file.as_file_mut(), &data)?,
        }
    }
    let body = match sink {
        Sink::Memory(bytes) => ObjectBody::from_bytes(bytes),
        Sink::File(file, reserved) => {
            let failed = |err: std::io::Error| ApiError::internal(format!("spool file: {err}"));
            let path = file.into_temp_path().keep().map_err(|err| failed(err.error))?;
            // The SpooledFile removes it (and frees its space) from now on.
            let spooled = SpooledFile::temporary(path.clone()).map_err(|err| {
                let _ = std::fs::remove_file(&path);
                failed(err)
            })?;
            ObjectBody::File(std::sync::Arc::new(spooled.with_guard(reserved)))
        }
    };
    Ok(Received {
        body,
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

fn spool_file(dir: &std::path::Path) -> Result<tempfile::NamedTempFile, ApiError> {
    std::fs::create_dir_all(dir).map_err(|err| ApiError::internal(format!("spool dir {}: {err}", dir.display())))?;
    tempfile::Builder::new()
        .prefix("bucketscan-upload-")
        .tempfile_in(dir)
        .map_err(|err| ApiError::internal(format!("spool file in {}: {err}", dir.display())))
}
