//! The host's YARA engine: YARA-X, run by the host rather than inside a
//! plugin (scanning in the guest would copy the object into its memory,
//! and every callback across the boundary). A [`RuleSet`] is compiled
//! once per version from its files and shared by every stage that is
//! granted it; [`RuleSet::scan`] runs it over one object's bytes under a
//! deadline and returns what matched — rule, namespace, tags, metadata,
//! where each pattern matched — never the matched bytes.
//!
//! Each file is its own namespace: a `global` rule (which, when false,
//! silences every rule of its namespace) reaches only the rules of its own
//! file. `include` is refused: a rules file names no other file, on the
//! host or anywhere. A set that does not compile is refused whole, with
//! the file, line and column of the first error; nothing of it is used.

pub mod library;

pub use library::{Bytes, Library, Limits, Unavailable};

use sha2::{Digest, Sha256};
use std::time::Duration;

/// One rules file: its name (its namespace) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    pub name: String,
    pub source: String,
}

/// A rule set that does not compile: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct CompileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A rule that matched an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub rule: String,
    /// The rules file it is from.
    pub namespace: String,
    pub tags: Vec<String>,
    /// Its metadata; values as text (`true`, `42`, `a string`).
    pub metadata: Vec<(String, String)>,
    /// Where its patterns matched, the first [`MAX_MATCHES_SHOWN`] of
    /// each.
    pub patterns: Vec<PatternMatch>,
}

/// Where one pattern matched: offset and length, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternMatch {
    pub pattern: String,
    pub offset: u64,
    pub length: u64,
}

/// Why a scan gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("the rules ran past their deadline of {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// Matches kept per pattern: enough to point at them, not a flood a
/// hostile object could make of a one-byte pattern.
pub const MAX_MATCHES_SHOWN: usize = 8;

/// Matches YARA-X counts per pattern before it stops counting.
const MAX_MATCHES_COUNTED: usize = 1_000;

/// Rules compiled, ready to scan; immutable, shared.
pub struct RuleSet {
    name: String,
    version: String,
    files: Vec<String>,
    rules: yara_x::Rules,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Compiles `files` as the rule set `name`: each file in its own
    /// namespace, in name order. Refused whole at the first error.
    pub fn compile(name: &str, files: &[RuleFile]) -> Result<Self, CompileError> {
        let mut sorted: Vec<&RuleFile> = files.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut compiler = yara_x::Compiler::new();
        compiler.enable_includes(false);
        for file in &sorted {
            compiler.new_namespace(&namespace_of(&file.name));
            let source = yara_x::SourceCode::from(file.source.as_str()).with_origin(file.name.as_str());
            compiler
                .add_source(source)
                .map_err(|err| located(&file.name, &err.to_string()))?;
        }
        Ok(Self {
            name: name.to_owned(),
            version: version_of(&sorted),
            files: sorted.iter().map(|f| f.name.clone()).collect(),
            rules: compiler.build(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first 12 hex digits of the SHA-256 over every file's name and
    /// text: the same files give the same version on every agent.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Runs the rules over `bytes`, stopping at `deadline`.
    pub fn scan(&self, bytes: &[u8], deadline: Duration) -> Result<Vec<RuleMatch>, ScanError> {
        self.scan_data(Bytes::Memory(bytes), deadline)
    }

    /// Runs the rules over bytes in memory or in a file (mapped, not
    /// read into memory), stopping at `deadline`.
    pub fn scan_data(&self, data: Bytes<'_>, deadline: Duration) -> Result<Vec<RuleMatch>, ScanError> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner.set_timeout(deadline);
        scanner.max_matches_per_pattern(MAX_MATCHES_COUNTED);
        let results = match data {
            Bytes::Memory(bytes) => scanner.scan(bytes),
            Bytes::File(path) => scanner.scan_file(path),
        };
        let results = results.map_err(|err| match err {
            yara_x::errors::ScanError::Timeout => ScanError::Timeout(deadline),
            other => ScanError::Other(other.to_string()),
        })?;
        Ok(results.matching_rules().map(|rule| rule_match(&rule)).collect())
    }
}

fn rule_match(rule: &yara_x::Rule) -> RuleMatch {
    RuleMatch {
        rule: rule.identifier().to_owned(),
        namespace: rule.namespace().to_owned(),
        tags: rule.tags().map(|tag| tag.identifier().to_owned()).collect(),
        metadata: rule
            .metadata()
            .map(|(key, value)| (key.to_owned(), meta_text(&value)))
            .collect(),
        patterns: rule
            .patterns()
            .flat_map(|pattern| {
                let identifier = pattern.identifier().to_owned();
                pattern.matches().take(MAX_MATCHES_SHOWN).map(move |m| PatternMatch {
                    pattern: identifier.clone(),
                    offset: m.range().start as u64,
                    length: m.range().len() as u64,
                })
            })
            .collect(),
    }
}

fn meta_text(value: &yara_x::MetaValue) -> String {
    match value {
        yara_x::MetaValue::Integer(n) => n.to_string(),
        yara_x::MetaValue::Float(x) => x.to_string(),
        yara_x::MetaValue::Bool(b) => b.to_string(),
        yara_x::MetaValue::String(s) => (*s).to_owned(),
        yara_x::MetaValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A file's namespace: its name, with what is not a letter, a digit or
/// `_` made `_` (`webshells.yar` → `webshells_yar`).
pub fn namespace_of(file: &str) -> String {
    file.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn version_of(files: &[&RuleFile]) -> String {
    let mut hash = Sha256::new();
    for file in files {
        for part in [file.name.as_bytes(), b"\0", file.source.as_bytes(), b"\0"] {
            hash.update(part);
        }
    }
    hex::encode(hash.finalize())[..12].to_owned()
}

/// A compiler report as `file:line:column: title`: the report's first line
/// is its title, its ` --> origin:line:column` line the place.
fn located(file: &str, report: &str) -> CompileError {
    let title = report.lines().next().unwrap_or(report).trim();
    let title = title.split_once("]: ").map_or(title, |(_, rest)| rest).to_owned();
    let place = report
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("--> "))
        .and_then(|place| {
            let mut parts = place.rsplitn(3, ':');
            let column = parts.next()?.trim().parse().ok()?;
            let line = parts.next()?.trim().parse().ok()?;
            Some((line, column))
        });
    let (line, column) = place.unwrap_or((0, 0));
    CompileError {
        file: file.to_owned(),
        line,
        column,
        message: title,
    }
}

#[cfg(test)]
mod tests;
