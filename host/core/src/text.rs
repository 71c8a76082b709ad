//! Text from outside — object keys, header values, member names, what a
//! plugin or a service says — on its way into logs, reports, tags and
//! notifications. One place decides how it is bounded and cleaned:
//! - [`cap`]: at most `max` bytes (cut on a character boundary, marked with
//!   `…`), control characters (newlines, ANSI escapes) replaced, so nobody
//!   can forge log lines or flood them;
//! - [`printable`]: nothing dropped, control and invisible characters
//!   escaped (`\n`, `\u{202e}`) and `\` doubled, for names an operator
//!   must be able to read back exactly;
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
        .map(|c| if is_hidden(c) { '\u{fffd}' } else { c })
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

/// `text` with control and invisible characters escaped (`\n`, `\u{1b}`,
/// `\u{202e}`) and `\` doubled, for logs and messages: keys and plugin
/// text come from outside, and must not forge log lines, drive a terminal,
/// reorder what is shown (bidirectional overrides) or pass for another
/// name. Doubling `\` keeps the escaping one-to-one: a name holding a
/// backslash and an `n` never reads like one holding a newline.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_hidden(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            c if is_hidden(c) => escaped.extend(c.escape_default()),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// Characters that change how text around them is shown, or show as
/// nothing: controls, line and paragraph separators, bidirectional marks,
/// embeddings, overrides and isolates (the "Trojan Source" set), and the
/// format characters and fillers that render blank — zero-width
/// characters, the soft hyphen, variation selectors, tag characters, the
/// Hangul fillers, the BOM.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
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
    fn printable_is_one_to_one_for_backslashes() {
        // A real backslash-n and a newline must not read the same.
        assert_eq!(printable("a\\nb"), "a\\\\nb");
        assert_ne!(printable("a\\nb"), printable("a\nb"));
        assert_eq!(printable("dir\\x.exe"), "dir\\\\x.exe");
    }

    #[test]
    fn bidirectional_overrides_and_zero_width_characters_are_shown() {
        // `invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf` unescaped.
        assert_eq!(printable("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(printable("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(printable("x\u{2066}y\u{2069}"), "x\\u{2066}y\\u{2069}");
        assert!(!cap("invoice\u{202e}fdp.exe", 64).contains('\u{202e}'));
        // Line separators, soft hyphens, tag characters, Hangul fillers.
        for hidden in ['\u{2028}', '\u{ad}', '\u{e0041}', '\u{3164}', '\u{fe0f}', '\u{206f}'] {
            let shown = printable(&format!("a{hidden}b")).into_owned();
            assert!(
                !shown.contains(hidden) && shown.starts_with("a\\u{"),
                "{hidden:?}: {shown}"
            );
        }
    }

    #[test]
    fn cap_start_keeps_the_end() {
        assert_eq!(cap_start("short", 10), "short");
        assert_eq!(cap_start("abcdefghij", 4), "…hij");
    }
}
