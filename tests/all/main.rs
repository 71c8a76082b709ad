//! End-to-end tests through the real parts: the wasmtime host, the built
//! plugin components, and a real clamd on loopback. One test binary, so
//! the workspace links once and clamd starts once.

mod agent;
mod clamav;
mod cli;
mod compat;
mod console;
mod contract;
mod disguises;
mod fargate;
mod filetype;
mod fleet_sweep;
mod hostile_uploads;
mod image;
mod interrupted;
mod languages;
mod large_objects;
mod organization;
mod pipeline;
mod release;
mod reload;
mod results;
mod retro_scan;
mod sandbox;
mod serve;
mod signatures;
mod soak;
mod teardown;
mod templates;
mod unreadable;
mod webhook;
mod yara;
