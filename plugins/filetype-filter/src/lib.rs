//! The file-type filter: reads the first bytes of the object, detects its
//! real type from magic bytes (never from the name), and blocks what the
//! policy denies.
//!
//! Settings:
//! - `deny` = list of categories to block, e.g. `["executable", "script"]`;
//! - `allow` = list of categories; when set, every other category is blocked
//!   (`unknown` covers content no signature matched);
//! - `block-mismatch` = `true`: block when the key's extension or the
//!   Content-Type claims one category and the content is another (a `.pdf`
//!   that is a PE executable);
//! - `read-bytes`: how much of the object to read (default 8 KB).
//!
//! Categories: executable, script, archive, office, pdf, image, media, text,
//! unknown.

mod detect;

use bucketscan_plugin_sdk::{
    Decision, Inspector, Level, PluginError, PluginInfo, ReadError, Settings, Stage, Verdict, log,
};
use detect::Category;

struct FiletypeFilter;

const DEFAULT_READ_BYTES: u64 = 8 * 1024;

impl Inspector for FiletypeFilter {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "filetype-filter",
            env!("CARGO_PKG_VERSION"),
            "blocks file types by their magic bytes, and names that lie about them",
        )
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        let settings = &Settings::of(stage);
        settings.reject_unknown(&["deny", "allow", "block-mismatch", "read-bytes"])?;
        let deny = categories(settings, "deny")?;
        let allow = categories(settings, "allow")?;
        let block_mismatch = settings.bool_or("block-mismatch", false)?;
        let read_bytes = settings.u64("read-bytes")?.unwrap_or(DEFAULT_READ_BYTES).min(1 << 20);

        let object = stage.object();
        let head = match object.read(0, read_bytes as u32) {
            Ok(head) => head,
            // Over the pipeline's size limit: the host makes it
            // unscannable; nothing here to add.
            Err(ReadError::NotDownloaded) => return Ok(Decision::Continue),
            Err(ReadError::Other(message)) => return Err(PluginError::Other(format!("reading the object: {message}"))),
        };
        let detected = detect::detect(&head);
        log(
            Level::Debug,
            "detected file type",
            &[("category", detected.category.as_str()), ("type", &detected.name)],
        );

        let blocked = |reason: String| Ok(Decision::Verdict(Verdict::Blocked(reason)));
        if deny.contains(&detected.category) {
            return blocked(format!(
                "file type {} is denied: {}",
                detected.category.as_str(),
                detected.name
            ));
        }
        if !allow.is_empty() && !allow.contains(&detected.category) {
            return blocked(format!(
                "file type {} is not in the allowed types: {}",
                detected.category.as_str(),
                detected.name
            ));
        }
        if block_mismatch {
            let claims = [
                ("extension", detect::claimed_by_key(&object.key())),
                (
                    "Content-Type",
                    object
                        .content_type()
                        .as_deref()
                        .and_then(detect::claimed_by_content_type),
                ),
            ];
            for (source, claimed) in claims {
                if let Some(claimed) = claimed
                    && !detect::consistent(claimed, detected.category)
                {
                    return blocked(format!(
                        "{source} claims {} but the content is {}: {}",
                        claimed.as_str(),
                        detected.category.as_str(),
                        detected.name
                    ));
                }
            }
        }
        Ok(Decision::Continue)
    }
}

fn categories(settings: &Settings, key: &str) -> Result<Vec<Category>, PluginError> {
    settings
        .list(key)?
        .iter()
        .map(|name| {
            Category::parse(name).ok_or_else(|| {
                PluginError::InvalidSettings(format!(
                    "setting `{key}`: unknown file category `{name}` (known: {})",
                    Category::NAMES.join(", ")
                ))
            })
        })
        .collect()
}

bucketscan_plugin_sdk::export_inspector!(FiletypeFilter);
