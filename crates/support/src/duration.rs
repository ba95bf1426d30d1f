//! The one duration grammar of sequential-ecosystem.
//!
//! A bare integer is milliseconds (`250`). Otherwise a number and a unit, optionally several
//! (`1h 30m`): `ms`/`msec`, `s`/`sec`/`secs`/`second(s)`, `m`/`min`/`mins`/`minute(s)`,
//! `h`/`hr`/`hrs`/`hour(s)`, `d`/`day(s)`, `w`/`week(s)`. A single number may have a fraction
//! (`1.5s`, `0.5h`). Units are read by the `humantime` crate; this module adds the bare
//! milliseconds and the fractions that earlier versions accepted.

use std::time::Duration;

/// The accepted forms, for error messages.
pub const FORMS: &str = "milliseconds (a whole number) or a number with a unit: 250ms, 2s, 5m, 1h, 7d, 1w (also 1.5s, \"1h 30m\")";

/// A string that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected {FORMS}")]
pub struct DurationError {
    /// What was given.
    pub input: String,
}

/// Parses a duration in the grammar above.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: s.to_string(),
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_millis).map_err(|_| err());
    }
    // months and years have no fixed length: refuse them rather than guess.
    let forbidden = [
        "M", "month", "months", "y", "year", "years", "ns", "nsec", "us", "usec",
    ];
    let number_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_end);
    if number.contains('.') {
        // one number with a fraction and one unit: scale the unit's length
        let n: f64 = number.parse().map_err(|_| err())?;
        let unit = unit.trim();
        if forbidden.contains(&unit) || unit.is_empty() {
            return Err(err());
        }
        let one = humantime::parse_duration(&format!("1{unit}")).map_err(|_| err())?;
        return Duration::try_from_secs_f64(one.as_secs_f64() * n).map_err(|_| err());
    }
    if t.split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .any(|u| forbidden.contains(&u))
    {
        return Err(err());
    }
    humantime::parse_duration(t).map_err(|_| err())
}

/// [`parse`] as whole milliseconds (rounded to the nearest).
pub fn parse_millis(s: &str) -> Result<u64, DurationError> {
    parse(s).map(|d| (d.as_secs_f64() * 1e3).round() as u64)
}

/// Shows a duration in the grammar's shortest form (`1500ms`, `2s`, `5m`, `1h`, `7d`, `2w`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        parse_millis(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn every_spelling_accepted_before_still_parses() {
        assert_eq!(ms("250"), 250);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("2s"), 2_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("2 sec"), 2_000);
        assert_eq!(ms("3secs"), 3_000);
        assert_eq!(ms("3m"), 180_000);
        assert_eq!(ms("3min"), 180_000);
        assert_eq!(ms("3mins"), 180_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("2hr"), 7_200_000);
        assert_eq!(ms("2hrs"), 7_200_000);
        assert_eq!(ms("0.5h"), 1_800_000);
        assert_eq!(ms("7d"), 604_800_000);
        assert_eq!(ms("1day"), 86_400_000);
        assert_eq!(ms("2days"), 172_800_000);
        assert_eq!(ms("1w"), 604_800_000);
        assert_eq!(ms(" 10s "), 10_000);
    }

    #[test]
    fn long_spellings_and_combinations() {
        assert_eq!(ms("1 week"), 604_800_000);
        assert_eq!(ms("2weeks"), 1_209_600_000);
        assert_eq!(ms("1 hour"), 3_600_000);
        assert_eq!(ms("5 minutes"), 300_000);
        assert_eq!(ms("1 second"), 1_000);
        assert_eq!(ms("1h 30m"), 5_400_000);
        assert_eq!(ms("1msec"), 1);
    }

    #[test]
    fn nonsense_is_refused_naming_the_input_and_the_forms() {
        for bad in [
            "", "soon", "-1s", "1x", "1.2.3s", "1y", "3 months", "5ns", "1.5", "s",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("250ms"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn format_is_the_shortest_exact_form() {
        assert_eq!(format(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(604_800)), "1w");
        assert_eq!(
            parse(&format(Duration::from_secs(90))).unwrap(),
            Duration::from_secs(90)
        );
    }
}
