//! `bucketscan:plugin/clamav`: streams the object to clamd. Grant:
//! `clamav = true`. The bytes go from the host to clamd and never through
//! the plugin's memory.

use crate::bindings::clamav::{Host, ScanError, ScanErrorKind, ScanReport};
use crate::clamd::ClamdError;
use crate::sandbox::{ScanObject, StageFailure, StageState};
use std::time::Instant;
use wasmtime::component::Resource;

impl Host for StageState {
    async fn scan(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Result<ScanReport, ScanError>> {
        if let Err(err) = self.grants.check_clamav() {
            return Err(self.fail(StageFailure::NotGranted(err)));
        }
        let body = self.table.get(&object)?.body.clone();
        let clamd = &self.services.clamd;
        let started = Instant::now();
        let result = async {
            let found = clamd.scan(&body).await?;
            let version = clamd.version().await?;
            Ok::<_, ClamdError>((found, version))
        }
        .await;
        self.host_time += started.elapsed();
        Ok(match result {
            Ok((found, engine_version)) => {
                self.engine_version = Some(engine_version.clone());
                Ok(ScanReport { found, engine_version })
            }
            Err(err) => Err(ScanError {
                kind: match err {
                    ClamdError::Unreachable(_) => ScanErrorKind::Unreachable,
                    ClamdError::Timeout(_) => ScanErrorKind::Timeout,
                    ClamdError::SizeLimit(_) => ScanErrorKind::SizeLimit,
                    ClamdError::Protocol(_) => ScanErrorKind::Protocol,
                    ClamdError::Read(_) => ScanErrorKind::Read,
                    ClamdError::StaleSignatures(_) => ScanErrorKind::StaleSignatures,
                },
                message: err.to_string(),
            }),
        })
    }
}
