//! Logical dates and training windows. A run of date D reads the behavior partitions of its
//! window `[D - lookback_days + 1, D]`; dates are written `YYYY-MM-DD` everywhere (partition
//! names, manifests, logs).

use chrono::{NaiveDate, TimeDelta};

use crate::error::{Error, Result};

/// A date as its partition value, `YYYY-MM-DD`.
pub fn dt(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Parse a `YYYY-MM-DD` date as given on the command line or in a partition name (strict: no
/// other spelling of the same date is accepted).
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| dt(*d) == s)
        .ok_or_else(|| Error::Config(format!("malformed date {s:?}: expected YYYY-MM-DD")))
}

/// Inclusive range of behavior partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First day read.
    pub first: NaiveDate,
    /// Last day read: the run date.
    pub last: NaiveDate,
}

impl Window {
    /// The training window of a run of `date`.
    pub fn ending(date: NaiveDate, lookback_days: u32) -> Window {
        Window {
            first: date - TimeDelta::days(i64::from(lookback_days) - 1),
            last: date,
        }
    }

    /// Seconds since the epoch at the end (exclusive) of the window's last day, UTC.
    pub fn end_epoch(&self) -> f64 {
        let end = self.last.succ_opt().expect("date in range: this is a bug");
        end.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2011-11-30").is_ok());
        for bad in [
            "2011-11-31",
            "2011-1-3",
            "20111130",
            "yesterday",
            "2011-11-30T00:00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
