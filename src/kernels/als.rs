//! Implicit-feedback alternating least squares (Hu, Koren & Volinsky, 2008): user and item
//! factors from (user, item, weight) observations.
//!
//! ALS minimises, over user factors x_u and item factors y_i (f dimensions each),
//!
//!   sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)
//!
//! where p_ui = 1 when u has a positive weight w_ui on item i (else 0) and c_ui = 1 + alpha w_ui.
//! Each half-sweep replaces every row by its exact minimiser given the other side,
//!
//!   x_u = A_u^-1 b_u,  A_u = B + sum_{i in u} alpha w_ui y_i y_i',  B = Y'Y + lambda I,
//!   b_u = sum_{i in u} (1 + alpha w_ui) y_i,
//!
//! solved directly, in f64 from the f32 factors:
//!
//! - B once per half-sweep: Y'Y through [`dgemm`] over fixed blocks of rows, summed in block
//!   order; its Cholesky factor B = L L'; and the whitened rows w_i = L^-1 y_i (one more GEMM
//!   with the explicit inverse of L). The whitened rows are held as a table while it takes at
//!   most [`WHITE_TABLE_BYTES`] (every side of a catalog-sized problem); a larger fixed side (a
//!   million users, when items are solved) is whitened row by row as the rows are gathered,
//!   which costs one GEMM of the gathered rows per solve and keeps the memory flat in users.
//! - A row with n < f observations (most users; items in the tail): with V the n x f matrix of
//!   rows sqrt(alpha w_ui) w_i, A_u = L (I + V'V) L', and by the Woodbury identity
//!   x_u = L'^-1 (g - V' (I + V V')^-1 V g), g = sum (1 + alpha w_ui) w_i: an n x n Cholesky
//!   solve, O(n^2 f + n^3) instead of O(n f^2 + f^3).
//! - A row with n >= f observations: A_u itself, B plus the rank-n update V'V of the gathered
//!   rows sqrt(alpha w_ui) y_i through [`dgemm`] in blocks of [`BLOCK`], then an f x f Cholesky
//!   solve.
//!
//! Memory: the users' observations come grouped by user ([`Rows`], 8 bytes each, built by the
//! caller straight from its window); the items' grouping is their transpose, made for each item
//! half-sweep once the users' half-sweep's whitened table is freed, so the two never coexist.
//!
//! Accuracy: every row equals the f64 dense solve of its normal equations (built from the same
//! f32 factors) to a relative error |x - x*| / |x* | <= 1e-6 before the f32 rounding of the
//! stored factor (relative 6e-8); the unit tests assert it at f = 128 on both paths.
//!
//! Deterministic: the initial item factors depend only on the item's position and the seed, the
//! Gram blocks are fixed and summed in order, and every row is solved independently by one
//! thread, so the thread count does not change a bit.

use rayon::prelude::*;

use super::blas::{self, dgemm, dsyrk};
use crate::config::HybridConfig;

/// Learned factors, row-major: `n_users x f` and `n_items x f`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Factors per row.
    pub f: usize,
    /// User factors, `n_users x f`.
    pub users: Vec<f32>,
    /// Item factors, `n_items x f`.
    pub items: Vec<f32>,
}

/// One observed (user, item, decayed weight > 0) triple, by row index: what the tests group
/// into [`Rows`].
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation {
    /// User row.
    pub(crate) user: u32,
    /// Item row.
    pub(crate) item: u32,
    /// Decayed weight, > 0.
    pub(crate) weight: f32,
}

/// Implicit ALS over the observations of `by_user` (one row per user) on `n_items` items:
/// `params.iterations` sweeps, each solving every user, then every item (module docs).
pub fn als(by_user: Rows, n_items: usize, params: &HybridConfig) -> Factors {
    fit(by_user, n_items, params, WHITE_TABLE_BYTES)
}

/// [`als`], holding whitened rows as a table up to `table_bytes`.
fn fit(by_user: Rows, n_items: usize, params: &HybridConfig, table_bytes: usize) -> Factors {
    let (n_users, f) = (by_user.len(), params.factors);
    let mut items = initial_items(n_items, f);
    let mut users = vec![0f32; n_users * f];
    if f == 0 {
        return Factors { f, users, items };
    }
    let progress = crate::progress::Progress::new("behavior (ALS)", "sweeps", params.iterations);
    for _ in 0..params.iterations {
        let fixed = HalfSweep::with_table(items, params, table_bytes);
        fixed.solve(&by_user, &mut users);
        items = fixed.into_factors();
        // The items' rows are made for their half-sweep only, after the users' half-sweep's table
        // of whitened item rows is freed: never both at once (0.1 GB less at a million users).
        let by_item = by_user.transpose(n_items);
        let fixed = HalfSweep::with_table(users, params, table_bytes);
        fixed.solve(&by_item, &mut items);
        users = fixed.into_factors();
        progress.inc(1);
    }
    Factors { f, users, items }
}

/// The item factors ALS starts from (`n_items x f`): they depend only on the position.
pub fn initial_items(n_items: usize, f: usize) -> Vec<f32> {
    (0..n_items * f)
        .map(|n| initial(n as u64) / (f as f32).sqrt())
        .collect()
}

/// The largest table of whitened rows a half-sweep holds (f64): 128 MiB, 131,072 rows at
/// f = 128. A larger fixed side is whitened as its rows are gathered (module docs).
const WHITE_TABLE_BYTES: usize = 128 << 20;

/// Observations grouped by row (compressed sparse rows): each row's entries are the other
/// side's rows and their decayed weights (> 0), in the order they were added. The callers build
/// the users' rows straight from the window ([`Rows::push_row`]); the items' are their
/// [`Rows::transpose`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Row r's entries are `start[r]..start[r + 1]`.
    start: Vec<usize>,
    /// The other side's row of each entry.
    other: Vec<u32>,
    /// Its weight.
    weight: Vec<f32>,
}

impl Rows {
    /// No rows yet, with room for `entries` entries.
    pub fn with_capacity(entries: usize) -> Rows {
        Rows {
            start: vec![0],
            other: Vec::with_capacity(entries),
            weight: Vec::with_capacity(entries),
        }
    }

    /// Append a row: (other side's row, weight) entries.
    pub fn push_row(&mut self, entries: impl IntoIterator<Item = (u32, f32)>) {
        for (other, weight) in entries {
            self.other.push(other);
            self.weight.push(weight);
        }
        self.start.push(self.other.len());
    }

    /// The same entries grouped by the other side's `n` rows, each row's entries in the order of
    /// this side's rows.
    pub fn transpose(&self, n: usize) -> Rows {
        let mut start = vec![0usize; n + 1];
        for &o in &self.other {
            start[o as usize + 1] += 1;
        }
        for r in 0..n {
            start[r + 1] += start[r];
        }
        let mut next = start.clone();
        let (mut other, mut weight) = (vec![0u32; self.other.len()], vec![0f32; self.other.len()]);
        for r in 0..self.len() {
            let (cols, ws) = self.row(r);
            for (&c, &w) in cols.iter().zip(ws) {
                let at = &mut next[c as usize];
                other[*at] = r as u32;
                weight[*at] = w;
                *at += 1;
            }
        }
        Rows {
            start,
            other,
            weight,
        }
    }

    /// The users' rows of `n_users` from observations in any order (each row's in input order).
    #[cfg(test)]
    pub(crate) fn of_users(n_users: usize, observations: &[Observation]) -> Rows {
        let mut by_user = vec![Vec::new(); n_users];
        for o in observations {
            by_user[o.user as usize].push((o.item, o.weight));
        }
        let mut rows = Rows::with_capacity(observations.len());
        for row in by_user {
            rows.push_row(row);
        }
        rows
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.start.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row r's entries: the other side's rows and their weights.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.start[r]..self.start[r + 1];
        (&self.other[range.clone()], &self.weight[range])
    }
}

/// Observations per block of one rank-n update [`dgemm`] on the direct path.
const BLOCK: usize = 256;

/// Rows with fewer observations than this are solved through the Woodbury identity, the others
/// directly (module docs): about where the two cost the same.
fn woodbury_below(f: usize) -> usize {
    f
}

/// One half-sweep's fixed side `y` and what every row's solve shares, computed once from it
/// (module docs). The same fixed side gives every row the same bits wherever it is solved: in
/// this process ([`als`]) or on a cluster's executors, a part of the rows each (the engine's
/// `recjob_als`).
pub struct HalfSweep {
    f: usize,
    /// The fixed side's factors, `n x f`.
    y: Vec<f32>,
    /// B = Y'Y + lambda I, f x f (upper triangle significant).
    b: Vec<f64>,
    /// Its Cholesky factor L (lower, row-major): B = L L'.
    l: Vec<f64>,
    /// L^-1 (lower, row-major).
    inv: Vec<f64>,
    /// The whitened rows L^-1 y_i, `n x f`, when held as a table; `None`: whitened as gathered.
    white: Option<Vec<f64>>,
    alpha: f64,
    lambda: f64,
}

/// Per-thread buffers of the row solves.
struct Scratch {
    /// Gathered rows: n x f (Woodbury) or BLOCK x f (direct).
    v: Vec<f64>,
    /// The Woodbury path's gathered rows whitened, n x f (without a table of whitened rows).
    white: Vec<f64>,
    /// The system: n x n (Woodbury) or f x f (direct).
    m: Vec<f64>,
    /// Right-hand side and solution, f.
    g: Vec<f64>,
    /// The Woodbury path's inner right-hand side and solution, n.
    t: Vec<f64>,
    /// A copy of the system while LAPACK factors it.
    backup: Vec<f64>,
}

impl HalfSweep {
    /// The fixed side `y` (`n x params.factors`, row-major).
    pub fn new(y: Vec<f32>, params: &HybridConfig) -> HalfSweep {
        HalfSweep::with_table(y, params, WHITE_TABLE_BYTES)
    }

    /// [`HalfSweep::new`], holding the whitened rows as a table when they take at most
    /// `table_bytes`.
    fn with_table(y: Vec<f32>, params: &HybridConfig, table_bytes: usize) -> HalfSweep {
        let (f, alpha, lambda) = (params.factors, params.alpha, params.regularization);
        let mut b = gram(&y, f);
        for d in 0..f {
            b[d * f + d] += lambda;
        }
        let mut u = b.clone();
        cholesky(&mut u, f, lambda, &mut vec![0.0; f * f]);
        let l = transpose(&u, f);
        let inv = lower_inverse(&l, f);
        let white = (y.len() * size_of::<f64>() <= table_bytes).then(|| {
            let mut white = Vec::new();
            whiten(&y, &inv, f, &mut white);
            white
        });
        HalfSweep {
            f,
            y,
            b,
            l,
            inv,
            white,
            alpha,
            lambda,
        }
    }

    /// Replace every row of `out` (`rows.len() x f`) by its exact minimiser given the fixed side
    /// (module docs), rows in parallel.
    pub fn solve(&self, rows: &Rows, out: &mut [f32]) {
        let f = self.f;
        assert_eq!(out.len(), rows.len() * f, "{} rows of {f}", rows.len());
        let simd = simd_available();
        let cutoff = woodbury_below(f);
        let table = self.white.is_some();
        out.par_chunks_mut(f).enumerate().for_each_init(
            || Scratch {
                v: vec![0.0; f * cutoff.max(BLOCK)],
                white: if table {
                    Vec::new()
                } else {
                    vec![0.0; f * cutoff]
                },
                m: vec![0.0; (f * f).max(cutoff * cutoff)],
                g: vec![0.0; f],
                t: vec![0.0; cutoff],
                backup: vec![0.0; (f * f).max(cutoff * cutoff)],
            },
            |scratch, (r, x)| {
                let (idx, w) = rows.row(r);
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: the CPU has AVX2 and FMA (`simd_available`).
                    unsafe { solve_row_avx2(self, idx, w, scratch, x) };
                    return;
                }
                solve_row(self, idx, w, scratch, x);
            },
        );
    }

    /// The fixed side's factors, given back.
    pub fn into_factors(self) -> Vec<f32> {
        self.y
    }
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`solve_row`] compiled for AVX2 (the same operations in the same order, wider registers: the
/// results are the same bits; no FMA contraction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn solve_row_avx2(
    fixed: &HalfSweep,
    idx: &[u32],
    w: &[f32],
    s: &mut Scratch,
    x: &mut [f32],
) {
    solve_row(fixed, idx, w, s, x);
}

#[inline(always)]
fn solve_row(fixed: &HalfSweep, idx: &[u32], w: &[f32], s: &mut Scratch, x: &mut [f32]) {
    if idx.is_empty() {
        // Nothing observed: b = 0, so the exact solution is the zero vector.
        x.fill(0.0);
        return;
    }
    if idx.len() < woodbury_below(fixed.f) {
        solve_woodbury(fixed, idx, w, s);
    } else {
        solve_direct(fixed, idx, w, s);
    }
    for (o, v) in x.iter_mut().zip(&s.g) {
        *o = *v as f32;
    }
}

/// x = L'^-1 (g - V' (I + V V')^-1 V g) into `s.g` (module docs), n = `idx.len()` < f.
#[inline(always)]
fn solve_woodbury(fixed: &HalfSweep, idx: &[u32], w: &[f32], s: &mut Scratch) {
    let (f, n) = (fixed.f, idx.len());
    let (v, m, g, t) = (
        &mut s.v[..n * f],
        &mut s.m[..n * n],
        &mut s.g,
        &mut s.t[..n],
    );
    let (table, stride) = match fixed.white.as_deref() {
        Some(table) => (table, f),
        None => {
            // Gather the rows, then whiten them all in one GEMM.
            for (k, (&j, vk)) in idx.iter().zip(v.chunks_exact_mut(f)).enumerate() {
                if let Some(&ahead) = idx.get(k + AHEAD) {
                    prefetch(&fixed.y[ahead as usize * f..(ahead as usize + 1) * f]);
                }
                let y = &fixed.y[j as usize * f..(j as usize + 1) * f];
                for (o, yd) in vk.iter_mut().zip(y) {
                    *o = f64::from(*yd);
                }
            }
            let white = &mut s.white[..n * f];
            dgemm(n, f, f, (v, f, false), (&fixed.inv, f, true), white, f, 0.0);
            (&*white, 0)
        }
    };
    // Row k's whitened row: the table's row idx[k] (stride f), or the k-th gathered (stride 0).
    let white_row = |k: usize, j: u32| {
        let at = if stride == 0 { k * f } else { j as usize * f };
        &table[at..at + f]
    };
    g.fill(0.0);
    for (k, ((&j, &wk), vk)) in idx.iter().zip(w).zip(v.chunks_exact_mut(f)).enumerate() {
        if let (Some(&ahead), true) = (idx.get(k + AHEAD), stride != 0) {
            prefetch(white_row(k + AHEAD, ahead));
        }
        let cw = fixed.alpha * f64::from(wk);
        let wj = white_row(k, j);
        axpy(1.0 + cw, wj, g);
        let sc = cw.sqrt();
        for (o, x) in vk.iter_mut().zip(wj) {
            *o = sc * x;
        }
    }
    // M = I + V V', t = V g.
    let vr = &*v;
    dsyrk(n, f, (vr, f, false), m, n, 0.0);
    for i in 0..n {
        m[i * n + i] += 1.0;
    }
    dgemm(n, 1, f, (vr, f, false), (g, 1, false), t, 1, 0.0);
    cholesky(m, n, 1.0, &mut s.backup);
    cholesky_solve(m, n, t);
    // h = g - V' t, then x = L'^-1 h.
    for (vk, tk) in v.chunks_exact(f).zip(t.iter()) {
        axpy(-tk, vk, g);
    }
    upper_solve(&fixed.l, f, g);
}

/// x = (B + V'V)^-1 b into `s.g`, V the rows sqrt(alpha w) y gathered in blocks.
#[inline(always)]
fn solve_direct(fixed: &HalfSweep, idx: &[u32], w: &[f32], s: &mut Scratch) {
    let f = fixed.f;
    let (v, m, g) = (&mut s.v, &mut s.m[..f * f], &mut s.g);
    m.copy_from_slice(&fixed.b);
    g.fill(0.0);
    for (idx, w) in idx.chunks(BLOCK).zip(w.chunks(BLOCK)) {
        let nb = idx.len();
        for (k, ((&j, &wk), vk)) in idx.iter().zip(w).zip(v.chunks_exact_mut(f)).enumerate() {
            if let Some(&ahead) = idx.get(k + AHEAD) {
                prefetch(&fixed.y[ahead as usize * f..(ahead as usize + 1) * f]);
            }
            let cw = fixed.alpha * f64::from(wk);
            let (c, sc) = (1.0 + cw, cw.sqrt());
            let y = &fixed.y[j as usize * f..(j as usize + 1) * f];
            for ((o, gd), yd) in vk.iter_mut().zip(g.iter_mut()).zip(y) {
                let yd = f64::from(*yd);
                *gd += c * yd;
                *o = sc * yd;
            }
        }
        let v = &v[..nb * f];
        dsyrk(f, nb, (v, f, true), m, f, 1.0);
    }
    cholesky(m, f, fixed.lambda, &mut s.backup);
    cholesky_solve(m, f, g);
}

/// Y'Y in f64 (upper triangle significant), each fixed block of rows through one [`dgemm`] and
/// the blocks summed in order, so the result does not depend on the thread count. Zero rows
/// (items or users nobody observed, after their first solve) add nothing and are skipped: most
/// of a large catalog in a short window.
pub(super) fn gram<T: Copy + Into<f64> + PartialEq + Default + Sync>(
    y: &[T],
    f: usize,
) -> Vec<f64> {
    let mut g = vec![0f64; f * f];
    gram_into(y, f, &mut g);
    g
}

/// Rows of one Gram block of [`gram`].
pub(super) const GRAM_ROWS: usize = 4096;

/// [`gram`] added to `g`: the blocks are added in order, so rows given in passes of a multiple
/// of [`GRAM_ROWS`] sum to the bits of one call over all of them.
pub(super) fn gram_into<T: Copy + Into<f64> + PartialEq + Default + Sync>(
    y: &[T],
    f: usize,
    g: &mut [f64],
) {
    let partials: Vec<Vec<f64>> = y
        .par_chunks(GRAM_ROWS * f)
        .map(|chunk| {
            let mut g = vec![0f64; f * f];
            let mut t = vec![0f64; f * BLOCK];
            let nonzero: Vec<&[T]> = chunk
                .chunks_exact(f)
                .filter(|row| row.iter().any(|v| *v != T::default()))
                .collect();
            for block in nonzero.chunks(BLOCK) {
                let nb = block.len();
                for (row, out) in block.iter().zip(t.chunks_exact_mut(f)) {
                    for (o, v) in out.iter_mut().zip(row.iter()) {
                        *o = (*v).into();
                    }
                }
                let t = &t[..nb * f];
                dsyrk(f, nb, (t, f, true), &mut g, f, 1.0);
            }
            g
        })
        .collect();
    for p in partials {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
}

/// The inverse of the lower triangular `l` (`f x f`, row-major), itself lower triangular.
fn lower_inverse(l: &[f64], f: usize) -> Vec<f64> {
    let mut inv = vec![0f64; f * f];
    for i in 0..f {
        for j in 0..=i {
            let mut s = if i == j { 1.0 } else { 0.0 };
            for k in j..i {
                s -= l[i * f + k] * inv[k * f + j];
            }
            inv[i * f + j] = s / l[i * f + i];
        }
    }
    inv
}

/// The whitened rows L^-1 y_i of `y` into `white` (`n x f`), blocks of rows through [`dgemm`]
/// with `inv` = L^-1.
fn whiten(y: &[f32], inv: &[f64], f: usize, white: &mut Vec<f64>) {
    const ROWS: usize = 512;
    white.clear();
    white.resize(y.len(), 0.0);
    white
        .par_chunks_mut(ROWS * f)
        .zip(y.par_chunks(ROWS * f))
        .for_each(|(out, rows)| {
            let rows: Vec<f64> = rows.iter().map(|v| f64::from(*v)).collect();
            dgemm(
                rows.len() / f,
                f,
                f,
                (&rows, f, false),
                (inv, f, true),
                out,
                f,
                0.0,
            );
        });
}

/// In place, the upper triangle of the symmetric positive definite `a` (`n x n`, row-major)
/// becomes its Cholesky factor U, a = U'U (right-looking: every update is a row operation).
/// `floor` is a lower bound on the smallest eigenvalue of `a`, hence on every pivot: a pivot that
/// rounding took below it is raised to it.
#[inline(always)]
fn cholesky_rows(a: &mut [f64], n: usize, floor: f64) {
    for k in 0..n {
        let (head, tail) = a.split_at_mut((k + 1) * n);
        let row = &mut head[k * n..];
        let d = row[k].max(floor).sqrt();
        row[k] = d;
        for v in &mut row[k + 1..] {
            *v /= d;
        }
        for (i, below) in (k + 1..n).zip(tail.chunks_exact_mut(n)) {
            axpy(-row[i], &row[i..], &mut below[i..]);
        }
    }
}

/// [`cholesky_rows`] through LAPACK when the BLAS library has it (blocked, several times faster
/// at f = 128), `backup` holding a copy for when LAPACK finds `a` not numerically positive
/// definite (possible only through rounding, when lambda is tiny against Y'Y).
#[inline(always)]
fn cholesky(a: &mut [f64], n: usize, floor: f64, backup: &mut [f64]) {
    let backup = &mut backup[..n * n];
    backup.copy_from_slice(a);
    if blas::cholesky(n, a, n) != Some(true) {
        a.copy_from_slice(backup);
        cholesky_rows(a, n, floor);
    }
}

/// Solve U'U x = b in place, `u` from [`cholesky`].
#[inline(always)]
fn cholesky_solve(u: &[f64], n: usize, b: &mut [f64]) {
    for k in 0..n {
        b[k] /= u[k * n + k];
        let (head, rest) = b.split_at_mut(k + 1);
        axpy(-head[k], &u[k * n + k + 1..(k + 1) * n], rest);
    }
    for k in (0..n).rev() {
        let s = dot(&u[k * n + k + 1..(k + 1) * n], &b[k + 1..]);
        b[k] = (b[k] - s) / u[k * n + k];
    }
}

/// The transpose of the `n x n` matrix `a`.
fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|i| a[(i % n) * n + i / n]).collect()
}

/// Solve L' x = b in place (row i of L, scaled by x_i, leaves the right-hand side).
#[inline(always)]
fn upper_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        b[i] /= l[i * n + i];
        let xi = b[i];
        let (head, _) = b.split_at_mut(i);
        axpy(-xi, &l[i * n..i * n + i], head);
    }
}

/// Rows gathered ahead of use: the other side's rows are read in observation order, which the
/// hardware cannot guess.
const AHEAD: usize = 4;

/// Ask for the cache lines of `row` (a hint: no effect on results).
#[inline(always)]
fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(64 / size_of::<T>().max(1)) {
        // SAFETY: a prefetch never faults and the address lies within a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// Dot product in eight fixed lanes (vectorises without reordering a sum).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<8>();
    let (cb, rb) = b[..n].as_chunks::<8>();
    let mut acc = [0f64; 8];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// y += a x.
#[inline(always)]
pub(super) fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// A deterministic pseudo-random value in [-1, 1) for position `n` (splitmix64).
pub(super) fn initial(n: u64) -> f32 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(factors: usize, iterations: usize) -> HybridConfig {
        HybridConfig {
            factors,
            iterations,
            ..HybridConfig::default()
        }
    }

    /// The next value in [0, 1) of a splitmix64 sequence.
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }

    /// Factors in [-s, s) with a per-row scale s in [0.05, 2): rows of very different lengths,
    /// as learned factors have, and some all-zero rows (items nobody observed).
    fn random_factors(rows: usize, f: usize, state: &mut u64) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * f);
        for r in 0..rows {
            let scale = if r % 17 == 3 {
                0.0
            } else {
                0.05 + 1.95 * uniform(state)
            };
            out.extend((0..f).map(|_| (scale * (2.0 * uniform(state) - 1.0)) as f32));
        }
        out
    }

    /// Observations where user u buys each item with a probability that falls with the item's
    /// index and rises with the user's activity: heavy users (more than `f` items) and popular
    /// items next to users with one or two items, and users and items with none.
    fn random_observations(users: usize, items: usize, state: &mut u64) -> Vec<Observation> {
        let mut obs = Vec::new();
        for u in 0..users {
            let activity = if u % 50 == 7 {
                0.0
            } else {
                uniform(state).powi(3)
            };
            // Every 41st item is never bought.
            for i in (0..items).filter(|i| i % 41 != 40) {
                let p = activity * 8.0 / (1.0 + i as f64 / 40.0);
                if uniform(state) < p {
                    let weight = (0.02 + 3.0 * uniform(state)) as f32;
                    obs.push(Observation {
                        user: u as u32,
                        item: i as u32,
                        weight,
                    });
                }
            }
        }
        obs
    }

    /// Y'Y by the textbook loop in f64, remembered for the last `y` (the tests solve many rows
    /// against one fixed side).
    fn naive_gram(y: &[f32], f: usize) -> Vec<f64> {
        thread_local! {
            static LAST: std::cell::RefCell<(Vec<f32>, Vec<f64>)> = Default::default();
        }
        LAST.with_borrow_mut(|(key, gram)| {
            if key.as_slice() != y || gram.len() != f * f {
                *gram = vec![0f64; f * f];
                for v in y.chunks_exact(f) {
                    for r in 0..f {
                        for c in 0..f {
                            gram[r * f + c] += f64::from(v[r]) * f64::from(v[c]);
                        }
                    }
                }
                *key = y.to_vec();
            }
            gram.clone()
        })
    }

    /// Gaussian elimination with partial pivoting in f64: the reference solve of `a x = b`.
    fn gauss(mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
        let n = b.len();
        for c in 0..n {
            let p = (c..n)
                .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
                .unwrap();
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
            b.swap(c, p);
            for r in c + 1..n {
                let m = a[r * n + c] / a[c * n + c];
                for k in c..n {
                    a[r * n + k] -= m * a[c * n + k];
                }
                b[r] -= m * b[c];
            }
        }
        for r in (0..n).rev() {
            let s: f64 = (r + 1..n).map(|k| a[r * n + k] * b[k]).sum();
            b[r] = (b[r] - s) / a[r * n + r];
        }
        b
    }

    /// The exact minimiser of one row given the fixed side `y`, by the textbook formula in f64:
    /// (Y'Y + lambda I + sum alpha w y y')^-1 sum (1 + alpha w) y.
    fn dense_solve(y: &[f32], f: usize, row: &[(u32, f32)], p: &HybridConfig) -> Vec<f64> {
        let mut a = naive_gram(y, f);
        let mut b = vec![0f64; f];
        let mut add = |v: &[f32], scale: f64| {
            for r in 0..f {
                for c in 0..f {
                    a[r * f + c] += scale * f64::from(v[r]) * f64::from(v[c]);
                }
            }
        };
        for &(j, w) in row {
            let v = &y[j as usize * f..(j as usize + 1) * f];
            add(v, p.alpha * f64::from(w));
            for d in 0..f {
                b[d] += (1.0 + p.alpha * f64::from(w)) * f64::from(v[d]);
            }
        }
        for d in 0..f {
            a[d * f + d] += p.regularization;
        }
        gauss(a, b)
    }

    /// The largest relative error |x - x*| / |x*| of the rows of `x` (solved against `y`) from
    /// [`dense_solve`]; rows without observations must be exactly zero.
    fn worst_error(x: &[f32], y: &[f32], f: usize, rows: &Rows, p: &HybridConfig) -> f64 {
        let mut worst = 0f64;
        for (r, got) in x.chunks_exact(f).enumerate() {
            let (idx, w) = rows.row(r);
            if idx.is_empty() {
                assert!(got.iter().all(|v| *v == 0.0), "row {r} has no observations");
                continue;
            }
            let row: Vec<(u32, f32)> = idx.iter().copied().zip(w.iter().copied()).collect();
            let want = dense_solve(y, f, &row, p);
            let diff: f64 = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - f64::from(*b)).powi(2))
                .sum();
            let norm: f64 = want.iter().map(|a| a * a).sum();
            worst = worst.max((diff / norm).sqrt());
        }
        worst
    }

    /// The accuracy the module docs state.
    const TOLERANCE: f64 = 1e-6;

    /// One half-sweep of `rows` into `out` against the fixed side `other`.
    fn half_sweep(out: &mut [f32], rows: &Rows, other: &[f32], table: usize, p: &HybridConfig) {
        HalfSweep::with_table(other.to_vec(), p, table).solve(rows, out);
    }

    /// At the shipped f = 128, every row of a half-sweep (users against random item factors,
    /// then items against those users) and every item row of a full `als` call equals the dense
    /// f64 solve to 1e-6, on both the Woodbury path (n < f) and the direct path (n >= f, over
    /// more than one block of the rank-n update).
    #[test]
    fn every_row_equals_a_dense_solve_at_128_factors() {
        let (f, n_users, n_items) = (128, 300, 400);
        let mut state = 11;
        let obs = random_observations(n_users, n_items, &mut state);
        let by_user = Rows::of_users(n_users, &obs);
        let by_item = by_user.transpose(n_items);
        let sizes =
            |rows: &Rows, n: usize| -> Vec<usize> { (0..n).map(|r| rows.row(r).0.len()).collect() };
        let (us, is) = (sizes(&by_user, n_users), sizes(&by_item, n_items));
        assert!(us.contains(&0) && is.contains(&0));
        assert!(us.iter().any(|n| (1..f).contains(n)) && is.iter().any(|n| (1..f).contains(n)));
        assert!(us.iter().any(|n| *n > BLOCK) && is.iter().any(|n| *n >= f));
        let p = params(f, 1);
        let items = random_factors(n_items, f, &mut state);
        // With the table of whitened rows, and with rows whitened as gathered.
        for table in [usize::MAX, 0] {
            let mut users = vec![0f32; n_users * f];
            half_sweep(&mut users, &by_user, &items, table, &p);
            let e = worst_error(&users, &items, f, &by_user, &p);
            assert!(e < TOLERANCE, "users, table {table}: relative error {e:e}");
            let mut solved = vec![0f32; n_items * f];
            half_sweep(&mut solved, &by_item, &users, table, &p);
            let e = worst_error(&solved, &users, f, &by_item, &p);
            assert!(e < TOLERANCE, "items, table {table}: relative error {e:e}");
            let fit = fit(by_user.clone(), n_items, &params(f, 2), table);
            let e = worst_error(&fit.items, &fit.users, f, &by_item, &p);
            assert!(e < TOLERANCE, "als, table {table}: relative error {e:e}");
        }
        // The shipped limit holds a table for this problem.
        assert!(n_users.max(n_items) * f * size_of::<f64>() <= WHITE_TABLE_BYTES);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any small f, sizes, alpha and lambda: each row of a half-sweep equals the dense solve.
        #[test]
        fn half_sweeps_match_the_dense_solve_for_small_f(
            f in 1usize..12, n_rows in 1usize..30, n_other in 1usize..40, seed in 0u64..10_000,
            alpha in 0.0f64..40.0, lambda in 0.01f64..10.0,
        ) {
            let mut state = seed;
            let mut obs = Vec::new();
            for r in 0..n_rows {
                let n = (uniform(&mut state) * (2 * f + 3) as f64) as usize;
                for _ in 0..n.min(n_other) {
                    let other = (uniform(&mut state) * n_other as f64) as u32;
                    let weight = (0.01 + 5.0 * uniform(&mut state)) as f32;
                    obs.push(Observation { user: r as u32, item: other, weight });
                }
            }
            let rows = Rows::of_users(n_rows, &obs);
            let p = HybridConfig { factors: f, alpha, regularization: lambda, ..HybridConfig::default() };
            let y = random_factors(n_other, f, &mut state);
            for table in [usize::MAX, 0] {
                let mut x = vec![1f32; n_rows * f];
                half_sweep(&mut x, &rows, &y, table, &p);
                let e = worst_error(&x, &y, f, &rows, &p);
                prop_assert!(e < TOLERANCE, "table {table}: relative error {e:e}");
            }
        }
    }

    /// Several Gram and whitening blocks, rank-n updates over several blocks: the same bits on
    /// 1, 2 and 3 threads.
    #[test]
    fn results_are_bit_identical_on_any_thread_count() {
        let (n_users, n_items) = (9_000, 600);
        let mut state = 5;
        let mut obs = Vec::new();
        for u in 0..n_users as u32 {
            let n = (uniform(&mut state).powi(4) * 300.0) as usize;
            for _ in 0..n {
                let item = (uniform(&mut state).powi(2) * n_items as f64) as u32;
                let weight = (0.05 + uniform(&mut state)) as f32;
                obs.push(Observation {
                    user: u,
                    item,
                    weight,
                });
            }
        }
        let p = params(24, 3);
        // With the table of whitened rows, and with rows whitened as gathered.
        for table in [usize::MAX, 0] {
            let on = |threads| {
                let run = || fit(Rows::of_users(n_users, &obs), n_items, &p, table);
                crate::kernels::on_threads(threads, run)
            };
            let one = on(1);
            assert!(one.users.iter().any(|v| *v != 0.0));
            assert_eq!(one, on(2));
            assert_eq!(one, on(3));
        }
    }

    /// Each half-sweep is the exact minimiser: the gradient of the ALS loss in every item row
    /// (solved last) vanishes.
    #[test]
    fn item_rows_are_exact_minimisers() {
        let obs: Vec<Observation> = [(0, 0, 2.0), (0, 2, 1.0), (1, 1, 3.0), (2, 2, 0.5)]
            .iter()
            .map(|&(user, item, weight)| Observation { user, item, weight })
            .collect();
        let p = params(3, 2);
        let fit = als(Rows::of_users(3, &obs), 4, &p);
        let (f, x) = (3, &fit.users);
        for i in 0..4 {
            let y = &fit.items[i * f..(i + 1) * f];
            let mut grad = vec![0f64; f];
            for u in 0..3 {
                let w = obs
                    .iter()
                    .find(|o| o.user as usize == u && o.item as usize == i)
                    .map_or(0.0, |o| f64::from(o.weight));
                let (pref, conf) = if w > 0.0 {
                    (1.0, 1.0 + p.alpha * w)
                } else {
                    (0.0, 1.0)
                };
                let xu = &x[u * f..(u + 1) * f];
                let pred: f64 = xu.iter().zip(y).map(|(a, b)| f64::from(a * b)).sum();
                for d in 0..f {
                    grad[d] += conf * (pred - pref) * f64::from(xu[d]);
                }
            }
            for d in 0..f {
                grad[d] += p.regularization * f64::from(y[d]);
                assert!(grad[d].abs() < 1e-4, "item {i}: gradient {grad:?}");
            }
        }
        // Item 3 was never observed: exactly zero.
        assert_eq!(&fit.items[9..12], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn observed_items_outscore_unobserved_and_results_are_deterministic() {
        // Two groups of users buying two groups of items.
        let mut obs = Vec::new();
        for u in 0..20u32 {
            for i in 0..5u32 {
                obs.push(Observation {
                    user: u,
                    item: if u < 10 { i } else { 5 + i },
                    weight: 1.0,
                });
            }
        }
        let p = params(4, 10);
        let fit = als(Rows::of_users(20, &obs), 10, &p);
        let score = |u: usize, i: usize| -> f32 {
            (0..4)
                .map(|d| fit.users[u * 4 + d] * fit.items[i * 4 + d])
                .sum()
        };
        assert!(
            score(0, 0) > 0.5 && score(0, 7).abs() < 0.2,
            "{}",
            score(0, 7)
        );
        assert!(score(15, 7) > 0.5 && score(15, 0).abs() < 0.2);
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| als(Rows::of_users(20, &obs), 10, &p));
        assert_eq!(single, fit);
    }

    /// Grouped by item, each item's users come in user order, whatever the input order.
    #[test]
    fn transposed_rows_hold_the_same_entries_by_the_other_side() {
        let obs: Vec<Observation> = [(2, 1, 3.0), (1, 0, 2.0), (0, 2, 1.0), (1, 2, 0.5)]
            .iter()
            .map(|&(user, item, weight)| Observation { user, item, weight })
            .collect();
        let by_user = Rows::of_users(3, &obs);
        assert_eq!(by_user.row(1), (&[0u32, 2][..], &[2.0f32, 0.5][..]));
        let by_item = by_user.transpose(4);
        assert_eq!(by_item.len(), 4);
        assert_eq!(by_item.row(0), (&[1u32][..], &[2.0f32][..]));
        assert_eq!(by_item.row(1), (&[2u32][..], &[3.0f32][..]));
        assert_eq!(by_item.row(2), (&[0u32, 1][..], &[1.0f32, 0.5][..]));
        assert!(by_item.row(3).0.is_empty());
        // Each user's items were in item order: back again is the same rows.
        assert_eq!(by_item.transpose(3), by_user);
    }
}
