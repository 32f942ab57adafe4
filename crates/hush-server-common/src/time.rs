//! Unix time and calendar time for every server: [`unix_secs`] / [`unix_millis`] (the clock
//! read once, in one place) and one civil-date conversion for display (server pages,
//! control-port listings, `QUE`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Current Unix time in whole seconds; 0 if the clock is before 1970.
pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Current Unix time in milliseconds; 0 if the clock is before 1970.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Utc {
    /// The UTC date and time of unix seconds `secs` (proleptic Gregorian; Howard Hinnant's
    /// civil_from_days).
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        // Every field is in range by construction (day 1..=31, month 1..=12, rem < 86,400).
        Utc {
            year: yoe + era * 400 + i64::from(m <= 2),
            month: m as u8,
            day: d as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-MM-DD HH:MM:SS UTC` (for people).
    pub fn text(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_helpers_agree() {
        let (s, ms) = (unix_secs(), unix_millis());
        // After 2020-01-01 and the two reads within a few seconds of each other.
        assert!(s > 1_577_836_800, "{s}");
        assert!(
            (i64::try_from(ms / 1000).unwrap() - s).abs() <= 5,
            "{s} {ms}"
        );
    }

    #[test]
    fn known_dates() {
        assert_eq!(Utc::from_unix(0).iso8601(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Utc::from_unix(951_782_400).iso8601(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(Utc::from_unix(-1).iso8601(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Utc::from_unix(4_102_444_799).text(),
            "2099-12-31 23:59:59 UTC"
        );
    }
}
