//! YARA: runs a granted rule set over the object, in the host (see
//! `bucketscan-yara`). Grant: `yara = ["RULE-SET", …]`. The bytes go from
//! the host's spool to YARA-X and never through the plugin's memory; the
//! scan runs on a blocking thread under the rule set's deadline.

use crate::shared::{ScanObject, StageFailure, StageShared};
use bucketscan_core::grants::Grants;
use bucketscan_core::object::ObjectBody;
use bucketscan_yara::{Bytes, Library, RuleMatch, Unavailable};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Resource};

/// YARA's part of a stage.
pub struct YaraCtx {
    grants: Grants,
    library: Arc<Library>,
    /// `NAME@VERSION` of each rule set this stage ran, for the report.
    pub ran: Vec<String>,
}

impl YaraCtx {
    pub fn new(grants: Grants, library: Arc<Library>) -> Self {
        Self {
            grants,
            library,
            ran: Vec::new(),
        }
    }
}

/// What one rule set said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraAnswer {
    pub matches: Vec<RuleMatch>,
    pub rule_set: String,
    pub version: String,
}

/// Why a scan gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YaraError {
    #[error("{0}")]
    UnknownRuleSet(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    SizeLimit(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Read(String),
    #[error("{0}")]
    Other(String),
}

/// What YARA sees of the store.
pub struct YaraCtxView<'a> {
    pub ctx: &'a mut YaraCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to YARA.
pub trait YaraView: Send {
    fn yara(&mut self) -> YaraCtxView<'_>;
}

/// Marks YARA for `add_to_linker`.
pub struct HasYara;

impl HasData for HasYara {
    type Data<'a> = YaraCtxView<'a>;
}

impl YaraCtxView<'_> {
    /// Runs `rule_set` over `object`; the outer error traps the stage (not
    /// granted).
    pub async fn scan(
        &mut self,
        object: &Resource<ScanObject>,
        rule_set: &str,
    ) -> wasmtime::Result<Result<YaraAnswer, YaraError>> {
        if let Err(not_granted) = self.ctx.grants.check_yara(rule_set) {
            return Err(self.shared.fail(StageFailure::NotGranted(not_granted)));
        }
        let body = self.shared.table.get(object)?.body.clone();
        let set = match self.ctx.library.get(rule_set) {
            Ok(set) => set,
            Err(why @ Unavailable::Unknown(_)) => return Ok(Err(YaraError::UnknownRuleSet(why.to_string()))),
            Err(why) => return Ok(Err(YaraError::NotReady(why.to_string()))),
        };
        let limits = self.ctx.library.limits;
        let len = body.len().map_err(|err| YaraError::Read(err.to_string()));
        match len {
            Err(err) => return Ok(Err(err)),
            Ok(len) if len > limits.max_object_bytes => {
                return Ok(Err(YaraError::SizeLimit(format!(
                    "object of {len} bytes is over the {} bytes rule set `{rule_set}` reads whole",
                    limits.max_object_bytes
                ))));
            }
            Ok(_) => {}
        }
        let started = Instant::now();
        let scan_set = set.clone();
        let scanned = tokio::task::spawn_blocking(move || match &body {
            ObjectBody::Memory(bytes) => scan_set.scan_data(Bytes::Memory(bytes), limits.timeout),
            ObjectBody::File(file) => scan_set.scan_data(Bytes::File(file.path()), limits.timeout),
            ObjectBody::NotFetched => Err(bucketscan_yara::ScanError::Other("the object was not fetched".into())),
        })
        .await;
        self.shared.host_time += started.elapsed();
        self.ctx.ran.push(format!("{}@{}", set.name(), set.version()));
        Ok(match scanned {
            Ok(Ok(matches)) => Ok(YaraAnswer {
                matches,
                rule_set: set.name().to_owned(),
                version: set.version().to_owned(),
            }),
            Ok(Err(bucketscan_yara::ScanError::Timeout(deadline))) => Err(YaraError::Timeout(format!(
                "rule set `{rule_set}` ran past its deadline of {} s",
                deadline.as_secs()
            ))),
            Ok(Err(other)) => Err(YaraError::Other(other.to_string())),
            Err(join) => Err(YaraError::Other(format!("the scan thread failed: {join}"))),
        })
    }
}
