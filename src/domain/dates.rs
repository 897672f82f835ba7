//! Logical dates and training windows. A run of date D reads the behavior partitions of its
//! window `[D - lookback_days + 1, D]`; dates are written `YYYY-MM-DD` everywhere (partition
//! names, manifests, logs).

use std::collections::BTreeMap;

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

    /// The window cut into runs of consecutive days whose `rows` (rows per day; a day not in
    /// the map has none) sum to at most `max_rows`; a day over `max_rows` is a run of its own.
    /// In date order, covering every day once.
    pub fn chunks(&self, rows: &BTreeMap<NaiveDate, u64>, max_rows: u64) -> Vec<Window> {
        let mut out: Vec<Window> = Vec::new();
        let mut held = 0u64;
        let mut day = self.first;
        while day <= self.last {
            let n = rows.get(&day).copied().unwrap_or(0);
            match out.last_mut() {
                Some(chunk) if held.saturating_add(n) <= max_rows => {
                    chunk.last = day;
                    held += n;
                }
                _ => {
                    out.push(Window {
                        first: day,
                        last: day,
                    });
                    held = n;
                }
            }
            day += TimeDelta::days(1);
        }
        out
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

    #[test]
    fn chunks_hold_consecutive_days_up_to_the_row_budget() {
        let d = |s| parse_date(s).unwrap();
        let w = |a, b| Window {
            first: d(a),
            last: d(b),
        };
        let window = w("2024-03-01", "2024-03-07");
        let rows = BTreeMap::from([
            (d("2024-03-01"), 40),
            (d("2024-03-02"), 60),
            (d("2024-03-03"), 1),
            (d("2024-03-05"), 250),
            (d("2024-03-06"), 30),
            (d("2024-03-09"), 999),
        ]);
        assert_eq!(
            window.chunks(&rows, 100),
            vec![
                w("2024-03-01", "2024-03-02"),
                w("2024-03-03", "2024-03-04"),
                w("2024-03-05", "2024-03-05"),
                w("2024-03-06", "2024-03-07"),
            ]
        );
        assert_eq!(window.chunks(&rows, u64::MAX), vec![window]);
        assert_eq!(window.chunks(&BTreeMap::new(), 0), vec![window]);
    }
}
