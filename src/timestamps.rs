//! Times as the CLI reads and writes them: RFC 3339 (`2026-11-24T18:00:00Z`), or a duration
//! before now (`24h`, `7d`, `90m`), to and from Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds → `2026-11-24T18:00:00Z`.
pub fn format(unix_seconds: f64) -> String {
    let t = UNIX_EPOCH + Duration::try_from_secs_f64(unix_seconds.max(0.0)).unwrap_or_default();
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `2026-11-24 18:00` style, for tables.
pub fn format_short(unix_seconds: f64) -> String {
    let full = format(unix_seconds);
    full.get(..16).unwrap_or(&full).replace('T', " ")
}

/// Parses an RFC 3339 time (a missing zone means UTC), `now`, or a duration ago.
pub fn parse(text: &str, now: SystemTime) -> Result<f64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(crate::fleet::unix_seconds(now));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(crate::fleet::unix_seconds(t));
    }
    if let Ok(ago) = humantime::parse_duration(text.trim_end_matches(" ago")) {
        let t = now.checked_sub(ago).unwrap_or(UNIX_EPOCH);
        return Ok(crate::fleet::unix_seconds(t));
    }
    Err(format!(
        "\"{text}\" is not a time: use RFC 3339 (2026-11-24T18:00:00Z) or a duration ago (24h, 7d, 90m)"
    ))
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
        assert_eq!(format(1_795_543_200.0), "2026-11-24T18:00:00Z");
        assert_eq!(format_short(1_795_543_200.0), "2026-11-24 18:00");
    }
}
