//! The container survey: every container and compression format inside
//! an object, at any depth the host can reach, with where it sits
//! (`outer.zip!/dir/inner.tar!/x.zst`).
//!
//! The host walks zip (by its central directory), tar (every entry that
//! carries data, whatever its type flag, and old tars without the `ustar`
//! magic), 7z, CAB, and the single-stream compressions (gzip, bzip2, xz,
//! lzma, zstd, lz4). It also looks through the whole object for a RAR or
//! 7z archive, or a zip directory, that does not start at byte 0 (a JPEG
//! with an archive appended opens in WinRAR and 7-Zip). Zip members are
//! recorded with their compression method (a member compressed with LZMA
//! is not opened by an engine that opens the zip), encrypted members as
//! `encrypted`. Inside RAR, ARJ, CPIO and imploded zip members the host
//! cannot see: the survey says so ([`IncompleteKind::Unwalkable`]).
//!
//! Limits bound the work: depth, members, bytes expanded, nested
//! compression layers, decoder memory, and spool room for nested zips
//! (reserved through [`Room`]). A survey that hit one, or met a container
//! it could not parse, says so in [`Survey::incomplete`], and the scan
//! path treats what it could not see as unproven.

use bucketscan_core::formats::{Contained, Format, Incomplete, IncompleteKind, SNIFF_BYTES, Survey, by_type, sniff};
use std::any::Any;
use std::cell::Cell;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Spool room for what the survey writes down (nested zips, read by their
/// directory at the end): the scan path's spool budget.
pub trait Room: Send + Sync {
    /// Reserves `bytes` until the returned guard drops; `Err` when there is
    /// no room now.
    fn reserve(&self, bytes: u64) -> Result<Box<dyn Any + Send>, String>;
}

/// What one survey may cost.
#[derive(Clone)]
pub struct Limits {
    /// Containers nested inside each other (ClamAV's MaxRecursion is 17).
    pub max_depth: u32,
    /// Members looked at, in all (ClamAV's MaxFiles is 10,000).
    pub max_entries: u64,
    /// Bytes decompressed, in all.
    pub max_bytes: u64,
    /// Compression streams nested inside each other (gzip in zstd in xz…).
    pub max_stream_layers: u32,
    /// Memory one decoder may take for its dictionary or window.
    pub decoder_memory: u64,
    /// Where nested zips are spooled to be read by their directory.
    pub temp_dir: PathBuf,
    /// Spool room for them; `None`: no accounting.
    pub room: Option<Arc<dyn Room>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 17,
            max_entries: 10_000,
            max_bytes: 4 << 30,
            max_stream_layers: 6,
            decoder_memory: 64 << 20,
            temp_dir: std::env::temp_dir(),
            room: None,
        }
    }
}

/// Zip methods the walker decompresses to look inside.
const WALKED_ZIP_METHODS: [u16; 4] = [0, 8, 9, 12];
/// Markers of archives that may sit anywhere in a file, not only at 0.
const EMBEDDED: [(&[u8], Format); 2] = [
    (b"Rar!\x1a\x07", Format::Rar),
    (&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], Format::SevenZip),
];
/// The largest central directory read into memory.
const MAX_DIRECTORY: u64 = 64 << 20;

/// Surveys `body` (a stored object's bytes, or the decoded ones), named
/// `name` with `content_type` (raw brotli is known only by its type).
pub fn survey<R: Read + Seek>(body: R, name: &str, content_type: Option<&str>, limits: &Limits) -> Survey {
    let mut walker = Walker {
        limits,
        found: Vec::new(),
        entries: 0,
        budget: Rc::new(Budget::new(limits.max_bytes)),
        held: Vec::new(),
    };
    let outcome = walker.top(body, name, content_type);
    Survey {
        formats: walker.found,
        incomplete: outcome.err().map(|stop| Incomplete {
            kind: stop.kind,
            detail: stop.detail,
        }),
    }
}

/// Why the survey stopped before seeing everything.
struct Stop {
    kind: IncompleteKind,
    detail: String,
}

/// A container that could not be parsed.
fn malformed(detail: String) -> Stop {
    Stop {
        kind: IncompleteKind::Malformed,
        detail,
    }
}

/// A limit reached.
fn limit(detail: String) -> Stop {
    Stop {
        kind: IncompleteKind::Limit,
        detail,
    }
}

struct Walker<'l> {
    limits: &'l Limits,
    found: Vec<Contained>,
    entries: u64,
    budget: Rc<Budget>,
    /// Spool room held until the survey ends.
    held: Vec<Box<dyn Any + Send>>,
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

enum Source<'a> {
    Seekable(Box<dyn ReadSeek + 'a>),
    Stream(Box<dyn Read + 'a>),
}

impl Walker<'_> {
    /// The object itself: what it starts with, then what it hides further
    /// in (an archive appended to an image, an SFX). An archive past byte
    /// 0 that does not parse is not one: no tool (clamd included) would
    /// open it.
    fn top<R: Read + Seek>(&mut self, mut body: R, name: &str, content_type: Option<&str>) -> Result<(), Stop> {
        let io = |err: io::Error| malformed(format!("{name}: {err}"));
        let head = read_head_seekable(&mut body).map_err(io)?;
        let first = sniff(&head).or_else(|| by_type(content_type));
        let embedded = find_embedded(&mut body).map_err(io)?;
        let trailing_zip = first != Some(Format::Zip) && zip_directory(&mut body).map_err(io)?.is_some();
        self.visit(Source::Seekable(Box::new(&mut body)), name, name, first, 0, 0)?;
        if trailing_zip {
            body.seek(SeekFrom::Start(0)).map_err(io)?;
            self.walk_zip(Box::new(&mut body), &format!("{name}@zip"), 1, true)?;
        }
        for (offset, format) in embedded {
            let path = format!("{name}@{offset}");
            match format {
                Format::SevenZip => {
                    let view = Window::new(&mut body, offset).map_err(io)?;
                    self.walk_7z(Box::new(view), &path, 1, true)?;
                }
                other => {
                    self.record(&path, other);
                    return Err(unwalkable(&path, other));
                }
            }
        }
        Ok(())
    }

    /// One source of bytes at `path`, whose format is `known` when the
    /// caller found it already (else its head tells).
    fn visit<'s>(
        &mut self,
        source: Source<'s>,
        path: &str,
        name: &str,
        known: Option<Format>,
        depth: u32,
        layers: u32,
    ) -> Result<(), Stop> {
        let (head, source) = read_head(source).map_err(|err| self.stop_at(path, &err))?;
        let Some(format) = known.or_else(|| sniff(&head)) else {
            return Ok(());
        };
        self.record(path, format);
        if depth >= self.limits.max_depth {
            return Err(limit(format!(
                "{path}: containers nested more than {} deep",
                self.limits.max_depth
            )));
        }
        match format {
            Format::Zip => {
                let seekable = self.seekable(source, path)?;
                self.walk_zip(seekable, path, depth, false)
            }
            Format::SevenZip => {
                let seekable = self.seekable(source, path)?;
                self.walk_7z(seekable, path, depth, false)
            }
            Format::Cab => {
                let seekable = self.seekable(source, path)?;
                self.walk_cab(seekable, path, depth)
            }
            Format::Tar => self.walk_tar(stream(source), path, depth),
            Format::Gzip | Format::Bzip2 | Format::Xz | Format::Lzma | Format::Zstd | Format::Lz4 => {
                if layers >= self.limits.max_stream_layers {
                    return Err(limit(format!(
                        "{path}: compression nested more than {} times",
                        self.limits.max_stream_layers
                    )));
                }
                let decoded = self.decompressor(format, stream(source), path)?;
                let counted = Counted {
                    inner: decoded,
                    budget: self.budget.clone(),
                };
                let inner = inner_name(name, format);
                let inner_path = format!("{path}!/{inner}");
                self.visit(
                    Source::Stream(Box::new(counted)),
                    &inner_path,
                    &inner,
                    None,
                    depth + 1,
                    layers + 1,
                )
            }
            // Raw brotli is opaque to clients too (nothing decodes it on
            // receipt): recorded, for the engine check, not walked.
            Format::Brotli | Format::Encrypted | Format::ZipMethod(_) => Ok(()),
            Format::Rar | Format::Arj | Format::Cpio => Err(unwalkable(path, format)),
        }
    }

    fn record(&mut self, path: &str, format: Format) {
        self.found.push(Contained {
            path: path.to_owned(),
            format,
        });
    }

    fn stop_at(&self, path: &str, err: &io::Error) -> Stop {
        if self.budget.exceeded.get() {
            limit(format!(
                "{path}: more than {} bytes expanded; the rest was not looked at",
                self.limits.max_bytes
            ))
        } else {
            malformed(format!("{path}: {err}"))
        }
    }

    fn count_entries(&mut self, path: &str, count: u64) -> Result<(), Stop> {
        self.entries += count;
        if self.entries > self.limits.max_entries {
            return Err(limit(format!(
                "{path}: more than {} members in all; the rest was not looked at",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn decompressor<'s>(
        &self,
        format: Format,
        input: Box<dyn Read + 's>,
        path: &str,
    ) -> Result<Box<dyn Read + 's>, Stop> {
        let memory = self.limits.decoder_memory;
        let refused =
            |what: &str, err: &dyn std::fmt::Display| malformed(format!("{path}: not a readable {what}: {err}"));
        Ok(match format {
            Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
            Format::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(memory, liblzma::stream::CONCATENATED)
                    .map_err(|err| refused("xz stream", &err))?;
                Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
            }
            Format::Lzma => {
                let stream =
                    liblzma::stream::Stream::new_lzma_decoder(memory).map_err(|err| refused("lzma stream", &err))?;
                Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
            }
            Format::Zstd => {
                let mut decoder =
                    zstd::stream::read::Decoder::new(input).map_err(|err| refused("zstd stream", &err))?;
                // A window of at most 32 MiB (zstd's `--long` archives need
                // more, and are then unproven rather than a memory hazard).
                decoder.window_log_max(25).map_err(|err| refused("zstd stream", &err))?;
                Box::new(decoder)
            }
            Format::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
            other => unreachable!("{other} is not a stream compression"),
        })
    }

    /// A zip, 7z or CAB needs its directory: a stream is spooled first,
    /// within the spool room and the byte budget.
    fn seekable<'s>(&mut self, source: Source<'s>, path: &str) -> Result<Box<dyn ReadSeek + 's>, Stop> {
        let mut stream = match source {
            Source::Seekable(seekable) => return Ok(seekable),
            Source::Stream(stream) => stream,
        };
        let mut file = tempfile::tempfile_in(&self.limits.temp_dir)
            .map_err(|err| malformed(format!("{path}: spooling a nested archive: {err}")))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut reserved = 0u64;
        let mut written = 0u64;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.stop_at(path, &err)),
            };
            written += n as u64;
            if written > reserved {
                self.reserve(16 << 20, path)?;
                reserved += 16 << 20;
            }
            io::Write::write_all(&mut file, &buf[..n]).map_err(|err| malformed(format!("{path}: {err}")))?;
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|err| malformed(format!("{path}: {err}")))?;
        Ok(Box::new(file))
    }

    fn reserve(&mut self, bytes: u64, path: &str) -> Result<(), Stop> {
        let Some(room) = &self.limits.room else {
            return Ok(());
        };
        let guard = room.reserve(bytes).map_err(|why| Stop {
            kind: IncompleteKind::NoRoom,
            detail: format!("{path}: spooling a nested archive: {why}"),
        })?;
        self.held.push(guard);
        Ok(())
    }

    /// Walks a zip; one `embedded` in another file that does not open is
    /// no zip at all.
    fn walk_zip<'s>(
        &mut self,
        mut source: Box<dyn ReadSeek + 's>,
        path: &str,
        depth: u32,
        embedded: bool,
    ) -> Result<(), Stop> {
        // The directory's size and count first: the zip reader holds the
        // whole directory in memory.
        if let Some((entries, directory)) =
            zip_directory(&mut source).map_err(|err| malformed(format!("{path}: {err}")))?
        {
            if directory > MAX_DIRECTORY {
                return Err(limit(format!("{path}: a zip directory of {directory} bytes")));
            }
            self.count_entries(path, entries)?;
            self.entries -= entries;
        }
        let mut archive = match zip::ZipArchive::new(source) {
            Ok(archive) => archive,
            Err(_) if embedded => return Ok(()),
            Err(err) => return Err(malformed(format!("{path}: not a readable zip archive: {err}"))),
        };
        if embedded {
            self.record(path, Format::Zip);
        }
        for index in 0..archive.len() {
            let (name, method, encrypted) = {
                let member = archive
                    .by_index_raw(index)
                    .map_err(|err| malformed(format!("{path}: zip member {index}: {err}")))?;
                let name = String::from_utf8_lossy(member.name_raw()).into_owned();
                (name, zip_method(member.compression()), member.encrypted())
            };
            let member_path = format!("{path}!/{}", printable(&name));
            self.count_entries(&member_path, 1)?;
            if encrypted {
                self.record(&member_path, Format::Encrypted);
                continue;
            }
            if method != 0 && method != 8 {
                self.record(&member_path, Format::ZipMethod(method));
            }
            if !WALKED_ZIP_METHODS.contains(&method) {
                // Recorded: engines that open the zip do not open this
                // method (checked as a format). One they do open but the
                // host cannot (implode) leaves its content unknown.
                if method == 6 {
                    return Err(unwalkable(&member_path, Format::ZipMethod(6)));
                }
                continue;
            }
            let member = archive
                .by_index(index)
                .map_err(|err| malformed(format!("{member_path}: {err}")))?;
            let counted = Counted {
                inner: Box::new(member),
                budget: self.budget.clone(),
            };
            self.visit(
                Source::Stream(Box::new(counted)),
                &member_path,
                &name,
                None,
                depth + 1,
                0,
            )?;
        }
        Ok(())
    }

    fn walk_tar<'s>(&mut self, source: Box<dyn Read + 's>, path: &str, depth: u32) -> Result<(), Stop> {
        let mut archive = tar::Archive::new(source);
        let entries = archive
            .entries()
            .map_err(|err| malformed(format!("{path}: not a readable tar archive: {err}")))?;
        for entry in entries {
            let entry = entry.map_err(|err| self.stop_at(path, &err))?;
            // Every entry with data, whatever its type flag says: tools
            // (and clamd) extract "contiguous" and unknown types as files.
            if entry.header().entry_size().unwrap_or(0) == 0 {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let member_path = format!("{path}!/{}", printable(&name));
            self.count_entries(&member_path, 1)?;
            self.visit(Source::Stream(Box::new(entry)), &member_path, &name, None, depth + 1, 0)?;
        }
        Ok(())
    }

    /// Walks a 7z; one `embedded` in another file that does not open is no
    /// 7z at all.
    fn walk_7z<'s>(
        &mut self,
        source: Box<dyn ReadSeek + 's>,
        path: &str,
        depth: u32,
        embedded: bool,
    ) -> Result<(), Stop> {
        let memory_kb = (self.limits.decoder_memory / 1024) as usize;
        let opened =
            sevenz_rust2::ArchiveReader::new_with_memory_limit(source, sevenz_rust2::Password::empty(), memory_kb);
        let mut archive = match opened {
            Ok(archive) => archive,
            Err(_) if embedded => return Ok(()),
            Err(err) => return Err(malformed(format!("{path}: not a readable 7z archive: {err}"))),
        };
        if embedded {
            self.record(path, Format::SevenZip);
        }
        archive.set_thread_count(1);
        let count = archive.archive().files.len() as u64;
        self.count_entries(path, count)?;
        self.entries -= count;
        let mut stopped: Option<Stop> = None;
        let walked = archive.for_each_entries(|entry, reader| {
            if !entry.has_stream || entry.is_directory {
                return Ok(true);
            }
            let member_path = format!("{path}!/{}", printable(&entry.name));
            let outcome = self.count_entries(&member_path, 1).and_then(|()| {
                let counted = Counted {
                    inner: Box::new(reader),
                    budget: self.budget.clone(),
                };
                self.visit(
                    Source::Stream(Box::new(counted)),
                    &member_path,
                    &entry.name,
                    None,
                    depth + 1,
                    0,
                )
            });
            match outcome {
                Ok(()) => Ok(true),
                Err(stop) => {
                    stopped = Some(stop);
                    Err(sevenz_rust2::Error::Other("the survey stopped".into()))
                }
            }
        });
        if let Some(stop) = stopped {
            return Err(stop);
        }
        walked.map_err(|err| malformed(format!("{path}: {err}")))
    }

    fn walk_cab<'s>(&mut self, source: Box<dyn ReadSeek + 's>, path: &str, depth: u32) -> Result<(), Stop> {
        let mut cabinet =
            cab::Cabinet::new(source).map_err(|err| malformed(format!("{path}: not a readable CAB: {err}")))?;
        let names: Vec<String> = cabinet
            .folder_entries()
            .flat_map(|folder| {
                folder
                    .file_entries()
                    .map(|file| file.name().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        for name in names {
            let member_path = format!("{path}!/{}", printable(&name));
            self.count_entries(&member_path, 1)?;
            let reader = cabinet
                .read_file(&name)
                .map_err(|err| malformed(format!("{member_path}: {err}")))?;
            let counted = Counted {
                inner: Box::new(reader),
                budget: self.budget.clone(),
            };
            self.visit(
                Source::Stream(Box::new(counted)),
                &member_path,
                &name,
                None,
                depth + 1,
                0,
            )?;
        }
        Ok(())
    }
}

fn unwalkable(path: &str, format: Format) -> Stop {
    Stop {
        kind: IncompleteKind::Unwalkable(format),
        detail: format!("{path}: the host cannot look inside {format} to see what it holds"),
    }
}

fn stream<'a>(source: Source<'a>) -> Box<dyn Read + 'a> {
    match source {
        Source::Seekable(seekable) => Box::new(seekable),
        Source::Stream(stream) => stream,
    }
}

fn read_head_seekable<R: Read + Seek>(seekable: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    seekable.seek(SeekFrom::Start(0))?;
    (&mut *seekable).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
    seekable.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// The first bytes of `source`, and the source positioned as if they had
/// not been read.
fn read_head(source: Source<'_>) -> io::Result<(Vec<u8>, Source<'_>)> {
    match source {
        Source::Seekable(mut seekable) => {
            let head = read_head_seekable(&mut seekable)?;
            Ok((head, Source::Seekable(seekable)))
        }
        Source::Stream(mut stream) => {
            let mut head = Vec::with_capacity(SNIFF_BYTES);
            (&mut stream).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
            let replay = Cursor::new(head.clone()).chain(stream);
            Ok((head, Source::Stream(Box::new(replay))))
        }
    }
}

/// Archives that start past byte 0 — a RAR or 7z marker anywhere, a zip
/// directory at the end — as (offset, format).
fn find_embedded<R: Read + Seek>(body: &mut R) -> io::Result<Vec<(u64, Format)>> {
    let mut found: Vec<(u64, Format)> = Vec::new();
    let overlap = 8usize;
    let mut buf = vec![0u8; (1 << 20) + overlap];
    let mut carried = 0usize;
    let mut offset = 0u64; // of buf[0]
    body.seek(SeekFrom::Start(0))?;
    loop {
        let n = body.read(&mut buf[carried..])?;
        if n == 0 {
            break;
        }
        let filled = carried + n;
        for (marker, format) in EMBEDDED {
            for at in memchr::memmem::find_iter(&buf[..filled], marker) {
                let position = offset + at as u64;
                if position > 0 && !found.iter().any(|(p, f)| *p == position && *f == format) {
                    found.push((position, format));
                }
            }
        }
        let keep = filled.min(overlap);
        buf.copy_within(filled - keep..filled, 0);
        offset += (filled - keep) as u64;
        carried = keep;
    }
    found.sort();
    found.truncate(64);
    // A RAR marker counts only with a well-formed archive header behind it
    // (WinRAR's own program holds the bare marker).
    let mut plausible = Vec::new();
    for (offset, format) in found {
        let mut header = [0u8; 32];
        body.seek(SeekFrom::Start(offset))?;
        let n = read_up_to(body, &mut header)?;
        if format != Format::Rar || is_rar_header(&header[..n]) {
            plausible.push((offset, format));
        }
    }
    body.seek(SeekFrom::Start(0))?;
    Ok(plausible)
}

fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A RAR marker followed by a header whose checksum holds: RAR 4's main
/// header (type 0x73, CRC16 = low half of the CRC32 of the header from its
/// type on), or RAR 5's first header (CRC32 of its size field and body).
fn is_rar_header(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"Rar!\x1a\x07\x00") && bytes.len() >= 7 + 13 {
        let header = &bytes[7..7 + 13];
        let crc = u16::from_le_bytes([header[0], header[1]]);
        return header[2] == 0x73 && crc == (crc32fast::hash(&header[2..]) & 0xffff) as u16;
    }
    if bytes.starts_with(b"Rar!\x1a\x07\x01\x00") && bytes.len() >= 8 + 5 {
        let rest = &bytes[8..];
        let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        // The header size is a vint (one byte for any real first header).
        let size = usize::from(rest[4]);
        return size < 0x80 && rest.len() >= 5 + size && crc == crc32fast::hash(&rest[4..5 + size]);
    }
    false
}

/// A zip's end-of-central-directory record, if the last 64 KiB hold one:
/// (entries, directory size), from the zip64 record when there is one.
fn zip_directory<R: Read + Seek>(source: &mut R) -> io::Result<Option<(u64, u64)>> {
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
    if entries == 0xffff || size == 0xffff_ffff {
        // The zip64 locator sits just before the record and points at the
        // zip64 end record.
        if at >= 20 && &tail[at - 20..at - 16] == b"PK\x06\x07" {
            let locator = &tail[at - 20..at];
            let zip64 = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
            source.seek(SeekFrom::Start(zip64))?;
            let mut end = [0u8; 56];
            if source.read_exact(&mut end).is_ok() && &end[..4] == b"PK\x06\x06" {
                entries = u64::from_le_bytes(end[32..40].try_into().expect("8 bytes"));
                size = u64::from_le_bytes(end[40..48].try_into().expect("8 bytes"));
            }
            source.seek(SeekFrom::Start(0))?;
        }
    }
    Ok(Some((entries, size)))
}

/// A view of `inner` from `start` on, as if it began there.
struct Window<R> {
    inner: R,
    start: u64,
}

impl<R: Seek> Window<R> {
    fn new(mut inner: R, start: u64) -> io::Result<Self> {
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

/// A name for what a stream compression holds: `a.tar.gz` → `a.tar`.
fn inner_name(name: &str, format: Format) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stripped = match format {
        Format::Gzip => base.strip_suffix(".gz").or_else(|| base.strip_suffix(".tgz")),
        Format::Bzip2 => base.strip_suffix(".bz2"),
        Format::Xz => base.strip_suffix(".xz"),
        Format::Lzma => base.strip_suffix(".lzma"),
        Format::Zstd => base.strip_suffix(".zst"),
        Format::Lz4 => base.strip_suffix(".lz4"),
        _ => None,
    };
    stripped
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| "(decompressed)".into())
}

/// Member names are the uploader's: no control characters in reports.
fn printable(name: &str) -> String {
    bucketscan_core::object::printable(name).into_owned()
}

/// APPNOTE's number for a zip compression method.
fn zip_method(method: zip::CompressionMethod) -> u16 {
    #[allow(deprecated)]
    match method {
        zip::CompressionMethod::Stored => 0,
        zip::CompressionMethod::Deflated => 8,
        zip::CompressionMethod::Deflate64 => 9,
        zip::CompressionMethod::Bzip2 => 12,
        zip::CompressionMethod::Unsupported(number) => number,
        // Methods whose decoders are compiled in are named above; the
        // enum is non-exhaustive.
        _ => u16::MAX,
    }
}

/// The bytes every decompressor of one survey may still produce.
struct Budget {
    left: Cell<u64>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn new(max: u64) -> Self {
        Self {
            left: Cell::new(max),
            exceeded: Cell::new(false),
        }
    }
}

/// A decompressor whose output counts against the survey's budget.
struct Counted<'a> {
    inner: Box<dyn Read + 'a>,
    budget: Rc<Budget>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let left = self.budget.left.get();
        if n as u64 > left {
            self.budget.exceeded.set(true);
            return Err(io::Error::other("the survey's expansion limit"));
        }
        self.budget.left.set(left - n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

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
                .contains("compression nested more than 6 times")
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
}
