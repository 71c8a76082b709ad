//! The faults the soak injects, one after each round of uploads: agents
//! killed and scaled in, clamd killed, stalled and reloaded, S3 failing
//! and stalling, SNS down, the config reloaded, the spool budget full.

use super::Fleet;
use super::workload;
use bucketscan_tests::clamd;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// No fault: the round that measures time to verdict undisturbed.
    Calm,
    /// SIGKILL one agent mid-work, then start it again.
    KillAgent,
    /// For a while, a share of S3 requests fail: every 2nd GET of an
    /// upload answers 503 SlowDown, every 2nd copy into production or
    /// quarantine 500, every 3rd HEAD is reset.
    S3Errors,
    /// clamd stops reading (SIGSTOP) for 20 s.
    StallClamd,
    /// clamd killed; back on the same port and database 3 s later.
    RestartClamd,
    /// For a while, every publish to SNS fails.
    SnsOutage,
    /// New signatures in clamd's database and a RELOAD, as a sidecar's
    /// freshclam does; later rounds upload the bytes they name.
    SignatureUpdate,
    /// For a while, every 4th GET of an upload is held without an answer.
    StallS3,
    /// The config file replaced (same pipelines): every agent reloads.
    ConfigReload,
    /// The round carries large objects that do not fit the spool budget
    /// together; no fault is struck beyond that.
    SpoolPressure,
    /// SIGTERM one agent (an ECS scale-in), then start a new one.
    ScaleIn,
}

/// Every fault, in the order the short soak strikes them.
pub const ALL: [Fault; 11] = [
    Fault::Calm,
    Fault::KillAgent,
    Fault::S3Errors,
    Fault::StallClamd,
    Fault::RestartClamd,
    Fault::SnsOutage,
    Fault::SignatureUpdate,
    Fault::StallS3,
    Fault::ConfigReload,
    Fault::SpoolPressure,
    Fault::ScaleIn,
];

const CLAMD_STALL: Duration = Duration::from_secs(20);

fn s3_error_rules() -> Vec<serde_json::Value> {
    let slow_down = json!({"method": "GET", "path": "/staging/soak/", "no_query": "tagging",
                           "status": 503, "code": "SlowDown", "message": "Please reduce your request rate."});
    let internal_error = |path: &str| {
        json!({"method": "PUT", "path": path, "no_query": "tagging",
               "status": 500, "code": "InternalError", "message": "We encountered an internal error."})
    };
    let reset = json!({"method": "HEAD", "path": "/soak/", "reset": true});
    [
        first_then_every(slow_down, 2),
        first_then_every(internal_error("/production/soak/"), 2),
        first_then_every(internal_error("/quarantine/staging/soak/"), 2),
        first_then_every(reset, 3),
    ]
    .concat()
}

/// `rule` for the first request it matches, then for every `n`th: each
/// fault strikes at least once however few requests its window sees.
fn first_then_every(rule: serde_json::Value, n: u32) -> Vec<serde_json::Value> {
    let (mut first, mut every) = (rule.clone(), rule);
    first["times"] = json!(1);
    every["every"] = json!(n);
    vec![first, every]
}

/// Strikes `fault` and returns once it is over (the system recovering is
/// the checker's business).
pub async fn strike(fault: Fault, fleet: &mut Fleet<'_>, outage: Duration) {
    match fault {
        Fault::Calm | Fault::SpoolPressure => {}
        Fault::KillAgent => {
            fleet.agents[0].kill_hard();
            tokio::time::sleep(Duration::from_secs(1)).await;
            fleet.restart(0);
        }
        Fault::ScaleIn => {
            let stopped = fleet.agents[1].terminate(Duration::from_secs(60));
            assert!(stopped.is_some(), "SIGTERM did not stop the agent in 60 s");
            fleet.restart(1);
        }
        Fault::RestartClamd => {
            drop(fleet.clamd.take());
            tokio::time::sleep(Duration::from_secs(3)).await;
            fleet.start_clamd();
        }
        Fault::StallClamd => {
            let pid = fleet.clamd().pid() as i32;
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            tokio::time::sleep(CLAMD_STALL).await;
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        Fault::S3Errors => outage_of(fleet, s3_error_rules(), outage).await,
        Fault::StallS3 => {
            let rule = json!({"method": "GET", "path": "/staging/soak/", "no_query": "tagging", "stall": 600});
            outage_of(fleet, first_then_every(rule, 4), outage).await
        }
        Fault::SnsOutage => {
            let rule = json!({"method": "POST", "body": "Action=Publish", "status": 500,
                              "code": "InternalError", "message": "SNS is down"});
            outage_of(fleet, vec![rule], outage).await
        }
        Fault::SignatureUpdate => update_signatures(fleet).await,
        Fault::ConfigReload => reload_config(fleet).await,
    }
}

async fn outage_of(fleet: &Fleet<'_>, rules: Vec<serde_json::Value>, outage: Duration) {
    fleet.proxy.set_faults(&rules);
    tokio::time::sleep(outage).await;
    fleet.proxy.set_faults(&[]);
}

/// Adds the late signatures to clamd's database and reloads it; returns
/// once clamd finds a late sample, so later uploads meet the new database.
async fn update_signatures(fleet: &Fleet<'_>) {
    let db = fleet.clamd().database_dir();
    std::fs::write(db.join("soak-late.hdb"), workload::late_signatures(fleet.objects)).unwrap();
    let port = fleet.clamd().port;
    let answer = clamd::command(port, "RELOAD").unwrap();
    assert!(answer.contains("RELOADING"), "clamd answered RELOAD with {answer:?}");
    let probe = workload::late_sample(7);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if clamd::scan(port, &probe).is_ok_and(|answer| answer.contains("Bucketscan.Soak.Late")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clamd did not load the new signatures in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Replaces the config file (one comment more) the way deploy tools do and
/// waits until every agent has reloaded it.
async fn reload_config(fleet: &Fleet<'_>) {
    let before: Vec<usize> = fleet.agents.iter().map(reloads).collect();
    let text = std::fs::read_to_string(&fleet.config).unwrap();
    let tmp = fleet.config.with_extension("new");
    std::fs::write(&tmp, format!("{text}\n# reloaded by the soak\n")).unwrap();
    std::fs::rename(&tmp, &fleet.config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.agents.iter().zip(&before).any(|(agent, n)| reloads(agent) <= *n) {
        assert!(
            Instant::now() < deadline,
            "the agents did not reload the config in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reloads(agent: &bucketscan_tests::agent::AgentProcess) -> usize {
    agent.log().matches("reloaded: new objects use").count()
}
