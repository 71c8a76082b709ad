//! Uploads that disguise a known sample so that the engine never sees it:
//! compressed under a `Content-Encoding` every client decodes, as a
//! compressed stream or inside an archive format clamd cannot open, or
//! nested a level deeper. Each must end contained — decoded and caught,
//! or `unscannable` — and never promoted, through the agent (moto, clamd)
//! and through `POST /v1/scan`.

use aws_sdk_s3::primitives::ByteStream;
use bucketscan_core::formats::Format;
use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{bucketscan_bin, clamd, samples};
use bucketscan_unpack::samples as wrap;
use std::io::Write;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        writer.write_all(bytes).unwrap();
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    wrap::wrap(Format::Gzip, bytes, "x").unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    wrap::wrap(Format::Zstd, bytes, "x").unwrap()
}

/// An executable header that no signature names: only the file-type
/// policy can keep it out.
fn harmless_executable() -> Vec<u8> {
    let mut pe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    pe.extend_from_slice(&samples::clean_text());
    pe
}

async fn put(world: &World, key: &str, bytes: Vec<u8>, encoding: Option<&str>) {
    world
        .aws
        .s3
        .put_object()
        .bucket(STAGING)
        .key(key)
        .body(ByteStream::from(bytes))
        .set_content_encoding(encoding.map(str::to_owned))
        .send()
        .await
        .unwrap();
}

/// Waits until the agent recorded a result on `key` in staging (or the
/// object left it for quarantine), and returns its result tags.
async fn result_of(world: &World, key: &str, agent: &AgentProcess) -> Vec<(String, String)> {
    let quarantined = format!("{STAGING}/{key}");
    let deadline = Instant::now() + WITHIN;
    loop {
        if world.exists(QUARANTINE, &quarantined).await {
            return world.tags(QUARANTINE, &quarantined).await;
        }
        if world.exists(STAGING, key).await {
            let tags = world.tags(STAGING, key).await;
            if tags.iter().any(|(k, _)| k == "bucketscan-result") {
                return tags;
            }
        }
        assert!(Instant::now() < deadline, "no result for {key}:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn disguised_samples_are_decoded_and_caught_or_held_never_promoted() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    // Decoded bytes count against the object's size limit.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", "[agent]\nmax-object-bytes = 2097152\n");
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);
    let eicar = samples::eicar();

    // Content-Encoding: every client decodes these before using them.
    put(&world, "enc/page.html", brotli(&eicar), Some("br")).await;
    put(&world, "enc/data.json", zstd(&eicar), Some("zstd")).await;
    put(&world, "enc/stacked.txt", brotli(&gzip(&eicar)), Some("gzip, br")).await;
    put(&world, "enc/invoice.pdf", gzip(&harmless_executable()), Some("gzip")).await;
    put(&world, "enc/unknown.txt", eicar.clone(), Some("compress")).await;
    put(&world, "enc/broken.txt", b"not gzip at all".to_vec(), Some("gzip")).await;
    put(&world, "enc/bomb.txt", gzip(&vec![b'a'; 8 << 20]), Some("gzip")).await;
    // Formats clamd answers OK for without opening them.
    put(&world, "fmt/dropper.rar", wrap::rar4("dropper.com", &eicar), None).await;
    put(&world, "fmt/payload.zst", zstd(&eicar), None).await;
    let nested = wrap::zip(&[("docs/readme.txt", b"hello"), ("bin/x.zst", &zstd(&eicar))], 8);
    put(&world, "fmt/bundle.zip", nested, None).await;
    let lzma_member = wrap::zip_raw_member("tool.exe", 14, &eicar);
    put(&world, "fmt/lzma-member.zip", lzma_member, None).await;
    // A RAR inside a 7z (clamd opens the 7z, not the RAR), and a RAR
    // appended to a picture (WinRAR and 7-Zip open it).
    let seven = wrap::seven_zip(&[("readme.txt", b"hello"), ("tools/x.rar", &wrap::rar4("x.com", &eicar))]);
    put(&world, "fmt/bundle.7z", seven, None).await;
    let mut photo = b"\xff\xd8\xff\xe0 a picture".to_vec();
    photo.extend(wrap::rar4("x.com", &eicar));
    put(&world, "fmt/photo.jpg", photo, None).await;
    // A harmless zlib stream whose decoder stops before a zip: a browser
    // gets the harmless text, `aws s3 cp` the zip.
    let mut trailing = zlib(b"harmless text");
    trailing.extend(wrap::zip(&[("e.com", &eicar)], 8));
    put(&world, "enc/trailing.txt", trailing, Some("deflate")).await;
    // What stays clean: a gzip-encoded page, and a zip clamd opens.
    let page = samples::clean_text();
    put(&world, "ok/page.html", gzip(&page), Some("gzip")).await;
    put(&world, "ok/docs.zip", wrap::zip(&[("a.txt", &page)], 8), None).await;

    for key in ["enc/page.html", "enc/data.json", "enc/stacked.txt", "enc/trailing.txt"] {
        let tags = result_of(&world, key, &agent).await;
        assert_eq!(tag(&tags, "bucketscan-result"), Some("infected"), "{key}: {tags:?}");
        assert!(
            tag(&tags, "bucketscan-signature").unwrap().contains("Eicar"),
            "{key}: {tags:?}"
        );
        assert!(
            tag(&tags, "bucketscan-decoded").is_some(),
            "{key}: the tags say what was decoded"
        );
    }
    let stacked = result_of(&world, "enc/stacked.txt", &agent).await;
    assert_eq!(tag(&stacked, "bucketscan-decoded"), Some("gzip+br"));
    let pdf = result_of(&world, "enc/invoice.pdf", &agent).await;
    assert_eq!(tag(&pdf, "bucketscan-result"), Some("blocked"), "{pdf:?}");
    for (key, reason) in [
        ("enc/unknown.txt", "unsupported-encoding"),
        ("enc/broken.txt", "malformed"),
        ("enc/bomb.txt", "too-large"),
        ("fmt/dropper.rar", "unsupported-container"),
        ("fmt/payload.zst", "unsupported-container"),
        ("fmt/bundle.zip", "unsupported-container"),
        ("fmt/lzma-member.zip", "unsupported-container"),
        ("fmt/bundle.7z", "unsupported-container"),
        ("fmt/photo.jpg", "unsupported-container"),
    ] {
        let tags = result_of(&world, key, &agent).await;
        assert_eq!(tag(&tags, "bucketscan-result"), Some("unscannable"), "{key}: {tags:?}");
        assert_eq!(tag(&tags, "bucketscan-signature"), Some(reason), "{key}: {tags:?}");
    }
    for key in ["ok/page.html", "ok/docs.zip"] {
        world.wait_for(PRODUCTION, key, WITHIN, &agent).await;
    }
    assert_eq!(
        world
            .tag(PRODUCTION, "ok/page.html", "bucketscan-decoded")
            .await
            .as_deref(),
        Some("gzip")
    );
    assert_eq!(
        world.body(PRODUCTION, "ok/page.html").await,
        gzip(&page),
        "production holds the stored bytes, encoding and all"
    );
    // Nothing disguised reached production, and every infected or blocked
    // one was published with what was decoded.
    let promoted = world.aws.s3.list_objects_v2().bucket(PRODUCTION).send().await.unwrap();
    let keys: Vec<&str> = promoted.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["ok/docs.zip", "ok/page.html"], "{}", agent.log());
    let notes = world.notifications().await;
    let published: Vec<serde_json::Value> = notes
        .iter()
        .map(|n| serde_json::from_str(n["Message"].as_str().unwrap()).unwrap())
        .collect();
    let brotli_note = published
        .iter()
        .find(|n| n["key"] == "enc/page.html")
        .expect("published");
    assert_eq!(brotli_note["decoded"]["content_encoding"], serde_json::json!(["br"]));
    let bundle = published
        .iter()
        .find(|n| n["key"] == "fmt/bundle.zip")
        .expect("published");
    assert!(
        bundle["verdict"]["detail"]
            .as_str()
            .unwrap()
            .contains("fmt/bundle.zip!/bin/x.zst"),
        "the detail names the member: {bundle}"
    );
    // What clamd opens was checked against clamd itself, not assumed.
    let log = agent.log();
    let probe = log
        .lines()
        .find(|line| line.contains("checked which formats clamd opens"))
        .unwrap_or_else(|| panic!("no probe logged:\n{log}"));
    assert!(probe.contains("zip") && probe.contains("gzip"), "{probe}");
    assert!(!probe.contains("rar") && !probe.contains("zstd"), "{probe}");
}

/// `bucketscan plugin run --config` over `file`, as `key` in staging: the
/// scan path's dry run, with real clamd.
fn dry_run(config: &std::path::Path, file: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "plugin",
        "run",
        "--config",
        config.to_str().unwrap(),
        "--bucket",
        "staging",
        "--file",
        file.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(bucketscan_bin())
        .args(&args)
        .output()
        .unwrap();
    serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_may_let_a_named_format_through_and_nothing_else() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let eicar = samples::eicar();
    let rar = samples::write(dir.path(), "dropper.rar", &wrap::rar4("dropper.com", &eicar));
    let zst = samples::write(dir.path(), "payload.zst", &zstd(&eicar));
    let strict = world.config(&clamd::shared().address(), "");
    let report = dry_run(&strict, &rar, &[]);
    assert_eq!(report["result"], "unscannable", "{report}");
    assert_eq!(report["verdict"]["reason"], "unsupported-container");
    // The cost, stated: a RAR let through is promoted without anyone
    // having looked inside it.
    let lenient = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&lenient)
        .unwrap()
        .replace("[buckets.staging]\n", "[buckets.staging]\nlet-through = [\"rar\"]\n");
    std::fs::write(&lenient, text).unwrap();
    let report = dry_run(&lenient, &rar, &[]);
    assert_eq!(report["result"], "clean", "{report}");
    assert_eq!(report["contents"][0]["format"], "rar");
    let report = dry_run(&lenient, &zst, &[]);
    assert_eq!(
        report["verdict"]["reason"], "unsupported-container",
        "only rar: {report}"
    );
    // The dry run decodes a Content-Encoding like the agent does.
    let encoded = samples::write(dir.path(), "page.html", &brotli(&eicar));
    let report = dry_run(&strict, &encoded, &["--content-encoding", "br"]);
    assert_eq!(report["result"], "infected", "{report}");
    // An unknown format name is a config error that names it.
    let broken = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&broken)
        .unwrap()
        .replace("[buckets.staging]\n", "[buckets.staging]\nlet-through = [\"rarr\"]\n");
    std::fs::write(&broken, text).unwrap();
    let out = std::process::Command::new(bucketscan_bin())
        .args(["check", "--config", broken.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown format `rarr`"), "{err}");
}
