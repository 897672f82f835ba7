//! Popularity scores. The popularity list itself (items by number of events in the window,
//! ties: item_id ascending, minus the user's exclusions, first K: the fallback for users without
//! a usable history, `source = 'popular'`, and the baseline every metric is compared with) is
//! [`crate::domain::WindowData::popular`].

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
    fn scores_are_relative_to_the_most_popular_item() {
        assert_eq!(popularity_score(5, 10), 0.5);
        assert_eq!(popularity_score(10, 10), 1.0);
        assert_eq!(popularity_score(0, 0), 0.0);
    }
}
