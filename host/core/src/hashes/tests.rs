use super::*;

const FLOOR: u64 = 1000;
const MD5: &str = "0123456789abcdef0123456789abcdef";
const SHA256: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn digest(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

fn index(files: &[(&str, bool, &str)]) -> HashSignatures {
    let mut index = HashSignatures::new(FLOOR);
    for (file, official, text) in files {
        index.add_file(file, *official, text).unwrap();
    }
    index
}

#[test]
fn a_large_objects_md5_and_size_find_its_signature_with_the_name_clamd_reports() {
    let index = index(&[("local.hdb", false, &format!("{MD5}:5000:Big.Bad\n"))]);
    assert_eq!(index.len(), 1);
    assert_eq!(index.kinds_for(5000), [HashKind::Md5]);
    let found = index.lookup(&[(HashKind::Md5, &digest(MD5))], 5000).unwrap();
    assert_eq!(found.name, "Big.Bad.UNOFFICIAL");
    assert_eq!(found.file, "local.hdb");
    // Another size: not that file.
    assert_eq!(index.lookup(&[(HashKind::Md5, &digest(MD5))], 5001), None);
    assert!(
        index.kinds_for(5001).is_empty(),
        "nothing to hash for a size no signature has"
    );
}

#[test]
fn signed_containers_names_are_official_and_any_size_signatures_need_their_kind_for_every_size() {
    let index = index(&[("main.cvd/main.hsb", true, &format!("{SHA256}:*:Any.Size:73\n"))]);
    assert_eq!(index.kinds_for(123_456_789), [HashKind::Sha256]);
    let found = index.lookup(&[(HashKind::Sha256, &digest(SHA256))], 77_777).unwrap();
    assert_eq!(found.name, "Any.Size");
    assert_eq!(found.kind, HashKind::Sha256);
}

#[test]
fn signatures_for_objects_the_engine_reads_whole_are_not_kept() {
    let index = index(&[(
        "daily.hdb",
        false,
        &format!("{MD5}:68:Small\n{MD5}:{FLOOR}:At.The.Floor\n"),
    )]);
    assert!(index.is_empty());
    assert!(!index.covers(FLOOR) && index.covers(FLOOR + 1));
}

#[test]
fn allow_entries_and_ignored_names_silence_as_they_do_in_clamd() {
    let other = "fedcba9876543210fedcba9876543210";
    let files = [
        (
            "a.hdb",
            false,
            format!("{MD5}:5000:Allowed.By.Fp\n{other}:5000:Ignored\n"),
        ),
        ("local.fp", false, format!("{MD5}:5000:released by the security team\n")),
        ("local.ign2", false, "Ignored\n".to_owned()),
    ];
    let files: Vec<(&str, bool, &str)> = files.iter().map(|(f, o, t)| (*f, *o, t.as_str())).collect();
    let index = index(&files);
    assert_eq!(index.lookup(&[(HashKind::Md5, &digest(MD5))], 5000), None);
    assert_eq!(index.lookup(&[(HashKind::Md5, &digest(other))], 5000), None);
}

#[test]
fn an_ignore_list_never_silences_a_signature_by_another_name() {
    let index = index(&[
        ("a.hdb", false, &format!("{MD5}:5000:Kept\n")),
        ("b.ign", false, "a.hdb:1:Other\n"),
    ]);
    assert!(index.lookup(&[(HashKind::Md5, &digest(MD5))], 5000).is_some());
}

#[test]
fn files_without_whole_file_hashes_are_passed_over_and_comments_and_blank_lines_skipped() {
    let index = index(&[
        ("daily.ndb", false, "Body.Sig:0:*:414243\n"),
        ("daily.mdb", false, "5000:0123:Section\n"),
        ("daily.hdb", false, &format!("# a comment\n\n{MD5}:5000:Kept\n")),
    ]);
    assert_eq!(index.len(), 1);
}

#[test]
fn a_line_the_host_cannot_read_is_refused_with_its_file_and_line() {
    let mut index = HashSignatures::new(FLOOR);
    let cases = [
        ("x.hdb", format!("{MD5}:5000:Fine\nabc:5000:Short\n"), 2, "3 characters"),
        ("x.hsb", format!("{}:5000:NotHex\n", "zz".repeat(16)), 1, "not hex"),
        ("x.hdb", format!("{MD5}:big:BadSize\n"), 1, "neither a number nor `*`"),
        ("x.hdb", format!("{MD5}:5000\n"), 1, "is not `hash:size:Name`"),
        ("x.hdb", format!("{MD5}:5000:\n"), 1, "no name"),
    ];
    for (file, text, line, problem) in cases {
        let err = index.add_file(file, false, &text).unwrap_err();
        assert_eq!((err.file.as_str(), err.line), (file, line), "{err}");
        assert!(err.problem.contains(problem), "{err}");
    }
}

#[test]
fn an_ignore_entry_with_a_line_digest_silences_that_line_only() {
    use md5::Digest as _;
    let other = "fedcba9876543210fedcba9876543210";
    let first = format!("{MD5}:5000:Same.Name");
    let second = format!("{other}:5000:Same.Name");
    let first_md5 = hex::encode(md5::Md5::digest(first.as_bytes()));
    let index = index(&[
        ("a.hdb", false, &format!("{first}\n{second}\n")),
        ("local.ign2", false, &format!("Same.Name:{first_md5}\n")),
    ]);
    assert_eq!(index.lookup(&[(HashKind::Md5, &digest(MD5))], 5000), None);
    assert!(
        index.lookup(&[(HashKind::Md5, &digest(other))], 5000).is_some(),
        "the other line stays"
    );
}

#[test]
fn extensions_count_in_any_case() {
    let index = index(&[("LOCAL.HDB", false, &format!("{MD5}:5000:Upper\n"))]);
    assert_eq!(index.len(), 1);
}

#[test]
fn kinds_over_a_size_are_those_of_larger_signatures_and_of_any_size() {
    let index = index(&[
        ("local.hdb", false, &format!("{MD5}:5000:Big.Bad\n")),
        ("local.hsb", false, &format!("{SHA256}:*:Any.Size:73\n")),
    ]);
    assert_eq!(index.kinds_over(4999), [HashKind::Md5, HashKind::Sha256]);
    // Nothing larger than 5000 but the any-size SHA-256.
    assert_eq!(index.kinds_over(5000), [HashKind::Sha256]);
    let md5_only = self::index(&[("local.hdb", false, &format!("{MD5}:5000:Big.Bad\n"))]);
    assert!(md5_only.kinds_over(5000).is_empty());
}
