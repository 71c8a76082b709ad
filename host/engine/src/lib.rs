//! The bucketscan Wasm host: one wasmtime engine, plugins compiled once and
//! cached by digest, a fresh sandboxed instance per object and stage, and the
//! host capabilities the `bucketscan:plugin` contract imports.
//!
//! Layout:
//! - [`engine`]: the wasmtime engine, its limits, the epoch ticker and the
//!   compile cache.
//! - [`config`]: the config sections the engine owns (`[engine]`, `[clamav]`).
//! - [`plugin`]: one loaded plugin: its contract version, kind, capabilities.
//! - [`contract`]: which contract series this host runs, one module of
//!   bindings and conversions per series, and the linker that adds them all.
//! - [`sandbox`]: per-stage store state (each capability's context and
//!   its view, beside WASI's), and resource limits.
//! - [`shared`]: what every capability of a stage shares — the resource
//!   table, clock, object — and how a stage fails: the leaf they build on.
//! - [`capabilities`]: one module per capability, each owning its context
//!   in the stage's store (versionless; the series bind to them).
//! - [`clamd`]: the clamd client, kept under the `clamav` capability it
//!   serves (`capabilities::clamav::clamd`, re-exported here).
//! - [`pipelines`]: a config's pipelines with their plugins loaded.
//! - [`runner`]: runs a pipeline over one object and reports.
//!
//! Pipeline rules and verdicts live in `bucketscan-core`; generated bindings
//! stay inside `contract`.

pub mod capabilities;
pub mod config;
pub mod contract;
pub mod engine;
pub mod pipelines;
pub mod plugin;
pub mod runner;
pub mod sandbox;
pub mod shared;

pub use capabilities::Services;
pub use capabilities::clamav::clamd::{self, Clamd};
pub use engine::Engine;
pub use pipelines::{LoadedPipelines, PipelineStage};
pub use plugin::{Plugin, PluginError};
pub use sandbox::ScanObject;
