//! S3 errors as the scan path reads them: a failed precondition is
//! `replaced`, a missing key or version `gone` (never a missing bucket or
//! upload, and never on a copy's destination), throttling and 5xx
//! `unavailable`.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use bucketscan_core::UnscannableReason;
use bucketscan_core::storage::StorageError;
use bucketscan_scan::store::{FetchError, Target};

pub(crate) fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(|response| response.status_u16())
}

pub(crate) fn is_not_found<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    // A missing bucket is a config or permissions problem, and a missing
    // multipart upload is the destination's: never "the object is gone". A
    // quarantine into a bucket that does not exist must fail, not pass as
    // nothing left to contain.
    if matches!(code, Some("NoSuchBucket" | "NoSuchUpload")) {
        return false;
    }
    matches!(code, Some("NoSuchKey" | "NotFound" | "NoSuchVersion")) || status(err) == Some(404)
}

pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    code == Some("PreconditionFailed") || status(err) == Some(412)
}

pub(super) fn is_unavailable<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || matches!(
        code,
        Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout")
    ) || status(err).is_some_and(|s| s >= 500 || s == 429)
}

pub(super) fn storage_error<E, R>(what: &str, operation: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    let message = format!("{what}: {operation}: {}", crate::aws::error_text(&err));
    if is_precondition_failed(&err) {
        StorageError::Replaced(format!(
            "{what} no longer holds the scanned bytes ({operation} precondition failed)"
        ))
    } else if is_not_found(&err) {
        StorageError::Gone(format!("{what} no longer exists"))
    } else if is_unavailable(&err) {
        StorageError::Unavailable(message)
    } else {
        StorageError::Failed(message)
    }
}

/// An error of a request on a copy's destination: there, "not found" is
/// a failure (the copy vanished, its upload was aborted), never the
/// scanned object being gone.
pub(super) fn destination_error<E, R>(what: &str, operation: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    match storage_error(what, operation, err) {
        StorageError::Gone(why) => StorageError::Failed(format!("{why} (the destination of a copy)")),
        other => other,
    }
}

pub(super) fn fetch_error<E, R>(target: &Target, operation: &str, err: SdkError<E, R>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    FetchError::from_storage(storage_error(&target.url(), operation, err))
}

/// Why S3 refuses the agent an object's bytes for a reason that is the
/// object's own, when it does: a customer-provided key (SSE-C), an archive
/// storage class, or a key or policy the agent may not use. Any of these
/// comes back the same on every retry, so the object gets its answer
/// (`unscannable`) instead of a trip to the dead-letter queue.
pub(super) fn unreadable<E, R>(err: &SdkError<E, R>) -> Option<UnscannableReason>
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    let (code, message) = match err {
        SdkError::ServiceError(service) => (service.err().code(), service.err().message()),
        _ => (None, None),
    };
    let message = message.unwrap_or_default().to_ascii_lowercase();
    match (status(err), code) {
        (_, Some("InvalidObjectState")) => Some(UnscannableReason::Archived),
        (Some(400), Some("InvalidRequest")) if message.contains("encryption") => Some(UnscannableReason::CustomerKey),
        // A HEAD has no body to name the cause; an SSE-C object answers a
        // HEAD without its key with a bare 400.
        (Some(400), None) => Some(UnscannableReason::CustomerKey),
        (Some(403), Some(code)) if code == "AccessDenied" || code.starts_with("KMS.") => {
            Some(UnscannableReason::AccessDenied)
        }
        _ => None,
    }
}

/// The HTTP status of a raw SDK response.
pub trait HasStatus {
    fn status_u16(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}
