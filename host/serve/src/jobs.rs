//! Object scans run as jobs (`Prefer: respond-async`): the request is
//! answered 202 with a status URL, the scan waits for a slot and runs, and
//! `GET /v1/jobs/{id}` tells how it went. Jobs live in the memory of the
//! process that accepted them (behind a load balancer: sticky sessions,
//! or poll the object's tags and the notifications instead); at most
//! `max-jobs` are kept, finished ones forgotten oldest first; a server
//! whose jobs are all unfinished refuses new ones (429), and so does one
//! key with a quarter of them unfinished (one caller cannot take them all).

use crate::errors::ApiError;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// One job, as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub created_at: String,
    /// The scan report, when done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// Why it failed: `{code, message}` as in error answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// The caller that created it: only it may read it.
    #[serde(skip)]
    pub owner: String,
}

pub struct Jobs {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    order: VecDeque<String>,
}

impl Jobs {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// Records a new queued job; refuses when every kept job is unfinished,
    /// or when the owner has its share unfinished.
    pub fn create(&self, mut job: Job) -> Result<Job, ApiError> {
        let mut inner = self.inner.lock().unwrap();
        let share = (self.max / 4).max(1);
        let unfinished = |job: &&Job| matches!(job.status, JobStatus::Queued | JobStatus::Running);
        let owned = inner
            .jobs
            .values()
            .filter(unfinished)
            .filter(|j| j.owner == job.owner)
            .count();
        if owned >= share {
            return Err(ApiError::too_many_requests(format!(
                "key `{}` has {owned} object-scan jobs unfinished (at most {share} per key)",
                job.owner
            )));
        }
        while inner.jobs.len() >= self.max {
            let finished = inner.order.iter().position(|id| {
                inner
                    .jobs
                    .get(id)
                    .is_some_and(|j| matches!(j.status, JobStatus::Done | JobStatus::Failed))
            });
            let Some(position) = finished else {
                return Err(ApiError::too_many_requests(format!(
                    "{} object-scan jobs are unfinished; wait for some to end",
                    self.max
                )));
            };
            let id = inner.order.remove(position).expect("position is in range");
            inner.jobs.remove(&id);
        }
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("the OS random source");
        job.id = hex::encode(random);
        job.status = JobStatus::Queued;
        inner.order.push_back(job.id.clone());
        inner.jobs.insert(job.id.clone(), job.clone());
        Ok(job)
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.inner.lock().unwrap().jobs.get_mut(id) {
            change(job);
        }
    }

    /// The job, if it exists and belongs to `owner` (another caller's job
    /// is "not found", not "forbidden": ids are not to be probed).
    pub fn get(&self, id: &str, owner: &str) -> Option<Job> {
        self.inner
            .lock()
            .unwrap()
            .jobs
            .get(id)
            .filter(|job| job.owner == owner)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(owner: &str) -> Job {
        Job {
            id: String::new(),
            status: JobStatus::Queued,
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            created_at: String::new(),
            report: None,
            error: None,
            owner: owner.into(),
        }
    }

    #[test]
    fn finished_jobs_make_room_and_unfinished_ones_refuse() {
        let jobs = Jobs::new(8);
        let first = jobs.create(job("a")).unwrap();
        let second = jobs.create(job("a")).unwrap();
        assert_eq!(
            jobs.create(job("a")).unwrap_err().code,
            "too_many_requests",
            "a's share is 2"
        );
        for _ in 0..2 {
            jobs.create(job("b")).unwrap();
        }
        for _ in 0..2 {
            jobs.create(job("c")).unwrap();
        }
        jobs.create(job("d")).unwrap();
        jobs.create(job("e")).unwrap();
        assert_eq!(
            jobs.create(job("f")).unwrap_err().code,
            "too_many_requests",
            "all 8 unfinished"
        );
        jobs.update(&first.id, |j| j.status = JobStatus::Done);
        let third = jobs.create(job("a")).unwrap();
        assert!(jobs.get(&first.id, "a").is_none(), "the oldest finished is forgotten");
        assert!(jobs.get(&second.id, "a").is_some());
        assert!(jobs.get(&third.id, "b").is_none(), "another caller's job is not found");
    }
}
