//! Container and compression formats: what the bytes of an object (or of
//! a member inside it) are, told by their first bytes, and which of them
//! a scan engine opens.
//!
//! Why it matters: clamd answers `OK` both for clean bytes and for bytes it
//! could not look into (a RAR without unrar, a zstd stream, a zip member
//! compressed with LZMA). Read as "clean", that answer lets a payload
//! through. So the host surveys what an object contains ([`Survey`], made
//! by `bucketscan-unpack`), each engine declares what it opens
//! ([`FormatSet`], checked against the real engine at start), and a clean
//! answer about bytes that hold a format the engine does not open becomes
//! `unscannable (unsupported-container)`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// A container or compression format the host can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Zip,
    Gzip,
    Bzip2,
    Xz,
    /// The legacy `.lzma` stream (LZMA "alone").
    Lzma,
    Zstd,
    Lz4,
    /// Raw brotli has no magic number: recognised by name or type only.
    Brotli,
    Tar,
    SevenZip,
    Rar,
    Cab,
    Arj,
    Cpio,
    /// An ISO 9660 disc image; its magic sits at byte 32769, past what
    /// [`sniff`] looks at (see [`is_iso9660`]).
    Iso9660,
    /// An encrypted archive member: nobody without the password opens it.
    Encrypted,
    /// A zip member compressed with this method (0 stored, 8 deflate, 12
    /// bzip2, 14 lzma, 93 zstd, 95 xz, 98 ppmd, …): opening the zip is not
    /// opening its members.
    ZipMethod(u16),
    /// A 7z block coded with this method (its ID's bytes, big-endian),
    /// other than copy, LZMA and LZMA2: opening the 7z is not decoding it.
    SevenZipCoder(u32),
}

impl Format {
    /// Every format a config may name (zip methods as `zip-METHOD`).
    pub const NAMED: [Format; 16] = [
        Self::Zip,
        Self::Gzip,
        Self::Bzip2,
        Self::Xz,
        Self::Lzma,
        Self::Zstd,
        Self::Lz4,
        Self::Brotli,
        Self::Tar,
        Self::SevenZip,
        Self::Rar,
        Self::Cab,
        Self::Arj,
        Self::Cpio,
        Self::Iso9660,
        Self::Encrypted,
    ];

    /// The name reports, configs and tags use (`rar`, `zip-lzma`).
    pub fn name(self) -> String {
        match self {
            Self::ZipMethod(method) => format!("zip-{}", zip_method_name(method)),
            Self::SevenZipCoder(id) => format!("7z-{}", seven_zip_coder_name(id)),
            other => other.base_name().to_owned(),
        }
    }

    fn base_name(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
            Self::Lzma => "lzma",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::Brotli => "brotli",
            Self::Tar => "tar",
            Self::SevenZip => "7z",
            Self::Rar => "rar",
            Self::Cab => "cab",
            Self::Arj => "arj",
            Self::Cpio => "cpio",
            Self::Iso9660 => "iso9660",
            Self::Encrypted => "encrypted",
            Self::ZipMethod(_) => "zip-method",
            Self::SevenZipCoder(_) => "7z-coder",
        }
    }

    /// The format a config names, e.g. `rar`, `zip-lzma`, `zip-93`.
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(coder) = name.strip_prefix("7z-") {
            return SEVEN_ZIP_CODERS
                .iter()
                .find(|(_, known)| *known == coder)
                .map(|(id, _)| Self::SevenZipCoder(*id))
                .or_else(|| u32::from_str_radix(coder, 16).ok().map(Self::SevenZipCoder));
        }
        if let Some(method) = name.strip_prefix("zip-") {
            return ZIP_METHODS
                .iter()
                .find(|(_, known)| *known == method)
                .map(|(number, _)| Self::ZipMethod(*number))
                .or_else(|| method.parse().ok().map(Self::ZipMethod));
        }
        Self::NAMED.into_iter().find(|format| format.base_name() == name)
    }

    /// Whether the host can walk into it to see what it holds (zip, tar and
    /// the single-stream compressions).
    pub fn is_walkable(self) -> bool {
        matches!(
            self,
            Self::Zip | Self::Gzip | Self::Bzip2 | Self::Xz | Self::Lzma | Self::Zstd | Self::Lz4 | Self::Tar
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// For config fields that list formats by name: an unknown name is an
/// error that names it and the known ones.
pub fn format_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Format>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    names
        .iter()
        .map(|name| {
            Format::from_name(name).ok_or_else(|| {
                let known: Vec<String> = Format::NAMED.iter().map(|f| f.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown format `{name}`; known: {}, and zip-METHOD (e.g. zip-lzma)",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// Zip compression methods by their APPNOTE numbers.
const ZIP_METHODS: &[(u16, &str)] = &[
    (0, "stored"),
    (1, "shrunk"),
    (2, "reduced1"),
    (3, "reduced2"),
    (4, "reduced3"),
    (5, "reduced4"),
    (6, "imploded"),
    (8, "deflate"),
    (9, "deflate64"),
    (12, "bzip2"),
    (14, "lzma"),
    (19, "lz77"),
    (93, "zstd"),
    (95, "xz"),
    (96, "jpeg"),
    (97, "wavpack"),
    (98, "ppmd"),
    (99, "aes"),
];

/// 7z coder IDs by name (7-Zip's Methods.txt).
const SEVEN_ZIP_CODERS: &[(u32, &str)] = &[
    (0x03, "delta"),
    (0x0003_0401, "ppmd"),
    (0x0303_0103, "bcj"),
    (0x0303_011b, "bcj2"),
    (0x0303_0205, "ppc"),
    (0x0303_0401, "ia64"),
    (0x0303_0501, "arm"),
    (0x0303_0701, "armt"),
    (0x0303_0805, "sparc"),
    (0x0a, "arm64"),
    (0x0004_0108, "deflate"),
    (0x0004_0109, "deflate64"),
    (0x0004_0202, "bzip2"),
    (0x04f7_1101, "zstd"),
    (0x06f1_0701, "aes"),
];

fn seven_zip_coder_name(id: u32) -> String {
    SEVEN_ZIP_CODERS
        .iter()
        .find(|(known, _)| *known == id)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("{id:x}"))
}

fn zip_method_name(method: u16) -> String {
    ZIP_METHODS
        .iter()
        .find(|(number, _)| *number == method)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| method.to_string())
}

/// How many leading bytes [`sniff`] looks at (tar's magic sits at 257).
pub const SNIFF_BYTES: usize = 512;

/// How many leading bytes [`is_iso9660`] needs: the system area (16
/// sectors of 2048 bytes), then the first volume descriptor's type and
/// `CD001`.
pub const ISO9660_HEAD_BYTES: usize = 16 * 2048 + 6;

/// Whether `head` (at least [`ISO9660_HEAD_BYTES`] of an object) is an
/// ISO 9660 image: `CD001` in its first volume descriptor.
pub fn is_iso9660(head: &[u8]) -> bool {
    head.get(16 * 2048 + 1..ISO9660_HEAD_BYTES) == Some(b"CD001")
}

/// The format `head` (an object's or member's first bytes) starts with.
pub fn sniff(head: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let format = if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Format::Zip
    } else if starts(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if starts(b"BZh") && head.get(3).is_some_and(|level| (b'1'..=b'9').contains(level)) {
        Format::Bzip2
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) || is_zstd_skippable(head) {
        Format::Zstd
    } else if starts(&[0x04, 0x22, 0x4d, 0x18]) || starts(&[0x02, 0x21, 0x4c, 0x18]) {
        Format::Lz4
    } else if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        Format::SevenZip
    } else if starts(b"Rar!\x1a\x07") {
        Format::Rar
    } else if starts(b"MSCF\0\0\0\0") {
        Format::Cab
    } else if starts(&[0x60, 0xea]) {
        Format::Arj
    } else if starts(b"070701") || starts(b"070702") || starts(b"070707") || starts(&[0xc7, 0x71]) {
        Format::Cpio
    } else if head.get(257..262) == Some(b"ustar") || is_old_tar(head) {
        Format::Tar
    } else if is_lzma_alone(head) {
        Format::Lzma
    } else {
        return None;
    };
    Some(format)
}

/// The format an object is by its declared type, for formats that have no
/// magic number (raw brotli). Names are not enough: `.br` is also Brazil's
/// domain, and `app.js.br` is what a CDN serves decoded.
pub fn by_type(content_type: Option<&str>) -> Option<Format> {
    content_type
        .is_some_and(|t| t.to_ascii_lowercase().contains("brotli"))
        .then_some(Format::Brotli)
}

/// A tar header without the `ustar` magic (V7 and other old writers):
/// told by its checksum, the sum of the header's bytes with the checksum
/// field counted as spaces, stored in octal at 148.
fn is_old_tar(head: &[u8]) -> bool {
    let Some(header) = head.get(..512) else {
        return false;
    };
    if header[0] == 0 {
        return false;
    }
    let stored = std::str::from_utf8(&header[148..156])
        .ok()
        .map(|field| field.trim_matches(|c: char| c == '\0' || c == ' '))
        .filter(|field| !field.is_empty())
        .and_then(|field| u32::from_str_radix(field, 8).ok());
    let computed: u32 = header
        .iter()
        .enumerate()
        .map(|(index, byte)| {
            if (148..156).contains(&index) {
                32
            } else {
                u32::from(*byte)
            }
        })
        .sum();
    stored == Some(computed)
}

/// zstd skippable frames (magic 0x184D2A50..=0x184D2A5F) may precede the
/// data: a stream that starts with one is still zstd.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

/// The LZMA "alone" header: properties (lc/lp/pb, below 225), a dictionary
/// size that is a power of two from 4 KiB to 1.5 GiB (or 2^n + 2^(n-1)),
/// then the uncompressed size (unknown, all ones, or below 2^48).
fn is_lzma_alone(head: &[u8]) -> bool {
    if head.len() < 13 || head[0] >= 225 {
        return false;
    }
    let dictionary = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let power = dictionary.is_power_of_two() || (dictionary.is_multiple_of(3) && (dictionary / 3).is_power_of_two());
    let size = u64::from_le_bytes(head[5..13].try_into().expect("8 bytes"));
    power && (1 << 12..=3 << 29).contains(&dictionary) && (size == u64::MAX || size < 1 << 48) && head[0] == 0x5d
}

/// A set of formats, e.g. what an engine opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatSet(BTreeSet<Format>);

impl FormatSet {
    pub fn new(formats: impl IntoIterator<Item = Format>) -> Self {
        Self(formats.into_iter().collect())
    }

    pub fn contains(&self, format: Format) -> bool {
        self.0.contains(&format)
    }

    pub fn insert(&mut self, format: Format) {
        self.0.insert(format);
    }

    pub fn remove(&mut self, format: Format) {
        self.0.remove(&format);
    }

    pub fn iter(&self) -> impl Iterator<Item = Format> + '_ {
        self.0.iter().copied()
    }

    /// Names, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.0.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    }
}

/// One format found inside an object, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contained {
    /// `outer.zip!/dir/inner.tar!/x.zst` style; empty for the object itself.
    pub path: String,
    pub format: Format,
}

/// What the host found inside an object: every container or compression
/// format at any depth it could reach, and whether it saw everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Survey {
    pub formats: Vec<Contained>,
    /// Why the survey stopped early: formats deeper than that are unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Incomplete>,
}

/// Why a survey did not see everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    pub kind: IncompleteKind,
    pub detail: String,
}

/// What stopped a survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncompleteKind {
    /// A limit: bytes expanded, depth, members, decoder memory.
    Limit,
    /// A container that could not be parsed.
    Malformed,
    /// A container the host cannot look inside (ARJ, CPIO, an imploded
    /// zip member): what it holds is unknown.
    Unwalkable(Format),
    /// No spool room now for what the survey had to write down (a nested
    /// zip): worth another try later.
    NoRoom,
}

impl Survey {
    /// The formats found that `opened` does not contain, except those in
    /// `let_through` (which also excuses a container the host could not
    /// look inside, see [`Survey::unseen`]).
    pub fn unopened<'a>(&'a self, opened: &FormatSet, let_through: &[Format]) -> Vec<&'a Contained> {
        self.formats
            .iter()
            .filter(|found| !opened.contains(found.format) && !let_through.contains(&found.format))
            .collect()
    }

    /// Why the survey did not see everything, unless what stopped it is a
    /// format the bucket lets through.
    pub fn unseen(&self, let_through: &[Format]) -> Option<&Incomplete> {
        self.incomplete
            .as_ref()
            .filter(|why| !matches!(why.kind, IncompleteKind::Unwalkable(format) if let_through.contains(&format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_name_their_format() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(Format::Zip));
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some(Format::Gzip));
        assert_eq!(sniff(b"BZh91AY&SY"), Some(Format::Bzip2));
        assert_eq!(sniff(b"BZhx"), None, "a level digit must follow");
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Format::Zstd));
        assert_eq!(
            sniff(&[0x5a, 0x2a, 0x4d, 0x18, 0]),
            Some(Format::Zstd),
            "skippable frame"
        );
        assert_eq!(sniff(&[0x04, 0x22, 0x4d, 0x18]), Some(Format::Lz4));
        assert_eq!(sniff(b"Rar!\x1a\x07\x00"), Some(Format::Rar));
        assert_eq!(sniff(b"Rar!\x1a\x07\x01\x00"), Some(Format::Rar));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(Format::Tar));
        // An old tar header: no magic, a checksum that adds up.
        let mut old = vec![0u8; 512];
        old[..5].copy_from_slice(b"a.exe");
        old[124..135].copy_from_slice(b"00000000004");
        let sum: u32 = old.iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * 32;
        old[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert_eq!(sniff(&old), Some(Format::Tar));
        old[0] = b'b';
        assert_eq!(sniff(&old), None, "the checksum no longer adds up");
        assert_eq!(sniff(b"plain text, nothing to open"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn an_lzma_alone_header_is_recognised_and_text_is_not() {
        let mut head = vec![0x5d, 0, 0, 0x10, 0];
        head.extend_from_slice(&[0xff; 8]);
        assert_eq!(sniff(&head), Some(Format::Lzma));
        assert_eq!(sniff(b"]\0\0 this is no dictionary size"), None);
    }

    #[test]
    fn names_round_trip_and_zip_methods_have_names() {
        for format in Format::NAMED {
            assert_eq!(Format::from_name(&format.name()), Some(format));
        }
        assert_eq!(Format::ZipMethod(14).name(), "zip-lzma");
        assert_eq!(Format::from_name("zip-lzma"), Some(Format::ZipMethod(14)));
        assert_eq!(Format::from_name("zip-77"), Some(Format::ZipMethod(77)));
        assert_eq!(Format::from_name("floppy"), None);
        assert_eq!(Format::SevenZipCoder(0x0004_0202).name(), "7z-bzip2");
        assert_eq!(Format::from_name("7z-bzip2"), Some(Format::SevenZipCoder(0x0004_0202)));
    }

    #[test]
    fn brotli_is_known_by_its_type_only() {
        assert_eq!(by_type(Some("application/x-brotli")), Some(Format::Brotli));
        assert_eq!(by_type(Some("application/pdf")), None);
        assert_eq!(by_type(None), None);
    }

    #[test]
    fn unopened_formats_are_those_the_engine_lacks_and_the_bucket_did_not_let_through() {
        let survey = Survey {
            formats: vec![
                Contained {
                    path: String::new(),
                    format: Format::Zip,
                },
                Contained {
                    path: "a.zip!/x.zst".into(),
                    format: Format::Zstd,
                },
                Contained {
                    path: "a.zip!/y.rar".into(),
                    format: Format::Rar,
                },
            ],
            incomplete: None,
        };
        let opened = FormatSet::new([Format::Zip, Format::Gzip]);
        let unopened: Vec<Format> = survey
            .unopened(&opened, &[Format::Rar])
            .iter()
            .map(|c| c.format)
            .collect();
        assert_eq!(unopened, vec![Format::Zstd]);
    }
}
