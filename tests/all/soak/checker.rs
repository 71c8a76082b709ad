//! Watches the buckets for the whole soak: when each object reached its
//! one right place, and every moment a bad object was in production.

use super::workload::{Kind, Upload, VSTAGING};
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where an object is: in its staging bucket, in production, in quarantine
/// (under `BUCKET/KEY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub staging: bool,
    pub production: bool,
    pub quarantine: bool,
}

impl Place {
    /// Its one right place: clean moved to production; unscannable held in
    /// staging; infected and blocked moved to quarantine.
    pub fn is_final_for(self, kind: Kind) -> bool {
        match kind {
            Kind::Clean => self.production && !self.staging && !self.quarantine,
            Kind::Unscannable => self.staging && !self.production && !self.quarantine,
            // Production may hold the clean first bytes (the watcher checks
            // it never holds the last ones).
            Kind::Overwritten => self.quarantine && !self.staging,
            Kind::VersionedOverwrite => self.quarantine && self.production && !self.staging,
            _ => self.quarantine && !self.staging && !self.production,
        }
    }

    pub fn is_nowhere(self) -> bool {
        !self.staging && !self.production && !self.quarantine
    }
}

/// Keys in `bucket` now, from `start_after` on (lexically).
pub async fn keys(world: &World, bucket: &str, start_after: &str) -> HashSet<String> {
    let list = world.aws.s3.list_objects_v2().bucket(bucket).start_after(start_after);
    let mut pages = list.into_paginator().send();
    let mut keys = HashSet::new();
    while let Some(page) = pages.next().await {
        keys.extend(
            page.unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys
}

/// Where every object in `uploads` is now. Keys sort by upload number
/// (`soak/00042-…`, then `soak/large-…`), so listing from the smallest of
/// `uploads` on skips the settled past: a long soak's polls stay cheap.
pub async fn places(world: &World, uploads: &[&Upload]) -> HashMap<String, Place> {
    // "soak/00042" or "soak/large": sorts before every key it begins.
    let from: String = uploads
        .iter()
        .map(|u| &u.key)
        .min()
        .map(|k| k.chars().take(10).collect())
        .unwrap_or_default();
    let (staging, vstaging, production, quarantine) = (
        keys(world, STAGING, &from).await,
        keys(world, VSTAGING, &from).await,
        keys(world, PRODUCTION, &from).await,
        keys(world, QUARANTINE, &format!("{STAGING}/{from}")).await,
    );
    // Quarantine keys are `BUCKET/KEY`; every "vstaging/…" sorts after
    // "staging/…", so one listing from `staging/FROM` on covers both.
    uploads
        .iter()
        .map(|u| {
            let source = if u.bucket == VSTAGING { &vstaging } else { &staging };
            let place = Place {
                staging: source.contains(&u.key),
                production: production.contains(&u.key),
                quarantine: quarantine.contains(&format!("{}/{}", u.bucket, u.key)),
            };
            (u.key.clone(), place)
        })
        .collect()
}

/// What the watcher has seen so far.
#[derive(Default)]
pub struct Observations {
    /// When each object's upload finished.
    pub uploaded: HashMap<String, Instant>,
    /// When each object was first seen in its one right place.
    pub settled: HashMap<String, Instant>,
    /// Each poll that found a bad object in production: (key, when).
    pub bad_in_production: Vec<String>,
    pub polls: usize,
}

impl Observations {
    /// Time from upload to final place of each settled key in `keys`.
    pub fn times_to_final_place<'k>(&self, keys: impl Iterator<Item = &'k String>) -> Vec<Duration> {
        let mut times: Vec<Duration> = keys
            .filter_map(|key| Some(self.settled.get(key)?.duration_since(*self.uploaded.get(key)?)))
            .collect();
        times.sort();
        times
    }
}

pub type Shared = Arc<Mutex<Observations>>;

/// Polls the buckets until `stop`, recording into `seen`. Unscannable
/// objects count as settled once staging's copy carries its result tag.
pub fn watch(
    world: Arc<World>,
    uploads: Arc<Vec<Upload>>,
    seen: Shared,
    stop: Arc<Mutex<bool>>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let all: Vec<&Upload> = uploads.iter().collect();
        while !*stop.lock().unwrap() {
            // Only the objects not yet settled (a settled one has no event
            // left to move it).
            let pending: Vec<&Upload> = {
                let seen = seen.lock().unwrap();
                all.iter()
                    .copied()
                    .filter(|u| !seen.settled.contains_key(&u.key))
                    .collect()
            };
            let now_places = places(&world, &pending).await;
            let now = Instant::now();
            let (mut pending_unscannable, mut overwritten_in_production) = (Vec::new(), Vec::new());
            {
                let mut seen = seen.lock().unwrap();
                seen.polls += 1;
                for upload in &pending {
                    let place = now_places[&upload.key];
                    if matches!(upload.kind, Kind::Overwritten | Kind::VersionedOverwrite) && place.production {
                        overwritten_in_production.push(*upload);
                    } else if upload.kind.is_bad() && place.production {
                        seen.bad_in_production.push(upload.key.clone());
                    }
                    if !place.is_final_for(upload.kind) {
                        continue;
                    }
                    if upload.kind == Kind::Unscannable {
                        pending_unscannable.push(upload.key.clone());
                    } else {
                        seen.settled.insert(upload.key.clone(), now);
                    }
                }
            }
            for upload in overwritten_in_production {
                if holds(&world, PRODUCTION, &upload.key, &upload.bytes).await {
                    seen.lock().unwrap().bad_in_production.push(upload.key.clone());
                }
            }
            for key in pending_unscannable {
                if world.tag(STAGING, &key, "bucketscan-result").await.as_deref() == Some("unscannable") {
                    seen.lock().unwrap().settled.insert(key, now);
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Takes the alerts off the results queue every `every` until `stop`,
/// then once more; all of them. The queue is kept short on purpose: the
/// local AWS server looks at every message on each SQS call, so draining
/// ten thousand alerts at the end takes hours (the first 10,000-object
/// soak's final check never finished).
pub fn collect_alerts(
    world: Arc<World>,
    stop: Arc<Mutex<bool>>,
    every: Duration,
) -> tokio::task::JoinHandle<Vec<serde_json::Value>> {
    tokio::spawn(async move {
        let mut alerts = Vec::new();
        loop {
            let stopping = *stop.lock().unwrap();
            alerts.extend(world.take_all(&world.results_url).await);
            if stopping {
                return alerts;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Whether `bucket/key` holds `bytes` now (by ETag: an MD5 for objects
/// put or copied in one part).
pub async fn holds(world: &World, bucket: &str, key: &str, bytes: &[u8]) -> bool {
    let head = match world.aws.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => head,
        // Gone since the listing (moved): it holds nothing.
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => return false,
        Err(err) => panic!("HEAD {bucket}/{key}: {err:?}"),
    };
    head.e_tag().map(|etag| etag.trim_matches('"')) == Some(&format!("{:x}", md5::compute(bytes)))
}

/// The `p`th percentile (0-100) of sorted `times`, in milliseconds.
pub fn percentile_ms(times: &[Duration], p: usize) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    let index = ((times.len() - 1) * p).div_ceil(100);
    times[index].as_secs_f64() * 1000.0
}
