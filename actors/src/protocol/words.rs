//! Splitting a line-protocol request into words, and showing a client's word back to it
//! safely: shared by the command table (`command.rs`) and the cluster commands
//! (`cluster_commands.rs`).

/// Longest verb echoed back in an "unknown command" error.
pub const MAX_ECHOED_VERB: usize = 32;

/// Whether `b` separates words in a request line (a space or a tab).
pub fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The next token at or after `from`: its start and end offsets.
pub fn token(line: &[u8], from: usize) -> Option<(usize, usize)> {
    let start = from + line.get(from..)?.iter().position(|&b| !is_blank(b))?;
    let end = line[start..]
        .iter()
        .position(|&b| is_blank(b))
        .map_or(line.len(), |n| start + n);
    Some((start, end))
}

/// A verb as it can safely be echoed in one reply line: lossy UTF-8, control characters
/// replaced, and shortened.
pub fn printable(verb: &[u8]) -> String {
    let text = String::from_utf8_lossy(verb);
    let mut shown: String = text
        .chars()
        .take(MAX_ECHOED_VERB)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX_ECHOED_VERB {
        shown.push_str("...");
    }
    shown
}
