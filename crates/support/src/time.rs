//! RFC 3339 strings of Unix times in milliseconds (UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn system_time(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
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
    }
}
