//! YARA beside ClamAV (`[yara]`, the `yara` capability, yara-bridge):
//! a rule set synced from a bucket on the local AWS server, real clamd,
//! the real binary. A webshell clamd calls clean is quarantined by a rule;
//! EICAR is still ClamAV's; a rule set that does not compile is refused
//! with its place while the one before keeps matching; a new set is
//! swapped in with no upload lost; a `global` rule silences only its own
//! file; no rule makes another engine's finding clean.

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World, wait_until};
use bucketscan_tests::{clamd, component, samples};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);
const RULES: &str = "security-rules";

const WEBSHELLS: &str = r#"
rule php_eval_of_request : webshell php {
    meta:
        malware = true
        description = "PHP that evaluates what the request sends"
    strings:
        $eval = /eval\s*\(\s*\$_(POST|GET|REQUEST)/
    condition:
        $eval
}

rule php_file_marker : php {
    meta:
        severity = "low"
    strings:
        $php = "<?php"
    condition:
        $php at 0
}
"#;

const WEBSHELL: &[u8] = b"<?php echo 'hi'; eval($_POST['cmd']); ?>\n";

#[tokio::test(flavor = "multi_thread")]
async fn yara_rules_from_a_bucket_quarantine_what_clamav_passes_and_never_clean_anything() {
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket(RULES).send().await.unwrap();
    put_rules(&world, "yara/webshells/webshells.yar", WEBSHELLS).await;
    let first_stage = r#"
[[buckets.staging.stages]]
plugin = "yara-bridge"
settings = { rule-set = "webshells" }
grants = { yara = ["webshells"] }
"#;
    let extra = format!(
        "[plugins.yara-bridge]\npath = \"{}\"\n\n[yara]\nsync-interval-secs = 1\n\
         [yara.rule-sets.webshells]\nbucket = \"{RULES}\"\nprefix = \"yara/webshells/\"\n",
        component("yara_bridge").display()
    );
    let config = world.config_with(
        &clamd::shared().address(),
        first_stage,
        r#"deny = ["executable"], block-mismatch = true"#,
        &extra,
    );
    let agent = world.start_agent(&config);
    let first = swapped_versions(&agent, 1);

    // A webshell: clamd's database has nothing for it, the rule has.
    world
        .put("up/shell.php", WEBSHELL.to_vec(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("up/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("up/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    let quarantined = |key: &str| format!("{STAGING}/{key}");
    world
        .wait_for(QUARANTINE, &quarantined("up/shell.php"), WITHIN, &agent)
        .await;
    world
        .wait_for(QUARANTINE, &quarantined("up/eicar.txt"), WITHIN, &agent)
        .await;
    world.wait_for(PRODUCTION, "up/notes.txt", WITHIN, &agent).await;

    let alerts = world
        .notifications_for(&["up/shell.php", "up/eicar.txt", "up/notes.txt"], WITHIN, &agent)
        .await;
    let shell = &alerts["up/shell.php"];
    assert_eq!(shell["result"], "infected", "{shell:#}");
    let findings: Vec<(&str, &str)> = shell["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["engine"].as_str().unwrap(), f["signature"].as_str().unwrap()))
        .collect();
    assert_eq!(
        findings,
        [("yara", "YARA.webshells_yar.php_eval_of_request")],
        "only the rule the policy counts; the `severity = low` one is a finding in the log"
    );
    assert_eq!(
        shell["rule_sets"],
        serde_json::json!([format!("webshells@{}", first[0])])
    );
    let eicar = &alerts["up/eicar.txt"];
    assert_eq!(eicar["result"], "infected");
    assert!(
        eicar["findings"][0]["signature"].as_str().unwrap().contains("Eicar"),
        "{eicar:#}"
    );
    assert_eq!(alerts["up/notes.txt"]["result"], "clean");
    // The quarantined copies' tags name the rule and the engines that ran:
    // the rule decided the webshell before clamd; EICAR went through both.
    let tag = |tags: &[(String, String)], name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let shell_tags = world.tags(QUARANTINE, &quarantined("up/shell.php")).await;
    assert_eq!(
        tag(&shell_tags, "bucketscan-signature"),
        "YARA.webshells_yar.php_eval_of_request"
    );
    assert_eq!(
        tag(&shell_tags, "bucketscan-engine"),
        format!("yara webshells@{}", first[0])
    );
    let eicar_engine = tag(
        &world.tags(QUARANTINE, &quarantined("up/eicar.txt")).await,
        "bucketscan-engine",
    );
    assert!(
        eicar_engine.starts_with("ClamAV ") && eicar_engine.ends_with(&format!(" + yara webshells@{}", first[0])),
        "{eicar_engine}"
    );
    assert!(
        agent.log().contains("yara finding"),
        "the low-severity rule is logged as a finding"
    );

    // A file that does not compile: refused with its place, the running
    // version keeps matching.
    let broken = "rule broken {\n  strings:\n    $a = \"x\"\n  condition:\n    $a and $nothing\n}\n";
    put_rules(&world, "yara/webshells/broken.yar", broken).await;
    wait_until("the broken set refused", &agent, || {
        agent.log().contains("broken.yar:5:") && agent.log().contains("does not compile, refused")
    });
    world
        .put("up/shell2.php", WEBSHELL.to_vec(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, &quarantined("up/shell2.php"), WITHIN, &agent)
        .await;

    // Fixed, plus a file with a false `global` rule (which would silence
    // every rule of one namespace) and a rule that matches EICAR with a
    // tag the policy does not count: swapped in while uploads keep coming.
    put_rules(
        &world,
        "yara/webshells/broken.yar",
        "rule fixed { strings: $a = \"DROPPER-7f3e\" condition: $a }\n",
    )
    .await;
    let silencer = "global rule never { condition: false }\nrule quiet { condition: true }\n";
    put_rules(&world, "yara/webshells/silencer.yar", silencer).await;
    let eicar_rule = "rule eicar_seen : allowlisted { strings: $e = \"EICAR-STANDARD\" condition: $e }\n";
    put_rules(&world, "yara/webshells/eicar.yar", eicar_rule).await;
    let mut during = Vec::new();
    for n in 0..12 {
        let key = format!("during/notes-{n}.txt");
        world
            .put(&key, samples::clean_text(), Some("text/plain"), &[], &[])
            .await;
        during.push(key);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let second = swapped_versions(&agent, 2);
    assert_ne!(first[0], second[1]);
    for key in &during {
        world.wait_for(PRODUCTION, key, WITHIN, &agent).await;
    }

    world
        .put("up/shell3.php", WEBSHELL.to_vec(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("up/eicar2.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, &quarantined("up/shell3.php"), WITHIN, &agent)
        .await;
    world
        .wait_for(QUARANTINE, &quarantined("up/eicar2.txt"), WITHIN, &agent)
        .await;
    let alerts = world
        .notifications_for(&["up/shell3.php", "up/eicar2.txt"], WITHIN, &agent)
        .await;
    assert_eq!(
        alerts["up/shell3.php"]["rule_sets"],
        serde_json::json!([format!("webshells@{}", second[1])])
    );
    let eicar2 = &alerts["up/eicar2.txt"];
    assert_eq!(
        eicar2["result"], "infected",
        "a YARA match cannot make ClamAV's finding clean"
    );
    assert!(
        eicar2["findings"][0]["signature"].as_str().unwrap().contains("Eicar"),
        "{eicar2:#}"
    );
    assert!(!world.exists(PRODUCTION, "up/eicar2.txt").await);
    let (visible, in_flight) = world.queue_counts().await;
    assert_eq!((visible, in_flight), (0, 0), "every message was handled");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_is_not_ready_until_its_rule_set_compiles() {
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket(RULES).send().await.unwrap();
    put_rules(&world, "yara/s/only.yar", "rule r {\n  condition: $missing\n}\n").await;
    let extra = format!(
        "[plugins.yara-bridge]\npath = \"{}\"\n\n[yara]\nsync-interval-secs = 1\n\
         [yara.rule-sets.s]\nbucket = \"{RULES}\"\nprefix = \"yara/s/\"\n",
        component("yara_bridge").display()
    );
    let first_stage = "[[buckets.staging.stages]]\nplugin = \"yara-bridge\"\nsettings = { rule-set = \"s\" }\ngrants = { yara = [\"s\"] }\n";
    let config = world.config_with(
        &clamd::shared().address(),
        first_stage,
        "deny = [\"executable\"]",
        &extra,
    );
    let port = bucketscan_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    wait_until("the refusal", &agent, || agent.log().contains("only.yar:2:"));
    let (ready, why) = bucketscan_tests::agent::health(&addr, true);
    assert!(!ready, "ready without a rule set");
    assert!(why.contains("rule set `s` is not loaded yet: only.yar:2:"), "{why}");
    // A scan while not ready waits: the upload is handled once it compiles.
    world
        .put("later.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    put_rules(&world, "yara/s/only.yar", "rule r { condition: false }\n").await;
    world.wait_for(PRODUCTION, "later.txt", WITHIN, &agent).await;
    assert!(bucketscan_tests::agent::health(&addr, true).0);
}

async fn put_rules(world: &World, key: &str, text: &str) {
    let put = world.aws.s3.put_object().bucket(RULES).key(key);
    put.body(text.as_bytes().to_vec().into()).send().await.unwrap();
}

/// The versions the agent swapped in, once it has swapped `count`.
fn swapped_versions(agent: &AgentProcess, count: usize) -> Vec<String> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let versions: Vec<String> = agent
            .log()
            .lines()
            .filter(|line| line.contains("YARA rule set compiled and swapped in"))
            .filter_map(|line| {
                let at = line.find("version=")? + "version=".len();
                Some(line[at..].split_whitespace().next()?.trim_matches('"').to_owned())
            })
            .collect();
        if versions.len() >= count {
            return versions;
        }
        assert!(
            Instant::now() < deadline,
            "only {} swaps:\n{}",
            versions.len(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_over_the_yara_limit_is_read_member_by_member_by_the_rules() {
    use bucketscan_unpack::samples as archives;
    const LIMIT: usize = 2 << 20;
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket(RULES).send().await.unwrap();
    put_rules(&world, "yara/webshells/webshells.yar", WEBSHELLS).await;
    let first_stage = "[[buckets.staging.stages]]\nplugin = \"yara-bridge\"\nsettings = { rule-set = \"webshells\" }\n\
                       grants = { yara = [\"webshells\"] }\n";
    let extra = format!(
        "[plugins.yara-bridge]\npath = \"{}\"\n\n[yara]\nmax-object-bytes = {LIMIT}\nsync-interval-secs = 1\n\
         [yara.rule-sets.webshells]\nbucket = \"{RULES}\"\nprefix = \"yara/webshells/\"\n",
        component("yara_bridge").display()
    );
    let config = world.config_with(
        &clamd::shared().address(),
        first_stage,
        "deny = [\"executable\"]",
        &extra,
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[agent]\n", &format!("[agent]\nmax-object-bytes = {LIMIT}\n")),
    )
    .unwrap();
    let agent = world.start_agent(&config);
    swapped_versions(&agent, 1);

    // Three megabytes of filler, then the webshell: too large for the
    // rules whole, each member within their reach.
    let mut members: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("site/blob-{i}.bin"), archives::random_bytes(LIMIT / 2, i + 1)))
        .collect();
    members.push(("site/upload.php".into(), WEBSHELL.to_vec()));
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    world
        .put(
            "large/site.zip",
            archives::zip(&refs, 8),
            Some("application/zip"),
            &[],
            &[],
        )
        .await;
    world
        .wait_for(QUARANTINE, &format!("{STAGING}/large/site.zip"), WITHIN, &agent)
        .await;
    let alerts = world.notifications_for(&["large/site.zip"], WITHIN, &agent).await;
    let alert = &alerts["large/site.zip"];
    assert_eq!(alert["result"], "infected", "{alert:#}");
    assert_eq!(alert["coverage"], "members");
    assert_eq!(
        alert["findings"][0]["signature"],
        "YARA.webshells_yar.php_eval_of_request"
    );
    assert_eq!(alert["findings"][0]["location"], "large/site.zip!/site/upload.php");
}
