//! A fast S3 stand-in for benchmarks: objects held in memory, served by
//! the `s3s` framework over HTTP on loopback. It implements what a sweep
//! asks of S3 — list, get, head, get and put tags — and nothing else, so
//! the agent's own cost is what a benchmark sees, not a Python server's.
//! Ranged GETs are served (the walk of an object over the size limit).
//! Not for tests of behaviour: it checks no conditions (`If-Match`) and
//! keeps no versions.

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Stored {
    bytes: Bytes,
    etag: String,
    tags: Vec<(String, String)>,
}

#[derive(Default, Clone)]
pub struct Standin {
    objects: Arc<Mutex<BTreeMap<(String, String), Stored>>>,
}

impl Standin {
    /// Puts `bytes` at `bucket/key` (no request: the bench fills it).
    pub fn insert(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let etag = format!("{:x}", md5_like(&bytes));
        self.objects.lock().unwrap().insert(
            (bucket.to_owned(), key.to_owned()),
            Stored {
                bytes: Bytes::from(bytes),
                etag,
                tags: Vec::new(),
            },
        );
    }

    /// Serves what `bucket/from` holds at `bucket/to` too (no copy made).
    #[allow(dead_code)] // each bench includes this file; only some alias
    pub fn alias(&self, bucket: &str, from: &str, to: &str) {
        let mut objects = self.objects.lock().unwrap();
        let stored = objects[&(bucket.to_owned(), from.to_owned())].clone();
        objects.insert((bucket.to_owned(), to.to_owned()), stored);
    }

    fn get(&self, bucket: &str, key: &str) -> S3Result<Stored> {
        self.objects
            .lock()
            .unwrap()
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
            .ok_or_else(|| s3_error!(NoSuchKey))
    }

    /// Serves on 127.0.0.1 (a free port); returns the endpoint URL.
    pub async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mut builder = S3ServiceBuilder::new(self);
        builder.set_auth(s3s::auth::SimpleAuth::from_single("testing", "testing"));
        let service = builder.build();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(connection);
            }
        });
        endpoint
    }
}

/// A cheap content hash standing in for the MD5 an ETag would be.
fn md5_like(bytes: &[u8]) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let h = hasher.finish() as u128;
    h << 64 | bytes.len() as u128
}

fn tag_set(tags: &[(String, String)]) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

#[async_trait::async_trait]
impl S3 for Standin {
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket;
        let prefix = req.input.prefix.unwrap_or_default();
        let contents: Vec<Object> = self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((b, k), _)| *b == bucket && k.starts_with(&prefix))
            .map(|((_, key), stored)| Object {
                key: Some(key.clone()),
                size: Some(stored.bytes.len() as i64),
                e_tag: Some(ETag::Strong(stored.etag.clone())),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket),
            key_count: Some(contents.len() as i32),
            contents: Some(contents),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let stored = self.get(&req.input.bucket, &req.input.key)?;
        let bytes = match &req.input.range {
            Some(range) => {
                let wanted = range
                    .check(stored.bytes.len() as u64)
                    .map_err(|_| s3_error!(InvalidRange))?;
                stored.bytes.slice(wanted.start as usize..wanted.end as usize)
            }
            None => stored.bytes.clone(),
        };
        let length = bytes.len() as i64;
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(length),
            e_tag: Some(ETag::Strong(stored.etag)),
            tag_count: Some(stored.tags.len() as i32),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let stored = self.get(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(stored.bytes.len() as i64),
            e_tag: Some(ETag::Strong(stored.etag)),
            ..Default::default()
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let stored = self.get(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set(&stored.tags),
            ..Default::default()
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let mut objects = self.objects.lock().unwrap();
        let stored = objects
            .get_mut(&(input.bucket, input.key))
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        stored.tags.clear();
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        let mut objects = self.objects.lock().unwrap();
        let stored = objects
            .get_mut(&(input.bucket, input.key))
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        stored.tags = tags;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }
}
