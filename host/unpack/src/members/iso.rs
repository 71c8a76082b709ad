//! ISO 9660 images, walked by their directories to **find** what they
//! hold, never to call them clean: each file's extents are a member, read
//! where they lie, and the bytes no file claims (system area, volume
//! descriptors, path tables, directories, padding, anything else put
//! there) go to the sink as one more member, as for a zip. An infected or
//! blocked file decides; an image whose files are all clean ends
//! `unsupported-container`, as a 7z does.
//!
//! Why not clean: readers disagree on what an image holds. An attacker's
//! review of this walk found files other readers extract that this one
//! (hadris-iso) never lists as files, or lists with other bytes: Rock
//! Ridge zisofs compression (the kernel and libarchive decompress it),
//! associated files, `RE`/`CL` relocations, a directory sector starting
//! with a zero byte (hadris stops, the kernel reads on), extended
//! attribute records (libarchive ignores their offset), a UDF bridge
//! (Windows reads the UDF tree). Their bytes still reach the engine in
//! the outside member, but not as the files a client gets, so hash and
//! file-type signatures would miss them.
//!
//! Every directory tree is walked (Rock Ridge, Joliet, the plain one), so
//! a file listed in only one of them is still a member of its own; the
//! same extents are handed over once, under the first name. Extents that
//! overlap otherwise or lie past the image's end stop the walk as
//! `malformed`. Depth, name length, records and extents are capped: each
//! record may cost reads (continuation areas), and names are held until
//! the files are handed over.

use super::{Counted, Halt, MemberPath, Ranges, Walker, member_name, stop};
use bucketscan_core::UnscannableReason;
use hadris_iso::file::EntryType;
use hadris_iso::read::{DirEntry, IsoImage};
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;

const SECTOR: u64 = 2048;
/// The largest path table the reader may hold in memory (it parses the
/// whole table when it opens the image): about a million directories.
const MAX_PATH_TABLE: u64 = 16 << 20;
/// Directory bytes read per image, in all.
const MAX_DIRECTORY_BYTES: u64 = 256 << 20;
/// Volume descriptors looked at before the set's terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Directories nested inside each other.
const MAX_DEPTH: usize = 64;
/// The longest path of a file inside the image, in bytes.
const MAX_NAME_BYTES: usize = 4096;
/// File extents per image, in all.
const MAX_EXTENTS: usize = 100_000;

/// One file of the image: its name in the tree and where its bytes lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IsoFile {
    pub name: String,
    /// (start, end) byte offsets, in order.
    pub extents: Vec<(u64, u64)>,
}

impl IsoFile {
    fn size(&self) -> u64 {
        self.extents.iter().map(|(start, end)| end - start).sum()
    }
}

impl Walker<'_> {
    /// An ISO 9660 image: every file handed over (walked in turn when it
    /// is a large tar or compressed stream), then the bytes outside them.
    pub(super) fn iso<R: Read + Seek>(&mut self, mut body: R, path: &MemberPath, depth: u32) -> Result<(), Halt> {
        let total = body.seek(SeekFrom::End(0)).map_err(|err| self.io_stop(path, &err))?;
        check_descriptors(&mut body, total).map_err(|(reason, why)| stop(reason, format!("{path}: {why}")))?;
        // A reader of hostile bytes may panic: that is a malformed image
        // too, never an agent brought down.
        let max_files = self.limits.max_members;
        let over = Rc::new(Cell::new(None));
        let budgeted = Budgeted {
            inner: body,
            position: 0,
            read: 0,
            jumps: 0,
            over: over.clone(),
        };
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let image = IsoImage::open(budgeted).map_err(|err| {
                (
                    UnscannableReason::Malformed,
                    format!("not a readable ISO 9660 image: {err}"),
                )
            })?;
            let files = list_files(&image, max_files)?;
            Ok::<_, (UnscannableReason, String)>((image, files))
        }));
        // A read past the budget fails inside the reader, which may then
        // report another error, or none (it skips what it cannot read):
        // the budget's reason is the one.
        if let Some(why) = over.take() {
            return Err(stop(UnscannableReason::LimitsExceeded, format!("{path}: {why}")));
        }
        let (image, files) = match read {
            Ok(Ok(read)) => read,
            Ok(Err((reason, why))) => return Err(stop(reason, format!("{path}: {why}"))),
            Err(_) => return Err(malformed(path, "its volume or directories could not be read".into())),
        };
        let files = distinct(files, total).map_err(|why| malformed(path, why))?;
        let mut body = image.into_inner().inner;
        let mut taken = Vec::new();
        for file in files {
            let size = file.size();
            taken.extend(file.extents.iter().copied());
            let member_path = path.join(&member_name(&file.name));
            let ranges = Ranges {
                body: &mut body,
                ranges: file.extents.into_iter().collect(),
                left: 0,
            };
            let counted = Counted {
                inner: Box::new(ranges),
                tally: self.tally.clone(),
                limits: self.limits.clone(),
            };
            self.member(Box::new(counted), &member_path, &file.name, Some(size), depth + 1)?;
        }
        self.outside_members(body, path, &taken)?;
        Err(stop(
            UnscannableReason::UnsupportedContainer,
            format!(
                "{path}: every file of the image was scanned, but ISO 9660 readers disagree on what some images \
                 hold (Rock Ridge compression and relocations, associated files, UDF bridges): not clean"
            ),
        ))
    }
}

/// Bytes the reader may read while it lists the files (directories,
/// continuation areas, the path table).
const MAX_LISTING_READ: u64 = MAX_DIRECTORY_BYTES + (64 << 20);
/// Jumps of more than [`NEAR`] it may make meanwhile: each may be a
/// ranged GET of its own.
const MAX_LISTING_JUMPS: u64 = 50_000;
const NEAR: u64 = 64 << 10;

/// The image as the directory reader sees it, its reads and jumps
/// counted: hostile records (continuation areas pointing far away,
/// relocations) cannot make it fetch without end. Past a budget every
/// read fails, and `over` says why.
struct Budgeted<R> {
    inner: R,
    position: u64,
    read: u64,
    jumps: u64,
    over: Rc<Cell<Option<String>>>,
}

impl<R> Budgeted<R> {
    fn exceeded(&self, why: String) -> std::io::Error {
        self.over.set(Some(why.clone()));
        std::io::Error::other(why)
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read > MAX_LISTING_READ {
            return Err(self.exceeded(format!("listing its files read more than {MAX_LISTING_READ} bytes")));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Budgeted<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(to)?;
        if at.abs_diff(self.position) > NEAR {
            self.jumps += 1;
            if self.jumps > MAX_LISTING_JUMPS {
                return Err(self.exceeded(format!(
                    "listing its files jumped to another place more than {MAX_LISTING_JUMPS} times"
                )));
            }
        }
        self.position = at;
        Ok(at)
    }
}

fn malformed(path: &MemberPath, why: String) -> Halt {
    stop(UnscannableReason::Malformed, format!("{path}: {why}"))
}

/// The volume descriptors, up to their terminator: each names `CD001`,
/// and no path table is larger than the reader may hold.
fn check_descriptors<R: Read + Seek>(body: &mut R, total: u64) -> Result<(), (UnscannableReason, String)> {
    let bad = |why: String| (UnscannableReason::Malformed, why);
    let mut descriptor = [0u8; SECTOR as usize];
    for sector in 16..16 + MAX_DESCRIPTORS {
        if (sector + 1) * SECTOR > total {
            return Err(bad("its volume descriptors run past its end".into()));
        }
        body.seek(SeekFrom::Start(sector * SECTOR))
            .and_then(|_| body.read_exact(&mut descriptor))
            .map_err(|err| bad(format!("reading its volume descriptors: {err}")))?;
        if &descriptor[1..6] != b"CD001" {
            return Err(bad(format!("volume descriptor {sector} is not one (no CD001)")));
        }
        match descriptor[0] {
            255 => return Ok(()),
            // Primary and supplementary (Joliet): a path table each.
            1 | 2 => {
                let table = u64::from(u32::from_le_bytes(descriptor[132..136].try_into().unwrap()));
                if table > MAX_PATH_TABLE {
                    return Err((
                        UnscannableReason::LimitsExceeded,
                        format!("a path table of {table} bytes (the limit is {MAX_PATH_TABLE})"),
                    ));
                }
            }
            _ => {}
        }
    }
    Err(bad(format!(
        "no volume descriptor set terminator in {MAX_DESCRIPTORS} sectors"
    )))
}

/// Every file of every directory tree, the tree with the fullest names
/// first (Rock Ridge, then Joliet, then the plain ISO 9660 one): each
/// directory is read once, and a file listed in several trees is named
/// by the first.
fn list_files<R: Read + Seek>(
    image: &IsoImage<R>,
    max_files: u64,
) -> Result<Vec<IsoFile>, (UnscannableReason, String)> {
    let bad = |why: String| (UnscannableReason::Malformed, why);
    let limit = |why: String| (UnscannableReason::LimitsExceeded, why);
    let max_records = max_files.saturating_mul(2).max(1_000);
    let mut files = Vec::new();
    let mut seen_directories = HashSet::new();
    let mut directory_bytes = 0u64;
    let (mut records, mut extents_in_all) = (0u64, 0usize);
    let is_joliet = |ty: EntryType| matches!(ty, EntryType::Joliet { .. });
    let mut roots: Vec<_> = image.root_dirs().iter().copied().collect();
    roots.sort_by_key(|root| match (is_joliet(root.entry_type()), image.supports_rrip()) {
        (false, true) => 0,
        (true, _) => 1,
        (false, false) => 2,
    });
    for root in roots {
        let joliet = is_joliet(root.entry_type());
        // Depth first, without recursion: a deep tree cannot exhaust the
        // stack.
        let mut pending = vec![(root.dir_ref(), String::new(), 0usize)];
        while let Some((directory, prefix, depth)) = pending.pop() {
            if !seen_directories.insert((directory.extent.0, directory.size)) {
                continue;
            }
            directory_bytes += directory.size as u64;
            if directory_bytes > MAX_DIRECTORY_BYTES {
                return Err((
                    UnscannableReason::LimitsExceeded,
                    format!("more than {MAX_DIRECTORY_BYTES} bytes of directories"),
                ));
            }
            for entry in image.open_dir(directory).entries() {
                let entry = entry.map_err(|err| bad(format!("reading a directory of {prefix:?}: {err}")))?;
                if entry.is_special() {
                    continue;
                }
                records += 1;
                if records > max_records {
                    return Err(limit(format!("more than {max_records} directory records")));
                }
                let name = format!("{prefix}{}", entry_name(&entry, joliet));
                if name.len() > MAX_NAME_BYTES {
                    return Err(limit(format!(
                        "a path of {} bytes (the limit is {MAX_NAME_BYTES})",
                        name.len()
                    )));
                }
                if entry.is_directory() {
                    if depth + 1 > MAX_DEPTH {
                        return Err(limit(format!("directories nested more than {MAX_DEPTH} deep")));
                    }
                    let inside = entry
                        .as_dir_ref(image)
                        .map_err(|err| bad(format!("{name}: not a readable directory: {err}")))?;
                    pending.push((inside, format!("{name}/"), depth + 1));
                    continue;
                }
                let extents: Vec<(u64, u64)> = entry
                    .extents()
                    .filter(|extent| extent.length > 0)
                    .map(|extent| {
                        let start = extent.sector.0 as u64 * SECTOR;
                        (start, start + u64::from(extent.length))
                    })
                    .collect();
                extents_in_all += extents.len();
                if extents_in_all > MAX_EXTENTS {
                    return Err(limit(format!("more than {MAX_EXTENTS} file extents")));
                }
                files.push(IsoFile { name, extents });
                if files.len() as u64 > max_files {
                    return Err((
                        UnscannableReason::LimitsExceeded,
                        format!("more than {max_files} files; the rest was not looked at"),
                    ));
                }
            }
        }
    }
    Ok(files)
}

/// A directory entry's name: Joliet's UCS-2, else the Rock Ridge name,
/// else the ISO 9660 one (with its `;1` version: names stay one-to-one).
fn entry_name(entry: &DirEntry, joliet: bool) -> String {
    if joliet {
        let units = entry
            .name()
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        return char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
    }
    entry.display_name().into_owned()
}

/// The files with data, each listed once (the same extents, whatever
/// names the trees give them, are read once: the image is never called
/// clean, so a name that would matter to a policy cannot get it promoted);
/// an error when extents lie past `total` or overlap without being the
/// same.
pub(super) fn distinct(files: Vec<IsoFile>, total: u64) -> Result<Vec<IsoFile>, String> {
    let mut seen = HashSet::new();
    let mut distinct = Vec::new();
    for file in files {
        if file.extents.is_empty() || !seen.insert(file.extents.clone()) {
            continue;
        }
        if let Some((_, end)) = file.extents.iter().find(|(_, end)| *end > total) {
            return Err(format!(
                "{}: its data ends at byte {end}, past the image's end ({total})",
                member_name(&file.name)
            ));
        }
        distinct.push(file);
    }
    // Every extent once, by start: each must end before the next begins.
    let mut extents = BTreeMap::new();
    for (index, file) in distinct.iter().enumerate() {
        for &(start, end) in &file.extents {
            extents.entry((start, end)).or_insert(index);
        }
    }
    let mut previous: Option<((u64, u64), usize)> = None;
    for (&(start, end), &index) in &extents {
        if let Some(((_, previous_end), previous_index)) = previous
            && start < previous_end
        {
            return Err(format!(
                "{} and {} overlap: readers would disagree on what they hold",
                member_name(&distinct[previous_index].name),
                member_name(&distinct[index].name)
            ));
        }
        previous = Some(((start, end), index));
    }
    Ok(distinct)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros without end, any position: what a budget sees.
    struct Zeros(u64);

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }

    impl Seek for Zeros {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            if let SeekFrom::Start(at) = to {
                self.0 = at;
            }
            Ok(self.0)
        }
    }

    fn budgeted() -> Budgeted<Zeros> {
        Budgeted {
            inner: Zeros(0),
            position: 0,
            read: 0,
            jumps: 0,
            over: Rc::default(),
        }
    }

    #[test]
    fn listing_stops_after_its_jumps_and_its_bytes_and_says_which() {
        let mut jumping = budgeted();
        // Near seeks are free (the same ranged part).
        for at in 0..100_000u64 {
            jumping.seek(SeekFrom::Start(at % NEAR)).unwrap();
        }
        let far =
            (0..=MAX_LISTING_JUMPS + 1).try_for_each(|i| jumping.seek(SeekFrom::Start((i % 2) * (1 << 30))).map(drop));
        assert!(far.is_err());
        assert!(jumping.over.take().unwrap().contains("jumped to another place"));

        let mut reading = budgeted();
        let mut buffer = vec![0u8; 8 << 20];
        let read =
            (0..=MAX_LISTING_READ / buffer.len() as u64 + 1).try_for_each(|_| reading.read(&mut buffer).map(drop));
        assert!(read.is_err());
        assert!(reading.over.take().unwrap().contains("read more than"));
    }
}
