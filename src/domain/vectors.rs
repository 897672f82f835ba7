//! Vectors by id: one type for item vectors, text embeddings and user vectors (row-major `f32`,
//! one row per id), and the two operations every score rests on: L2 normalisation and a dot
//! product with a fixed summation order.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::Result;

/// `ids.len()` vectors of dimension `dim`, row-major in `flat`; row `r` belongs to `ids[r]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vectors {
    /// One id per row.
    pub ids: Vec<String>,
    /// `ids.len() x dim` values, row-major.
    pub flat: Vec<f32>,
    /// Values per row.
    pub dim: usize,
}

impl Vectors {
    /// Rows `flat` (`ids.len() x dim`) of `ids`.
    pub fn new(ids: Vec<String>, flat: Vec<f32>, dim: usize) -> Vectors {
        assert_eq!(
            flat.len(),
            ids.len() * dim,
            "one vector per id: this is a bug"
        );
        Vectors { ids, flat, dim }
    }

    /// The vector of row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.flat[r * self.dim..(r + 1) * self.dim]
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Row of each id.
    pub fn index(&self) -> HashMap<&str, u32> {
        self.ids
            .iter()
            .enumerate()
            .map(|(r, id)| (id.as_str(), r as u32))
            .collect()
    }

    /// The row of each of `ids` here, if it has one (a window's users or catalog items to the
    /// rows of vectors that hold some of them).
    pub fn rows_of(&self, ids: &[String]) -> Vec<Option<u32>> {
        let index = self.index();
        ids.iter()
            .map(|id| index.get(id.as_str()).copied())
            .collect()
    }

    /// The given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> Vectors {
        let mut flat = Vec::with_capacity(rows.len() * self.dim);
        for &r in rows {
            flat.extend_from_slice(self.row(r));
        }
        Vectors::new(
            rows.iter().map(|&r| self.ids[r].clone()).collect(),
            flat,
            self.dim,
        )
    }

    /// The same ids with other vectors (`ids.len() x dim`).
    pub fn with_vectors(self, flat: Vec<f32>, dim: usize) -> Vectors {
        Vectors::new(self.ids, flat, dim)
    }
}

/// Users' vectors, with their valid events in the window (`user_embeddings`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserVectors {
    /// Unit vectors, by user id (sorted).
    pub vectors: Vectors,
    /// Valid events of each user in the window.
    pub n_events: Vec<i64>,
}

/// Users whose vectors are made at a time where every user's are read (top-K, whose lists are
/// audited and staged per chunk): 65,536 x 514 dimensions is 135 MB.
pub const USERS_PER_CHUNK: usize = 65_536;

/// Users' vectors as the stages after the hybrid stage read them: a range of users at a time,
/// so a night never needs every user's vector at once (a million users' would be 2 GB).
pub trait UserRows: Sync {
    /// The users, sorted by id.
    fn ids(&self) -> &[String];
    /// The vectors' dimension.
    fn dim(&self) -> usize;
    /// Users `range` (positions in [`UserRows::ids`]) with their vectors and events.
    fn chunk(&self, range: Range<usize>) -> Result<UserVectors>;
}

impl UserRows for UserVectors {
    fn ids(&self) -> &[String] {
        &self.vectors.ids
    }

    fn dim(&self) -> usize {
        self.vectors.dim
    }

    fn chunk(&self, range: Range<usize>) -> Result<UserVectors> {
        let dim = self.vectors.dim;
        Ok(UserVectors {
            vectors: Vectors::new(
                self.vectors.ids[range.clone()].to_vec(),
                self.vectors.flat[range.start * dim..range.end * dim].to_vec(),
                dim,
            ),
            n_events: self.n_events[range].to_vec(),
        })
    }
}

/// `0..n` in consecutive ranges of `size` (the last one shorter).
pub fn ranges(n: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n)
        .step_by(size.max(1))
        .map(move |s| s..(s + size).min(n))
}

/// L2-normalise each row in place; returns the index of the first zero or non-finite row.
pub fn normalize_rows(flat: &mut [f32], dim: usize) -> Result<(), usize> {
    for (r, row) in flat.chunks_exact_mut(dim).enumerate() {
        let norm = row
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Err(r);
        }
        let inv = (1.0 / norm) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
    Ok(())
}

/// Dot product with a fixed summation order (f64 accumulation), so a published score can be
/// reproduced from the published vectors regardless of how the kernel blocked the work. The
/// order: [`DOT_LANES`] partial sums (lane l takes elements l, l + 8, ...), added up in lane
/// order, then the elements after the last full group of 8. The partial sums are independent,
/// so they overlap; one running sum waits on every addition in turn (the neighbour term's scale
/// takes a dot product per candidate with a sum: BENCHMARKS.md "The neighbour term").
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ga, gb) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let (ta, tb) = (ga.remainder(), gb.remainder());
    let mut lanes = [0f64; DOT_LANES];
    for (x, y) in ga.zip(gb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += f64::from(*x) * f64::from(*y);
        }
    }
    let mut sum = lanes.iter().sum::<f64>();
    for (x, y) in ta.iter().zip(tb) {
        sum += f64::from(*x) * f64::from(*y);
    }
    sum as f32
}

/// The partial sums of [`dot`].
pub const DOT_LANES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects_zero_rows() {
        let mut v = vec![3.0, 4.0, 0.0, 0.0];
        assert_eq!(normalize_rows(&mut v, 2), Err(1));
        let mut v = vec![3.0, 4.0];
        normalize_rows(&mut v, 2).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn dot_sums_in_its_documented_order() {
        // 19 values: two groups of 8 and a tail of 3. Elements 0 and 8 (both lane 0) are 1e20
        // and -1e20: in lane order they cancel before the small ones are added, so the sum is
        // exact; one running sum would lose the small values added while it held 1e20.
        let mut a: Vec<f32> = (0..19).map(|i| 1.0 + i as f32 * 0.25).collect();
        a[0] = 1e20;
        a[8] = -1e20;
        let b = vec![1.0f32; 19];
        let p = |i: usize| f64::from(a[i]) * f64::from(b[i]);
        let lanes: Vec<f64> = (0..DOT_LANES).map(|l| p(l) + p(l + 8)).collect();
        let mut want = lanes.iter().sum::<f64>();
        for i in 16..19 {
            want += p(i);
        }
        let running = (0..19).map(p).sum::<f64>();
        assert_eq!(dot(&a, &b).to_bits(), (want as f32).to_bits());
        assert_ne!(
            dot(&a, &b),
            running as f32,
            "the order matters for these values"
        );
        // The shorter slice sets the length; a tail alone is summed in order.
        assert_eq!(dot(&a[1..4], &b), (p(1) + p(2) + p(3)) as f32);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn rows_select_and_index() {
        let v = Vectors::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            2,
        );
        assert_eq!(v.row(1), &[3.0, 4.0]);
        assert_eq!(v.index()["c"], 2);
        let s = v.select(&[2, 0]);
        assert_eq!(s.ids, vec!["c", "a"]);
        assert_eq!(s.flat, vec![5.0, 6.0, 1.0, 2.0]);
    }
}
