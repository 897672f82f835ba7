//! How concentrated a set of lists is: the Gini index of item exposure and the mean novelty
//! of the recommended items.

use std::collections::HashMap;

use crate::domain::RankedList;

/// Gini index and novelty of lists at K over the window's available items (see `definition`).
pub fn distribution(
    lists: &[RankedList],
    popularity: &[(String, i64)],
    k: usize,
) -> (Option<f64>, Option<f64>) {
    let mut counts: HashMap<&str, u64> = popularity.iter().map(|(i, _)| (i.as_str(), 0)).collect();
    let total_events: i64 = popularity.iter().map(|(_, n)| n).sum();
    let share: HashMap<&str, f64> = popularity
        .iter()
        .map(|(i, n)| {
            (
                i.as_str(),
                (*n as f64 + 1.0) / (total_events as f64 + popularity.len() as f64),
            )
        })
        .collect();
    let (mut surprisal, mut n_recs) = (0.0, 0usize);
    for l in lists {
        for item in l.items.iter().take(k) {
            if let Some(c) = counts.get_mut(item.as_str()) {
                *c += 1;
            }
            if let Some(p) = share.get(item.as_str()) {
                surprisal -= p.log2();
                n_recs += 1;
            }
        }
    }
    let mut x: Vec<u64> = counts.into_values().collect();
    x.sort_unstable();
    let n = x.len() as f64;
    let sum: f64 = x.iter().map(|v| *v as f64).sum();
    let gini = (sum > 0.0).then(|| {
        x.iter()
            .enumerate()
            .map(|(i, v)| (2.0 * (i as f64 + 1.0) - n - 1.0) * *v as f64)
            .sum::<f64>()
            / (n * sum)
    });
    (gini, (n_recs > 0).then(|| surprisal / n_recs as f64))
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
        let lists = vec![
            RankedList {
                user_id: "u".into(),
                items: vec!["a".into(), "b".into()],
            },
            RankedList {
                user_id: "v".into(),
                items: vec!["a".into(), "c".into()],
            },
        ];
        let (gini, novelty) = distribution(&lists, &pop, 1);
        assert!((gini.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((novelty.unwrap() - 0.2630344).abs() < 1e-6);
        // K=2: counts a=2, b=1, c=1 -> x = [1, 1, 2]: ((-2)*1 + 0*1 + 2*2) / (3*4) = 1/6.
        let (gini, _) = distribution(&lists, &pop, 2);
        assert!((gini.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(distribution(&[], &pop, 2), (None, None));
    }
}
