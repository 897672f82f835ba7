//! User vectors: the weighted mean of the vectors of the items a user interacted with in the
//! window (weights: event weight x time decay, summed per item; see sql/prepare), L2-normalised.
//! A user whose weights are all zero (only returns, say) has no usable history and gets the
//! popularity fallback instead.

use crate::domain::{Interaction, UserVectors, Vectors};

/// Text vectors of the users of `interactions` (sorted by user) from the item vectors `items`.
pub fn build(interactions: &[Interaction], items: &Vectors) -> UserVectors {
    let dim = items.dim;
    let item_index = items.index();
    let (mut ids, mut flat, mut n_events_of) = (Vec::new(), Vec::new(), Vec::new());
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
                for (a, v) in acc.iter_mut().zip(items.row(row as usize)) {
                    *a += it.weight * f64::from(*v);
                }
            }
        }
        let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-12 && norm.is_finite() {
            ids.push(user.clone());
            flat.extend(acc.iter().map(|a| (a / norm) as f32));
            n_events_of.push(n_events);
        }
        start = end;
    }
    UserVectors {
        vectors: Vectors::new(ids, flat, dim),
        n_events: n_events_of,
    }
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
        let items = Vectors::new(vec!["a".into(), "b".into()], vec![1.0, 0.0, 0.0, 1.0], 2);
        let u = build(
            &[
                it("u1", "a", 3.0),
                it("u1", "b", 1.0),
                it("u2", "a", 0.0),
                it("u3", "b", 2.0),
            ],
            &items,
        );
        assert_eq!(u.vectors.ids, vec!["u1", "u3"]);
        let n = (10f32).sqrt();
        let flat = &u.vectors.flat;
        assert!((flat[0] - 3.0 / n).abs() < 1e-6 && (flat[1] - 1.0 / n).abs() < 1e-6);
        assert_eq!(&flat[2..], &[0.0, 1.0]);
        assert_eq!(u.n_events, vec![2, 1]);
    }
}
