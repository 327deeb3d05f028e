//! gstack builds a learned pattern as a JavaScript `RegExp` with no flags: `.` and negated
//! classes take one whole character, `\s` is JavaScript's white space (U+00A0, U+FEFF…),
//! and `\w`, `\d`, `\b` are ASCII. Both engines match bytes with ASCII classes (Unicode
//! mode would give every `\w` its own tables, and a Unicode `.` is ~10 times the automaton
//! of a byte one: `a.{10}b` would pass the size limit), so the pattern is rewritten into
//! byte sequences that take whole UTF-8 characters: a lead byte, then its continuation
//! bytes.
//!
//! Left as bytes: `\S` takes the white space past ASCII, and inside a negated class `\s`,
//! `\S`, `\W`, `\D` stay ASCII; `.` takes U+2028 and U+2029 (sparing their three bytes
//! would make `.` three times the automaton, and `a.{30}b` pass the size limit).

/// JavaScript's white space and line terminators: ASCII, then the rest as UTF-8.
const SPACE_ASCII: &str = r"\t\n\x0B\x0C\r\x20";
const SPACE_WIDE: &str =
    r"\xC2\xA0|\xE1\x9A\x80|\xE2\x80[\x80-\x8A\xA8\xA9\xAF]|\xE2\x81\x9F|\xE3\x80\x80|\xEF\xBB\xBF";
/// A continuation byte of UTF-8.
const CONTINUATION: &str = r"\x80-\xBF";

/// `pattern` with `.`, `\s`, `\S`, `\W`, `\D` and negated classes taking whole characters.
pub(super) fn rewrite(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push_str(&escape(escaped)),
                None => out.push(c),
            },
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                // A `]` first in a class is one of its characters, not its end.
                let mut items = String::new();
                if let Some(bracket) = chars.next_if_eq(&']') {
                    items.push(bracket);
                }
                let mut space = false;
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' if chars.next_if_eq(&'s').is_some() => {
                            space = true;
                            // A dash next to a class escape is a literal in JavaScript;
                            // next to the escapes `\s` becomes it would open a range.
                            if items.ends_with('-') && !ends_escaped(&items) {
                                items.pop();
                                items.push_str(r"\-");
                            }
                            items.push_str(SPACE_ASCII);
                            if chars.next_if_eq(&'-').is_some() {
                                items.push_str(r"\-");
                            }
                        }
                        '\\' => {
                            items.push(c);
                            items.extend(chars.next());
                        }
                        _ => items.push(c),
                    }
                }
                if !closed {
                    // The engine reports the unclosed class.
                    out.push_str(&format!("[{}{items}", if negated { "^" } else { "" }));
                } else if negated {
                    out.push_str(&whole_character_but(&items));
                } else if space {
                    out.push_str(&format!("(?:[{items}]|{SPACE_WIDE})"));
                } else {
                    out.push_str(&format!("[{items}]"));
                }
            }
            '.' => out.push_str(&whole_character_but(r"\n\r")),
            _ => out.push(c),
        }
    }
    out
}

/// What `\escaped` outside a class becomes.
fn escape(escaped: char) -> String {
    match escaped {
        's' => format!("(?:[{SPACE_ASCII}]|{SPACE_WIDE})"),
        'S' => whole_character_but(SPACE_ASCII),
        'W' => whole_character_but("0-9A-Za-z_"),
        'D' => whole_character_but("0-9"),
        _ => format!(r"\{escaped}"),
    }
}

/// One character that is none of the ASCII class `items`: any byte but them and a
/// continuation, then the continuations of its character. The items keep a class of their
/// own, so a dash that ended them stays a literal rather than opening a range.
fn whole_character_but(items: &str) -> String {
    format!("(?:[[^{items}]&&[^{CONTINUATION}]][{CONTINUATION}]*)")
}

/// Whether the last character of `items` is escaped (an odd run of backslashes before it).
fn ends_escaped(items: &str) -> bool {
    let before = &items[..items.len() - 1];
    (before.len() - before.trim_end_matches('\\').len()) % 2 == 1
}
