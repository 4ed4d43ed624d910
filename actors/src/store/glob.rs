//! Redis's glob patterns, the one implementation the node has: `KEYS` and `SCAN ... MATCH`
//! (case-sensitive) and `CONFIG GET` (case-insensitive) all use it.
//!
//! `*` matches any run of bytes, `?` any one byte, `[abc]` one of those, `[^abc]` one byte
//! not among them, `[a-z]` one in the range (either way round), and `\x` the byte `x` itself,
//! inside brackets too; an unclosed `[` ends at the end of the pattern. This is what Redis's
//! `stringmatchlen` does, quirks included (`[a-]` is the range from `a` to `]`, since a range
//! is read wherever a byte is followed by `-` and one more byte).
//!
//! A pattern is compiled once and matched against many keys (a `KEYS` over a million keys),
//! and matching backtracks only to the last `*`, so it takes at most pattern × key steps
//! whatever the pattern: no pattern a client sends can make it exponential, as a naive
//! recursive matcher is.

/// One element of a compiled pattern; each but [`Token::Star`] matches exactly one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of bytes, the empty one included.
    Star,
    /// `?`: any one byte.
    Any,
    /// A byte that must be there (`\x` for a special one).
    Byte(u8),
    /// `[...]`: one byte within one of the ranges (a single byte is the range from it to
    /// itself), or, `negated`, within none of them.
    Class {
        /// `[^...]`.
        negated: bool,
        /// The ranges, inclusive, low end first.
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern's elements, in order; consecutive stars are one.
    tokens: Vec<Token>,
    /// Bytes compare without regard to ASCII case (`CONFIG GET`).
    nocase: bool,
}

impl Glob {
    /// Compile `pattern`, case-sensitive as `KEYS` and `SCAN` match.
    pub fn new(pattern: &[u8]) -> Glob {
        Glob::compile(pattern, false)
    }

    /// Compile `pattern` to match without regard to ASCII case, as `CONFIG GET` matches.
    pub fn nocase(pattern: &[u8]) -> Glob {
        Glob::compile(pattern, true)
    }

    /// Whether `pattern` matches only itself (no `*`, `?`, `[` or `\`): a `KEYS` of it is a
    /// lookup, not a walk over every key.
    pub fn is_literal(pattern: &[u8]) -> bool {
        !pattern
            .iter()
            .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
    }

    /// Whether the pattern is `*` (or only stars): it matches everything, so there is no
    /// need to test each key.
    pub fn matches_all(&self) -> bool {
        self.tokens == [Token::Star]
    }

    fn compile(pattern: &[u8], nocase: bool) -> Glob {
        let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let token = match pattern[i] {
                b'*' => {
                    i += 1;
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                b'?' => {
                    i += 1;
                    Token::Any
                }
                b'[' => {
                    let (token, next) = class(pattern, i + 1, fold);
                    i = next;
                    token
                }
                b'\\' if i + 1 < pattern.len() => {
                    i += 2;
                    Token::Byte(fold(pattern[i - 1]))
                }
                byte => {
                    i += 1;
                    Token::Byte(fold(byte))
                }
            };
            tokens.push(token);
        }
        Glob { tokens, nocase }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &[u8]) -> bool {
        let (mut t, mut s) = (0, 0);
        // Where to resume after the last `*`: the token after it, and the byte it would
        // swallow next.
        let mut star: Option<(usize, usize)> = None;
        while s < text.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t + 1, s));
                    t += 1;
                    continue;
                }
                Some(token) if self.one(token, text[s]) => {
                    t += 1;
                    s += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((after, swallowed)) => {
                    // The star takes one byte more, and the rest is tried again.
                    t = after;
                    s = swallowed + 1;
                    star = Some((after, s));
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|token| *token == Token::Star)
    }

    /// Whether one-byte `token` matches `byte`.
    fn one(&self, token: &Token, byte: u8) -> bool {
        let byte = match self.nocase {
            true => byte.to_ascii_lowercase(),
            false => byte,
        };
        match token {
            Token::Star | Token::Any => true,
            Token::Byte(b) => *b == byte,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&byte)) != *negated
            }
        }
    }
}

/// The class whose body starts at `pattern[i]` (after its `[`), and where the pattern goes on
/// after its `]` (or at the end, for one left open), as Redis reads it.
fn class(pattern: &[u8], mut i: usize, fold: impl Fn(u8) -> u8) -> (Token, usize) {
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    while i < pattern.len() {
        let rest = &pattern[i..];
        match rest {
            [b'\\', escaped, ..] => {
                ranges.push((fold(*escaped), fold(*escaped)));
                i += 2;
            }
            [b']', ..] => return (Token::Class { negated, ranges }, i + 1),
            [lo, b'-', hi, ..] => {
                let (lo, hi) = (fold(*lo), fold(*hi));
                ranges.push((lo.min(hi), lo.max(hi)));
                i += 3;
            }
            [byte, ..] => {
                ranges.push((fold(*byte), fold(*byte)));
                i += 1;
            }
            [] => break,
        }
    }
    (Token::Class { negated, ranges }, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern.as_bytes()).matches(text.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", "") && m("*", "anything") && m("**", "x"));
        assert!(m("user:*", "user:1") && !m("user:*", "user"));
        assert!(m("*:1", "user:1") && m("a*b*c", "axxbyyc") && !m("a*b*c", "axxbyy"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo") && !m("?", ""));
        assert!(m("", "") && !m("", "a") && !m("a", ""));
        assert!(m("*a*a*a*a*a*a*a*b", &format!("{}b", "a".repeat(40))));
        assert!(!m("*a*a*a*a*a*a*a*b", &"a".repeat(5_000)), "no blow-up");
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("[z-a]", "q"), "a range either way round");
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("[\\]]", "]") && m("[\\-]", "-") && !m("[\\-]", "\\"));
        assert!(
            m("[a-]", "]") && m("[a-]", "_") && !m("[a-]", "b"),
            "Redis reads `a-]` as the range from `]` to `a`"
        );
        assert!(
            m("[abc", "b") && !m("[abc", "bc"),
            "an open class ends the pattern"
        );
        assert!(!m("[]", "a") && m("[^]", "a"));
        assert!(m("x\\", "x\\"), "a trailing backslash is itself");
        assert!(!m("H*", "hello"), "keys match case-sensitively");
    }

    #[test]
    fn config_patterns_ignore_case() {
        let glob = Glob::nocase(b"MAX*");
        assert!(glob.matches(b"maxmemory") && glob.matches(b"MaxClients"));
        assert!(Glob::nocase(b"[A-C]ind").matches(b"bind"));
        assert!(!Glob::nocase(b"max?").matches(b"maxmemory"));
    }

    #[test]
    fn literal_patterns_are_lookups() {
        assert!(Glob::is_literal(b"user:1"));
        assert!(!Glob::is_literal(b"user:?") && !Glob::is_literal(b"a\\b"));
        assert!(Glob::new(b"**").matches_all() && !Glob::new(b"*a").matches_all());
    }
}
