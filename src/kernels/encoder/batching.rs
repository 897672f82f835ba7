//! Token-budget batching: texts sorted by length (longest first), packed while
//! `rows x longest` (padding counted) stays within the budget. A text longer than the budget
//! gets a batch of its own.

/// Batches of row indices; every row appears exactly once.
pub fn plan(lengths: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Longest first, ties by row: deterministic batches.
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for row in order {
        let len = lengths[row].max(1);
        let width = longest.max(len);
        if !current.is_empty() && (current.len() + 1) * width > max_batch_tokens {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(row);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_by_padded_tokens() {
        let batches = plan(&[3, 10, 4, 10, 2], 20);
        assert_eq!(batches, vec![vec![1, 3], vec![2, 0, 4]]);
        assert_eq!(plan(&[50, 1], 20), vec![vec![0], vec![1]]);
        assert!(plan(&[], 20).is_empty());
    }

    proptest! {
        #[test]
        fn every_row_once_and_within_budget(lengths in proptest::collection::vec(1usize..300, 0..200), budget in 1usize..4000) {
            let batches = plan(&lengths, budget);
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            seen.sort();
            prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for b in &batches {
                let longest = b.iter().map(|&r| lengths[r]).max().unwrap();
                prop_assert!(b.len() == 1 || b.len() * longest <= budget);
            }
        }
    }
}
