//! User vectors: the weighted mean of the vectors of the items a user interacted with in the
//! window (weights: event weight x time decay, summed per item; see sql/prepare), L2-normalised.
//! A user whose weights are all zero (only returns, say) has no usable history and gets the
//! popularity fallback instead.

use std::collections::HashMap;

use crate::prepare::Interaction;

#[derive(Debug, Default)]
pub struct UserVectors {
    pub user_ids: Vec<String>,
    /// `user_ids.len() x dim`, row-major, unit length.
    pub flat: Vec<f32>,
    pub dim: usize,
    /// Valid events of each user in the window.
    pub n_events: Vec<i64>,
}

/// `interactions` sorted by user; `item_index` maps item ids to rows of `item_vectors`.
pub fn build(
    interactions: &[Interaction],
    item_index: &HashMap<&str, usize>,
    item_vectors: &[f32],
    dim: usize,
) -> UserVectors {
    let mut out = UserVectors {
        dim,
        ..Default::default()
    };
    let mut acc = vec![0f64; dim];
    let mut start = 0;
    while start < interactions.len() {
        let user = &interactions[start].user_id;
        let end = start
            + interactions[start..]
                .iter()
                .take_while(|i| &i.user_id == user)
                .count();
        acc.fill(0.0);
        let mut n_events = 0;
        for it in &interactions[start..end] {
            n_events += it.n_events;
            if it.weight <= 0.0 {
                continue;
            }
            if let Some(&row) = item_index.get(it.item_id.as_str()) {
                for (a, v) in acc
                    .iter_mut()
                    .zip(&item_vectors[row * dim..(row + 1) * dim])
                {
                    *a += it.weight * f64::from(*v);
                }
            }
        }
        let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-12 && norm.is_finite() {
            out.user_ids.push(user.clone());
            out.flat.extend(acc.iter().map(|a| (a / norm) as f32));
            out.n_events.push(n_events);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(u: &str, i: &str, w: f64) -> Interaction {
        Interaction {
            user_id: u.into(),
            item_id: i.into(),
            n_events: 1,
            weight: w,
        }
    }

    #[test]
    fn weighted_mean_normalised_and_zero_weight_users_dropped() {
        let items = vec![1.0, 0.0, 0.0, 1.0];
        let index: HashMap<&str, usize> = [("a", 0), ("b", 1)].into();
        let u = build(
            &[
                it("u1", "a", 3.0),
                it("u1", "b", 1.0),
                it("u2", "a", 0.0),
                it("u3", "b", 2.0),
            ],
            &index,
            &items,
            2,
        );
        assert_eq!(u.user_ids, vec!["u1", "u3"]);
        let n = (10f32).sqrt();
        assert!((u.flat[0] - 3.0 / n).abs() < 1e-6 && (u.flat[1] - 1.0 / n).abs() < 1e-6);
        assert_eq!(&u.flat[2..], &[0.0, 1.0]);
        assert_eq!(u.n_events, vec![2, 1]);
    }
}
