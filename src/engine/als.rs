//! Implicit ALS on a cluster: each half-sweep of [`kernels::als`](crate::kernels::als) is a plan
//! whose tasks solve a part of the rows each against the fixed side, staged as Parquet and read
//! and prepared once per executor process ([`HalfSweep`](crate::kernels::HalfSweep)):
//!
//! - the users' rows are staged once, a file at a time (`engine.partitions` files or more);
//!   the users' half-sweep is `sql/engine/als.sql`, a user a row (`recjob_als`), and its results
//!   go straight to staged files, the users' factors that the items' half-sweep reads;
//! - the items' half-sweep is `sql/engine/als_items.sql`, a range of items a row
//!   (`recjob_als_items`): each task gathers its items' rows from the staged users' rows (once
//!   per executor process), so the transpose is never made in one place.
//!
//! The driver holds the item factors and one file's worth of users' rows or results, never
//! every user's rows or factors. The same bits as in one process: a row's solve depends only on
//! its observations, in the same order (the users' as staged, each item's in user order), and on
//! the fixed side, which every task prepares from the same factors the same way.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float32Builder, ListBuilder, RecordBatch, UInt32Array, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt32Type};
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;

use super::plans::{SqlEngine, Staged, check_all};
use super::udf::factor_rows;
use crate::config::HybridConfig;
use crate::domain::{USERS_PER_CHUNK, ranges};
use crate::error::{Context, Error, Result};
use crate::io::{self, Location};
use crate::kernels::{Rows, initial_items};

const ALS_SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/engine/als.sql"));
const ALS_ITEMS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/engine/als_items.sql"
));

/// `rows` (rows `first..`) as staged ALS rows: `row, other, weight`.
fn rows_batch(first: usize, rows: &Rows) -> Result<RecordBatch> {
    let mut other = ListBuilder::new(UInt32Builder::new());
    let mut weight = ListBuilder::new(Float32Builder::new());
    for r in 0..rows.len() {
        let (o, w) = rows.row(r);
        other.values().append_slice(o);
        other.append(true);
        weight.values().append_slice(w);
        weight.append(true);
    }
    let (other, weight) = (other.finish(), weight.finish());
    let schema = Schema::new(vec![
        Field::new("row", DataType::UInt32, false),
        Field::new("other", other.data_type().clone(), false),
        Field::new("weight", weight.data_type().clone(), false),
    ]);
    let ids = UInt32Array::from_iter_values((first..first + rows.len()).map(|r| r as u32));
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(ids), Arc::new(other), Arc::new(weight)],
    )
    .context("staging ALS rows")
}

/// Factors `flat` (`f` a row, rows `0..`) as a staged fixed side: `row, factor`.
fn factors_batch(flat: &[f32], f: usize) -> Result<RecordBatch> {
    let mut factor = ListBuilder::new(Float32Builder::new());
    for x in flat.chunks_exact(f) {
        factor.values().append_slice(x);
        factor.append(true);
    }
    let factor = factor.finish();
    let schema = Schema::new(vec![
        Field::new("row", DataType::UInt32, false),
        Field::new("factor", factor.data_type().clone(), false),
    ]);
    let ids = UInt32Array::from_iter_values(0..factor.len() as u32);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(factor)])
        .context("staging ALS factors")
}

/// Batches written under `dir` as they come, about [`USERS_PER_CHUNK`] rows a file.
struct Parts {
    dir: Location,
    pending: Vec<RecordBatch>,
    rows: usize,
    files: usize,
}

impl Parts {
    fn new(dir: Location) -> Parts {
        Parts {
            dir,
            pending: Vec::new(),
            rows: 0,
            files: 0,
        }
    }

    async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        if self.rows >= USERS_PER_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(first) = self.pending.first() else {
            return Ok(());
        };
        let path = self.dir.path(&format!("part-{:05}.parquet", self.files));
        io::write_parquet(&self.dir.store, &path, first.schema(), &self.pending).await?;
        self.files += 1;
        self.pending.clear();
        self.rows = 0;
        Ok(())
    }

    /// Writes what is pending.
    async fn finish(mut self) -> Result<()> {
        self.flush().await
    }
}

/// Each maximal run of consecutive rows of a result batch, as `(first row, its factors)`.
fn runs<'a>(
    rows: &'a [u32],
    values: &'a [f32],
    f: usize,
) -> impl Iterator<Item = (usize, &'a [f32])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start == rows.len() {
            return None;
        }
        let mut end = start + 1;
        while end < rows.len() && rows[end] == rows[end - 1].wrapping_add(1) {
            end += 1;
        }
        let run = (rows[start] as usize, &values[start * f..end * f]);
        start = end;
        Some(run)
    })
}

impl SqlEngine {
    fn sweep_params(
        fixed: &Location,
        n_fixed: usize,
        params: &HybridConfig,
    ) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("fixed", ScalarValue::from(fixed.url().as_str())),
            ("n_fixed", ScalarValue::from(n_fixed as i64)),
            ("factors", ScalarValue::from(params.factors as i64)),
            ("alpha", ScalarValue::from(params.alpha)),
            ("lambda", ScalarValue::from(params.regularization)),
        ]
    }

    /// [`crate::engine::Engine::als`] on the cluster (module docs).
    pub(super) async fn als(
        &self,
        n_users: usize,
        rows: &(dyn Fn(Range<usize>) -> Result<Rows> + Sync),
        n_items: usize,
        params: &HybridConfig,
        users: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
    ) -> Result<Vec<f32>> {
        let staged = self.stage("als");
        let result = self
            .sweeps(&staged.dir, n_users, rows, n_items, params, users)
            .await;
        staged.remove().await;
        result
    }

    async fn sweeps(
        &self,
        dir: &Location,
        n_users: usize,
        rows: &(dyn Fn(Range<usize>) -> Result<Rows> + Sync),
        n_items: usize,
        params: &HybridConfig,
        users: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
    ) -> Result<Vec<f32>> {
        let f = params.factors;
        // `engine.partitions` files or more (a task each), a chunk of users at most.
        let per_file = |n: usize| n.div_ceil(self.partitions.max(1)).clamp(1, USERS_PER_CHUNK);
        let user_rows = dir.child("user_rows");
        for (p, range) in ranges(n_users, per_file(n_users)).enumerate() {
            let batch = rows_batch(range.start, &rows(range)?)?;
            let path = user_rows.path(&format!("part-{p:05}.parquet"));
            io::write_parquet(&user_rows.store, &path, batch.schema(), &[batch]).await?;
        }
        if n_users == 0 {
            // Nothing to plan: no user, so every factor is zero after the first sweep.
            return Ok(vec![0.0; n_items * f]);
        }
        let item_ranges: Vec<Range<usize>> = ranges(n_items, per_file(n_items)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("first", DataType::UInt32, false),
            Field::new("count", DataType::UInt32, false),
        ]));
        let item_parts = self
            .write_table(dir, "item_parts", schema.clone(), item_ranges.len(), |ps| {
                let first = ps.iter().map(|&p| item_ranges[p].start as u32);
                let count = ps.iter().map(|&p| item_ranges[p].len() as u32);
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(UInt32Array::from_iter_values(first)),
                        Arc::new(UInt32Array::from_iter_values(count)),
                    ],
                )
                .context("staging ALS item ranges")
            })
            .await?;
        let mut items = initial_items(n_items, f);
        let progress =
            crate::progress::Progress::new("behavior (ALS)", "sweeps", params.iterations);
        for sweep in 0..params.iterations {
            let fixed = Staged {
                dir: dir.child(&format!("items-{sweep}")),
            };
            let batch = factors_batch(&items, f)?;
            let path = fixed.dir.path("part-00000.parquet");
            io::write_parquet(&fixed.dir.store, &path, batch.schema(), &[batch]).await?;
            let solved = Staged {
                dir: dir.child(&format!("users-{sweep}")),
            };
            let last = sweep + 1 == params.iterations;
            let sides = (&fixed.dir, &solved.dir);
            self.user_sweep(&user_rows, sides, n_users, n_items, params, last, users)
                .await?;
            // (After a failure the stage's folder goes whole.)
            fixed.remove().await;
            let sweep_params = Self::sweep_params(&solved.dir, n_users, params);
            let user_rows = ScalarValue::from(user_rows.url());
            items = self
                .item_sweep(&item_parts, &item_ranges, user_rows, sweep_params, f)
                .await?;
            solved.remove().await;
            progress.inc(1);
        }
        Ok(items)
    }

    /// The users' half-sweep against the item factors staged at `fixed`: the results staged
    /// under `solved` as they come and, the `last` time, handed to `users`.
    #[allow(clippy::too_many_arguments)]
    async fn user_sweep(
        &self,
        user_rows: &Location,
        (fixed, solved): (&Location, &Location),
        n_users: usize,
        n_items: usize,
        params: &HybridConfig,
        last: bool,
        users: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
    ) -> Result<()> {
        let f = params.factors;
        let what = format!("engine {}: ALS user sweep", self.url);
        let bad = |e: String| Error::infra(&what, e);
        let mut seen = vec![false; n_users];
        let mut parts = Parts::new(solved.clone());
        let sweep_params = Self::sweep_params(fixed, n_items, params);
        let mut stream = self
            .stream(ALS_SQL, "engine_als_rows", &user_rows.url(), sweep_params)
            .await?;
        while let Some(batch) = stream.try_next().await.context(&what)? {
            let (ids, values) = factor_rows(&batch, f)
                .ok_or_else(|| bad(format!("results are not rows of {f} factors")))?;
            for &r in ids {
                match seen.get_mut(r as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return Err(bad(format!("user row {r} of {n_users}: returned twice"))),
                }
            }
            if last {
                for (first, x) in runs(ids, values, f) {
                    users(first, x)?;
                }
            }
            parts.push(batch).await?;
        }
        parts.finish().await?;
        check_all(&self.url, "ALS user rows", &seen)
    }

    /// The items' half-sweep, a range of items (`item_ranges`, staged at `item_parts`) a task:
    /// the item factors.
    async fn item_sweep(
        &self,
        item_parts: &str,
        item_ranges: &[Range<usize>],
        user_rows: ScalarValue,
        mut sweep_params: Vec<(&'static str, ScalarValue)>,
        f: usize,
    ) -> Result<Vec<f32>> {
        let n_items = item_ranges.last().map_or(0, |r| r.end);
        let mut items = vec![0f32; n_items * f];
        sweep_params.insert(0, ("user_rows", user_rows));
        let out = self
            .run(ALS_ITEMS_SQL, "engine_als_parts", item_parts, sweep_params)
            .await?;
        let mut seen = vec![false; item_ranges.len()];
        for batch in &out {
            let firsts = batch.column(0).as_primitive::<UInt32Type>();
            let lists = batch.column(1).as_list::<i32>();
            for (r, &first) in firsts.values().iter().enumerate() {
                let p = item_ranges.partition_point(|range| range.start < first as usize);
                let values = lists.value(r);
                let values = values.as_primitive::<Float32Type>().values();
                match (item_ranges.get(p), seen.get_mut(p)) {
                    (Some(range), Some(s))
                        if range.start == first as usize
                            && !*s
                            && values.len() == range.len() * f =>
                    {
                        *s = true;
                        items[range.start * f..range.end * f].copy_from_slice(values);
                    }
                    _ => {
                        return Err(Error::infra(
                            format!("engine {}: ALS item sweep", self.url),
                            format!(
                                "items from {first}: returned twice, or not {f} factors an item"
                            ),
                        ));
                    }
                }
            }
        }
        check_all(&self.url, "ALS item ranges", &seen)?;
        Ok(items)
    }
}
