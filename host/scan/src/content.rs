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
use bucketscan_core::formats::{Format, IncompleteKind, Survey};
use bucketscan_core::object::{Decoded, ObjectBody, ObjectInfo, ScanObject};
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_unpack::survey::{NoRoom, Room};
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
    // The spool room this scan already holds, beside which the survey's
    // own must fit.
    let held = spooled(&stored) + object.decoded.as_ref().map_or(0, |_| spooled(&object));
    object.survey = Arc::new(survey(&object, held, limit, spool)?);
    let stored = match (object.decoded.is_some(), codings.last()) {
        (true, Some(&outermost)) => {
            let mut stored = stored;
            let mut found = survey(&stored, held, limit, spool)?;
            excuse_decoded_layer(&mut found, &info.key, outermost);
            stored.survey = Arc::new(found);
            Some(stored)
        }
        _ => None,
    };
    Ok(Prepared::Ready { object, stored })
}

/// The spool bytes `object`'s body takes (none for one in memory).
fn spooled(object: &ScanObject) -> u64 {
    match object.body {
        ObjectBody::File(_) => object.size(),
        _ => 0,
    }
}

/// The stored bytes' survey without the layer the host itself decoded:
/// their outermost coding (clamd may not open zstd; the host did) and
/// what lies inside it, which the decoded bytes' own survey covers. What
/// the decoder stopped short of stays in view.
fn excuse_decoded_layer(survey: &mut Survey, key: &str, outermost: Coding) {
    let Some(layer) = coding_format(outermost) else {
        return;
    };
    let inside = format!("{key}!/");
    survey
        .formats
        .retain(|found| !((found.path == key && found.format == layer) || found.path.starts_with(&inside)));
}

/// The container format a survey records for bytes under `coding`.
fn coding_format(coding: Coding) -> Option<Format> {
    match coding {
        Coding::Gzip => Some(Format::Gzip),
        Coding::Zstd => Some(Format::Zstd),
        Coding::Brotli => Some(Format::Brotli),
        // zlib and raw deflate are no format the survey records.
        Coding::Deflate => None,
    }
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
fn survey(object: &ScanObject, held: u64, limit: u64, spool: &SpoolConfig) -> Result<Survey, FetchError> {
    let limits = bucketscan_unpack::Limits {
        max_bytes: limit.saturating_mul(4).clamp(256 << 20, 4 << 30),
        temp_dir: spool.dir.clone(),
        room: Some(Arc::new(BudgetRoom::new(spool.budget.clone(), held))),
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

/// The spool budget as the survey's room for nested archives. What this
/// scan already holds (its spool files, the survey's earlier
/// reservations) counts: a survey that could not fit beside them even in
/// an empty spool is refused for good, not retried for ever.
struct BudgetRoom {
    budget: Arc<SpoolBudget>,
    held: std::sync::atomic::AtomicU64,
}

impl BudgetRoom {
    fn new(budget: Arc<SpoolBudget>, already_held: u64) -> Self {
        Self {
            budget,
            held: already_held.into(),
        }
    }
}

impl Room for BudgetRoom {
    fn reserve(&self, bytes: u64) -> Result<Box<dyn std::any::Any + Send>, NoRoom> {
        use std::sync::atomic::Ordering::Relaxed;
        let held = self.held.load(Relaxed);
        if held.saturating_add(bytes) > self.budget.total() {
            return Err(NoRoom::Never(format!(
                "{bytes} more bytes beside the {held} this scan holds exceed the {}-byte spool budget",
                self.budget.total()
            )));
        }
        let reservation = self
            .budget
            .try_reserve(bytes)
            .map_err(|why| NoRoom::NotNow(why.to_string()))?;
        self.held.fetch_add(bytes, Relaxed);
        Ok(Box::new(reservation))
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
    async fn the_stored_survey_excuses_only_the_layer_the_host_decoded() {
        let zstd = |bytes: &[u8]| bucketscan_unpack::samples::wrap(Format::Zstd, bytes, "x").unwrap();
        // Content-Encoding: zstd over a zstd file: the host undid the
        // outer layer; the inner one is the decoded bytes' own format.
        let Prepared::Ready { object, stored } =
            prepared("page.zst", Some("zstd"), zstd(&zstd(b"payload")), 1 << 20).await
        else {
            panic!("decodes")
        };
        let stored = stored.expect("stored inspected");
        assert!(stored.survey.formats.is_empty(), "{:?}", stored.survey);
        let inner: Vec<Format> = object.survey.formats.iter().map(|c| c.format).collect();
        assert_eq!(inner, vec![Format::Zstd], "the inner stream still counts");
        // A zip in a skippable frame after the stream is no layer the host
        // decoded (the decoder skips it; `GetObject` returns it): it stays
        // in the stored survey.
        let zip = bucketscan_unpack::samples::zip(&[("x.zst", &zstd(b"hidden"))], 0);
        let mut stored_bytes = zstd(b"payload");
        stored_bytes.extend(0x184d_2a50u32.to_le_bytes());
        stored_bytes.extend((zip.len() as u32).to_le_bytes());
        stored_bytes.extend(&zip);
        let Prepared::Ready { stored, .. } = prepared("a.html", Some("zstd"), stored_bytes, 1 << 20).await else {
            panic!("decodes")
        };
        let formats: Vec<Format> = stored.unwrap().survey.formats.iter().map(|c| c.format).collect();
        assert!(formats.contains(&Format::Zstd), "{formats:?}");
    }

    #[test]
    fn survey_room_that_can_never_fit_is_refused_for_good() {
        let budget = Arc::new(SpoolBudget::new(64 << 20));
        let room = BudgetRoom::new(budget.clone(), 60 << 20);
        assert!(matches!(room.reserve(16 << 20), Err(NoRoom::Never(_))));
        let room = BudgetRoom::new(budget.clone(), 0);
        let _others = budget.try_reserve(60 << 20).unwrap();
        assert!(
            matches!(room.reserve(16 << 20), Err(NoRoom::NotNow(_))),
            "others hold it now"
        );
        drop(_others);
        let first = room.reserve(32 << 20).unwrap();
        assert!(
            matches!(room.reserve(48 << 20), Err(NoRoom::Never(_))),
            "its own reservations count"
        );
        drop(first);
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
