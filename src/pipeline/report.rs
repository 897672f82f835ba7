//! A human-readable report per published date, `reports/dt=D/report.html`: the key metrics of
//! the date against the popularity baseline, and an SVG chart of their trend over every published
//! date. Built from the published `metrics` table (through `recjob sql`'s session), after the
//! date is published; it is a view of published data, so a failure to write it is logged and
//! does not fail the run. `recjob evaluate` rebuilds it.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray};
use chrono::NaiveDate;
use object_store::{ObjectStoreExt, PutPayload};

use super::runner::Runner;
use crate::config::Config;
use crate::domain::dt;
use crate::error::{Context, Result};
use crate::io::{Location, strings};
use crate::publish::{query, session};

/// (evaluated date, metric, segment, k) -> value, from the published metrics.
type Series = BTreeMap<(String, String, String, Option<i32>), Option<f64>>;

async fn published_metrics(config: &Config) -> Result<Series> {
    let ctx = session(config).await?;
    let sql = "SELECT CAST(evaluated_dt AS VARCHAR) AS d, metric, segment, k, value FROM metrics";
    let mut out = Series::new();
    for b in query(&ctx, sql, &[]).await? {
        let (d, m, s) = (strings(&b, 0), strings(&b, 1), strings(&b, 2));
        let k = b.column(3).as_primitive::<arrow::datatypes::Int32Type>();
        let v = b.column(4).as_primitive::<arrow::datatypes::Float64Type>();
        for r in 0..b.num_rows() {
            let key = (
                d[r].clone(),
                m[r].clone(),
                s[r].clone(),
                k.is_valid(r).then(|| k.value(r)),
            );
            out.insert(key, v.is_valid(r).then(|| v.value(r)));
        }
    }
    Ok(out)
}

impl Runner {
    /// Write the date's HTML report; a failure is logged, never fatal (the data is published).
    pub(crate) async fn report(&self, date: NaiveDate) {
        match write_report(&self.config, date).await {
            Ok(url) => tracing::info!(report = %url, "report written"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not write the report"),
        }
    }
}

/// Write the report of `date`; returns its URL.
async fn write_report(config: &Config, date: NaiveDate) -> Result<String> {
    let root = Location::parse(&config.output.root)?;
    let series = published_metrics(config).await?;
    let ks = config.metric_ks();
    let k = ks
        .iter()
        .copied()
        .filter(|k| *k <= 20)
        .max()
        .or(ks.first().copied())
        .unwrap_or(config.topk.k) as i32;
    let html = render(&series, &dt(date), k);
    let path = root.path(&format!("reports/dt={}/report.html", dt(date)));
    root.store
        .put(&path, PutPayload::from(html.into_bytes()))
        .await
        .context(format!("writing {}", root.object_url(&path)))?;
    Ok(root.object_url(&path))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.4}"))
}

/// The HTML of one date's report (pure: tested without any I/O).
fn render(series: &Series, date: &str, k: i32) -> String {
    let mut html = metrics_table(series, date, k);
    html.push_str(&trend(series, k));
    html.push_str("</body></html>\n");
    html
}

fn value(series: &Series, d: &str, m: &str, s: &str, k: Option<i32>) -> Option<f64> {
    series
        .get(&(d.to_string(), m.to_string(), s.to_string(), k))
        .copied()
        .flatten()
}

/// The page's head and the table of the date's metrics against the baseline.
fn metrics_table(series: &Series, date: &str, k: i32) -> String {
    let get = |d: &str, m: &str, s: &str, k: Option<i32>| value(series, d, m, s, k);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>recjob report dt={date}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\
         <h1>recjob report for dt={date}</h1>\
         <p>Model: recommendations published for the previous day, evaluated on this day's behavior. \
         Baseline: the popularity list with the same exclusions. Definitions: the <code>definition</code> \
         column of the <code>metrics</code> table.</p>"
    );
    let ks: Vec<i32> = series
        .keys()
        .filter(|(d, _, _, k)| d == date && k.is_some())
        .filter_map(|(_, _, _, k)| *k)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    html.push_str(
        "<table><tr><th>metric</th><th>K</th><th>model</th><th>baseline</th><th>lift</th></tr>",
    );
    for metric in [
        "recall",
        "ndcg",
        "precision",
        "mrr",
        "hit_rate",
        "catalog_coverage",
        "user_coverage",
    ] {
        for &kk in &ks {
            let (m, b) = (
                get(date, metric, "all", Some(kk)),
                get(date, metric, "baseline_popular", Some(kk)),
            );
            let lift = match (m, b) {
                (Some(m), Some(b)) if b > 0.0 => format!("{:.2}x", m / b),
                _ => "–".into(),
            };
            let _ = write!(
                html,
                "<tr><td>{metric}@{kk}</td><td>{kk}</td><td>{}</td><td>{}</td><td>{lift}</td></tr>",
                fmt(m),
                fmt(b)
            );
        }
    }
    let _ = write!(
        html,
        "<tr><td>eval_user_coverage</td><td></td><td>{}</td><td></td><td></td></tr></table>",
        fmt(get(date, "eval_user_coverage", "all", None))
    );
    if get(date, "recall", "all", Some(k)).is_none() {
        let reason = "not evaluated (see the metrics table's definition column)";
        let _ = write!(html, "<p><b>This date was {reason}.</b></p>");
    }

    html
}

/// An SVG chart of recall@k and ndcg@k, model vs baseline, over the published dates.
fn trend(series: &Series, k: i32) -> String {
    let get = |d: &str, m: &str, s: &str, k: Option<i32>| value(series, d, m, s, k);
    let mut html = String::new();
    let dates: Vec<String> = series
        .keys()
        .map(|(d, ..)| d.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let lines = [
        ("recall", "all", "#1f77b4", "model recall"),
        ("recall", "baseline_popular", "#aec7e8", "baseline recall"),
        ("ndcg", "all", "#d62728", "model ndcg"),
        ("ndcg", "baseline_popular", "#ff9896", "baseline ndcg"),
    ];
    let max = lines
        .iter()
        .flat_map(|(m, s, ..)| dates.iter().filter_map(move |d| get(d, m, s, Some(k))))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (w, h, pad) = (640.0, 240.0, 40.0);
    let x = |i: usize| {
        pad + (w - 2.0 * pad)
            * if dates.len() > 1 {
                i as f64 / (dates.len() - 1) as f64
            } else {
                0.5
            }
    };
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let _ = write!(
        html,
        "<h2>Trend at K={k}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"recall and ndcg at K={k} over dates\">\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"{}\" font-size=\"10\">{max:.3}</text><text x=\"4\" y=\"{}\" font-size=\"10\">0</text>",
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        pad + 4.0,
        h - pad
    );
    for (i, (metric, segment, colour, label)) in lines.iter().enumerate() {
        let points: Vec<String> = dates
            .iter()
            .enumerate()
            .filter_map(|(j, d)| {
                get(d, metric, segment, Some(k)).map(|v| format!("{:.1},{:.1}", x(j), y(v)))
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                html,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{label}@{k}</title></polyline>",
                points.join(" ")
            );
            for p in &points {
                let (px, py) = p.split_once(',').expect("x,y");
                let _ = write!(
                    html,
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>"
                );
            }
        }
        let _ = write!(
            html,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{label}@{k}</text>",
            w - 150.0,
            8.0 + 14.0 * i as f64,
            w - 136.0,
            17.0 + 14.0 * i as f64
        );
    }
    if let (Some(first), Some(last)) = (dates.first(), dates.last()) {
        let _ = write!(
            html,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"10\">{first}</text><text x=\"{}\" y=\"{}\" font-size=\"10\">{last}</text>",
            h - 8.0,
            w - pad - 60.0,
            h - 8.0
        );
    }
    html.push_str("</svg>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_values_lift_and_a_trend() {
        let mut s = Series::new();
        for (d, m, b) in [
            ("2024-01-04", None, None),
            ("2024-01-05", Some(0.3), Some(0.1)),
            ("2024-01-06", Some(0.5), Some(0.25)),
        ] {
            s.insert((d.into(), "recall".into(), "all".into(), Some(5)), m);
            s.insert(
                (
                    d.into(),
                    "recall".into(),
                    "baseline_popular".into(),
                    Some(5),
                ),
                b,
            );
        }
        let html = render(&s, "2024-01-06", 5);
        assert!(
            html.contains(
                "<td>recall@5</td><td>5</td><td>0.5000</td><td>0.2500</td><td>2.00x</td>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<svg") && html.matches("<polyline").count() == 2,
            "{html}"
        );
        assert!(html.contains("2024-01-04</text>") && html.contains("2024-01-06</text>"));
        let first = render(&s, "2024-01-04", 5);
        assert!(first.contains("was not evaluated"), "{first}");
    }
}
