//! The arithmetic of the read-modify-write string commands (`INCRBY`, `APPEND`): what the new
//! value is, from the old one. The Store applies the result as an ordinary `Put`, so the log,
//! snapshots and replicas see a plain value and stay exactly in step (Redis propagates the
//! effect too, not the command, for such commands under AOF rewriting).

/// Why an increment cannot be applied; the client is told, nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotANumber {
    /// The value is not a decimal integer in 64 bits (Redis's wording).
    NotAnInteger,
    /// The result would not fit in 64 bits.
    Overflow,
}

impl NotANumber {
    /// The error as Redis words it.
    pub fn message(self) -> &'static str {
        match self {
            NotANumber::NotAnInteger => "ERR value is not an integer or out of range",
            NotANumber::Overflow => "ERR increment or decrement would overflow",
        }
    }
}

/// `INCRBY`: the value after adding `delta` to `old` (absent counts as 0), and its text.
pub fn increment(old: Option<&[u8]>, delta: i64) -> Result<(i64, Vec<u8>), NotANumber> {
    let current = match old {
        None => 0,
        Some(text) => parse_integer(text).ok_or(NotANumber::NotAnInteger)?,
    };
    let next = current.checked_add(delta).ok_or(NotANumber::Overflow)?;
    Ok((next, next.to_string().into_bytes()))
}

/// A decimal integer as Redis accepts one: an optional `-`, digits, no leading zeros (but
/// `0`), no blanks or `+`, within 64 bits.
fn parse_integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
        && !(text.starts_with(b"-") && digits == b"0");
    canonical
        .then(|| std::str::from_utf8(text).ok()?.parse().ok())
        .flatten()
}

/// `APPEND`: `old` (absent counts as empty) followed by `suffix`.
pub fn append(old: Option<&[u8]>, suffix: &[u8]) -> Vec<u8> {
    let mut value = old.unwrap_or_default().to_vec();
    value.extend_from_slice(suffix);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_follow_redis() {
        assert_eq!(increment(None, 1), Ok((1, b"1".to_vec())));
        assert_eq!(increment(Some(b"41"), 1), Ok((42, b"42".to_vec())));
        assert_eq!(increment(Some(b"-5"), -5), Ok((-10, b"-10".to_vec())));
        assert_eq!(increment(Some(b"abc"), 1), Err(NotANumber::NotAnInteger));
        assert_eq!(increment(Some(b" 1"), 1), Err(NotANumber::NotAnInteger));
        assert_eq!(increment(Some(b"01"), 1), Err(NotANumber::NotAnInteger));
        assert_eq!(increment(Some(b"+1"), 1), Err(NotANumber::NotAnInteger));
        assert_eq!(increment(Some(b""), 1), Err(NotANumber::NotAnInteger));
        let max = i64::MAX.to_string();
        assert_eq!(
            increment(Some(max.as_bytes()), 1),
            Err(NotANumber::Overflow)
        );
    }

    #[test]
    fn append_adds_to_the_end() {
        assert_eq!(append(None, b"ab"), b"ab");
        assert_eq!(append(Some(b"ab"), b"cd"), b"abcd");
    }
}
