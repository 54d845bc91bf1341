//! Go-style duration strings (`"3s"`, `"500ms"`, `"1m30s"`, `"1.5h"`), as MOSN's
//! `DurationConfig` accepts them; JSON numbers are nanoseconds, as in MOSN.

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A leading `-`: durations in this config cannot be negative.
    #[error("negative duration")]
    Negative,
    /// A number without a unit (only a bare `0` may omit it).
    #[error("missing unit (use ns, us, ms, s, m or h)")]
    MissingUnit,
    /// A unit that Go does not know.
    #[error("unknown unit {0:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    /// Something that is not `<number><unit>`.
    #[error("expected <number><unit>, e.g. \"3s\" or \"1m30s\"")]
    Malformed,
    /// More than `u64::MAX` nanoseconds.
    #[error("duration too large")]
    Overflow,
}

/// Parses a Go `time.ParseDuration` string: one or more `<decimal><unit>` terms, units `ns`,
/// `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; a bare `"0"` is zero. A leading `+` is allowed,
/// a leading `-` is rejected (no setting here can be negative).
///
/// # Errors
/// [`DurationError`] naming what is wrong.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let mut s = text;
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let number_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, rest) = s.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(DurationError::Malformed);
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let scale: u128 = match unit {
            "" => return Err(DurationError::MissingUnit),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        total = total
            .checked_add(term_nanos(number, scale)?)
            .ok_or(DurationError::Overflow)?;
        s = rest;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds, truncated like Go.
fn term_nanos(number: &str, scale: u128) -> Result<u128, DurationError> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut nanos: u128 = 0;
    for d in int_part.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d - b'0')))
            .ok_or(DurationError::Overflow)?;
    }
    nanos = nanos.checked_mul(scale).ok_or(DurationError::Overflow)?;
    // Fractional digits beyond nanosecond precision are dropped, as Go does.
    let mut place = scale;
    for d in frac_part.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        nanos += u128::from(d - b'0') * place;
    }
    Ok(nanos)
}

/// Formats a duration the way Go prints it in configs: `90s` → `1m30s`, `500ms`, `1h`
/// (sub-millisecond values as `us`; whole-millisecond precision otherwise).
pub fn format_go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, 0) => format!("{min}m"),
        (0, min, sec) => format!("{min}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, min, sec) => format!("{h}h{min}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_forms() {
        assert_eq!(ok("3s"), Duration::from_secs(3));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2h45m10.5s"), Duration::from_millis(9_910_500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("+2s"), Duration::from_secs(2));
        assert_eq!(ok("1.0000000009s"), Duration::from_secs(1));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(format_go_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_go_duration(Duration::from_micros(5)), "5us");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        for d in [90_000, 500, 1500, 3_661_000, 7_200_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(parse_go_duration("3"), Err(DurationError::MissingUnit));
        assert_eq!(
            parse_go_duration("3sec"),
            Err(DurationError::UnknownUnit("sec".into()))
        );
        assert_eq!(parse_go_duration("s"), Err(DurationError::Malformed));
        assert_eq!(parse_go_duration("1..2s"), Err(DurationError::Malformed));
        assert_eq!(parse_go_duration("1.2.3s"), Err(DurationError::Malformed));
        assert_eq!(
            parse_go_duration("3 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(
            parse_go_duration("99999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }
}
