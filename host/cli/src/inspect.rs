//! `bucketscan plugin inspect FILE.wasm`.

use crate::output::Format;
use bucketscan_engine::config::EngineConfig;
use bucketscan_engine::{Engine, Plugin};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(&EngineConfig::default())?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let plugin = Plugin::load(&engine, name, file, None).await?;
    let capabilities: Vec<&str> = plugin.capabilities.iter().map(|c| c.as_str()).collect();
    match format {
        Format::Json => {
            let value = json!({
                "name": plugin.identity.name,
                "version": plugin.identity.version,
                "description": plugin.identity.description,
                "kind": plugin.kind,
                "contract": format!("{}@{}", bucketscan_engine::contract::PACKAGE, plugin.contract),
                "capabilities": capabilities,
                "imports": plugin.imports,
                "sha256": plugin.sha256,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            println!("name:         {}", plugin.identity.name);
            println!("version:      {}", plugin.identity.version);
            println!("description:  {}", plugin.identity.description);
            println!("kind:         {}", format!("{:?}", plugin.kind).to_lowercase());
            println!(
                "contract:     {}@{}",
                bucketscan_engine::contract::PACKAGE,
                plugin.contract
            );
            println!(
                "capabilities: {}",
                if capabilities.is_empty() {
                    "none".to_owned()
                } else {
                    capabilities.join(", ")
                }
            );
            println!("sha256:       {}", plugin.sha256);
            println!("imports:");
            for import in &plugin.imports {
                println!("  {import}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
