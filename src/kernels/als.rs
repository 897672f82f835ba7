//! Implicit-feedback alternating least squares (Hu, Koren & Volinsky, 2008): user and item
//! factors from (user, item, weight) observations.
//!
//! ALS minimises, over user factors x_u and item factors y_i (f dimensions each),
//!
//!   sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)
//!
//! where p_ui = 1 when u has a positive weight w_ui on item i (else 0) and c_ui = 1 + alpha w_ui.
//! Each half-sweep moves every row towards its exact minimiser
//! x_u = (Y'Y + lambda I + sum_{i in u} alpha w_ui y_i y_i')^-1 sum_{i in u} (1 + alpha w_ui) y_i
//! by a few conjugate-gradient steps from the previous solution.
//!
//! Deterministic: the initial item factors depend only on the item's position and the seed, and
//! every row is solved independently, so thread count does not change a bit.

use rayon::prelude::*;

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

/// One observed (user, item, decayed weight > 0) triple, by row index.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// User row.
    pub user: u32,
    /// Item row.
    pub item: u32,
    /// Decayed weight, > 0.
    pub weight: f32,
}

/// Implicit ALS over `n_users x n_items` observations.
pub fn als(
    n_users: usize,
    n_items: usize,
    observations: &[Observation],
    params: &HybridConfig,
) -> Factors {
    let f = params.factors;
    let mut by_user: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_users];
    let mut by_item: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_items];
    for o in observations {
        by_user[o.user as usize].push((o.item, o.weight));
        by_item[o.item as usize].push((o.user, o.weight));
    }
    let mut items: Vec<f32> = (0..n_items * f)
        .map(|n| initial(n as u64) / (f as f32).sqrt())
        .collect();
    let mut users = vec![0f32; n_users * f];
    for _ in 0..params.iterations {
        solve_rows(&mut users, &by_user, &items, f, params);
        solve_rows(&mut items, &by_item, &users, f, params);
    }
    Factors { f, users, items }
}

/// Conjugate-gradient steps per row and half-sweep, warm-started from the previous solution
/// (Takacs, Pilaszy & Tikk 2011): O(f^2 + n f) per row instead of O(n f^2 + f^3) for a direct
/// solve, and exact when f <= CG_STEPS.
const CG_STEPS: usize = 4;

/// Improve every row of `out` against the fixed factors `other` (see the module docs):
/// x <- approximately (Y'Y + lambda I + sum alpha w y y')^-1 sum (1 + alpha w) y.
fn solve_rows(
    out: &mut [f32],
    rows: &[Vec<(u32, f32)>],
    other: &[f32],
    f: usize,
    params: &HybridConfig,
) {
    let gram = gram(other, f);
    let (alpha, lambda) = (params.alpha, params.regularization);
    out.par_chunks_mut(f).zip(rows.par_iter()).for_each_init(
        || vec![0f64; 4 * f],
        |scratch, (x_out, observed)| {
            if observed.is_empty() {
                // Nothing observed: the exact solution is the zero vector.
                x_out.fill(0.0);
                return;
            }
            let (x, rest) = scratch.split_at_mut(f);
            let (r, rest) = rest.split_at_mut(f);
            let (p, ap) = rest.split_at_mut(f);
            for (xd, v) in x.iter_mut().zip(x_out.iter()) {
                *xd = f64::from(*v);
            }
            // A v = (Y'Y + lambda I) v + sum alpha w y (y . v)
            let apply = |v: &[f64], out: &mut [f64]| {
                for (row, o) in gram.chunks_exact(f).zip(out.iter_mut()) {
                    *o = row.iter().zip(v).map(|(g, v)| g * v).sum::<f64>();
                }
                for (o, v) in out.iter_mut().zip(v) {
                    *o += lambda * v;
                }
                for &(j, w) in observed {
                    let y = &other[j as usize * f..(j as usize + 1) * f];
                    let yv: f64 = y.iter().zip(v).map(|(y, v)| f64::from(*y) * v).sum();
                    let c = alpha * f64::from(w) * yv;
                    for (o, y) in out.iter_mut().zip(y) {
                        *o += c * f64::from(*y);
                    }
                }
            };
            // r = b - A x, b = sum (1 + alpha w) y
            apply(x, ap);
            for (rd, a) in r.iter_mut().zip(ap.iter()) {
                *rd = -a;
            }
            for &(j, w) in observed {
                let y = &other[j as usize * f..(j as usize + 1) * f];
                let c = 1.0 + alpha * f64::from(w);
                for (rd, y) in r.iter_mut().zip(y) {
                    *rd += c * f64::from(*y);
                }
            }
            p.copy_from_slice(r);
            let mut rs: f64 = r.iter().map(|v| v * v).sum();
            for _ in 0..CG_STEPS.min(f) {
                if rs < 1e-20 {
                    break;
                }
                apply(p, ap);
                let step = rs / p.iter().zip(ap.iter()).map(|(a, b)| a * b).sum::<f64>();
                for d in 0..f {
                    x[d] += step * p[d];
                    r[d] -= step * ap[d];
                }
                let next: f64 = r.iter().map(|v| v * v).sum();
                let beta = next / rs;
                for d in 0..f {
                    p[d] = r[d] + beta * p[d];
                }
                rs = next;
            }
            for (o, v) in x_out.iter_mut().zip(x.iter()) {
                *o = *v as f32;
            }
        },
    );
}

/// Y'Y (full, symmetric) summed in fixed chunks, so the result does not depend on the thread
/// count. Zero rows (items or users nobody observed, after their first solve) add nothing and are
/// skipped: most of a large catalog in a short window.
fn gram(y: &[f32], f: usize) -> Vec<f64> {
    const CHUNK: usize = 4096;
    let partials: Vec<Vec<f64>> = y
        .par_chunks(CHUNK * f)
        .map(|chunk| {
            let mut g = vec![0f64; f * f];
            for row in chunk.chunks_exact(f) {
                if row.iter().all(|v| *v == 0.0) {
                    continue;
                }
                for r in 0..f {
                    let yr = f64::from(row[r]);
                    for c in 0..=r {
                        g[r * f + c] += yr * f64::from(row[c]);
                    }
                }
            }
            g
        })
        .collect();
    let mut g = vec![0f64; f * f];
    for p in partials {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
    for r in 0..f {
        for c in 0..r {
            g[c * f + r] = g[r * f + c];
        }
    }
    g
}

/// A deterministic pseudo-random value in [-1, 1) for position `n` (splitmix64).
fn initial(n: u64) -> f32 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

impl Factors {
    /// The factors with one more column: `user[u]` for user u, `item[i]` for item i.
    pub fn with_column(self, user: &[f32], item: &[f32]) -> Factors {
        let f = self.f;
        let widen = |flat: &[f32], extra: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(flat.len() + extra.len());
            for (r, e) in extra.iter().enumerate() {
                out.extend_from_slice(&flat[r * f..(r + 1) * f]);
                out.push(*e);
            }
            out
        };
        Factors {
            f: f + 1,
            users: widen(&self.users, user),
            items: widen(&self.items, item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(factors: usize, iterations: usize) -> HybridConfig {
        HybridConfig {
            factors,
            iterations,
            ..HybridConfig::default()
        }
    }

    /// With f <= CG_STEPS each half-sweep is the exact minimiser: the gradient of the ALS loss
    /// in every item row (solved last) vanishes.
    #[test]
    fn item_rows_are_exact_minimisers() {
        let obs: Vec<Observation> = [(0, 0, 2.0), (0, 2, 1.0), (1, 1, 3.0), (2, 2, 0.5)]
            .iter()
            .map(|&(user, item, weight)| Observation { user, item, weight })
            .collect();
        let p = params(3, 2);
        let fit = als(3, 4, &obs, &p);
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
        let fit = als(20, 10, &obs, &p);
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
            .install(|| als(20, 10, &obs, &p));
        assert_eq!(single, fit);
    }
}
