//! A test action: tags the object with its verdict and copies it to the
//! bucket in the `copy-to` setting, exercising the storage capability and
//! its grants.

use bucketscan_plugin_sdk::{Action, PluginError, PluginInfo, Settings, Stage, Verdict, final_verdict, storage};

struct Tagger;

fn result_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "clean",
        Verdict::Infected(_) => "infected",
        Verdict::Blocked(_) => "blocked",
        Verdict::Unscannable(_) => "unscannable",
        Verdict::Error(_) => "error",
    }
}

impl Action for Tagger {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "tagger",
            "0.1.0",
            "tags the object with its verdict and optionally copies it",
        )
    }

    fn act(stage: &Stage) -> Result<Vec<String>, PluginError> {
        let settings = Settings::of(stage);
        let verdict = final_verdict(stage)?;
        let object = stage.object();
        // `tag-key`/`tag-value` let a test try any tag (the agent's own
        // result tags among them, which the host must refuse).
        let key = settings.text("tag-key")?.unwrap_or("reviewed");
        let value = settings.text("tag-value")?.unwrap_or(result_name(&verdict));
        let tagged = storage::tag(&object, &[(key.to_string(), value.to_string())]);
        // `ignore-errors` plays a careless (or lying) action: it reports
        // success whatever storage said.
        if settings.bool_or("ignore-errors", false)? {
            return Ok(vec!["done, honestly".into()]);
        }
        tagged?;
        let mut done = vec![format!("tagged {value}")];
        if let Some(bucket) = settings.text("copy-to")? {
            storage::copy(&object, bucket, &object.key(), &[])?;
            done.push(format!("copied to {bucket}"));
        }
        Ok(done)
    }
}

bucketscan_plugin_sdk::export_action!(Tagger);
