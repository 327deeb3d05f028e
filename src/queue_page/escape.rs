//! The one way a string reaches the page: every character HTML gives a meaning to in text
//! or in a quoted attribute is written as a character reference, and a string is cut to a
//! bound first (a producer writes record fields and reasons; none of it is markup).

/// The most characters of one producer-written string the page shows.
pub const MAX_SHOWN_CHARS: usize = 400;

/// `text` as HTML text or a double- or single-quoted attribute value, at most
/// [`MAX_SHOWN_CHARS`] characters of it (then `…`).
pub fn escape(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => escape_whole(&text[..cut]) + "…",
        None => escape_whole(text),
    }
}

/// [`escape`] without the cut: for text whose size berth bounded itself (a log's tail).
pub fn escape_whole(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than whitespace are not text; NUL is not even allowed.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one percent-encoded path segment (a link to a PR page); unreserved
/// characters stay.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_text() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            escape(r#"a" onload='x' & b"#),
            "a&quot; onload=&#39;x&#39; &amp; b"
        );
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(
            escape("tab\tnl\nnul\0bell\u{7}"),
            "tab\tnl\nnul\u{FFFD}bell\u{FFFD}"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn a_long_string_is_cut() {
        let long = "<".repeat(MAX_SHOWN_CHARS + 10);
        let shown = escape(&long);
        assert_eq!(shown.matches("&lt;").count(), MAX_SHOWN_CHARS);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn a_path_segment_keeps_only_unreserved_characters() {
        assert_eq!(
            path_segment("github.com/acme/w x?#<"),
            "github.com%2Facme%2Fw%20x%3F%23%3C"
        );
        assert_eq!(path_segment("ünï"), "%C3%BCn%C3%AF");
    }
}
