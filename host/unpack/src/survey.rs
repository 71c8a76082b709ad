//! The container survey: every container and compression format inside
//! an object, at any depth the host can reach, with where it sits
//! (`outer.zip!/dir/inner.tar!/x.zst`).
//!
//! The host walks zip (by its central directory), tar, and the
//! single-stream compressions (gzip, bzip2, xz, lzma, zstd, lz4); inside
//! a 7z, RAR, CAB, ARJ or CPIO it cannot see, and records only the outer
//! format. Zip members are recorded with their compression method (a
//! member compressed with LZMA is not opened by an engine that opens the
//! zip), and encrypted members as `encrypted`.
//!
//! Limits bound the work (depth, entries, bytes expanded); a survey that
//! hit one, or met a container it could not parse, says so in
//! [`Survey::incomplete`], and the scan path treats what it could not see
//! as unproven.

use bucketscan_core::formats::{Contained, Format, Incomplete, SNIFF_BYTES, Survey, by_name, sniff};
use std::cell::Cell;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::rc::Rc;

/// What one survey may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Containers nested inside each other (ClamAV's MaxRecursion is 17).
    pub max_depth: u32,
    /// Members looked at, in all (ClamAV's MaxFiles is 10,000).
    pub max_entries: u64,
    /// Bytes decompressed, in all.
    pub max_bytes: u64,
    /// Where nested zips are spooled to be read by their directory.
    pub temp_dir: PathBuf,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 17,
            max_entries: 10_000,
            max_bytes: 4 << 30,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// Zip methods the walker decompresses to look inside.
const WALKED_ZIP_METHODS: [u16; 4] = [0, 8, 9, 12];

/// Surveys `body` (a stored object's bytes, or the decoded ones), named
/// `name` with `content_type` (raw brotli is known only by those).
pub fn survey<R: Read + Seek>(body: R, name: &str, content_type: Option<&str>, limits: &Limits) -> Survey {
    let mut walker = Walker {
        limits,
        found: Vec::new(),
        entries: 0,
        budget: Rc::new(Budget::new(limits.max_bytes)),
    };
    let outcome = walker.visit(Source::Seekable(Box::new(body)), name, name, content_type, 0);
    Survey {
        formats: walker.found,
        incomplete: outcome.err().map(|stop| Incomplete {
            limit: stop.limit,
            detail: stop.detail,
        }),
    }
}

/// Why the survey stopped before seeing everything.
struct Stop {
    limit: bool,
    detail: String,
}

/// A container that could not be parsed.
fn malformed(detail: String) -> Stop {
    Stop { limit: false, detail }
}

/// A limit reached.
fn limit(detail: String) -> Stop {
    Stop { limit: true, detail }
}

struct Walker<'a> {
    limits: &'a Limits,
    found: Vec<Contained>,
    entries: u64,
    budget: Rc<Budget>,
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

enum Source<'a> {
    Seekable(Box<dyn ReadSeek + 'a>),
    Stream(Box<dyn Read + 'a>),
}

impl<'a> Walker<'_> {
    fn visit(
        &mut self,
        source: Source<'a>,
        path: &str,
        name: &str,
        content_type: Option<&str>,
        depth: u32,
    ) -> Result<(), Stop> {
        let (head, source) = read_head(source).map_err(|err| self.stop_at(path, &err))?;
        let Some(format) = sniff(&head).or_else(|| by_name(name, content_type)) else {
            return Ok(());
        };
        self.record(path, format);
        if !format.is_walkable() {
            return Ok(());
        }
        if depth >= self.limits.max_depth {
            return Err(limit(format!(
                "{path}: containers nested more than {} deep",
                self.limits.max_depth
            )));
        }
        let inner = inner_name(name, format);
        let inner_path = format!("{path}!/{inner}");
        match format {
            Format::Zip => {
                let seekable = self.seekable(source, path)?;
                self.walk_zip(seekable, path, depth)
            }
            Format::Tar => self.walk_tar(stream(source), path, depth),
            _ => {
                let decoded = self.decompressor(format, stream(source), path)?;
                let counted = Counted {
                    inner: decoded,
                    budget: self.budget.clone(),
                };
                self.visit(Source::Stream(Box::new(counted)), &inner_path, &inner, None, depth + 1)
            }
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

    fn count_entry(&mut self, path: &str) -> Result<(), Stop> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(limit(format!(
                "{path}: more than {} members in all; the rest was not looked at",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn decompressor(&self, format: Format, input: Box<dyn Read + 'a>, path: &str) -> Result<Box<dyn Read + 'a>, Stop> {
        Ok(match format {
            Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
            Format::Xz => Box::new(lzma_rust2::XzReader::new(input, true)),
            Format::Lzma => Box::new(
                lzma_rust2::LzmaReader::new_mem_limit(input, u32::MAX, None)
                    .map_err(|err| malformed(format!("{path}: not a readable lzma stream: {err}")))?,
            ),
            Format::Zstd => Box::new(
                zstd::stream::read::Decoder::new(input)
                    .map_err(|err| malformed(format!("{path}: not a readable zstd stream: {err}")))?,
            ),
            Format::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
            other => unreachable!("{other} is not a stream compression"),
        })
    }

    /// A zip needs its directory, at the end: a stream is spooled first.
    fn seekable(&self, source: Source<'a>, path: &str) -> Result<Box<dyn ReadSeek + 'a>, Stop> {
        match source {
            Source::Seekable(seekable) => Ok(seekable),
            Source::Stream(mut stream) => {
                let mut file = tempfile::tempfile_in(&self.limits.temp_dir)
                    .map_err(|err| malformed(format!("{path}: spooling a nested zip: {err}")))?;
                io::copy(&mut stream, &mut file).map_err(|err| self.stop_at(path, &err))?;
                file.seek(SeekFrom::Start(0))
                    .map_err(|err| malformed(format!("{path}: {err}")))?;
                Ok(Box::new(file))
            }
        }
    }

    fn walk_zip(&mut self, source: Box<dyn ReadSeek + 'a>, path: &str, depth: u32) -> Result<(), Stop> {
        let mut archive = zip::ZipArchive::new(source)
            .map_err(|err| malformed(format!("{path}: not a readable zip archive: {err}")))?;
        for index in 0..archive.len() {
            let (name, method, encrypted) = {
                let member = archive
                    .by_index_raw(index)
                    .map_err(|err| malformed(format!("{path}: zip member {index}: {err}")))?;
                let name = String::from_utf8_lossy(member.name_raw()).into_owned();
                (name, zip_method(member.compression()), member.encrypted())
            };
            let member_path = format!("{path}!/{}", printable(&name));
            self.count_entry(&member_path)?;
            if encrypted {
                self.record(&member_path, Format::Encrypted);
                continue;
            }
            if method != 0 && method != 8 {
                self.record(&member_path, Format::ZipMethod(method));
            }
            if !WALKED_ZIP_METHODS.contains(&method) {
                continue;
            }
            let member = archive
                .by_index(index)
                .map_err(|err| malformed(format!("{member_path}: {err}")))?;
            let counted = Counted {
                inner: Box::new(member),
                budget: self.budget.clone(),
            };
            self.visit(Source::Stream(Box::new(counted)), &member_path, &name, None, depth + 1)?;
        }
        Ok(())
    }

    fn walk_tar(&mut self, source: Box<dyn Read + 'a>, path: &str, depth: u32) -> Result<(), Stop> {
        let mut archive = tar::Archive::new(source);
        let entries = archive
            .entries()
            .map_err(|err| malformed(format!("{path}: not a readable tar archive: {err}")))?;
        for entry in entries {
            let entry = entry.map_err(|err| self.stop_at(path, &err))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let member_path = format!("{path}!/{}", printable(&name));
            self.count_entry(&member_path)?;
            self.visit(Source::Stream(Box::new(entry)), &member_path, &name, None, depth + 1)?;
        }
        Ok(())
    }
}

fn stream<'a>(source: Source<'a>) -> Box<dyn Read + 'a> {
    match source {
        Source::Seekable(seekable) => Box::new(seekable),
        Source::Stream(stream) => stream,
    }
}

/// The first bytes of `source`, and the source positioned as if they had
/// not been read.
fn read_head(source: Source<'_>) -> io::Result<(Vec<u8>, Source<'_>)> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    match source {
        Source::Seekable(mut seekable) => {
            seekable.seek(SeekFrom::Start(0))?;
            (&mut seekable).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
            seekable.seek(SeekFrom::Start(0))?;
            Ok((head, Source::Seekable(seekable)))
        }
        Source::Stream(mut stream) => {
            (&mut stream).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
            let replay = Cursor::new(head.clone()).chain(stream);
            Ok((head, Source::Stream(Box::new(replay))))
        }
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
    }

    #[test]
    fn rar_and_raw_brotli_are_recorded_but_not_walked() {
        let rar = samples::rar4("e.com", b"payload");
        assert_eq!(formats(&survey_of(rar, "x.rar")), vec![("x.rar".into(), "rar".into())]);
        assert_eq!(
            formats(&survey(
                Cursor::new(b"\x1b\x00".to_vec()),
                "app.js.br",
                None,
                &Limits::default()
            )),
            vec![("app.js.br".into(), "brotli".into())]
        );
    }

    #[test]
    fn a_bomb_stops_at_the_byte_limit_and_says_so() {
        let bomb = samples::wrap(Format::Gzip, &vec![0u8; 8 << 20], "zeros").unwrap();
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        // Zeros are not a container: only the head is read, no limit hit.
        assert!(
            survey(Cursor::new(bomb.clone()), "z.gz", None, &limits)
                .incomplete
                .is_none()
        );
        // A tar of zeros must be read through to reach its next member.
        let tar = samples::tar(&[("zeros", &vec![0u8; 8 << 20]), ("next.zst", b"(\xb5/\xfd")]);
        let tar_bomb = samples::wrap(Format::Gzip, &tar, "t.tar").unwrap();
        let found = survey(Cursor::new(tar_bomb), "t.tar.gz", None, &limits);
        let why = found.incomplete.expect("the limit stops it");
        assert!(why.limit && why.detail.contains("bytes expanded"), "{why:?}");
    }

    #[test]
    fn nesting_past_the_depth_limit_is_incomplete() {
        let mut bytes = b"core".to_vec();
        for _ in 0..5 {
            bytes = samples::wrap(Format::Gzip, &bytes, "x").unwrap();
        }
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let found = survey(Cursor::new(bytes), "x.gz", None, &limits);
        let why = found.incomplete.unwrap();
        assert!(why.limit && why.detail.contains("nested more than 3 deep"), "{why:?}");
    }

    #[test]
    fn a_truncated_zip_is_incomplete_not_empty() {
        let mut zip = samples::zip(&[("a.txt", b"aaaa")], 0);
        zip.truncate(zip.len() - 10);
        let found = survey_of(zip, "t.zip");
        let why = found.incomplete.unwrap();
        assert!(!why.limit && why.detail.contains("not a readable zip"), "{why:?}");
    }
}
