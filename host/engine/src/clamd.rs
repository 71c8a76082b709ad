//! The clamd client behind the `clamav` capability: INSTREAM scans through
//! `clamav-client`, with the object streamed from memory or its spool file.

use bucketscan_core::config::ClamavConfig;
use bucketscan_core::object::ObjectBody;
use clamav_client::tokio as clamav;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why clamd did not produce a scan result. None of these is clean.
#[derive(Debug, thiserror::Error)]
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
#[derive(Debug)]
pub struct Clamd {
    address: Address,
    timeout: Duration,
    stream_max_bytes: u64,
    version: Mutex<Option<(Instant, String)>>,
    freshness: Option<Freshness>,
}

/// The rule that a scan needs a signature database that exists, is not
/// empty, and was updated within `max_age`.
#[derive(Debug, Clone)]
pub struct Freshness {
    pub database_dir: PathBuf,
    pub max_age: Duration,
}

/// Files clamd loads signatures from.
pub const SIGNATURE_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "ndb", "ndu", "ldb", "ldu", "cdb", "idb", "fp",
    "sfp", "ign", "ign2", "pdb", "gdb", "wdb", "cbc", "crb", "yar", "yara", "info", "cfg",
];

impl Freshness {
    /// `Err` with a reason when the database is missing, empty or too old.
    pub fn check(&self) -> Result<(), String> {
        let dir = &self.database_dir;
        let entries =
            std::fs::read_dir(dir).map_err(|err| format!("signature database {} is missing: {err}", dir.display()))?;
        let mut newest: Option<std::time::SystemTime> = None;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_signature = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SIGNATURE_EXTENSIONS.contains(&e) && e != "info" && e != "cfg");
            let Ok(meta) = entry.metadata() else { continue };
            if let (true, true, Ok(modified)) = (is_signature, meta.len() > 0, meta.modified()) {
                newest = Some(newest.map_or(modified, |n| n.max(modified)));
            }
        }
        let Some(newest) = newest else {
            return Err(format!("signature database {} is empty", dir.display()));
        };
        let age = newest.elapsed().unwrap_or_default();
        if age > self.max_age {
            return Err(format!(
                "signature database {} was last updated {} h ago; the limit is {} h",
                dir.display(),
                age.as_secs() / 3600,
                self.max_age.as_secs() / 3600
            ));
        }
        Ok(())
    }
}

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
            freshness: None,
        }
    }

    /// Refuses scans while the signature database is not fresh.
    pub fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = Some(freshness);
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
        if let Some(freshness) = &self.freshness {
            freshness.check().map_err(ClamdError::StaleSignatures)?;
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
                }
            })
            .await?;
        parse_scan_response(&response)
    }

    /// clamd's VERSION answer, e.g. `ClamAV 1.4.3/27000/…`.
    pub async fn version(&self) -> Result<String, ClamdError> {
        if let Some((at, version)) = self.version.lock().unwrap().as_ref() {
            if at.elapsed() < VERSION_TTL {
                return Ok(version.clone());
            }
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

    /// PING → PONG.
    /// The freshness rule scans are held to, when signatures are managed.
    pub fn freshness(&self) -> Option<&Freshness> {
        self.freshness.as_ref()
    }

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
