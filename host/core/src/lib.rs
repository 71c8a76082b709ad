//! The pure model of bucketscan: verdicts, pipelines, configuration, grants
//! and the object under scan.
//!
//! Nothing here knows about WebAssembly or AWS, so the rules that decide
//! whether an object is clean can be read and tested on their own. The Wasm
//! host (`bucketscan-engine`) and the agent wire real plugins and real
//! storage into these types.

pub mod allow;
pub mod config;
pub mod formats;
pub mod grants;
pub mod hashes;
pub mod object;
pub mod phases;
pub mod pipeline;
pub mod report;
pub mod seal;
pub mod storage;
pub mod tags;
pub mod text;
pub mod verdict;

pub use verdict::{Decision, Finding, ResultName, UnscannableReason, Verdict};
