//! Calls into a plugin of series 0.1: who it is, inspect, act.

use super::convert::{decision_from_wit, verdict_to_wit};
use super::{action, inspector};
use crate::contract::limits::{action_lines, identity};
use crate::contract::{Called, PluginIdentity};
use crate::sandbox::{ScanObject, StageFailure, StageState};
use bucketscan_core::{Decision, Verdict};
use wasmtime::Store;

pub(in crate::contract) async fn identify_inspector(
    pre: &inspector::InspectorPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<PluginIdentity> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance
        .bucketscan_plugin_inspector()
        .call_describe(&mut *store)
        .await?;
    identity(info.name, info.version, info.description).map_err(wasmtime::Error::msg)
}

pub(in crate::contract) async fn identify_action(
    pre: &action::ActionPluginPre<StageState>,
    store: &mut Store<StageState>,
) -> wasmtime::Result<PluginIdentity> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance.bucketscan_plugin_action().call_describe(&mut *store).await?;
    identity(info.name, info.version, info.description).map_err(wasmtime::Error::msg)
}

/// Settings as 0.1 hands them over: strings, lists joined with commas.
fn settings(store: &Store<StageState>) -> Vec<(String, String)> {
    store
        .data()
        .stage
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.to_legacy_string()))
        .collect()
}

pub(in crate::contract) async fn inspect(
    pre: &inspector::InspectorPluginPre<StageState>,
    store: &mut Store<StageState>,
    object: &ScanObject,
) -> wasmtime::Result<Called<Decision>> {
    let settings = settings(store);
    let so_far = store.data().stage.verdict.as_ref().map(verdict_to_wit);
    let handle = store.data_mut().shared.table.push(object.clone())?;
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .bucketscan_plugin_inspector()
        .call_inspect(&mut *store, handle, &settings, so_far.as_ref())
        .await?;
    Ok(match result {
        Ok(decision) => decision_from_wit(decision).map_err(StageFailure::Malformed),
        Err(message) => Err(StageFailure::Plugin(bucketscan_core::text::cap(&message, 2048))),
    })
}

pub(in crate::contract) async fn act(
    pre: &action::ActionPluginPre<StageState>,
    store: &mut Store<StageState>,
    object: &ScanObject,
    verdict: &Verdict,
) -> wasmtime::Result<Called<Vec<String>>> {
    let settings = settings(store);
    let handle = store.data_mut().shared.table.push(object.clone())?;
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .bucketscan_plugin_action()
        .call_act(&mut *store, handle, &settings, &verdict_to_wit(verdict))
        .await?;
    Ok(match result {
        Ok(lines) => action_lines(lines).map_err(StageFailure::Malformed),
        Err(message) => Err(StageFailure::Plugin(bucketscan_core::text::cap(&message, 2048))),
    })
}
