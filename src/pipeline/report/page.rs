//! The report's HTML: what the templates (`templates/`, embedded in the binary and rendered with
//! `minijinja`, HTML-escaped) receive, computed from the history and one date's data. Pure: no
//! I/O, so it is tested on hand-made data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use minijinja::{Environment, context};
use serde::Serialize;

use super::charts::{self, Line};
use super::checks::{self, TYPICAL_OVER, show, verdict};
use super::data::{Changes, DateData, History, InputRows, ItemCounts};
use crate::domain::dt;
use crate::error::{Error, Result};
use crate::publish::Manifest;

/// Published dates a trend shows.
pub(super) const TREND_DATES: usize = 30;

const RANKING: [&str; 6] = ["recall", "ndcg", "precision", "mrr", "hit_rate", "map"];
const OWN_LISTS: [&str; 5] = [
    "catalog_coverage",
    "user_coverage",
    "gini",
    "novelty",
    "new_item_share",
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, text) in [
        ("style.css", include_str!("../../../templates/style.css")),
        (
            "report.html",
            include_str!("../../../templates/report.html"),
        ),
        ("index.html", include_str!("../../../templates/index.html")),
        (
            "unavailable.html",
            include_str!("../../../templates/unavailable.html"),
        ),
    ] {
        env.add_template(name, text)
            .expect("the embedded templates parse: this is a bug");
    }
    env
}

fn render(name: &str, ctx: minijinja::Value) -> Result<String> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::infra(format!("rendering {name}"), e))
}

/// The page that stands in for the report of `date` when it could not be built: the manifest
/// links it, and the previous run's report must not stay there.
pub(super) fn unavailable(date: NaiveDate, error: &str) -> Result<String> {
    render(
        "unavailable.html",
        context! { date => dt(date), error => error },
    )
}

/// The report of `date`.
pub(super) fn report(
    history: &History,
    data: &DateData,
    date: NaiveDate,
    k: i32,
) -> Result<String> {
    let m = history
        .manifest(date)
        .ok_or_else(|| Error::Input(format!("dt={} is not published", dt(date))))?;
    let day = dt(date);
    let v = verdict(history, date, k);
    let warnings: Vec<checks::Check> = v
        .checks
        .iter()
        .filter(|c| matches!(c.status, "warning" | "note"))
        .cloned()
        .collect();
    let (previous, next) = neighbours(history, date);
    let link = |d: Option<NaiveDate>| d.map(|d| format!("../dt={}/report.html", dt(d)));
    let (inputs, inputs_error) = split(&data.inputs);
    let (items, items_error) = split(&data.items);
    let (changes, changes_error) = split(&data.changes);
    let (samples, samples_error) = split(&data.samples);
    let ks = ks_of(history, &day);
    let (timings, total_seconds) = timings(m);
    let ctx = context! {
        date => day, k, typical_over => TYPICAL_OVER, trend_dates => TREND_DATES,
        previous_dt => previous.map(dt), previous_link => link(previous),
        next_dt => next.map(dt), next_link => link(next),
        verdict => v, warnings,
        run => run_rows(m), model => model_rows(m),
        inputs => input_rows(m, inputs.unwrap_or(&Vec::new())), inputs_error,
        invalid => invalid(m), users => user_rows(m), outputs => output_rows(m),
        timings, total_seconds, peak_memory => show(m.peak_memory_bytes.map(|b| b as f64), "bytes"),
        ks => ks.clone(), metric_groups => metric_groups(history, &day, &ks),
        trends => trends(history, date, k),
        items_error, concentration => concentration(items.map(Vec::as_slice)),
        gini => gini_rows(history, &day, &ks),
        distribution => distribution(items.map(Vec::as_slice)),
        changes => changes.cloned().flatten().map(changes_view), changes_error,
        samples => samples.map(|s| sample_rows(s.as_slice())).unwrap_or_default(), samples_error,
        code_version => m.code_version.clone(), built_at => chrono::Utc::now().to_rfc3339(),
    };
    render("report.html", ctx)
}

/// The value, or the error message.
fn split<T>(r: &std::result::Result<T, String>) -> (Option<&T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.clone())),
    }
}

/// The published dates before and after `date`.
fn neighbours(history: &History, date: NaiveDate) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let next = history
        .manifests
        .iter()
        .map(|(d, _)| *d)
        .find(|d| *d > date);
    (history.previous(date), next)
}

/// The K values of `day`'s metrics.
fn ks_of(history: &History, day: &str) -> Vec<i32> {
    let ks: BTreeSet<i32> = history
        .series
        .keys()
        .filter(|(d, ..)| d == day)
        .filter_map(|(.., k)| *k)
        .collect();
    ks.into_iter().collect()
}

fn run_rows(m: &Manifest) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("run id", m.run_id.clone()),
        ("published at", m.published_at.clone()),
        (
            "training window",
            format!("{} .. {}", m.window.first_dt, m.window.last_dt),
        ),
        ("catalog snapshot", m.catalog_dt.clone()),
        ("engine", m.engine.clone()),
        ("configuration hash", checks::short(&m.config_hash)),
        ("code version", m.code_version.clone()),
    ];
    if let Some(at) = &m.metrics_evaluated_at {
        rows.push(("metrics re-evaluated at", at.clone()));
    }
    rows
}

fn model_rows(m: &Manifest) -> Vec<(&'static str, String)> {
    vec![
        ("encoder", m.model.id.clone()),
        ("device", m.model.device.clone()),
        ("BLAS (GEMM)", m.model.blas.clone()),
        (
            "pooling, tokens kept",
            format!("{}, {}", m.model.pooling, m.model.max_seq_length),
        ),
        ("text dimension", m.model.dim.to_string()),
        (
            "vectors scored",
            format!(
                "dim {}, {} behavior factors, text weight {}",
                m.vectors.dim, m.vectors.behavior_factors, m.vectors.text_weight
            ),
        ),
        (
            "texts embedded / reused",
            format!(
                "{} / {} ({:.0} texts/s)",
                m.embedding.embedded, m.embedding.reused, m.embedding.texts_per_s
            ),
        ),
    ]
}

#[derive(Serialize)]
struct InputView {
    input: String,
    dt: String,
    files: usize,
    bytes: u64,
    rows: String,
}

/// The manifest's input files per partition, with the rows the query counted.
fn input_rows(m: &Manifest, counted: &[InputRows]) -> Vec<InputView> {
    let mut by_partition: BTreeMap<(String, String), (usize, u64)> = BTreeMap::new();
    for f in &m.inputs {
        let e = by_partition
            .entry((f.table.clone(), f.dt.clone()))
            .or_default();
        e.0 += 1;
        e.1 += f.size_bytes;
    }
    by_partition
        .into_iter()
        .map(|((input, dt), (files, bytes))| {
            let rows = counted
                .iter()
                .find(|c| c.input == input && c.dt == dt)
                .map_or("–".to_string(), |c| c.rows.to_string());
            InputView {
                input,
                dt,
                files,
                bytes,
                rows,
            }
        })
        .collect()
}

fn invalid(m: &Manifest) -> minijinja::Value {
    let total = m.invalid_rows.total_rows;
    let share = |n: u64| show(Some(n as f64 / total.max(1) as f64), "percent");
    let reasons: Vec<(String, u64, String)> = m
        .invalid_rows
        .by_reason
        .iter()
        .map(|(r, n)| (r.clone(), *n, share(*n)))
        .collect();
    context! {
        total, invalid => m.invalid_rows.invalid(), share => share(m.invalid_rows.invalid()), reasons,
    }
}

fn user_rows(m: &Manifest) -> Vec<(String, String)> {
    let u = &m.users;
    let mut rows = vec![
        (
            "active users (valid events in the window)".to_string(),
            u.active.to_string(),
        ),
        ("personal lists".to_string(), u.personal.to_string()),
        (
            "popularity lists (no usable history)".to_string(),
            u.popular.to_string(),
        ),
        (
            "users with fewer than K items".to_string(),
            u.short.to_string(),
        ),
        ("catalog items".to_string(), m.embedding.items.to_string()),
        (
            "candidate (available) items".to_string(),
            m.candidates.to_string(),
        ),
    ];
    if let Some(why) = &u.short_reason {
        rows.push(("why fewer than K".to_string(), why.clone()));
    }
    rows
}

fn output_rows(m: &Manifest) -> Vec<(String, u64)> {
    m.row_counts.iter().map(|(t, n)| (t.clone(), *n)).collect()
}

#[derive(Serialize)]
struct Timing {
    stage: String,
    seconds: String,
    percent: String,
    width: u32,
}

/// Stages in the order they ran (the manifest keeps them by name), and the total. ("users" is
/// a stage of runs published before the hybrid stage built the users' text vectors itself.)
fn timings(m: &Manifest) -> (Vec<Timing>, String) {
    const ORDER: [&str; 9] = [
        "read", "prepare", "embed", "users", "similar", "behavior", "topk", "write", "evaluate",
    ];
    let total: f64 = m.timings_s.values().sum();
    let position = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(ORDER.len());
    let mut stages: Vec<(&String, &f64)> = m.timings_s.iter().collect();
    stages.sort_by_key(|(s, _)| position(s));
    let rows = stages
        .into_iter()
        .map(|(stage, s)| {
            let share = s / total.max(1e-9);
            Timing {
                stage: stage.clone(),
                seconds: format!("{s:.1}"),
                percent: format!("{:.0}%", 100.0 * share),
                width: (200.0 * share).round() as u32,
            }
        })
        .collect();
    (rows, format!("{total:.1}"))
}

#[derive(Serialize)]
struct MetricRowView {
    segment: String,
    metric: String,
    /// Per K: model, baseline, lift.
    cells: Vec<(String, String, String)>,
}

#[derive(Serialize)]
struct MetricGroup {
    title: &'static str,
    rows: Vec<MetricRowView>,
}

/// The metrics of `day` for every K and segment, against the baseline where it was evaluated.
fn metric_groups(history: &History, day: &str, ks: &[i32]) -> Vec<MetricGroup> {
    let segments: BTreeSet<String> = history
        .series
        .keys()
        .filter(|(d, ..)| d == day)
        .map(|(_, _, s, _)| s.clone())
        .filter(|s| !matches!(s.as_str(), "baseline_popular" | "lift_vs_baseline"))
        .collect();
    let mut ordered: Vec<String> = ["all", "new_users", "returning_users"]
        .iter()
        .map(|s| s.to_string())
        .filter(|s| segments.contains(s))
        .collect();
    ordered.extend(
        segments
            .iter()
            .filter(|s| !ordered.contains(s))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let row = |segment: &str, metric: &str| {
        let ranking = RANKING.contains(&metric);
        let cells: Vec<(String, String, String)> = ks
            .iter()
            .map(|&k| {
                let model = history.value(day, metric, segment, Some(k));
                let baseline = (segment == "all")
                    .then(|| history.value(day, metric, "baseline_popular", Some(k)))
                    .flatten();
                let lift = match (model, baseline) {
                    (Some(m), Some(b)) if b > 0.0 && ranking => format!("{:.2}x", m / b),
                    _ => "–".into(),
                };
                (show(model, "ratio"), show(baseline, "ratio"), lift)
            })
            .collect();
        let present = cells.iter().any(|c| c.0 != "–");
        present.then(|| MetricRowView {
            segment: segment.to_string(),
            metric: metric.to_string(),
            cells,
        })
    };
    let ranking: Vec<MetricRowView> = ordered
        .iter()
        .flat_map(|s| RANKING.iter().filter_map(|m| row(s, m)))
        .collect();
    let own: Vec<MetricRowView> = OWN_LISTS.iter().filter_map(|m| row("all", m)).collect();
    [
        (
            "Ranking: yesterday's lists on this day's behavior, per segment",
            ranking,
        ),
        (
            "This day's own lists (coverage, concentration, novelty)",
            own,
        ),
    ]
    .into_iter()
    .filter(|(_, rows)| !rows.is_empty())
    .map(|(title, rows)| MetricGroup { title, rows })
    .collect()
}

/// The trend charts over the last [`TREND_DATES`] published dates up to `date`.
fn trends(history: &History, date: NaiveDate, k: i32) -> Vec<String> {
    let shown: Vec<&(NaiveDate, Manifest)> = history
        .manifests
        .iter()
        .filter(|(d, _)| *d <= date)
        .collect();
    let shown = &shown[shown.len().saturating_sub(TREND_DATES)..];
    let dates: Vec<String> = shown.iter().map(|(d, _)| dt(*d)).collect();
    let changed: Vec<usize> = (1..shown.len())
        .filter(|&i| shown[i].1.config_hash != shown[i - 1].1.config_hash)
        .collect();
    let metric = |m: &str, s: &str| Line {
        label: format!("{} {m}@{k}", if s == "all" { "model" } else { "baseline" }),
        values: dates
            .iter()
            .map(|d| history.value(d, m, s, Some(k)))
            .collect(),
    };
    let run = |label: &str, f: &dyn Fn(&Manifest) -> Option<f64>| Line {
        label: label.to_string(),
        values: shown.iter().map(|(_, m)| f(m)).collect(),
    };
    let specs = [
        (
            format!("Ranking at K={k}: model vs popularity baseline"),
            vec![
                metric("recall", "all"),
                metric("recall", "baseline_popular"),
                metric("ndcg", "all"),
                metric("ndcg", "baseline_popular"),
            ],
        ),
        (
            format!("Own lists at K={k}: coverage and concentration"),
            vec![
                metric("catalog_coverage", "all"),
                metric("catalog_coverage", "baseline_popular"),
                metric("gini", "all"),
                metric("gini", "baseline_popular"),
            ],
        ),
        (
            "Run time (minutes) and personal lists (thousands)".to_string(),
            vec![
                run("run time (min)", &|m| {
                    Some(m.timings_s.values().sum::<f64>() / 60.0)
                }),
                run("personal lists (k)", &|m| {
                    Some(m.users.personal as f64 / 1000.0)
                }),
            ],
        ),
    ];
    specs
        .iter()
        .map(|(title, lines)| charts::trend(title, &dates, lines, &changed).unwrap_or_else(|e| e))
        .collect()
}

/// Gini and coverage of the model's and the baseline's own lists, per K.
fn gini_rows(history: &History, day: &str, ks: &[i32]) -> Vec<(i32, String, String, String)> {
    ks.iter()
        .map(|&k| {
            let v = |m: &str, s: &str| show(history.value(day, m, s, Some(k)), "ratio");
            (
                k,
                v("gini", "all"),
                v("gini", "baseline_popular"),
                v("catalog_coverage", "all"),
            )
        })
        .filter(|(_, a, b, c)| [a, b, c].iter().any(|v| *v != "–"))
        .collect()
}

/// One sentence on how much of the lists the most popular items take.
fn concentration(items: Option<&[ItemCounts]>) -> String {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return String::new();
    };
    let pairs: Vec<(u64, u64)> = items.iter().map(|i| (i.events, i.recs)).collect();
    let (events, recs) = charts::lorenz(&pairs);
    let at = |curve: &[(f64, f64)]| {
        curve
            .iter()
            .find(|(x, _)| *x >= 10.0)
            .map_or(0.0, |(_, y)| *y)
    };
    let never = items.iter().filter(|i| i.recs == 0).count();
    format!(
        "The 10% most popular catalog items take {:.1}% of the recommendations ({:.1}% of the window's events); {} of {} catalog items are in no list.",
        at(&recs),
        at(&events),
        never,
        items.len()
    )
}

/// The distribution charts.
fn distribution(items: Option<&[ItemCounts]>) -> Vec<String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Vec::new();
    };
    let recs: Vec<u64> = items.iter().map(|i| i.recs).collect();
    let pairs: Vec<(u64, u64)> = items.iter().map(|i| (i.events, i.recs)).collect();
    [
        charts::histogram(&charts::bins(&recs)),
        charts::long_tail(&pairs),
    ]
    .into_iter()
    .map(|svg| svg.unwrap_or_else(|e| e))
    .collect()
}

fn changes_view(c: Changes) -> minijinja::Value {
    let share = |n: u64| show(Some(n as f64 / c.users_both.max(1) as f64), "percent");
    let top = |v: &[(String, String, u64)]| v.iter().take(10).cloned().collect::<Vec<_>>();
    context! {
        previous_dt => c.previous_dt.clone(), users_both => c.users_both,
        changed_items_share => share(c.users_changed_items),
        changed_order_share => share(c.users_changed_order),
        users_new => c.users_new, users_gone => c.users_gone,
        n_entering => c.entering.len(), n_leaving => c.leaving.len(),
        entering => top(&c.entering), leaving => top(&c.leaving),
    }
}

fn sample_rows(samples: &[super::data::Sample]) -> Vec<minijinja::Value> {
    samples
        .iter()
        .map(|s| {
            let rows: Vec<(u64, &str, &str, String, String, String, String)> = s
                .rows
                .iter()
                .map(|(rank, item, title, score, repeat, neighbor)| {
                    let model = score - repeat - neighbor;
                    let [score, model, repeat, neighbor] =
                        [score, &model, repeat, neighbor].map(|x| format!("{x:.4}"));
                    (*rank, item.as_str(), title.as_str(), score, model, repeat, neighbor)
                })
                .collect();
            context! { user_id => s.user_id.clone(), source => s.source.clone(), n_events => s.n_events, rows }
        })
        .collect()
}

#[derive(Serialize)]
struct IndexRow {
    date: String,
    link: String,
    normal: bool,
    verdict: String,
    recall: String,
    lift: String,
    personal: usize,
    seconds: String,
    config: String,
    config_changed: bool,
}

/// The index over every published date, newest first.
pub(super) fn index(history: &History, k: i32) -> Result<String> {
    let mut rows = Vec::new();
    for (i, (date, m)) in history.manifests.iter().enumerate() {
        let day = dt(*date);
        let v = verdict(history, *date, k);
        let issues = v
            .checks
            .iter()
            .filter(|c| matches!(c.status, "unusual" | "warning"))
            .count();
        rows.push(IndexRow {
            link: format!("dt={day}/report.html"),
            normal: v.normal,
            verdict: if v.normal {
                "normal".into()
            } else {
                format!("{issues} issue(s)")
            },
            recall: show(history.value(&day, "recall", "all", Some(k)), "ratio"),
            lift: show(
                history.value(&day, "recall", "lift_vs_baseline", Some(k)),
                "x",
            ),
            personal: m.users.personal,
            seconds: format!("{:.1}", m.timings_s.values().sum::<f64>()),
            config: checks::short(&m.config_hash),
            config_changed: i > 0 && history.manifests[i - 1].1.config_hash != m.config_hash,
            date: day,
        });
    }
    rows.reverse();
    let trend = history
        .manifests
        .last()
        .map(|(last, _)| trends(history, *last, k).swap_remove(0));
    render("index.html", context! { k, dates => rows, trend })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::report::checks::tests::history;

    #[test]
    fn the_stand_in_page_says_why_escaped() {
        let date = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        let html = unavailable(date, "file <x>.parquet: not Parquet").unwrap();
        assert!(html.contains("recjob 2024-01-02") && html.contains("could not be built"));
        assert!(
            html.contains("file &lt;x&gt;.parquet: not Parquet"),
            "{html}"
        );
        assert!(html.contains("recjob report --date 2024-01-02"));
    }

    #[test]
    fn the_page_has_every_section_and_escapes_what_it_shows() {
        let h = history(&[("2024-01-04", 10, "a", 0.2), ("2024-01-05", 11, "a", 0.25)]);
        let data = DateData {
            inputs: Err("behavior partition deleted".into()),
            items: Ok(vec![
                ItemCounts { events: 5, recs: 3 },
                ItemCounts { events: 1, recs: 0 },
            ]),
            changes: Ok(Some(Changes {
                previous_dt: "2024-01-04".into(),
                users_both: 4,
                users_changed_items: 1,
                entering: vec![("i9".into(), "<b>Mug</b>".into(), 2)],
                ..Changes::default()
            })),
            samples: Ok(vec![super::super::data::Sample {
                user_id: "u1".into(),
                source: "personal".into(),
                n_events: Some(3),
                rows: vec![(1, "i9".into(), "Tea & cake".into(), 0.875, 0.25, 0.125)],
            }]),
        };
        let date = crate::domain::parse_date("2024-01-05").unwrap();
        let html = report(&h, &data, date, 5).unwrap();
        for id in [
            "verdict",
            "summary",
            "metrics",
            "trends",
            "distribution",
            "changes",
            "samples",
        ] {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
        }
        assert!(
            html.contains("&lt;b&gt;Mug") && !html.contains("<b>Mug"),
            "titles are escaped"
        );
        assert!(html.contains("Tea &amp; cake"), "titles are escaped");
        assert!(
            html.contains("<td>0.8750</td><td>0.5000</td><td>0.2500</td><td>0.1250</td>"),
            "score = model part + repeat + neighbour"
        );
        assert!(
            html.contains("behavior partition deleted"),
            "a part that cannot be read says why"
        );
        assert!(
            html.contains("<b>25.00%</b> got a new item"),
            "day over day"
        );
        assert!(
            html.contains("../dt=2024-01-04/report.html"),
            "link to the previous date"
        );
        assert!(html.matches("<svg").count() >= 5);
        let index = index(&h, 5).unwrap();
        assert!(
            index.contains("href=\"dt=2024-01-05/report.html\"")
                && index.contains("href=\"dt=2024-01-04/report.html\"")
        );
    }
}
