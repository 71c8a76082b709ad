//! A test inspector for where a member lies (contract 0.2.2): it blocks a
//! member whose `member-path` holds a name listed in its `block-names`
//! setting, and says in the reason what the host told it. A whole object
//! (no `container-key`) is never blocked by name.

use bucketscan_plugin_sdk::{Decision, Inspector, PluginError, PluginInfo, Settings, Stage, Verdict};

struct MemberProbe;

impl Inspector for MemberProbe {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "member-probe",
            "0.1.0",
            "blocks members by their names inside the container",
        )
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        let settings = Settings::of(stage);
        settings.reject_unknown(&["block-names"])?;
        let block = settings.list("block-names")?;
        let object = stage.object();
        let Some(container) = object.container_key() else {
            return Ok(Decision::Continue);
        };
        let path = object.member_path();
        if path.iter().any(|name| block.contains(name)) {
            return Ok(Decision::Verdict(Verdict::Blocked(format!(
                "member-path {path:?} in {container:?}"
            ))));
        }
        Ok(Decision::Continue)
    }
}

bucketscan_plugin_sdk::export_inspector!(MemberProbe);
