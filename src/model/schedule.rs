//! A cron job's schedule: a cron expression — five fields (minute hour day-of-month month
//! day-of-week), six with a leading seconds field, or a nickname such as `@hourly` — read in
//! an IANA time zone (UTC unless named). Parsed by croner, in time zones from chrono-tz.
//!
//! Pure: the time zone database is compiled in, so an expression, a zone and an instant always
//! give the same due times, whatever the host's clock or zone files say. Daylight saving as
//! cron has it: a wall-clock time that does not exist that day (spring forward) runs at the
//! first instant after the gap; one that happens twice (fall back) runs once, at the first;
//! interval schedules (`*/5 * * * *`) keep their step in real time across both.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds};

use super::time::Timestamp;

/// Why a schedule cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{expression:?} is not a cron schedule ({reason}); write minute hour day-of-month month day-of-week (e.g. \"*/15 * * * *\"), optionally with a leading seconds field, or one of @hourly, @daily, @weekly, @monthly, @yearly")]
    Expression { expression: String, reason: String },
    #[error("{0:?} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// Reads `expression` in `timezone` (UTC when `None`).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let zone = match timezone {
            None => chrono_tz::Tz::UTC,
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map_err(|_| ScheduleError::TimeZone(name.to_owned()))?,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression.trim())
            .map_err(|e| ScheduleError::Expression {
                expression: expression.to_owned(),
                reason: describe(&e),
            })?;
        Ok(Self { cron, zone })
    }

    /// The first due time strictly after `after` (`None` for a schedule that never comes).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let at = self.local(after)?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(Timestamp(next.timestamp_millis()))
    }

    /// The latest due time at or before `at`.
    pub fn latest_until(&self, at: Timestamp) -> Option<Timestamp> {
        let local = self.local(at)?;
        let previous = self.cron.find_previous_occurrence(&local, true).ok()?;
        Some(Timestamp(previous.timestamp_millis()))
    }

    fn local(&self, at: Timestamp) -> Option<DateTime<chrono_tz::Tz>> {
        let utc: DateTime<Utc> = DateTime::from_timestamp_millis(at.0)?;
        Some(self.zone.from_utc_datetime(&utc.naive_utc()))
    }
}

/// croner's error in a few lower-case words, without its category prefix.
fn describe(error: &croner::errors::CronError) -> String {
    let text = error.to_string();
    let text = match text.is_empty() {
        true => format!("{error:?}"),
        false => text,
    };
    let words = text
        .split_once(": ")
        .filter(|(category, _)| category.ends_with("error"))
        .map_or(text.as_str(), |(_, rest)| rest)
        .trim_end_matches('.');
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of an RFC 3339 instant.
    fn at(text: &str) -> Timestamp {
        Timestamp(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis(),
        )
    }

    fn show(t: Timestamp) -> String {
        DateTime::from_timestamp_millis(t.0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn five_fields_six_with_seconds_and_nicknames() {
        let next = |expr: &str, zone: Option<&str>| {
            let s = Schedule::parse(expr, zone).unwrap();
            show(s.next_after(at("2026-03-01T10:07:30Z")).unwrap())
        };
        assert_eq!(next("*/15 * * * *", None), "2026-03-01T10:15:00Z");
        assert_eq!(next("*/20 * * * * *", None), "2026-03-01T10:07:40Z");
        assert_eq!(next("@hourly", None), "2026-03-01T11:00:00Z");
        assert_eq!(next("@daily", None), "2026-03-02T00:00:00Z");
        assert_eq!(next("0 9 * * MON", None), "2026-03-02T09:00:00Z");
        assert_eq!(
            next("0 12 * * *", Some("Asia/Tokyo")),
            "2026-03-02T03:00:00Z",
            "noon in Tokyo is 03:00 UTC"
        );
    }

    #[test]
    fn the_latest_due_time_includes_the_instant_itself() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            show(s.latest_until(at("2026-03-01T10:10:00Z")).unwrap()),
            "2026-03-01T10:10:00Z"
        );
        assert_eq!(
            show(s.latest_until(at("2026-03-01T10:14:59Z")).unwrap()),
            "2026-03-01T10:10:00Z"
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "@fortnightly"] {
            let error = Schedule::parse(bad, None).unwrap_err();
            assert!(
                matches!(error, ScheduleError::Expression { .. }),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .to_string(),
            "\"Mars/Olympus\" is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
        );
    }
}
