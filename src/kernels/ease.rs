//! Low-rank EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data") as user and
//! item factors, the other behavior model beside [`super::als`].
//!
//! EASE learns the item-item matrix B = I - P diag(1 / diag P), P = (X'X + lambda I)^-1, from the
//! binary user x item matrix X of the window (x_ui = 1 when u has a positive weight on i) and
//! scores user u by X_u B. Write X'X = V diag(e) V' and s_k = e_k / (e_k + lambda). Then
//! P = (I - V diag(s) V') / lambda, and for an item j the user has not touched
//!
//!   (X_u B)_j = sum_k (X_u V)_k s_k V_jk / (1 - d_j),   d_j = sum_k s_k V_jk^2,
//!
//! where only eigenvectors with e_k > 0 contribute (at most min(users, items) of them). That is
//! the dot product x_u . y_j of user factors x_u = (X_u V) diag(s) and item factors
//! y_j = V_j / (1 - d_j): exact EASE with every eigenvector, and with the f = `hybrid.factors`
//! largest, EASE restricted to the leading subspace of X'X, in the same low-rank form as ALS.
//! (Items the user touched are left to the exclusions and the repeat term; B's zero diagonal is
//! not reproduced for them.) Items outside the window get y_j = 0 and compete on text alone.
//!
//! The leading eigenvectors come from subspace iteration on X'X: `hybrid.iterations` rounds of
//! Q <- orth(X'(X Q)) from f + [`OVERSAMPLE`] deterministic pseudo-random columns, each round two
//! sparse products gathered row by row; then the Rayleigh-Ritz step: the eigenvectors W of
//! (XQ)'(XQ) by cyclic Jacobi rotations, V = Q W. Orthonormalisation goes through the
//! eigen-decomposition of the columns' Gram matrix, twice, dropping directions below 1e-10 of the
//! largest, so a window with fewer users than f yields fewer factors (the rest are zero).
//!
//! The users are read [`USERS_PER_PASS`] at a time for every product over them, and nothing
//! per user is kept between passes: each round adds every pass's X'(X Q) to one catalog-sized
//! sum, and the users' factors leave a pass at a time.
//!
//! Deterministic: a fixed start, every row product gathered in a fixed order (an item's sum runs
//! over its users in user order, pass after pass), Gram blocks summed in order, so neither the
//! thread count nor the passes change a bit.

use std::ops::Range;

use rayon::prelude::*;

use super::als::{GRAM_ROWS, Rows, axpy, gram, gram_into, initial};
use super::blas::dgemm;
use crate::config::HybridConfig;
use crate::domain::ranges;
use crate::error::Result;

/// Columns beyond f that the subspace iteration carries: the f-th eigenvector converges at the
/// rate (e_{f+OVERSAMPLE+1} / e_f)^iterations instead of (e_{f+1} / e_f)^iterations.
const OVERSAMPLE: usize = 16;

/// Eigenvalues below this share of the largest are treated as zero.
const RANK_TOLERANCE: f64 = 1e-10;

/// Users one pass over the window reads at a time: a multiple of [`GRAM_ROWS`] and of
/// [`times`]'s row blocks, so the passes add up to the bits of one pass over every user.
const USERS_PER_PASS: usize = 1 << 16;

/// Rows of one [`dgemm`] of [`times`].
const TIMES_ROWS: usize = 512;

const _: () =
    assert!(USERS_PER_PASS.is_multiple_of(GRAM_ROWS) && USERS_PER_PASS.is_multiple_of(TIMES_ROWS));

/// Low-rank EASE over the observations of `n_users` users (module docs), read a range of users
/// at a time from `rows` (one row per user): `params.factors` columns, `params.regularization`
/// as lambda, `params.iterations` rounds of subspace iteration. The users' factors go to `users`
/// (first user, `f` values a user) a pass at a time; returns the items' (`n_items x f`).
/// Memory is catalog-sized (a few `n_items x (f + 16)` f64 matrices) plus one pass of users,
/// whatever the number of users.
pub fn ease(
    n_users: usize,
    rows: &dyn Fn(Range<usize>) -> Result<Rows>,
    n_items: usize,
    params: &HybridConfig,
    users: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
) -> Result<Vec<f32>> {
    fit(n_users, rows, n_items, params, users, USERS_PER_PASS)
}

fn fit(
    n_users: usize,
    rows: &dyn Fn(Range<usize>) -> Result<Rows>,
    n_items: usize,
    params: &HybridConfig,
    users: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    pass: usize,
) -> Result<Vec<f32>> {
    let (f, lambda) = (params.factors, params.regularization);
    let mut items = vec![0f32; n_items * f];
    let mut k = (f + OVERSAMPLE).min(n_items);
    let mut q = Vec::new();
    if f > 0 && k > 0 {
        let start: Vec<f64> = (0..n_items * k)
            .map(|n| f64::from(initial(n as u64)))
            .collect();
        (q, k) = orthonormal(&start, k);
        let progress =
            crate::progress::Progress::new("behavior (EASE)", "iterations", params.iterations);
        for _ in 0..params.iterations {
            // X'(X Q), a pass of users at a time: each item's sum runs over its users in order.
            let mut y = vec![0f64; n_items * k];
            for range in ranges(n_users, pass) {
                let by_user = rows(range)?;
                scatter(&by_user, &gather(&by_user, &q, k), k, n_items, &mut y);
            }
            (q, k) = orthonormal(&y, k);
            progress.inc(1);
        }
    }
    if f == 0 || k == 0 {
        for range in ranges(n_users, pass) {
            users(range.start, &vec![0f32; range.len() * f])?;
        }
        return Ok(items);
    }
    // Rayleigh-Ritz: (XQ)'(XQ) = W diag(e) W', V = Q W, X V = (XQ) W.
    let mut g = vec![0f64; k * k];
    for range in ranges(n_users, pass) {
        gram_into(&gather(&rows(range)?, &q, k), k, &mut g);
    }
    let (e, w) = eigen(symmetric(g, k), k);
    let r = e
        .iter()
        .take(f)
        .take_while(|v| **v > RANK_TOLERANCE * e[0])
        .count();
    let w: Vec<f64> = w
        .chunks_exact(k)
        .flat_map(|row| row[..r].to_vec())
        .collect();
    let s: Vec<f64> = e[..r].iter().map(|v| v / (v + lambda)).collect();
    for range in ranges(n_users, pass) {
        let xv = times(&gather(&rows(range.clone())?, &q, k), k, &w, r);
        let mut out = vec![0f32; range.len() * f];
        for (out, row) in out.chunks_exact_mut(f).zip(xv.chunks_exact(r.max(1))) {
            for c in 0..r {
                out[c] = (row[c] * s[c]) as f32;
            }
        }
        users(range.start, &out)?;
    }
    let v = times(&q, k, &w, r);
    for (out, row) in items.chunks_exact_mut(f).zip(v.chunks_exact(r.max(1))) {
        let d: f64 = (0..r).map(|c| s[c] * row[c] * row[c]).sum();
        for c in 0..r {
            out[c] = (row[c] / (1.0 - d)) as f32;
        }
    }
    Ok(items)
}

/// Add X' `dense` to `out` (`n_items x k`), X the rows of `by_user` (`dense`: one row of `k`
/// per user of `by_user`): each item's row gets its users' rows added in user order.
fn scatter(by_user: &Rows, dense: &[f64], k: usize, n_items: usize, out: &mut [f64]) {
    let by_item = by_user.transpose(n_items);
    out.par_chunks_mut(k).enumerate().for_each(|(j, o)| {
        for &u in by_item.row(j).0 {
            let u = u as usize;
            axpy(1.0, &dense[u * k..(u + 1) * k], o);
        }
    });
}

/// Row r of the result is the sum of the rows of `dense` (`k` columns) that row r of `rows`
/// lists: X times `dense` (or X' times it, with the rows by item).
fn gather(rows: &Rows, dense: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0f64; rows.len() * k];
    out.par_chunks_mut(k).enumerate().for_each(|(r, o)| {
        for &c in rows.row(r).0 {
            let c = c as usize;
            axpy(1.0, &dense[c * k..(c + 1) * k], o);
        }
    });
    out
}

/// `a` (`n x k`) times `m` (`k x cols`), blocks of rows through [`dgemm`].
fn times(a: &[f64], k: usize, m: &[f64], cols: usize) -> Vec<f64> {
    let n = a.len() / k.max(1);
    let mut out = vec![0f64; n * cols];
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(TIMES_ROWS * cols)
        .zip(a.par_chunks(TIMES_ROWS * k))
        .for_each(|(o, rows)| {
            dgemm(
                rows.len() / k,
                cols,
                k,
                (rows, k, false),
                (m, cols, false),
                o,
                cols,
                0.0,
            );
        });
    out
}

/// An orthonormal basis of the columns of `y` (`n x k`) and its size: y M with M = W diag(e)^-1/2
/// over the eigenpairs of y'y above [`RANK_TOLERANCE`], applied twice (the second pass restores
/// the orthogonality the first loses to rounding).
fn orthonormal(y: &[f64], k: usize) -> (Vec<f64>, usize) {
    let (mut q, mut k) = (y.to_vec(), k);
    for _ in 0..2 {
        if k == 0 {
            return (Vec::new(), 0);
        }
        let (e, w) = eigen(symmetric(gram(&q, k), k), k);
        let keep = e
            .iter()
            .take_while(|v| **v > RANK_TOLERANCE * e[0] && **v > 0.0)
            .count();
        let m: Vec<f64> = w
            .chunks_exact(k)
            .flat_map(|row| (0..keep).map(|c| row[c] / e[c].sqrt()))
            .collect();
        q = times(&q, k, &m, keep);
        k = keep;
    }
    (q, k)
}

/// The full symmetric matrix from its upper triangle (`n x n`, row-major).
fn symmetric(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for i in 0..n {
        for j in 0..i {
            a[i * n + j] = a[j * n + i];
        }
    }
    a
}

/// Eigenvalues (descending) and eigenvectors (the columns of the row-major `n x n` result, in the
/// same order) of the symmetric `a`, by cyclic Jacobi rotations until the off-diagonal part is
/// negligible against the diagonal.
fn eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _ in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * diag || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (x, y) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * x - s * y;
                    a[r * n + q] = s * x + c * y;
                }
                for col in 0..n {
                    let (x, y) = (a[p * n + col], a[q * n + col]);
                    a[p * n + col] = c * x - s * y;
                    a[q * n + col] = s * x + c * y;
                }
                for r in 0..n {
                    let (x, y) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * x - s * y;
                    v[r * n + q] = s * x + c * y;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = (0..n)
        .flat_map(|r| order.iter().map(move |&c| (r, c)))
        .map(|(r, c)| v[r * n + c])
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::als::{Factors, Observation};

    /// [`fit`] of `obs`, read `pass` users at a time, the users' factors collected.
    fn fit_all(
        users: usize,
        obs: &[Observation],
        items: usize,
        params: &HybridConfig,
        pass: usize,
    ) -> Factors {
        let rows = |range: Range<usize>| {
            let part: Vec<Observation> = obs
                .iter()
                .filter(|o| range.contains(&(o.user as usize)))
                .map(|o| Observation {
                    user: o.user - range.start as u32,
                    ..*o
                })
                .collect();
            Ok(Rows::of_users(range.len(), &part))
        };
        let f = params.factors;
        let mut x = vec![0f32; users * f];
        let mut sink = |first: usize, flat: &[f32]| {
            x[first * f..first * f + flat.len()].copy_from_slice(flat);
            Ok(())
        };
        let y = fit(users, &rows, items, params, &mut sink, pass).unwrap();
        Factors {
            f,
            users: x,
            items: y,
        }
    }

    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }

    /// Users with a few favourite blocks of items (so X'X has structure and a falling spectrum),
    /// some users and items with nothing.
    fn observations(users: usize, items: usize, seed: u64) -> Vec<Observation> {
        let mut state = seed;
        let mut obs = Vec::new();
        for u in 0..users {
            if u % 13 == 5 {
                continue;
            }
            let block = u % 4;
            for i in (0..items).filter(|i| i % 17 != 16) {
                let p = if i % 4 == block { 0.5 } else { 0.08 };
                if uniform(&mut state) < p {
                    obs.push(Observation {
                        user: u as u32,
                        item: i as u32,
                        weight: (0.1 + uniform(&mut state)) as f32,
                    });
                }
            }
        }
        obs
    }

    fn dense(users: usize, items: usize, obs: &[Observation]) -> Vec<f64> {
        let mut x = vec![0f64; users * items];
        for o in obs {
            x[o.user as usize * items + o.item as usize] = 1.0;
        }
        x
    }

    /// X'X (n x n).
    fn gram_of(x: &[f64], users: usize, items: usize) -> Vec<f64> {
        let mut g = vec![0f64; items * items];
        for u in 0..users {
            let row = &x[u * items..(u + 1) * items];
            for i in 0..items {
                for j in 0..items {
                    g[i * items + j] += row[i] * row[j];
                }
            }
        }
        g
    }

    /// The inverse of the symmetric positive definite `a` by Gauss-Jordan elimination.
    fn inverse(mut a: Vec<f64>, n: usize) -> Vec<f64> {
        let mut inv = vec![0f64; n * n];
        for i in 0..n {
            inv[i * n + i] = 1.0;
        }
        for p in 0..n {
            let d = a[p * n + p];
            for c in 0..n {
                a[p * n + c] /= d;
                inv[p * n + c] /= d;
            }
            for r in (0..n).filter(|r| *r != p) {
                let m = a[r * n + p];
                for c in 0..n {
                    a[r * n + c] -= m * a[p * n + c];
                    inv[r * n + c] -= m * inv[p * n + c];
                }
            }
        }
        inv
    }

    fn score(factors: &Factors, u: usize, j: usize) -> f64 {
        let f = factors.f;
        (0..f)
            .map(|c| f64::from(factors.users[u * f + c]) * f64::from(factors.items[j * f + c]))
            .sum()
    }

    /// With f at least the rank, the factors reproduce EASE's scores X_u B on every item the
    /// user has not touched, B from the dense inverse of X'X + lambda I.
    #[test]
    fn full_rank_factors_equal_dense_ease_on_untouched_items() {
        let (users, items) = (30, 24);
        let obs = observations(users, items, 7);
        let x = dense(users, items, &obs);
        let lambda = 5.0;
        let mut g = gram_of(&x, users, items);
        for i in 0..items {
            g[i * items + i] += lambda;
        }
        let p = inverse(g, items);
        let params = HybridConfig {
            factors: items,
            regularization: lambda,
            iterations: 3,
            ..HybridConfig::default()
        };
        let factors = fit_all(users, &obs, items, &params, USERS_PER_PASS);
        let mut checked = 0;
        let mut max_abs = 0f64;
        for u in 0..users {
            for j in (0..items).filter(|j| x[u * items + j] == 0.0) {
                let want: f64 = (0..items)
                    .filter(|i| *i != j)
                    .map(|i| x[u * items + i] * -p[i * items + j] / p[j * items + j])
                    .sum();
                let got = score(&factors, u, j);
                max_abs = max_abs.max(want.abs());
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "user {u} item {j}: {got} vs {want}"
                );
                checked += 1;
            }
        }
        assert!(
            checked > 200 && max_abs > 0.05,
            "{checked} scores, max {max_abs}"
        );
        // Items nobody touched (every 17th) have zero factors.
        assert!(
            factors.items[16 * items..17 * items]
                .iter()
                .all(|v| *v == 0.0)
        );
    }

    /// With f below the rank, the factors equal those of the exact f leading eigenvectors of
    /// X'X (a dense Jacobi decomposition of the whole matrix).
    #[test]
    fn truncated_factors_match_the_exact_leading_eigenvectors() {
        let (users, items, f) = (120, 80, 4);
        let obs = observations(users, items, 11);
        let x = dense(users, items, &obs);
        let lambda = 20.0;
        let (e, v) = eigen(gram_of(&x, users, items), items);
        assert!(
            e[f] < 0.9 * e[f - 1],
            "a gap after the f-th eigenvalue: {e:?}"
        );
        let params = HybridConfig {
            factors: f,
            regularization: lambda,
            iterations: 10,
            ..HybridConfig::default()
        };
        let factors = fit_all(users, &obs, items, &params, USERS_PER_PASS);
        let s: Vec<f64> = e[..f].iter().map(|v| v / (v + lambda)).collect();
        let mut worst = 0f64;
        for u in 0..users {
            let xu = &x[u * items..(u + 1) * items];
            let xv: Vec<f64> = (0..f)
                .map(|c| (0..items).map(|i| xu[i] * v[i * items + c]).sum())
                .collect();
            for j in 0..items {
                let d: f64 = (0..f).map(|c| s[c] * v[j * items + c].powi(2)).sum();
                let want: f64 = (0..f)
                    .map(|c| xv[c] * s[c] * v[j * items + c] / (1.0 - d))
                    .sum();
                worst = worst.max((score(&factors, u, j) - want).abs() / (1.0 + want.abs()));
            }
        }
        assert!(worst < 1e-4, "largest relative difference {worst}");
    }

    /// Enough users and items for many blocks of rows per product: the same bits on 1 and 4
    /// threads.
    #[test]
    fn results_are_bit_identical_on_any_thread_count() {
        let (users, items) = (3_000, 700);
        let obs = observations(users, items, 9);
        let params = HybridConfig {
            factors: 24,
            regularization: 50.0,
            iterations: 3,
            ..HybridConfig::default()
        };
        let on = |threads| {
            crate::kernels::on_threads(threads, || {
                fit_all(users, &obs, items, &params, USERS_PER_PASS)
            })
        };
        let one = on(1);
        assert!(one.users.iter().any(|v| *v != 0.0));
        assert_eq!(one, on(4));
    }

    /// More users than two passes of 4,096: the factors read a pass at a time are the bits of
    /// one pass over every user.
    #[test]
    fn passes_of_users_give_the_bits_of_one_pass() {
        let (users, items) = (9_000, 300);
        let obs = observations(users, items, 13);
        let params = HybridConfig {
            factors: 16,
            regularization: 50.0,
            iterations: 3,
            ..HybridConfig::default()
        };
        let one = fit_all(users, &obs, items, &params, USERS_PER_PASS);
        assert!(one.users[(users - 1) * 16..].iter().any(|v| *v != 0.0));
        assert_eq!(one, fit_all(users, &obs, items, &params, GRAM_ROWS));
    }

    #[test]
    fn jacobi_decomposes_a_symmetric_matrix() {
        let n = 9;
        let mut state = 3;
        let b: Vec<f64> = (0..n * n).map(|_| uniform(&mut state) - 0.5).collect();
        // a = b b' (symmetric, positive semi-definite)
        let a: Vec<f64> = (0..n * n)
            .map(|ij| {
                (0..n)
                    .map(|k| b[(ij / n) * n + k] * b[(ij % n) * n + k])
                    .sum()
            })
            .collect();
        let (e, v) = eigen(a.clone(), n);
        assert!(e.windows(2).all(|w| w[0] >= w[1]), "{e:?}");
        for i in 0..n {
            for j in 0..n {
                let back: f64 = (0..n).map(|k| v[i * n + k] * e[k] * v[j * n + k]).sum();
                assert!((back - a[i * n + j]).abs() < 1e-12, "a[{i}][{j}]");
                let orth: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((orth - want).abs() < 1e-12, "v'v[{i}][{j}]");
            }
        }
    }

    /// A window with fewer users than f: the factor columns beyond the rank are zero.
    #[test]
    fn few_users_give_fewer_factors() {
        let (users, items) = (5, 60);
        let obs = observations(users, items, 5);
        let params = HybridConfig {
            factors: 32,
            regularization: 10.0,
            iterations: 4,
            ..HybridConfig::default()
        };
        let a = fit_all(users, &obs, items, &params, USERS_PER_PASS);
        for row in a.users.chunks_exact(32) {
            assert!(row[users..].iter().all(|v| *v == 0.0), "{row:?}");
        }
        assert!(a.users.iter().any(|v| *v != 0.0));
    }
}
