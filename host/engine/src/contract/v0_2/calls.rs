//! Calls into a plugin of series 0.2: who it is, inspect, act.

use super::convert::{decision_from_wit, plugin_error};
use super::{action, inspector};
use crate::capabilities::stage::StageHandle;
use crate::contract::limits::{action_lines, identity};
use crate::contract::{Called, PluginIdentity};
use crate::sandbox::{StageFailure, StageState};
use bucketscan_core::Decision;
use wasmtime::Store;

pub(in crate::contract) async fn identify_inspector(
    pre: &inspector::InspectorPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<PluginIdentity> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance.bucketscan_plugin_inspector().call_info(&mut *store).await?;
    identity(info.name, info.version, info.description).map_err(wasmtime::Error::msg)
}

pub(in crate::contract) async fn identify_action(
    pre: &action::ActionPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<PluginIdentity> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance.bucketscan_plugin_action().call_info(&mut *store).await?;
    identity(info.name, info.version, info.description).map_err(wasmtime::Error::msg)
}

pub(in crate::contract) async fn inspect(
    pre: &inspector::InspectorPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<Called<Decision>> {
    let stage = store.data_mut().shared.push(StageHandle)?;
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .bucketscan_plugin_inspector()
        .call_inspect(&mut *store, stage)
        .await?;
    Ok(match result {
        Ok(decision) => decision_from_wit(decision).map_err(StageFailure::Malformed),
        Err(err) => Err(StageFailure::Plugin(plugin_error(err))),
    })
}

pub(in crate::contract) async fn act(
    pre: &action::ActionPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<Called<Vec<String>>> {
    let stage = store.data_mut().shared.push(StageHandle)?;
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance.bucketscan_plugin_action().call_act(&mut *store, stage).await?;
    Ok(match result {
        Ok(lines) => action_lines(lines).map_err(StageFailure::Malformed),
        Err(err) => Err(StageFailure::Plugin(plugin_error(err))),
    })
}
