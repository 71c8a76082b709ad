//! The quarantine: what happens to an infected or blocked object.
//!
//! Settings:
//! - `mode` = `move` (default) | `tag` | `delete`;
//! - `bucket`: the quarantine bucket for `move`. The quarantined key keeps
//!   where the object came from: `SOURCE-BUCKET/KEY`.
//!
//! Run it with `on = ["infected", "blocked"]`; on a clean verdict it does
//! nothing whatever its configuration.

use bucketscan_plugin_sdk::{Action, PluginError, PluginInfo, Settings, Stage, Verdict, final_verdict, storage};

struct Quarantine;

impl Action for Quarantine {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "quarantine",
            env!("CARGO_PKG_VERSION"),
            "moves, tags or deletes infected and blocked objects",
        )
    }

    fn act(stage: &Stage) -> Result<Vec<String>, PluginError> {
        let settings = Settings::of(stage);
        settings.reject_unknown(&["mode", "bucket"])?;
        let mode = settings.choice("mode", &["move", "tag", "delete"], "move")?;
        let bucket = settings.text("bucket")?;
        if mode == "move" && bucket.is_none() {
            return Err(PluginError::InvalidSettings(
                "mode `move` needs setting `bucket`".into(),
            ));
        }
        if matches!(final_verdict(stage)?, Verdict::Clean) {
            return Ok(vec!["clean: nothing quarantined".into()]);
        }
        let object = stage.object();
        let tag = [("bucketscan-quarantine".to_string(), mode.to_string())];
        let done = match (mode, bucket) {
            ("move", Some(bucket)) => {
                let key = format!("{}/{}", object.bucket(), object.key());
                storage::move_(&object, bucket, &key, &tag).map(|()| format!("quarantined to s3://{bucket}/{key}"))
            }
            ("tag", _) => storage::tag(&object, &tag).map(|()| "kept in place, tagged".to_string()),
            _ => storage::delete(&object).map(|()| "deleted".to_string()),
        };
        match done {
            Ok(line) => Ok(vec![line]),
            // The scanned bytes no longer exist: nothing is left to contain
            // (the result tags and the alert are the host's, and went out).
            Err(storage::StorageError::Gone(why)) => Ok(vec![format!("nothing to quarantine: {why}")]),
            // Replaced, refused, unavailable: the object's handling fails
            // and the agent tries again; a replaced source is then scanned
            // as what the key holds now.
            Err(err) => Err(err.into()),
        }
    }
}

bucketscan_plugin_sdk::export_action!(Quarantine);
