//! S3 event notifications as they arrive on an SQS queue: native S3 events,
//! the same wrapped by SNS, and EventBridge "Object Created" events.
//!
//! Keys in native S3 events are URL-encoded (`+` is a space, `%2B` a plus);
//! they are decoded here, once, so everything downstream sees the real key.

use serde_json::Value;

/// One object to scan, from one event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    /// The version the event is about; scanning must use exactly this one.
    pub version_id: Option<String>,
    /// The ETag the event reported, when it did.
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// E.g. `ObjectCreated:Put`.
    pub event_name: String,
    /// An on-demand scan handed over by `bucketscan serve` (see
    /// [`on_demand_message`]): scanned even when already tagged, and a
    /// version that is no longer current is contained, never promoted.
    pub on_demand: bool,
    /// A retro-scan's item ([`retro_item_message`]): an object found clean
    /// before the signatures changed, scanned again where it lives.
    pub retro: Option<bucketscan_core::report::RetroScan>,
    /// The queue delivered this message before (an agent may have died
    /// half-way through it): a sweep item is then scanned through, not
    /// skipped on the result tags that agent may have left.
    pub redelivered: bool,
    /// A retro item's mark ([`retro_fields`]): only an agent holding the
    /// fleet's seal key can queue one.
    pub mark: Option<String>,
    /// The account that owns the bucket, as EventBridge states it on the
    /// events it forwards (member accounts, `[organization]`). Only AWS
    /// sets it: no one may put an event with source `aws.s3`.
    pub account: Option<String>,
}

impl ObjectEvent {
    /// Whether this is an item of a sweep (`scan --enqueue`): an object
    /// already in the bucket, skipped when it carries a result sealed from
    /// the current signatures (unless the sweep asked for a rescan).
    pub fn is_sweep_item(&self) -> bool {
        self.event_name.starts_with(SWEEP_ITEM)
    }

    /// The sweep a sweep item belongs to.
    pub fn sweep_id(&self) -> Option<&str> {
        self.event_name
            .strip_prefix(SWEEP_ITEM)
            .and_then(|rest| rest.strip_prefix(':'))
    }
}

/// The `type` of a message that hands an on-demand scan to the agents.
const ON_DEMAND: &str = "bucketscan:on-demand-scan";

/// A queue message that asks the agents to finish an on-demand scan of
/// `bucket`/`key` (at `version_id`) that the API could not finish itself.
pub fn on_demand_message(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    serde_json::json!({
        "type": ON_DEMAND,
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
    })
    .to_string()
}

/// The `type` of a sweep item (`bucketscan scan --enqueue`).
const SWEEP_ITEM: &str = "bucketscan:sweep-item";

/// A queue message that asks the agents to scan `bucket`/`key` as a sweep
/// listed it (its ETag and size), for sweep `sweep_id`; with `rescan`, even
/// when it carries a current sealed result.
pub fn sweep_item_message(
    bucket: &str,
    key: &str,
    etag: Option<String>,
    size: Option<u64>,
    sweep_id: &str,
    rescan: bool,
) -> String {
    ascii_json(&serde_json::json!({
        "type": SWEEP_ITEM,
        "bucket": bucket,
        "key": key,
        "etag": etag,
        "size": size,
        "sweep": sweep_id,
        "rescan": rescan,
    }))
}

/// A sweep item of retro-scan `sweep_id`: `copy` (where bytes found clean
/// earlier live now) to be scanned again as `retro` says, marked by
/// `sealer` (see [`retro_fields`]).
pub fn retro_item_message(
    copy: &bucketscan_core::report::CopyRef,
    retro: &bucketscan_core::report::RetroScan,
    sweep_id: &str,
    sealer: &bucketscan_core::seal::Sealer,
) -> String {
    let fields = retro_fields(
        &copy.bucket,
        &copy.key,
        copy.version_id.as_deref(),
        copy.etag.as_deref(),
        retro,
        sweep_id,
    );
    ascii_json(&serde_json::json!({
        "type": SWEEP_ITEM,
        "bucket": copy.bucket,
        "key": copy.key,
        "version_id": copy.version_id,
        "etag": copy.etag,
        "sweep": sweep_id,
        "rescan": false,
        "retro": retro,
        "mark": sealer.mark(RETRO_MARK, &fields),
    }))
}

/// What a retro item's mark is for.
pub const RETRO_MARK: &str = "bucketscan-retro-item/1";

/// Everything a retro item's mark binds: a retro item routes an object
/// through another bucket's pipeline, so none of it may be chosen by
/// whoever else can write to the sweep queue.
pub fn retro_fields<'a>(
    bucket: &'a str,
    key: &'a str,
    version_id: Option<&'a str>,
    etag: Option<&'a str>,
    retro: &'a bucketscan_core::report::RetroScan,
    sweep_id: &'a str,
) -> Vec<&'a str> {
    vec![
        bucket,
        key,
        version_id.unwrap_or(""),
        etag.unwrap_or(""),
        sweep_id,
        &retro.database,
        retro.previous_engine.as_deref().unwrap_or(""),
        &retro.clean_since,
        &retro.origin_bucket,
        &retro.origin_key,
    ]
}

impl ObjectEvent {
    /// Whether this retro item carries a mark `sealer` made.
    pub fn retro_is_sealed(&self, sealer: &bucketscan_core::seal::Sealer) -> bool {
        let (Some(retro), Some(mark), Some(sweep)) = (&self.retro, &self.mark, self.sweep_id()) else {
            return false;
        };
        let fields = retro_fields(
            &self.bucket,
            &self.key,
            self.version_id.as_deref(),
            self.etag.as_deref(),
            retro,
            sweep,
        );
        sealer.verify_mark(RETRO_MARK, &fields, mark)
    }
}

fn sweep_id(id: &str) -> Result<&str, NotAnEvent> {
    if valid_sweep_id(id) {
        Ok(id)
    } else {
        Err(NotAnEvent(format!(
            "{SWEEP_ITEM}: sweep id `{}` is not 1 to {MAX_SWEEP_ID} letters, digits, `.`, `_`, `:` or `-`",
            bucketscan_core::text::cap(id, 40)
        )))
    }
}

/// The longest sweep id, and what it may be made of: it names DynamoDB
/// items and log lines.
const MAX_SWEEP_ID: usize = 128;

/// Whether `id` is a sweep id bucketscan accepts.
pub fn valid_sweep_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SWEEP_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// `value` as JSON with everything past ASCII escaped (`\uXXXX`): SQS
/// refuses some characters S3 keys may hold (U+FFFE, U+FFFF), and one such
/// key must not stop a sweep for good.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// What a queue message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Objects to scan (possibly none, when every record was of an event
    /// type that needs no scan, such as `ObjectRemoved:*`).
    Objects(Vec<ObjectEvent>),
    /// `s3:TestEvent`, sent when a notification is configured: acknowledged
    /// and ignored.
    TestEvent,
}

/// A message that is not an S3 event bucketscan understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an S3 event: {0}")]
pub struct NotAnEvent(pub String);

/// Parses one SQS message body.
pub fn parse_message(body: &str) -> Result<Message, NotAnEvent> {
    let value: Value = serde_json::from_str(body).map_err(|err| NotAnEvent(format!("invalid JSON: {err}")))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> Result<Message, NotAnEvent> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Message::TestEvent);
    }
    // SNS envelope: the S3 event is a JSON string in `Message`.
    if value.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let inner = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| NotAnEvent("SNS notification without a Message".into()))?;
        let inner: Value =
            serde_json::from_str(inner).map_err(|err| NotAnEvent(format!("SNS Message is not JSON: {err}")))?;
        return parse_value(&inner, depth + 1);
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        let mut objects = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Some(event) =
                parse_s3_record(record).map_err(|why| NotAnEvent(format!("record {index}: {}", why.0)))?
            {
                objects.push(event);
            }
        }
        return Ok(Message::Objects(objects));
    }
    if value.get("type").and_then(Value::as_str) == Some(ON_DEMAND) {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| NotAnEvent(format!("{ON_DEMAND} without {name}")))
        };
        return Ok(Message::Objects(vec![ObjectEvent {
            bucket: field("bucket")?.to_owned(),
            key: field("key")?.to_owned(),
            version_id: string(value, "version_id"),
            etag: None,
            size: None,
            event_name: ON_DEMAND.to_owned(),
            on_demand: true,
            retro: None,
            redelivered: false,
            mark: None,
            account: None,
        }]));
    }
    if value.get("type").and_then(Value::as_str) == Some(SWEEP_ITEM) {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| NotAnEvent(format!("{SWEEP_ITEM} without {name}")))
        };
        return Ok(Message::Objects(vec![ObjectEvent {
            bucket: field("bucket")?.to_owned(),
            key: field("key")?.to_owned(),
            etag: string(value, "etag"),
            size: value.get("size").and_then(Value::as_u64),
            event_name: format!("{SWEEP_ITEM}:{}", sweep_id(field("sweep")?)?),
            // A rescan is scanned like an on-demand scan: even when tagged.
            on_demand: value.get("rescan").and_then(Value::as_bool).unwrap_or(false),
            // Only a retro item pins a version (its copy's): a plain sweep
            // item naming an old version would promote it over the current.
            version_id: string(value, "version_id").filter(|_| value.get("retro").is_some_and(|r| !r.is_null())),
            mark: string(value, "mark"),
            account: None,
            retro: match value.get("retro") {
                None | Some(Value::Null) => None,
                Some(retro) => Some(
                    serde_json::from_value(retro.clone())
                        .map_err(|err| NotAnEvent(format!("{SWEEP_ITEM}: retro: {err}")))?,
                ),
            },
            redelivered: false,
        }]));
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return parse_eventbridge(value).map(|event| Message::Objects(event.into_iter().collect()));
    }
    Err(NotAnEvent("no Records, no EventBridge detail, not a test event".into()))
}

fn parse_s3_record(record: &Value) -> Result<Option<ObjectEvent>, NotAnEvent> {
    let missing = |field: &str| NotAnEvent(format!("an S3 record without {field}"));
    let event_name = record
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("eventName"))?;
    if !event_name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let s3 = record.get("s3").ok_or_else(|| missing("s3"))?;
    let bucket = s3
        .pointer("/bucket/name")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("s3.bucket.name"))?;
    let object = s3.get("object").ok_or_else(|| missing("s3.object"))?;
    let raw_key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("s3.object.key"))?;
    Ok(Some(ObjectEvent {
        bucket: bucket.to_owned(),
        key: decode_key(raw_key).map_err(|err| NotAnEvent(err.to_string()))?,
        version_id: string(object, "versionId"),
        etag: string(object, "eTag"),
        size: object.get("size").and_then(Value::as_u64),
        event_name: event_name.to_owned(),
        on_demand: false,
        retro: None,
        redelivered: false,
        mark: None,
        account: None,
    }))
}

fn parse_eventbridge(value: &Value) -> Result<Option<ObjectEvent>, NotAnEvent> {
    let detail_type = value.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if detail_type != "Object Created" {
        return Ok(None);
    }
    let detail = value
        .get("detail")
        .ok_or_else(|| NotAnEvent("EventBridge event without detail".into()))?;
    let bucket = detail.pointer("/bucket/name").and_then(Value::as_str);
    let object = detail.get("object");
    let (Some(bucket), Some(object)) = (bucket, object) else {
        return Err(NotAnEvent("EventBridge detail without bucket.name or object".into()));
    };
    // EventBridge keys are not URL-encoded.
    let key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| NotAnEvent("EventBridge detail without object.key".into()))?;
    Ok(Some(ObjectEvent {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: string(object, "version-id"),
        etag: string(object, "etag"),
        size: object.get("size").and_then(Value::as_u64),
        event_name: format!(
            "ObjectCreated:{}",
            value
                .pointer("/detail/reason")
                .and_then(Value::as_str)
                .unwrap_or("EventBridge")
        ),
        on_demand: false,
        retro: None,
        redelivered: false,
        mark: None,
        account: match value.get("account").and_then(Value::as_str) {
            None => None,
            Some(account) if bucketscan_core::config::is_account_id(account) => Some(account.to_owned()),
            Some(other) => {
                return Err(NotAnEvent(format!(
                    "EventBridge event with account `{other}`: not an account ID"
                )));
            }
        },
    }))
}

fn string(object: &Value, field: &str) -> Option<String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// An event key that does not decode to UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{raw}` is not UTF-8 after decoding")]
pub struct BadKey {
    pub raw: String,
}

/// Decodes a key from an S3 event: `+` is a space, then percent-decoding.
pub fn decode_key(raw: &str) -> Result<String, BadKey> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| BadKey { raw: raw.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":"staging"},"object":{"key":"reports/Q3+r%C3%A9sum%C3%A9%2B1.pdf","size":68,"eTag":"44d88612fea8a8f36de82e1278abb02f","versionId":"v1"}}},
        {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"staging"},"object":{"key":"gone"}}}]}"#;

    #[test]
    fn a_sweep_item_reads_back_as_the_listed_object_and_scans_tagged_ones_only_on_rescan() {
        let body = sweep_item_message("staging", "old/a b.pdf", Some("e1".into()), Some(68), "sweep-1", false);
        let Message::Objects(objects) = parse_message(&body).unwrap() else {
            panic!()
        };
        let item = &objects[0];
        assert_eq!((item.bucket.as_str(), item.key.as_str()), ("staging", "old/a b.pdf"));
        assert_eq!(
            (item.etag.as_deref(), item.size, item.version_id.as_deref()),
            (Some("e1"), Some(68), None)
        );
        assert_eq!(item.event_name, "bucketscan:sweep-item:sweep-1");
        assert!(
            item.is_sweep_item() && !item.on_demand,
            "a sealed current result is skipped"
        );
        let rescan = sweep_item_message("staging", "k", None, None, "s", true);
        let Message::Objects(objects) = parse_message(&rescan).unwrap() else {
            panic!()
        };
        assert!(objects[0].on_demand);
        let odd = sweep_item_message(
            "staging",
            "r\u{e9}sum\u{e9}\u{fffe}\u{1f600}.pdf",
            None,
            None,
            "s",
            false,
        );
        assert!(odd.is_ascii(), "{odd}");
        let Message::Objects(objects) = parse_message(&odd).unwrap() else {
            panic!()
        };
        assert_eq!(objects[0].key, "r\u{e9}sum\u{e9}\u{fffe}\u{1f600}.pdf");
        let broken = r#"{"type":"bucketscan:sweep-item","bucket":"staging","key":"k"}"#;
        assert!(parse_message(broken).unwrap_err().0.contains("without sweep"));
    }

    #[test]
    fn an_on_demand_scan_handed_over_reads_back_as_one() {
        let body = on_demand_message("staging", "a b+c.txt", Some("v2"));
        let Message::Objects(objects) = parse_message(&body).unwrap() else {
            panic!()
        };
        assert_eq!(objects.len(), 1);
        assert!(objects[0].on_demand);
        assert_eq!(objects[0].key, "a b+c.txt", "not URL-encoded: taken as it is");
        assert_eq!(objects[0].version_id.as_deref(), Some("v2"));
    }

    #[test]
    fn native_events_decode_keys_and_keep_the_version() {
        let Message::Objects(objects) = parse_message(S3_EVENT).unwrap() else {
            panic!()
        };
        assert_eq!(objects.len(), 1, "removals need no scan");
        let event = &objects[0];
        assert_eq!(event.bucket, "staging");
        assert_eq!(event.key, "reports/Q3 résumé+1.pdf");
        assert_eq!(event.version_id.as_deref(), Some("v1"));
        assert_eq!(event.etag.as_deref(), Some("44d88612fea8a8f36de82e1278abb02f"));
        assert_eq!(event.size, Some(68));
    }

    #[test]
    fn sns_wrapped_events_are_unwrapped() {
        let wrapped =
            serde_json::json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": S3_EVENT})
                .to_string();
        let Message::Objects(objects) = parse_message(&wrapped).unwrap() else {
            panic!()
        };
        assert_eq!(objects[0].key, "reports/Q3 résumé+1.pdf");
    }

    #[test]
    fn eventbridge_events_are_understood() {
        let body = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
            "detail":{"bucket":{"name":"staging"},"object":{"key":"a b+c.txt","size":5,"etag":"e","version-id":"v9"},"reason":"PutObject"}}"#;
        let Message::Objects(objects) = parse_message(body).unwrap() else {
            panic!()
        };
        assert_eq!(objects[0].key, "a b+c.txt", "EventBridge keys are not encoded");
        assert_eq!(objects[0].version_id.as_deref(), Some("v9"));
        assert_eq!(objects[0].event_name, "ObjectCreated:PutObject");
        assert_eq!(objects[0].account, None);
        let forwarded = body.replacen("{", r#"{"account":"111122223333","#, 1);
        let Message::Objects(objects) = parse_message(&forwarded).unwrap() else {
            panic!()
        };
        assert_eq!(objects[0].account.as_deref(), Some("111122223333"));
        let forged = body.replacen("{", r#"{"account":"../../x","#, 1);
        assert!(parse_message(&forged).unwrap_err().0.contains("not an account ID"));
    }

    #[test]
    fn test_events_and_garbage() {
        assert_eq!(
            parse_message(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"staging"}"#).unwrap(),
            Message::TestEvent
        );
        assert!(parse_message("hello").unwrap_err().0.contains("invalid JSON"));
        assert!(parse_message(r#"{"foo":1}"#).is_err());
        assert!(
            parse_message(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#)
                .unwrap_err()
                .0
                .contains("record 0")
        );
    }

    #[test]
    fn a_retro_item_reads_back_with_its_copy_version_and_what_it_rescans_for() {
        let copy = bucketscan_core::report::CopyRef {
            bucket: "production".into(),
            key: "in/é.pdf".into(),
            version_id: Some("p7".into()),
            etag: Some("e1".into()),
        };
        let retro = bucketscan_core::report::RetroScan {
            database: "ClamAV 1.4.3/28001".into(),
            previous_engine: Some("ClamAV 1.4.3/28000".into()),
            clean_since: "2026-12-01T10:00:00.000Z".into(),
            origin_bucket: "staging".into(),
            origin_key: "in/é.pdf".into(),
        };
        let sealer = bucketscan_core::seal::Sealer::new(b"the fleet's seal key".to_vec());
        let body = retro_item_message(&copy, &retro, "retro-1", &sealer);
        assert!(body.is_ascii(), "{body}");
        let Message::Objects(objects) = parse_message(&body).unwrap() else {
            panic!("{body}")
        };
        let item = &objects[0];
        assert!(item.is_sweep_item() && !item.on_demand);
        assert_eq!(
            (item.bucket.as_str(), item.key.as_str(), item.version_id.as_deref()),
            ("production", "in/é.pdf", Some("p7"))
        );
        assert_eq!(item.retro.as_ref(), Some(&retro));
        assert!(item.retro_is_sealed(&sealer));
        assert!(!item.retro_is_sealed(&bucketscan_core::seal::Sealer::ephemeral()));
        // Pointed at another object, or routed through another key's
        // pipeline, the mark no longer holds.
        for (from, to) in [
            ("\"key\":\"in", "\"key\":\"xx"),
            ("\"origin_key\":\"in", "\"origin_key\":\"xx"),
        ] {
            let Message::Objects(moved) = parse_message(&body.replacen(from, to, 1)).unwrap() else {
                panic!()
            };
            assert!(!moved[0].retro_is_sealed(&sealer), "{from}");
        }
        let forged = body.replace("\"origin_bucket\"", "\"origin\"");
        assert!(parse_message(&forged).unwrap_err().0.contains("retro"));
    }

    #[test]
    fn a_plain_sweep_item_pins_no_version_and_a_sweep_id_is_a_short_plain_name() {
        let body = sweep_item_message("staging", "k", Some("e".into()), Some(1), "s-1", false).replacen(
            "\"type\"",
            "\"version_id\":\"old\",\"type\"",
            1,
        );
        let Message::Objects(items) = parse_message(&body).unwrap() else {
            panic!()
        };
        assert_eq!(
            items[0].version_id, None,
            "an old version would be promoted over the current one"
        );
        for bad in ["", "a b", "sweep#x", &"x".repeat(129)] {
            let body = sweep_item_message("staging", "k", None, None, bad, false);
            assert!(parse_message(&body).unwrap_err().0.contains("sweep id"), "{bad}");
        }
    }
}
