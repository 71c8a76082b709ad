//! Archives that do not start at byte 0: a RAR or 7z appended to a
//! picture or an installer (WinRAR and 7-Zip open them; clamd looks for
//! them too), and a zip found by the directory at its end.
//!
//! A marker counts only with a well-formed header behind it (its checksum
//! holds): archivers' own programs carry the bare markers. Hits are kept
//! in one pass, de-duplicated across the overlap between reads, and
//! capped: more than [`MAX_HITS`] well-formed headers is a limit, not a
//! list to walk.

use bucketscan_core::formats::Format;
use std::io::{self, Read, Seek, SeekFrom};

/// Well-formed archive headers one object may hold before the survey
/// stops counting.
pub(super) const MAX_HITS: usize = 64;

const RAR: &[u8] = b"Rar!\x1a\x07";
const SEVEN_ZIP: &[u8] = &[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c];
/// Bytes after a marker needed to check its header.
const HEADER: usize = 64;
const CHUNK: usize = 1 << 20;
/// The first read's size: most objects are small, and zeroing a 1 MiB
/// buffer (a fresh mapping, faulted in and unmapped again) cost a 10 KB
/// object more than reading it. The buffer grows to [`CHUNK`] only for
/// bytes that fill this.
const FIRST_CHUNK: usize = 64 << 10;

/// An archive found inside other bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub offset: u64,
    pub format: Format,
}

/// Every well-formed RAR or 7z header in `reader` past byte 0, in order;
/// `Err(None)` when there are more than [`MAX_HITS`].
pub(super) fn find(reader: &mut dyn Read) -> io::Result<Result<Vec<Hit>, usize>> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut last = [None::<u64>; 2];
    let mut buf = vec![0u8; FIRST_CHUNK + HEADER];
    let mut carried = 0usize;
    let mut offset = 0u64; // of buf[0]
    loop {
        let n = read_up_to(reader, &mut buf[carried..])?;
        let filled = carried + n;
        let end = n == 0;
        // A hit whose header is not all here yet is seen again next round.
        let checkable = if end { filled } else { filled.saturating_sub(HEADER) };
        for (index, (marker, format)) in [(RAR, Format::Rar), (SEVEN_ZIP, Format::SevenZip)]
            .into_iter()
            .enumerate()
        {
            for at in memchr::memmem::find_iter(&buf[..filled], marker) {
                let position = offset + at as u64;
                if at >= checkable || position == 0 || last[index].is_some_and(|seen| position <= seen) {
                    continue;
                }
                last[index] = Some(position);
                let header = &buf[at..filled.min(at + HEADER)];
                let well_formed = match format {
                    Format::Rar => is_rar_header(header),
                    _ => is_7z_start_header(header),
                };
                if well_formed {
                    if hits.len() == MAX_HITS {
                        return Ok(Err(MAX_HITS + 1));
                    }
                    hits.push(Hit {
                        offset: position,
                        format,
                    });
                }
            }
        }
        if end {
            hits.sort_by_key(|hit| hit.offset);
            return Ok(Ok(hits));
        }
        let keep = filled - checkable;
        buf.copy_within(checkable..filled, 0);
        if buf.len() < CHUNK + HEADER {
            buf.resize(CHUNK + HEADER, 0);
        }
        offset += checkable as u64;
        carried = keep;
    }
}

fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// A RAR marker followed by its first header, whose checksum holds when
/// all of it is here: RAR 4's archive header (type 0x73; CRC16 = low half
/// of the CRC32 from the type byte to the header's end), or RAR 5's main
/// header (type 1; CRC32 of its size field and body). A header too long to
/// check here counts: an attacker gains nothing by it but a refusal.
fn is_rar_header(bytes: &[u8]) -> bool {
    if let Some(header) = bytes.strip_prefix(b"Rar!\x1a\x07\x00") {
        if header.len() < 7 || header[2] != 0x73 {
            return false;
        }
        let size = usize::from(u16::from_le_bytes([header[5], header[6]]));
        if size < 7 {
            return false;
        }
        let Some(checked) = header.get(2..size) else {
            return true;
        };
        return u16::from_le_bytes([header[0], header[1]]) == (crc32fast::hash(checked) & 0xffff) as u16;
    }
    if let Some(header) = bytes.strip_prefix(b"Rar!\x1a\x07\x01\x00") {
        let Some((size, size_len)) = header.get(4..).and_then(vint) else {
            return false;
        };
        let Some(body) = header.get(4 + size_len..4 + size_len + size as usize) else {
            return size < 1 << 21; // too long to check here
        };
        let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let kind = vint(body).map(|(kind, _)| kind);
        return kind == Some(1) && crc == crc32fast::hash(&header[4..4 + size_len + size as usize]);
    }
    false
}

/// RAR 5's variable-length integer: 7 bits a byte, high bit "more".
fn vint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// A 7z signature header: the marker, the version, and the CRC32 of the
/// 20 bytes after it (where the next header is) at bytes 8..12.
fn is_7z_start_header(bytes: &[u8]) -> bool {
    bytes.len() >= 32
        && bytes.starts_with(SEVEN_ZIP)
        && u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) == crc32fast::hash(&bytes[12..32])
}

/// A zip's end-of-central-directory record, if the last 64 KiB hold one:
/// (entries, directory size), from the zip64 record when there is one.
pub(crate) fn zip_directory<R: Read + Seek + ?Sized>(source: &mut R) -> io::Result<Option<(u64, u64)>> {
    let len = source.seek(SeekFrom::End(0))?;
    let tail_len = len.min(65_557 + 20 + 56);
    source.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    source.read_exact(&mut tail)?;
    source.seek(SeekFrom::Start(0))?;
    let Some(at) = memchr::memmem::rfind(&tail, b"PK\x05\x06") else {
        return Ok(None);
    };
    let record = &tail[at..];
    if record.len() < 22 {
        return Ok(None);
    }
    let le16 = |b: &[u8]| u64::from(u16::from_le_bytes([b[0], b[1]]));
    let le32 = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (mut entries, mut size) = (le16(&record[10..12]), le32(&record[12..16]));
    // Any field at its maximum sends a zip reader to the zip64 record (the
    // directory's offset too): so does this check, or a zip64 record
    // naming millions of members would pass it.
    let offset = le32(&record[16..20]);
    let zip64 = entries == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff;
    if zip64 && at >= 20 && &tail[at - 20..at - 16] == b"PK\x06\x07" {
        // The zip64 locator sits just before the record and points at the
        // zip64 end record.
        let locator = &tail[at - 20..at];
        let zip64 = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
        source.seek(SeekFrom::Start(zip64))?;
        let mut end = [0u8; 56];
        if source.read_exact(&mut end).is_ok() && &end[..4] == b"PK\x06\x06" {
            // The larger of the two, a field at its maximum being only the
            // mark that the zip64 record holds the value.
            let larger = |short: u64, mark: u64, long: u64| if short == mark { long } else { short.max(long) };
            entries = larger(
                entries,
                0xffff,
                u64::from_le_bytes(end[32..40].try_into().expect("8 bytes")),
            );
            size = larger(
                size,
                0xffff_ffff,
                u64::from_le_bytes(end[40..48].try_into().expect("8 bytes")),
            );
        }
        source.seek(SeekFrom::Start(0))?;
    }
    Ok(Some((entries, size)))
}

/// A view of `inner` from `start` on, as if it began there.
pub(super) struct Window<R> {
    inner: R,
    start: u64,
}

impl<R: Seek> Window<R> {
    pub(super) fn new(mut inner: R, start: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Self { inner, start })
    }
}

impl<R: Read> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R: Seek> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let absolute = match to {
            SeekFrom::Start(offset) => self.inner.seek(SeekFrom::Start(self.start + offset))?,
            other => self.inner.seek(other)?,
        };
        absolute
            .checked_sub(self.start)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the archive's start"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn hits(bytes: &[u8]) -> Result<Vec<Hit>, usize> {
        find(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn a_well_formed_archive_is_found_wherever_it_starts_and_a_bare_marker_is_not() {
        let mut bytes = b"\xff\xd8 a picture".to_vec();
        bytes.extend(samples::rar4("x.com", b"payload"));
        assert_eq!(
            hits(&bytes),
            Ok(vec![Hit {
                offset: 12,
                format: Format::Rar
            }])
        );
        assert_eq!(
            hits(b"winrar.exe holds Rar!\x1a\x07\x00, the marker, as a constant"),
            Ok(vec![])
        );
        assert_eq!(
            hits(&samples::rar4("x.com", b"at zero")),
            Ok(vec![]),
            "at 0 it is the object itself"
        );
    }

    #[test]
    fn a_header_across_two_reads_is_found_once() {
        // The ends of the first (small) read and of the first full one.
        for read_ends_at in [FIRST_CHUNK + HEADER, FIRST_CHUNK + CHUNK + HEADER] {
            let mut bytes = vec![b'x'; read_ends_at - 3];
            bytes.extend(samples::rar4("x.com", b"payload"));
            bytes.extend(vec![b'y'; 100]);
            let found = hits(&bytes).unwrap();
            assert_eq!(found.len(), 1, "across byte {read_ends_at}");
            assert_eq!(found[0].offset, (read_ends_at - 3) as u64);
        }
    }

    #[test]
    fn decoys_do_not_push_out_a_real_archive_and_too_many_real_ones_are_a_limit() {
        let mut bytes = b"Rar!\x1a\x07 ".repeat(10_000);
        bytes.extend(samples::rar4("x.com", b"payload"));
        assert_eq!(hits(&bytes).unwrap().len(), 1, "decoys fail the header check");
        let many = samples::rar4("x.com", b"p").repeat(MAX_HITS + 2);
        assert_eq!(hits(&many), Err(MAX_HITS + 1));
    }

    #[test]
    fn a_7z_start_header_is_checked_by_its_crc() {
        let mut bytes = b"installer stub ".to_vec();
        bytes.extend(samples::seven_zip(&[("a.txt", b"hello")]));
        assert_eq!(hits(&bytes).unwrap()[0].format, Format::SevenZip);
        let mut forged = b"stub ".to_vec();
        forged.extend_from_slice(SEVEN_ZIP);
        forged.extend_from_slice(&[0; 40]);
        assert_eq!(hits(&forged), Ok(vec![]));
    }
}
