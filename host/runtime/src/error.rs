//! Why the agent could not start; each names the part that failed.

use bucketscan_core::config::SecretError;
use bucketscan_engine::engine::EngineError;
use bucketscan_engine::pipelines::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("[agent] seal-key: {0}")]
    SealKey(#[from] SecretError),
    #[error(transparent)]
    Plugins(#[from] LoadError),
    #[error("health endpoint {addr}: {error}")]
    Health {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("watching for config and plugin changes: {0}")]
    Watch(String),
}
