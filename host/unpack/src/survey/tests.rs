//! The survey's branches, on archives made in memory.

use super::*;
use crate::samples;
use std::io::Cursor;

fn formats(survey: &Survey) -> Vec<(String, String)> {
    survey
        .formats
        .iter()
        .map(|c| (c.path.clone(), c.format.name()))
        .collect()
}

fn survey_of(bytes: Vec<u8>, name: &str) -> Survey {
    survey(Cursor::new(bytes), name, None, &Limits::default())
}

fn kind(survey: &Survey) -> Option<IncompleteKind> {
    survey.incomplete.as_ref().map(|i| i.kind)
}

#[test]
fn plain_bytes_hold_no_format() {
    let found = survey_of(b"just text".to_vec(), "a.txt");
    assert!(found.formats.is_empty() && found.incomplete.is_none());
}

#[test]
fn a_zstd_stream_inside_a_zip_inside_a_tar_gz_is_found_with_its_path() {
    let zst = samples::wrap(Format::Zstd, b"payload", "x").unwrap();
    let zip = samples::zip(&[("dir/x.zst", &zst)], 8);
    let tar = samples::tar(&[("inner.zip", &zip)]);
    let tgz = samples::wrap(Format::Gzip, &tar, "outer.tar").unwrap();
    let found = survey_of(tgz, "outer.tar.gz");
    assert_eq!(
        formats(&found),
        vec![
            ("outer.tar.gz".into(), "gzip".into()),
            ("outer.tar.gz!/outer.tar".into(), "tar".into()),
            ("outer.tar.gz!/outer.tar!/inner.zip".into(), "zip".into()),
            ("outer.tar.gz!/outer.tar!/inner.zip!/dir/x.zst".into(), "zstd".into()),
        ]
    );
    assert!(found.incomplete.is_none(), "{:?}", found.incomplete);
}

#[test]
fn zip_members_are_recorded_by_method_and_encryption() {
    let zip = samples::zip(&[("a.txt", b"aaaa"), ("b.txt", b"bbbb")], 12);
    let found = survey_of(zip, "m.zip");
    assert_eq!(
        formats(&found),
        vec![
            ("m.zip".into(), "zip".into()),
            ("m.zip!/a.txt".into(), "zip-bzip2".into()),
            ("m.zip!/b.txt".into(), "zip-bzip2".into()),
        ]
    );
    let lzma_member = samples::zip_raw_member("p.bin", 14, b"\x00\x01opaque");
    assert_eq!(formats(&survey_of(lzma_member, "l.zip"))[1].1, "zip-lzma");
    let encrypted = samples::zip_encrypted_member("secret.exe");
    assert_eq!(formats(&survey_of(encrypted, "e.zip"))[1].1, "encrypted");
    let imploded = samples::zip_raw_member("old.exe", 6, b"opaque");
    assert_eq!(
        kind(&survey_of(imploded, "i.zip")),
        Some(IncompleteKind::Unwalkable(Format::ZipMethod(6)))
    );
}

#[test]
fn what_the_host_cannot_open_is_recorded_and_left_unseen() {
    let rar = samples::rar4("e.com", b"payload");
    let found = survey_of(rar, "x.rar");
    assert_eq!(formats(&found), vec![("x.rar".into(), "rar".into())]);
    assert_eq!(kind(&found), Some(IncompleteKind::Unwalkable(Format::Rar)));
    let brotli = survey(
        Cursor::new(b"\x1b\x00".to_vec()),
        "blob",
        Some("application/x-brotli"),
        &Limits::default(),
    );
    assert_eq!(formats(&brotli), vec![("blob".into(), "brotli".into())]);
    assert!(
        survey_of(b"\x1b\x00 plain".to_vec(), "example.com.br")
            .formats
            .is_empty(),
        "a .br name alone is not brotli"
    );
}

#[test]
fn archives_appended_to_other_files_are_found() {
    let mut jpeg = b"\xff\xd8\xff\xe0 a picture".to_vec();
    jpeg.extend(samples::rar4("dropper.com", b"payload"));
    let found = survey_of(jpeg, "photo.jpg");
    assert_eq!(formats(&found), vec![("photo.jpg@14".into(), "rar".into())]);
    assert_eq!(kind(&found), Some(IncompleteKind::Unwalkable(Format::Rar)));
    // A zip appended to a picture opens by its directory at the end.
    let mut jpeg = b"\xff\xd8\xff\xe0 a picture".to_vec();
    let zst = samples::wrap(Format::Zstd, b"payload", "x").unwrap();
    jpeg.extend(samples::zip(&[("x.zst", &zst)], 0));
    let found = survey_of(jpeg, "photo.jpg");
    assert!(
        formats(&found).contains(&("photo.jpg@zip!/x.zst".into(), "zstd".into())),
        "{found:?}"
    );
    // The RAR marker alone (an archiver's own program holds it) is not
    // an archive.
    let mut program = b"MZ...".to_vec();
    program.extend_from_slice(b"Rar!\x1a\x07\x00 and then nothing like a header");
    assert!(survey_of(program, "winrar.exe").formats.is_empty());
}

#[test]
fn tar_entries_of_any_type_and_old_tars_are_walked() {
    let zst = samples::wrap(Format::Zstd, b"payload", "x").unwrap();
    let mut tar = samples::tar(&[("x.zst", &zst)]);
    // Type flag 7 ("contiguous"): extracted as a file by tools.
    tar[156] = b'7';
    let sum: u32 = tar[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) })
        .sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let found = survey_of(tar, "t.tar");
    assert!(
        formats(&found).contains(&("t.tar!/x.zst".into(), "zstd".into())),
        "{found:?}"
    );
}

#[test]
fn limits_stop_the_survey_and_say_which() {
    // Bytes: a tar of zeros must be read through to its next member.
    let tar = samples::tar(&[("zeros", &vec![0u8; 8 << 20]), ("next.zst", b"(\xb5/\xfd")]);
    let tar_bomb = samples::wrap(Format::Gzip, &tar, "t.tar").unwrap();
    let small = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let found = survey(Cursor::new(tar_bomb), "t.tar.gz", None, &small);
    let why = found.incomplete.expect("the limit stops it");
    assert!(
        why.kind == IncompleteKind::Limit && why.detail.contains("bytes expanded"),
        "{why:?}"
    );
    // Layers of compression.
    let mut bytes = b"core".to_vec();
    for _ in 0..8 {
        bytes = samples::wrap(Format::Gzip, &bytes, "x").unwrap();
    }
    let found = survey_of(bytes, "x.gz");
    assert!(
        found
            .incomplete
            .unwrap()
            .detail
            .contains("compression nested more than 4 times")
    );
    // Decoder memory: an lzma header asking for a 1 GiB dictionary.
    let mut lzma = vec![0x5d];
    lzma.extend_from_slice(&(1u32 << 30).to_le_bytes());
    lzma.extend_from_slice(&[0xff; 8]);
    lzma.extend_from_slice(&[0; 32]);
    let found = survey_of(lzma, "big.lzma");
    assert!(found.incomplete.is_some(), "refused, not allocated");
}

#[test]
fn a_truncated_zip_is_malformed_not_empty() {
    let mut zip = samples::zip(&[("a.txt", b"aaaa")], 0);
    zip.truncate(zip.len() - 10);
    let found = survey_of(zip, "t.zip");
    let why = found.incomplete.unwrap();
    assert!(
        why.kind == IncompleteKind::Malformed && why.detail.contains("not a readable zip"),
        "{why:?}"
    );
}

#[test]
fn a_7z_is_walked_and_a_rar_inside_it_is_not_missed() {
    let rar = samples::rar4("dropper.com", b"payload");
    let seven = samples::seven_zip(&[("readme.txt", b"hello"), ("tools/x.rar", &rar)]);
    let found = survey_of(seven, "bundle.7z");
    assert!(
        formats(&found).contains(&("bundle.7z!/tools/x.rar".into(), "rar".into())),
        "{found:?}"
    );
    assert_eq!(kind(&found), Some(IncompleteKind::Unwalkable(Format::Rar)));
}

#[test]
fn an_archive_appended_to_a_member_is_found_too() {
    let mut photo = b"\xff\xd8\xff\xe0 a picture".to_vec();
    photo.extend(samples::rar4("dropper.com", b"payload"));
    let zip = samples::zip(&[("photo.jpg", &photo)], 8);
    let found = survey_of(zip, "bundle.zip");
    assert!(
        formats(&found).contains(&("bundle.zip!/photo.jpg@14".into(), "rar".into())),
        "{found:?}"
    );
    assert_eq!(kind(&found), Some(IncompleteKind::Unwalkable(Format::Rar)));
}

#[test]
fn a_7z_block_coded_with_bzip2_is_recorded() {
    let seven = samples::seven_zip_with(&[("a.txt", b"hello")], sevenz_rust2::EncoderMethod::BZIP2);
    let found = survey_of(seven, "b.7z");
    assert!(
        formats(&found).contains(&("b.7z".into(), "7z-bzip2".into())),
        "{found:?}"
    );
}

#[test]
fn brotli_by_name_only_when_its_bytes_decode() {
    let brotli = {
        let mut out = Vec::new();
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        std::io::Write::write_all(&mut writer, b"console.log('what the CDN serves decoded')").unwrap();
        drop(writer);
        out
    };
    let found = survey_of(brotli, "app.js.br");
    assert_eq!(formats(&found), vec![("app.js.br".into(), "brotli".into())]);
    let page = b"<html><body>Bem-vindo</body></html>".to_vec();
    assert!(survey_of(page, "www.example.com.br").formats.is_empty());
}

#[test]
fn a_long_name_past_the_header_budget_is_a_limit_not_a_memory_hazard() {
    let tar = samples::tar_with_long_name(2 << 20, &samples::tar(&[("a.txt", b"hello")]));
    let found = survey_of(samples::wrap(Format::Gzip, &tar, "t.tar").unwrap(), "t.tar.gz");
    let why = found.incomplete.expect("stopped");
    assert_eq!(why.kind, IncompleteKind::Limit, "{}", why.detail);
    assert!(why.detail.contains("bytes of tar headers"), "{}", why.detail);
}

#[test]
fn a_member_whose_size_only_a_pax_record_gives_is_surveyed() {
    let zst = samples::wrap(Format::Zstd, b"payload", "x").unwrap();
    let size = zst.len().to_string();
    let tar = samples::tar_with_pax(&[("size", size.as_bytes())], "x.zst", 0, &zst);
    let found = survey_of(tar, "t.tar");
    assert!(found.incomplete.is_none(), "{:?}", found.incomplete);
    assert_eq!(
        formats(&found),
        vec![("t.tar".into(), "tar".into()), ("t.tar!/x.zst".into(), "zstd".into())]
    );
}
