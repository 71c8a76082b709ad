//! The clamd client behind the `clamav` capability: INSTREAM scans through
//! `clamav-client`, with the object streamed from memory or its spool file.

use crate::config::ClamavConfig;
use bucketscan_core::formats::FormatSet;
use bucketscan_core::object::ObjectBody;
use clamav_client::tokio as clamav;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why clamd did not produce a scan result. None of these is clean.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClamdError {
    #[error("clamd at {0} is unreachable")]
    Unreachable(String),
    #[error("clamd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    SizeLimit(String),
    #[error("clamd protocol error: {0}")]
    Protocol(String),
    #[error("reading the object: {0}")]
    Read(String),
    #[error("{0}")]
    StaleSignatures(String),
}

#[derive(Debug, Clone)]
enum Address {
    Tcp(String),
    Unix(PathBuf),
}

/// Runs a one-word clamd command over whichever transport is configured
/// (clamav-client's transports are distinct types, so this is a macro).
macro_rules! on_connection {
    ($clamd:expr, $command:path) => {
        async {
            match &$clamd.address {
                Address::Tcp(addr) => {
                    $command(clamav::Tcp {
                        host_address: addr.as_str(),
                    })
                    .await
                }
                Address::Unix(path) => $command(clamav::Socket { socket_path: path }).await,
            }
        }
    };
}

/// How long a VERSION answer is reused; it changes only on a signature
/// reload, and asking on every scan would cost a connection per object.
const VERSION_TTL: Duration = Duration::from_secs(10);

/// A clamd endpoint.
pub struct Clamd {
    address: Address,
    timeout: Duration,
    stream_max_bytes: u64,
    version: Mutex<Option<(Instant, String)>>,
    gate: Option<Arc<dyn SignatureGate>>,
    /// What the config declares clamd opens; the probe corrects it.
    declared: FormatSet,
    /// What the last probe found clamd opens (see [`Clamd::opens`]).
    probed: tokio::sync::Mutex<Option<Probed>>,
    /// Set when the signatures changed: the next question probes again.
    probe_again: std::sync::atomic::AtomicBool,
}

/// A probe's answer: the formats clamd opened, or why it could not tell.
#[derive(Debug, Clone)]
struct Probed {
    at: Instant,
    opens: Result<FormatSet, String>,
}

/// How long an inconclusive probe stands before clamd is asked again.
const PROBE_RETRY: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Clamd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clamd")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Whether the signatures clamd runs with can prove anything now. Whoever
/// manages them (the agent's signature sync) answers; every scan asks
/// first, and a scan it refuses is `unscannable (stale-signatures)`, never
/// clean.
pub trait SignatureGate: Send + Sync {
    /// `Err` with the reason when scans must not be trusted.
    fn check(&self) -> Result<(), Untrusted>;
}

/// Why scans with the current signatures prove nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

impl Clamd {
    pub fn new(config: &ClamavConfig) -> Self {
        let address = if config.address.starts_with('/') {
            Address::Unix(PathBuf::from(&config.address))
        } else {
            Address::Tcp(config.address.clone())
        };
        Self {
            address,
            timeout: Duration::from_secs(config.timeout_secs),
            stream_max_bytes: config.stream_max_bytes,
            version: Mutex::new(None),
            gate: None,
            declared: FormatSet::new(config.opens.iter().copied()),
            probed: tokio::sync::Mutex::new(None),
            probe_again: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The formats clamd opens, as a probe found them: the EICAR test file
    /// inside each format the host can write, scanned; found means opened.
    /// Formats the host cannot write are taken as the config declares
    /// them. Until a probe succeeds the answer is `Err` (why), and no
    /// format counts as opened. Asked again after a signature reload
    /// ([`Clamd::forget_opens`]) and, when inconclusive, after a while.
    pub async fn opens(&self) -> Result<FormatSet, String> {
        let mut probed = self.probed.lock().await;
        if self.probe_again.swap(false, std::sync::atomic::Ordering::SeqCst) {
            *probed = None;
        }
        if let Some(last) = probed.as_ref()
            && (last.opens.is_ok() || last.at.elapsed() < PROBE_RETRY)
        {
            return last.opens.clone();
        }
        let opens = self.probe().await;
        match &opens {
            Ok(set) => tracing::info!(opens = %set.names(), "checked which formats clamd opens"),
            Err(why) => tracing::warn!(
                "what clamd opens could not be checked ({why}); until it can, a clean answer about any container is \
                 unscannable (unsupported-container)"
            ),
        }
        *probed = Some(Probed {
            at: Instant::now(),
            opens: opens.clone(),
        });
        opens
    }

    /// Forgets the probe's answer (signatures changed: ask again).
    pub fn forget_opens(&self) {
        self.probe_again.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn probe(&self) -> Result<FormatSet, String> {
        let eicar = bucketscan_unpack::samples::eicar();
        let found = self.scan_bytes_ungated(&eicar).await.map_err(|err| err.to_string())?;
        if found.is_empty() {
            return Err("clamd does not detect the EICAR test file, so nothing can be proven opened".into());
        }
        let mut opens = self.declared.clone();
        for (format, sample) in bucketscan_unpack::samples::probes(&eicar) {
            let found = self.scan_bytes_ungated(&sample).await.map_err(|err| err.to_string())?;
            if found.is_empty() {
                opens.remove(format);
            } else {
                opens.insert(format);
            }
        }
        Ok(opens)
    }

    /// Refuses scans while `gate` says the signatures cannot be trusted.
    pub fn with_gate(mut self, gate: Arc<dyn SignatureGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Asks clamd to reload its signature database (RELOAD → RELOADING).
    pub async fn reload(&self) -> Result<(), ClamdError> {
        let response = self.with_timeout(on_connection!(self, clamav::reload)).await?;
        self.forget_version();
        if response == clamav_client::RELOADING {
            Ok(())
        } else {
            Err(ClamdError::Protocol(format!(
                "RELOAD answered `{}`",
                text(&response).trim()
            )))
        }
    }

    fn describe(&self) -> String {
        match &self.address {
            Address::Tcp(addr) => addr.clone(),
            Address::Unix(path) => path.display().to_string(),
        }
    }

    /// Scans the whole body. Returns the names clamd reported FOUND (empty
    /// when clean).
    pub async fn scan(&self, body: &ObjectBody) -> Result<Vec<String>, ClamdError> {
        self.scan_inner(body).await.map_err(|err| match err {
            // clamd hangs up mid-stream when the object is over its own
            // StreamMaxLength: say how to fix it.
            ClamdError::Protocol(message) if message.contains("Broken pipe") || message.contains("reset by peer") => {
                ClamdError::Protocol(format!(
                    "{message}: clamd closed the connection mid-stream; if its StreamMaxLength is smaller than \
                     [clamav] stream-max-bytes ({} bytes), make them equal",
                    self.stream_max_bytes
                ))
            }
            other => other,
        })
    }

    async fn scan_inner(&self, body: &ObjectBody) -> Result<Vec<String>, ClamdError> {
        if let Some(gate) = &self.gate {
            gate.check().map_err(|why| ClamdError::StaleSignatures(why.0))?;
        }
        let len = body.len().map_err(|err| ClamdError::Read(err.to_string()))?;
        if len > self.stream_max_bytes {
            return Err(ClamdError::SizeLimit(format!(
                "object of {len} bytes is over clamd's StreamMaxLength of {} bytes",
                self.stream_max_bytes
            )));
        }
        let response = self
            .with_timeout(async {
                match (&self.address, body) {
                    (Address::Tcp(addr), ObjectBody::Memory(bytes)) => {
                        clamav::scan_buffer(
                            bytes,
                            clamav::Tcp {
                                host_address: addr.as_str(),
                            },
                            None,
                        )
                        .await
                    }
                    (Address::Tcp(addr), ObjectBody::File(file)) => {
                        clamav::scan_file(
                            file.path(),
                            clamav::Tcp {
                                host_address: addr.as_str(),
                            },
                            None,
                        )
                        .await
                    }
                    (Address::Unix(path), ObjectBody::Memory(bytes)) => {
                        clamav::scan_buffer(bytes, clamav::Socket { socket_path: path }, None).await
                    }
                    (Address::Unix(path), ObjectBody::File(file)) => {
                        clamav::scan_file(file.path(), clamav::Socket { socket_path: path }, None).await
                    }
                    (_, ObjectBody::NotFetched) => Err(io::Error::other("the object was not downloaded")),
                }
            })
            .await?;
        parse_scan_response(&response)
    }

    /// clamd's VERSION answer, e.g. `ClamAV 1.4.3/27000/…`.
    pub async fn version(&self) -> Result<String, ClamdError> {
        if let Some((at, version)) = self.version.lock().unwrap().as_ref()
            && at.elapsed() < VERSION_TTL
        {
            return Ok(version.clone());
        }
        let response = self.with_timeout(on_connection!(self, clamav::get_version)).await?;
        let version = text(&response).trim().to_owned();
        *self.version.lock().unwrap() = Some((Instant::now(), version.clone()));
        Ok(version)
    }

    /// Forgets the cached VERSION answer (after a signature reload).
    pub fn forget_version(&self) {
        *self.version.lock().unwrap() = None;
    }

    /// The gate scans pass, when signatures are managed.
    pub fn gate(&self) -> Option<&Arc<dyn SignatureGate>> {
        self.gate.as_ref()
    }

    /// Scans `bytes` with no gate: the agent's own checks of what clamd
    /// loaded (its canary) must run while the gate is closed.
    pub async fn scan_bytes_ungated(&self, bytes: &[u8]) -> Result<Vec<String>, ClamdError> {
        let response = self
            .with_timeout(async {
                match &self.address {
                    Address::Tcp(addr) => {
                        clamav::scan_buffer(
                            bytes,
                            clamav::Tcp {
                                host_address: addr.as_str(),
                            },
                            None,
                        )
                        .await
                    }
                    Address::Unix(path) => clamav::scan_buffer(bytes, clamav::Socket { socket_path: path }, None).await,
                }
            })
            .await?;
        parse_scan_response(&response)
    }

    /// PING → PONG.
    pub async fn ping(&self) -> Result<(), ClamdError> {
        let response = self.with_timeout(on_connection!(self, clamav::ping)).await?;
        if response == clamav_client::PONG {
            Ok(())
        } else {
            Err(ClamdError::Protocol(format!(
                "PING answered `{}`",
                text(&response).trim()
            )))
        }
    }

    async fn with_timeout(&self, request: impl Future<Output = io::Result<Vec<u8>>>) -> Result<Vec<u8>, ClamdError> {
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(ClamdError::Timeout(self.timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(match err.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound | io::ErrorKind::AddrNotAvailable => {
                    ClamdError::Unreachable(self.describe())
                }
                _ => ClamdError::Protocol(format!("talking to clamd at {}: {err}", self.describe())),
            }),
        }
    }
}

fn text(response: &[u8]) -> String {
    String::from_utf8_lossy(response).trim_end_matches('\0').to_owned()
}

/// Parses an INSTREAM answer: `stream: OK`, `stream: NAME FOUND` (one line
/// per match with AllMatchScanning), or `… ERROR`.
fn parse_scan_response(response: &[u8]) -> Result<Vec<String>, ClamdError> {
    let response = text(response);
    let mut found = Vec::new();
    let mut saw_ok = false;
    for line in response.split(['\0', '\n']).map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.strip_prefix("stream:").map(str::trim).unwrap_or(line);
        if line == "OK" {
            saw_ok = true;
        } else if let Some(name) = line.strip_suffix(" FOUND") {
            found.push(name.trim().to_owned());
        } else if line.contains("size limit exceeded") {
            return Err(ClamdError::SizeLimit(format!("clamd: {line}")));
        } else {
            return Err(ClamdError::Protocol(format!("unexpected answer `{line}`")));
        }
    }
    if found.is_empty() && !saw_ok {
        return Err(ClamdError::Protocol(format!("empty or unexpected answer `{response}`")));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clean_found_and_errors() {
        assert!(parse_scan_response(b"stream: OK\0").unwrap().is_empty());
        assert_eq!(
            parse_scan_response(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0").unwrap(),
            vec!["Eicar-Test-Signature.UNOFFICIAL"]
        );
        assert!(matches!(
            parse_scan_response(b"INSTREAM size limit exceeded. ERROR\0"),
            Err(ClamdError::SizeLimit(_))
        ));
        assert!(matches!(parse_scan_response(b""), Err(ClamdError::Protocol(_))));
        assert!(matches!(
            parse_scan_response(b"stream: Can't allocate memory ERROR\0"),
            Err(ClamdError::Protocol(_))
        ));
    }
}
