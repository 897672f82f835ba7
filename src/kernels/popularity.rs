//! Popularity lists: items by number of events in the window (ties: item_id ascending), minus
//! the user's exclusions, first K. The fallback for users without a usable history
//! (`source = 'popular'`) and the baseline every metric is compared with.

/// One user's popularity list: `(item_id, n_events)` in rank order.
pub fn popular_list<'a>(
    popularity: &'a [(String, i64)],
    excluded: &[String],
    k: usize,
) -> Vec<&'a (String, i64)> {
    popularity
        .iter()
        .filter(|(item, _)| excluded.binary_search(item).is_err())
        .take(k)
        .collect()
}

/// The published score of a popular item: its event count relative to the most popular item,
/// in [0, 1], so fallback rows sort and compare like cosine scores.
pub fn popularity_score(n_events: i64, max_events: i64) -> f32 {
    if max_events <= 0 {
        0.0
    } else {
        (n_events as f64 / max_events as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_exclusions_and_keeps_order() {
        let pop: Vec<(String, i64)> = [("b", 9), ("a", 5), ("c", 5), ("d", 0)]
            .iter()
            .map(|(i, n)| (i.to_string(), *n))
            .collect();
        let got: Vec<&str> = popular_list(&pop, &["a".to_string()], 2)
            .iter()
            .map(|(i, _)| i.as_str())
            .collect();
        assert_eq!(got, vec!["b", "c"]);
        assert_eq!(popular_list(&pop, &[], 10).len(), 4);
        assert_eq!(popularity_score(5, 10), 0.5);
        assert_eq!(popularity_score(0, 0), 0.0);
    }
}
