//! The engine's sections of the config file: `[engine]` (the sandbox every
//! plugin instance runs in) and `[clamav]` (how to reach clamd). Each
//! default is written once, in the `Default` impl.

use bucketscan_core::formats::{Format, format_names};
use serde::Deserialize;
use std::path::PathBuf;

/// `[engine]` (formerly `[host]`): limits of every plugin instance, and how the engine is built.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EngineConfig {
    /// Linear memory one plugin instance may grow to, in MiB.
    pub memory_limit_mib: u64,
    /// Core and component instances one plugin may create.
    pub instance_limit: u32,
    /// Tables one plugin may create, and elements per table.
    pub table_limit: u32,
    pub table_elements_limit: u32,
    /// Time one stage may spend running its own Wasm code (host calls such
    /// as a ClamAV scan do not count), in milliseconds.
    pub wasm_time_limit_ms: u64,
    /// Wall-clock time one stage may take in all, host calls included.
    pub stage_timeout_ms: u64,
    /// Use wasmtime's pooling allocator (falls back to on-demand allocation
    /// when the machine cannot reserve the address space).
    pub pooling: bool,
    /// Where compiled plugins are cached, keyed by content digest; used only
    /// when nobody else can write it. Default: `$XDG_CACHE_HOME/bucketscan`
    /// or `~/.cache/bucketscan`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            memory_limit_mib: 128,
            instance_limit: 64,
            table_limit: 32,
            table_elements_limit: 200_000,
            wasm_time_limit_ms: 5_000,
            stage_timeout_ms: 600_000,
            pooling: true,
            cache_dir: None,
        }
    }
}

/// `[clamav]`: how to reach clamd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ClamavConfig {
    /// `HOST:PORT` for TCP, or a path to clamd's local socket.
    pub address: String,
    /// Seconds to wait for one scan.
    pub timeout_secs: u64,
    /// clamd's `StreamMaxLength`: larger objects are a size-limit error
    /// without streaming them. The default, 2000 MiB, is what
    /// `deploy/clamd.conf` sets.
    pub stream_max_bytes: u64,
    /// The container and compression formats clamd opens (names as in
    /// `rar`, `7z`, `zip-bzip2`). The agent checks each it can build a
    /// sample of against clamd at start and after every signature reload,
    /// and goes by what clamd did; the others are taken as declared. A
    /// clean answer about bytes holding a format clamd does not open is
    /// `unscannable (unsupported-container)`.
    #[serde(deserialize_with = "format_names")]
    pub opens: Vec<Format>,
}

/// What ClamAV 1.4 documents it opens. RAR needs the non-free unrar
/// library, which Debian's package lacks: the probe removes it there.
pub const CLAMD_OPENS: &[Format] = &[
    Format::Zip,
    Format::Gzip,
    Format::Bzip2,
    Format::Xz,
    Format::Tar,
    Format::SevenZip,
    Format::Rar,
    Format::Cab,
    Format::Arj,
    Format::Cpio,
    Format::ZipMethod(6),
    Format::ZipMethod(8),
    Format::ZipMethod(9),
    Format::ZipMethod(12),
    // ClamAV's 7z support is the LZMA SDK's: copy, LZMA, LZMA2 (never
    // recorded), PPMd and the branch filters; not BZip2 or Deflate.
    Format::SevenZipCoder(0x0003_0401),
    Format::SevenZipCoder(0x03),
    Format::SevenZipCoder(0x0303_0103),
    Format::SevenZipCoder(0x0303_011b),
    Format::SevenZipCoder(0x0303_0205),
    Format::SevenZipCoder(0x0303_0401),
    Format::SevenZipCoder(0x0303_0501),
    Format::SevenZipCoder(0x0303_0701),
    Format::SevenZipCoder(0x0303_0805),
    Format::SevenZipCoder(0x0a),
];

impl Default for ClamavConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:3310".into(),
            timeout_secs: 300,
            stream_max_bytes: 2000 * 1024 * 1024,
            opens: CLAMD_OPENS.to_vec(),
        }
    }
}
