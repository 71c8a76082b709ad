//! ISO 9660 images, walked by their directories: each file's extents are
//! a member, read where they lie; the bytes no file claims (system area,
//! volume descriptors, path tables, directories, padding, anything else
//! put there) go to the sink as one more member, as for a zip. So an image
//! can end clean: nothing in it goes unread.
//!
//! Every directory tree is walked (the primary one, Joliet's, any other),
//! so a file listed in only one of them is still a member of its own. A
//! file the trees list under the same name (`README.TXT;1` and
//! `readme.txt`) is handed over once; under names that differ
//! (`SETUP.EXE;1` beside `readme.txt`: what a client shows depends on
//! which tree it reads) once per name, so that what inspectors decide by
//! name sees each. Extents that overlap otherwise, or lie past the image's
//! end, stop the walk as `malformed`: readers would disagree on what the
//! files hold.

use super::{Counted, Halt, MemberPath, Ranges, Walker, member_name, stop};
use bucketscan_core::UnscannableReason;
use hadris_iso::file::EntryType;
use hadris_iso::read::{DirEntry, IsoImage};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};

const SECTOR: u64 = 2048;
/// The largest path table the reader may hold in memory (it parses the
/// whole table when it opens the image): about a million directories.
const MAX_PATH_TABLE: u64 = 16 << 20;
/// Directory bytes read per image, in all.
const MAX_DIRECTORY_BYTES: u64 = 256 << 20;
/// Volume descriptors looked at before the set's terminator.
const MAX_DESCRIPTORS: u64 = 64;

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
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let image = IsoImage::open(body).map_err(|err| {
                (
                    UnscannableReason::Malformed,
                    format!("not a readable ISO 9660 image: {err}"),
                )
            })?;
            let files = list_files(&image, max_files)?;
            Ok::<_, (UnscannableReason, String)>((image, files))
        }));
        let (image, files) = match read {
            Ok(Ok(read)) => read,
            Ok(Err((reason, why))) => return Err(stop(reason, format!("{path}: {why}"))),
            Err(_) => return Err(malformed(path, "its volume or directories could not be read".into())),
        };
        let files = distinct(files, total).map_err(|why| malformed(path, why))?;
        let mut body = image.into_inner();
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
        self.outside_members(body, path, &taken)
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
    let mut files = Vec::new();
    let mut seen_directories = HashSet::new();
    let mut directory_bytes = 0u64;
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
        let mut pending = vec![(root.dir_ref(), String::new())];
        while let Some((directory, prefix)) = pending.pop() {
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
                let name = format!("{prefix}{}", entry_name(&entry, joliet));
                if entry.is_directory() {
                    let inside = entry
                        .as_dir_ref(image)
                        .map_err(|err| bad(format!("{name}: not a readable directory: {err}")))?;
                    pending.push((inside, format!("{name}/")));
                    continue;
                }
                let extents = entry
                    .extents()
                    .filter(|extent| extent.length > 0)
                    .map(|extent| {
                        let start = extent.sector.0 as u64 * SECTOR;
                        (start, start + u64::from(extent.length))
                    })
                    .collect();
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

/// The files with data, each listed once per name it goes by (names that
/// differ only in case, an ISO 9660 version suffix or a trailing dot are
/// one); an error when extents lie past `total` or overlap without being
/// the same.
pub(super) fn distinct(files: Vec<IsoFile>, total: u64) -> Result<Vec<IsoFile>, String> {
    let mut seen = HashSet::new();
    let mut distinct = Vec::new();
    for file in files {
        if file.extents.is_empty() || !seen.insert((file.extents.clone(), comparable(&file.name))) {
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

/// A name as trees of one image agree on it: `DOCS/README.TXT;1` and
/// `docs/readme.txt` are one file.
fn comparable(name: &str) -> String {
    let name = name.to_lowercase();
    let name = match name.rsplit_once(';') {
        Some((base, version)) if version.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => &name,
    };
    name.strip_suffix('.').unwrap_or(name).to_owned()
}
