//! Times as the journal keeps them (unix milliseconds) and as people read them.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current unix time, in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The current unix time, in milliseconds (what the journal records).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long ago journal time `ms` was, as a person would say it (`3 h 12 min`).
pub fn age_of(ms: i64) -> String {
    format_age((now_ms() - ms) / 1000)
}

/// `YYYYMMDD-HHMMSS` (UTC) for unix time `t`.
pub(crate) fn timestamp_id(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for journal time `ms` (unix milliseconds).
pub fn format_time(ms: i64) -> String {
    let t = ms.div_euclid(1000);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A duration as a person would say it: `42 s`, `1 min 30 s`, `3 h 12 min`, `2 d 3 h`.
pub fn format_age(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, h, _, _) => format!("{d} d {h} h"),
    }
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_wrote_them() {
        assert_eq!(format_age(42), "42 s");
        assert_eq!(format_age(90), "1 min 30 s");
        assert_eq!(format_age(600), "10 min");
        assert_eq!(format_age(11_525), "3 h 12 min");
        assert_eq!(format_age(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000_123), "2026-11-18 11:06:40");
        assert_eq!(timestamp_id(951_782_400), "20000229-000000");
    }
}
