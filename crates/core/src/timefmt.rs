//! The seeds print times as `YYYY-MM-DD HH:MM:SS` in the cloud's local time; crsd uses the
//! operator's configured time zone for both printing and parsing filter bounds.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::fmt::Write;

pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// How the APIs print a time that is not set (a postpaid instance's deadline).
pub const NO_TIME: &str = "0000-00-00 00:00:00";

/// `t` as `FORMAT` in `tz`. Written field by field: listings print several times per row, and
/// interpreting the strftime pattern each time was a visible share of a DescribeRedis call.
pub fn format(t: DateTime<Utc>, tz: Tz) -> String {
    let l = t.with_timezone(&tz);
    let mut out = String::with_capacity(19);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute(),
        l.second()
    );
    out
}

/// Parses `YYYY-MM-DD HH:MM:SS` in `tz`. None when malformed or not a valid local time.
pub fn parse(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), FORMAT).ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_a_zone() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = parse("2017-02-08 16:46:34", tz).unwrap();
        assert_eq!(format(t, tz), "2017-02-08 16:46:34");
        assert_eq!(format(t, chrono_tz::UTC), "2017-02-08 08:46:34");
        assert!(parse("2017-02-30 00:00:00", tz).is_none());
        assert!(parse("yesterday", tz).is_none());
        let early = parse("0999-01-02 03:04:05", chrono_tz::UTC).unwrap();
        assert_eq!(format(early, chrono_tz::UTC), "0999-01-02 03:04:05");
        assert_eq!(
            format(early, chrono_tz::UTC),
            early.format(FORMAT).to_string()
        );
    }
}
