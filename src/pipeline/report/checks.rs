//! "Was last night normal?": each indicator of a published date against its typical value (the
//! median of the previous published dates, at most [`TYPICAL_OVER`]), and the rules that need no
//! history (not evaluated, below the baseline, slow GEMM, short lists, an old catalog
//! snapshot). Pure: computed from the manifests and metrics only, for the report and the index.

use chrono::NaiveDate;

use super::data::History;
use crate::domain::dt;
use crate::publish::Manifest;

/// Previous published dates whose median is the typical value.
pub(super) const TYPICAL_OVER: usize = 7;

/// A catalog snapshot older than this many days at the run is flagged.
const STALE_CATALOG_DAYS: i64 = 7;

/// How far from typical an indicator may be before it is unusual.
#[derive(Clone, Copy)]
enum Tolerance {
    /// |today / typical - 1| above this.
    Relative(f64),
    /// |today - typical| above this.
    Absolute(f64),
    /// Both: relative change above the first and absolute change above the second (run time
    /// and memory, whose small values vary a lot in relative terms).
    Both(f64, f64),
}

/// One line of the verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Check {
    /// What is checked.
    pub name: String,
    /// `ok`, `unusual`, `warning`, `note` or `new` (no history to compare with).
    pub status: &'static str,
    /// The date's value, formatted.
    pub today: String,
    /// The previous published date's value.
    pub previous: String,
    /// The median of the previous published dates.
    pub typical: String,
    /// The change against typical, formatted.
    pub change: String,
    /// Why it matters, what to do.
    pub detail: String,
}

/// The verdict of a date.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Verdict {
    /// No indicator unusual, no warning.
    pub normal: bool,
    /// One sentence.
    pub summary: String,
    /// Indicators first, then rules.
    pub checks: Vec<Check>,
}

type Value = fn(&History, &str, &Manifest, i32) -> Option<f64>;

/// The indicators: name, value, tolerance, unit of display.
fn indicators() -> [(&'static str, Value, Tolerance, &'static str); 12] {
    use Tolerance::{Absolute, Both, Relative};
    [
        (
            "recall@K",
            |h, d, _, k| h.value(d, "recall", "all", Some(k)),
            Relative(0.25),
            "ratio",
        ),
        (
            "ndcg@K",
            |h, d, _, k| h.value(d, "ndcg", "all", Some(k)),
            Relative(0.25),
            "ratio",
        ),
        (
            "lift of recall@K over the popularity baseline",
            |h, d, _, k| h.value(d, "recall", "lift_vs_baseline", Some(k)),
            Relative(0.25),
            "x",
        ),
        (
            "catalog coverage@K",
            |h, d, _, k| h.value(d, "catalog_coverage", "all", Some(k)),
            Relative(0.25),
            "ratio",
        ),
        (
            "Gini@K of the lists",
            |h, d, _, k| h.value(d, "gini", "all", Some(k)),
            Absolute(0.1),
            "ratio",
        ),
        (
            "users with a personal list",
            |_, _, m, _| Some(m.users.personal as f64),
            Relative(0.2),
            "count",
        ),
        (
            "users with the popularity list",
            |_, _, m, _| Some(m.users.popular as f64),
            Relative(0.5),
            "count",
        ),
        (
            "recommendation rows",
            |_, _, m, _| m.row_counts.get("recommendations").map(|n| *n as f64),
            Relative(0.2),
            "count",
        ),
        (
            "input rows in the window",
            |_, _, m, _| Some(m.invalid_rows.total_rows as f64),
            Relative(0.3),
            "count",
        ),
        (
            "invalid input rows (share)",
            |_, _, m, _| Some(invalid_share(m)),
            Absolute(0.01),
            "percent",
        ),
        (
            "run time (s)",
            |_, _, m, _| Some(m.timings_s.values().sum()),
            Both(0.5, 60.0),
            "seconds",
        ),
        (
            "peak memory",
            |_, _, m, _| m.peak_memory_bytes.map(|b| b as f64),
            Both(0.3, 512.0 * 1024.0 * 1024.0),
            "bytes",
        ),
    ]
}

/// Invalid rows / window rows.
pub(super) fn invalid_share(m: &Manifest) -> f64 {
    m.invalid_rows.invalid() as f64 / m.invalid_rows.total_rows.max(1) as f64
}

/// `v` for people.
pub(super) fn show(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "–".to_string();
    };
    match unit {
        "count" => format!("{}", v.round() as i64),
        "percent" => format!("{:.2}%", 100.0 * v),
        "seconds" => format!("{v:.1}"),
        "bytes" => format!("{:.0} MiB", v / (1024.0 * 1024.0)),
        "x" => format!("{v:.2}x"),
        _ => format!("{v:.4}"),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Each indicator of `date` against the previous published dates.
fn indicator_checks(history: &History, date: NaiveDate, k: i32) -> Vec<Check> {
    let before: Vec<&(NaiveDate, Manifest)> = history
        .manifests
        .iter()
        .filter(|(d, _)| *d < date)
        .collect();
    let recent = &before[before.len().saturating_sub(TYPICAL_OVER)..];
    let Some(m) = history.manifest(date) else {
        return Vec::new();
    };
    let day = dt(date);
    let mut out = Vec::new();
    for (name, value, tolerance, unit) in indicators() {
        let today = value(history, &day, m, k);
        let past: Vec<f64> = recent
            .iter()
            .filter_map(|(d, pm)| value(history, &dt(*d), pm, k))
            .collect();
        let previous = before
            .last()
            .and_then(|(d, pm)| value(history, &dt(*d), pm, k));
        let typical = median(past);
        let (status, change) = match (today, typical) {
            (None, _) => ("note", "not measured".to_string()),
            (Some(_), None) => ("new", "no history".to_string()),
            (Some(t), Some(p)) => judge(t, p, tolerance),
        };
        if today.is_none() && typical.is_none() {
            continue;
        }
        out.push(Check {
            name: name.replace('K', &k.to_string()),
            status,
            today: show(today, unit),
            previous: show(previous, unit),
            typical: show(typical, unit),
            change,
            detail: match status {
                "unusual" => format!("outside the usual range ({})", describe(tolerance)),
                _ => String::new(),
            },
        });
    }
    out
}

fn describe(t: Tolerance) -> String {
    match t {
        Tolerance::Relative(r) => format!("±{:.0}% of typical", 100.0 * r),
        Tolerance::Absolute(a) => format!("±{a} of typical"),
        Tolerance::Both(r, a) => format!("±{:.0}% and ±{a} of typical", 100.0 * r),
    }
}

/// Status and change of `today` against `typical`.
fn judge(today: f64, typical: f64, tolerance: Tolerance) -> (&'static str, String) {
    match tolerance {
        Tolerance::Relative(r) => {
            if typical == 0.0 {
                let status = if today == 0.0 { "ok" } else { "unusual" };
                return (status, "from 0".to_string());
            }
            let change = today / typical - 1.0;
            let status = if change.abs() > r { "unusual" } else { "ok" };
            (status, format!("{:+.1}%", 100.0 * change))
        }
        Tolerance::Absolute(a) => {
            let change = today - typical;
            let status = if change.abs() > a { "unusual" } else { "ok" };
            (status, format!("{change:+.4}"))
        }
        Tolerance::Both(r, a) => {
            let (status, change) = judge(today, typical, Tolerance::Relative(r));
            let small = (today - typical).abs() <= a;
            (if small { "ok" } else { status }, change)
        }
    }
}

fn rule(name: &str, status: &'static str, today: String, detail: String) -> Check {
    Check {
        name: name.to_string(),
        status,
        today,
        previous: String::new(),
        typical: String::new(),
        change: String::new(),
        detail,
    }
}

/// The rules that need no history.
fn rule_checks(history: &History, date: NaiveDate, k: i32) -> Vec<Check> {
    let Some(m) = history.manifest(date) else {
        return Vec::new();
    };
    let day = dt(date);
    let mut out = Vec::new();
    let recall = history.value(&day, "recall", "all", Some(k));
    if recall.is_none() {
        let why = "the lists of the previous day were not published, or this day had no valid behavior (metrics.definition says which)";
        out.push(rule(
            "evaluation",
            "warning",
            "not evaluated".into(),
            why.into(),
        ));
    }
    if let Some(lift) = history.value(&day, "recall", "lift_vs_baseline", Some(k))
        && lift < 1.0
    {
        let why = format!("the model's recall@{k} is below the popularity baseline's");
        out.push(rule(
            "model vs baseline",
            "warning",
            show(Some(lift), "x"),
            why,
        ));
    }
    if m.model.blas == "gemm crate" {
        let why = format!(
            "GEMM ran on the slow fallback (the encoder about 2x slower): `{}` on Debian/Ubuntu",
            crate::kernels::blas::INSTALL_OPENBLAS
        );
        out.push(rule("BLAS", "warning", m.model.blas.clone(), why));
    }
    if m.users.short > 0 {
        let why = m.users.short_reason.clone().unwrap_or_default();
        out.push(rule(
            "users with fewer than K items",
            "warning",
            m.users.short.to_string(),
            why,
        ));
    }
    if let Ok(catalog) = crate::domain::parse_date(&m.catalog_dt) {
        let age = (date - catalog).num_days();
        if age > STALE_CATALOG_DAYS {
            let why = format!("the newest catalog snapshot on or before the run is {age} days old");
            out.push(rule(
                "catalog snapshot",
                "warning",
                m.catalog_dt.clone(),
                why,
            ));
        }
    }
    out.extend(change_notes(history, date, m));
    out
}

/// Notes: what differs from the previous published date, and gaps.
fn change_notes(history: &History, date: NaiveDate, m: &Manifest) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(previous) = history.previous(date) else {
        return out;
    };
    let p = history.manifest(previous).expect("a published date");
    if p.config_hash != m.config_hash {
        let why = format!(
            "differs from dt={}: changes in the metrics may come from it",
            dt(previous)
        );
        out.push(rule("configuration", "note", short(&m.config_hash), why));
    }
    if p.code_version != m.code_version {
        let why = format!("dt={} ran {}", dt(previous), p.code_version);
        out.push(rule("code version", "note", m.code_version.clone(), why));
    }
    if p.catalog_dt != m.catalog_dt {
        let why = format!("dt={} used the snapshot of {}", dt(previous), p.catalog_dt);
        out.push(rule("catalog snapshot", "note", m.catalog_dt.clone(), why));
    }
    if (date - previous).num_days() > 1 {
        let why = format!("the previous published date is {}", dt(previous));
        out.push(rule("published dates", "note", "gap".into(), why));
    }
    out
}

/// The first 12 characters of a hash.
pub(super) fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// The verdict of `date` at `k`.
pub(super) fn verdict(history: &History, date: NaiveDate, k: i32) -> Verdict {
    let mut checks = indicator_checks(history, date, k);
    checks.extend(rule_checks(history, date, k));
    let issues: Vec<&str> = checks
        .iter()
        .filter(|c| matches!(c.status, "unusual" | "warning"))
        .map(|c| c.name.as_str())
        .collect();
    let summary = if issues.is_empty() {
        let n = checks.iter().filter(|c| c.status == "ok").count();
        format!("Normal: {n} indicators within their usual range, no warning.")
    } else {
        format!("Not normal: {}.", issues.join("; "))
    };
    Verdict {
        normal: issues.is_empty(),
        summary,
        checks,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::pipeline::report::data::Series;

    /// A manifest of `date` with `personal` personal lists and configuration `hash`.
    pub(crate) fn manifest(date: &str, personal: usize, hash: &str) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "run_id": format!("run-{date}"), "dt": date, "published_at": format!("{date}T03:00:00Z"),
            "config_hash": hash, "code_version": "0.1.0",
            "model": {"id": "m", "dir": "d", "pooling": "mean", "max_seq_length": 128, "dim": 4,
                      "device": "cpu", "blas": "libopenblas.so.0 (Haswell)"},
            "engine": "local", "vectors": {"dim": 5, "behavior_factors": 1, "text_weight": 0.5},
            "window": {"first_dt": "2024-01-01", "last_dt": date}, "catalog_dt": "2024-01-01",
            "inputs": [], "tables": [], "row_counts": {"recommendations": personal * 5},
            "invalid_rows": {"total_rows": 1000, "by_reason": {}},
            "embedding": {"items": 10, "embedded": 0, "reused": 10, "texts_per_s": 0.0, "tokens": 0},
            "users": {"active": personal, "personal": personal, "popular": 0, "short": 0, "short_reason": null},
            "candidates": 10, "timings_s": {"read": 1.0}, "config": {}
        }))
        .unwrap()
    }

    /// Published days: (date, personal lists, configuration hash, recall@5).
    pub(crate) fn history(days: &[(&str, usize, &str, f64)]) -> History {
        let mut series = Series::new();
        let mut manifests = Vec::new();
        for (d, personal, hash, recall) in days {
            let key = |s: &str| (d.to_string(), "recall".to_string(), s.to_string(), Some(5));
            series.insert(key("all"), Some(*recall));
            series.insert(key("lift_vs_baseline"), Some(2.0));
            manifests.push((
                crate::domain::parse_date(d).unwrap(),
                manifest(d, *personal, hash),
            ));
        }
        History { manifests, series }
    }

    #[test]
    fn a_night_like_the_previous_ones_is_normal() {
        let h = history(&[
            ("2024-01-02", 100, "a", 0.30),
            ("2024-01-03", 102, "a", 0.32),
            ("2024-01-04", 101, "a", 0.31),
        ]);
        let v = verdict(&h, crate::domain::parse_date("2024-01-04").unwrap(), 5);
        assert!(v.normal, "{v:?}");
        let recall = v.checks.iter().find(|c| c.name == "recall@5").unwrap();
        assert_eq!((recall.status, recall.typical.as_str()), ("ok", "0.3100"));
        assert_eq!(recall.previous, "0.3200");
    }

    #[test]
    fn a_drop_a_config_change_and_a_gap_are_named() {
        let h = history(&[
            ("2024-01-02", 100, "a", 0.30),
            ("2024-01-03", 102, "a", 0.32),
            ("2024-01-05", 40, "b", 0.10),
        ]);
        let v = verdict(&h, crate::domain::parse_date("2024-01-05").unwrap(), 5);
        assert!(!v.normal);
        assert!(
            v.summary.contains("recall@5") && v.summary.contains("users with a personal list"),
            "{}",
            v.summary
        );
        let status = |name: &str| v.checks.iter().find(|c| c.name == name).map(|c| c.status);
        assert_eq!(status("recall@5"), Some("unusual"));
        assert_eq!(status("configuration"), Some("note"));
        assert_eq!(status("published dates"), Some("note"));
        assert_eq!(status("run time (s)"), Some("ok"));
    }

    #[test]
    fn medians_and_tolerances() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(judge(1.2, 1.0, Tolerance::Relative(0.25)).0, "ok");
        assert_eq!(judge(1.3, 1.0, Tolerance::Relative(0.25)).0, "unusual");
        assert_eq!(judge(0.02, 0.0, Tolerance::Absolute(0.01)).0, "unusual");
        // Run time: half as long is unusual only beyond a minute.
        assert_eq!(judge(0.1, 0.2, Tolerance::Both(0.5, 60.0)).0, "ok");
        assert_eq!(judge(400.0, 200.0, Tolerance::Both(0.5, 60.0)).0, "unusual");
    }
}
