//! Containers too large to hand an engine whole, walked member by member
//! (as ClamAV's own large-archive scanner does: an engine cannot open a
//! file past its size limit, and windows of one are not a scan of it).
//!
//! - a zip by its central directory, each member read where it lies
//!   (through a `Read + Seek` that may be ranged GETs: no full download);
//! - a 7z by its header, its packed streams decoded front to back;
//! - tar, and tar inside gzip, bzip2, xz or zstd, in one sequential pass;
//! - a single compressed stream as its one member;
//! - an ISO 9660 image by its directories, each file read where it lies
//!   ([`iso`]).
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

use crate::survey::{
    DECOMPRESSED, decompressor, inner_name, member_name, shown_inner_name, tar_entry_name, zip_directory, zip_method,
};
use crate::tar_headers;
use bucketscan_core::UnscannableReason;
use bucketscan_core::formats::{Format, ISO9660_HEAD_BYTES, is_iso9660, sniff};
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
    /// container says it), its bytes in `body`. `path` says where it lies
    /// in the object (`big.tar.gz!/big.tar!/dir/x.exe`).
    fn member(&mut self, path: &MemberPath, size: Option<u64>, body: &mut dyn Read) -> Result<(), Halt>;
    /// A member that cannot be handed over, and why.
    fn not_handed(&mut self, path: &MemberPath, reason: UnscannableReason, detail: String) -> Result<(), Halt>;
    /// A member of `size` bytes, over [`WalkLimits::member_bytes`] and no
    /// container the walk enters: never handed over whole, but the sink may
    /// read `body` (to hash it). `detail` says why it is too large. By
    /// default it is reported too large, unread.
    fn oversized(&mut self, path: &MemberPath, _size: u64, body: &mut dyn Read, detail: String) -> Result<(), Halt> {
        let _unread = body;
        self.not_handed(path, UnscannableReason::TooLarge, detail)
    }
    /// A member of `size` bytes, over [`WalkLimits::member_bytes`], that
    /// is a container the walk reads by seeking (a zip, 7z or ISO image
    /// inside another container): the sink writes `body` to its spool and
    /// gives it back to be walked. `Ok(None)`, with `body` unread, when it
    /// has no room for it (the member is then [`Sink::oversized`]). By
    /// default, no room.
    fn spool(
        &mut self,
        path: &MemberPath,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Option<Box<dyn SpooledContainer>>, Halt> {
        let _unread = (path, size, body);
        Ok(None)
    }
    /// A zip, 7z or ISO image named as one whose size no header tells (a
    /// compressed stream's content, `backup.iso.xz`): the sink writes
    /// `body` to its spool and gives it back with its length, for the walk
    /// to hand over whole if it fits or walk it if not. `Ok(None)` when
    /// the sink took it as a member itself (handed over, or too large for
    /// its room: reported), `body` read to its end. By default, a member
    /// of unknown size.
    fn spool_unsized(&mut self, path: &MemberPath, body: &mut dyn Read) -> Result<Option<SpooledStream>, Halt> {
        self.member(path, None, body).map(|()| None)
    }
}

/// A member written to the sink's spool, for the walk to seek in.
pub trait SpooledContainer: Read + Seek {}
impl<T: Read + Seek> SpooledContainer for T {}

/// A compressed stream's content written to the sink's spool, its length
/// now known.
pub struct SpooledStream {
    pub body: Box<dyn SpooledContainer>,
    pub len: u64,
}

/// Where a member lies in the walked object: the object's name, then its
/// name inside each container from the outermost in. Shown as its
/// location, `big.tar.gz!/big.tar!/dir/x.exe`; kept as parts because the
/// uploader picks the names, `!/` included, so a location cannot be split
/// back into them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPath {
    object: String,
    names: Vec<String>,
}

impl MemberPath {
    /// The walked object itself.
    pub fn of(object: &str) -> Self {
        Self {
            object: object.to_owned(),
            names: Vec::new(),
        }
    }

    /// The member named `name` inside this one.
    pub fn join(&self, name: &str) -> Self {
        let mut names = self.names.clone();
        names.push(name.to_owned());
        Self {
            object: self.object.clone(),
            names,
        }
    }

    /// The walked object's name.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The names inside the object, outermost first; none for the object.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl std::fmt::Display for MemberPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.object)?;
        self.names.iter().try_for_each(|name| write!(f, "!/{name}"))
    }
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

/// How many leading bytes of an object [`walkable`] needs to tell every
/// container it walks (an ISO 9660 image's magic is at byte 32769).
pub const WALK_HEAD_BYTES: usize = ISO9660_HEAD_BYTES;

/// The container an object starting with `head` (its first
/// [`WALK_HEAD_BYTES`]) is, if the host walks it member by member. The
/// magic numbers only: weak ones (lzma "alone") would make random bytes
/// look like a broken container.
pub fn walkable(head: &[u8]) -> Option<Format> {
    match sniff(head) {
        Some(format @ (Format::Zip | Format::SevenZip)) => Some(format),
        Some(_) => stream_container(head),
        None => is_iso9660(head).then_some(Format::Iso9660),
    }
}

/// The tar or compression `head` starts with, by a strong magic number
/// (a tar by its `ustar` magic: an old tar's header checksum can hide in
/// the DOS stub of an executable).
fn stream_container(head: &[u8]) -> Option<Format> {
    match sniff(head)? {
        Format::Tar if head.get(257..262) == Some(b"ustar") => Some(Format::Tar),
        format @ (Format::Gzip | Format::Bzip2 | Format::Xz | Format::Zstd) => Some(format),
        _ => None,
    }
}

/// The container read by seeking (zip, 7z, ISO 9660) that a member named
/// `name` starting with `head` is, when its name says so too: its members
/// go to the inspectors under their own names, as for an object.
fn seekable_container(head: &[u8], name: &str) -> Option<Format> {
    walkable(head)
        .filter(|format| matches!(format, Format::Zip | Format::SevenZip | Format::Iso9660))
        .filter(|format| declared(name, None, *format))
}

/// Whether an object named `key`, of `content_type`, says it is any
/// container the host walks: if not, its bytes need no look.
pub fn declares_a_container(key: &str, content_type: Option<&str>) -> bool {
    WALKED.iter().any(|format| declared(key, content_type, *format))
}

/// The containers the host walks member by member.
const WALKED: [Format; 8] = [
    Format::Zip,
    Format::SevenZip,
    Format::Iso9660,
    Format::Tar,
    Format::Gzip,
    Format::Bzip2,
    Format::Xz,
    Format::Zstd,
];

/// Whether an object named `key`, of `content_type`, says it is the
/// `format` its bytes start with: only then is it walked. Members are
/// handed over under their own names, so an object whose name or type
/// says otherwise (`setup.exe` that is a zip, a `text/html` page that
/// starts with `PK`) would escape what the inspectors decide by name and
/// type; it stays `unscannable (too-large)`.
pub fn declared(key: &str, content_type: Option<&str>, format: Format) -> bool {
    let key = key.to_ascii_lowercase();
    let extensions: &[&str] = match format {
        Format::Zip => &[".zip"],
        Format::SevenZip => &[".7z"],
        Format::Iso9660 => &[".iso"],
        Format::Tar => &[".tar"],
        Format::Gzip => &[".gz", ".tgz"],
        Format::Bzip2 => &[".bz2", ".tbz", ".tbz2"],
        Format::Xz => &[".xz", ".txz"],
        Format::Zstd => &[".zst", ".zstd", ".tzst"],
        _ => &[],
    };
    let named = extensions.iter().any(|extension| key.ends_with(extension));
    let typed = content_type.is_none_or(|content_type| {
        let content_type = content_type.to_ascii_lowercase();
        [
            "zip",
            "7z",
            "tar",
            "gzip",
            "bzip",
            "xz",
            "zstd",
            "iso9660",
            "compressed",
            "octet-stream",
        ]
        .iter()
        .any(|word| content_type.contains(word))
    });
    named && typed
}

/// The container `head` (an object's first bytes) starts, when the host
/// walks it and the object's name and type declare it; else why not.
pub fn declared_container(key: &str, content_type: Option<&str>, head: &[u8]) -> Result<Format, String> {
    match walkable(head) {
        Some(format) if declared(key, content_type, format) => Ok(format),
        // A container its name or type does not declare: what inspectors
        // decide by name and type would not see it.
        Some(format) => Err(format!(
            "a {format} whose name or Content-Type ({}) does not say so",
            content_type.unwrap_or("none")
        )),
        None => Err("no container the host walks".into()),
    }
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
        let path = MemberPath::of(name);
        let mut head = Vec::with_capacity(WALK_HEAD_BYTES);
        let read = body
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&mut body).take(WALK_HEAD_BYTES as u64).read_to_end(&mut head))
            .and_then(|_| body.seek(SeekFrom::Start(0)));
        read.map_err(|err| self.io_stop(&path, &err))?;
        match walkable(&head) {
            Some(Format::Zip) => self.zip(body, &path, 0),
            Some(Format::SevenZip) => self.seven_zip(body, &path, 0),
            Some(Format::Iso9660) => self.iso(body, &path, 0),
            Some(format) => self.stream_container(Box::new(body), &path, name, format, 0),
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
        path: &MemberPath,
        name: &str,
        size: Option<u64>,
        depth: u32,
    ) -> Result<(), Halt> {
        let (head, reader) = peek(reader).map_err(|err| self.io_stop(path, &err))?;
        // What fits the engine goes to it whole, as a client gets it (a
        // head that looks like a tar must not turn a script into members);
        // only what is larger, or of a size no header tells, is walked.
        let fits = size.is_some_and(|size| size <= self.limits.member_bytes);
        if let Some(format) = stream_container(&head).filter(|_| !fits) {
            return self.stream_container(reader, path, name, format, depth);
        }
        match (size, seekable_container(&head, name)) {
            (Some(size), Some(format)) if !fits => return self.spooled_container(reader, path, size, format, depth),
            (None, Some(format)) => return self.unsized_container(reader, path, format, depth),
            _ => {}
        }
        self.count(path)?;
        match size {
            Some(size) if size > self.limits.member_bytes => {
                let detail = format!(
                    "{path}: {size} bytes is over the {}-byte limit of the engine{}",
                    self.limits.member_bytes,
                    // (A walkable container here is one its name does not
                    // declare: what inspectors decide by name would miss it.)
                    match walkable(&head) {
                        Some(format) => format!(", and a {format} not named as one is not walked"),
                        None => String::new(),
                    }
                );
                self.offer_oversized(reader, path, size, detail)
            }
            _ => {
                let mut reader = Caught::new(reader);
                self.hand_over(path, size, &mut reader)?;
                // What the sink left unread (it gave up on an oversized
                // member) still has to pass for the stream to go on.
                io::copy(&mut reader, &mut io::sink())
                    .map(|_| ())
                    .map_err(|err| self.io_stop(path, &err))
            }
        }
    }

    /// A zip, 7z or ISO image of `size` bytes inside another container:
    /// walked from the sink's spool, else (no room) too large.
    fn spooled_container(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &MemberPath,
        size: u64,
        format: Format,
        depth: u32,
    ) -> Result<(), Halt> {
        self.nested_within_depth(path, depth)?;
        let mut reader = Caught::new(reader);
        let spooled = self.sink.spool(path, size, &mut reader);
        if let Some(err) = reader.error.take() {
            return Err(self.io_stop(path, &err));
        }
        let Some(body) = spooled? else {
            // No room: too large, its bytes still offered as such.
            self.count(path)?;
            let detail = format!(
                "{path}: {size} bytes is over the {}-byte limit of the engine, and no spool room to walk the {format}",
                self.limits.member_bytes
            );
            return self.offer_oversized(reader.inner, path, size, detail);
        };
        self.walk_spooled(body, path, format, depth)
    }

    /// A zip, 7z or ISO image from the sink's spool.
    fn walk_spooled(
        &mut self,
        body: Box<dyn SpooledContainer>,
        path: &MemberPath,
        format: Format,
        depth: u32,
    ) -> Result<(), Halt> {
        // Its members lie one deeper than it, as a nested tar's do.
        let walked = match format {
            Format::Zip => self.zip(body, path, depth),
            Format::SevenZip => self.seven_zip(body, path, depth),
            _ => self.iso(body, path, depth),
        };
        match walked {
            // A 7z or image read to its end that cannot be called clean:
            // that member is unproven, and the members after it are still
            // read (one of them may decide more).
            Err(Halt::Stop {
                reason: UnscannableReason::UnsupportedContainer,
                detail,
            }) => self
                .sink
                .not_handed(path, UnscannableReason::UnsupportedContainer, detail),
            other => other,
        }
    }

    /// A zip, 7z or ISO image of a size no header tells: spooled, then
    /// handed over whole when it fits the engine, else walked from the
    /// spool like one of known size.
    fn unsized_container(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &MemberPath,
        format: Format,
        depth: u32,
    ) -> Result<(), Halt> {
        // Counted before the sink sees it: it may take it as a member.
        self.count(path)?;
        let mut reader = Caught::new(reader);
        let spooled = self.sink.spool_unsized(path, &mut reader);
        if spooled.is_ok() {
            // What the sink left unread (too large for it) still has to
            // pass for the stream to go on; a failed read is kept below.
            let _ = io::copy(&mut reader, &mut io::sink());
        }
        if let Some(err) = reader.error.take() {
            return Err(self.io_stop(path, &err));
        }
        let Some(SpooledStream { body, len: size }) = spooled? else {
            return Ok(());
        };
        if size <= self.limits.member_bytes {
            let mut body = Caught::new(Box::new(body));
            return self.hand_over(path, Some(size), &mut body);
        }
        // Walked, it is no member of its own: its members count. Only
        // now is it a container nested one deeper (one that fits went to
        // the engine whole, as a member of known size does).
        self.members -= 1;
        self.nested_within_depth(path, depth)?;
        self.walk_spooled(body, path, format, depth)
    }

    /// A member over the engine's limit, offered to the sink as such
    /// (it may hash it for whole-file signatures).
    fn offer_oversized(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &MemberPath,
        size: u64,
        detail: String,
    ) -> Result<(), Halt> {
        let mut reader = Caught::new(reader);
        let told = self.sink.oversized(path, size, &mut reader, detail);
        // A read that failed under the sink is the container's.
        match reader.error.take() {
            Some(err) => Err(self.io_stop(path, &err)),
            None => told,
        }
    }

    fn nested_within_depth(&self, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        if depth >= self.limits.max_depth {
            return Err(stop(
                UnscannableReason::LimitsExceeded,
                format!("{path}: containers nested more than {} deep", self.limits.max_depth),
            ));
        }
        Ok(())
    }

    fn stream_container(
        &mut self,
        reader: Box<dyn Read + '_>,
        path: &MemberPath,
        name: &str,
        format: Format,
        depth: u32,
    ) -> Result<(), Halt> {
        self.nested_within_depth(path, depth)?;
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
        let inner = inner_name(name, format).unwrap_or(DECOMPRESSED);
        let inner_path = path.join(&shown_inner_name(name, format));
        self.member(Box::new(counted), &inner_path, inner, None, depth + 1)
    }

    fn tar(&mut self, reader: Box<dyn Read + '_>, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        let (reader, tap) = tar_headers::tap(reader, true);
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(|err| self.tar_stop(path, &tap, &err))?;
        let mut parts = 0;
        loop {
            tap.reading_headers();
            let Some(entry) = entries.next() else { break };
            let mut entry = entry.map_err(|err| self.tar_stop(path, &tap, &err))?;
            if tar_headers::is_extension(&entry) {
                // Its data passes as headers: budgeted, kept. One that
                // other readers apply leaves the members unproven.
                if let Some(why) = tar_headers::unapplied(&mut entry) {
                    let here = path.join(TAR_HEADERS);
                    self.count(&here)?;
                    self.sink
                        .not_handed(&here, UnscannableReason::UnsupportedContainer, format!("{here}: {why}"))?;
                }
                continue;
            }
            tap.reading_data(tar_headers::archived_len(&mut entry));
            if tap.kept_len() >= HEADER_PART_BYTES {
                parts += 1;
                self.tar_headers(&tap, path, parts)?;
            }
            // Every entry with data, whatever its type flag says: tools
            // (and clamd) extract "contiguous" and unknown types as files.
            let size = entry.size();
            let (name, shown) = tar_entry_name(&entry);
            let member_path = path.join(&shown);
            if is_sparse(&mut entry) {
                // Holes a tar tool fills in make other bytes than the
                // reader's: the member as a client extracts it is unknown.
                self.count(&member_path)?;
                self.sink.not_handed(
                    &member_path,
                    UnscannableReason::UnsupportedContainer,
                    format!("{member_path}: a sparse file"),
                )?;
                continue;
            }
            if size == 0 {
                continue;
            }
            self.member(Box::new(entry), &member_path, &name, Some(size), depth + 1)?;
        }
        self.tar_headers(&tap, path, parts + 1)?;
        self.after_end(archive.into_inner().into_inner(), path, depth)
    }

    /// The tar's header bytes kept since the last part (names, PAX
    /// records, padding) to the sink, after the banner: a tar header
    /// handed over raw would pass for a broken tar of its own.
    fn tar_headers(&mut self, tap: &tar_headers::HeaderTap, path: &MemberPath, part: u32) -> Result<(), Halt> {
        let kept = tap.take_kept();
        if kept.iter().all(|byte| *byte == 0) {
            return Ok(());
        }
        let name = match part {
            1 => TAR_HEADERS.to_owned(),
            n => format!("{TAR_HEADERS}, part {n}"),
        };
        let headers_path = path.join(&name);
        self.count(&headers_path)?;
        let len = (OUTSIDE_BANNER.len() + kept.len()) as u64;
        let mut reader = Caught::new(Box::new(Cursor::new(OUTSIDE_BANNER).chain(Cursor::new(kept))));
        self.hand_over(&headers_path, Some(len), &mut reader)
    }

    /// Why a tar could not be read: its headers over budget, a limit the
    /// counters tripped, else broken bytes.
    fn tar_stop(&self, path: &MemberPath, tap: &tar_headers::HeaderTap, err: &io::Error) -> Halt {
        match tap.over() {
            true => stop(
                UnscannableReason::LimitsExceeded,
                format!("{path}: {}", tap.over_detail()),
            ),
            false => self.io_stop(path, err),
        }
    }

    /// What follows a tar's end-of-archive blocks: zeros (the padding
    /// tools write), or bytes a tar reader never shows but that are in the
    /// object all the same: handed over like a member.
    fn after_end(&mut self, mut rest: Box<dyn Read + '_>, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        let mut block = [0u8; 512];
        loop {
            let mut filled = 0;
            while filled < block.len() {
                match rest
                    .read(&mut block[filled..])
                    .map_err(|err| self.io_stop(path, &err))?
                {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                return Ok(());
            }
            // Whole blocks of zeros are padding; from the first block that
            // is not, the rest is handed over as it lies.
            if block[..filled].iter().any(|byte| *byte != 0) {
                let found = Cursor::new(block[..filled].to_vec()).chain(rest);
                let name = "(after the end of the archive)";
                return self.member(Box::new(found), &path.join(name), name, None, depth + 1);
            }
        }
    }

    fn zip<R: Read + Seek>(&mut self, mut body: R, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        let limit = |detail: String| stop(UnscannableReason::LimitsExceeded, format!("{path}: {detail}"));
        // The directory's size and count before the zip reader holds it
        // all in memory.
        match zip_directory(&mut body).map_err(|err| self.io_stop(path, &err))? {
            Some((_, directory)) if directory > MAX_ZIP_DIRECTORY => {
                return Err(limit(format!("a zip directory of {directory} bytes")));
            }
            Some((entries, _)) if entries > self.limits.max_members => {
                return Err(limit(format!(
                    "{entries} members; the limit is {}",
                    self.limits.max_members
                )));
            }
            _ => {}
        }
        let mut archive = zip::ZipArchive::new(body).map_err(|err| self.zip_stop(path, err))?;
        if archive.len() as u64 > self.limits.max_members {
            return Err(limit(format!(
                "{} members; the limit is {}",
                archive.len(),
                self.limits.max_members
            )));
        }
        // Local headers that disagree with the directory, names listed
        // twice (the reader keeps one), members that overlap, members only
        // a reader of local headers finds: what one tool extracts another
        // would not.
        archive
            .validate_header_consistency()
            .map_err(|err| self.zip_stop(path, err))?;
        let mut data = Vec::with_capacity(archive.len());
        for index in 0..archive.len() {
            // From the directory, read once: no request per member here.
            let (name, method, encrypted, is_dir, size, packed, crc) = {
                let member = archive.by_index_data(index).map_err(|err| self.zip_stop(path, err))?;
                (
                    String::from_utf8_lossy(member.name_raw()).into_owned(),
                    zip_method(member.compression()),
                    member.encrypted(),
                    member.is_dir(),
                    member.size(),
                    member.compressed_size(),
                    member.crc32(),
                )
            };
            let member_path = path.join(&member_name(&name));
            if is_dir && size == 0 && packed == 0 {
                continue;
            }
            if encrypted || !WALKED_ZIP_METHODS.contains(&method) {
                let (reason, why) = if encrypted {
                    (UnscannableReason::Encrypted, "encrypted".to_owned())
                } else {
                    (
                        UnscannableReason::UnsupportedContainer,
                        format!("compressed with zip method {method}, which the host does not decode"),
                    )
                };
                self.count(&member_path)?;
                self.sink
                    .not_handed(&member_path, reason, format!("{member_path}: {why}"))?;
                continue;
            }
            if size > RATIO_FLOOR && size / packed.max(1) > self.limits.max_ratio {
                return Err(limit(format!(
                    "{member_path}: {packed} bytes that say they expand to {size}: over {}:1, an archive bomb",
                    self.limits.max_ratio
                )));
            }
            let opened = match method {
                0 | 8 => archive.by_index_raw(index),
                // Deflate64 and bzip2: the zip reader's decoders (rare).
                _ => archive.by_index(index),
            };
            let file = opened.map_err(|err| self.zip_stop(&member_path, err))?;
            let start = file.data_start().unwrap_or(file.header_start());
            data.push((start, start.saturating_add(packed)));
            let reader: Box<dyn Read + '_> = match method {
                0 | 8 => Box::new(ZipMember::new(Box::new(file), method == 8, size, crc)),
                _ => Box::new(file),
            };
            let counted = Counted {
                inner: reader,
                tally: self.tally.clone(),
                limits: self.limits.clone(),
            };
            self.member(Box::new(counted), &member_path, &name, Some(size), depth + 1)?;
        }
        self.outside_members(archive.into_inner(), path, &data)
    }

    /// A 7z: its start header checked here, its header read at open, then
    /// each block's packed stream decoded front to back and each member
    /// with data handed over; the bytes outside the start header and every
    /// packed stream (the header, gaps) go to the sink as one more member,
    /// as for a zip.
    ///
    /// Never clean: a 7z decoder may stop before the end of its packed
    /// stream, and a pack stream may belong to no block, so bytes inside
    /// the packed range can go undecoded without any reader noticing. The
    /// walk finds what its members hold (an infected one decides), then
    /// ends `unsupported-container`.
    fn seven_zip<R: Read + Seek>(&mut self, mut body: R, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        seven_zip_start_header(&mut body).map_err(|why| {
            stop(
                UnscannableReason::Malformed,
                format!("{path}: not a readable 7z archive: {why}"),
            )
        })?;
        let memory_kb = (self.limits.decoder_memory / 1024) as usize;
        let opened =
            sevenz_rust2::ArchiveReader::new_with_memory_limit(&mut body, sevenz_rust2::Password::empty(), memory_kb);
        let mut archive = opened.map_err(|err| self.seven_zip_stop(path, err))?;
        archive.set_thread_count(1);
        let files = archive.archive().files.len() as u64;
        if files > self.limits.max_members {
            return Err(stop(
                UnscannableReason::LimitsExceeded,
                format!("{path}: {files} members; the limit is {}", self.limits.max_members),
            ));
        }
        let encrypted = archive.archive().blocks.iter().any(|block| {
            block
                .coders
                .iter()
                .any(|coder| coder.encoder_method_id() == sevenz_rust2::EncoderMethod::ID_AES256_SHA256)
        });
        if encrypted {
            return Err(stop(UnscannableReason::Encrypted, format!("{path}: an encrypted 7z")));
        }
        let packed = archive
            .archive()
            .pack_sizes()
            .iter()
            .try_fold(0u64, |sum, size| sum.checked_add(*size));
        let packed_range = packed.and_then(|len| {
            let start = SEVEN_ZIP_SIGNATURE_HEADER.checked_add(archive.archive().pack_pos())?;
            Some((start, start.checked_add(len)?))
        });
        let Some(packed_range) = packed_range else {
            return Err(stop(
                UnscannableReason::Malformed,
                format!("{path}: packed streams past any possible end"),
            ));
        };
        let mut halted: Option<Halt> = None;
        let walked = archive.for_each_entries(|entry, reader| {
            if !entry.has_stream || entry.is_directory || entry.size == 0 {
                return Ok(true);
            }
            let member_path = path.join(&member_name(&entry.name));
            let mut counted = Counted {
                inner: Box::new(reader),
                tally: self.tally.clone(),
                limits: self.limits.clone(),
            };
            // What the member walk leaves unread (a member too large to
            // hand over) the 7z reader would decode anyway to reach the
            // next one: it goes through the counters too.
            let handed = self
                .member(
                    Box::new(&mut counted),
                    &member_path,
                    &entry.name,
                    Some(entry.size),
                    depth + 1,
                )
                .and_then(|()| {
                    io::copy(&mut counted, &mut io::sink())
                        .map(|_| ())
                        .map_err(|err| self.io_stop(&member_path, &err))
                });
            match handed {
                Ok(()) => Ok(true),
                Err(halt) => {
                    halted = Some(halt);
                    Err(sevenz_rust2::Error::Other("the walk stopped".into()))
                }
            }
        });
        if let Some(halt) = halted {
            return Err(halt);
        }
        walked.map_err(|err| self.seven_zip_stop(path, err))?;
        // The start header was read whole and checked above (magic,
        // version, CRC over the rest): nothing hides there, and handed
        // over it would make the bytes after it look like a 7z of their
        // own to the inspectors.
        self.outside_members(body, path, &[(0, SEVEN_ZIP_SIGNATURE_HEADER), packed_range])?;
        Err(stop(
            UnscannableReason::UnsupportedContainer,
            format!(
                "{path}: every member of the 7z was scanned, but a 7z's packed streams cannot be proven read to \
                 their last byte: not clean"
            ),
        ))
    }

    /// Why a 7z could not be read, as the verdict's reason: a limit the
    /// counters tripped or the decoder's memory, a password, a coder the
    /// host lacks, else broken bytes.
    fn seven_zip_stop(&self, path: &MemberPath, err: sevenz_rust2::Error) -> Halt {
        use sevenz_rust2::Error;
        if let Some(why) = self.tally.over.borrow().clone() {
            return stop(UnscannableReason::LimitsExceeded, format!("{path}: {why}"));
        }
        match &err {
            // Without the AES coder built in, an encrypted header fails
            // as a method this reader lacks.
            Error::PasswordRequired | Error::MaybeBadPassword(_) => {
                stop(UnscannableReason::Encrypted, format!("{path}: an encrypted 7z"))
            }
            Error::UnsupportedCompressionMethod(method) if method.contains("AES") => {
                stop(UnscannableReason::Encrypted, format!("{path}: an encrypted 7z"))
            }
            Error::UnsupportedCompressionMethod(_) | Error::Unsupported(_) => stop(
                UnscannableReason::UnsupportedContainer,
                format!("{path}: a 7z coder or feature the host does not decode: {err}"),
            ),
            Error::MaxMemLimited { .. } => stop(
                UnscannableReason::LimitsExceeded,
                format!(
                    "{path}: a 7z decoder would need more than {} bytes of memory",
                    self.limits.decoder_memory
                ),
            ),
            _ => stop(
                UnscannableReason::Malformed,
                format!("{path}: not a readable 7z archive: {err}"),
            ),
        }
    }

    /// Every byte of a zip or 7z that is no member's data — a zip's local
    /// headers and their extra fields, bytes between members (a
    /// self-extractor's stub, data hidden where readers of local headers
    /// find it), the directory and its comments, a 7z's headers, whatever
    /// follows — goes to the sink as one more member: nothing in the
    /// object goes unread.
    fn outside_members<R: Read + Seek>(
        &mut self,
        mut body: R,
        path: &MemberPath,
        data: &[(u64, u64)],
    ) -> Result<(), Halt> {
        let total = body.seek(SeekFrom::End(0)).map_err(|err| self.io_stop(path, &err))?;
        let outside = complement(data, total);
        let len: u64 = outside.iter().map(|(start, end)| end - start).sum::<u64>() + OUTSIDE_BANNER.len() as u64;
        let outside_path = path.join("(headers, directory and bytes outside every member)");
        if len == OUTSIDE_BANNER.len() as u64 {
            return Ok(());
        }
        self.count(&outside_path)?;
        if len > self.limits.member_bytes {
            return self.sink.not_handed(
                &outside_path,
                UnscannableReason::TooLarge,
                format!(
                    "{outside_path}: {len} bytes is over the {}-byte limit of the engine",
                    self.limits.member_bytes
                ),
            );
        }
        let ranges = Ranges {
            body: &mut body,
            ranges: outside.into_iter().collect(),
            left: 0,
        };
        let mut reader = Caught::new(Box::new(Cursor::new(OUTSIDE_BANNER).chain(ranges)));
        self.hand_over(&outside_path, Some(len), &mut reader)
    }

    /// `reader`'s bytes to the sink as the member at `path`. A read that
    /// fails inside the sink is the container's failure, whatever the
    /// sink then answers.
    fn hand_over(&mut self, path: &MemberPath, size: Option<u64>, reader: &mut Caught<'_>) -> Result<(), Halt> {
        let handed = self.sink.member(path, size, reader);
        if let Some(err) = reader.error.take() {
            return Err(self.io_stop(path, &err));
        }
        handed
    }

    fn count(&mut self, path: &MemberPath) -> Result<(), Halt> {
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
    fn io_stop(&self, path: &MemberPath, err: &io::Error) -> Halt {
        match self.tally.over.borrow().clone() {
            Some(why) => stop(UnscannableReason::LimitsExceeded, format!("{path}: {why}")),
            None => stop(UnscannableReason::Malformed, format!("{path}: {err}")),
        }
    }

    fn zip_stop(&self, path: &MemberPath, err: zip::result::ZipError) -> Halt {
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

/// A 7z's signature header: its packed streams start after it.
const SEVEN_ZIP_SIGNATURE_HEADER: u64 = 32;

/// Checks a 7z's start header before any reader trusts it: its CRC, and a
/// next header inside the object. (Readers given a zeroed one search the
/// object's last megabyte for a header byte by byte; through ranged GETs
/// that is a request per byte.)
fn seven_zip_start_header<R: Read + Seek>(body: &mut R) -> Result<(), String> {
    let len = body.seek(SeekFrom::End(0)).map_err(|err| err.to_string())?;
    let mut header = [0u8; SEVEN_ZIP_SIGNATURE_HEADER as usize];
    body.seek(SeekFrom::Start(0))
        .and_then(|_| body.read_exact(&mut header))
        .map_err(|err| err.to_string())?;
    let field = |at: usize, n: usize| {
        header[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |v, b| v << 8 | u64::from(*b))
    };
    let (crc, offset, size) = (field(8, 4), field(12, 8), field(20, 8));
    if crc != u64::from(crc32fast::hash(&header[12..32])) {
        return Err("its start header's CRC does not match".into());
    }
    let end = SEVEN_ZIP_SIGNATURE_HEADER
        .checked_add(offset)
        .and_then(|start| start.checked_add(size));
    match end {
        Some(end) if size > 0 && end <= len => Ok(()),
        _ => Err(format!(
            "its next header ({size} bytes at {offset}) is not inside its {len} bytes"
        )),
    }
}

/// What the bytes outside every member of a zip or 7z start with when
/// handed over: they begin with the archive's own header, and must not
/// pass for an archive of their own (which, its offsets off, would be a
/// broken one).
/// A tar's header bytes as a member: named for what they are.
const TAR_HEADERS: &str = "(tar headers and padding outside every member)";
/// Header bytes kept before they are handed over as one part (a tar of a
/// million members has half a gigabyte of headers).
const HEADER_PART_BYTES: usize = 16 << 20;

const OUTSIDE_BANNER: &[u8] = b"bucketscan: the bytes of an archive outside its members' data, in order\n";

/// The stretches of `0..total` that none of `taken` (start, end) covers.
fn complement(taken: &[(u64, u64)], total: u64) -> Vec<(u64, u64)> {
    let mut sorted = taken.to_vec();
    sorted.sort_unstable();
    let mut outside = Vec::new();
    let mut covered = 0u64;
    for (start, end) in sorted.into_iter().chain([(total, total)]) {
        let start = start.min(total);
        if start > covered {
            outside.push((covered, start));
        }
        covered = covered.max(end.min(total));
    }
    outside
}

/// Some stretches of a seekable body, read as one stream.
struct Ranges<'b, R> {
    body: &'b mut R,
    ranges: std::collections::VecDeque<(u64, u64)>,
    /// Bytes left in the stretch being read.
    left: u64,
}

impl<R: Read + Seek> Read for Ranges<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            let Some((start, end)) = self.ranges.pop_front() else {
                return Ok(0);
            };
            self.body.seek(SeekFrom::Start(start))?;
            self.left = end - start;
        }
        let want = buf.len().min(self.left as usize);
        let n = self.body.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the object ended early"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A stored or deflated zip member, decompressed by the host from its raw
/// bytes so that all of them are accounted for: a deflate stream that ends
/// before the member's compressed size leaves bytes a reader of local
/// headers takes for another member. Its size and CRC are checked at the
/// end.
struct ZipMember<'a> {
    decoding: Option<Decoding<'a>>,
    crc: crc32fast::Hasher,
    expected_crc: u32,
    expected_len: u64,
    len: u64,
}

enum Decoding<'a> {
    Stored(Box<dyn Read + 'a>),
    Deflated(flate2::bufread::DeflateDecoder<io::BufReader<Box<dyn Read + 'a>>>),
}

impl<'a> ZipMember<'a> {
    fn new(raw: Box<dyn Read + 'a>, deflated: bool, expected_len: u64, expected_crc: u32) -> Self {
        let decoding = if deflated {
            Decoding::Deflated(flate2::bufread::DeflateDecoder::new(io::BufReader::new(raw)))
        } else {
            Decoding::Stored(raw)
        };
        Self {
            decoding: Some(decoding),
            crc: crc32fast::Hasher::new(),
            expected_crc,
            expected_len,
            len: 0,
        }
    }

    /// At the end of the data: nothing left of the compressed bytes, and
    /// the size and CRC the directory states.
    fn finish(&mut self) -> io::Result<()> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if let Some(Decoding::Deflated(decoder)) = self.decoding.take() {
            let left = io::copy(&mut decoder.into_inner(), &mut io::sink())?;
            if left > 0 {
                return Err(invalid(format!(
                    "{left} bytes after the member's deflate stream, inside its compressed size"
                )));
            }
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        if self.len != self.expected_len || crc != self.expected_crc {
            return Err(invalid(format!(
                "the member holds {} bytes with CRC {crc:08x}; its directory entry says {} bytes, CRC {:08x}",
                self.len, self.expected_len, self.expected_crc
            )));
        }
        Ok(())
    }
}

impl Read for ZipMember<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.decoding {
            None => return Ok(0),
            Some(Decoding::Stored(raw)) => raw.read(buf)?,
            Some(Decoding::Deflated(decoder)) => decoder.read(buf)?,
        };
        if n == 0 {
            self.finish()?;
            self.decoding = None;
            return Ok(0);
        }
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Whether a tar entry is a sparse file (GNU `S`, or PAX `GNU.sparse.*`).
fn is_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> bool {
    if entry.header().entry_type().is_gnu_sparse() {
        return true;
    }
    match entry.pax_extensions() {
        Ok(Some(extensions)) => extensions
            .flatten()
            .any(|extension| extension.key_bytes().starts_with(b"GNU.sparse")),
        _ => false,
    }
}

/// The first bytes of `reader`, and a reader that still yields them.
fn peek<'r>(mut reader: Box<dyn Read + 'r>) -> io::Result<(Vec<u8>, Box<dyn Read + 'r>)> {
    let mut head = Vec::with_capacity(WALK_HEAD_BYTES);
    (&mut reader).take(WALK_HEAD_BYTES as u64).read_to_end(&mut head)?;
    let rest = Cursor::new(head.clone()).chain(reader);
    Ok((head, Box::new(rest)))
}

/// A reader that keeps the first error it met.
struct Caught<'r> {
    inner: Box<dyn Read + 'r>,
    error: Option<io::Error>,
}

impl<'r> Caught<'r> {
    fn new(inner: Box<dyn Read + 'r>) -> Self {
        Self { inner, error: None }
    }
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

mod iso;
#[cfg(test)]
mod tests;
