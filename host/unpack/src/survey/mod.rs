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
mod embedded;

use crate::tar_headers;

use embedded::Window;
pub(crate) use embedded::zip_directory;
use std::any::Any;
use std::cell::Cell;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Spool room for what the survey writes down (nested zips, read by their
/// directory at the end): the scan path's spool budget.
pub trait Room: Send + Sync {
    /// Reserves `bytes` until the returned guard drops.
    fn reserve(&self, bytes: u64) -> Result<Box<dyn Any + Send>, NoRoom>;
}

/// Why [`Room::reserve`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoom {
    /// Others hold the room now: a later survey may fit.
    NotNow(String),
    /// The survey would need more than there will ever be: a limit.
    Never(String),
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
            max_stream_layers: 4,
            // `xz -9` and 7-Zip's ultra level need a 64 MiB dictionary.
            decoder_memory: 128 << 20,
            temp_dir: std::env::temp_dir(),
            room: None,
        }
    }
}

/// Zip methods the walker decompresses to look inside.
const WALKED_ZIP_METHODS: [u16; 4] = [0, 8, 9, 12];
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
    /// in (an archive appended to an image, an SFX). A zip found only by
    /// its directory at the end that does not open is not one: no tool
    /// (clamd included) would open it.
    fn top<R: Read + Seek>(&mut self, mut body: R, name: &str, content_type: Option<&str>) -> Result<(), Stop> {
        let io = |err: io::Error| malformed(format!("{name}: {err}"));
        let head = read_head_seekable(&mut body).map_err(io)?;
        let first = sniff(&head)
            .or_else(|| by_type(content_type))
            .or_else(|| looks_like_brotli(name, &head).then_some(Format::Brotli));
        body.seek(SeekFrom::Start(0)).map_err(io)?;
        let hits = embedded::find(&mut body).map_err(io)?;
        body.seek(SeekFrom::Start(0)).map_err(io)?;
        let trailing_zip = first != Some(Format::Zip) && zip_directory(&mut body).map_err(io)?.is_some();
        self.visit(Source::Seekable(Box::new(&mut body)), name, name, first, 0, 0)?;
        if trailing_zip {
            body.seek(SeekFrom::Start(0)).map_err(io)?;
            self.walk_zip(Box::new(&mut body), &format!("{name}@zip"), 1, true)?;
        }
        let hits = hits.map_err(|count| limit(format!("{name}: more than {} archives inside", count - 1)))?;
        for hit in hits {
            let path = format!("{name}@{}", hit.offset);
            self.record(&path, hit.format);
            match hit.format {
                Format::SevenZip => {
                    let view = Window::new(&mut body, hit.offset).map_err(io)?;
                    self.walk_7z(Box::new(view), &path, 1)?;
                }
                other => return Err(unwalkable(&path, other)),
            }
        }
        Ok(())
    }

    /// The rest of a member or decoded stream that is no container
    /// itself: an archive may still sit inside it (a picture with a RAR on
    /// its end, in a zip). Read through the byte budget.
    fn look_inside<'s>(&mut self, source: Source<'s>, path: &str) -> Result<(), Stop> {
        let mut counted = Counted {
            inner: stream(source),
            budget: self.budget.clone(),
        };
        let hits = embedded::find(&mut counted).map_err(|err| self.stop_at(path, &err))?;
        let hits = hits.map_err(|count| limit(format!("{path}: more than {} archives inside", count - 1)))?;
        match hits.first() {
            None => Ok(()),
            Some(hit) => {
                // A stream cannot be walked from an offset: what is inside
                // the archive stays unknown.
                let inside = format!("{path}@{}", hit.offset);
                self.record(&inside, hit.format);
                Err(unwalkable(&inside, hit.format))
            }
        }
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
        let format = known
            .or_else(|| sniff(&head))
            .or_else(|| (depth > 0 && looks_like_brotli(name, &head)).then_some(Format::Brotli));
        let Some(format) = format else {
            // The object itself was searched whole by `top`.
            return if depth > 0 {
                self.look_inside(source, path)
            } else {
                Ok(())
            };
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
                self.walk_7z(seekable, path, depth)
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
                let inner = inner_name(name, format).unwrap_or(DECOMPRESSED);
                let inner_path = format!("{path}!/{}", shown_inner_name(name, format));
                self.visit(
                    Source::Stream(Box::new(counted)),
                    &inner_path,
                    inner,
                    None,
                    depth + 1,
                    layers + 1,
                )
            }
            // Raw brotli is opaque to clients too (nothing decodes it on
            // receipt): recorded, for the engine check, not walked.
            Format::Brotli | Format::Encrypted | Format::ZipMethod(_) | Format::SevenZipCoder(_) => Ok(()),
            Format::Rar | Format::Arj | Format::Cpio | Format::Iso9660 => Err(unwalkable(path, format)),
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
        } else if err.to_string().to_ascii_lowercase().contains("memory") {
            limit(format!(
                "{path}: a decoder would need more than {} bytes of memory: {err}",
                self.limits.decoder_memory
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
        decompressor(format, input, self.limits.decoder_memory)
            .map_err(|err| malformed(format!("{path}: not a readable {err}")))
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
        let guard = room.reserve(bytes).map_err(|refusal| match refusal {
            NoRoom::NotNow(why) => Stop {
                kind: IncompleteKind::NoRoom,
                detail: format!("{path}: spooling a nested archive: {why}"),
            },
            NoRoom::Never(why) => limit(format!("{path}: spooling a nested archive: {why}")),
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
            let member_path = format!("{path}!/{}", member_name(&name));
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
        let (source, tap) = tar_headers::tap(source, false);
        let mut archive = tar::Archive::new(source);
        let stop = |survey: &Self, err: &io::Error| match tap.over() {
            true => limit(format!("{path}: {}", tap.over_detail())),
            false => survey.stop_at(path, err),
        };
        let mut entries = archive.entries().map_err(|err| stop(self, &err))?;
        loop {
            tap.reading_headers();
            let Some(entry) = entries.next() else { break };
            let mut entry = entry.map_err(|err| stop(self, &err))?;
            if tar_headers::is_extension(&entry) {
                // Its data passes as headers: budgeted, kept.
                continue;
            }
            tap.reading_data(tar_headers::archived_len(&mut entry));
            // Every entry with data, whatever its type flag says: tools
            // (and clamd) extract "contiguous" and unknown types as files.
            // Its size as GNU tar reads it: a PAX `size` record wins.
            if entry.size() == 0 {
                continue;
            }
            let (name, shown) = tar_entry_name(&entry);
            let member_path = format!("{path}!/{shown}");
            self.count_entries(&member_path, 1)?;
            self.visit(Source::Stream(Box::new(entry)), &member_path, &name, None, depth + 1, 0)?;
        }
        Ok(())
    }

    /// Walks a 7z: each block's coders (an engine that opens the 7z may not
    /// decode them all), then each member, every byte of it through the
    /// byte budget.
    fn walk_7z<'s>(&mut self, source: Box<dyn ReadSeek + 's>, path: &str, depth: u32) -> Result<(), Stop> {
        let memory_kb = (self.limits.decoder_memory / 1024) as usize;
        let opened =
            sevenz_rust2::ArchiveReader::new_with_memory_limit(source, sevenz_rust2::Password::empty(), memory_kb);
        let mut archive = opened.map_err(|err| self.seven_zip_stop(path, &err.to_string()))?;
        archive.set_thread_count(1);
        let count = archive.archive().files.len() as u64;
        self.count_entries(path, count)?;
        self.entries -= count;
        let coders: Vec<u32> = archive
            .archive()
            .blocks
            .iter()
            .flat_map(|block| block.coders.iter().map(|coder| coder_id(coder.encoder_method_id())))
            .collect();
        for coder in coders {
            let format = match coder {
                0x00 | 0x21 | 0x0003_0101 => continue, // copy, LZMA2, LZMA
                0x06f1_0701 => Format::Encrypted,
                other => Format::SevenZipCoder(other),
            };
            if !self
                .found
                .iter()
                .any(|found| found.path == path && found.format == format)
            {
                self.record(path, format);
            }
        }
        let mut stopped: Option<Stop> = None;
        let walked = archive.for_each_entries(|entry, reader| {
            if !entry.has_stream || entry.is_directory {
                return Ok(true);
            }
            let member_path = format!("{path}!/{}", member_name(&entry.name));
            let mut counted = Counted {
                inner: Box::new(reader),
                budget: self.budget.clone(),
            };
            let outcome = self.count_entries(&member_path, 1).and_then(|()| {
                let member = Source::Stream(Box::new(&mut counted));
                self.visit(member, &member_path, &entry.name, None, depth + 1, 0)?;
                // What the member walk left unread is decoded anyway: count it.
                io::copy(&mut counted, &mut io::sink())
                    .map(|_| ())
                    .map_err(|err| self.stop_at(&member_path, &err))
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
        walked.map_err(|err| self.seven_zip_stop(path, &err.to_string()))
    }

    fn seven_zip_stop(&self, path: &str, err: &str) -> Stop {
        if err.to_ascii_lowercase().contains("mem") {
            limit(format!(
                "{path}: a 7z decoder would need more than {} bytes of memory: {err}",
                self.limits.decoder_memory
            ))
        } else {
            malformed(format!("{path}: not a readable 7z archive: {err}"))
        }
    }

    /// Walks a CAB. Its reader finds a member by name and decodes its
    /// folder from the start each time: names must be unique, and the
    /// decoding that costs is counted before it is done.
    fn walk_cab<'s>(&mut self, source: Box<dyn ReadSeek + 's>, path: &str, depth: u32) -> Result<(), Stop> {
        let mut cabinet =
            cab::Cabinet::new(source).map_err(|err| malformed(format!("{path}: not a readable CAB: {err}")))?;
        let mut names: Vec<String> = Vec::new();
        let mut cost = 0u64;
        for folder in cabinet.folder_entries() {
            let mut offset = 0u64;
            for file in folder.file_entries() {
                offset += u64::from(file.uncompressed_size());
                cost = cost.saturating_add(offset);
                names.push(file.name().to_owned());
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(malformed(format!(
                "{path}: two members share a name (only the first could be read)"
            )));
        }
        if cost > self.budget.left.get() {
            return Err(limit(format!(
                "{path}: reading its members would decode {cost} bytes; more than the survey's budget"
            )));
        }
        self.budget.left.set(self.budget.left.get() - cost);
        for name in names {
            let member_path = format!("{path}!/{}", member_name(&name));
            self.count_entries(&member_path, 1)?;
            let reader = cabinet
                .read_file(&name)
                .map_err(|err| malformed(format!("{member_path}: {err}")))?;
            self.visit(
                Source::Stream(Box::new(reader)),
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

/// A 7z coder's ID, its bytes big-endian.
fn coder_id(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |id, byte| id << 8 | u32::from(*byte))
}

/// Raw brotli has no magic: a `.br` name whose first bytes decode as
/// brotli (text that happens to end in `.br`, a `.com.br` page, does not).
fn looks_like_brotli(name: &str, head: &[u8]) -> bool {
    if !name.to_ascii_lowercase().ends_with(".br") || head.is_empty() {
        return false;
    }
    let mut decoder = brotli_decompressor::Decompressor::new(head, 4096);
    let mut out = vec![0u8; 64 * 1024];
    loop {
        match decoder.read(&mut out) {
            Ok(0) => return true,
            Ok(_) => continue,
            // Out of input before the end: the head was all right so far.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return true,
            Err(_) => return false,
        }
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

/// A name for what a stream compression holds: `a.tar.gz` → `a.tar`.
/// A decoder for the stream compression `format` over `input`, within
/// `memory` bytes of dictionary or window; `Err` names what `input` is
/// not (`xz stream: …`).
pub(crate) fn decompressor<'s>(
    format: Format,
    input: Box<dyn Read + 's>,
    memory: u64,
) -> Result<Box<dyn Read + 's>, String> {
    let refused = |what: &str, err: &dyn std::fmt::Display| format!("{what}: {err}");
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
            let mut decoder = zstd::stream::read::Decoder::new(input).map_err(|err| refused("zstd stream", &err))?;
            // A window of at most 32 MiB (zstd's `--long` archives need
            // more, and are then unproven rather than a memory hazard).
            decoder.window_log_max(25).map_err(|err| refused("zstd stream", &err))?;
            Box::new(decoder)
        }
        Format::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        other => unreachable!("{other} is not a stream compression"),
    })
}

/// What a compressed stream named `name` holds is called: its name without
/// the compression's suffix, or `None` when that leaves nothing.
pub(crate) fn inner_name(name: &str, format: Format) -> Option<&str> {
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
    stripped.filter(|s| !s.is_empty())
}

/// The walk's name for a compressed stream's content when the stream's own
/// name gives none.
pub(crate) const DECOMPRESSED: &str = "(decompressed)";

/// How a compressed stream's content is shown in a member's location.
pub(crate) fn shown_inner_name(name: &str, format: Format) -> String {
    inner_name(name, format).map_or_else(|| DECOMPRESSED.to_owned(), member_name)
}

/// How a member's name is shown in its location. Names are the uploader's:
/// control and invisible characters are escaped and `\\` doubled
/// (`text::printable`); then `!/`, which separates the parts of a
/// location, becomes `\\!/`, and a name starting with `(` gets a `\\`
/// before it. Only the walk's own members (`(decompressed)`, the bytes
/// outside every member, what follows the end of an archive) start a part
/// with a bare `(`, so no upload passes a member of its own for one of
/// them, nor a name for two parts; and since every other `\\` is doubled,
/// the escaping stays one-to-one. Characters that look like `(`, `!` or
/// `/` (`（decompressed）`, `x.zipǃ∕y`) are written as escapes, so no name
/// reads as the walk's own or as two parts to a person either.
pub(crate) fn member_name(name: &str) -> String {
    let printable = bucketscan_core::text::printable(name);
    let shown = if printable.chars().any(looks_like_a_separator) {
        printable
            .chars()
            .map(|c| match looks_like_a_separator(c) {
                true => c.escape_unicode().to_string(),
                false => c.to_string(),
            })
            .collect()
    } else {
        printable.into_owned()
    };
    let shown = shown.replace("!/", "\\!/");
    if shown.starts_with('(') {
        format!("\\{shown}")
    } else {
        shown
    }
}

/// Look-alikes of `(`, `)`, `!` and `/` (Unicode's confusables for them):
/// what a reader would take for the walk's own names or separators.
fn looks_like_a_separator(c: char) -> bool {
    matches!(
        c,
        // ( and )
        '\u{207d}' | '\u{207e}' | '\u{208d}' | '\u{208e}' | '\u{2768}'
            ..='\u{276b}' | '\u{27ee}' | '\u{27ef}'
            | '\u{2985}' | '\u{2986}' | '\u{2e28}' | '\u{2e29}' | '\u{fd3e}' | '\u{fd3f}' | '\u{fe35}' | '\u{fe36}'
            | '\u{fe59}' | '\u{fe5a}' | '\u{ff08}' | '\u{ff09}'
            // !
            | '\u{01c3}' | '\u{2d51}' | '\u{fe57}' | '\u{ff01}'
            // /
            | '\u{1735}' | '\u{2041}' | '\u{2044}' | '\u{2215}' | '\u{2571}' | '\u{27cb}' | '\u{29f8}' | '\u{2cc6}'
            | '\u{2f03}' | '\u{3033}' | '\u{30ce}' | '\u{31d3}' | '\u{4e3f}' | '\u{ff0f}'
    )
}

/// A tar entry's name, and how it is shown; the walk's own
/// `(unreadable name)` when it has none it can read.
pub(crate) fn tar_entry_name<R: std::io::Read>(entry: &tar::Entry<'_, R>) -> (String, String) {
    match entry.path() {
        Ok(path) => {
            let name = path.to_string_lossy().into_owned();
            let shown = member_name(&name);
            (name, shown)
        }
        Err(_) => ("(unreadable name)".into(), "(unreadable name)".into()),
    }
}

/// APPNOTE's number for a zip compression method.
pub(crate) fn zip_method(method: zip::CompressionMethod) -> u16 {
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
mod tests;
