//! `recjob backtest`: replay a configuration over a date range without publishing anything.
//! Each date with behavior is computed in memory exactly as `run` would (read .. recommend),
//! then evaluated exactly as `run` evaluates: the lists of D-1 (when D-1 had behavior, like a
//! nightly schedule) against D's behavior, beside the popularity baseline with the same
//! exclusions. The result is the mean of every metric over the dates where it has a value, and
//! each date's own values (the same rows over one date), for paired comparisons of settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{NaiveDate, TimeDelta, Utc};
use object_store::path::Path;

use super::run::Previous;
use super::runner::Runner;
use crate::domain::{Lists, dt};
use crate::error::{Context, Result};
use crate::io::{Location, write_parquet};
use crate::stages::embed::cache;
use crate::stages::evaluate::{
    OwnLists, SEGMENT_ALL, SEGMENT_BASELINE, SEGMENT_NEW_USERS, SEGMENT_RETURNING_USERS,
};
use crate::stages::read::behavior_ready;
use crate::stages::recommend::recommend;

/// The mean of one metric over the replayed dates, for the model and the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRow {
    /// The metric.
    pub metric: &'static str,
    /// `all`, or the cold-start segments `new_users` and `returning_users` (model only).
    pub segment: &'static str,
    /// Its cut-off.
    pub k: Option<i32>,
    /// The model's mean.
    pub model: Option<f64>,
    /// The baseline's mean.
    pub baseline: Option<f64>,
    /// Dates that gave the model a value.
    pub days: i64,
}

impl BacktestRow {
    /// model / baseline, when the baseline is positive.
    pub fn lift(&self) -> Option<f64> {
        match (self.model, self.baseline) {
            (Some(m), Some(b)) if b > 0.0 => Some(m / b),
            _ => None,
        }
    }
}

/// A backtest's result.
#[derive(Debug, Clone)]
pub struct Backtest {
    /// First evaluated date.
    pub from: NaiveDate,
    /// Last evaluated date.
    pub to: NaiveDate,
    /// Dates in range with behavior (computed), and those evaluated (D-1 also had behavior).
    pub computed: usize,
    /// Dates evaluated.
    pub evaluated: usize,
    /// Mean of every metric, model and baseline.
    pub rows: Vec<BacktestRow>,
    /// Each computed date's own values, in date order (rows over that date alone).
    pub daily: Vec<(NaiveDate, Vec<BacktestRow>)>,
}

/// Replay `from..=to` (D-1 of `from` is computed too, to evaluate `from`).
pub async fn backtest(runner: &Runner, from: NaiveDate, to: NaiveDate) -> Result<Backtest> {
    let config = &runner.config;
    let root = Location::parse(&config.output.root)?;
    let encoder = runner.encoder()?;
    // Read the embedding cache, never write it; texts embedded here are kept for later dates.
    let mut cached = cache::load(&root, encoder.model_id(), encoder.dim()).await?;
    let mut previous: Option<(NaiveDate, Lists)> = None;
    let mut sums = Sums::new();
    let mut daily = Vec::new();
    let (mut computed, mut evaluated) = (0, 0);
    let mut date = from - TimeDelta::days(1);
    while date <= to {
        if !behavior_ready(config, date).await? {
            tracing::info!(date = %dt(date), "no behavior: not computed");
            previous = None;
            date += TimeDelta::days(1);
            continue;
        }
        let c = runner.compute(date, &root, &cached, false).await?;
        // A backtest keeps D-1's lists whole for D's evaluation (its windows are history).
        let users = c.user_rows();
        let engine = runner.engine().await?;
        let neighbors = c.neighbors.as_ref();
        let lists = recommend(engine, config, &c.candidates, neighbors, &users, &c.data)
            .await?
            .lists;
        for &r in &c.items.new_rows {
            cached.insert(c.items.hashes[r].clone(), c.items.vectors.row(r).to_vec());
        }
        if date >= from {
            computed += 1;
            let prior = previous
                .as_ref()
                .filter(|(d, _)| *d == date - TimeDelta::days(1))
                .map(|(_, lists)| lists);
            evaluated += usize::from(prior.is_some());
            let mut own = OwnLists::new(config, &c.data);
            own.add_lists(&c.data, &lists);
            let rows = c
                .evaluate(config, date, Previous::Computed(prior), &own)
                .await?;
            let mut day = Sums::new();
            for r in rows {
                if let Some(v) = r.value {
                    day.insert((r.metric, r.k, r.segment.clone()), (v, 1));
                    let e = sums.entry((r.metric, r.k, r.segment)).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
            daily.push((date, summarise(&day)));
            tracing::info!(date = %dt(date), evaluated = prior.is_some(), "backtest date done");
        }
        previous = Some((date, lists));
        date += TimeDelta::days(1);
    }
    let rows = summarise(&sums);
    Ok(Backtest {
        from,
        to,
        computed,
        evaluated,
        rows,
        daily,
    })
}

/// Sums and counts of each metric's values by (metric, k, segment).
type Sums = BTreeMap<(&'static str, Option<i32>, String), (f64, i64)>;

/// The mean of each metric of the model, beside the baseline's, in reading order; then the
/// model's means on the cold-start segments (the evaluation has no baseline for them).
fn summarise(sums: &Sums) -> Vec<BacktestRow> {
    let mean = |metric, k, segment: &str| {
        sums.get(&(metric, k, segment.to_string()))
            .map(|(s, n)| (*s / *n as f64, *n))
    };
    let mut rows: Vec<BacktestRow> = [SEGMENT_ALL, SEGMENT_NEW_USERS, SEGMENT_RETURNING_USERS]
        .into_iter()
        .flat_map(|segment| {
            sums.keys()
                .filter(move |(_, _, s)| s == segment)
                .map(move |&(metric, k, _)| {
                    let model = mean(metric, k, segment);
                    BacktestRow {
                        metric,
                        segment,
                        k,
                        model: model.map(|m| m.0),
                        baseline: (segment == SEGMENT_ALL)
                            .then(|| mean(metric, k, SEGMENT_BASELINE).map(|m| m.0))
                            .flatten(),
                        days: model.map_or(0, |m| m.1),
                    }
                })
        })
        .collect();
    let order = |m: &str| {
        [
            "recall",
            "precision",
            "ndcg",
            "mrr",
            "hit_rate",
            "map",
            "eval_user_coverage",
            "catalog_coverage",
            "user_coverage",
            "gini",
            "novelty",
            "new_item_share",
            "spark_recall",
            "spark_precision",
            "spark_ndcg",
            "spark_map",
        ]
        .iter()
        .position(|x| *x == m)
        .unwrap_or(usize::MAX)
    };
    let segment_order =
        |s: &str| usize::from(s != SEGMENT_ALL) + usize::from(s == SEGMENT_RETURNING_USERS);
    rows.sort_by_key(|r| (segment_order(r.segment), order(r.metric), r.k));
    rows
}

impl Backtest {
    /// The table `recjob backtest` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "backtest {}..{}: {} dates with behavior, {} evaluated (lists of D-1 against D)\n{:<32} {:>4} {:>9} {:>9} {:>7} {:>5}\n",
            dt(self.from),
            dt(self.to),
            self.computed,
            self.evaluated,
            "metric",
            "k",
            "model",
            "baseline",
            "lift",
            "days"
        );
        let num = |v: Option<f64>, width: usize, digits: usize| {
            v.map_or(format!("{:>width$}", "-"), |v| {
                format!("{v:>width$.digits$}")
            })
        };
        for r in &self.rows {
            let metric = if r.segment == SEGMENT_ALL {
                r.metric.to_string()
            } else {
                format!("{}/{}", r.metric, r.segment)
            };
            out.push_str(&format!(
                "{:<32} {:>4} {} {} {} {:>5}\n",
                metric,
                r.k.map_or("-".to_string(), |k| k.to_string()),
                num(r.model, 9, 4),
                num(r.baseline, 9, 4),
                r.lift()
                    .map_or(format!("{:>7}", "-"), |l| format!("{:>6.2}x", l)),
                r.days
            ));
        }
        out
    }

    /// Schema of the backtest table.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new("segment", DataType::Utf8, false),
            Field::new("k", DataType::Int32, true),
            Field::new("model", DataType::Float64, true),
            Field::new("baseline", DataType::Float64, true),
            Field::new("lift", DataType::Float64, true),
            Field::new("days", DataType::Int64, false),
            Field::new("from_dt", DataType::Utf8, false),
            Field::new("to_dt", DataType::Utf8, false),
            Field::new("config_hash", DataType::Utf8, false),
        ]))
    }

    /// The table as a batch: every row over the whole range.
    pub fn batch(&self, config_hash: &str) -> Result<RecordBatch> {
        let rows: Vec<_> = self.rows.iter().map(|r| (self.from, self.to, r)).collect();
        batch_of(&rows, config_hash)
    }

    /// The daily table as a batch: each date's rows, with `from_dt` = `to_dt` = the date.
    pub fn daily_batch(&self, config_hash: &str) -> Result<RecordBatch> {
        let rows: Vec<_> = self
            .daily
            .iter()
            .flat_map(|(d, rows)| rows.iter().map(move |r| (*d, *d, r)))
            .collect();
        batch_of(&rows, config_hash)
    }

    /// Write the table to `output` (a file path or URL), or by default to
    /// `<output.root>/backtests/backtest-<from>-<to>-<UTC time>.parquet`, and the daily table to
    /// `daily` when given; returns their URLs.
    pub async fn write(
        &self,
        runner: &Runner,
        output: Option<&str>,
        daily: Option<&str>,
    ) -> Result<(String, Option<String>)> {
        let hash = runner.config.hash();
        let default = || {
            let dir = Location::parse(&runner.config.output.root)?.child("backtests");
            let path = dir.path(&format!(
                "backtest-{}-{}-{}.parquet",
                dt(self.from),
                dt(self.to),
                Utc::now().format("%Y%m%dT%H%M%SZ")
            ));
            Ok((dir, path))
        };
        let table = write_table(output.map_or_else(default, target)?, self.batch(&hash)?).await?;
        let daily = match daily {
            Some(d) => Some(write_table(target(d)?, self.daily_batch(&hash)?).await?),
            None => None,
        };
        Ok((table, daily))
    }
}

/// A file path or URL as its store and the object's path in it.
fn target(url: &str) -> Result<(Location, Path)> {
    let loc = Location::parse(url)?;
    let path = loc.prefix.clone();
    Ok((loc, path))
}

/// Write one batch of [`Backtest::schema`] to an object; returns its URL.
async fn write_table((loc, path): (Location, Path), batch: RecordBatch) -> Result<String> {
    write_parquet(&loc.store, &path, Backtest::schema(), &[batch]).await?;
    Ok(loc.object_url(&path))
}

/// Rows with their date range as a batch of [`Backtest::schema`].
fn batch_of(
    rows: &[(NaiveDate, NaiveDate, &BacktestRow)],
    config_hash: &str,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.2.metric),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.2.segment),
        )),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.2.k))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2.model))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2.baseline))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2.lift()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.days))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| dt(r.0)))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| dt(r.1)))),
        Arc::new(StringArray::from(vec![config_hash; rows.len()])),
    ];
    RecordBatch::try_new(Backtest::schema(), columns).context("backtest table")
}
