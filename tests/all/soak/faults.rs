//! The faults the soak injects, one after each round of uploads: agents
//! killed and scaled in, clamd killed, stalled and reloaded, S3 failing
//! and stalling, SNS down, the config reloaded, the spool budget full.

use super::checker::Shared;
use super::workload::{self, Upload};
use super::{Fleet, faulted_by_kind, upload_burst};
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
        first_then_every(internal_error("/quarantine/vstaging/soak/"), 2),
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
/// the checker's business). `burst` is the round's large objects, uploaded
/// here when the fault needs them in flight.
pub async fn strike(fault: Fault, fleet: &mut Fleet<'_>, outage: Duration, burst: &[Upload], seen: &Shared) {
    match fault {
        Fault::Calm => {}
        Fault::KillAgent => kill_agent_holding_a_spool_file(fleet, burst, seen).await,
        Fault::SpoolPressure => fill_the_spool_budget(fleet, burst, seen).await,
        Fault::ScaleIn => {
            let agent = &mut fleet.agents[1];
            let stopped = tokio::task::block_in_place(|| agent.terminate(Duration::from_secs(60)));
            assert!(stopped.is_some(), "SIGTERM did not stop the agent in 60 s");
            fleet.restart(1);
        }
        Fault::RestartClamd => {
            drop(fleet.clamd.take());
            tokio::time::sleep(Duration::from_secs(3)).await;
            fleet.start_clamd();
        }
        Fault::StallClamd => {
            let pause = ClamdPause::start(fleet);
            tokio::time::sleep(CLAMD_STALL).await;
            drop(pause);
        }
        Fault::S3Errors => {
            let expect = ["GET 503 SlowDown", "PUT 500 InternalError", "HEAD reset"];
            outage_of(fleet, s3_error_rules(), outage, &expect).await
        }
        Fault::StallS3 => {
            let rule = json!({"method": "GET", "path": "/staging/soak/", "no_query": "tagging", "stall": 600});
            outage_of(fleet, first_then_every(rule, 4), outage, &["GET stall"]).await
        }
        Fault::SnsOutage => {
            let rule = json!({"method": "POST", "body": "Action=Publish", "status": 500,
                              "code": "InternalError", "message": "SNS is down"});
            outage_of(fleet, vec![rule], outage, &["POST 500 InternalError"]).await
        }
        Fault::SignatureUpdate => update_signatures(fleet).await,
        Fault::ConfigReload => reload_config(fleet).await,
    }
}

/// clamd stopped (SIGSTOP: it stops reading) until dropped.
struct ClamdPause(i32);

impl ClamdPause {
    fn start(fleet: &Fleet<'_>) -> Self {
        let pid = fleet.clamd().pid() as i32;
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Self(pid)
    }
}

impl Drop for ClamdPause {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Sets `rules` for `outage`; each kind in `expect` ("METHOD fault") must
/// have struck at least once in that window.
async fn outage_of(fleet: &Fleet<'_>, rules: Vec<serde_json::Value>, outage: Duration, expect: &[&str]) {
    let before = faulted_by_kind(&fleet.proxy.faulted());
    fleet.proxy.set_faults(&rules);
    tokio::time::sleep(outage).await;
    fleet.proxy.set_faults(&[]);
    let after = faulted_by_kind(&fleet.proxy.faulted());
    for kind in expect {
        let struck = after.get(*kind).unwrap_or(&0) - before.get(*kind).unwrap_or(&0);
        assert!(struck > 0, "no request faulted with {kind} in its window: {after:?}");
    }
}

/// With clamd stopped, a large object is spooled and waits; the agent
/// holding its spool file is killed with SIGKILL, and its successor must
/// remove the file the dead agent could not. Behind a long soak's backlog
/// every slot may hold a small object waiting for clamd: then the first
/// agent is killed without a file to orphan (the soak requires at least
/// one orphan removed over the run).
async fn kill_agent_holding_a_spool_file(fleet: &mut Fleet<'_>, burst: &[Upload], seen: &Shared) {
    let pause = ClamdPause::start(fleet);
    upload_burst(fleet.world, burst, seen).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        if let Some(found) = fleet.agent_holding_a_spool_file() {
            break Some(found);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let which = held.as_ref().map_or(0, |(which, _)| *which);
    fleet.agents[which].kill_hard();
    // Old enough for the successor to tell it from a file being created.
    tokio::time::sleep(ORPHAN_GRACE).await;
    drop(pause);
    fleet.restart(which);
    let Some((_, file)) = held else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    while file.exists() {
        assert!(
            Instant::now() < deadline,
            "the killed agent's spool file {file:?} was not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A spool file younger than this may be a writer's being created (the
/// agent's own grace, plus a second).
const ORPHAN_GRACE: Duration = Duration::from_secs(6);

/// With clamd stopped, large objects pile up in the agents until one does
/// not fit its agent's spool budget and is refused for a retry. Objects
/// already waiting may hold every slot (a long soak's backlog), so a window
/// without a refusal is not failed here: the soak requires one over the run.
async fn fill_the_spool_budget(fleet: &mut Fleet<'_>, burst: &[Upload], seen: &Shared) {
    let pause = ClamdPause::start(fleet);
    let refusals = fleet.spool_refusals();
    upload_burst(fleet.world, burst, seen).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.spool_refusals() == refusals && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(pause);
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
