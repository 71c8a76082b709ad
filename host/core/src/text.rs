//! Text from outside — object keys, header values, member names, what a
//! plugin or a service says — on its way into logs, reports, tags and
//! notifications. One place decides how it is bounded and cleaned:
//! - [`cap`]: at most `max` bytes (cut on a character boundary, marked with
//!   `…`), control characters (newlines, ANSI escapes) replaced, so nobody
//!   can forge log lines or flood them;
//! - [`printable`]: nothing dropped, control characters escaped (`\n`),
//!   for names an operator must be able to read back exactly;
//! - [`cap_start`]: the end kept, for columns where the end says most (a
//!   key's file name).
//!
//! Tag values have their own character set: `tags::sanitize`.

/// `text` cleaned and cut to at most `max` bytes.
pub fn cap(text: &str, max: usize) -> String {
    // A character is at least one byte: more than `max` of them is too long
    // whatever they are, so a huge string is never walked in full.
    let mut chars = text.chars();
    let cleaned: String = chars
        .by_ref()
        .take(max)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let complete = chars.next().is_none();
    if complete && cleaned.len() <= max {
        return cleaned;
    }
    let mut end = max.saturating_sub('…'.len_utf8()).min(cleaned.len());
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &cleaned[..end])
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), for logs and
/// messages: keys and plugin text come from outside, and must not forge
/// log lines or drive a terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// At most `max` characters of `text`, keeping its end: `…` and the last
/// `max - 1` characters when it is longer.
pub fn cap_start(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - max.saturating_sub(1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_text_is_kept() {
        assert_eq!(cap("hello", 10), "hello");
        assert_eq!(cap("", 10), "");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        let cut = cap(&"é".repeat(100), 11);
        assert!(cut.len() <= 11, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(cap(&"a".repeat(1000), 64).len(), 64);
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_colours() {
        let cleaned = cap("ok\nlevel=error forged\x1b[31mred", 100);
        assert!(!cleaned.contains('\n') && !cleaned.contains('\x1b'), "{cleaned:?}");
        assert!(cleaned.contains("forged"));
    }

    #[test]
    fn printable_escapes_control_characters_and_keeps_the_rest() {
        assert_eq!(printable("a/b é.txt"), "a/b é.txt");
        assert_eq!(printable("a\nb\x1b"), "a\\nb\\u{1b}");
    }

    #[test]
    fn cap_start_keeps_the_end() {
        assert_eq!(cap_start("short", 10), "short");
        assert_eq!(cap_start("abcdefghij", 4), "…hij");
    }
}
