//! Whole-file hash signatures (ClamAV's `.hdb` and `.hsb` lines:
//! `hash:size:Name[:flevel…]`), applied by the host itself to objects too
//! large for the engine that it cannot walk either: a known-bad 40 GB
//! file is still `infected` without clamd reading it.
//!
//! Only signatures that can match such an object are kept: those for
//! objects over `floor` (the smallest size limit in the config) and those
//! for any size (`*`). ClamAV's databases hold millions of hashes, nearly
//! all of small files that clamd checks itself, so the index stays small.
//! Allow entries (`.fp`, `.sfp`) and ignored names (`.ign`, `.ign2`) are
//! honoured as clamd honours them, so both engines agree.

use md5::Digest as _;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

/// The digests a hash signature may be over, told apart by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

impl HashKind {
    fn of_hex(hex: &str) -> Option<Self> {
        match hex.len() {
            32 => Some(Self::Md5),
            40 => Some(Self::Sha1),
            64 => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }
}

/// What a database file's lines do, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFileRole {
    /// `.hdb`, `.hsb`: detections.
    Detect,
    /// `.fp`, `.sfp`: files that are not to be reported.
    Allow,
    /// `.ign`, `.ign2`: signature names that are not to be reported.
    Ignore,
}

impl HashFileRole {
    /// The role of a file named `name`; `None`: it holds no whole-file
    /// hashes (body signatures, section hashes, PUA databases clamd loads
    /// only when asked, the `.info` index…).
    pub fn of(name: &str) -> Option<Self> {
        // clamd takes extensions in any case.
        match name.rsplit_once('.')?.1.to_ascii_lowercase().as_str() {
            "hdb" | "hsb" => Some(Self::Detect),
            "fp" | "sfp" => Some(Self::Allow),
            "ign" | "ign2" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// A line clamd would load that the host cannot read: the whole index is
/// refused rather than run without that signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {problem}")]
pub struct HashDbError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

/// One detection: for objects of `size` (any size when `None`).
#[derive(Debug, Clone)]
struct Entry {
    size: Option<u64>,
    /// As the file has it (what ignore lists name).
    name: Box<str>,
    /// Out of a signed container: reported without `.UNOFFICIAL`.
    official: bool,
    /// The MD5 of its database line (what `.ign2` entries may name).
    line_md5: [u8; 16],
    file: Box<str>,
}

impl Entry {
    /// The name as clamd reports it.
    fn reported_name(&self) -> String {
        if self.official {
            self.name.to_string()
        } else {
            format!("{}.UNOFFICIAL", self.name)
        }
    }
}

/// A digest of one kind.
type Key = (HashKind, Box<[u8]>);

/// The sizes a kind's signatures are for: which digests an object of a
/// size needs.
#[derive(Debug, Default, Clone)]
struct Sizes {
    exact: HashSet<u64>,
    /// The largest of `exact`.
    largest: u64,
    any: bool,
}

/// The hash signatures that can match objects over `floor` bytes.
#[derive(Debug, Clone, Default)]
pub struct HashSignatures {
    floor: u64,
    detect: HashMap<Key, Vec<Entry>>,
    sizes: HashMap<HashKind, Sizes>,
    allowed: HashSet<(HashKind, Box<[u8]>, Option<u64>)>,
    /// Ignored names; with digests, only the database lines whose MD5 is
    /// one of them (`.ign2`'s `Name:md5`), as clamd reads them.
    ignored: HashMap<String, Option<HashSet<[u8; 16]>>>,
    entries: usize,
}

/// A detection that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashMatch {
    /// The name clamd would report (`.UNOFFICIAL` added as clamd adds it).
    pub name: String,
    pub kind: HashKind,
    /// The database file that holds it (`daily.cvd/daily.hdb`).
    pub file: String,
}

impl HashSignatures {
    /// An empty index for objects over `floor` bytes.
    pub fn new(floor: u64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    /// Whether the index speaks for an object of `size`: signatures for
    /// objects up to `floor` were not kept.
    pub fn covers(&self, size: u64) -> bool {
        size > self.floor
    }

    /// The smallest object the index is complete for, minus one.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Detections kept.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Adds the lines of the database file `file` (its role from its
    /// name). Names from a plain file or an unsigned container are
    /// reported as clamd reports them, with `.UNOFFICIAL`; `official` says
    /// the file came out of a signed `.cvd`/`.cld`.
    pub fn add_file(&mut self, file: &str, official: bool, text: &str) -> Result<(), HashDbError> {
        self.add_reader(file, official, text.as_bytes())
    }

    /// [`Self::add_file`] line by line from `reader` (a database of
    /// millions of lines is never held whole).
    pub fn add_reader(&mut self, file: &str, official: bool, mut reader: impl BufRead) -> Result<(), HashDbError> {
        let Some(role) = HashFileRole::of(file) else {
            return Ok(());
        };
        let mut raw = Vec::new();
        for number in 1.. {
            raw.clear();
            let read = reader.read_until(b'\n', &mut raw).map_err(|err| HashDbError {
                file: file.to_owned(),
                line: number,
                problem: err.to_string(),
            })?;
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&raw);
            let line = text.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match role {
                HashFileRole::Ignore => self.add_ignored(file, line),
                HashFileRole::Detect | HashFileRole::Allow => {
                    let parsed = parse_line(line).map_err(|problem| HashDbError {
                        file: file.to_owned(),
                        line: number,
                        problem,
                    })?;
                    let line_md5 = md5::Md5::digest(line.as_bytes()).into();
                    self.add_parsed(role, parsed, file, official, line_md5);
                }
            }
        }
        Ok(())
    }

    fn add_ignored(&mut self, file: &str, line: &str) {
        let fields: Vec<&str> = line.split(':').collect();
        // `.ign2`: `Name[:md5 of the line]`; `.ign`: `database:line:Name`.
        let (name, line_md5) = if file.to_ascii_lowercase().ends_with(".ign") && fields.len() >= 3 {
            (fields[2], None)
        } else {
            let md5 = fields
                .get(1)
                .and_then(|hex| <[u8; 16]>::try_from(hex::decode(hex).ok()?).ok());
            (fields[0], md5)
        };
        let entry = self
            .ignored
            .entry(name.to_owned())
            .or_insert_with(|| Some(HashSet::new()));
        match (entry, line_md5) {
            // One line of that name.
            (Some(lines), Some(md5)) => {
                lines.insert(md5);
            }
            // Every line of that name.
            (entry, _) => *entry = None,
        }
    }

    /// Whether an ignore entry names `entry`.
    fn is_ignored(&self, entry: &Entry) -> bool {
        match self.ignored.get(&*entry.name) {
            None => false,
            Some(None) => true,
            Some(Some(lines)) => lines.contains(&entry.line_md5),
        }
    }

    fn add_parsed(&mut self, role: HashFileRole, parsed: Parsed, file: &str, official: bool, line_md5: [u8; 16]) {
        if parsed.size.is_some_and(|size| size <= self.floor) {
            return;
        }
        let (kind, digest) = (parsed.kind, parsed.digest);
        if role == HashFileRole::Allow {
            self.allowed.insert((kind, digest, parsed.size));
            return;
        }
        let sizes = self.sizes.entry(kind).or_default();
        match parsed.size {
            Some(size) => {
                sizes.exact.insert(size);
                sizes.largest = sizes.largest.max(size);
            }
            None => sizes.any = true,
        }
        self.detect.entry((kind, digest)).or_default().push(Entry {
            size: parsed.size,
            name: parsed.name.into(),
            official,
            line_md5,
            file: file.into(),
        });
        self.entries += 1;
    }

    /// The digests an object of `size` must be hashed with: the kinds some
    /// kept signature is for that size. Empty: no signature can match it,
    /// and its bytes need not be read to know.
    pub fn kinds_for(&self, size: u64) -> Vec<HashKind> {
        let mut kinds: Vec<HashKind> = self
            .sizes
            .iter()
            .filter(|(_, sizes)| sizes.any || sizes.exact.contains(&size))
            .map(|(kind, _)| *kind)
            .collect();
        kinds.sort();
        kinds
    }

    /// The digests an object of unknown size, known to be over `size`
    /// bytes, must be hashed with: the kinds some kept signature is for a
    /// larger size (or any size). Empty: no signature can match it.
    pub fn kinds_over(&self, size: u64) -> Vec<HashKind> {
        let mut kinds: Vec<HashKind> = self
            .sizes
            .iter()
            .filter(|(_, sizes)| sizes.any || sizes.largest > size)
            .map(|(kind, _)| *kind)
            .collect();
        kinds.sort();
        kinds
    }

    /// The first detection matching an object of `size` with `digests`,
    /// unless an allow entry names the object or an ignore entry the
    /// signature.
    pub fn lookup(&self, digests: &[(HashKind, &[u8])], size: u64) -> Option<HashMatch> {
        let allowed = digests.iter().any(|(kind, digest)| {
            let key = |size| (*kind, Box::<[u8]>::from(*digest), size);
            self.allowed.contains(&key(Some(size))) || self.allowed.contains(&key(None))
        });
        if allowed {
            return None;
        }
        digests.iter().find_map(|(kind, digest)| {
            let entries = self.detect.get(&(*kind, Box::<[u8]>::from(*digest)))?;
            entries
                .iter()
                .filter(|entry| entry.size.is_none_or(|wanted| wanted == size))
                .find(|entry| !self.is_ignored(entry))
                .map(|entry| HashMatch {
                    name: entry.reported_name(),
                    kind: *kind,
                    file: entry.file.to_string(),
                })
        })
    }
}

/// One `hash:size:Name[:flevel[:flevel]]` line.
struct Parsed<'l> {
    kind: HashKind,
    digest: Box<[u8]>,
    size: Option<u64>,
    name: &'l str,
}

fn parse_line(line: &str) -> Result<Parsed<'_>, String> {
    let mut fields = line.split(':');
    let (Some(hash), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("`{line}` is not `hash:size:Name`"));
    };
    let kind = HashKind::of_hex(hash).ok_or_else(|| {
        format!(
            "`{hash}` is {} characters; an MD5, SHA-1 or SHA-256 in hex has 32, 40 or 64",
            hash.len()
        )
    })?;
    let digest = hex::decode(hash).map_err(|err| format!("`{hash}` is not hex: {err}"))?;
    let size = match size {
        "*" => None,
        size => Some(
            size.parse::<u64>()
                .map_err(|_| format!("the size `{size}` is neither a number nor `*`"))?,
        ),
    };
    if name.is_empty() {
        return Err("the signature has no name".into());
    }
    Ok(Parsed {
        kind,
        digest: digest.into(),
        size,
        name,
    })
}

#[cfg(test)]
mod tests;
