//! Magic-byte detection and the categories names and Content-Types claim.

/// Broad file categories a policy talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Executable,
    Script,
    Archive,
    Office,
    Pdf,
    Image,
    Media,
    Text,
    Unknown,
}

impl Category {
    pub const NAMES: [&'static str; 9] = [
        "executable",
        "script",
        "archive",
        "office",
        "pdf",
        "image",
        "media",
        "text",
        "unknown",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executable => "executable",
            Self::Script => "script",
            Self::Archive => "archive",
            Self::Office => "office",
            Self::Pdf => "pdf",
            Self::Image => "image",
            Self::Media => "media",
            Self::Text => "text",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "executable" => Self::Executable,
            "script" => Self::Script,
            "archive" => Self::Archive,
            "office" => Self::Office,
            "pdf" => Self::Pdf,
            "image" => Self::Image,
            "media" => Self::Media,
            "text" => Self::Text,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// What the content really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub category: Category,
    /// The specific type, e.g. `application/vnd.microsoft.portable-executable`.
    pub name: String,
}

/// Detects the category of `head`, the first bytes of an object.
pub fn detect(head: &[u8]) -> Detected {
    let detected = |category, name: &str| Detected {
        category,
        name: name.to_owned(),
    };
    if head.starts_with(b"#!") {
        return detected(Category::Script, "script with #! interpreter line");
    }
    // Executable headers are checked here first: they are what a policy
    // most needs to catch, and a short sample must not hide them.
    if let Some(name) = executable_format(head) {
        return detected(Category::Executable, name);
    }
    if let Some(kind) = infer::get(head) {
        let mime = kind.mime_type();
        let category = match kind.matcher_type() {
            _ if mime == "application/pdf" => Category::Pdf,
            _ if mime == "application/wasm" => Category::Executable,
            infer::MatcherType::App => Category::Executable,
            infer::MatcherType::Archive => Category::Archive,
            infer::MatcherType::Doc => Category::Office,
            infer::MatcherType::Book => Category::Office,
            infer::MatcherType::Image => Category::Image,
            infer::MatcherType::Audio | infer::MatcherType::Video => Category::Media,
            infer::MatcherType::Text => Category::Text,
            infer::MatcherType::Font | infer::MatcherType::Custom => Category::Unknown,
        };
        return detected(category, mime);
    }
    if looks_like_text(head) {
        return detected(Category::Text, "text");
    }
    detected(Category::Unknown, "unknown binary")
}

/// PE, ELF and Mach-O headers.
fn executable_format(head: &[u8]) -> Option<&'static str> {
    const MACH_O: [[u8; 4]; 4] = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ];
    if head.starts_with(b"MZ") {
        Some("PE executable")
    } else if head.starts_with(b"\x7fELF") {
        Some("ELF executable")
    } else if MACH_O.iter().any(|magic| head.starts_with(magic)) {
        Some("Mach-O executable")
    } else {
        None
    }
}

/// Mostly printable UTF-8 with no NUL bytes.
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    // A multi-byte character may be cut at the end of the sample.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.valid_up_to() + 4 >= head.len(),
    };
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    valid && control * 100 <= head.len()
}

/// The category a key's extension claims, if it claims one.
pub fn claimed_by_key(key: &str) -> Option<Category> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "exe" | "dll" | "scr" | "com" | "msi" | "sys" | "elf" | "so" | "dylib" | "wasm" => Category::Executable,
        "sh" | "bash" | "ps1" | "bat" | "cmd" | "vbs" | "py" | "pl" | "rb" => Category::Script,
        "zip" | "rar" | "7z" | "gz" | "tgz" | "tar" | "bz2" | "xz" | "jar" | "cab" => Category::Archive,
        "doc" | "docx" | "xls" | "xlsx" | "ppt" | "pptx" | "odt" | "ods" | "odp" | "rtf" | "epub" => Category::Office,
        "pdf" => Category::Pdf,
        "png" | "jpg" | "jpeg" | "gif" | "bmp" | "webp" | "tif" | "tiff" | "ico" | "heic" => Category::Image,
        "mp3" | "mp4" | "wav" | "ogg" | "flac" | "mov" | "avi" | "mkv" | "webm" => Category::Media,
        "txt" | "csv" | "json" | "xml" | "md" | "html" | "htm" | "log" | "yaml" | "yml" | "toml" => Category::Text,
        _ => return None,
    })
}

/// The category a Content-Type claims; generic types claim nothing.
pub fn claimed_by_content_type(content_type: &str) -> Option<Category> {
    let mime = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let (top, sub) = mime.split_once('/')?;
    Some(match (top, sub) {
        ("image", _) => Category::Image,
        ("audio" | "video", _) => Category::Media,
        ("application", "pdf") => Category::Pdf,
        (
            "application",
            "zip" | "gzip" | "x-gzip" | "x-tar" | "x-7z-compressed" | "x-rar-compressed" | "x-bzip2" | "x-xz",
        ) => Category::Archive,
        ("application", s)
            if s == "msword"
                || s.starts_with("vnd.openxmlformats")
                || s.starts_with("vnd.ms-")
                || s.starts_with("vnd.oasis") =>
        {
            Category::Office
        }
        ("application", "x-msdownload" | "x-executable" | "x-dosexec" | "vnd.microsoft.portable-executable") => {
            Category::Executable
        }
        ("application" | "text", "x-sh" | "x-shellscript" | "x-python" | "javascript") => Category::Script,
        ("text", _) | ("application", "json" | "xml") => Category::Text,
        _ => return None,
    })
}

/// Whether content of category `detected` is what a name claiming `claimed`
/// should hold.
pub fn consistent(claimed: Category, detected: Category) -> bool {
    match (claimed, detected) {
        _ if claimed == detected => true,
        // No magic matched: nothing proves the name wrong.
        (_, Category::Unknown) => true,
        // Office documents are zip containers.
        (Category::Office, Category::Archive) => true,
        // Plain text is an acceptable body for a script name and vice versa.
        (Category::Script, Category::Text) | (Category::Text, Category::Script) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(
            detect(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff").category,
            Category::Executable
        );
        assert_eq!(
            detect(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00").category,
            Category::Executable
        );
        assert_eq!(detect(b"%PDF-1.7\n").category, Category::Pdf);
        assert_eq!(
            detect(b"PK\x03\x04\x14\x00\x00\x00\x08\x00").category,
            Category::Archive
        );
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").category, Category::Image);
        assert_eq!(detect(b"#!/bin/sh\necho hi\n").category, Category::Script);
        assert_eq!(detect(b"hello, world\n").category, Category::Text);
        assert_eq!(detect(&[0x00, 0x13, 0x37, 0xfe]).category, Category::Unknown);
    }

    #[test]
    fn names_and_content_types_claim_categories() {
        assert_eq!(claimed_by_key("a/b/report.PDF"), Some(Category::Pdf));
        assert_eq!(claimed_by_key("noext"), None);
        assert_eq!(
            claimed_by_content_type("application/pdf; charset=binary"),
            Some(Category::Pdf)
        );
        assert_eq!(claimed_by_content_type("application/octet-stream"), None);
    }

    #[test]
    fn a_pdf_name_on_an_executable_is_inconsistent() {
        assert!(!consistent(Category::Pdf, Category::Executable));
        assert!(consistent(Category::Office, Category::Archive));
        assert!(consistent(Category::Pdf, Category::Unknown));
    }
}
