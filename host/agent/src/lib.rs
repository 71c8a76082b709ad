//! The SQS agent: long-polls the queues S3 notifies, takes each object of
//! each message through the scan path (the runtime's [`Agent`]), and
//! deletes a message only when every object in it was fully handled.
//!
//! Everything else it runs on — the scanner on S3, events, notifications,
//! signatures, the allow-list, health and the HTTP skeleton — is
//! `bucketscan-runtime`'s, shared with the HTTP API, so neither entry
//! depends on the other.
//!
//! [`Agent`]: bucketscan_runtime::agent::Agent

pub mod receive;
