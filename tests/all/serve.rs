//! `bucketscan serve` end to end: real HTTP clients (curl, reqwest, and a
//! raw socket that stalls) against the API on loopback, real clamd, moto.

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, samples, wait_for_port};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Keys: `ci` may scan uploads and staging objects, `uploads` only uploads,
/// `admin` everything.
const CI_KEY: &str = "bsk_test-ci-key-0123456789abcdefghijklmnopqrstuv";
const UPLOADS_KEY: &str = "bsk_test-uploads-key-0123456789abcdefghijklmnop";
const ADMIN_KEY: &str = "bsk_test-admin-key-0123456789abcdefghijklmnopqr";
const MAX_BODY: u64 = 8 * 1024 * 1024;

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

struct Api {
    agent: AgentProcess,
    base: String,
    port: u16,
}

/// A config with an inspector-only `uploads` pipeline beside staging's,
/// and `[serve]` limits small enough to reach in a test.
fn serve_config(world: &World, extra_serve: &str) -> std::path::PathBuf {
    let extra = format!(
        r#"
[buckets.uploads]
api-only = true
[[buckets.uploads.stages]]
plugin = "filetype-filter"
settings = {{ deny = ["executable"], block-mismatch = true }}
[[buckets.uploads.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}

[serve]
concurrency = 2
queue = 1
queue-wait-secs = 20
idle-timeout-secs = 2
max-body-bytes = {MAX_BODY}
{extra_serve}
[[serve.keys]]
id = "ci"
sha256 = "{ci}"
pipelines = ["uploads"]
buckets = ["staging"]
[[serve.keys]]
id = "uploads"
sha256 = "{uploads}"
pipelines = ["uploads"]
[[serve.keys]]
id = "admin"
sha256 = "{admin}"
pipelines = ["*"]
buckets = ["*"]
"#,
        ci = digest(CI_KEY),
        uploads = digest(UPLOADS_KEY),
        admin = digest(ADMIN_KEY),
    );
    world.config(&clamd::shared().address(), &extra)
}

fn start(world: &World, config: &std::path::Path) -> Api {
    let (agent, port) = world.spawn_serve(config, &[], world.env());
    wait_for_port(port, Duration::from_secs(60), "bucketscan serve");
    Api {
        agent,
        base: format!("http://127.0.0.1:{port}"),
        port,
    }
}

/// `curl` POSTing `file` to /v1/scan: (status, JSON body, headers).
fn curl_scan(
    api: &Api,
    key: Option<&str>,
    pipeline: &str,
    file: &std::path::Path,
    extra: &[&str],
) -> (u16, serde_json::Value, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "-o",
        "-",
        "-D",
        headers.path().to_str().unwrap(),
        "-w",
        "\n%{http_code}",
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: application/octet-stream",
    ]);
    if let Some(key) = key {
        command.args(["-H", &format!("Authorization: Bearer {key}")]);
    }
    command.args(extra);
    command.arg(format!("{}/v1/scan?pipeline={pipeline}", api.base));
    let out = command.output().expect("curl runs (scripts/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl: {text} {}", String::from_utf8_lossy(&out.stderr)));
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (
        status.trim().parse().unwrap_or(0),
        json,
        std::fs::read_to_string(headers.path()).unwrap(),
    )
}

/// Sends `head` (and `body`) on a raw connection, then reads the answer
/// until the server closes or `within` passes.
fn raw(port: u16, head: &str, body: &[u8], within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).to_string(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_scanned_by_the_pipelines_inspectors_from_real_clients() {
    let world = World::new().await;
    let config = serve_config(&world, "");
    let api = start(&world, &config);
    let dir = world.dir.path();
    let key = Some(CI_KEY);

    let clean = samples::write(dir, "notes.txt", &samples::clean_text());
    let (status, report, headers) = curl_scan(
        &api,
        key,
        "uploads",
        &clean,
        &["-H", "X-Bucketscan-Filename: notes.txt"],
    );
    assert_eq!(status, 200, "{report:#}\n{}", api.agent.log());
    assert_eq!(report["result"], "clean");
    assert_eq!(report["key"], "notes.txt");
    assert!(
        headers.to_lowercase().contains("x-bucketscan-result: clean"),
        "{headers}"
    );
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["filetype-filter", "clamav-bridge"]);
    assert!(report["stages"][1]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(report["sha256"], hex::encode(Sha256::digest(samples::clean_text())));

    let eicar = samples::write(dir, "eicar.txt", &samples::eicar());
    let (status, report, _) = curl_scan(&api, key, "uploads", &eicar, &[]);
    assert_eq!(status, 200);
    assert_eq!(report["result"], "infected");
    assert!(report["findings"][0]["signature"].as_str().unwrap().contains("Eicar"));

    let zip = samples::write(dir, "secret.zip", &samples::encrypted_zip());
    let (status, report, _) = curl_scan(&api, key, "uploads", &zip, &["-H", "X-Bucketscan-Filename: secret.zip"]);
    assert_eq!(status, 200);
    assert_eq!(report["result"], "unscannable", "{report:#}");
    assert_eq!(report["verdict"]["reason"], "encrypted");

    // What clamd answers OK for without opening is not clean here either:
    // a RAR (no unrar), and a zip whose member is a zstd stream.
    let eicar_bytes = samples::eicar();
    let rar = samples::write(dir, "x.rar", &bucketscan_unpack::samples::rar4("x.com", &eicar_bytes));
    let zst = bucketscan_unpack::samples::wrap(bucketscan_core::formats::Format::Zstd, &eicar_bytes, "x").unwrap();
    let nested = samples::write(dir, "n.zip", &bucketscan_unpack::samples::zip(&[("x.zst", &zst)], 8));
    for (file, name) in [(&rar, "x.rar"), (&nested, "n.zip")] {
        let header = format!("X-Bucketscan-Filename: {name}");
        let (status, report, _) = curl_scan(&api, key, "uploads", file, &["-H", &header]);
        assert_eq!(status, 200, "{report:#}");
        assert_eq!(report["result"], "unscannable", "{name}: {report:#}");
        assert_eq!(report["verdict"]["reason"], "unsupported-container", "{name}");
    }

    // A disguised executable: the filetype inspector blocks it.
    let exe = samples::write(dir, "photo.jpg", &std::fs::read("/bin/true").unwrap());
    let (_, report, _) = curl_scan(&api, key, "uploads", &exe, &["-H", "X-Bucketscan-Filename: photo.jpg"]);
    assert_eq!(report["result"], "blocked");

    // A 6 MB body streamed chunked (no Content-Length): read, hashed,
    // spooled past the threshold, scanned.
    let big = samples::pseudo_random_text(6 * 1024 * 1024, 7);
    let big_file = samples::write(dir, "big.txt", &big);
    let (status, report, _) = curl_scan(&api, key, "uploads", &big_file, &["-H", "Transfer-Encoding: chunked"]);
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["size"], big.len());
    assert_eq!(report["sha256"], hex::encode(Sha256::digest(&big)));
    assert_eq!(report["result"], "clean");

    // Over the limit: refused, announced or not.
    let huge = samples::write(dir, "huge.bin", &vec![b'a'; MAX_BODY as usize + 1]);
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let (status, body, _) = curl_scan(&api, key, "uploads", &huge, extra);
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"]["code"], "payload_too_large");
    }

    // Nothing touched a bucket: actions never run here.
    for bucket in [STAGING, PRODUCTION, QUARANTINE] {
        let listed = world.aws.s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        assert_eq!(listed.key_count(), Some(0), "{bucket}");
    }

    // The contract is served, and is the file in the repository.
    let served = reqwest::get(format!("{}/openapi.yaml", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = bucketscan_tests::workspace().join("host/serve/openapi.yaml");
    assert_eq!(served, std::fs::read_to_string(&file).unwrap());
    let validator = bucketscan_tests::target_dir().join("tools/venv/bin/openapi-spec-validator");
    let out = Command::new(validator)
        .arg(&file)
        .output()
        .expect("openapi-spec-validator (scripts/setup)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_scopes_and_errors_answer_with_stable_codes() {
    let world = World::new().await;
    let config = serve_config(&world, "");
    let api = start(&world, &config);
    let file = samples::write(world.dir.path(), "notes.txt", &samples::clean_text());
    let expect = |(status, body, headers): (u16, serde_json::Value, String), code: u16, error: &str| {
        assert_eq!(status, code, "{body}");
        assert_eq!(body["error"]["code"], error, "{body}");
        headers
    };
    let headers = expect(curl_scan(&api, None, "uploads", &file, &[]), 401, "unauthorized");
    assert!(headers.to_lowercase().contains("www-authenticate: bearer"));
    expect(
        curl_scan(&api, Some("bsk_wrong"), "uploads", &file, &[]),
        401,
        "unauthorized",
    );
    // The stored digest is not a key.
    expect(
        curl_scan(&api, Some(&digest(CI_KEY)), "uploads", &file, &[]),
        401,
        "unauthorized",
    );
    expect(curl_scan(&api, Some(CI_KEY), STAGING, &file, &[]), 403, "forbidden");
    expect(
        curl_scan(&api, Some(ADMIN_KEY), "nope", &file, &[]),
        404,
        "unknown_pipeline",
    );
    // A pipeline with only actions cannot judge a file.
    expect(
        curl_scan(&api, Some(ADMIN_KEY), PRODUCTION, &file, &[]),
        404,
        "unknown_pipeline",
    );

    let client = reqwest::Client::new();
    let post = |key: &str, body: serde_json::Value| {
        client
            .post(format!("{}/v1/objects/scan", api.base))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let answer = post(UPLOADS_KEY, serde_json::json!({"bucket": STAGING, "key": "k"}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let answer = post(ADMIN_KEY, serde_json::json!({"bucket": "elsewhere", "key": "k"}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "unknown_bucket"
    );
    let answer = post(CI_KEY, serde_json::json!({"bucket": STAGING})).await.unwrap();
    assert_eq!(answer.status(), 400);
    let answer = client
        .get(format!("{}/v1/scan", api.base))
        .bearer_auth(CI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    let answer = client
        .get(format!("{}/v1/jobs/0000", api.base))
        .bearer_auth(CI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let answer = client
        .post(format!("{}/v1/scan", api.base))
        .bearer_auth(CI_KEY)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400, "no pipeline parameter");
    // Health needs no key.
    assert_eq!(
        reqwest::get(format!("{}/healthz", api.base)).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", api.base)).await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_clients_time_out_and_overload_is_refused_never_queued_without_bound() {
    let world = World::new().await;
    // One key may fill the server here, to reach its global bounds.
    let config = serve_config(&world, "per-key-concurrency = 4\n");
    let api = start(&world, &config);
    let port = api.port;
    let head = |length: usize| {
        format!(
            "POST /v1/scan?pipeline=uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CI_KEY}\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // Two clients announce 1000 bytes, send 10 and stall: each holds one
    // of the two scan slots until the 2 s idle limit.
    let stallers: Vec<_> = (0..2)
        .map(|_| {
            let head = head(1000);
            std::thread::spawn(move || raw(port, &head, &[b'a'; 10], Duration::from_secs(10)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A third waits for a slot (queue = 1)...
    let body = samples::clean_text();
    let waiter = {
        let (head, body) = (head(body.len()), body.clone());
        std::thread::spawn(move || raw(port, &head, &body, Duration::from_secs(20)))
    };
    std::thread::sleep(Duration::from_millis(300));
    // ...a fourth is refused at once, told when to come back.
    let (answer, took) = raw(port, &head(body.len()), &body, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"overloaded\""), "{answer}");
    assert!(took < Duration::from_secs(1), "refused without waiting: {took:?}");
    for staller in stallers {
        let (answer, took) = staller.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    let (answer, _) = waiter.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "the waiter got a slot: {answer}");
    // A client that trickles its body (a byte every 400 ms, never silent
    // for long) is cut off by the minimum rate, not the request timeout.
    let trickler = std::thread::spawn(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(head(100).as_bytes()).unwrap();
        for _ in 0..100 {
            if stream.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
            if started.elapsed() > Duration::from_secs(15) {
                break;
            }
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        (answer, started.elapsed())
    });
    let (answer, took) = trickler.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than"), "{answer}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    // A client that never finishes its headers is dropped.
    let (answer, took) = raw(
        port,
        "POST /v1/scan HTTP/1.1\r\nHost: x\r\n",
        &[],
        Duration::from_secs(10),
    );
    assert!(took < Duration::from_secs(6), "{took:?} {answer}");
    // The server still serves.
    let file = samples::write(world.dir.path(), "eicar.txt", &samples::eicar());
    let (status, report, _) = curl_scan(&api, Some(CI_KEY), "uploads", &file, &[]);
    assert_eq!((status, report["result"].as_str()), (200, Some("infected")));
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_are_scanned_on_demand_now_or_as_jobs() {
    let world = World::new().await;
    world.version(STAGING).await;
    let config = serve_config(&world, "");
    let api = start(&world, &config);
    let put = |key: &'static str, bytes: Vec<u8>| {
        world
            .aws
            .s3
            .put_object()
            .bucket(STAGING)
            .key(key)
            .content_type("text/plain")
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
    };
    let old = put("report.txt", samples::eicar()).await.unwrap().version_id.unwrap();
    put("report.txt", samples::clean_text()).await.unwrap();
    let client = reqwest::Client::new();
    let scan = |body: serde_json::Value, prefer: bool| {
        let mut request = client
            .post(format!("{}/v1/objects/scan", api.base))
            .bearer_auth(CI_KEY)
            .json(&body);
        if prefer {
            request = request.header("Prefer", "respond-async");
        }
        request.send()
    };
    // The non-current, infected version: quarantined, the current one kept.
    let answer = scan(
        serde_json::json!({"bucket": STAGING, "key": "report.txt", "version_id": old}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(report["result"], "infected", "{report:#}");
    assert_eq!(report["version_id"], old.as_str());
    assert_eq!(world.body(QUARANTINE, "staging/report.txt").await, samples::eicar());
    assert_eq!(world.body(STAGING, "report.txt").await, samples::clean_text());

    // As a job: 202 and a status URL, then the report.
    put("later.txt", samples::clean_text()).await.unwrap();
    let answer = scan(serde_json::json!({"bucket": STAGING, "key": "later.txt"}), true)
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let job: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(job["status_url"], location.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let job: serde_json::Value = client
            .get(format!("{}{location}", api.base))
            .bearer_auth(CI_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "done" || job["status"] == "failed" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:#}\n{}", api.agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "done", "{done:#}");
    assert_eq!(done["report"]["result"], "clean");
    assert!(world.exists(PRODUCTION, "later.txt").await, "promoted by the job");
    // Another key does not see the job.
    let other = client
        .get(format!("{}{location}", api.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_key_cannot_take_every_slot_and_an_upload_pipeline_is_never_a_bucket() {
    let world = World::new().await;
    let config = serve_config(&world, "");
    let api = start(&world, &config);
    let port = api.port;
    // `ci` stalls in the one slot its share allows (of two)...
    let head = format!(
        "POST /v1/scan?pipeline=uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CI_KEY}\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
    );
    let staller = std::thread::spawn(move || raw(port, &head, &[b'a'; 10], Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    // ...so its next request is refused at once, while another key's
    // request still gets the free slot.
    let file = samples::write(world.dir.path(), "notes.txt", &samples::clean_text());
    let (status, body, _) = curl_scan(&api, Some(CI_KEY), "uploads", &file, &[]);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests");
    let (status, body, _) = curl_scan(&api, Some(UPLOADS_KEY), "uploads", &file, &[]);
    assert_eq!(status, 200, "{body}");
    let (answer, _) = staller.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A name that stands for an upload pipeline, or a bucket nothing
    // scans, is never read as a bucket, whatever the key may do.
    let client = reqwest::Client::new();
    for (bucket, why) in [("uploads", "upload pipeline"), (PRODUCTION, "no pipeline")] {
        let answer = client
            .post(format!("{}/v1/objects/scan", api.base))
            .bearer_auth(ADMIN_KEY)
            .json(&serde_json::json!({"bucket": bucket, "key": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unknown_bucket");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{body}");
    }
}

/// An upload over its pipeline's size limit that is a container is walked
/// member by member from the spooled body, as an object in a bucket is:
/// EICAR as the last member of a tar.gz is found and named.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_over_the_limit_that_is_a_container_is_scanned_member_by_member() {
    use bucketscan_unpack::samples as archives;
    let world = World::new().await;
    let config = serve_config(&world, "");
    let limit = 2 << 20;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[buckets.uploads]\napi-only = true\n",
        &format!("[buckets.uploads]\napi-only = true\nmax-object-bytes = {limit}\n"),
    );
    std::fs::write(&config, text).unwrap();
    let api = start(&world, &config);
    let filler: Vec<Vec<u8>> = (0..3).map(|i| archives::random_bytes(limit / 2, 40 + i)).collect();
    let eicar = samples::eicar();
    let mut members: Vec<(&str, &[u8])> = vec![("a.bin", &filler[0]), ("b.bin", &filler[1]), ("c.bin", &filler[2])];
    members.push(("last/eicar.txt", &eicar));
    let tgz = archives::wrap(
        bucketscan_core::formats::Format::Gzip,
        &archives::tar(&members),
        "big.tar",
    )
    .unwrap();
    assert!(tgz.len() > limit && tgz.len() < MAX_BODY as usize);
    let file = samples::write(world.dir.path(), "big.tar.gz", &tgz);
    let header = "X-Bucketscan-Filename: big.tar.gz";
    let (status, report, _) = curl_scan(&api, Some(CI_KEY), "uploads", &file, &["-H", header]);
    assert_eq!(status, 200, "{report:#}\n{}", api.agent.log());
    assert_eq!(report["result"], "infected", "{report:#}");
    assert_eq!(report["coverage"], "members");
    assert_eq!(report["findings"][0]["location"], "big.tar.gz!/big.tar!/last/eicar.txt");
}

/// A walked upload is checked against the whole-file hash signatures as
/// well: here an MD5 (the usual `.hdb` kind) synced from the signature
/// bucket names the whole tar.gz, whose members are all clean.
#[tokio::test(flavor = "multi_thread")]
async fn a_walked_upload_whose_md5_is_a_signature_is_infected() {
    use bucketscan_tests::signatures::{self, test_database};
    use bucketscan_unpack::samples as archives;
    let world = World::new().await;
    let (own_clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let limit = 2 << 20;
    let filler: Vec<Vec<u8>> = (0..3).map(|i| archives::random_bytes(limit / 2, 60 + i)).collect();
    let members: Vec<(&str, &[u8])> = vec![("a.bin", &filler[0]), ("b.bin", &filler[1]), ("c.bin", &filler[2])];
    let tgz = archives::wrap(
        bucketscan_core::formats::Format::Gzip,
        &archives::tar(&members),
        "known.tar",
    )
    .unwrap();
    let line = format!("{:x}:{}:Bucketscan.Test.KnownArchive\n", md5::compute(&tgz), tgz.len());
    let database = test_database(2, std::time::SystemTime::now(), &line);
    signatures::upload(&world, "clamav/daily.cud", database).await;
    let config = serve_config(&world, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&clamd::shared().address(), &own_clamd.address())
        .replace(
            "[buckets.uploads]\napi-only = true\n",
            &format!("[buckets.uploads]\napi-only = true\nmax-object-bytes = {limit}\n"),
        );
    let synced = signatures::synced_config(&own_clamd, 1, 60);
    std::fs::write(&config, format!("{text}\n{synced}")).unwrap();
    let api = start(&world, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{}/readyz", api.base)).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", api.agent.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let file = samples::write(world.dir.path(), "known.tar.gz", &tgz);
    let header = "X-Bucketscan-Filename: known.tar.gz";
    let (status, report, _) = curl_scan(&api, Some(CI_KEY), "uploads", &file, &["-H", header]);
    assert_eq!(status, 200, "{report:#}\n{}", api.agent.log());
    assert_eq!(report["coverage"], "members", "{report:#}");
    assert_eq!(report["result"], "infected", "{report:#}");
    assert_eq!(
        report["findings"][0]["signature"], "Bucketscan.Test.KnownArchive.UNOFFICIAL",
        "{report:#}"
    );
}
