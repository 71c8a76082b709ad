//! Reading an uploaded file from a request body: bounded in size (413,
//! before reading a byte when the length is announced), bounded in
//! patience (408 when the client stops sending), into the scan path's
//! spool (`bucketscan_scan::spool`: hashed on the way, in memory up to the
//! threshold and in a reserved temp file past it).

use crate::errors::ApiError;
use axum::body::Body;
use bucketscan_core::object::ObjectBody;
use bucketscan_scan::spool::{NoRoom, SpoolConfig, SpoolError, SpoolWriter};
use http_body_util::BodyExt;
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

/// Reads `body` into the spool (hashed as it arrives; in memory up to the
/// threshold, past it a file whose room is reserved before a byte of it
/// is written: the whole announced length, or room as it grows).
pub async fn receive(mut body: Body, announced: Option<u64>, limits: &BodyLimits) -> Result<Received, ApiError> {
    if announced.is_some_and(|length| length > limits.max_bytes) {
        return Err(ApiError::too_large(limits.max_bytes));
    }
    let spool = SpoolConfig {
        threshold_bytes: limits.spool_threshold,
        dir: limits.spool_dir.clone(),
        budget: limits.budget.clone(),
    };
    let mut writer = SpoolWriter::new(&spool, announced, limits.max_bytes);
    // The writer holds everything in memory until past the threshold:
    // only then does an append touch the disk.
    let memory_until = if announced.is_some_and(|length| length > limits.spool_threshold) {
        0
    } else {
        limits.spool_threshold
    };
    let started = std::time::Instant::now();
    loop {
        let size = writer.written();
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
        let appended = if size + data.len() as u64 > memory_until {
            // Off the async workers' backs: a slow disk must not stall them.
            tokio::task::block_in_place(|| writer.append(&data))
        } else {
            writer.append(&data)
        };
        appended.map_err(|err| refused(err, limits))?;
    }
    let spooled = writer.finish().map_err(|err| refused(err, limits))?;
    Ok(Received {
        body: spooled.body,
        sha256: spooled.sha256,
        size: spooled.len,
    })
}

/// The answer to a body the spool would not take.
fn refused(err: SpoolError, limits: &BodyLimits) -> ApiError {
    match err {
        SpoolError::TooLarge { .. } | SpoolError::NoRoom(NoRoom::Never { .. }) => ApiError::too_large(limits.max_bytes),
        SpoolError::NoRoom(why @ NoRoom::NotNow { .. }) => {
            ApiError::overloaded(format!("no spool space for this body now: {why}"))
        }
        SpoolError::Io(why) => ApiError::internal(format!("spool file: {why}")),
    }
}
