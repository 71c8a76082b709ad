//! Text a plugin hands the host — errors, log lines, report lines, names —
//! is the plugin's to choose, so it is capped and cleaned before it reaches
//! logs, reports or notifications: at most `max` bytes (cut on a character
//! boundary, marked with `…`), and control characters (newlines, ANSI
//! escapes) replaced, so a plugin cannot forge log lines or flood them.

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

#[cfg(test)]
mod tests {
    use super::cap;

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
}
