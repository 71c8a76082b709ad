//! The quarantine: what happens to an infected or blocked object.
//!
//! Settings:
//! - `mode` = `move` (default) | `tag` | `delete`;
//! - `bucket`: the quarantine bucket for `move`. The quarantined key keeps
//!   where the object came from: `SOURCE-BUCKET/KEY`.
//!
//! Run it with `on = ["infected", "blocked"]`; on a clean verdict it does
//! nothing whatever its configuration.

use bucketscan_plugin_sdk::{Action, Object, PluginInfo, Settings, Verdict, storage};

struct Quarantine;

impl Action for Quarantine {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "quarantine",
            env!("CARGO_PKG_VERSION"),
            "moves, tags or deletes infected and blocked objects",
        )
    }

    fn act(object: &Object, settings: &Settings, verdict: &Verdict) -> Result<Vec<String>, String> {
        settings.reject_unknown(&["mode", "bucket"])?;
        let mode = settings.choice("mode", &["move", "tag", "delete"], "move")?;
        if matches!(verdict, Verdict::Clean) {
            return Ok(vec!["clean: nothing quarantined".into()]);
        }
        let info = object.info();
        let tag = [("bucketscan-quarantine".to_string(), mode.to_string())];
        match mode {
            "move" => {
                let bucket = settings.get("bucket").ok_or("mode `move` needs setting `bucket`")?;
                let key = format!("{}/{}", info.bucket, info.key);
                storage::move_(bucket, &key, &tag)?;
                Ok(vec![format!("quarantined to s3://{bucket}/{key}")])
            }
            "tag" => {
                storage::tag(&tag)?;
                Ok(vec!["kept in place, tagged".into()])
            }
            _ => {
                storage::delete()?;
                Ok(vec!["deleted".into()])
            }
        }
    }
}

bucketscan_plugin_sdk::export_action!(Quarantine);
