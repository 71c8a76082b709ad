use super::*;

fn file(name: &str, source: &str) -> RuleFile {
    RuleFile {
        name: name.into(),
        source: source.into(),
    }
}

const WEBSHELL: &str = r#"
rule php_eval_of_request : webshell php {
    meta:
        severity = "high"
        score = 90
        malware = true
    strings:
        $eval = /eval\s*\(\s*\$_(POST|GET|REQUEST)/
    condition:
        $eval
}
"#;

#[test]
fn a_match_names_rule_namespace_tags_metadata_and_offsets_not_bytes() {
    let set = RuleSet::compile("webshells", &[file("php.yar", WEBSHELL)]).unwrap();
    let bytes = b"<?php echo 1; eval($_POST['x']); ?>";
    let matches = set.scan(bytes, Duration::from_secs(5)).unwrap();
    assert_eq!(matches.len(), 1, "{matches:?}");
    let m = &matches[0];
    assert_eq!(
        (m.rule.as_str(), m.namespace.as_str()),
        ("php_eval_of_request", "php_yar")
    );
    assert_eq!(m.tags, ["webshell", "php"]);
    assert!(m.metadata.contains(&("severity".into(), "high".into())));
    assert!(m.metadata.contains(&("score".into(), "90".into())));
    assert!(m.metadata.contains(&("malware".into(), "true".into())));
    assert_eq!(m.patterns[0].pattern, "$eval");
    assert_eq!(m.patterns[0].offset, 14);
    assert_eq!(&bytes[14..14 + m.patterns[0].length as usize], b"eval($_POST");
    assert!(
        set.scan(b"<?php echo 1; ?>", Duration::from_secs(5))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_syntax_error_is_refused_with_its_file_line_and_column() {
    let broken = "rule ok { condition: true }\n\nrule broken {\n  condition: $missing\n}\n";
    let err = RuleSet::compile("set", &[file("good.yar", WEBSHELL), file("bad.yar", broken)]).unwrap_err();
    assert_eq!(err.file, "bad.yar");
    assert_eq!(err.line, 4, "{err}");
    assert!(err.column > 0, "{err}");
    assert!(!err.message.is_empty() && !err.message.contains('\n'), "{err}");
    assert!(err.to_string().starts_with("bad.yar:4:"), "{err}");
}

#[test]
fn a_global_rule_silences_only_its_own_file() {
    // In one namespace, a false global rule would silence every rule.
    let silencer = "global rule never { condition: false }\nrule quiet { condition: true }\n";
    let set = RuleSet::compile("set", &[file("php.yar", WEBSHELL), file("silencer.yar", silencer)]).unwrap();
    let matches = set.scan(b"eval($_GET['c'])", Duration::from_secs(5)).unwrap();
    let rules: Vec<&str> = matches.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(rules, ["php_eval_of_request"]);
}

#[test]
fn includes_are_refused() {
    let include = "include \"/etc/passwd\"\nrule r { condition: true }\n";
    let err = RuleSet::compile("set", &[file("inc.yar", include)]).unwrap_err();
    assert_eq!(err.file, "inc.yar");
    assert!(err.message.contains("include"), "{err}");
}

#[test]
fn the_version_follows_the_files_not_their_order() {
    let a = [file("a.yar", WEBSHELL), file("b.yar", "rule b { condition: false }")];
    let b = [a[1].clone(), a[0].clone()];
    let first = RuleSet::compile("s", &a).unwrap();
    assert_eq!(first.version(), RuleSet::compile("s", &b).unwrap().version());
    assert_eq!(first.version().len(), 12);
    let changed = [a[0].clone(), file("b.yar", "rule b { condition: true }")];
    assert_ne!(first.version(), RuleSet::compile("s", &changed).unwrap().version());
    assert_eq!(first.files(), ["a.yar", "b.yar"]);
}

#[test]
fn matches_shown_per_pattern_are_capped() {
    let set = RuleSet::compile("s", &[file("a.yar", "rule a { strings: $a = \"A\" condition: $a }")]).unwrap();
    let matches = set.scan(&[b'A'; 10_000], Duration::from_secs(5)).unwrap();
    assert_eq!(matches[0].patterns.len(), MAX_MATCHES_SHOWN);
}

#[test]
fn a_library_keeps_the_last_good_version_and_says_why_not_ready() {
    let library = Library::new(["webshells".to_owned()], Limits::default());
    assert!(matches!(library.get("webshells"), Err(Unavailable::NotLoaded { .. })));
    assert!(matches!(library.get("other"), Err(Unavailable::Unknown(_))));
    library.refuse("webshells", "bad.yar:4:13: unknown pattern".into());
    let not_ready = library.problems().join("\n");
    assert!(not_ready.contains("not loaded yet: bad.yar:4:13"), "{not_ready}");
    let set = RuleSet::compile("webshells", &[file("php.yar", WEBSHELL)]).unwrap();
    let version = set.version().to_owned();
    library.install(set);
    library.refuse("webshells", "bad.yar:4:13: unknown pattern".into());
    assert_eq!(
        library.get("webshells").unwrap().version(),
        version,
        "the good one keeps running"
    );
    assert!(library.problems().is_empty());
    let stale = Library::new(
        ["s".to_owned()],
        Limits {
            max_age: Some(Duration::ZERO),
            ..Limits::default()
        },
    );
    stale.install(RuleSet::compile("s", &[file("a.yar", "rule a { condition: true }")]).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(stale.get("s"), Err(Unavailable::Stale { .. })));
}

#[test]
fn a_file_is_scanned_where_it_lies() {
    let set = RuleSet::compile("webshells", &[file("php.yar", WEBSHELL)]).unwrap();
    let dir = std::env::temp_dir().join(format!("bucketscan-yara-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("upload.php");
    std::fs::write(&path, b"<?php eval($_REQUEST['c']); ?>").unwrap();
    let matches = set.scan_data(Bytes::File(&path), Duration::from_secs(5)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(matches.len(), 1);
}
