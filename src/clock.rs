//! Timestamps as the gstack producers write them: ISO-8601 UTC with milliseconds and `Z`
//! (JavaScript's `Date.prototype.toISOString`).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_iso() -> String {
    iso(now())
}

/// Parses any RFC 3339 timestamp; `None` for anything else (callers decide what an
/// unreadable time means, usually "treat as stale").
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// "59s", "3m", "2h", "4days": an age in its largest whole unit, for the status table.
pub fn short_age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = u64::try_from((now - since).num_seconds()).unwrap_or(0);
    let unit = match secs {
        0..60 => 1,
        60..3600 => 60,
        3600..86_400 => 3600,
        _ => 86_400,
    };
    humantime::format_duration(std::time::Duration::from_secs(secs - secs % unit)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_javascript_iso_strings() {
        let t = parse_iso("2026-05-17T08:37:01.123Z").unwrap();
        assert_eq!(iso(t), "2026-05-17T08:37:01.123Z");
        assert!(parse_iso("yesterday").is_none());
    }

    #[test]
    fn ages_are_short() {
        let t = parse_iso("2026-05-17T00:00:00Z").unwrap();
        assert_eq!(short_age(t, t + chrono::Duration::seconds(59)), "59s");
        assert_eq!(short_age(t, t + chrono::Duration::minutes(61)), "1h");
        assert_eq!(short_age(t, t + chrono::Duration::days(3)), "3days");
        assert_eq!(short_age(t + chrono::Duration::days(1), t), "0s");
    }
}
