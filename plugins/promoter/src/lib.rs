//! The promoter: the two-bucket system. A clean object is copied from the
//! staging bucket to the production bucket; nothing else ever is.
//!
//! Settings:
//! - `bucket` (required): the production bucket (grant it with
//!   `grants = { storage = ["production"] }`).
//! - `strip-prefix` / `add-prefix`: map keys, e.g. `incoming/` → `public/`.
//! - `delete-source` = `true`: move instead of copy (the host deletes the
//!   staging version only after the copy is verified; grant the staging
//!   bucket too).
//!
//! The host performs the copy on the exact version and ETag that was
//! scanned, so a newer upload under the same key is never promoted.

use bucketscan_plugin_sdk::{Action, PluginError, PluginInfo, Settings, Stage, Verdict, final_verdict, storage};

struct Promoter;

/// The production key for a staging key.
pub fn map_key(key: &str, strip: Option<&str>, add: Option<&str>) -> String {
    let rest = match strip {
        Some(prefix) => key.strip_prefix(prefix).unwrap_or(key),
        None => key,
    };
    format!("{}{rest}", add.unwrap_or(""))
}

impl Action for Promoter {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "promoter",
            env!("CARGO_PKG_VERSION"),
            "copies clean objects to the production bucket",
        )
    }

    fn act(stage: &Stage) -> Result<Vec<String>, PluginError> {
        let settings = Settings::of(stage);
        settings.reject_unknown(&["bucket", "strip-prefix", "add-prefix", "delete-source"])?;
        let bucket = settings.text("bucket")?.ok_or_else(|| {
            PluginError::InvalidSettings("setting `bucket` (the production bucket) is required".into())
        })?;
        let delete_source = settings.bool_or("delete-source", false)?;
        // Defence in depth: the pipeline should run this on `clean` only,
        // but a misconfigured `on` must still never promote anything else.
        if !matches!(final_verdict(stage)?, Verdict::Clean) {
            return Ok(vec!["not clean: nothing promoted".into()]);
        }
        let object = stage.object();
        let key = map_key(
            &object.key(),
            settings.text("strip-prefix")?,
            settings.text("add-prefix")?,
        );
        // Any storage error fails the stage: the agent retries the object,
        // and a source that was replaced meanwhile is then scanned anew.
        if delete_source {
            storage::move_(&object, bucket, &key, &[])?;
            Ok(vec![format!(
                "promoted to s3://{bucket}/{key} and removed from staging"
            )])
        } else {
            storage::copy(&object, bucket, &key, &[])?;
            Ok(vec![format!("promoted to s3://{bucket}/{key}")])
        }
    }
}

bucketscan_plugin_sdk::export_action!(Promoter);

#[cfg(test)]
mod tests {
    use super::map_key;

    #[test]
    fn keys_map_by_prefix() {
        assert_eq!(
            map_key("incoming/a.pdf", Some("incoming/"), Some("public/")),
            "public/a.pdf"
        );
        assert_eq!(map_key("other/a.pdf", Some("incoming/"), None), "other/a.pdf");
        assert_eq!(map_key("a.pdf", None, None), "a.pdf");
    }
}
