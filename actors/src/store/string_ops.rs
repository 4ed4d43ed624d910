//! The arithmetic of the read-modify-write string commands (`INCRBY`, `INCRBYFLOAT`, `APPEND`,
//! `SETRANGE`) and of `GETRANGE`'s indexes: what the new value (or the part read) is, from
//! the old one. The Store applies the result as an ordinary `Put`, so the log,
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

/// The longest value `SETRANGE` may make: Redis's default `proto-max-bulk-len`, 512 MiB.
pub const MAX_STRING: u64 = 512 * 1024 * 1024;

/// Why `INCRBYFLOAT` or `SETRANGE` cannot be applied, in Redis's words; nothing changes.
pub const NOT_A_FLOAT: &str = "ERR value is not a valid float";
/// `INCRBYFLOAT` would store something that is not a finite number.
pub const NAN_OR_INFINITY: &str = "ERR increment would produce NaN or Infinity";
/// `SETRANGE` at a negative offset.
pub const BAD_OFFSET: &str = "ERR offset is out of range";
/// `SETRANGE` would make a value longer than [`MAX_STRING`].
pub const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// `INCRBYFLOAT`: the text of `old` (absent counts as 0) plus `increment`, or why not.
///
/// Redis adds in 80-bit `long double` and prints 17 decimals with trailing zeros removed, so
/// that `10.5 + 0.1` reads `10.6`; here the sum is a 64-bit double, printed (by
/// [`format_float`]) as the 15-significant-digit decimal when that is within 2 units in the
/// last place of the sum (the noise of binary arithmetic: `0.1 + 0.2` reads `0.3`), and
/// otherwise as the shortest decimal that reads back as the same double. Either way no
/// exponent and no trailing zeros, as Redis prints it.
pub fn increment_float(old: Option<&[u8]>, increment: &[u8]) -> Result<Vec<u8>, &'static str> {
    let current = match old {
        None => 0.0,
        Some(text) => parse_float(text).ok_or(NOT_A_FLOAT)?,
    };
    let sum = current + parse_float(increment).ok_or(NOT_A_FLOAT)?;
    if !sum.is_finite() {
        return Err(NAN_OR_INFINITY);
    }
    Ok(format_float(sum).into_bytes())
}

/// A number as Redis's `string2ld` accepts one: decimal, with an optional sign, point and
/// exponent, or `inf`; not NaN, no blanks, not one that overflows or underflows to zero.
fn parse_float(text: &[u8]) -> Option<f64> {
    // Redis's bound on a number's text (`MAX_LONG_DOUBLE_CHARS`).
    if text.is_empty() || text.len() >= 5 * 1024 {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let value: f64 = text.parse().ok()?;
    let unsigned = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let mantissa = unsigned.split('e').next().unwrap_or_default();
    let overflowed = value.is_infinite() && !unsigned.starts_with("inf");
    let underflowed = value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    (!value.is_nan() && !overflowed && !underflowed).then_some(value)
}

/// A finite double as `INCRBYFLOAT` answers and stores it (see [`increment_float`]).
pub fn format_float(value: f64) -> String {
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    let ulp = value.abs().next_up() - value.abs();
    let shown = match (rounded - value).abs() <= 2.0 * ulp {
        true => rounded,
        false => value,
    };
    // `+ 0.0` turns a negative zero into zero: Redis never answers `-0`.
    format!("{}", shown + 0.0)
}

/// `GETRANGE`: the bytes of a value `len` long from `start` to `end`, both inclusive, a
/// negative index counting from the end, as Redis 7 computes them (empty when nothing is
/// between them).
pub fn range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = len as i64;
    if start < 0 && end < 0 && start > end {
        return 0..0;
    }
    let from_end = |index: i64| if index < 0 { len + index } else { index };
    let start = from_end(start).max(0);
    let end = from_end(end).max(0).min(len - 1);
    if start > end || len == 0 {
        return 0..0;
    }
    start as usize..end as usize + 1
}

/// `SETRANGE`: `old` (absent counts as empty, and is padded with zero bytes up to `offset`)
/// with `value` written at `offset`; `None` when `value` is empty, which changes nothing.
pub fn set_range(
    old: Option<&[u8]>,
    offset: i64,
    value: &[u8],
) -> Result<Option<Vec<u8>>, &'static str> {
    let offset = u64::try_from(offset).map_err(|_| BAD_OFFSET)?;
    if value.is_empty() {
        return Ok(None);
    }
    let end = offset.saturating_add(value.len() as u64);
    if end > MAX_STRING {
        return Err(TOO_LONG);
    }
    // Both are at most 512 MiB now.
    let (offset, end) = (offset as usize, end as usize);
    let mut new = old.unwrap_or_default().to_vec();
    if new.len() < end {
        new.resize(end, 0);
    }
    new[offset..end].copy_from_slice(value);
    Ok(Some(new))
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

#[cfg(test)]
mod float_and_range_tests {
    use super::*;

    fn incr(old: Option<&str>, by: &str) -> Result<String, &'static str> {
        increment_float(old.map(str::as_bytes), by.as_bytes())
            .map(|text| String::from_utf8(text).unwrap())
    }

    #[test]
    fn float_increments_print_as_redis_does() {
        assert_eq!(incr(Some("10.50"), "0.1"), Ok("10.6".into()));
        assert_eq!(incr(None, "1.0"), Ok("1".into()));
        assert_eq!(incr(Some("5.0e3"), "2.0e2"), Ok("5200".into()));
        assert_eq!(incr(Some("0.1"), "0.2"), Ok("0.3".into()));
        assert_eq!(incr(Some("1.5"), "-1.5"), Ok("0".into()), "never -0");
        assert_eq!(incr(Some("-1"), "0.25"), Ok("-0.75".into()));
        assert_eq!(incr(Some("1"), "1e20"), Ok("100000000000000000000".into()));
        assert_eq!(
            incr(None, "0.0000001"),
            Ok("0.0000001".into()),
            "no exponent"
        );
        assert_eq!(
            incr(Some("3"), "0.1234567890123456"),
            Ok("3.1234567890123457".into())
        );
        assert_eq!(incr(None, ".5"), Ok("0.5".into()));
        let mut total = "0".to_string();
        for _ in 0..10 {
            total = incr(Some(&total), "0.1").unwrap();
        }
        assert_eq!(total, "1", "no creeping binary noise");
    }

    #[test]
    fn float_increments_refuse_what_redis_refuses() {
        for bad in [
            "abc", "", " 1", "1 ", "nan", "1e400", "1e-400", "1.2.3", "0x10",
        ] {
            assert_eq!(incr(Some(bad), "1"), Err(NOT_A_FLOAT), "{bad:?}");
            assert_eq!(incr(Some("1"), bad), Err(NOT_A_FLOAT), "{bad:?}");
        }
        assert_eq!(incr(Some("1"), "inf"), Err(NAN_OR_INFINITY));
        assert_eq!(incr(Some("1.7e308"), "1.7e308"), Err(NAN_OR_INFINITY));
        assert_eq!(
            incr(Some("0"), "0e-400"),
            Ok("0".into()),
            "zero is not an underflow"
        );
    }

    #[test]
    fn getrange_indexes_follow_redis() {
        let text = "This is a string";
        let get = |start, end| &text[range(text.len(), start, end)];
        assert_eq!(get(0, 3), "This");
        assert_eq!(get(-3, -1), "ing");
        assert_eq!(get(0, -1), text);
        assert_eq!(get(10, 100), "string");
        assert_eq!(get(5, 3), "");
        assert_eq!(get(-1, -5), "", "both negative, start after end");
        assert_eq!(get(-100, 2), "Thi");
        assert_eq!(get(i64::MIN, i64::MAX), text);
        assert_eq!(get(100, 200), "");
        assert_eq!(range(0, 0, -1), 0..0);
        assert_eq!(range(0, -1, 0), 0..0);
    }

    #[test]
    fn setrange_pads_with_zeros_and_bounds_the_length() {
        let set = |old: Option<&str>, offset, value: &str| {
            set_range(old.map(str::as_bytes), offset, value.as_bytes())
        };
        assert_eq!(
            set(Some("Hello World"), 6, "Redis"),
            Ok(Some(b"Hello Redis".to_vec()))
        );
        assert_eq!(set(None, 3, "ab"), Ok(Some(b"\0\0\0ab".to_vec())));
        assert_eq!(set(Some("abc"), 1, "XYZW"), Ok(Some(b"aXYZW".to_vec())));
        assert_eq!(set(Some("abc"), 5, ""), Ok(None));
        assert_eq!(set(None, -1, "x"), Err(BAD_OFFSET));
        assert_eq!(set(None, -1, ""), Err(BAD_OFFSET));
        let last = MAX_STRING as i64 - 1;
        assert_eq!(set(None, last + 1, "x"), Err(TOO_LONG));
        assert_eq!(set(None, i64::MAX, "x"), Err(TOO_LONG));
        assert_eq!(set(None, last + 1, ""), Ok(None));
    }
}
