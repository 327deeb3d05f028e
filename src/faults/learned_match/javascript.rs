//! gstack builds a learned pattern as a JavaScript `RegExp` with no flags: `.` and negated
//! classes take one whole character, `\s` is JavaScript's white space (U+00A0, U+FEFF…),
//! and `\w`, `\d`, `\b` are ASCII. Both engines match bytes with ASCII classes (Unicode
//! mode would give every `\w` its own tables, and a Unicode `.` is ~10 times the automaton
//! of a byte one: `a.{10}b` would pass the size limit), so the pattern is rewritten into
//! byte sequences that take whole UTF-8 characters: a lead byte, then its continuation
//! bytes.
//!
//! `\xHH` past `\x7F` is the character U+00HH, as in JavaScript: its two UTF-8 bytes
//! (a class takes them as one alternative, a negated class refuses them); a class range
//! with such an end is refused ([`MatchError::WideRange`]).
//!
//! Left as bytes: `\S` takes the white space past ASCII, and inside a negated class `\s`,
//! `\S`, `\W`, `\D` stay ASCII; `.` takes U+2028 and U+2029 (sparing their three bytes
//! would make `.` three times the automaton, and `a.{30}b` pass the size limit).

use super::MatchError;
use super::lookbehind::split_lookbehinds;

/// JavaScript's white space and line terminators: ASCII, then the rest as UTF-8.
const SPACE_ASCII: &str = r"\t\n\x0B\x0C\r\x20";
const SPACE_WIDE: &str =
    r"\xC2\xA0|\xE1\x9A\x80|\xE2\x80[\x80-\x8A\xA8\xA9\xAF]|\xE2\x81\x9F|\xE3\x80\x80|\xEF\xBB\xBF";
/// A continuation byte of UTF-8.
const CONTINUATION: &str = r"\x80-\xBF";

/// `pattern` with `.`, `\s`, `\S`, `\W`, `\D`, `\xHH` and negated classes taking whole
/// characters.
pub(super) fn rewrite(pattern: &str) -> Result<String, MatchError> {
    let pattern = split_lookbehinds(pattern);
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('x') => match wide_hex(&mut chars) {
                    Some(wide) => out.push_str(&format!("(?:{})", utf8_bytes(wide))),
                    None => out.push_str(r"\x"),
                },
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
                // Characters past ASCII given as `\xHH`: alternatives of their own.
                let mut wide = Vec::new();
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
                        '\\' if chars.next_if_eq(&'x').is_some() => {
                            let Some(character) = wide_hex(&mut chars) else {
                                items.push_str(r"\x");
                                continue;
                            };
                            // A dash after an item, or before one, makes a range.
                            let after_item = items.len() > 1 && items.ends_with('-');
                            let mut ahead = chars.clone();
                            if (after_item && !ends_escaped(&items))
                                || (ahead.next() == Some('-') && ahead.next() != Some(']'))
                            {
                                return Err(MatchError::WideRange);
                            }
                            wide.push(character);
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
                    out.push_str(&whole_character_but(&items, &wide));
                } else if space || !wide.is_empty() {
                    let mut alternatives: Vec<String> = wide.into_iter().map(utf8_bytes).collect();
                    if space {
                        alternatives.push(SPACE_WIDE.to_string());
                    }
                    if !items.is_empty() {
                        alternatives.push(format!("[{items}]"));
                    }
                    out.push_str(&format!("(?:{})", alternatives.join("|")));
                } else {
                    out.push_str(&format!("[{items}]"));
                }
            }
            '.' => out.push_str(&whole_character_but(r"\n\r", &[])),
            // Its bytes, not the character: fancy-regex's lookbehind steps back a byte for
            // it (`(?<=é)x` missed `éx`).
            _ if !c.is_ascii() => out.push_str(&format!("(?:{})", utf8_bytes(c))),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// After `\x`: the character U+00HH of the two hex digits that follow, taken from `chars`,
/// when it is past ASCII; an ASCII one is left to the engine, which reads it as JavaScript.
fn wide_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let mut ahead = chars.clone();
    let digits: String = [ahead.next()?, ahead.next()?].into_iter().collect();
    let code = u8::from_str_radix(&digits, 16)
        .ok()
        .filter(|code| *code >= 0x80)?;
    chars.nth(1);
    Some(char::from(code))
}

/// `character` as the escapes of its UTF-8 bytes.
fn utf8_bytes(character: char) -> String {
    let mut buffer = [0; 4];
    character
        .encode_utf8(&mut buffer)
        .bytes()
        .map(|byte| format!(r"\x{byte:02X}"))
        .collect()
}

/// What `\escaped` outside a class becomes.
fn escape(escaped: char) -> String {
    match escaped {
        's' => format!("(?:[{SPACE_ASCII}]|{SPACE_WIDE})"),
        'S' => whole_character_but(SPACE_ASCII, &[]),
        'W' => whole_character_but("0-9A-Za-z_", &[]),
        'D' => whole_character_but("0-9", &[]),
        _ => format!(r"\{escaped}"),
    }
}

/// One character that is none of the ASCII class `items` nor of `wide` (U+0080 to U+00FF):
/// any byte but them, a continuation and the lead bytes of `wide`, then the continuations
/// of its character; or one of those lead bytes and a continuation that is not one of
/// `wide`'s. The items keep a class of their own, so a dash that ended them stays a
/// literal rather than opening a range.
fn whole_character_but(items: &str, wide: &[char]) -> String {
    let mut leads = String::new();
    let mut two_byte = String::new();
    for lead in [0xC2_u8, 0xC3] {
        let refused: String = wide
            .iter()
            .map(|c| c.encode_utf8(&mut [0; 2]).as_bytes().to_vec())
            .filter(|bytes| bytes[0] == lead)
            .map(|bytes| format!(r"\x{:02X}", bytes[1]))
            .collect();
        if !refused.is_empty() {
            leads.push_str(&format!(r"\x{lead:02X}"));
            two_byte.push_str(&format!(r"|\x{lead:02X}[[{CONTINUATION}]&&[^{refused}]]"));
        }
    }
    let first = if items.is_empty() {
        format!("[^{CONTINUATION}{leads}]")
    } else {
        format!("[[^{items}]&&[^{CONTINUATION}{leads}]]")
    };
    format!("(?:{first}[{CONTINUATION}]*{two_byte})")
}

/// Whether the last character of `items` is escaped (an odd run of backslashes before it).
fn ends_escaped(items: &str) -> bool {
    let before = &items[..items.len() - 1];
    (before.len() - before.trim_end_matches('\\').len()) % 2 == 1
}
