//! What an object really holds, seen by the host before any engine:
//!
//! - [`encoding`]: the `Content-Encoding` undone (gzip, deflate, br,
//!   zstd, stacked), as every client undoes it;
//! - [`survey`]: the container and compression formats inside, at any
//!   depth the host can walk;
//! - [`members`]: containers too large for an engine, walked member by
//!   member;
//! - [`samples`]: a payload wrapped in each format, to check what an
//!   engine opens and to test the disguises an uploader would use.
//!
//! Pure Rust over `Read`/`Seek`: nothing here knows about S3, clamd or
//! Wasm, and everything is bounded (bytes, depth, members).

pub mod encoding;
pub mod members;
pub mod samples;
pub mod survey;
mod tar_headers;

pub use encoding::{Coding, DecodeError};
pub use survey::{Limits, survey};
