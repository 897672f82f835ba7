//! What the coverage and distribution metrics need from a set of lists, gathered one list at a
//! time so that no set of lists is ever held whole: how often each item is recommended at each
//! rank (`exposure`), how many lists have each length (`list_lengths`), and, per cut-off K, the
//! Gini index of item exposure and the mean novelty of the recommended items. The SQL of
//! `sql/evaluate/coverage.sql` and `new_items.sql` reads the two tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::io::{mem_table, register};

/// Exposure, lengths and distribution of a set of lists (module docs).
pub struct ListSummary {
    ks: Vec<usize>,
    /// Position of each item; the window's available items first, in popularity order.
    position: HashMap<String, u32>,
    /// Items recommended that are not among the window's available ones.
    others: Vec<String>,
    /// Share of the window's events of each available item (novelty's p(i)).
    share: Vec<f64>,
    /// Entries per (item position, rank), ranks up to the largest K.
    exposure: HashMap<(u32, u32), i64>,
    /// Lists per length.
    lengths: BTreeMap<usize, i64>,
    /// Per K: the sum of -log2 p(i) over entries within K, and their number.
    surprisal: Vec<(f64, usize)>,
    lists: usize,
}

impl ListSummary {
    /// An empty summary over the window's `popularity` (available items and their events) at
    /// cut-offs `ks`.
    pub fn new(popularity: &[(String, i64)], ks: &[usize]) -> ListSummary {
        let total_events: i64 = popularity.iter().map(|(_, n)| n).sum();
        let denominator = total_events as f64 + popularity.len() as f64;
        ListSummary {
            ks: ks.to_vec(),
            position: popularity
                .iter()
                .enumerate()
                .map(|(p, (i, _))| (i.clone(), p as u32))
                .collect(),
            others: Vec::new(),
            share: popularity
                .iter()
                .map(|(_, n)| (*n as f64 + 1.0) / denominator)
                .collect(),
            exposure: HashMap::new(),
            lengths: BTreeMap::new(),
            surprisal: vec![(0.0, 0); ks.len()],
            lists: 0,
        }
    }

    /// Add one list (item ids in rank order). Novelty sums in the order lists are added.
    pub fn add<'s>(&mut self, items: impl IntoIterator<Item = &'s str>) {
        let max_k = self.ks.iter().copied().max().unwrap_or(0);
        let mut n = 0;
        for (r, item) in items.into_iter().enumerate() {
            n += 1;
            if r >= max_k {
                continue;
            }
            let p = self.position_of(item);
            *self.exposure.entry((p, r as u32 + 1)).or_default() += 1;
            let Some(&share) = self.share.get(p as usize) else {
                continue;
            };
            for (k, s) in self.ks.iter().zip(self.surprisal.iter_mut()) {
                if r < *k {
                    s.0 -= share.log2();
                    s.1 += 1;
                }
            }
        }
        *self.lengths.entry(n).or_default() += 1;
        self.lists += 1;
    }

    fn position_of(&mut self, item: &str) -> u32 {
        if let Some(&p) = self.position.get(item) {
            return p;
        }
        let p = (self.share.len() + self.others.len()) as u32;
        self.others.push(item.to_string());
        p
    }

    /// Lists added.
    pub fn lists(&self) -> usize {
        self.lists
    }

    /// Gini index of item exposure within `k` over the window's available items, and the mean
    /// novelty (-log2 p(i)) of the entries within `k` (README.md "Metrics"); `None` without
    /// entries.
    pub fn distribution(&self, k: usize) -> (Option<f64>, Option<f64>) {
        let mut counts = vec![0u64; self.share.len()];
        for (&(p, r), n) in &self.exposure {
            if (r as usize) <= k && (p as usize) < counts.len() {
                counts[p as usize] += *n as u64;
            }
        }
        counts.sort_unstable();
        let n = counts.len() as f64;
        let sum: f64 = counts.iter().map(|v| *v as f64).sum();
        let gini = (sum > 0.0).then(|| {
            counts
                .iter()
                .enumerate()
                .map(|(i, v)| (2.0 * (i as f64 + 1.0) - n - 1.0) * *v as f64)
                .sum::<f64>()
                / (n * sum)
        });
        let novelty = self.ks.iter().position(|x| *x == k).and_then(|i| {
            let (s, n) = self.surprisal[i];
            (n > 0).then(|| s / n as f64)
        });
        (gini, novelty)
    }

    /// Register `exposure (item_id, rank, n_users)` and `list_lengths (n, n_users)` in `ctx`.
    pub fn register(&self, ctx: &SessionContext, popularity: &[(String, i64)]) -> Result<()> {
        let id = |p: u32| match popularity.get(p as usize) {
            Some((i, _)) => i.as_str(),
            None => self.others[p as usize - popularity.len()].as_str(),
        };
        let mut exposure: Vec<(&str, u32, i64)> = self
            .exposure
            .iter()
            .map(|(&(p, r), n)| (id(p), r, *n))
            .collect();
        exposure.sort_unstable();
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("rank", DataType::Int32, false),
            Field::new("n_users", DataType::Int64, false),
        ]));
        let table = mem_table(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(exposure.iter().map(|e| e.0))),
                Arc::new(Int32Array::from_iter_values(
                    exposure.iter().map(|e| e.1 as i32),
                )),
                Arc::new(Int64Array::from_iter_values(exposure.iter().map(|e| e.2))),
            ],
        )?;
        register(ctx, "exposure", table)?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("n_users", DataType::Int64, false),
        ]));
        let table = mem_table(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(
                    self.lengths.keys().map(|n| *n as i64),
                )),
                Arc::new(Int64Array::from_iter_values(self.lengths.values().copied())),
            ],
        )?;
        register(ctx, "list_lengths", table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items a (9 events), b (0), c (0); lists at K=1: [a], [a] -> counts a=2, b=0, c=0.
    /// Gini over x = [0, 0, 2] (sorted): sum((2i - n - 1) x_i) / (n sum x) = (2*3 - 3 - 1) * 2 / (3 * 2) = 2/3.
    /// Novelty: p(a) = (9 + 1) / (9 + 3) = 5/6, -log2(5/6) = 0.2630344.
    #[test]
    fn gini_and_novelty_by_hand() {
        let pop = vec![
            ("a".to_string(), 9),
            ("b".to_string(), 0),
            ("c".to_string(), 0),
        ];
        let mut s = ListSummary::new(&pop, &[1, 2]);
        assert_eq!(s.distribution(2), (None, None));
        s.add(["a", "b"]);
        s.add(["a", "c", "z"]);
        let (gini, novelty) = s.distribution(1);
        assert!((gini.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((novelty.unwrap() - 0.2630344).abs() < 1e-6);
        // K=2: counts a=2, b=1, c=1 -> x = [1, 1, 2]: ((-2)*1 + 0*1 + 2*2) / (3*4) = 1/6.
        let (gini, _) = s.distribution(2);
        assert!((gini.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            (s.lists(), s.lengths.get(&3), s.lengths.get(&2)),
            (2, Some(&1), Some(&1))
        );
    }
}
