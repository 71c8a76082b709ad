//! What a client receives, made ready for the inspectors: the object's
//! `Content-Encoding` undone into the spool (within the object's size
//! limit: a decompression bomb stops there), then the containers inside
//! surveyed. Both run on a blocking thread: they are CPU work on bytes
//! already read.
//!
//! An encoding that cannot be undone ends the scan with a verdict of its
//! own: `unscannable` (`unsupported-encoding`, `malformed`, `too-large`),
//! never a scan of the stored bytes in its place. When it can be undone,
//! both are what some client gets — a browser the decoded bytes, an SDK
//! `GetObject` or `aws s3 cp` the stored ones, with whatever a decoder
//! stops short of (data after a zlib stream, a zstd skippable frame) — so
//! both are inspected.

use crate::spool::{SpoolBudget, SpoolConfig, SpoolError, SpoolWriter};
use crate::store::FetchError;
use bucketscan_core::formats::{IncompleteKind, Survey};
use bucketscan_core::object::{Decoded, ObjectBody, ObjectInfo, ScanObject};
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_unpack::{Coding, DecodeError, encoding};
use std::sync::Arc;

/// The object ready for the inspectors, or the verdict that replaces them.
pub enum Prepared {
    /// `object` is what a decoding client receives; `stored`, when the
    /// host decoded anything, the bytes as stored (inspected too).
    Ready {
        object: ScanObject,
        stored: Option<ScanObject>,
    },
    /// What a client receives could not be produced: `verdict` is the
    /// result, and `object` carries the stored bytes (for the actions).
    Refused { object: ScanObject, verdict: Verdict },
}

/// Undoes `info`'s `Content-Encoding` over `body` and surveys the result.
/// `limit` bounds the decoded size; `Err` is a fetch error worth a retry
/// (no room in the spool now, a disk that failed).
pub async fn prepare(
    info: Arc<ObjectInfo>,
    body: ObjectBody,
    limit: u64,
    spool: &SpoolConfig,
) -> Result<Prepared, FetchError> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || prepare_blocking(info, body, limit, &spool))
        .await
        .map_err(|err| FetchError::Unavailable(format!("preparing the object: {err}")))?
}

fn prepare_blocking(
    info: Arc<ObjectInfo>,
    body: ObjectBody,
    limit: u64,
    spool: &SpoolConfig,
) -> Result<Prepared, FetchError> {
    let stored = ScanObject::new(info.clone(), body.clone());
    let header = info.headers.content_encoding.as_deref().unwrap_or_default();
    let refused = |verdict| {
        Ok(Prepared::Refused {
            object: stored.clone(),
            verdict,
        })
    };
    let codings = match encoding::parse(header) {
        Ok(codings) => codings,
        Err(err) => return refused(unscannable(UnscannableReason::UnsupportedEncoding, err.to_string())),
    };
    let mut object = stored.clone();
    if !codings.is_empty() {
        match decode(&codings, &info, &body, limit, spool) {
            Ok((decoded, bytes)) => {
                object.decoded = Some(Decoded {
                    content_encoding: codings.iter().map(|c| c.name().to_owned()).collect(),
                    bytes,
                });
                object.body = decoded;
            }
            Err(Undecodable::Verdict(verdict)) => return refused(verdict),
            Err(Undecodable::Retry(err)) => return Err(err),
        }
    }
    object.survey = Arc::new(survey(&object, limit, spool)?);
    let stored = match object.decoded {
        Some(_) => {
            let mut stored = stored;
            stored.survey = Arc::new(survey(&stored, limit, spool)?);
            Some(stored)
        }
        None => None,
    };
    Ok(Prepared::Ready { object, stored })
}

enum Undecodable {
    Verdict(Verdict),
    Retry(FetchError),
}

fn decode(
    codings: &[Coding],
    info: &ObjectInfo,
    body: &ObjectBody,
    limit: u64,
    spool: &SpoolConfig,
) -> Result<(ObjectBody, u64), Undecodable> {
    let mut writer = SpoolWriter::new(spool, None, limit);
    let decoded = encoding::decode(codings, body.reader(), &mut writer, limit);
    // The writer's own refusals come back as I/O errors through the
    // decoder: ask the writer what it was.
    match decoded {
        Ok(_) => {}
        Err(DecodeError::TooLarge { limit }) => {
            return Err(Undecodable::Verdict(unscannable(
                UnscannableReason::TooLarge,
                DecodeError::TooLarge { limit }.to_string(),
            )));
        }
        Err(DecodeError::Unsupported(name)) => {
            return Err(Undecodable::Verdict(unscannable(
                UnscannableReason::UnsupportedEncoding,
                DecodeError::Unsupported(name).to_string(),
            )));
        }
        Err(DecodeError::Malformed { coding, detail }) => {
            return Err(Undecodable::Verdict(unscannable(
                UnscannableReason::Malformed,
                format!("Content-Encoding says `{coding}` but the bytes do not decode: {detail}"),
            )));
        }
        Err(DecodeError::Io(detail)) => {
            // Decoded bytes that could never fit beside the stored ones
            // would wait for room for ever: their answer is now.
            let stored_on_disk = if matches!(body, ObjectBody::File(_)) {
                info.size
            } else {
                0
            };
            if detail.contains("spool budget") && stored_on_disk.saturating_add(limit) > spool.budget.total() {
                return Err(Undecodable::Verdict(unscannable(
                    UnscannableReason::TooLarge,
                    format!(
                        "decoding may take up to {limit} bytes of spool beside the {stored_on_disk} stored; the spool \
                         budget is {} bytes",
                        spool.budget.total()
                    ),
                )));
            }
            return Err(Undecodable::Retry(spool_failure(&detail)));
        }
    }
    let spooled = writer
        .finish()
        .map_err(|err| Undecodable::Retry(FetchError::Unavailable(err.to_string())))?;
    Ok((spooled.body, spooled.len))
}

/// A spool refusal seen through the decoder (its text is the writer's).
fn spool_failure(detail: &str) -> FetchError {
    if detail.contains("spool budget") {
        FetchError::OverBudget(format!("decoding the Content-Encoding: {detail}"))
    } else {
        FetchError::Unavailable(format!("decoding the Content-Encoding: {detail}"))
    }
}

/// The survey of `object`'s bytes; `Err` when it needs spool room there
/// is none of now (a retry later).
fn survey(object: &ScanObject, limit: u64, spool: &SpoolConfig) -> Result<Survey, FetchError> {
    let limits = bucketscan_unpack::Limits {
        max_bytes: limit.saturating_mul(4).clamp(256 << 20, 4 << 30),
        temp_dir: spool.dir.clone(),
        room: Some(Arc::new(BudgetRoom(spool.budget.clone()))),
        ..bucketscan_unpack::Limits::default()
    };
    let survey = bucketscan_unpack::survey(
        object.body.reader(),
        &object.info.key,
        object.info.content_type.as_deref(),
        &limits,
    );
    match &survey.incomplete {
        Some(why) if why.kind == IncompleteKind::NoRoom => Err(FetchError::OverBudget(why.detail.clone())),
        _ => Ok(survey),
    }
}

/// The spool budget as the survey's room for nested archives.
struct BudgetRoom(Arc<SpoolBudget>);

impl bucketscan_unpack::survey::Room for BudgetRoom {
    fn reserve(&self, bytes: u64) -> Result<Box<dyn std::any::Any + Send>, String> {
        self.0
            .try_reserve(bytes)
            .map(|reservation| Box::new(reservation) as Box<dyn std::any::Any + Send>)
            .map_err(|why| why.to_string())
    }
}

fn unscannable(reason: UnscannableReason, detail: String) -> Verdict {
    Verdict::Unscannable { reason, detail }
}

impl From<SpoolError> for FetchError {
    fn from(err: SpoolError) -> Self {
        match err {
            SpoolError::NoRoom(why) => FetchError::OverBudget(why.to_string()),
            other => FetchError::Unavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolBudget;
    use bucketscan_core::formats::Format;

    fn spool() -> (SpoolConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            threshold_bytes: 1 << 20,
            dir: dir.path().to_owned(),
            budget: Arc::new(SpoolBudget::new(64 << 20)),
        };
        (config, dir)
    }

    fn info(key: &str, encoding: Option<&str>, size: usize) -> Arc<ObjectInfo> {
        let mut info = ObjectInfo {
            bucket: "b".into(),
            key: key.into(),
            size: size as u64,
            ..ObjectInfo::default()
        };
        info.headers.content_encoding = encoding.map(str::to_owned);
        Arc::new(info)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        bucketscan_unpack::samples::wrap(Format::Gzip, bytes, "x").unwrap()
    }

    async fn prepared(key: &str, encoding: Option<&str>, bytes: Vec<u8>, limit: u64) -> Prepared {
        let (spool, _dir) = spool();
        let info = info(key, encoding, bytes.len());
        prepare(info, ObjectBody::from_bytes(bytes), limit, &spool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_stages_read_what_a_client_receives() {
        let payload = b"<script>what the browser runs</script>".to_vec();
        let Prepared::Ready { object, stored } = prepared("a.html", Some("gzip"), gzip(&payload), 1 << 20).await else {
            panic!("decodes")
        };
        let stored = stored.expect("the stored bytes are inspected too");
        assert_eq!(stored.body.read_at(0, 1 << 10).unwrap(), gzip(&payload));
        assert_eq!(object.body.read_at(0, 1 << 10).unwrap(), payload);
        assert_eq!(object.size(), payload.len() as u64);
        let decoded = object.decoded.unwrap();
        assert_eq!(decoded.content_encoding, vec!["gzip"]);
        assert!(
            object.info.size > 0 && object.info.size != decoded.bytes,
            "the stored size stays the object's"
        );
    }

    #[tokio::test]
    async fn an_encoding_the_host_cannot_undo_is_unscannable_never_scanned_as_stored() {
        for (header, reason) in [
            ("compress", UnscannableReason::UnsupportedEncoding),
            ("gzip", UnscannableReason::Malformed),
        ] {
            let Prepared::Refused { verdict, object } =
                prepared("x", Some(header), b"not gzip".to_vec(), 1 << 20).await
            else {
                panic!("{header}: refused")
            };
            assert!(
                matches!(&verdict, Verdict::Unscannable { reason: r, .. } if *r == reason),
                "{header}: {verdict}"
            );
            assert!(object.decoded.is_none());
        }
    }

    #[tokio::test]
    async fn a_decompression_bomb_is_too_large_and_leaves_no_file() {
        let (spool, dir) = spool();
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let info = info("bomb", Some("gzip"), bomb.len());
        let prepared = prepare(info, ObjectBody::from_bytes(bomb), 2 << 20, &spool)
            .await
            .unwrap();
        let Prepared::Refused { verdict, .. } = prepared else {
            panic!("refused")
        };
        assert!(verdict.to_string().contains("too-large"), "{verdict}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(spool.budget.free_bytes(), 64 << 20);
    }

    #[tokio::test]
    async fn the_survey_sees_through_the_encoding() {
        let zst = bucketscan_unpack::samples::wrap(Format::Zstd, b"payload", "x").unwrap();
        let Prepared::Ready { object, .. } = prepared("x.zst", Some("gzip"), gzip(&zst), 1 << 20).await else {
            panic!("decodes")
        };
        let formats: Vec<Format> = object.survey.formats.iter().map(|c| c.format).collect();
        assert_eq!(formats, vec![Format::Zstd]);
    }
}
