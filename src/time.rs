//! One notion of time: Unix seconds (what the ledger stores and now), and times as the CLI
//! reads and writes them: RFC 3339 (`2026-11-24T18:00:00Z`), or a duration
//! before now (`24h`, `7d`, `90m`), to and from Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time as Unix seconds (what the ledger stores); before 1970 is 0.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Now, as Unix seconds.
pub fn now_unix() -> f64 {
    unix_seconds(SystemTime::now())
}

/// Unix seconds → `2026-11-24T18:00:00Z`.
pub fn format(unix_seconds: f64) -> String {
    use std::fmt::Write as _;
    // RFC 3339 ends with the year 9999; a time past it (a hostile or broken value) is
    // shown as the last second it can write rather than taking the caller down.
    const LAST: f64 = 253_402_300_799.0;
    let seconds = if unix_seconds.is_finite() {
        unix_seconds.clamp(0.0, LAST)
    } else {
        0.0
    };
    let t = UNIX_EPOCH + Duration::try_from_secs_f64(seconds).unwrap_or_default();
    let mut text = String::new();
    match write!(text, "{}", humantime::format_rfc3339_seconds(t)) {
        Ok(()) => text,
        Err(_) => "9999-12-31T23:59:59Z".into(),
    }
}

/// `2026-11-24 18:00` style, for tables.
pub fn format_short(unix_seconds: f64) -> String {
    let full = format(unix_seconds);
    full.get(..16).unwrap_or(&full).replace('T', " ")
}

/// `20261124-180000` (UTC), for file names.
pub fn file_stamp(unix_seconds: f64) -> String {
    format(unix_seconds)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect()
}

/// Parses an RFC 3339 time (a missing zone means UTC), `now`, or a duration ago.
pub fn parse(text: &str, now: SystemTime) -> Result<f64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(unix_seconds(now));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(unix_seconds(t));
    }
    if let Some(t) = parse_with_offset(text) {
        return Ok(t);
    }
    if let Ok(ago) = humantime::parse_duration(text.trim_end_matches(" ago")) {
        let t = now.checked_sub(ago).unwrap_or(UNIX_EPOCH);
        return Ok(unix_seconds(t));
    }
    Err(format!(
        "\"{text}\" is not a time: use RFC 3339 (2026-11-24T18:00:00Z) or a duration ago (24h, 7d, 90m)"
    ))
}

/// RFC 3339 with a numeric offset (`2026-11-24T23:00:00+05:00`, `…-0330`), which humantime
/// does not read: the local time in UTC, minus the offset.
fn parse_with_offset(text: &str) -> Option<f64> {
    let split = text.len().checked_sub(6).filter(|i| text.is_char_boundary(*i))?;
    let (local, offset) = match text.split_at(split) {
        (local, offset) if offset.as_bytes().get(3) == Some(&b':') => (local, offset.replace(':', "")),
        _ => {
            let split = text.len().checked_sub(5).filter(|i| text.is_char_boundary(*i))?;
            let (local, offset) = text.split_at(split);
            (local, offset.to_string())
        }
    };
    let (sign, digits) = match offset.as_bytes().first()? {
        b'+' => (1.0, &offset[1..]),
        b'-' => (-1.0, &offset[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: f64 = digits[..2].parse().ok()?;
    let minutes: f64 = digits[2..].parse().ok()?;
    if hours > 23.0 || minutes > 59.0 {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(local).ok()?;
    Some(unix_seconds(local) - sign * (hours * 3600.0 + minutes * 60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse("2026-11-24T18:00:00Z", now), Ok(1_795_543_200.0));
        assert_eq!(parse("2026-11-24 18:00:00", now), Ok(1_795_543_200.0));
        assert_eq!(parse("24h", now), Ok(1_800_000_000.0 - 86_400.0));
        assert_eq!(parse("7d", now), Ok(1_800_000_000.0 - 7.0 * 86_400.0));
        assert_eq!(parse("now", now), Ok(1_800_000_000.0));
        assert!(parse("yesterday-ish", now).unwrap_err().contains("RFC 3339"));
        // Numeric offsets: the same instant written in three zones.
        assert_eq!(parse("2026-11-24T23:00:00+05:00", now), Ok(1_795_543_200.0));
        assert_eq!(parse("2026-11-24T14:30:00-03:30", now), Ok(1_795_543_200.0));
        assert_eq!(parse("2026-11-24T18:00:00+0000", now), Ok(1_795_543_200.0));
        assert!(parse("2026-11-24T18:00:00+25:00", now).is_err());
        assert_eq!(format(1_795_543_200.0), "2026-11-24T18:00:00Z");
        assert_eq!(format_short(1_795_543_200.0), "2026-11-24 18:00");
    }
}
