//! gstack builds a learned pattern as a JavaScript `RegExp` with no flags: `.` and negated
//! classes take one whole character, `\s` is JavaScript's white space (U+00A0, U+FEFF…),
//! and `\w`, `\d`, `\b` are ASCII. Both engines match bytes with ASCII classes (Unicode
//! mode would give every `\w` its own tables, and a Unicode `.` is ~10 times the automaton
//! of a byte one: `a.{10}b` would pass the size limit), so the pattern is rewritten into
//! byte sequences that take whole UTF-8 characters: a lead byte, then its continuation
//! bytes.
//!
//! `\xHH` past `\x7F` is the character U+00HH and `\uHHHH` U+HHHH, as in JavaScript, and
//! a character past ASCII written as itself is that character: its UTF-8 bytes (a class
//! takes them as one alternative, a negated class refuses them); a class range with such
//! an end is refused ([`MatchError::WideRange`]), and so is a negated class holding a
//! character past U+07FF ([`MatchError::WideNegatedClass`]).
//!
//! In a class that is not negated, `\W` and `\D` take any whole character past ASCII and
//! `\S` any but white space. Left as bytes: `\S` outside a class takes the white space past
//! ASCII, and inside a negated class `\s`,
//! `\S`, `\W`, `\D` stay ASCII; `.` takes U+2028 and U+2029 (sparing their three bytes
//! would make `.` three times the automaton, and `a.{30}b` pass the size limit).

use super::lookbehind::{split_lookbehinds, token_end};
use super::{MAX_GROUP_NESTING, MAX_REWRITTEN_BYTES, MatchError};

/// A continuation byte of UTF-8.
const CONTINUATION: &str = r"\x80-\xBF";
/// A continuation byte next: a position inside a character, where JavaScript never looks.
/// The pieces `.`, `\S`, `\W`, `\D` and negated classes become (a lead byte, then an
/// open-ended run of continuations) may stop there, and a search may start there; every
/// consuming atom of a rewritten pattern refuses a continuation byte, but a zero-width
/// `(?!…)`, `(?<!…)` or `\B` would go on: each is refused there (`[^.](?!.)` fired over
/// `voilà.`, `\B` inside `€`).
const INSIDE_A_CHARACTER: &str = r"[\x80-\xBF]";
/// Refuses a position inside a character: a lookaround the pattern as written does not
/// have (not counted against [`super::MAX_BACKTRACKING_CONSTRUCTS`]).
pub(super) const NOT_INSIDE_A_CHARACTER: &str = r"(?![\x80-\xBF])";

/// A class no byte is in: JavaScript's `[]`.
const NO_CHARACTER: &str = r"[^\x00-\xFF]";

/// How a backreference's rewrite opens: a group asking whether the group it names took
/// part in the match.
pub(super) const BACKREFERENCE_OPENER: &str = "(?:(?(";

/// JavaScript's white space and line terminators: ASCII, then the rest as UTF-8.
const SPACE_ASCII: &str = r"\t\n\x0B\x0C\r\x20";
/// Each byte is a class of one (see [`utf8_bytes`]).
const SPACE_WIDE: &str = r"[\xC2][\xA0]|[\xE1][\x9A][\x80]|[\xE2][\x80][\x80-\x8A\xA8\xA9\xAF]|[\xE2][\x81][\x9F]|[\xE3][\x80][\x80]|[\xEF][\xBB][\xBF]";
/// Any character past ASCII but JavaScript's white space, as UTF-8 (a class of one byte
/// for each byte, as in `utf8_bytes`): `\S` in a class is one of these or an ASCII one.
const NOT_SPACE_WIDE: &str = concat!(
    r"[\xC2][[\x80-\xBF]&&[^\xA0]]|[\xC3-\xDF][\x80-\xBF]",
    r"|[\xE0\xE4-\xEE][\x80-\xBF][\x80-\xBF]",
    r"|[\xE1][[\x80-\xBF]&&[^\x9A]][\x80-\xBF]|[\xE1][\x9A][\x81-\xBF]",
    r"|[\xE2][\x82-\xBF][\x80-\xBF]|[\xE2][\x80][[\x8B-\xBF]&&[^\xA8\xA9\xAF]]",
    r"|[\xE2][\x81][[\x80-\xBF]&&[^\x9F]]",
    r"|[\xE3][\x81-\xBF][\x80-\xBF]|[\xE3][\x80][\x81-\xBF]",
    r"|[\xEF][[\x80-\xBF]&&[^\xBB]][\x80-\xBF]|[\xEF][\xBB][\x80-\xBE]",
    r"|[\xF0-\xF7][\x80-\xBF][\x80-\xBF][\x80-\xBF]",
);

/// `pattern` with `.`, `\s`, `\S`, `\W`, `\D`, `\xHH` and negated classes taking whole
/// characters; refused once that passes [`MAX_REWRITTEN_BYTES`] (checked after each
/// character or class, so no more than one class's expansion is built past it).
pub(super) fn rewrite(pattern: &str) -> Result<String, MatchError> {
    // What the split below walks is bounded first: the raw text by the cap its rewrite
    // keeps (a whole class or lookbehind is built before the cap is checked again) and its
    // groups' nesting (the split recurses once per nested lookbehind on the compile
    // thread's stack), counted over the split's own tokens; a group left open or a close
    // with none open is refused with it, as JavaScript refuses them.
    if pattern.len() > MAX_REWRITTEN_BYTES {
        return Err(MatchError::RewrittenTooLong(pattern.len()));
    }
    groups_nest_within(pattern)?;
    // `\k<name>` is a backreference only in a pattern with named groups; in one without,
    // JavaScript reads `\k` as the letter.
    let named_groups = pattern.match_indices("(?<").any(|(at, _)| {
        pattern[at + 3..].starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '_' | '$'))
    });
    let pattern = split_lookbehinds(pattern);
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        within_cap(&out)?;
        match c {
            '\\' => match chars.next() {
                Some(kind @ ('x' | 'u')) => match wide_escape(&mut chars, kind) {
                    Some(wide) => out.push_str(&format!("(?:{})", utf8_bytes(wide))),
                    // Without its hex digits it is the letter in JavaScript (`\x{2}` is
                    // two `x`), where the regex crate reads `\x{41}` as a code point.
                    None if hex_digits_ahead(&chars, kind).is_none() => out.push(kind),
                    None => out.push_str(&format!(r"\{kind}")),
                },
                // A character past ASCII escaped is that character, as written bare.
                Some(wide) if !wide.is_ascii() => {
                    out.push_str(&format!("(?:{})", utf8_bytes(wide)));
                }
                Some(first @ '1'..='9') => {
                    // A backreference to a group that took part in no match is empty in
                    // JavaScript; fancy-regex fails it unless asked whether it did.
                    let mut group = String::from(first);
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        group.push(digit);
                    }
                    // A group of its own, so a quantifier after it repeats it whole.
                    out.push_str(&format!(r"{BACKREFERENCE_OPENER}{group})\{group}|))"));
                }
                // The same for one by name (`\k<q>`), asked by name.
                // Anything else after `\k`, or `\k` in a pattern without named groups,
                // is the letter, as JavaScript reads it (a pattern with them refuses the
                // rest); the name is read as far as its characters go, so no `\k<`
                // rescans the rest of the pattern.
                Some('k') => {
                    let name: String = chars
                        .clone()
                        .skip(1)
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$'))
                        .collect();
                    let mut ahead = chars.clone();
                    if named_groups
                        && name.starts_with(|c: char| !c.is_ascii_digit())
                        && ahead.next() == Some('<')
                        && ahead.nth(name.len()) == Some('>')
                    {
                        chars.nth(name.len() + 1);
                        out.push_str(&format!(r"{BACKREFERENCE_OPENER}<{name}>)\k<{name}>|))"));
                    } else {
                        out.push('k');
                    }
                }
                Some(escaped) if is_identity_escape(escaped, false) => out.push(escaped),
                Some(escaped) => out.push_str(&escape(escaped)),
                None => out.push(c),
            },
            // A brace that opens no repetition is a character in JavaScript; the regex
            // crate reads `{,3}` and `{1, 3}` as repetitions.
            '{' if !opens_repetition(&chars) => out.push_str(r"\{"),
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                // A `]` first ends the class, as in JavaScript: `[]` takes nothing, `[^]`
                // any character (the regex crate would read `]` as one of its items).
                if chars.next_if_eq(&']').is_some() {
                    out.push_str(&if negated {
                        whole_character_but("", &[])
                    } else {
                        NO_CHARACTER.to_owned()
                    });
                    continue;
                }
                let mut items = String::new();
                let mut space = false;
                // `\W` or `\D` in a class that is not negated: any character past ASCII,
                // whole, is one of its alternatives; `\S`: any such but white space.
                let mut any_wide = false;
                let mut not_space = false;
                // Inside a negated class they stay ASCII (documented), as they were.
                let taken_whole =
                    |e: &char| *e == 's' || (!negated && matches!(e, 'S' | 'W' | 'D'));
                // Characters past ASCII given as `\xHH`: alternatives of their own.
                let mut wide = Vec::new();
                let mut closed = false;
                // Whether the last item ended a range (JavaScript reads a dash after one as
                // a character, which may open a range: `[0-9--/]` is digits and `-` to `/`).
                let mut ended_range = false;
                // Whether the last item was a class escape and a dash: JavaScript takes
                // the next item with them as a union, and starts afresh after it.
                let mut union_open = false;
                while let Some(c) = chars.next() {
                    let after_range = std::mem::take(&mut ended_range);
                    let ends_union = std::mem::take(&mut union_open);
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' if chars.peek().is_some_and(taken_whole) => {
                            let second = ends_union || ends_range(&items);
                            // A dash next to a class escape is a literal in JavaScript;
                            // next to what the escape becomes it would open a range.
                            if items.ends_with('-') && !ends_escaped(&items) {
                                items.pop();
                                items.push_str(r"\-");
                            }
                            match chars.next() {
                                Some('s') => {
                                    space = true;
                                    items.push_str(SPACE_ASCII);
                                }
                                // Its ASCII bytes only: a byte past ASCII would take a
                                // piece of a character (`x[\W][\W]y` matched `xéy`).
                                escape => {
                                    any_wide |= escape != Some('S');
                                    not_space |= escape == Some('S');
                                    items.push_str(&format!(
                                        r"[\{}&&[\x00-\x7F]]",
                                        escape.unwrap_or('W')
                                    ));
                                }
                            }
                            (ended_range, union_open) =
                                after_class_escape(&mut items, &mut chars, second);
                        }
                        '\\' if chars.peek().is_some_and(|e| matches!(e, 'x' | 'u')) => {
                            let range_end = ends_range(&items);
                            let kind = chars.next().unwrap_or('x');
                            match wide_escape(&mut chars, kind) {
                                Some(character) => wide.push(wide_item(&items, &chars, character)?),
                                None => {
                                    // One item, its digits with it: a dash after it is read
                                    // as after any other character. Without them, the letter.
                                    let digits = ascii_hex_digits(&mut chars, kind);
                                    if !digits.is_empty() {
                                        items.push('\\');
                                    }
                                    items.push(kind);
                                    items.push_str(&digits);
                                    ended_range = range_end;
                                }
                            }
                        }
                        _ if !c.is_ascii() => wide.push(wide_item(&items, &chars, c)?),
                        '\\' if chars.peek().is_some_and(|e| !e.is_ascii()) => {
                            let escaped = chars.next().unwrap_or(c);
                            wide.push(wide_item(&items, &chars, escaped)?);
                        }
                        '\\' => {
                            let range_end = ends_range(&items);
                            let escaped = chars.next();
                            if escaped.is_some_and(|e| "dDwWsS".contains(e)) {
                                if range_end {
                                    // `[a-\d]` is `a`, `-` and digits in JavaScript.
                                    items.pop();
                                    items.push_str(r"\-");
                                }
                                items.push(c);
                                items.extend(escaped);
                                (ended_range, union_open) = after_class_escape(
                                    &mut items,
                                    &mut chars,
                                    ends_union || range_end,
                                );
                            } else {
                                if !escaped.is_some_and(|e| is_identity_escape(e, true)) {
                                    items.push(c);
                                }
                                items.extend(escaped);
                                ended_range = range_end;
                            }
                        }
                        _ => ended_range = push_class_literal(&mut items, c, after_range),
                    }
                    if ends_union {
                        // The union's last item: what follows starts afresh, as after a
                        // range (a dash is a character, and may open a range).
                        ended_range = true;
                    }
                }
                if !closed {
                    // The engine reports the unclosed class.
                    out.push_str(&format!("[{}{items}", if negated { "^" } else { "" }));
                } else if negated {
                    if wide.iter().any(|c| c.len_utf8() > 2) {
                        return Err(MatchError::WideNegatedClass);
                    }
                    out.push_str(&whole_character_but(&items, &wide));
                } else if space || any_wide || not_space || !wide.is_empty() {
                    let mut alternatives: Vec<String> = wide.into_iter().map(utf8_bytes).collect();
                    if any_wide {
                        alternatives.push(format!("[^\\x00-\\x7F{CONTINUATION}][{CONTINUATION}]*"));
                    } else if not_space {
                        alternatives.push(NOT_SPACE_WIDE.to_string());
                    }
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
            '(' if chars.next_if_eq(&'?').is_some() => {
                if chars.next_if_eq(&'!').is_some() {
                    // A branch of its own: no lookaround more.
                    out.push_str(&format!("(?!{INSIDE_A_CHARACTER}|"));
                } else if chars.clone().take(2).eq(['<', '!']) {
                    out.push_str(&format!("{NOT_INSIDE_A_CHARACTER}(?"));
                } else {
                    out.push_str("(?");
                }
            }
            // Its bytes, not the character: fancy-regex's lookbehind steps back one byte
            // for the character (`(?<=é)x` missed `éx`).
            _ if !c.is_ascii() => out.push_str(&format!("(?:{})", utf8_bytes(c))),
            _ => out.push(c),
        }
    }
    within_cap(&out)?;
    Ok(out)
}

/// Refuses a pattern whose groups nest deeper than [`MAX_GROUP_NESTING`], do not close, or
/// close one never opened: one linear walk over the split's own tokens ([`token_end`]), so
/// that what it counts as a group is what the split, the rewrite and both engines read (a
/// `]` first in a class is one of its characters: `[])]` opens and closes nothing).
fn groups_nest_within(pattern: &str) -> Result<(), MatchError> {
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0);
    while at < pattern.len() {
        match pattern.as_bytes()[at] {
            b'(' => {
                if !opens_a_javascript_group(&pattern[at..]) {
                    return Err(MatchError::GroupSyntax(at));
                }
                depth += 1;
                deepest = deepest.max(depth);
            }
            // A SyntaxError in JavaScript, so gstack never runs such a pattern: refused by
            // where it is, not counted as nothing (which hid the closes the check and the
            // split read differently: `[]))]`).
            b')' => depth = depth.checked_sub(1).ok_or(MatchError::UnmatchedClose(at))?,
            _ => {}
        }
        at = token_end(pattern, at);
    }
    if deepest > MAX_GROUP_NESTING || depth > 0 {
        return Err(MatchError::GroupNesting(deepest));
    }
    Ok(())
}

/// Whether the group opening `rest` is one JavaScript has: `(`, `(?:`, a lookaround or
/// `(?<name>`. The engines read more (`(?x)` with its comments, `(?i)`, `(?P>name)`
/// subroutine calls, `(?(1)…)` conditionals, atomic groups), each a SyntaxError in
/// JavaScript, so gstack never runs them, and some compile past what they are charged (a
/// call compiles the group it calls again, each time).
fn opens_a_javascript_group(rest: &str) -> bool {
    if rest.starts_with("(*") {
        // A backtracking verb (`(*FAIL)`): nothing to repeat, to JavaScript.
        return false;
    }
    let Some(after) = rest.strip_prefix("(?") else {
        return true;
    };
    if [":", "=", "!", "<=", "<!"]
        .iter()
        .any(|opener| after.starts_with(opener))
    {
        return true;
    }
    after
        .strip_prefix('<')
        .and_then(|named| named.split_once('>'))
        .is_some_and(|(name, _)| {
            name.chars().next().is_some_and(|c| !c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

/// Refuses a rewrite that has grown past [`MAX_REWRITTEN_BYTES`].
fn within_cap(out: &str) -> Result<(), MatchError> {
    if out.len() > MAX_REWRITTEN_BYTES {
        return Err(MatchError::RewrittenTooLong(out.len()));
    }
    Ok(())
}

/// After `\x` or `\u` (`kind`): the character of the two or four hex digits that follow,
/// taken from `chars`, when it is past ASCII; an ASCII one (or digits that are not one) is
/// left to the engine, which reads it as JavaScript.
fn wide_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, kind: char) -> Option<char> {
    let digits = hex_digits_ahead(chars, kind)?;
    let character = u32::from_str_radix(&digits, 16)
        .ok()
        .filter(|code| *code >= 0x80)
        .and_then(char::from_u32)?;
    chars.nth(digits.len() - 1);
    Some(character)
}

/// After `\x` or `\u` (`kind`): its two or four hex digits, when they are all there,
/// left in `chars`.
fn hex_digits_ahead(
    chars: &std::iter::Peekable<std::str::Chars<'_>>,
    kind: char,
) -> Option<String> {
    let count = if kind == 'x' { 2 } else { 4 };
    let digits: String = chars.clone().take(count).collect();
    (digits.len() == count && digits.chars().all(|d| d.is_ascii_hexdigit())).then_some(digits)
}

/// `character` past ASCII met in a class whose `items` come before it and `rest` after:
/// an alternative of its own, unless a dash makes it a range end ([`MatchError::WideRange`]).
fn wide_item(
    items: &str,
    rest: &std::iter::Peekable<std::str::Chars<'_>>,
    character: char,
) -> Result<char, MatchError> {
    let after_item = ends_range(items);
    let mut ahead = rest.clone();
    if after_item || (ahead.next() == Some('-') && ahead.next() != Some(']')) {
        return Err(MatchError::WideRange);
    }
    Ok(character)
}

/// `character` as its UTF-8 bytes, each a class of one byte (`[\xC3][\xA9]`): fancy-regex
/// reads a bare byte escape past ASCII as a byte literal that only its backtracking VM
/// runs, and its variable-length lookbehind over one misses (`(?<=(?:\xC3\xA9)+)x` and
/// `(?<=\xC3\xA9\s)x` never matched); a class is a delegate's, matched by its reverse
/// search as any other byte.
fn utf8_bytes(character: char) -> String {
    let mut buffer = [0; 4];
    character
        .encode_utf8(&mut buffer)
        .bytes()
        .map(|byte| format!(r"[\x{byte:02X}]"))
        .collect()
}

/// Whether JavaScript (no flags) reads `\escaped` as `escaped` itself where the regex
/// crate reads something else (`\<` a word start, `\a` a bell, `\z` the end): an ASCII
/// letter with no meaning of its own in JavaScript (in a class or out of one), `<` or
/// `>`. The other punctuation means itself escaped in both.
fn is_identity_escape(escaped: char, in_class: bool) -> bool {
    let meaning = if in_class {
        "dDwWsSbtnvfrcxu"
    } else {
        "dDwWsSbBtnvfrcxuk"
    };
    (escaped.is_ascii_alphabetic() && !meaning.contains(escaped)) || matches!(escaped, '<' | '>')
}

/// Whether what follows a `{` (`rest`) makes it a repetition in JavaScript: exactly
/// `n}`, `n,}` or `n,m}`, with digits only.
fn opens_repetition(rest: &std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut ahead = rest.clone().peekable();
    let digits = |ahead: &mut std::iter::Peekable<_>| {
        let mut count = 0;
        while ahead.next_if(char::is_ascii_digit).is_some() {
            count += 1;
        }
        count
    };
    if digits(&mut ahead) == 0 {
        return false;
    }
    if ahead.next_if_eq(&',').is_some() {
        digits(&mut ahead);
    }
    ahead.next() == Some('}')
}

/// What `\escaped` outside a class becomes.
fn escape(escaped: char) -> String {
    match escaped {
        's' => format!("(?:[{SPACE_ASCII}]|{SPACE_WIDE})"),
        'S' => whole_character_but(SPACE_ASCII, &[]),
        'W' => whole_character_but("0-9A-Za-z_", &[]),
        'D' => whole_character_but("0-9", &[]),
        'B' => format!(r"(?:\B{NOT_INSIDE_A_CHARACTER})"),
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
    // The lead bytes of `wide` (each of two bytes: the caller refuses longer ones).
    let mut wide_leads: Vec<u8> = wide
        .iter()
        .map(|c| c.encode_utf8(&mut [0; 4]).as_bytes()[0])
        .collect();
    wide_leads.sort_unstable();
    wide_leads.dedup();
    for lead in wide_leads {
        let refused: String = wide
            .iter()
            .map(|c| c.encode_utf8(&mut [0; 4]).as_bytes().to_vec())
            .filter(|bytes| bytes[0] == lead)
            .map(|bytes| format!(r"\x{:02X}", bytes[1]))
            .collect();
        if !refused.is_empty() {
            leads.push_str(&format!(r"\x{lead:02X}"));
            // The lead as a class of one, as in `utf8_bytes`.
            two_byte.push_str(&format!(r"|[\x{lead:02X}][[{CONTINUATION}]&&[^{refused}]]"));
        }
    }
    let first = if items.is_empty() {
        format!("[^{CONTINUATION}{leads}]")
    } else {
        format!("[[^{items}]&&[^{CONTINUATION}{leads}]]")
    };
    format!("(?:{first}[{CONTINUATION}]*{two_byte})")
}

/// Adds `c`, met unescaped in a class, to its `items` as JavaScript reads it: the regex
/// crate reads `&&`, `--`, `~~` as set operations and `[` as a nested class, JavaScript
/// (no flags) as literals. So `[`, `&` and `~` are escaped, and a dash that JavaScript
/// takes as a character: one first in the class (`[--a]` is `-` to `a`), one after a
/// range's dash (`[+--]` is `+` to `-`), where the crate would read `--`, and one right
/// `after_range` (`[0-9--/]` is digits and `-` to `/`). Returns whether `c` ended a range.
fn push_class_literal(items: &mut String, c: char, after_range: bool) -> bool {
    let range_end = ends_range(items);
    let dash_after_dash = items.ends_with('-') && !ends_escaped(items);
    match c {
        '[' | '&' | '~' | '^' => items.push('\\'),
        '-' if items.is_empty() || dash_after_dash || after_range => items.push('\\'),
        _ => {}
    }
    items.push(c);
    range_end
}

/// After a class escape in a class, as JavaScript reads what follows: when the escape was
/// the `second` item of a range or union, the class starts afresh (returns `(true, _)`, a
/// dash next is a character); otherwise a dash next to it is a character (escaped here,
/// where what the escape becomes would open a range) and makes a union with the item after
/// it (`[\d-a-z]` is digits, `-`, `a` and `z`): returns `(_, true)` when that item is
/// still to come, `(true, _)` when it was a dash (`[\s--/]` is white space, `-` and `/`).
fn after_class_escape(
    items: &mut String,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    second: bool,
) -> (bool, bool) {
    if second {
        return (true, false);
    }
    if chars.next_if_eq(&'-').is_none() {
        return (false, false);
    }
    items.push_str(r"\-");
    if chars.next_if_eq(&'-').is_some() {
        items.push_str(r"\-");
        return (true, false);
    }
    (false, chars.peek().is_some_and(|c| *c != ']'))
}

/// After an ASCII `\x` or `\u` (`kind`) in a class: its hex digits, taken from `chars`
/// when they are all there (otherwise none, and the engine reports the escape).
fn ascii_hex_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, kind: char) -> String {
    let Some(digits) = hex_digits_ahead(chars, kind) else {
        return String::new();
    };
    chars.nth(digits.len() - 1);
    digits
}

/// Whether the next item of a class after `items` ends a range: they end with a dash
/// that is neither escaped nor first.
fn ends_range(items: &str) -> bool {
    items.len() > 1 && items.ends_with('-') && !ends_escaped(items)
}

/// Whether the last character of `items` is escaped (an odd run of backslashes before it).
fn ends_escaped(items: &str) -> bool {
    let before = &items[..items.len() - 1];
    (before.len() - before.trim_end_matches('\\').len()) % 2 == 1
}
