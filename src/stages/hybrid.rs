//! The hybrid vectors: text embeddings blended with behavior factors (implicit ALS or low-rank
//! EASE over the window, [`crate::kernels::als`], [`crate::kernels::ease`]) and a popularity prior, so that one cosine top-K ranks by all
//! three.
//!
//! The hybrid score is s(u, i) = tau cos(t_u, t_i) + x_u.y_i + beta pi_i (t: text vectors, tau:
//! `hybrid.text_weight`, pi_i: the item's popularity prior, beta: `hybrid.popularity_weight`;
//! the prior is carried as one more factor column). It is written as one dot product of unit
//! vectors:
//! item v_i = [sqrt(tau) t_i, y_i, r_i] / M and user q_u = [sqrt(tau) t_u, x_u, 0] / |.|, with
//! r_i = sqrt(M^2 - tau - |y_i|^2) and M^2 = tau + max_i |y_i|^2, so every |v_i| = 1 and
//! q_u.v_i = s(u, i) / (M |q_u|): a per-user positive scale, which ranks exactly like s.

use crate::config::{BehaviorModel, HybridConfig};
use crate::domain::{Interaction, UserVectors, Vectors};
use crate::kernels::{Factors, Observation, als, ease};

/// Learn the factors of the window (users with a text vector x candidate items) and return the
/// hybrid candidates and user vectors. The popularity prior rides along as one more factor:
/// sqrt(beta) for every user, sqrt(beta) pi_i for item i, pi_i = ln(1 + n_i) / ln(1 + max n)
/// with n_i the item's events in the window. With `hybrid.factors = 0` and
/// `hybrid.popularity_weight = 0` the text vectors are returned unchanged.
pub fn hybrid(
    params: &HybridConfig,
    interactions: &[Interaction],
    popularity: &[(String, i64)],
    text_items: Vectors,
    text_users: UserVectors,
) -> (Vectors, UserVectors) {
    let beta = params.popularity_weight;
    if params.factors == 0 && beta == 0.0 {
        return (text_items, text_users);
    }
    let user_row = text_users.vectors.index();
    let item_row = text_items.index();
    let observations: Vec<Observation> = interactions
        .iter()
        .filter(|i| i.weight > 0.0)
        .filter_map(|i| {
            Some(Observation {
                user: *user_row.get(i.user_id.as_str())?,
                item: *item_row.get(i.item_id.as_str())?,
                weight: i.weight as f32,
            })
        })
        .collect();
    let (n_users, n_items) = (text_users.vectors.len(), text_items.len());
    let mut factors = if params.factors > 0 {
        match params.model {
            BehaviorModel::Als => als(n_users, n_items, &observations, params),
            BehaviorModel::Ease => ease(n_users, n_items, &observations, params),
        }
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
            if let (Some(&j), true) = (item_row.get(item.as_str()), max > 0) {
                prior[j as usize] = ((*n as f64).ln_1p() / (max as f64).ln_1p()) as f32;
            }
        }
        let sb = beta.sqrt() as f32;
        let item_column: Vec<f32> = prior.iter().map(|p| sb * p).collect();
        factors = factors.with_column(&vec![sb; n_users], &item_column);
    }
    blend(params.text_weight, text_items, text_users, &factors)
}

/// The unit vectors of the hybrid score (module docs): `[sqrt(tau) t, factors, balance]`.
pub fn blend(
    tau: f64,
    text_items: Vectors,
    text_users: UserVectors,
    factors: &Factors,
) -> (Vectors, UserVectors) {
    let (t, f) = (text_items.dim, factors.f);
    let dim = t + f + 1;
    let st = tau.sqrt();
    let sq = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    let max_y2 = factors.items.chunks_exact(f).map(sq).fold(0.0f64, f64::max);
    let m = (tau + max_y2).sqrt().max(f64::MIN_POSITIVE);
    let mut items = Vec::with_capacity(text_items.len() * dim);
    for (j, y) in factors.items.chunks_exact(f).enumerate() {
        let row: Vec<f64> = text_items
            .row(j)
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
    let mut users = Vec::with_capacity(text_users.vectors.len() * dim);
    for (tu, x) in text_users
        .vectors
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
            vectors: text_users.vectors.with_vectors(users, dim),
            n_events: text_users.n_events,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text only plus the prior: with equal text similarity the item with more events in the
    /// window ranks first, and one with none gets no prior at all.
    #[test]
    fn the_popularity_prior_breaks_text_ties_towards_popular_items() {
        let items = Vectors::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            2,
        );
        let users = UserVectors {
            vectors: Vectors::new(vec!["u".into()], vec![1.0, 0.0], 2),
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
        let score = |j: usize| crate::domain::dot(&users.vectors.flat, items.row(j));
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

    /// With `hybrid.model = "ease"` the behavior part follows co-occurrence: items a and b are
    /// bought together by three users, c and d by three others; a user with only a gets b first
    /// (not d, which is as popular), and every vector is unit length.
    #[test]
    fn ease_factors_rank_the_co_bought_item_first() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let items = Vectors::new(ids, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2);
        let users: Vec<String> = (0..7).map(|u| format!("u{u}")).collect();
        let mut interactions = Vec::new();
        for (u, bought) in [
            (0, "ab"),
            (1, "ab"),
            (2, "ab"),
            (3, "cd"),
            (4, "cd"),
            (5, "cd"),
            (6, "a"),
        ] {
            for i in bought.chars() {
                interactions.push(Interaction {
                    user_id: users[u].clone(),
                    item_id: i.to_string(),
                    n_events: 1,
                    weight: 1.0,
                });
            }
        }
        let text_users = UserVectors {
            vectors: Vectors::new(users.clone(), [1.0, 0.0].repeat(7), 2),
            n_events: vec![2, 2, 2, 2, 2, 2, 1],
        };
        let params = HybridConfig {
            model: BehaviorModel::Ease,
            factors: 4,
            regularization: 1.0,
            text_weight: 0.1,
            popularity_weight: 0.0,
            ..HybridConfig::default()
        };
        let (items, users) = hybrid(&params, &interactions, &[], items, text_users);
        for r in 0..4 {
            let norm: f32 = items.row(r).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5, "item {r}: {norm}");
        }
        let score = |j: usize| crate::domain::dot(users.vectors.row(6), items.row(j));
        assert!(
            score(1) > score(3) + 0.1,
            "b {} vs d {}",
            score(1),
            score(3)
        );
    }

    #[test]
    fn blend_gives_unit_vectors_whose_dot_ranks_like_the_hybrid_score() {
        let text_items = Vectors::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            2,
        );
        let text_users = UserVectors {
            vectors: Vectors::new(vec!["u".into()], vec![0.8, 0.6], 2),
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
            .map(|j| crate::domain::dot(&users.vectors.flat, items.row(j)) as f64)
            .collect();
        for j in 0..3 {
            let norm: f32 = items.row(j).iter().map(|x| x * x).sum();
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
