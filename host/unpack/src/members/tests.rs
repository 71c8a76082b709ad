//! The member walk's branches, on archives made in memory.

use super::*;
use crate::samples;

/// What the walk handed over, in order.
#[derive(Debug, Default)]
struct Recorded {
    members: Vec<(String, Vec<u8>)>,
    not_handed: Vec<(String, UnscannableReason)>,
    /// Where each member handed over lies, as parts.
    paths: Vec<MemberPath>,
    /// Stop after this many members.
    stop_after: Option<usize>,
    /// Spools containers over the limit (in memory): their sizes.
    spools: Option<Vec<u64>>,
}

impl Sink for Recorded {
    fn member(&mut self, path: &MemberPath, size: Option<u64>, body: &mut dyn Read) -> Result<(), Halt> {
        let mut bytes = Vec::new();
        if body.read_to_end(&mut bytes).is_err() {
            return Err(Halt::BySink);
        }
        if let Some(size) = size {
            assert_eq!(size, bytes.len() as u64, "{path}: the size the container says");
        }
        self.members.push((path.to_string(), bytes));
        self.paths.push(path.clone());
        match self.stop_after {
            Some(n) if self.members.len() >= n => Err(Halt::BySink),
            _ => Ok(()),
        }
    }

    fn not_handed(&mut self, path: &MemberPath, reason: UnscannableReason, _detail: String) -> Result<(), Halt> {
        self.not_handed.push((path.to_string(), reason));
        Ok(())
    }

    fn spool(
        &mut self,
        _path: &MemberPath,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Option<Box<dyn SpooledContainer>>, Halt> {
        let Some(spools) = &mut self.spools else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes).map_err(|_| Halt::BySink)?;
        assert_eq!(bytes.len() as u64, size);
        spools.push(size);
        Ok(Some(Box::new(Cursor::new(bytes))))
    }

    fn spool_unsized(&mut self, path: &MemberPath, body: &mut dyn Read) -> Result<Option<SpooledStream>, Halt> {
        let Some(spools) = &mut self.spools else {
            return self.member(path, None, body).map(|()| None);
        };
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes).map_err(|_| Halt::BySink)?;
        let size = bytes.len() as u64;
        spools.push(size);
        Ok(Some(SpooledStream {
            body: Box::new(Cursor::new(bytes)),
            len: size,
        }))
    }
}

fn walk_with(bytes: Vec<u8>, name: &str, limits: &WalkLimits) -> (Result<Walked, Halt>, Recorded) {
    let mut sink = Recorded::default();
    let walked = walk(Cursor::new(bytes), name, limits, &mut sink);
    (walked, sink)
}

fn paths(recorded: &Recorded) -> Vec<&str> {
    recorded.members.iter().map(|(path, _)| path.as_str()).collect()
}

fn stopped(result: &Result<Walked, Halt>) -> (UnscannableReason, String) {
    match result {
        Err(Halt::Stop { reason, detail }) => (*reason, detail.clone()),
        other => panic!("expected the walk to stop, got {other:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Where a zip's end-of-directory record starts (no comment).
fn end_record(zip: &[u8]) -> usize {
    memchr::memmem::rfind(zip, b"PK\x05\x06").unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    samples::wrap(Format::Gzip, bytes, "x").unwrap()
}

#[test]
fn only_strong_magic_numbers_are_walkable() {
    assert_eq!(walkable(&samples::tar(&[("a", b"a")])), Some(Format::Tar));
    assert_eq!(walkable(&samples::zip(&[("a", b"a")], 8)), Some(Format::Zip));
    assert_eq!(walkable(&gzip(b"a")), Some(Format::Gzip));
    assert_eq!(
        walkable(&samples::wrap(Format::Zstd, b"a", "a").unwrap()),
        Some(Format::Zstd)
    );
    assert_eq!(walkable(&samples::wrap(Format::Lzma, b"a", "a").unwrap()), None);
    assert_eq!(walkable(b"plain text, nothing inside"), None);
    assert_eq!(walkable(&samples::seven_zip(&[("a", b"a")])), Some(Format::SevenZip));
}

#[test]
fn a_7z_is_walked_member_by_member_and_its_headers_are_handed_over_too() {
    let eicar = samples::eicar();
    let seven = samples::seven_zip(&[("a.txt", b"hello"), ("bin/x.com", &eicar), ("c.txt", b"")]);
    assert!(declared(
        "up/t.7z",
        Some("application/x-7z-compressed"),
        Format::SevenZip
    ));
    let (walked, recorded) = walk_with(seven.clone(), "up/t.7z", &WalkLimits::default());
    // Every member is handed over, and still the walk ends short of
    // clean: a 7z's packed bytes cannot be proven read to their end.
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::UnsupportedContainer, "{detail}");
    assert!(detail.contains("not clean"), "{detail}");
    let found = paths(&recorded);
    assert_eq!(found[..2], ["up/t.7z!/a.txt", "up/t.7z!/bin/x.com"]);
    assert_eq!(recorded.members[1].1, eicar);
    assert_eq!(recorded.paths[1].names(), ["bin/x.com"]);
    // The headers (at the end of a 7z) are no member's data: handed over
    // behind the banner, never skipped.
    let (outside, bytes) = &recorded.members[2];
    assert!(outside.contains("outside every member"), "{outside}");
    assert!(bytes.starts_with(OUTSIDE_BANNER), "{bytes:?}");
    // Not the start header (checked whole): what follows the banner must
    // not pass for a 7z of its own.
    assert!(!contains(bytes, b"7z\xbc\xaf\x27\x1c"));
    assert_eq!(recorded.members.len(), 3, "{found:?}");
}

#[test]
fn a_7z_whose_start_header_fails_its_crc_is_malformed_before_any_reader_searches_it() {
    let mut seven = samples::seven_zip(&[("a.txt", b"hello")]);
    // Zeroed, a reader would look for a header byte by byte through the
    // last megabyte: a ranged GET each.
    seven[8..32].fill(0);
    let (walked, recorded) = walk_with(seven, "z.7z", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::Malformed, "{detail}");
    assert!(detail.contains("CRC"), "{detail}");
    assert!(recorded.members.is_empty());
}

#[test]
fn a_7z_in_another_coder_is_walked_and_a_broken_one_is_malformed() {
    let seven = samples::seven_zip_with(&[("a.txt", b"hello bzip2")], sevenz_rust2::EncoderMethod::BZIP2);
    let (walked, recorded) = walk_with(seven.clone(), "b.7z", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::UnsupportedContainer);
    assert_eq!(recorded.members[0], ("b.7z!/a.txt".to_owned(), b"hello bzip2".to_vec()));

    let big = samples::random_bytes(200_000, 3);
    let mut cut = samples::seven_zip(&[("big.bin", &big)]);
    cut.truncate(cut.len() / 2);
    let (walked, _) = walk_with(cut, "cut.7z", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::Malformed, "{detail}");
    assert!(detail.starts_with("cut.7z: "), "{detail}");
}

#[test]
fn a_7z_with_more_members_than_the_limit_stops_before_any_is_read() {
    let seven = samples::seven_zip(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let limits = WalkLimits {
        max_members: 2,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(seven, "many.7z", &limits);
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(recorded.members.is_empty());
}

#[test]
fn a_7z_whose_block_expands_past_the_ratio_is_a_bomb() {
    let zeros = vec![0u8; 80 << 20];
    let seven = samples::seven_zip(&[("zeros.bin", &zeros)]);
    assert!(seven.len() < 1 << 20, "{}", seven.len());
    let limits = WalkLimits {
        member_bytes: 1 << 20,
        max_ratio: 100,
        ..WalkLimits::default()
    };
    let (walked, _) = walk_with(seven, "bomb.7z", &limits);
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
}

#[test]
fn the_last_member_of_a_tar_gz_reaches_the_sink_with_its_path() {
    let eicar = samples::eicar();
    let tar = samples::tar(&[
        ("docs/a.txt", b"first"),
        ("docs/b.txt", b"second"),
        ("bin/x.com", &eicar),
    ]);
    let (walked, recorded) = walk_with(gzip(&tar), "big.tar.gz", &WalkLimits::default());
    let walked = walked.unwrap();
    assert_eq!(
        paths(&recorded),
        [
            "big.tar.gz!/big.tar!/docs/a.txt",
            "big.tar.gz!/big.tar!/docs/b.txt",
            "big.tar.gz!/big.tar!/bin/x.com",
            "big.tar.gz!/big.tar!/(tar headers and padding outside every member)"
        ]
    );
    assert_eq!(recorded.members[2].1, eicar);
    // The headers, names in them, go to the engine after a banner.
    let headers = &recorded.members[3].1;
    assert!(headers.starts_with(OUTSIDE_BANNER) && contains(headers, b"docs/b.txt"));
    assert!(!contains(headers, &eicar), "no member's data");
    assert_eq!(walked.members, 4);
    // The tar reader stops at the end-of-archive blocks, before the padding.
    assert!(
        walked.expanded > 3 * 512 && walked.expanded <= tar.len() as u64,
        "{walked:?}"
    );
}

#[test]
fn a_zip_is_read_by_its_directory_and_a_tar_gz_inside_it_is_walked_too() {
    let eicar = samples::eicar();
    let inner = gzip(&samples::tar(&[("deep/x.com", &eicar)]));
    assert!(inner.len() > 100);
    let zip = samples::zip(&[("a.txt", b"hello"), ("nested/inner.tgz", &inner)], 8);
    // Members that fit go whole (the engine opens what is inside); this
    // one is over the limit, so the host walks it.
    let limits = WalkLimits {
        member_bytes: 100,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(zip, "outer.zip", &limits);
    walked.unwrap();
    assert_eq!(
        paths(&recorded),
        [
            "outer.zip!/a.txt",
            "outer.zip!/nested/inner.tgz!/inner!/deep/x.com",
            "outer.zip!/nested/inner.tgz!/inner!/(tar headers and padding outside every member)"
        ]
    );
}

#[test]
fn a_members_path_keeps_each_name_whole_even_one_that_looks_like_a_location() {
    let inner = gzip(&samples::tar(&[("deep/x.com", &samples::random_bytes(60, 1))]));
    // A name chosen to pass for a nested member in the location string.
    let zip = samples::zip(&[("a.zip!/evil.exe", b"hello"), ("nested/inner.tgz", &inner)], 8);
    let limits = WalkLimits {
        member_bytes: 100,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(zip, "up/outer.zip", &limits);
    walked.unwrap();
    // The name is one part, and shows as one: its `!/` is escaped.
    assert_eq!(recorded.paths[0].to_string(), "up/outer.zip!/a.zip\\!/evil.exe");
    assert_eq!(recorded.paths[0].object(), "up/outer.zip");
    assert_eq!(recorded.paths[0].names(), ["a.zip\\!/evil.exe"]);
    assert_eq!(recorded.paths[1].names(), ["nested/inner.tgz", "inner", "deep/x.com"]);
    assert_eq!(MemberPath::of("k").names(), [] as [String; 0]);
}

#[test]
fn a_member_over_the_engine_limit_is_reported_too_large_and_the_walk_goes_on() {
    let big = vec![b'x'; 4096];
    let tar = samples::tar(&[("big.bin", &big), ("small.txt", b"ok")]);
    let limits = WalkLimits {
        member_bytes: 1024,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(tar, "t.tar", &limits);
    walked.unwrap();
    assert_eq!(
        recorded.not_handed,
        [("t.tar!/big.bin".to_owned(), UnscannableReason::TooLarge)]
    );
    assert_eq!(
        paths(&recorded),
        [
            "t.tar!/small.txt",
            "t.tar!/(tar headers and padding outside every member)"
        ]
    );
}

#[test]
fn a_container_member_over_the_limit_is_walked_not_refused() {
    let inner = samples::tar(&[("a.txt", &vec![b'a'; 2048]), ("b.txt", b"b")]);
    let outer = samples::tar(&[("inner.tar", &inner)]);
    let limits = WalkLimits {
        member_bytes: 4096,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(outer, "o.tar", &limits);
    walked.unwrap();
    assert!(recorded.not_handed.is_empty());
    assert_eq!(
        paths(&recorded),
        [
            "o.tar!/inner.tar!/a.txt",
            "o.tar!/inner.tar!/b.txt",
            "o.tar!/inner.tar!/(tar headers and padding outside every member)",
            "o.tar!/(tar headers and padding outside every member)"
        ]
    );
}

#[test]
fn an_encrypted_zip_member_is_unscannable_and_the_rest_is_still_walked() {
    let encrypted = samples::zip_encrypted_member("secret.exe");
    let mut sink = Recorded::default();
    walk(Cursor::new(encrypted), "e.zip", &WalkLimits::default(), &mut sink).unwrap();
    assert_eq!(
        sink.not_handed,
        [("e.zip!/secret.exe".to_owned(), UnscannableReason::Encrypted)]
    );
    assert_eq!(
        paths(&sink),
        ["e.zip!/(headers, directory and bytes outside every member)"]
    );
}

#[test]
fn a_truncated_tar_gz_is_malformed_never_finished() {
    let tar = samples::tar(&[("a.txt", &vec![b'a'; 100_000]), ("b.txt", b"b")]);
    let mut tgz = gzip(&tar);
    tgz.truncate(tgz.len() / 2);
    let (walked, _) = walk_with(tgz, "cut.tar.gz", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::Malformed);
}

#[test]
fn a_truncated_zip_is_malformed() {
    let mut zip = samples::zip(&[("a.txt", b"hello")], 8);
    zip.truncate(zip.len() - 10);
    let (walked, _) = walk_with(zip, "cut.zip", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::Malformed);
}

#[test]
fn zip_members_sharing_bytes_are_refused_as_a_bomb() {
    let mut zip = samples::zip(&[("a.txt", b"first member"), ("b.txt", b"second member")], 0);
    // Point the second directory entry at the first member's header.
    let second = memchr::memmem::find_iter(&zip, b"PK\x01\x02").nth(1).unwrap();
    zip[second + 42..second + 46].copy_from_slice(&0u32.to_le_bytes());
    let (walked, recorded) = walk_with(zip, "overlap.zip", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::Malformed, "{detail}");
    assert!(recorded.members.is_empty(), "nothing handed over before the check");
}

#[test]
fn a_stream_expanding_past_the_ratio_is_a_bomb_and_stops() {
    let zeros = vec![0u8; 80 << 20];
    let zst = samples::wrap(Format::Zstd, &zeros, "z").unwrap();
    assert!(zst.len() < 80 << 10, "{} bytes", zst.len());
    let (walked, _) = walk_with(zst, "bomb.zst", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded);
    assert!(detail.contains("archive bomb"), "{detail}");
}

#[test]
fn the_expansion_limit_stops_the_walk() {
    let tar = samples::tar(&[("a.txt", &vec![b'a'; 10_000])]);
    let limits = WalkLimits {
        max_expanded: 4096,
        ..WalkLimits::default()
    };
    let (walked, _) = walk_with(gzip(&tar), "t.tar.gz", &limits);
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded);
    assert!(detail.contains("4096 bytes decompressed"), "{detail}");
}

#[test]
fn the_member_count_limit_stops_the_walk() {
    let tar = samples::tar(&[("1", b"1"), ("2", b"2"), ("3", b"3"), ("4", b"4")]);
    let limits = WalkLimits {
        max_members: 3,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(tar, "many.tar", &limits);
    assert_eq!(stopped(&walked).0, UnscannableReason::LimitsExceeded);
    assert_eq!(recorded.members.len(), 3);
}

#[test]
fn a_zip_directory_naming_too_many_members_stops_before_any_is_read() {
    let zip = samples::zip(&[("1", b"1"), ("2", b"2"), ("3", b"3")], 0);
    let limits = WalkLimits {
        max_members: 2,
        ..WalkLimits::default()
    };
    let (walked, recorded) = walk_with(zip, "many.zip", &limits);
    assert_eq!(stopped(&walked).0, UnscannableReason::LimitsExceeded);
    assert!(recorded.members.is_empty());
}

#[test]
fn nesting_past_the_depth_limit_stops_the_walk() {
    let nested = gzip(&gzip(&gzip(&samples::tar(&[("x", b"x")]))));
    let limits = WalkLimits {
        max_depth: 2,
        ..WalkLimits::default()
    };
    let (walked, _) = walk_with(nested, "n.gz", &limits);
    assert_eq!(stopped(&walked).0, UnscannableReason::LimitsExceeded);
}

#[test]
fn the_sink_stops_the_walk() {
    let tar = samples::tar(&[("1", b"1"), ("2", b"2")]);
    let mut sink = Recorded {
        stop_after: Some(1),
        ..Recorded::default()
    };
    let walked = walk(Cursor::new(tar), "t.tar", &WalkLimits::default(), &mut sink);
    assert_eq!(walked, Err(Halt::BySink));
    assert_eq!(sink.members.len(), 1);
}

#[test]
fn bytes_that_are_no_walkable_container_are_refused() {
    let (walked, _) = walk_with(b"just some text".to_vec(), "a.txt", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::UnsupportedContainer);
}

#[test]
fn a_single_compressed_stream_is_its_one_member() {
    let (walked, recorded) = walk_with(gzip(b"hello"), "notes.txt.gz", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        recorded.members,
        [("notes.txt.gz!/notes.txt".to_owned(), b"hello".to_vec())]
    );
}

#[test]
fn bytes_outside_every_zip_member_are_handed_over_too() {
    let eicar = samples::eicar();
    let zip = samples::zip(&[("a.txt", b"hello")], 0);
    // A payload between the last member and the directory, where readers
    // of local headers (not of the directory) find it.
    let directory = memchr::memmem::find(&zip, b"PK\x01\x02").unwrap();
    let mut hidden = zip[..directory].to_vec();
    hidden.extend_from_slice(&eicar);
    hidden.extend_from_slice(&zip[directory..]);
    let end = hidden.len() - 22;
    let offset = u32::from_le_bytes(hidden[end + 16..end + 20].try_into().unwrap()) + eicar.len() as u32;
    hidden[end + 16..end + 20].copy_from_slice(&offset.to_le_bytes());
    let (walked, recorded) = walk_with(hidden, "hidden.zip", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(paths(&recorded)[0], "hidden.zip!/a.txt");
    let (path, bytes) = &recorded.members[1];
    assert!(path.contains("outside every member"), "{path}");
    assert!(
        contains(bytes, &eicar),
        "{path}: the hidden bytes are not in what was handed over"
    );
}

#[test]
fn bytes_appended_after_a_tar_are_handed_over_not_skipped() {
    let eicar = samples::eicar();
    let mut tar = samples::tar(&[("a.txt", b"hello")]);
    tar.extend_from_slice(&eicar);
    let (walked, recorded) = walk_with(tar, "t.tar", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        recorded.members[2],
        ("t.tar!/(after the end of the archive)".to_owned(), eicar)
    );
}

#[test]
fn bytes_appended_after_a_compressed_stream_are_never_skipped() {
    let eicar = samples::eicar();
    for format in [Format::Gzip, Format::Bzip2, Format::Xz, Format::Zstd] {
        let mut bytes = samples::wrap(format, &samples::tar(&[("a.txt", b"hello")]), "t.tar").unwrap();
        bytes.extend_from_slice(&eicar);
        let (walked, recorded) = walk_with(bytes, "t.tar.x", &WalkLimits::default());
        let handed = recorded
            .members
            .iter()
            .any(|(_, bytes)| bytes.windows(eicar.len()).any(|w| w == eicar));
        assert!(
            handed || matches!(walked, Err(Halt::Stop { .. })),
            "{format}: the appended bytes were skipped: {walked:?} {:?}",
            paths(&recorded)
        );
    }
}

#[test]
fn the_stretches_outside_every_member_are_found() {
    assert_eq!(
        complement(&[(30, 100), (130, 200)], 260),
        [(0, 30), (100, 130), (200, 260)]
    );
    assert_eq!(complement(&[(0, 260)], 260), []);
    assert_eq!(complement(&[(50, 400)], 260), [(0, 50)]);
}

#[test]
fn a_small_member_that_starts_like_a_tar_reaches_the_engine_whole() {
    // A page whose first block is a tar header of an empty entry: walked,
    // it would hand nothing over.
    let mut page = samples::tar(&[("<script>alert(1)</script>", b"")]);
    page.truncate(512);
    page.extend_from_slice(b"<html><script>payload()</script></html>");
    let zip = samples::zip(&[("x.html", &page)], 8);
    let (walked, recorded) = walk_with(zip, "o.zip", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(recorded.members[0], ("o.zip!/x.html".to_owned(), page));
}

#[test]
fn a_zip_listing_one_name_twice_is_malformed() {
    let eicar = samples::eicar();
    let zip = samples::zip(&[("a.txt", &eicar), ("b.txt", b"clean")], 8);
    // Rename the second entry, in its local header and the directory.
    let mut twice = zip.clone();
    for at in memchr::memmem::find_iter(&zip, b"b.txt") {
        twice[at] = b'a';
    }
    let (walked, _) = walk_with(twice, "twice.zip", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::Malformed);
}

#[test]
fn bytes_hidden_after_a_deflate_stream_inside_its_compressed_size_are_malformed() {
    let eicar = samples::eicar();
    let zip = samples::zip(&[("a.txt", &b"hello ".repeat(100))], 8);
    let le32 = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let name_len = u16::from_le_bytes([zip[26], zip[27]]) as usize;
    let extra_len = u16::from_le_bytes([zip[28], zip[29]]) as usize;
    let packed = le32(&zip, 18) as usize;
    let data_end = 30 + name_len + extra_len + packed;
    let mut hidden = zip[..data_end].to_vec();
    hidden.extend_from_slice(&eicar);
    hidden.extend_from_slice(&zip[data_end..]);
    let grown = (packed + eicar.len()) as u32;
    hidden[18..22].copy_from_slice(&grown.to_le_bytes());
    let directory = memchr::memmem::find(&hidden, b"PK\x01\x02").unwrap();
    hidden[directory + 20..directory + 24].copy_from_slice(&grown.to_le_bytes());
    let end = end_record(&hidden);
    let offset = le32(&hidden, end + 16) + eicar.len() as u32;
    hidden[end + 16..end + 20].copy_from_slice(&offset.to_le_bytes());
    let (walked, recorded) = walk_with(hidden, "hidden.zip", &WalkLimits::default());
    let handed = recorded.members.iter().any(|(_, bytes)| contains(bytes, &eicar));
    assert!(
        handed || matches!(walked, Err(Halt::Stop { .. })),
        "the hidden bytes were skipped: {walked:?}"
    );
}

#[test]
fn a_zip_comment_reaches_the_engine() {
    let eicar = samples::eicar();
    let mut zip = samples::zip(&[("a.txt", b"hello")], 8);
    let end = end_record(&zip);
    zip[end + 20..end + 22].copy_from_slice(&(eicar.len() as u16).to_le_bytes());
    zip.extend_from_slice(&eicar);
    let (walked, recorded) = walk_with(zip, "c.zip", &WalkLimits::default());
    walked.unwrap();
    assert!(
        recorded.members.iter().any(|(_, bytes)| contains(bytes, &eicar)),
        "{:?}",
        paths(&recorded)
    );
}

#[test]
fn a_sparse_tar_entry_is_unscannable() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_size(512);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "holes.bin", &[7u8; 512][..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let (walked, recorded) = walk_with(tar, "s.tar", &WalkLimits::default());
    assert!(
        recorded
            .not_handed
            .iter()
            .any(|(_, reason)| *reason == UnscannableReason::UnsupportedContainer)
            || matches!(walked, Err(Halt::Stop { .. })),
        "{walked:?} {recorded:?}"
    );
    assert!(recorded.members.is_empty(), "{recorded:?}");
}

#[test]
fn only_objects_named_and_typed_as_their_container_are_walked() {
    assert!(declared("backups/2026.tar.gz", None, Format::Gzip));
    assert!(declared("DATA.ZIP", Some("application/zip"), Format::Zip));
    assert!(declared("x.tar.zst", Some("application/octet-stream"), Format::Zstd));
    assert!(!declared("setup.exe", Some("application/zip"), Format::Zip));
    assert!(!declared("page.zip", Some("text/html"), Format::Zip));
    assert!(!declared("photo.png", None, Format::Gzip));
    assert!(!declared("x.tar", None, Format::Zip));
}

/// Counts what it is handed, keeping only the last member's first bytes.
#[derive(Default)]
struct Counting {
    members: u64,
    bytes: u64,
    last: (String, Vec<u8>),
    not_handed: Vec<(String, UnscannableReason)>,
}

impl Sink for Counting {
    fn member(&mut self, path: &MemberPath, _size: Option<u64>, body: &mut dyn Read) -> Result<(), Halt> {
        let mut head = Vec::new();
        (&mut *body)
            .take(1024)
            .read_to_end(&mut head)
            .map_err(|_| Halt::BySink)?;
        self.bytes += head.len() as u64 + io::copy(body, &mut io::sink()).map_err(|_| Halt::BySink)?;
        self.members += 1;
        self.last = (path.to_string(), head);
        Ok(())
    }

    fn not_handed(&mut self, path: &MemberPath, reason: UnscannableReason, _detail: String) -> Result<(), Halt> {
        self.not_handed.push((path.to_string(), reason));
        Ok(())
    }
}

/// A zip64 past 4 GiB on disk, EICAR as its last member: offsets that do
/// not fit 32 bits. Slow (writes 4.5 GB): `cargo test -p bucketscan-unpack
/// -- --ignored zip64`.
#[test]
#[ignore]
fn a_zip64_past_four_gib_is_walked_to_its_last_member() {
    let file = tempfile::tempfile().unwrap();
    let mut writer = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let chunk = vec![0x5au8; 64 << 20];
    for i in 0..72 {
        writer.start_file(format!("data/part-{i:04}.bin"), options).unwrap();
        std::io::Write::write_all(&mut writer, &chunk).unwrap();
    }
    writer.start_file("last/eicar.txt", options).unwrap();
    std::io::Write::write_all(&mut writer, &samples::eicar()).unwrap();
    let file = writer.finish().unwrap();
    let mut sink = Counting::default();
    let walked = walk(
        std::io::BufReader::new(file),
        "big.zip",
        &WalkLimits::default(),
        &mut sink,
    );
    assert!(walked.is_ok(), "{walked:?}");
    assert!(sink.not_handed.is_empty(), "{:?}", sink.not_handed);
    assert!(sink.bytes > 72 * (64 << 20), "{}", sink.bytes);
}

#[test]
fn an_object_whose_name_declares_no_container_needs_no_look() {
    assert!(declares_a_container("backups/2026.tar.gz", None));
    assert!(declares_a_container("a.zip", Some("application/zip")));
    assert!(!declares_a_container("movie.mp4", Some("video/mp4")));
    assert!(!declares_a_container("page.zip", Some("text/html")));
}

#[test]
fn a_member_cannot_pass_for_the_walks_own_members() {
    // The uploader names members; one named like the bytes outside every
    // member, or like a stream's content, still shows as its own.
    let zip = samples::zip(
        &[
            ("(headers, directory and bytes outside every member)", b"mine"),
            ("(decompressed)", b"also mine"),
            ("(after the end of the archive)", b"mine too"),
            // One name that reads like two parts.
            ("x.gz!/(decompressed)", b"and this"),
        ],
        0,
    );
    let (walked, recorded) = walk_with(zip, "z.zip", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        paths(&recorded),
        [
            "z.zip!/\\(headers, directory and bytes outside every member)",
            "z.zip!/\\(decompressed)",
            "z.zip!/\\(after the end of the archive)",
            "z.zip!/x.gz\\!/(decompressed)",
            "z.zip!/(headers, directory and bytes outside every member)",
        ]
    );
    let (walked, recorded) = walk_with(gzip(b"x"), "(weird).gz", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(paths(&recorded), ["(weird).gz!/\\(weird)"]);
    let (walked, recorded) = walk_with(gzip(b"x"), ".gz", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(paths(&recorded), [".gz!/(decompressed)"]);
}

#[test]
fn member_names_are_shown_escaped_and_one_to_one() {
    let zip = samples::zip(
        &[
            ("evil\u{202e}fdp.exe", b"a"),
            ("dir\\x.exe", b"b"),
            ("line\nforged", b"c"),
        ],
        0,
    );
    let (walked, recorded) = walk_with(zip, "n.zip", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        &paths(&recorded)[..3],
        [
            "n.zip!/evil\\u{202e}fdp.exe",
            "n.zip!/dir\\\\x.exe",
            "n.zip!/line\\nforged"
        ]
    );
    // Look-alikes of the walk's own names and separators read as escapes.
    let zip = samples::zip(
        &[
            ("\u{ff08}decompressed\u{ff09}", b"a"),
            ("a.zip\u{01c3}\u{2215}x.exe", b"b"),
            ("caf\u{e9}.txt", b"c"),
        ],
        0,
    );
    let (walked, recorded) = walk_with(zip, "n.zip", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        &paths(&recorded)[..3],
        [
            "n.zip!/\\u{ff08}decompressed\\u{ff09}",
            "n.zip!/a.zip\\u{1c3}\\u{2215}x.exe",
            "n.zip!/caf\u{e9}.txt"
        ]
    );
}

#[test]
fn an_iso_image_is_walked_file_by_file_every_other_byte_too_and_never_called_clean() {
    let eicar = samples::eicar();
    let readme = vec![b'r'; 5000];
    let image = samples::iso(&[("docs/eicar.txt", &eicar), ("readme.txt", &readme)]);
    assert_eq!(walkable(&image[..WALK_HEAD_BYTES]), Some(Format::Iso9660));
    assert_eq!(
        walkable(&image[..bucketscan_core::formats::SNIFF_BYTES]),
        None,
        "its magic is past the first sector"
    );
    assert!(declared(
        "backup.ISO",
        Some("application/x-iso9660-image"),
        Format::Iso9660
    ));
    assert!(!declared("backup.iso", Some("text/html"), Format::Iso9660));

    let (walked, recorded) = walk_with(image.clone(), "disc.iso", &WalkLimits::default());
    // Every file and byte handed over, and still never clean.
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::UnsupportedContainer, "{detail}");
    assert!(detail.ends_with("not clean"), "{detail}");
    // Each file once, though both the primary and the Joliet tree list it.
    let outside = "disc.iso!/(headers, directory and bytes outside every member)";
    let mut shown = paths(&recorded);
    shown.sort_unstable();
    assert_eq!(
        shown,
        [
            "disc.iso!/(headers, directory and bytes outside every member)",
            "disc.iso!/docs/eicar.txt",
            "disc.iso!/readme.txt"
        ]
    );
    let bytes_of = |path: &str| &recorded.members.iter().find(|(p, _)| p == path).unwrap().1;
    assert_eq!(bytes_of("disc.iso!/docs/eicar.txt"), &eicar);
    assert_eq!(bytes_of("disc.iso!/readme.txt"), &readme);
    // Nothing unread: the files and the rest add up to the image.
    let handed: usize = recorded.members.iter().map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(handed - OUTSIDE_BANNER.len(), image.len());
    assert!(contains(bytes_of(outside), b"CD001"), "the volume descriptors too");
}

#[test]
fn an_iso_cut_short_or_with_a_huge_path_table_is_never_walked_clean() {
    let image = samples::iso(&[("a.txt", b"a")]);
    let (walked, recorded) = walk_with(image[..17 * 2048].to_vec(), "cut.iso", &WalkLimits::default());
    assert_eq!(stopped(&walked).0, UnscannableReason::Malformed, "{walked:?}");
    assert!(recorded.members.is_empty());

    // The primary descriptor (sector 16) says its path table is 4 GiB: the
    // reader would try to hold it all.
    let mut huge = image.clone();
    huge[16 * 2048 + 132..16 * 2048 + 136].copy_from_slice(&u32::MAX.to_le_bytes());
    let (walked, _) = walk_with(huge, "huge.iso", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(detail.contains("path table of 4294967295 bytes"), "{detail}");
}

#[test]
fn iso_files_are_listed_once_and_extents_that_overlap_or_run_past_the_end_are_refused() {
    use super::iso::{IsoFile, distinct};
    let file = |name: &str, extents: &[(u64, u64)]| IsoFile {
        name: name.into(),
        extents: extents.to_vec(),
    };
    let listed = distinct(
        vec![
            file("DOCS/A.TXT;1", &[(4096, 4100)]),
            file("docs/a.txt", &[(4096, 4100)]),
            file("NOEXT.;1", &[(6144, 6150)]),
            file("noext", &[(6144, 6150)]),
            file("empty", &[]),
            file("b", &[(8192, 9000), (10240, 10300)]),
            // One tree says readme, the other setup.exe: read once (an
            // image is never clean, so no name gets it promoted).
            file("README.TXT;1", &[(12288, 12300)]),
            file("setup.exe", &[(12288, 12300)]),
        ],
        20_000,
    )
    .unwrap();
    let names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["DOCS/A.TXT;1", "NOEXT.;1", "b", "README.TXT;1"],
        "the same extents once, under their first name"
    );

    let overlap = distinct(vec![file("a", &[(4096, 6000)]), file("b", &[(5000, 5100)])], 20_000);
    assert!(overlap.unwrap_err().contains("a and b overlap"));
    let past = distinct(vec![file("tail", &[(4096, 30_000)])], 20_000);
    assert!(past.unwrap_err().contains("past the image's end"));
}

#[test]
fn an_iso_with_damaged_descriptors_or_directories_is_refused_or_read_whole_never_clean() {
    let image = samples::iso(&[("docs/a.txt", b"alpha"), ("b.txt", &[b'b'; 3000])]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        let mut damaged = image.clone();
        for _ in 0..4 {
            // xorshift: the same damage every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = 16 * 2048 + (state % (damaged.len() as u64 - 16 * 2048)) as usize;
            damaged[at] ^= (state >> 32) as u8 | 1;
        }
        let (walked, recorded) = walk_with(damaged.clone(), "d.iso", &WalkLimits::default());
        assert!(walked.is_err(), "round {round}: an image is never walked clean");
        if let Err(Halt::Stop {
            reason: UnscannableReason::UnsupportedContainer,
            ..
        }) = walked
        {
            // Walked to its end: it read every byte of the image.
            let handed: usize = recorded.members.iter().map(|(_, bytes)| bytes.len()).sum();
            assert!(
                handed >= damaged.len(),
                "round {round}: {handed} of {} bytes",
                damaged.len()
            );
        }
    }
}

#[test]
fn what_a_pax_record_holds_reaches_the_engine_with_the_headers() {
    let eicar = samples::eicar();
    let tar = samples::tar_with_pax(&[("SCHILY.xattr.user.note", &eicar)], "a.txt", 5, b"hello");
    let (walked, recorded) = walk_with(tar, "t.tar", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        paths(&recorded),
        ["t.tar!/a.txt", "t.tar!/(tar headers and padding outside every member)"]
    );
    assert_eq!(recorded.members[0].1, b"hello");
    assert!(contains(&recorded.members[1].1, &eicar));
}

#[test]
fn a_pax_size_is_the_members_size_as_gnu_tar_reads_it() {
    // The header says 0 bytes; the PAX record says 5: a reader that
    // trusts the header would read the member's data as the next header.
    let tar = samples::tar_with_pax(&[("size", b"5")], "a.txt", 0, b"hello");
    let (walked, recorded) = walk_with(tar, "t.tar", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(recorded.members[0], ("t.tar!/a.txt".to_owned(), b"hello".to_vec()));
}

#[test]
fn a_long_name_past_the_header_budget_stops_the_walk_before_it_fills_memory() {
    let tar = samples::tar_with_long_name(2 << 20, &samples::tar(&[("a.txt", b"hello")]));
    let (walked, recorded) = walk_with(gzip(&tar), "t.tar.gz", &WalkLimits::default());
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(
        detail.starts_with("t.tar.gz!/t.tar: more than 1048576 bytes of tar headers"),
        "{detail}"
    );
    assert!(recorded.members.is_empty());
    // Within the budget, the same shape is walked, the name kept.
    let tar = samples::tar_with_long_name(4096, &samples::tar(&[("a.txt", b"hello")]));
    let (walked, recorded) = walk_with(gzip(&tar), "t.tar.gz", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(recorded.members[0].1, b"hello");
    assert!(contains(&recorded.members[1].1, &[b'a'; 4096]));
}

#[test]
fn a_global_header_is_read_as_headers_never_as_a_hidden_member() {
    // A `g` entry whose data is no PAX records at all: the tar reader
    // hands it over as an entry; its bytes go with the headers.
    let eicar = samples::eicar();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XGlobalHeader);
    header.set_size(eicar.len() as u64);
    header.set_path("pax_global_header").unwrap();
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(&eicar);
    tar.resize(1024, 0);
    tar.extend_from_slice(&samples::tar(&[("a.txt", b"hello")]));
    let (walked, recorded) = walk_with(tar, "t.tar", &WalkLimits::default());
    walked.unwrap();
    assert_eq!(
        paths(&recorded),
        ["t.tar!/a.txt", "t.tar!/(tar headers and padding outside every member)"]
    );
    assert!(contains(&recorded.members[1].1, &eicar));
    // Records that do not parse: what GNU tar makes of the members after
    // it is unknown.
    assert_eq!(
        recorded.not_handed,
        [(
            "t.tar!/(tar headers and padding outside every member)".to_owned(),
            UnscannableReason::UnsupportedContainer
        )]
    );
}

#[test]
fn a_global_header_is_harmless_with_comments_and_unproven_with_a_path() {
    let with = |records: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XGlobalHeader);
        header.set_size(records.len() as u64);
        header.set_path("pax_global_header").unwrap();
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(records);
        tar.resize(1024, 0);
        tar.extend_from_slice(&samples::tar(&[("a.txt", b"hello")]));
        walk_with(tar, "t.tar", &WalkLimits::default())
    };
    // What `git archive` writes: the commit, as a comment.
    let (walked, recorded) = with(b"52 comment=0123456789abcdef0123456789abcdef01234567\n");
    walked.unwrap();
    assert!(recorded.not_handed.is_empty(), "{:?}", recorded.not_handed);
    // GNU tar would name (or size) every member after it otherwise.
    let (walked, recorded) = with(b"17 path=evil.exe\n");
    walked.unwrap();
    assert_eq!(recorded.not_handed.len(), 1, "{:?}", recorded.not_handed);
    assert_eq!(recorded.not_handed[0].1, UnscannableReason::UnsupportedContainer);
}

/// A tar holding a short file and a zip of `members` named `name`.
fn tar_of_zip(name: &str, members: &[(&str, &[u8])]) -> Vec<u8> {
    samples::tar(&[("readme.txt", b"hello"), (name, &samples::zip(members, 8))])
}

fn spooling(limits: &WalkLimits, bytes: Vec<u8>, name: &str) -> (Result<Walked, Halt>, Recorded) {
    let mut sink = Recorded {
        spools: Some(Vec::new()),
        ..Recorded::default()
    };
    let walked = walk(Cursor::new(bytes), name, limits, &mut sink);
    (walked, sink)
}

#[test]
fn a_zip_over_the_limit_inside_a_tar_is_walked_from_the_spool() {
    let eicar = samples::eicar();
    let filler = samples::random_bytes(3000, 3);
    let (a, b) = filler.split_at(1500);
    let tar = tar_of_zip("inner.zip", &[("a.bin", a), ("b.bin", b), ("deep/x.com", &eicar)]);
    let limits = WalkLimits {
        member_bytes: 2048,
        ..WalkLimits::default()
    };
    let (walked, recorded) = spooling(&limits, tar.clone(), "t.tar");
    walked.unwrap();
    assert!(recorded.not_handed.is_empty(), "{:?}", recorded.not_handed);
    let paths = paths(&recorded);
    assert_eq!(
        paths[..4],
        [
            "t.tar!/readme.txt",
            "t.tar!/inner.zip!/a.bin",
            "t.tar!/inner.zip!/b.bin",
            "t.tar!/inner.zip!/deep/x.com"
        ]
    );
    assert_eq!(recorded.members[3].1, eicar);
    assert_eq!(recorded.spools.as_ref().unwrap().len(), 1);
    // A sink without room: too large, as before.
    let (walked, recorded) = walk_with(tar, "t.tar", &limits);
    walked.unwrap();
    assert_eq!(
        recorded.not_handed,
        [("t.tar!/inner.zip".to_owned(), UnscannableReason::TooLarge)]
    );
}

#[test]
fn a_zip_not_named_as_one_is_not_spooled_and_stays_too_large() {
    let filler = samples::random_bytes(3000, 3);
    let tar = tar_of_zip("setup.exe", &[("a.bin", &filler)]);
    let limits = WalkLimits {
        member_bytes: 2048,
        ..WalkLimits::default()
    };
    let (walked, recorded) = spooling(&limits, tar, "t.tar");
    walked.unwrap();
    assert_eq!(
        recorded.not_handed,
        [("t.tar!/setup.exe".to_owned(), UnscannableReason::TooLarge)]
    );
    assert!(recorded.spools.unwrap().is_empty());
}

#[test]
fn a_7z_and_an_iso_inside_a_zip_are_walked_from_the_spool_and_the_walk_goes_on() {
    let eicar = samples::eicar();
    let filler = samples::random_bytes(80_000, 4);
    let (a, b) = filler.split_at(40_000);
    let seven = samples::seven_zip(&[("a.bin", a), ("b.bin", b), ("x.com", b"clean")]);
    let image = samples::iso(&[("a.bin", a), ("b.bin", b), ("x.com", b"clean")]);
    let limits = WalkLimits {
        member_bytes: 64 << 10,
        ..WalkLimits::default()
    };
    for (name, inner) in [("in/b.7z", seven), ("in/c.iso", image)] {
        // Every member of the 7z or image read, it cannot be called clean;
        // what follows it is still read.
        let zip = samples::zip(&[(name, &inner), ("z/evil.com", &eicar)], 0);
        let (walked, recorded) = spooling(&limits, zip, "o.zip");
        walked.unwrap();
        assert_eq!(
            recorded.not_handed,
            [(format!("o.zip!/{name}"), UnscannableReason::UnsupportedContainer)]
        );
        let read: Vec<&str> = paths(&recorded);
        assert!(read.contains(&format!("o.zip!/{name}!/x.com").as_str()), "{read:?}");
        assert!(read.contains(&"o.zip!/z/evil.com"), "{read:?}");
    }
}

#[test]
fn spooled_containers_count_toward_the_depth_limit() {
    let filler = samples::random_bytes(3000, 3);
    let inner = samples::zip(&[("a.bin", &filler)], 0);
    let middle = samples::zip(&[("inner.zip", &inner)], 0);
    let tar = samples::tar(&[("middle.zip", &middle)]);
    let limits = WalkLimits {
        member_bytes: 2048,
        max_depth: 2,
        ..WalkLimits::default()
    };
    let (walked, _) = spooling(&limits, tar, "t.tar");
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(detail.contains("nested more than 2 deep"), "{detail}");
}

#[test]
fn a_zip_over_the_limit_inside_a_compressed_stream_is_walked_from_the_spool() {
    let eicar = samples::eicar();
    let filler = samples::random_bytes(3000, 3);
    let (a, b) = filler.split_at(1500);
    let zip = samples::zip(&[("a.bin", a), ("b.bin", b), ("deep/x.com", &eicar)], 0);
    let limits = WalkLimits {
        member_bytes: 2048,
        ..WalkLimits::default()
    };
    let (walked, recorded) = spooling(&limits, gzip(&zip), "up/b.zip.gz");
    let walked = walked.unwrap();
    assert!(recorded.not_handed.is_empty(), "{:?}", recorded.not_handed);
    let found = paths(&recorded);
    assert_eq!(
        found[..3],
        [
            "up/b.zip.gz!/b.zip!/a.bin",
            "up/b.zip.gz!/b.zip!/b.bin",
            "up/b.zip.gz!/b.zip!/deep/x.com"
        ]
    );
    // Its headers and directory too, and the zip itself never whole.
    assert!(found[3].contains("outside every member"), "{found:?}");
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(recorded.members[2].1, eicar);
    assert_eq!(recorded.spools.as_ref().unwrap(), &[zip.len() as u64]);
    // The zip walked is no member of its own; what it holds is.
    assert_eq!(walked.members, found.len() as u64);
    // A sink without room takes it as a member of unknown size.
    let (walked, recorded) = walk_with(gzip(&zip), "up/b.zip.gz", &limits);
    walked.unwrap();
    assert_eq!(paths(&recorded), ["up/b.zip.gz!/b.zip"]);
    assert_eq!(recorded.members[0].1, zip);
}

#[test]
fn a_zip_that_fits_inside_a_compressed_stream_is_handed_over_whole_after_spooling() {
    let zip = samples::zip(&[("a.txt", b"hello")], 8);
    let (walked, recorded) = spooling(&WalkLimits::default(), gzip(&zip), "b.zip.gz");
    assert_eq!(walked.unwrap().members, 1);
    assert_eq!(paths(&recorded), ["b.zip.gz!/b.zip"]);
    assert_eq!(recorded.members[0].1, zip);
    // Not named as a zip: a member of unknown size, never spooled.
    let (walked, recorded) = spooling(&WalkLimits::default(), gzip(&zip), "b.gz");
    walked.unwrap();
    assert_eq!(recorded.members.len(), 1);
    assert!(recorded.spools.unwrap().is_empty());
}

#[test]
fn a_zip_inside_a_compressed_stream_counts_toward_the_depth_and_member_limits() {
    let filler = samples::random_bytes(3000, 3);
    let large = samples::zip(&[("a.bin", &filler)], 0);
    let small = samples::zip(&[("a.txt", b"hello")], 8);
    let deep = WalkLimits {
        member_bytes: 2048,
        max_depth: 1,
        ..WalkLimits::default()
    };
    // Walked, it is a container one deeper than the stream.
    let (walked, recorded) = spooling(&deep, gzip(&large), "b.zip.gz");
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(recorded.members.is_empty(), "{:?}", paths(&recorded));
    // One that fits goes to the engine whole, as a member of known size
    // at that depth does.
    let (walked, recorded) = spooling(&deep, gzip(&small), "b.zip.gz");
    walked.unwrap();
    assert_eq!(paths(&recorded), ["b.zip.gz!/b.zip"]);
    let few = WalkLimits {
        max_members: 0,
        ..WalkLimits::default()
    };
    let (walked, recorded) = spooling(&few, gzip(&small), "b.zip.gz");
    let (reason, detail) = stopped(&walked);
    assert_eq!(reason, UnscannableReason::LimitsExceeded, "{detail}");
    assert!(recorded.spools.unwrap().is_empty());
}
