//! The console in a real browser: headless Chromium over WebDriver,
//! against the real binary (`bucketscan serve` beside a `bucketscan run`
//! agent), real clamd, and the local AWS server's S3, SQS, SNS and
//! DynamoDB — behind a local stand-in for the load balancer that signs
//! `x-amzn-oidc-data` tokens with a test key and serves its public key.

use bucketscan_runtime::results::search::{RESULTS, Search};
use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::browser::Browser;
use bucketscan_tests::load_balancer::{self, KeyEndpoint, SIGNER, SignedIn};
use bucketscan_tests::{clamd, results, samples};
use fantoccini::Locator;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);
/// An uploader's key that is also markup: it must stay text.
const HOSTILE_KEY: &str = "in/<img src=x onerror=alert(1)>.pdf";
const CI_KEY: &str = "bsk_console-test-key-0123456789abcdefghijklmno";

fn console_config(world: &World, keys: &KeyEndpoint) -> std::path::PathBuf {
    let extra = format!(
        r#"
[allow-list]
object = "s3://lists/allow-list.txt"
refresh-secs = 1
[results]
table = "{table}"

[buckets.uploads]
api-only = true
stages = [{{ plugin = "clamav-bridge", grants = {{ clamav = true }} }}]

[[serve.keys]]
id = "ci"
sha256 = "{ci_key}"
pipelines = ["uploads"]

[serve.console]
signer = "{SIGNER}"
key-url = "{key_url}"
[[serve.console.roles]]
role = "viewer"
groups = ["staff"]
[[serve.console.roles]]
role = "releaser"
groups = ["secops"]
"#,
        table = results::TABLE,
        key_url = keys.url,
        ci_key = hex::encode(Sha256::digest(CI_KEY)),
    );
    world.config(&clamd::shared().address(), &extra)
}

fn user(name: &str, groups: &[&str]) -> serde_json::Value {
    json!({"sub": format!("sub-{name}"), "email": format!("{name}@example.com"), "email_verified": "true", "groups": groups})
}

struct Console {
    _server: AgentProcess,
    direct: String,
}

fn start_console(world: &World, config: &std::path::Path) -> Console {
    let (server, port) = world.spawn_serve(config, &[], world.env());
    let deadline = std::time::Instant::now() + WITHIN;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never listened:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Console {
        _server: server,
        direct: format!("http://127.0.0.1:{port}"),
    }
}

/// Uploads a clean file, EICAR, an executable and EICAR under a key made
/// of markup, and waits until each is where its result sends it and
/// recorded.
async fn upload_mixed(world: &World, agent: &AgentProcess) {
    world
        .put("in/readme.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("in/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    let elf = std::fs::read("/bin/true").unwrap();
    world.put("in/tool.bin", elf, None, &[], &[]).await;
    world
        .put(HOSTILE_KEY, samples::eicar(), Some("application/pdf"), &[], &[])
        .await;
    world.wait_for(PRODUCTION, "in/readme.txt", WITHIN, agent).await;
    for key in ["in/eicar.txt", "in/tool.bin", HOSTILE_KEY] {
        world
            .wait_for(QUARANTINE, &format!("{STAGING}/{key}"), WITHIN, agent)
            .await;
        world.wait_gone(STAGING, key, WITHIN, agent).await;
    }
    // The moved ones were recorded before their deletes; the promoted one
    // (a copy) may still wait in a batch.
    let store = results::reader(&world.aws.dynamodb);
    results::recorded(&store, STAGING, "in/readme.txt", 1).await;
}

/// What the results table holds for the last day, per result.
async fn stored_counts(world: &World) -> Vec<(&'static str, usize)> {
    let store = results::reader(&world.aws.dynamodb);
    let mut counts = Vec::new();
    for result in RESULTS {
        let search = Search {
            result: Some(result.to_owned()),
            limit: 10_000,
            ..Search::default()
        };
        counts.push((result, store.search(&search).await.unwrap().len()));
    }
    counts
}

/// The text of the element `css` finds, waiting for it up to 10 s (after a
/// click, the next page may still be on its way).
async fn text_of(browser: &Browser, css: &str) -> String {
    let found = browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await;
    match found {
        Ok(element) => element.text().await.unwrap(),
        Err(err) => panic!("{css}: {err}\n{}", browser.client.source().await.unwrap_or_default()),
    }
}

/// Fills the reason of the form in `row`, ticks its confirmation and
/// sends it, as a person would.
async fn submit_confirmed(row: &fantoccini::elements::Element, reason: &str) {
    let field = |css: &'static str| row.find(Locator::Css(css));
    field("input[name=reason]")
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    field("input[name=confirm]").await.unwrap().click().await.unwrap();
    field("button[type=submit]").await.unwrap().click().await.unwrap();
}

/// No script ran: no dialog open, no element the key's markup would make,
/// and no console message but the favicon's 404.
async fn assert_no_script_ran(browser: &Browser, page: &str) {
    assert_eq!(browser.dialog_open().await, None, "{page}: a dialog opened");
    let images = browser.client.find_all(Locator::Css("img")).await.unwrap();
    assert!(images.is_empty(), "{page}: the key's markup became an element");
    let messages: Vec<(String, String)> = browser
        .console_messages()
        .await
        .into_iter()
        .filter(|(_, text)| !text.contains("favicon.ico"))
        .collect();
    assert!(messages.is_empty(), "{page}: console messages {messages:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_browser_releases_for_a_releaser_and_refuses_everyone_else() {
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket("lists").send().await.unwrap();
    results::create_table(&world.aws.dynamodb).await;
    let keys = KeyEndpoint::start().await;
    let config = console_config(&world, &keys);
    let agent = world.start_agent(&config);
    let console = start_console(&world, &config);
    upload_mixed(&world, &agent).await;

    // An upload scanned by the API is recorded too, apart from buckets.
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/scan?pipeline=uploads", console.direct))
        .bearer_auth(CI_KEY)
        .header("x-bucketscan-filename", "report.txt")
        .body(samples::eicar())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let uploads = results::reader(&world.aws.dynamodb)
        .search(&Search {
            bucket: Some("api:uploads".into()),
            limit: 10,
            ..Search::default()
        })
        .await
        .unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(
        (uploads[0].key.as_str(), uploads[0].result.as_str()),
        ("report.txt", "infected")
    );
    assert!(uploads[0].agent.ends_with("(API key ci)"), "{:?}", uploads[0].agent);

    let releaser = SignedIn::start(&console.direct, user("rel", &["secops"])).await;
    let browser = Browser::start().await;
    // The browser's console log is read for real: a 404 shows in it.
    browser
        .client
        .goto(&format!("{}/console/no-such-page", releaser.url))
        .await
        .unwrap();
    let logged = browser.console_messages().await;
    assert!(logged.iter().any(|(_, text)| text.contains("404")), "{logged:?}");

    // The overview counts what the table holds.
    browser
        .client
        .goto(&format!("{}/console/", releaser.url))
        .await
        .unwrap();
    let stored = stored_counts(&world).await;
    for (result, count) in &stored {
        let shown = text_of(&browser, &format!("#count-{result}")).await;
        assert_eq!(shown, count.to_string(), "{result}: page {shown}, table {count}");
    }
    // EICAR is infected, in the bucket and through the API; the executable
    // and the "PDF" that is text are blocked by the file-type stage.
    assert_eq!(
        stored[..3],
        [("clean", 1), ("infected", 2), ("blocked", 2)],
        "{stored:?}"
    );
    // Which config each agent ran: the file both processes read.
    let digest = bucketscan_runtime::config::digest(&std::fs::read_to_string(&config).unwrap());
    let agents = text_of(&browser, "#agents").await;
    assert!(agents.contains(&digest), "{agents} lacks {digest}");
    assert_no_script_ran(&browser, "overview").await;

    // Results: the markup key is text, linked to its history.
    browser
        .client
        .goto(&format!("{}/console/results?bucket={STAGING}", releaser.url))
        .await
        .unwrap();
    let table = text_of(&browser, "#results").await;
    assert!(table.contains("staging/in/<img src=x onerror=alert(1)>.pdf"), "{table}");
    assert!(table.contains("staging/in/eicar.txt"), "{table}");
    assert_no_script_ran(&browser, "results").await;
    browser
        .client
        .find(Locator::LinkText("staging/in/<img src=x onerror=alert(1)>.pdf"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // An element only the history page has: the click's page, not the last.
    let history = text_of(&browser, "section.scan").await;
    assert!(
        history.contains("extension claims pdf but the content is text"),
        "{history}"
    );
    assert_no_script_ran(&browser, "history").await;

    // The quarantine: the EICAR row shows its finding and SHA-256; the
    // releaser releases it with a reason.
    browser
        .client
        .goto(&format!("{}/console/quarantine", releaser.url))
        .await
        .unwrap();
    assert_no_script_ran(&browser, "quarantine").await;
    let row = browser
        .client
        .find(Locator::XPath("//tr[td[text()='staging/in/eicar.txt']]"))
        .await
        .unwrap();
    let digest = hex::encode(Sha256::digest(samples::eicar()));
    assert_eq!(
        row.find(Locator::Css("td.digest")).await.unwrap().text().await.unwrap(),
        digest
    );
    assert!(
        row.find(Locator::Css("td.finding"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Eicar")
    );
    submit_confirmed(&row, "vendor test file, ticket SEC-7").await;
    let released = text_of(&browser, "#released").await;
    assert!(released.contains("s3://staging/in/eicar.txt"), "{released}");
    assert!(
        world.exists(STAGING, "in/eicar.txt").await,
        "released back where it came from"
    );
    assert!(!world.exists(QUARANTINE, "staging/in/eicar.txt").await);
    // The audit trail: who, and why.
    let store = results::reader(&world.aws.dynamodb);
    let history = store.history(STAGING, "in/eicar.txt", 10).await.unwrap();
    assert!(
        history[0].duration_ms.unwrap_or(0.0) > 0.0,
        "the scan's time is recorded: {history:#?}"
    );
    let release = history.last().unwrap();
    assert_eq!(release.result, "clean", "{history:#?}");
    assert!(
        release.detail.contains("released by rel@example.com (console)"),
        "{release:#?}"
    );
    assert!(
        release.detail.contains("vendor test file, ticket SEC-7"),
        "{release:#?}"
    );
    browser.close().await;

    // A viewer sees the quarantine without a release button, and a POST
    // forged by one is refused with nothing moved.
    let viewer = SignedIn::start(&console.direct, user("view", &["staff"])).await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/console/quarantine", viewer.url))
        .await
        .unwrap();
    let page = text_of(&browser, "main").await;
    assert!(page.contains("staging/in/tool.bin"), "{page}");
    assert!(
        browser
            .client
            .find_all(Locator::Css("form.release"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_no_script_ran(&browser, "viewer's quarantine").await;
    browser.close().await;
    let hostile_held = format!("{STAGING}/{HOSTILE_KEY}");
    let forged = reqwest::Client::new()
        .post(format!("{}/console/quarantine/release", viewer.url))
        .form(&[
            ("csrf", "00"),
            ("bucket", QUARANTINE),
            ("key", hostile_held.as_str()),
            ("sha256", digest.as_str()),
            ("confirm", digest.as_str()),
            ("reason", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("takes the releaser role"));
    assert!(world.exists(QUARANTINE, &hostile_held).await);

    // Tokens the load balancer did not sign, or signed as another one,
    // and no token at all: refused.
    let http = reqwest::Client::new();
    let overview = format!("{}/console/", console.direct);
    let other_key = load_balancer::token(&load_balancer::signing_key("attacker"), SIGNER, user("x", &["secops"]));
    let other_signer = load_balancer::token(
        &load_balancer::signing_key("load balancer"),
        &SIGNER.replace("bucketscan/", "elsewhere/"),
        user("x", &["secops"]),
    );
    for (token, why) in [
        (Some(other_key), "signature does not verify"),
        (Some(other_signer), "not the load balancer this console trusts"),
        (None, "no x-amzn-oidc-data header"),
    ] {
        let mut request = http.get(&overview);
        if let Some(token) = token {
            request = request.header("x-amzn-oidc-data", token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403);
        let body = answer.text().await.unwrap();
        assert!(body.contains(why), "{body}");
    }

    // Signed in with no role mapped: told so, shown nothing.
    let stranger = SignedIn::start(&console.direct, user("new", &["sales"])).await;
    let answer = reqwest::get(format!("{}/console/results", stranger.url)).await.unwrap();
    assert_eq!(answer.status(), 403);
    let csp = answer.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let body = answer.text().await.unwrap();
    assert!(
        body.contains("no role is mapped to you") && !body.contains("eicar"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_user_is_for_loopback_only() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    let out = world.cli(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--console-dev-user",
        "dev",
        "--role",
        "admin",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not on loopback"), "{stderr}");
}

/// Releases `held` (a quarantine key) with the CLI, as `bucketscan release`.
fn release_with_cli(world: &World, config: &std::path::Path, held: &str, digest: &str) -> std::process::Output {
    let object = format!("s3://{QUARANTINE}/{held}");
    world.cli(&[
        "release",
        "--config",
        config.to_str().unwrap(),
        &object,
        "--reason",
        "vendor test file",
        "--sha256",
        digest,
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_in_the_console_outlives_an_older_list_written_back() {
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket("lists").send().await.unwrap();
    results::create_table(&world.aws.dynamodb).await;
    let keys = KeyEndpoint::start().await;
    let config = console_config(&world, &keys);
    let mut agent = world.start_agent(&config);
    let console = start_console(&world, &config);
    let digest = hex::encode(Sha256::digest(samples::eicar()));
    let held = |key: &str| format!("{STAGING}/{key}");

    // Released with the CLI: the same bytes uploaded again pass.
    world
        .put("in/first.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world.wait_for(QUARANTINE, &held("in/first.txt"), WITHIN, &agent).await;
    let out = release_with_cli(&world, &config, &held("in/first.txt"), &digest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list_before = world.body("lists", "allow-list.txt").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    world
        .put("in/second.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world.wait_for(PRODUCTION, "in/second.txt", WITHIN, &agent).await;

    // A viewer may not revoke: no form, and a forged POST is refused.
    let viewer = SignedIn::start(&console.direct, user("view", &["staff"])).await;
    let forged = reqwest::Client::new()
        .post(format!("{}/console/allow-list/revoke", viewer.url))
        .form(&[
            ("csrf", "00"),
            ("sha256", digest.as_str()),
            ("confirm", digest.as_str()),
            ("reason", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("takes the releaser role"));
    let page = reqwest::get(format!("{}/console/quarantine", viewer.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&digest) && !page.contains("form class=\"revoke\""),
        "{page}"
    );

    // A releaser's form is refused, nothing revoked, without its token,
    // a reason, or the tick on the digest shown; from another site too.
    let releaser = SignedIn::start(&console.direct, user("rel", &["secops"])).await;
    let page = reqwest::get(format!("{}/console/quarantine", releaser.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no form token in {page}"))
        .to_owned();
    let other = "0".repeat(64);
    for (csrf, reason, confirm, origin, status, why) in [
        ("00", "x", digest.as_str(), None, 403, "token is not yours"),
        (token.as_str(), " ", digest.as_str(), None, 400, "needs a reason"),
        (token.as_str(), "x", other.as_str(), None, 400, "tick the box"),
        (
            token.as_str(),
            "x",
            digest.as_str(),
            Some("https://elsewhere.example"),
            403,
            "another site",
        ),
    ] {
        let mut post = reqwest::Client::new().post(format!("{}/console/allow-list/revoke", releaser.url));
        if let Some(origin) = origin {
            post = post.header("origin", origin);
        }
        let answer = post
            .form(&[
                ("csrf", csrf),
                ("sha256", digest.as_str()),
                ("confirm", confirm),
                ("reason", reason),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{why}");
        let body = answer.text().await.unwrap();
        assert!(body.contains(why), "{why}: {body}");
    }
    let store = results::reader(&world.aws.dynamodb);
    assert!(store.revocations().await.unwrap().is_empty());

    // The releaser revokes it in the browser, with a reason.
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/console/quarantine", releaser.url))
        .await
        .unwrap();
    let row = browser
        .client
        .find(Locator::XPath(&format!(
            "//table[@id='allow-list']//tr[td[text()='{digest}']]"
        )))
        .await
        .unwrap();
    submit_confirmed(&row, "a real sample after all, ticket SEC-9").await;
    let revoked = text_of(&browser, "#revoked-now").await;
    assert!(revoked.contains(&digest), "{revoked}");
    assert_no_script_ran(&browser, "revoke").await;
    browser
        .client
        .goto(&format!("{}/console/quarantine", releaser.url))
        .await
        .unwrap();
    let shown = text_of(&browser, "#revoked").await;
    assert!(shown.contains(&digest) && shown.contains("SEC-9"), "{shown}");
    browser.close().await;

    // Kept in both places, with who, why and from where.
    let stored = results::reader(&world.aws.dynamodb).revocations().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(
        (
            stored[0].sha256.as_str(),
            stored[0].by.as_str(),
            stored[0].reason.as_str()
        ),
        (
            digest.as_str(),
            "rel@example.com (console)",
            "a real sample after all, ticket SEC-9"
        )
    );
    let list = String::from_utf8(world.body("lists", "allow-list.txt").await).unwrap();
    assert!(
        list.contains(&format!("revoke {digest} revoked by rel@example.com (console) at ")),
        "{list}"
    );

    // Whoever can write the list puts the copy from before the revocation
    // back. The running agent, and one started after it, both quarantine
    // the bytes again.
    world
        .aws
        .s3
        .put_object()
        .bucket("lists")
        .key("allow-list.txt")
        .body(list_before.into())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .put("in/third.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world.wait_for(QUARANTINE, &held("in/third.txt"), WITHIN, &agent).await;
    assert!(!world.exists(PRODUCTION, "in/third.txt").await);
    agent.terminate(WITHIN);
    let fresh = world.start_agent(&config);
    world
        .put("in/fourth.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world.wait_for(QUARANTINE, &held("in/fourth.txt"), WITHIN, &fresh).await;
    assert!(!world.exists(PRODUCTION, "in/fourth.txt").await, "{}", fresh.log());

    // And nobody releases those bytes while the revocation stands.
    let out = release_with_cli(&world, &config, &held("in/third.txt"), &digest);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow-list entry was revoked"), "{stderr}");
    assert!(world.exists(QUARANTINE, &held("in/third.txt")).await);
}
