//! `Content-Encoding`, undone the way a client undoes it. S3 serves an
//! object's stored bytes with the encoding header its uploader set, and
//! every browser, CDN and HTTP library decodes them on receipt: what the
//! client ends up with is the decoded bytes, so those are what must be
//! scanned. Stacked codings (`gzip, br`) are undone last to first.
//!
//! Decoding streams (nothing is held whole) and stops at a byte limit: a
//! decompression bomb ends [`DecodeError::TooLarge`], never a full disk.

use std::io::{self, Read, Write};

/// One content coding the host can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped; some servers send raw deflate,
    /// and clients accept both, so both are decoded.
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// Why the bytes a client would receive could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A coding the host cannot undo (`compress`, `aes128gcm`, made up).
    #[error("Content-Encoding `{0}` cannot be decoded by the host")]
    Unsupported(String),
    /// The decoded bytes passed the limit: decoding stopped there.
    #[error("decoded past {limit} bytes (the object's size limit); decoding stopped")]
    TooLarge { limit: u64 },
    /// The bytes are not what the coding says.
    #[error("the bytes are not valid `{coding}`: {detail}")]
    Malformed { coding: &'static str, detail: String },
    /// Reading the stored bytes or writing the decoded ones failed.
    #[error("{0}")]
    Io(String),
}

/// The codings a `Content-Encoding` header lists, in order; `identity`
/// (and empty entries) are no coding at all.
pub fn parse(header: &str) -> Result<Vec<Coding>, DecodeError> {
    header
        .split(',')
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .map(|coding| match coding.as_str() {
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "deflate" => Ok(Coding::Deflate),
            "br" => Ok(Coding::Brotli),
            "zstd" => Ok(Coding::Zstd),
            _ => Err(DecodeError::Unsupported(printable(&coding))),
        })
        .collect()
}

/// Keeps a header value readable in messages (it is the uploader's).
fn printable(text: &str) -> String {
    bucketscan_core::text::cap(text, 64)
}

/// Decodes `input` through `codings` into `out`, at most `limit` decoded
/// bytes; returns how many were written.
pub fn decode(codings: &[Coding], input: impl Read, out: &mut dyn Write, limit: u64) -> Result<u64, DecodeError> {
    let mut reader: Box<dyn Read + '_> = Box::new(input);
    let mut last = None;
    for coding in codings.iter().rev() {
        reader = decoder(*coding, reader)?;
        last = Some(*coding);
    }
    let Some(outermost) = last else {
        return copy_limited(&mut reader, out, limit, "identity");
    };
    copy_limited(&mut reader, out, limit, outermost.name())
}

fn decoder<'a>(coding: Coding, input: Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>, DecodeError> {
    Ok(match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Coding::Deflate => {
            let mut input = io::BufReader::new(input);
            let zlib = is_zlib_header(peek(&mut input, 2).map_err(io_error)?);
            if zlib {
                Box::new(flate2::read::ZlibDecoder::new(input))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(input))
            }
        }
        Coding::Brotli => Box::new(brotli_decompressor::Decompressor::new(input, 64 * 1024)),
        Coding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input).map_err(|err| DecodeError::Malformed {
                coding: "zstd",
                detail: err.to_string(),
            })?,
        ),
    })
}

fn peek<R: Read>(reader: &mut io::BufReader<R>, n: usize) -> io::Result<&[u8]> {
    use std::io::BufRead;
    let available = reader.fill_buf()?;
    Ok(&available[..available.len().min(n)])
}

/// RFC 1950: compression method 8 and a header checksum divisible by 31.
fn is_zlib_header(head: &[u8]) -> bool {
    head.len() == 2 && head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
}

fn copy_limited(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    limit: u64,
    coding: &'static str,
) -> Result<u64, DecodeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(DecodeError::Malformed {
                    coding,
                    detail: err.to_string(),
                });
            }
        };
        written += n as u64;
        if written > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        out.write_all(&buf[..n]).map_err(io_error)?;
    }
}

fn io_error(err: io::Error) -> DecodeError {
    DecodeError::Io(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn raw_deflate(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn decoded(header: &str, bytes: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        decode(&parse(header)?, bytes, &mut out, limit)?;
        Ok(out)
    }

    #[test]
    fn headers_list_codings_and_identity_is_none() {
        assert_eq!(parse("gzip").unwrap(), vec![Coding::Gzip]);
        assert_eq!(parse(" GZIP , br").unwrap(), vec![Coding::Gzip, Coding::Brotli]);
        assert_eq!(parse("identity").unwrap(), vec![]);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("x-gzip, zstd, deflate").unwrap().len(), 3);
        let err = parse("gzip, compress").unwrap_err();
        assert_eq!(err, DecodeError::Unsupported("compress".into()));
        assert!(err.to_string().contains("`compress`"), "{err}");
        assert!(matches!(parse("evil\u{1b}[31m"), Err(DecodeError::Unsupported(name)) if !name.contains('\u{1b}')));
    }

    #[test]
    fn every_coding_and_a_stack_of_them_decodes_to_the_payload() {
        let payload = b"what the browser receives".repeat(10);
        assert_eq!(decoded("gzip", &gzip(&payload), 1 << 20).unwrap(), payload);
        assert_eq!(decoded("deflate", &zlib(&payload), 1 << 20).unwrap(), payload);
        assert_eq!(
            decoded("deflate", &raw_deflate(&payload), 1 << 20).unwrap(),
            payload,
            "raw deflate, as some servers send it"
        );
        let zstd = zstd::encode_all(&payload[..], 3).unwrap();
        assert_eq!(decoded("zstd", &zstd, 1 << 20).unwrap(), payload);
        // gzip applied first, then zstd: undone in the reverse order.
        let stacked = zstd::encode_all(&gzip(&payload)[..], 3).unwrap();
        assert_eq!(decoded("gzip, zstd", &stacked, 1 << 20).unwrap(), payload);
        assert!(decoded("zstd, gzip", &stacked, 1 << 20).is_err(), "the order matters");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 * 1024);
        let mut out = Vec::new();
        let err = decode(&[Coding::Gzip], &bomb[..], &mut out, 1 << 20).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 });
        assert!(out.len() <= (1 << 20), "nothing past the limit was written");
    }

    #[test]
    fn bytes_that_are_not_the_coding_are_malformed() {
        let err = decoded("gzip", b"plain text pretending", 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { coding: "gzip", .. }), "{err}");
        let mut truncated = gzip(&b"x".repeat(4096));
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            decoded("gzip", &truncated, 1 << 20),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
