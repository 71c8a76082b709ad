//! Sample files made on the spot: a payload wrapped in each format. The
//! engine check uses them to find out what clamd really opens (the EICAR
//! test file inside each: found means opened); tests use them as the
//! disguises an uploader would try.

use bucketscan_core::formats::Format;
use std::io::Write;

/// The 68-byte EICAR anti-virus test file, which every engine detects and
/// which harms nothing: assembled here so no file in the repository holds
/// it in one piece (scanners would flag the repository).
pub fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!",
        "$H+H*",
    ]
    .concat()
    .into_bytes()
}

/// `len` bytes no compressor shrinks and no signature matches, the same
/// for the same `seed` (xorshift64, eight bytes a step).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The formats [`probes`] checks, each with the payload inside.
pub fn probes(payload: &[u8]) -> Vec<(Format, Vec<u8>)> {
    let mut samples: Vec<(Format, Vec<u8>)> = [
        Format::Zip,
        Format::Gzip,
        Format::Bzip2,
        Format::Xz,
        Format::Lzma,
        Format::Zstd,
        Format::Lz4,
        Format::Tar,
        Format::Rar,
    ]
    .into_iter()
    .filter_map(|format| Some((format, wrap(format, payload, "probe.com")?)))
    .collect();
    samples.push((Format::ZipMethod(8), zip(&[("probe.com", payload)], 8)));
    samples.push((Format::ZipMethod(12), zip(&[("probe.com", payload)], 12)));
    samples
}

/// `payload` as the only content of `format`, named `name` inside where
/// the format has names; `None` for formats this module cannot write.
pub fn wrap(format: Format, payload: &[u8], name: &str) -> Option<Vec<u8>> {
    Some(match format {
        Format::Zip => zip(&[(name, payload)], 0),
        Format::Tar => tar(&[(name, payload)]),
        Format::Rar => rar4(name, payload),
        Format::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(payload).ok()?;
            encoder.finish().ok()?
        }
        Format::Bzip2 => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            encoder.write_all(payload).ok()?;
            encoder.finish().ok()?
        }
        Format::Xz => {
            let mut writer = liblzma::write::XzEncoder::new(Vec::new(), 6);
            writer.write_all(payload).ok()?;
            writer.finish().ok()?
        }
        Format::Lzma => {
            // The `.lzma` ("alone") format: a header with an unknown size.
            let options = liblzma::stream::LzmaOptions::new_preset(6).ok()?;
            let stream = liblzma::stream::Stream::new_lzma_encoder(&options).ok()?;
            let mut writer = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            writer.write_all(payload).ok()?;
            writer.finish().ok()?
        }
        Format::Zstd => zstd::encode_all(payload, 3).ok()?,
        Format::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(payload).ok()?;
            encoder.finish().ok()?
        }
        _ => return None,
    })
}

/// A zip of `members`, each compressed with `method` (0 stored, 8
/// deflate, 12 bzip2).
pub fn zip(members: &[(&str, &[u8])], method: u16) -> Vec<u8> {
    let compression = match method {
        8 => zip::CompressionMethod::Deflated,
        12 => zip::CompressionMethod::Bzip2,
        _ => zip::CompressionMethod::Stored,
    };
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(compression);
    for (name, data) in members {
        writer.start_file(*name, options).expect("an in-memory zip");
        writer.write_all(data).expect("an in-memory zip");
    }
    writer.finish().expect("an in-memory zip").into_inner()
}

/// A 7z of `members` (LZMA2).
pub fn seven_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    seven_zip_with(members, sevenz_rust2::EncoderMethod::LZMA2)
}

/// A 7z of `members` coded with `method`.
pub fn seven_zip_with(members: &[(&str, &[u8])], method: sevenz_rust2::EncoderMethod) -> Vec<u8> {
    let mut writer = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).expect("an in-memory 7z");
    writer.set_content_methods(vec![sevenz_rust2::EncoderConfiguration::new(method)]);
    for (name, data) in members {
        let entry = sevenz_rust2::ArchiveEntry::new_file(name);
        writer
            .push_archive_entry(entry, Some(std::io::Cursor::new(data.to_vec())))
            .expect("an in-memory 7z");
    }
    writer.finish().expect("an in-memory 7z").into_inner()
}

/// A tar of `members`.
pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).expect("an in-memory tar");
    }
    builder.into_inner().expect("an in-memory tar")
}

/// A one-member tar whose member is described by PAX `records` first
/// (`size` among them overrides the header's, as GNU tar reads it), with
/// `header_size` in its own header.
pub fn tar_with_pax(records: &[(&str, &[u8])], name: &str, header_size: u64, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions(records.iter().map(|(key, value)| (*key, *value)))
        .expect("an in-memory tar");
    let mut header = tar::Header::new_ustar();
    header.set_path(name).expect("a short name");
    header.set_size(header_size);
    header.set_mode(0o644);
    header.set_cksum();
    let out = builder.get_mut();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    builder.into_inner().expect("an in-memory tar")
}

/// A tar whose first entry is a GNU long name of `len` bytes of `a`, for
/// `then` (a tar) to follow.
pub fn tar_with_long_name(len: usize, then: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(len as u64);
    header.set_path("././@LongLink").expect("a short name");
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.resize(512 + len.div_ceil(512) * 512, b'a');
    out[512 + len..].fill(0);
    out.extend_from_slice(then);
    out
}

/// A one-member zip whose member claims compression `method` and holds
/// `data` as they are (how a zip with LZMA or zstd members looks to a
/// reader that does not decompress them).
pub fn zip_raw_member(name: &str, method: u16, data: &[u8]) -> Vec<u8> {
    zip_by_hand(name, method, 0, data)
}

/// A one-member zip whose member is encrypted (traditional PKWARE
/// encryption flag; the bytes are filler: nothing reads them).
pub fn zip_encrypted_member(name: &str) -> Vec<u8> {
    zip_by_hand(name, 0, 1, &[0x5a; 24])
}

/// A one-member zip whose member is `data` deflated, and whose headers
/// say it decodes to `claimed` bytes (with the CRC of `data`): a member
/// that holds more than its container says.
pub fn zip_member_claiming(name: &str, data: &[u8], claimed: u32) -> Vec<u8> {
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflated, data).expect("in memory");
    let raw = deflated.finish().expect("in memory");
    zip_sized(name, 8, 0, &raw, crc32fast::hash(data), claimed)
}

fn zip_by_hand(name: &str, method: u16, flags: u16, data: &[u8]) -> Vec<u8> {
    zip_sized(name, method, flags, data, crc32fast::hash(data), data.len() as u32)
}

fn zip_sized(name: &str, method: u16, flags: u16, data: &[u8], crc: u32, uncompressed: u32) -> Vec<u8> {
    let size = data.len() as u32;
    let name = name.as_bytes();
    let mut out = Vec::new();
    // Local file header.
    out.extend_from_slice(b"PK\x03\x04");
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // time, date
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&uncompressed.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    // Central directory.
    let directory = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&uncompressed.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, internal attrs, external attrs
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name);
    let directory_size = out.len() as u32 - directory;
    // End of central directory.
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&directory_size.to_le_bytes());
    out.extend_from_slice(&directory.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A RAR 4 archive holding `data` stored (method 0x30) as `name`: the
/// format Debian's clamd cannot open without unrar. Each block's CRC is
/// the low 16 bits of the CRC32 of the block from its type byte on.
pub fn rar4(name: &str, data: &[u8]) -> Vec<u8> {
    let crc16 = |block: &[u8]| (crc32fast::hash(block) & 0xffff) as u16;
    let block = |body: Vec<u8>| {
        let mut out = crc16(&body).to_le_bytes().to_vec();
        out.extend(body);
        out
    };
    let name = name.as_bytes();
    let mut archive_header = vec![0x73];
    archive_header.extend_from_slice(&0u16.to_le_bytes());
    archive_header.extend_from_slice(&13u16.to_le_bytes());
    archive_header.extend_from_slice(&[0; 6]);
    let mut file_header = vec![0x74];
    file_header.extend_from_slice(&0x8000u16.to_le_bytes()); // LONG_BLOCK: data follows
    file_header.extend_from_slice(&(32 + name.len() as u16).to_le_bytes());
    file_header.extend_from_slice(&(data.len() as u32).to_le_bytes()); // packed
    file_header.extend_from_slice(&(data.len() as u32).to_le_bytes()); // unpacked
    file_header.push(0); // host OS
    file_header.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    file_header.extend_from_slice(&0u32.to_le_bytes()); // time
    file_header.push(20); // version to unpack
    file_header.push(0x30); // stored
    file_header.extend_from_slice(&(name.len() as u16).to_le_bytes());
    file_header.extend_from_slice(&0x20u32.to_le_bytes()); // attributes
    file_header.extend_from_slice(name);
    let mut end = vec![0x7b];
    end.extend_from_slice(&0x4000u16.to_le_bytes());
    end.extend_from_slice(&7u16.to_le_bytes());

    let mut out = b"Rar!\x1a\x07\x00".to_vec();
    out.extend(block(archive_header));
    out.extend(block(file_header));
    out.extend_from_slice(data);
    out.extend(block(end));
    out
}

/// An ISO 9660 image of `files` (`name` or `dir/name`, bytes), with
/// Joliet names beside the primary ones, as the hadris writer makes it.
pub fn iso(files: &[(&str, &[u8])]) -> Vec<u8> {
    use hadris_iso::read::PathSeparator;
    use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
    use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
    use std::sync::Arc;
    let file = |name: &str, bytes: &[u8]| IsoFile::File {
        name: Arc::new(name.to_owned()),
        contents: bytes.to_vec(),
    };
    // One level of directories, each listed once.
    let mut root = Vec::new();
    let mut directories: std::collections::BTreeMap<&str, Vec<IsoFile>> = Default::default();
    for (path, bytes) in files {
        match path.split_once('/') {
            Some((dir, name)) => directories.entry(dir).or_default().push(file(name, bytes)),
            None => root.push(file(path, bytes)),
        }
    }
    root.extend(directories.into_iter().map(|(dir, children)| IsoFile::Directory {
        name: Arc::new(dir.to_owned()),
        children,
    }));
    let options = IsoFormatOptions {
        volume_name: "BUCKETSCAN".into(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures::joliet(hadris_iso::joliet::JolietLevel::Level3),
        strict_charset: false,
    };
    let input = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: root,
    };
    let mut image = std::io::Cursor::new(Vec::new());
    IsoImageWriter::create(&mut image, input, options).expect("writing an ISO 9660 image in memory");
    image.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::formats::sniff;

    #[test]
    fn eicar_is_the_standard_test_file() {
        let eicar = eicar();
        assert_eq!(eicar.len(), 68);
        assert_eq!(
            crc32fast::hash(&eicar),
            0x6851_cf3c,
            "the standard string, byte for byte"
        );
    }

    #[test]
    fn every_probe_is_recognised_as_its_format() {
        for (format, bytes) in probes(b"payload") {
            let expected = match format {
                Format::ZipMethod(_) => Format::Zip,
                other => other,
            };
            assert_eq!(sniff(&bytes), Some(expected), "{format}");
        }
    }

    #[test]
    fn the_rar_writer_matches_the_format() {
        let rar = rar4("e.com", b"hello");
        assert!(rar.starts_with(b"Rar!\x1a\x07\x00"));
        // Marker 7, archive header 13, file header 32+5, data 5, end 7.
        assert_eq!(rar.len(), 7 + 13 + 37 + 5 + 7);
        let archive_header = &rar[7..20];
        let crc = u16::from_le_bytes([archive_header[0], archive_header[1]]);
        assert_eq!(crc, (crc32fast::hash(&archive_header[2..]) & 0xffff) as u16);
    }
}
