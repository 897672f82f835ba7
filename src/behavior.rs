//! Behavior stage: user and item factors learned each run from the window's interactions by
//! implicit-feedback alternating least squares (Hu, Koren & Volinsky, 2008), and the hybrid
//! vectors that blend them with the text embeddings so that one cosine top-K ranks by both.
//!
//! ALS minimises, over user factors x_u and item factors y_i (f dimensions each),
//!
//!   sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)
//!
//! where p_ui = 1 when u has a positive decayed weight w_ui on item i in the window (else 0) and
//! c_ui = 1 + alpha w_ui. Each half-sweep moves every row towards its exact minimiser
//! x_u = (Y'Y + lambda I + sum_{i in u} alpha w_ui y_i y_i')^-1 sum_{i in u} (1 + alpha w_ui) y_i
//! by a few conjugate-gradient steps from the previous solution.
//!
//! The hybrid score is s(u, i) = tau cos(t_u, t_i) + x_u.y_i + beta pi_i (t: text vectors, tau:
//! `hybrid.text_weight`, pi_i: the item's popularity prior, beta: `hybrid.popularity_weight`;
//! the prior is carried as one more factor column). It is written as one dot product of unit
//! vectors:
//! item v_i = [sqrt(tau) t_i, y_i, r_i] / M and user q_u = [sqrt(tau) t_u, x_u, 0] / |.|, with
//! r_i = sqrt(M^2 - tau - |y_i|^2) and M^2 = tau + max_i |y_i|^2, so every |v_i| = 1 and
//! q_u.v_i = s(u, i) / (M |q_u|): a per-user positive scale, which ranks exactly like s.
//!
//! Deterministic: the initial item factors depend only on the item's position and the seed, and
//! every row is solved independently, so thread count does not change a bit.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::config::HybridConfig;
use crate::prepare::Interaction;
use crate::recommend::Candidates;
use crate::users::UserVectors;

/// Learned factors, row-major: `n_users x f` and `n_items x f`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub f: usize,
    pub users: Vec<f32>,
    pub items: Vec<f32>,
}

/// One observed (user, item, decayed weight > 0) triple, by row index.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub user: u32,
    pub item: u32,
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

/// Learn the factors of the window (users with a text vector x candidate items) and return the
/// hybrid candidates and user vectors. The popularity prior rides along as one more factor:
/// sqrt(beta) for every user, sqrt(beta) pi_i for item i, pi_i = ln(1 + n_i) / ln(1 + max n)
/// with n_i the item's events in the window. With `hybrid.factors = 0` and
/// `hybrid.popularity_weight = 0` the text vectors are returned unchanged.
pub fn hybrid(
    params: &HybridConfig,
    interactions: &[Interaction],
    popularity: &[(String, i64)],
    text_items: Candidates,
    text_users: UserVectors,
) -> (Candidates, UserVectors) {
    let beta = params.popularity_weight;
    if params.factors == 0 && beta == 0.0 {
        return (text_items, text_users);
    }
    let user_row: HashMap<&str, u32> = text_users
        .user_ids
        .iter()
        .enumerate()
        .map(|(u, id)| (id.as_str(), u as u32))
        .collect();
    let observations: Vec<Observation> = interactions
        .iter()
        .filter(|i| i.weight > 0.0)
        .filter_map(|i| {
            Some(Observation {
                user: *user_row.get(i.user_id.as_str())?,
                item: text_items.position(&i.item_id)?,
                weight: i.weight as f32,
            })
        })
        .collect();
    let (n_users, n_items) = (text_users.user_ids.len(), text_items.len());
    let mut factors = if params.factors > 0 {
        als(n_users, n_items, &observations, params)
    } else {
        Factors {
            f: 0,
            users: Vec::new(),
            items: Vec::new(),
        }
    };
    if beta > 0.0 {
        let max = popularity.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let mut prior = vec![0f32; n_items];
        for (item, n) in popularity {
            if let (Some(j), true) = (text_items.position(item), max > 0) {
                prior[j as usize] = ((*n as f64).ln_1p() / (max as f64).ln_1p()) as f32;
            }
        }
        let sb = beta.sqrt() as f32;
        let item_column: Vec<f32> = prior.iter().map(|p| sb * p).collect();
        factors = factors.with_column(&vec![sb; n_users], &item_column);
    }
    blend(params.text_weight, text_items, text_users, &factors)
}

impl Factors {
    /// The factors with one more column: `user[u]` for user u, `item[i]` for item i.
    fn with_column(self, user: &[f32], item: &[f32]) -> Factors {
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

/// The unit vectors of the hybrid score (module docs): `[sqrt(tau) t, factors, balance]`.
pub fn blend(
    tau: f64,
    text_items: Candidates,
    text_users: UserVectors,
    factors: &Factors,
) -> (Candidates, UserVectors) {
    let (t, f) = (text_items.dim, factors.f);
    let dim = t + f + 1;
    let st = tau.sqrt();
    let sq = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    let max_y2 = factors.items.chunks_exact(f).map(sq).fold(0.0f64, f64::max);
    let m = (tau + max_y2).sqrt().max(f64::MIN_POSITIVE);
    let mut items = Vec::with_capacity(text_items.len() * dim);
    for (j, y) in factors.items.chunks_exact(f).enumerate() {
        let row: Vec<f64> = text_items
            .vector(j)
            .iter()
            .map(|x| st * f64::from(*x))
            .chain(y.iter().map(|x| f64::from(*x)))
            .collect();
        let balance = (m * m - tau - sq(y)).max(0.0).sqrt();
        items.extend(
            row.iter()
                .chain(std::iter::once(&balance))
                .map(|x| (x / m) as f32),
        );
    }
    let mut users = Vec::with_capacity(text_users.user_ids.len() * dim);
    for (tu, x) in text_users
        .flat
        .chunks_exact(t)
        .zip(factors.users.chunks_exact(f))
    {
        let row: Vec<f64> = tu
            .iter()
            .map(|v| st * f64::from(*v))
            .chain(x.iter().map(|v| f64::from(*v)))
            .chain(std::iter::once(0.0))
            .collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        users.extend(row.iter().map(|v| (v / norm) as f32));
    }
    (
        text_items.with_vectors(items, dim),
        UserVectors {
            flat: users,
            dim,
            ..text_users
        },
    )
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

    /// Text only plus the prior: with equal text similarity the item with more events in the
    /// window ranks first, and one with none gets no prior at all.
    #[test]
    fn the_popularity_prior_breaks_text_ties_towards_popular_items() {
        let items = Candidates::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            2,
        );
        let users = UserVectors {
            user_ids: vec!["u".into()],
            flat: vec![1.0, 0.0],
            dim: 2,
            n_events: vec![1],
        };
        let params = HybridConfig {
            factors: 0,
            text_weight: 1.0,
            popularity_weight: 0.5,
            ..HybridConfig::default()
        };
        let popularity = vec![("b".to_string(), 9), ("a".to_string(), 2)];
        let (items, users) = hybrid(&params, &[], &popularity, items, users);
        assert_eq!(items.dim, 4, "text 2 + prior 1 + balance 1");
        let score = |j: usize| crate::vectors::dot(&users.flat, items.vector(j));
        assert!(
            score(1) > score(0),
            "b (9 events) over a (2): {} {}",
            score(1),
            score(0)
        );
        // s = 1 + 0.5 * ln(10)/ln(10) for b, 1 + 0.5 * ln(3)/ln(10) for a, 0 for c.
        let ratio = score(0) / score(1);
        let want = (1.0 + 0.5 * 3f64.ln() / 10f64.ln()) / 1.5;
        assert!((f64::from(ratio) - want).abs() < 1e-5, "{ratio} vs {want}");
        assert!(score(2).abs() < 1e-6);
    }

    #[test]
    fn blend_gives_unit_vectors_whose_dot_ranks_like_the_hybrid_score() {
        let text_items = Candidates::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            2,
        );
        let text_users = UserVectors {
            user_ids: vec!["u".into()],
            flat: vec![0.8, 0.6],
            dim: 2,
            n_events: vec![3],
        };
        let factors = Factors {
            f: 1,
            users: vec![2.0],
            items: vec![0.5, 0.0, 0.1],
        };
        let tau = 0.3;
        let (items, users) = blend(tau, text_items, text_users, &factors);
        assert_eq!(items.dim, 4);
        let text = [0.8f64, 0.6, 0.96];
        let want: Vec<f64> = (0..3)
            .map(|j| tau * text[j] + 2.0 * f64::from(factors.items[j]))
            .collect();
        let got: Vec<f64> = (0..3)
            .map(|j| crate::vectors::dot(&users.flat, items.vector(j)) as f64)
            .collect();
        for j in 0..3 {
            let norm: f32 = items.vector(j).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-6);
        }
        // Same ratios: got = want / (M |q|) for one positive constant.
        let scale = got[0] / want[0];
        assert!(scale > 0.0);
        for j in 0..3 {
            assert!((got[j] - scale * want[j]).abs() < 1e-6, "{got:?} {want:?}");
        }
    }
}
