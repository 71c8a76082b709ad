//! Containers too large to hand an engine whole, walked member by member
//! (as ClamAV's own large-archive scanner does: an engine cannot open a
//! file past its size limit, and windows of one are not a scan of it).
//!
//! - a zip by its central directory, each member read where it lies
//!   (through a `Read + Seek` that may be ranged GETs: no full download);
//! - tar, and tar inside gzip, bzip2, xz or zstd, in one sequential pass;
//! - a single compressed stream as its one member.
//!
//! Each member goes to a [`Sink`] whole, within the engine's size; a
//! member that is itself a tar or a compressed stream is walked in turn,
//! at any size. What cannot be handed over (encrypted, over the size and
//! no walkable container, a method the host cannot decode) is reported to
//! the sink as such, and the walk goes on.
//!
//! Fail-closed: a container that does not parse, a limit reached, an
//! archive bomb (a compression ratio no real data has, zip members that
//! overlap) ends the walk with [`Halt::Stop`]; the caller's verdict is
//! then `unscannable`, never clean.

use crate::survey::{decompressor, inner_name, printable, zip_directory, zip_method};
use bucketscan_core::UnscannableReason;
use bucketscan_core::formats::{Format, SNIFF_BYTES, sniff};
use std::cell::{Cell, RefCell};
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;

/// What one walk may cost, and what a member may weigh to be handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkLimits {
    /// Containers nested inside each other.
    pub max_depth: u32,
    /// Members handed over or reported, in all.
    pub max_members: u64,
    /// Bytes decompressed, in all (every layer counts).
    pub max_expanded: u64,
    /// The largest member handed to the sink whole (the engine's limit).
    pub member_bytes: u64,
    /// Decompressed bytes per byte read, past [`RATIO_FLOOR`]: more is a
    /// bomb.
    pub max_ratio: u64,
    /// Memory one decoder may take for its dictionary or window.
    pub decoder_memory: u64,
}

impl Default for WalkLimits {
    fn default() -> Self {
        // GuardDuty's published limits: 10,000 files, 100 GB extracted.
        Self {
            max_depth: 8,
            max_members: 10_000,
            max_expanded: 100 << 30,
            member_bytes: 2 << 30,
            max_ratio: 1_000,
            decoder_memory: 128 << 20,
        }
    }
}

/// Below this many decompressed bytes the ratio is not checked: small
/// runs of zeros compress far better than 1,000:1.
pub const RATIO_FLOOR: u64 = 64 << 20;

/// The largest zip central directory read into memory (about a million
/// members).
const MAX_ZIP_DIRECTORY: u64 = 256 << 20;

/// Zip methods the walker decompresses.
const WALKED_ZIP_METHODS: [u16; 4] = [0, 8, 9, 12];

/// Where the members go.
pub trait Sink {
    /// A member of at most [`WalkLimits::member_bytes`] (`size` when the
    /// container says it), its bytes in `body`. `path` names it inside the
    /// object (`big.tar.gz!/big.tar!/dir/x.exe`).
    fn member(&mut self, path: &str, size: Option<u64>, body: &mut dyn Read) -> Result<(), Halt>;
    /// A member that cannot be handed over, and why.
    fn not_handed(&mut self, path: &str, reason: UnscannableReason, detail: String) -> Result<(), Halt>;
}

/// Why a walk ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The sink asked to stop (its verdict is reached, or it failed).
    BySink,
    /// The walk cannot go on: a malformed container, a limit, a bomb.
    Stop { reason: UnscannableReason, detail: String },
}

/// What a finished walk went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walked {
    pub members: u64,
    /// Bytes decompressed, in all.
    pub expanded: u64,
}

/// The container an object starting with `head` is, if the host walks it
/// member by member. The magic numbers only: weak ones (lzma "alone")
/// would make random bytes look like a broken container.
pub fn walkable(head: &[u8]) -> Option<Format> {
    sniff(head).filter(|format| {
        matches!(
            format,
            Format::Zip | Format::Tar | Format::Gzip | Format::Bzip2 | Format::Xz | Format::Zstd
        )
    })
}

/// Walks `body`, named `name`, handing its members to `sink`.
pub fn walk<R: Read + Seek>(body: R, name: &str, limits: &WalkLimits, sink: &mut dyn Sink) -> Result<Walked, Halt> {
    let tally = Rc::new(Tally::default());
    let mut walker = Walker {
        limits,
        sink,
        tally: tally.clone(),
        members: 0,
    };
    let body = Raw {
        inner: body,
        tally: tally.clone(),
    };
    walker.top(body, name)?;
    Ok(Walked {
        members: walker.members,
        expanded: tally.expanded.get(),
    })
}

struct Walker<'w> {
    limits: &'w WalkLimits,
    sink: &'w mut dyn Sink,
    tally: Rc<Tally>,
    members: u64,
}

impl Walker<'_> {
    fn top<R: Read + Seek>(&mut self, mut body: R, name: &str) -> Result<(), Halt> {
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let read = (&mut body)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .and_then(|_| body.seek(SeekFrom::Start(0)));
        read.map_err(|err| self.io_stop(name, &err))?;
        match walkable(&head) {
            Some(Format::Zip) => self.zip(body, name, 0),
            Some(format) => self.stream_container(Box::new(body), name, name, format, 0),
            None => Err(stop(
                UnscannableReason::UnsupportedContainer,
                format!("{name}: no container the host walks member by member"),
            )),
        }
    }

    /// A member, or the inside of a compressed stream: walked when it is a
    /// tar or a compression, handed over whole when it fits, else reported.
    fn member(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &str,
        name: &str,
        size: Option<u64>,
        depth: u32,
    ) -> Result<(), Halt> {
        let (head, reader) = peek(reader).map_err(|err| self.io_stop(path, &err))?;
        let container = walkable(&head).filter(|format| *format != Format::Zip);
        if let Some(format) = container {
            return self.stream_container(reader, path, name, format, depth);
        }
        self.count(path)?;
        match size {
            Some(size) if size > self.limits.member_bytes => self.sink.not_handed(
                path,
                UnscannableReason::TooLarge,
                format!(
                    "{path}: {size} bytes is over the {}-byte limit of the engine{}",
                    self.limits.member_bytes,
                    match sniff(&head) {
                        Some(format) => format!(", and a {format} inside a stream is not walked"),
                        None => String::new(),
                    }
                ),
            ),
            _ => {
                // A read that fails inside the sink is the container's
                // failure, whatever the sink then answers.
                let mut reader = Caught {
                    inner: reader,
                    error: None,
                };
                let handed = self.sink.member(path, size, &mut reader);
                if let Some(err) = reader.error.take() {
                    return Err(self.io_stop(path, &err));
                }
                handed?;
                // What the sink left unread (it gave up on an oversized
                // member) still has to pass for the stream to go on.
                io::copy(&mut reader, &mut io::sink())
                    .map(|_| ())
                    .map_err(|err| self.io_stop(path, &err))
            }
        }
    }

    fn stream_container(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &str,
        name: &str,
        format: Format,
        depth: u32,
    ) -> Result<(), Halt> {
        if depth >= self.limits.max_depth {
            return Err(stop(
                UnscannableReason::LimitsExceeded,
                format!("{path}: containers nested more than {} deep", self.limits.max_depth),
            ));
        }
        if format == Format::Tar {
            return self.tar(reader, path, depth);
        }
        let decoded = decompressor(format, reader, self.limits.decoder_memory)
            .map_err(|err| stop(UnscannableReason::Malformed, format!("{path}: not a readable {err}")))?;
        let counted = Counted {
            inner: decoded,
            tally: self.tally.clone(),
            limits: self.limits.clone(),
        };
        let inner = inner_name(name, format);
        self.member(Box::new(counted), &format!("{path}!/{inner}"), &inner, None, depth + 1)
    }

    fn tar(&mut self, reader: Box<dyn Read + '_>, path: &str, depth: u32) -> Result<(), Halt> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|err| self.io_stop(path, &err))?;
        for entry in entries {
            let entry = entry.map_err(|err| self.io_stop(path, &err))?;
            // Every entry with data, whatever its type flag says: tools
            // (and clamd) extract "contiguous" and unknown types as files.
            let size = entry.size();
            if size == 0 {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let member_path = format!("{path}!/{}", printable(&name));
            self.member(Box::new(entry), &member_path, &name, Some(size), depth + 1)?;
        }
        self.after_end(archive.into_inner(), path, depth)
    }

    /// What follows a tar's end-of-archive blocks: zeros (the padding
    /// tools write), or bytes a tar reader never shows but that are in the
    /// object all the same: handed over like a member.
    fn after_end(&mut self, mut rest: Box<dyn Read + '_>, path: &str, depth: u32) -> Result<(), Halt> {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = rest.read(&mut chunk).map_err(|err| self.io_stop(path, &err))?;
            if n == 0 {
                return Ok(());
            }
            if let Some(at) = chunk[..n].iter().position(|byte| *byte != 0) {
                let found = Cursor::new(chunk[at..n].to_vec()).chain(rest);
                let name = "(after the end of the archive)";
                return self.member(Box::new(found), &format!("{path}!/{name}"), name, None, depth + 1);
            }
        }
    }

    fn zip<R: Read + Seek>(&mut self, mut body: R, path: &str, depth: u32) -> Result<(), Halt> {
        let malformed = |detail: String| stop(UnscannableReason::Malformed, format!("{path}: {detail}"));
        match zip_directory(&mut body).map_err(|err| self.io_stop(path, &err))? {
            Some((_, directory)) if directory > MAX_ZIP_DIRECTORY => {
                return Err(stop(
                    UnscannableReason::LimitsExceeded,
                    format!("{path}: a zip directory of {directory} bytes"),
                ));
            }
            Some((entries, _)) if entries > self.limits.max_members => {
                return Err(stop(
                    UnscannableReason::LimitsExceeded,
                    format!("{path}: {entries} members; the limit is {}", self.limits.max_members),
                ));
            }
            _ => {}
        }
        let mut archive = zip::ZipArchive::new(body).map_err(|err| self.zip_stop(path, err))?;
        let spans = self.zip_spans(&mut archive, path)?;
        check_no_overlap(&spans).map_err(malformed)?;
        for index in 0..archive.len() {
            let (name, method, encrypted, is_dir, size, packed) = {
                let member = archive.by_index_raw(index).map_err(|err| self.zip_stop(path, err))?;
                (
                    String::from_utf8_lossy(member.name_raw()).into_owned(),
                    zip_method(member.compression()),
                    member.encrypted(),
                    member.is_dir(),
                    member.size(),
                    member.compressed_size(),
                )
            };
            if is_dir && size == 0 {
                continue;
            }
            let member_path = format!("{path}!/{}", printable(&name));
            if encrypted {
                self.count(&member_path)?;
                self.sink.not_handed(
                    &member_path,
                    UnscannableReason::Encrypted,
                    format!("{member_path}: encrypted"),
                )?;
                continue;
            }
            if !WALKED_ZIP_METHODS.contains(&method) {
                self.count(&member_path)?;
                self.sink.not_handed(
                    &member_path,
                    UnscannableReason::UnsupportedContainer,
                    format!("{member_path}: compressed with zip method {method}, which the host does not decode"),
                )?;
                continue;
            }
            if size > RATIO_FLOOR && size / packed.max(1) > self.limits.max_ratio {
                return Err(stop(
                    UnscannableReason::LimitsExceeded,
                    format!(
                        "{member_path}: {packed} bytes that say they expand to {size}: over {}:1, an archive bomb",
                        self.limits.max_ratio
                    ),
                ));
            }
            let member = archive
                .by_index(index)
                .map_err(|err| self.zip_stop(&member_path, err))?;
            let counted = Counted {
                inner: Box::new(member),
                tally: self.tally.clone(),
                limits: self.limits.clone(),
            };
            self.member(Box::new(counted), &member_path, &name, Some(size), depth + 1)?;
        }
        let directory = archive.central_directory_start();
        self.zip_gaps(archive.into_inner(), path, &spans, directory)
    }

    /// Bytes of a zip no member holds (a self-extractor's stub, data
    /// hidden between members where readers of local headers find it) go
    /// to the sink like members: every byte of the object is looked at.
    fn zip_gaps<R: Read + Seek>(
        &mut self,
        mut body: R,
        path: &str,
        spans: &[Span],
        directory: u64,
    ) -> Result<(), Halt> {
        for (start, end) in gaps(spans, directory) {
            let gap_path = format!("{path}!/(bytes {start}..{end} outside every member)");
            self.count(&gap_path)?;
            let len = end - start;
            if len > self.limits.member_bytes {
                self.sink.not_handed(
                    &gap_path,
                    UnscannableReason::TooLarge,
                    format!(
                        "{gap_path}: {len} bytes is over the {}-byte limit of the engine",
                        self.limits.member_bytes
                    ),
                )?;
                continue;
            }
            body.seek(SeekFrom::Start(start))
                .map_err(|err| self.io_stop(path, &err))?;
            let reader: Box<dyn Read + '_> = Box::new((&mut body).take(len));
            let mut reader = Caught {
                inner: reader,
                error: None,
            };
            let handed = self.sink.member(&gap_path, Some(len), &mut reader);
            if let Some(err) = reader.error.take() {
                return Err(self.io_stop(path, &err));
            }
            handed?;
        }
        Ok(())
    }

    /// Where each member's local header and data lie.
    fn zip_spans<R: Read + Seek>(&self, archive: &mut zip::ZipArchive<R>, path: &str) -> Result<Vec<Span>, Halt> {
        let mut spans = Vec::with_capacity(archive.len());
        for index in 0..archive.len() {
            let member = archive.by_index_raw(index).map_err(|err| self.zip_stop(path, err))?;
            let data = member.data_start().unwrap_or(member.header_start());
            spans.push(Span {
                start: member.header_start(),
                end: data.saturating_add(member.compressed_size()),
                name: printable(&String::from_utf8_lossy(member.name_raw())),
            });
        }
        Ok(spans)
    }

    fn count(&mut self, path: &str) -> Result<(), Halt> {
        self.members += 1;
        if self.members > self.limits.max_members {
            return Err(stop(
                UnscannableReason::LimitsExceeded,
                format!(
                    "{path}: more than {} members in all; the rest was not looked at",
                    self.limits.max_members
                ),
            ));
        }
        Ok(())
    }

    /// An I/O error on the way: a limit the counters tripped, or bytes
    /// that are not what their container says.
    fn io_stop(&self, path: &str, err: &io::Error) -> Halt {
        match self.tally.over.borrow().clone() {
            Some(why) => stop(UnscannableReason::LimitsExceeded, format!("{path}: {why}")),
            None => stop(UnscannableReason::Malformed, format!("{path}: {err}")),
        }
    }

    fn zip_stop(&self, path: &str, err: zip::result::ZipError) -> Halt {
        match err {
            zip::result::ZipError::Io(err) => self.io_stop(path, &err),
            other => stop(
                UnscannableReason::Malformed,
                format!("{path}: not a readable zip archive: {other}"),
            ),
        }
    }
}

fn stop(reason: UnscannableReason, detail: String) -> Halt {
    Halt::Stop { reason, detail }
}

/// Where one zip member's header and data lie.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    name: String,
}

/// Members that share bytes are how a zip bomb multiplies one compressed
/// stream (and how two tools come to see different content): refused.
fn check_no_overlap(spans: &[Span]) -> Result<(), String> {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|span| span.start);
    for pair in sorted.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(format!(
                "members `{}` and `{}` overlap (bytes {}..{} and {}..{}): an archive bomb or a disguise",
                pair[0].name, pair[1].name, pair[0].start, pair[0].end, pair[1].start, pair[1].end
            ));
        }
    }
    Ok(())
}

/// What a data descriptor after a member's data may take: smaller gaps
/// are no place for content.
const DESCRIPTOR_SLACK: u64 = 32;

/// The stretches before `directory` that no span covers, past the slack a
/// data descriptor takes.
fn gaps(spans: &[Span], directory: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|span| span.start);
    let mut gaps = Vec::new();
    let mut covered = 0u64;
    let mut first = true;
    for span in sorted
        .iter()
        .map(|span| (span.start, span.end))
        .chain([(directory, directory)])
    {
        let slack = if first { 0 } else { DESCRIPTOR_SLACK };
        if span.0 > covered + slack {
            gaps.push((covered, span.0));
        }
        covered = covered.max(span.1);
        first = false;
    }
    gaps
}

/// The first bytes of `reader`, and a reader that still yields them.
fn peek<'r>(mut reader: Box<dyn Read + 'r>) -> io::Result<(Vec<u8>, Box<dyn Read + 'r>)> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut reader).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
    let rest = Cursor::new(head.clone()).chain(reader);
    Ok((head, Box::new(rest)))
}

/// A reader that keeps the first error it met.
struct Caught<'r> {
    inner: Box<dyn Read + 'r>,
    error: Option<io::Error>,
}

impl Read for Caught<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            if self.error.is_none() {
                self.error = Some(io::Error::new(err.kind(), err.to_string()));
            }
        })
    }
}

/// Bytes read from the object, and bytes decompressed from them.
#[derive(Default)]
struct Tally {
    raw: Cell<u64>,
    expanded: Cell<u64>,
    /// The limit a counter tripped, for the error it caused.
    over: RefCell<Option<String>>,
}

/// The object's own bytes, counted.
struct Raw<R> {
    inner: R,
    tally: Rc<Tally>,
}

impl<R: Read> Read for Raw<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.raw.set(self.tally.raw.get() + n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Raw<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// A decompressor's output, counted against the expansion limits.
struct Counted<'a> {
    inner: Box<dyn Read + 'a>,
    tally: Rc<Tally>,
    limits: WalkLimits,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let expanded = self.tally.expanded.get() + n as u64;
        self.tally.expanded.set(expanded);
        let raw = self.tally.raw.get().max(1);
        let over = if expanded > self.limits.max_expanded {
            Some(format!(
                "more than {} bytes decompressed; the rest was not looked at",
                self.limits.max_expanded
            ))
        } else if expanded > RATIO_FLOOR && expanded / raw > self.limits.max_ratio {
            Some(format!(
                "{expanded} bytes decompressed from {raw}: over {}:1, an archive bomb",
                self.limits.max_ratio
            ))
        } else {
            None
        };
        if let Some(why) = over {
            *self.tally.over.borrow_mut() = Some(why.clone());
            return Err(io::Error::other(why));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
