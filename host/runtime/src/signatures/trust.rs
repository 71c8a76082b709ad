//! What the signature bucket may install. Whoever can write that bucket —
//! a mirror host, a CI job, a stolen key — must be able to add detections
//! and nothing else: a file that *allows* bytes (`.fp`, `.sfp`), mutes a
//! signature (`.ign`, `.ign2`), trusts a signer (`.crb`), allows phishing
//! URLs (`.wdb`) or reconfigures the engine (`.cfg`, which can switch off
//! archive parsing) would let malware through with freshness and the
//! canary still passing. So:
//!
//! - such files are refused unless the config names them by key
//!   (`[signatures] trusted`);
//! - a `.cvd` is installed only when its digital signature verifies, the
//!   way freshclam and sigtool check it: the MD5 in its header is the
//!   MD5 of the rest of the file, and the header's signature decodes to
//!   that MD5 under the signing key (Talos's by default);
//! - unsigned containers (`.cld`, `.cud`) only where the config lists
//!   them (`[signatures] unsigned`), and never holding one of the files
//!   above unless that key is trusted too.

use num_bigint::BigUint;
use serde::Deserialize;
use std::io::Read;

/// Extensions of files that take detections away or reconfigure clamd
/// (`.ftm` re-types files, so other signatures no longer apply; `.cat`
/// trusts signed catalogues).
pub const ALLOWING: &[&str] = &["fp", "sfp", "ign", "ign2", "cfg", "wdb", "crb", "ftm", "cat"];

/// The public key Talos signs ClamAV's `.cvd` files with (libclamav's
/// `CLI_NSTR` and `CLI_ESTR`).
const TALOS_N: &str = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037";
const TALOS_E: &str = "100001027";

/// `[signatures] signing-key`: the key `.cvd` signatures must verify
/// under, as decimal numbers (Talos's when absent; tests sign their own).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    pub n: String,
    pub e: String,
}

impl SigningKey {
    pub fn talos() -> Self {
        Self {
            n: TALOS_N.into(),
            e: TALOS_E.into(),
        }
    }

    fn numbers(&self) -> Option<(BigUint, BigUint)> {
        Some((
            BigUint::parse_bytes(self.n.as_bytes(), 10)?,
            BigUint::parse_bytes(self.e.as_bytes(), 10)?,
        ))
    }

    /// Checks the numbers parse; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.numbers()
            .map(|_| ())
            .ok_or_else(|| "[signatures] signing-key: `n` and `e` must be decimal numbers".into())
    }
}

/// What the config lets the bucket install beyond plain detections.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Keys of allow-type files (and of unsigned containers holding them)
    /// that may be installed.
    pub trusted: Vec<String>,
    /// Keys of unsigned containers (`.cld`, `.cud`) that may be installed.
    pub unsigned: Vec<String>,
    pub signing_key: SigningKey,
}

/// Why a file from the bucket is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "`{key}` would allow files or reconfigure clamd (a .{extension} file); refused unless [signatures] trusted names it"
    )]
    Allowing { key: String, extension: String },
    #[error("`{key}` is an unsigned database (.{extension}); refused unless [signatures] unsigned names it")]
    Unsigned { key: String, extension: String },
    #[error(
        "`{key}` holds `{member}`, which would allow files or reconfigure clamd; refused unless [signatures] trusted names it"
    )]
    AllowingInside { key: String, member: String },
    #[error("`{key}`: its digital signature does not verify ({why}); refused, the database installed before stays")]
    BadSignature { key: String, why: String },
    #[error("`{key}` is version {offered}, older than the installed version {installed}; refused (a rollback)")]
    Downgrade { key: String, offered: u64, installed: u64 },
}

impl TrustPolicy {
    /// Whether `key` may even be downloaded (by its name alone).
    pub fn admit_name(&self, key: &str) -> Result<(), Refused> {
        let extension = extension(key);
        if ALLOWING.contains(&extension.as_str()) && !self.trusted.iter().any(|t| t == key) {
            return Err(Refused::Allowing {
                key: key.to_owned(),
                extension,
            });
        }
        if matches!(extension.as_str(), "cld" | "cud") && !self.unsigned.iter().any(|u| u == key) {
            return Err(Refused::Unsigned {
                key: key.to_owned(),
                extension,
            });
        }
        Ok(())
    }

    /// Whether the downloaded `bytes` of `key` may be installed.
    pub fn admit_content(&self, key: &str, bytes: &[u8]) -> Result<(), Refused> {
        match extension(key).as_str() {
            "cvd" => self.verify_signed(key, bytes),
            "cld" | "cud" if !self.trusted.iter().any(|t| t == key) => {
                let members = container_members(bytes).map_err(|why| Refused::BadSignature {
                    key: key.to_owned(),
                    why,
                })?;
                match members
                    .into_iter()
                    .find(|member| ALLOWING.contains(&extension(member).as_str()))
                {
                    Some(member) => Err(Refused::AllowingInside {
                        key: key.to_owned(),
                        member,
                    }),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn verify_signed(&self, key: &str, bytes: &[u8]) -> Result<(), Refused> {
        verify_cvd(bytes, &self.signing_key).map_err(|why| Refused::BadSignature {
            key: key.to_owned(),
            why,
        })
    }
}

fn extension(name: &str) -> String {
    std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Verifies a `.cvd`: the header's MD5 is that of everything after the
/// 512-byte header, and the header's signature decodes to it under `key`.
pub fn verify_cvd(bytes: &[u8], key: &SigningKey) -> Result<(), String> {
    if bytes.len() < 512 {
        return Err("shorter than a database header".into());
    }
    let header = String::from_utf8_lossy(&bytes[..512]);
    let fields: Vec<&str> = header.trim_end_matches(['\0', ' ', '\n']).split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 7 {
        return Err("not a ClamAV database header".into());
    }
    let (claimed, signature) = (fields[5], fields[6]);
    let actual = hex::encode(md5::Md5::digest(&bytes[512..]));
    if !claimed.eq_ignore_ascii_case(&actual) {
        return Err(format!("its content's MD5 is {actual}, its header says {claimed}"));
    }
    let decoded = decode_signature(signature, key).ok_or("the signature is not in ClamAV's encoding")?;
    if !decoded.eq_ignore_ascii_case(&actual) {
        return Err("the signature was not made with the signing key for this content".into());
    }
    Ok(())
}

use md5::Digest as _;

/// ClamAV's signature encoding: base-64 digits (`a-z A-Z 0-9 + /`),
/// least significant first, an RSA value whose `e`-th power mod `n` is
/// the 16-byte MD5, big-endian. Returns that MD5 in hex.
fn decode_signature(signature: &str, key: &SigningKey) -> Option<String> {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    if signature.is_empty() || signature.len() > 350 {
        return None;
    }
    let (n, e) = key.numbers()?;
    let mut value = BigUint::ZERO;
    for (index, ch) in signature.bytes().enumerate() {
        let digit = DIGITS.iter().position(|d| *d == ch)?;
        value += BigUint::from(digit) << (6 * index);
    }
    let plain = value.modpow(&e, &n);
    let bytes = plain.to_bytes_be();
    if bytes.len() > 16 {
        return None;
    }
    let mut md5 = [0u8; 16];
    md5[16 - bytes.len()..].copy_from_slice(&bytes);
    Some(hex::encode(md5))
}

/// The file names inside a container database: a tar (gzip-compressed
/// in `.cvd`/`.cud`, plain in `.cld`) after the 512-byte header.
pub fn container_members(bytes: &[u8]) -> Result<Vec<String>, String> {
    let body = bytes.get(512..).ok_or("shorter than a database header")?;
    // Every gzip member, as zlib's gzread reads them (a second member
    // must not carry files nobody listed).
    let reader: Box<dyn Read + '_> = if body.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(body))
    } else {
        Box::new(body)
    };
    let mut archive = tar::Archive::new(reader);
    let mut names = Vec::new();
    {
        let entries = archive.entries().map_err(|err| format!("not a tar: {err}"))?;
        for entry in entries {
            let entry = entry.map_err(|err| format!("a broken tar: {err}"))?;
            let path = entry.path().map_err(|err| format!("a broken tar: {err}"))?;
            names.push(path.to_string_lossy().into_owned());
        }
    }
    // Nothing but zeros may follow the archive's end: a reader that goes
    // on past it must find no more files.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(|err| format!("after the archive: {err}"))?;
        if n == 0 {
            return Ok(names);
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err("data follows the archive's end".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `daily.cvd` header (version 25784, 16 Apr 2020) as published:
    /// its MD5 and Talos's signature of it.
    const DAILY_25784_MD5: &str = "92baacd59fd26e6bcf03077add78d209";
    const DAILY_25784_DSIG: &str = "4Jp9JtGJY6nUk8JHDQQpQeBwlfXqskvhXL+vesDNqAeWCmjbudU+Hy/Nj4/BH2vl70c/R5B/VYY+eqqCQo6o7VGLqLJr/E+19gejqMp/iRcuHrtnLw6V/x3UjO3/qYVSlcJvAjtMI7FK32wjB+Sp8kaS/ZbfaFQp6trRQhisjqf";

    #[test]
    fn talos_signatures_decode_to_the_md5_they_sign() {
        assert_eq!(
            decode_signature(DAILY_25784_DSIG, &SigningKey::talos()).as_deref(),
            Some(DAILY_25784_MD5)
        );
        let mut forged = DAILY_25784_DSIG.to_owned();
        forged.replace_range(0..1, "5");
        assert_ne!(
            decode_signature(&forged, &SigningKey::talos()).as_deref(),
            Some(DAILY_25784_MD5)
        );
        assert_eq!(decode_signature("not*base64", &SigningKey::talos()), None);
    }

    fn policy() -> TrustPolicy {
        TrustPolicy {
            trusted: vec!["clamav/local.ign2".into()],
            unsigned: vec!["clamav/daily.cud".into()],
            signing_key: SigningKey::talos(),
        }
    }

    #[test]
    fn allowing_files_and_unsigned_containers_need_the_config_by_key() {
        let policy = policy();
        assert!(policy.admit_name("clamav/extra.hdb").is_ok(), "detections are welcome");
        assert!(policy.admit_name("clamav/local.ign2").is_ok(), "named in trusted");
        for key in [
            "clamav/allow.sfp",
            "clamav/mute.ign2",
            "clamav/daily.cfg",
            "clamav/x.FP",
            "clamav/y.wdb",
        ] {
            assert!(matches!(policy.admit_name(key), Err(Refused::Allowing { .. })), "{key}");
        }
        assert!(policy.admit_name("clamav/daily.cud").is_ok());
        assert!(matches!(
            policy.admit_name("clamav/other.cld"),
            Err(Refused::Unsigned { .. })
        ));
        let err = policy.admit_name("clamav/allow.sfp").unwrap_err();
        assert!(err.to_string().contains("[signatures] trusted"), "{err}");
    }

    fn container(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut header = b"ClamAV-VDB:x:1:1:90:X:X:test:0".to_vec();
        header.resize(512, b' ');
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut entry = tar::Header::new_ustar();
            entry.set_size(data.len() as u64);
            entry.set_cksum();
            builder.append_data(&mut entry, name, *data).unwrap();
        }
        header.extend(builder.into_inner().unwrap());
        header
    }

    #[test]
    fn an_unsigned_container_may_not_smuggle_an_allowing_file() {
        let policy = policy();
        let plain = container(&[("daily.info", b"x"), ("daily.hdb", b"00:1:x")]);
        assert!(policy.admit_content("clamav/daily.cud", &plain).is_ok());
        let smuggling = container(&[("daily.hdb", b"00:1:x"), ("daily.sfp", b"ab:1:x")]);
        assert!(matches!(
            policy.admit_content("clamav/daily.cud", &smuggling),
            Err(Refused::AllowingInside { member, .. }) if member == "daily.sfp"
        ));
    }

    #[test]
    fn a_second_gzip_member_or_data_after_the_end_cannot_hide_a_file() {
        let policy = policy();
        let plain = container(&[("daily.hdb", b"00:1:x")]);
        let gzip = |bytes: &[u8]| {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        let hidden = container(&[("daily.sfp", b"ab:1:x")]);
        let mut two_members = plain[..512].to_vec();
        two_members.extend(gzip(&plain[512..]));
        two_members.extend(gzip(&hidden[512..]));
        let refused = policy.admit_content("clamav/daily.cud", &two_members).unwrap_err();
        assert!(
            matches!(refused, Refused::AllowingInside { .. } | Refused::BadSignature { .. }),
            "{refused}"
        );
        let mut trailing = plain.clone();
        trailing.extend_from_slice(b"more bytes after the end");
        assert!(policy.admit_content("clamav/daily.cud", &trailing).is_err());
    }

    #[test]
    fn a_cvd_whose_content_changed_is_refused() {
        // Content and header consistent but signed by nobody: refused.
        let body = b"some tar.gz bytes".to_vec();
        let md5 = hex::encode(md5::Md5::digest(&body));
        let mut cvd = format!("ClamAV-VDB:x:1:1:90:{md5}:{DAILY_25784_DSIG}:builder:0").into_bytes();
        cvd.resize(512, b' ');
        cvd.extend(&body);
        let err = verify_cvd(&cvd, &SigningKey::talos()).unwrap_err();
        assert!(err.contains("not made with the signing key"), "{err}");
        // One byte changed after the header: the MD5 no longer matches.
        let last = cvd.len() - 1;
        cvd[last] ^= 1;
        let err = verify_cvd(&cvd, &SigningKey::talos()).unwrap_err();
        assert!(err.contains("MD5"), "{err}");
        assert!(verify_cvd(b"short", &SigningKey::talos()).is_err());
    }
}
