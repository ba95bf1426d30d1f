//! RFC 3339 strings of Unix times in milliseconds (UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest time RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// `millis` as a `SystemTime`, clamped to what RFC 3339 can write (1970 to the year 9999), so a
/// damaged timestamp is shown as a boundary instead of failing.
fn system_time(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.clamp(0, MAX_MILLIS) as u64)
}

/// `2026-11-24T02:54:09Z` (second precision).
pub fn rfc3339_seconds(millis: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(millis)).to_string()
}

/// `2026-11-24T02:54:09.123Z` (millisecond precision).
pub fn rfc3339_millis(millis: i64) -> String {
    humantime::format_rfc3339_millis(system_time(millis)).to_string()
}

/// Parses an RFC 3339 UTC time (`2026-11-24T02:54:09Z`, fractions allowed) into Unix
/// milliseconds; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_seconds(1_795_920_849_999), "2026-11-29T02:54:09Z");
        assert_eq!(
            rfc3339_millis(1_795_920_849_999),
            "2026-11-29T02:54:09.999Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-29T02:54:09.999Z"),
            Some(1_795_920_849_999)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339_seconds(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
