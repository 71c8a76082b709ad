//! Pipelines, read-only: the config stays code, reviewed in version
//! control. Each bucket and prefix with its stages, settings, grants and
//! the plugin (version, contract series, file digest) this task runs.

use super::{Page, layout};
use crate::Console;
use crate::config::Role;
use crate::identity::User;
use axum::Extension;
use axum::extract::State;
use maud::html;
use std::sync::Arc;

pub async fn page(State(console): State<Arc<Console>>, Extension(user): Extension<User>) -> Page {
    let live = console.agent.pipelines.snapshot();
    let body = html! {
        @if !user.may(Role::Admin) { p { "Settings are listed by name; their values (a webhook URL can be a secret) are shown to admins." } }
        p { "The config this task runs: " code { (super::overview::config_digest(&console.agent)) }
            " (the first digits of its SHA-256; tasks showing the same digest run the same config)." }
        @for (scope, stages) in live.config.pipelines() {
            h2 { (scope.to_string()) }
            table.pipeline {
                tr { th { "#" } th { "Plugin" } th { "Version" } th { "Kind" } th { "Contract" } th { "Settings" } th { "Grants" } th { "Runs on" } }
                @for (index, stage) in stages.iter().enumerate() {
                    @let plugin = live.plugins.get(stage.plugin.get_ref());
                    tr {
                        td { (index + 1) }
                        td { (stage.plugin.get_ref()) }
                        td { @if let Some(plugin) = plugin { (plugin.identity.name) " " (plugin.identity.version) } }
                        td { @if let Some(plugin) = plugin { (json(&plugin.kind)) } }
                        td { @if let Some(plugin) = plugin { (plugin.contract.to_string()) " (series " (json(&plugin.series)) ")" } }
                        td.key {
                            // Values can be secrets themselves (a chat webhook's URL): admins only.
                            @for (name, value) in stage.settings.get_ref() {
                                (name) @if user.may(Role::Admin) { " = " (value.to_string()) } br;
                            }
                        }
                        td.key { (json(stage.grants.get_ref())) }
                        td { @if stage.on.get_ref().is_empty() { "every result" } @else { (json(stage.on.get_ref())) } }
                    }
                }
            }
        }
        h2 { "Plugins" }
        table {
            tr { th { "Name" } th { "File" } th { "SHA-256" } th { "Capabilities" } }
            @for (name, plugin) in &live.plugins {
                tr { td { (name) } td.key { (plugin.path.display().to_string()) } td.digest { (plugin.sha256) } td { (json(&plugin.capabilities)) } }
            }
        }
    };
    layout(Some(&user), "Pipelines", body)
}

/// A value shown as the JSON it serializes to (enums as their names).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(value) => value.to_string(),
        Err(_) => String::new(),
    }
}
