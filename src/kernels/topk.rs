//! Exact blockwise top-K by inner product (cosine for unit vectors).
//!
//! Blocks of users x blocks of items go through a real GEMM ([`super::blas`]: OpenBLAS when the
//! machine has it, else the `gemm` crate), then each user keeps a bounded heap of its best items; rayon runs user blocks in
//! parallel. Only one `block_users x block_items` score tile per thread exists at a time, so
//! memory is O(items x d + blocks) however many users there are; results are handed to a sink
//! chunk by chunk, in user order.
//!
//! Sparse per-user [`Adjustments`] are applied inside the kernel: an excluded item's score never
//! enters a heap, so a user gets exactly K rows whenever K items are eligible, and an item with
//! an additive term (the repeat and neighbour terms) competes with its adjusted score. Items must be given sorted by id: ties are
//! broken by the lower index, i.e. the lower item id. Each heap keeps a few more candidates than
//! K whose scores are then recomputed with [`dot`] (fixed summation order), so the
//! output does not depend on block sizes or thread count.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::blas;
use crate::config::DeviceChoice;
use crate::domain::dot;

/// Extra candidates kept per user beyond K, re-scored exactly before the final cut.
const MARGIN: usize = 8;

/// Top-K settings.
#[derive(Debug, Clone, Copy)]
pub struct TopkParams {
    /// Results per user.
    pub k: usize,
    /// Users per block.
    pub block_users: usize,
    /// Items per block.
    pub block_items: usize,
    /// Where it runs ([`super::top_k_on`]): this CPU kernel, or blockwise on a GPU.
    pub device: DeviceChoice,
}

/// One result: an item row and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Item row.
    pub item: u32,
    /// Its score: the exact dot product plus `adjustment`.
    pub score: f32,
    /// The user's sparse additive term for this item (0 for most items).
    pub adjustment: f32,
}

/// Per-user sparse additive terms on item scores, in CSR form (each user's items sorted,
/// distinct): `-inf` excludes the item, a finite value is added to its dot product.
#[derive(Debug, Clone, Default)]
pub struct Adjustments {
    offsets: Vec<usize>,
    items: Vec<u32>,
    values: Vec<f32>,
}

impl Adjustments {
    /// Exclusions only: every `(user, item)` index pair gets `-inf`.
    pub fn exclusions(n_users: usize, pairs: Vec<(u32, u32)>) -> Adjustments {
        let entries = pairs
            .into_iter()
            .map(|(u, i)| (u, i, f32::NEG_INFINITY))
            .collect();
        Adjustments::from_entries(n_users, entries)
    }

    /// No user yet: fill one user at a time with [`Adjustments::push_user`].
    pub fn new() -> Adjustments {
        Adjustments {
            offsets: vec![0],
            ..Default::default()
        }
    }

    /// The next user's `(item, value)` entries, in any order; the values of a repeated item add
    /// up (so an exclusion stays one).
    pub fn push_user(&mut self, entries: &mut [(u32, f32)]) {
        entries.sort_unstable_by_key(|&(i, _)| i);
        let start = *self.offsets.last().expect("started with Adjustments::new");
        for &(i, v) in entries.iter() {
            if self.items.len() > start && self.items.last() == Some(&i) {
                *self.values.last_mut().expect("a previous entry") += v;
            } else {
                self.items.push(i);
                self.values.push(v);
            }
        }
        self.offsets.push(self.items.len());
    }

    /// `other`'s users after these (`other` filled with [`Adjustments::push_user`] or made
    /// whole).
    pub fn append(&mut self, other: &Adjustments) {
        let base = self.items.len();
        self.items.extend_from_slice(&other.items);
        self.values.extend_from_slice(&other.values);
        self.offsets
            .extend(other.offsets.iter().skip(1).map(|o| o + base));
    }

    /// From `(user, item, value)` entries in any order; the values of repeated pairs add up
    /// (so an exclusion stays one).
    pub fn from_entries(n_users: usize, mut entries: Vec<(u32, u32, f32)>) -> Adjustments {
        entries.sort_unstable_by_key(|&(u, i, _)| (u, i));
        let mut offsets = vec![0usize; n_users + 1];
        let (mut items, mut values): (Vec<u32>, Vec<f32>) = (Vec::new(), Vec::new());
        let mut last = None;
        for (u, i, v) in entries {
            if last == Some((u, i)) {
                *values.last_mut().expect("a previous entry") += v;
                continue;
            }
            last = Some((u, i));
            offsets[u as usize + 1] += 1;
            items.push(i);
            values.push(v);
        }
        for u in 0..n_users {
            offsets[u + 1] += offsets[u];
        }
        Adjustments {
            offsets,
            items,
            values,
        }
    }

    /// The adjusted items of `user` (sorted) and their values.
    pub fn of(&self, user: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[user]..self.offsets[user + 1];
        (&self.items[range.clone()], &self.values[range])
    }

    /// The term of `(user, item)`: 0 when there is none.
    pub fn get(&self, user: usize, item: u32) -> f32 {
        let (items, values) = self.of(user);
        items.binary_search(&item).map_or(0.0, |at| values[at])
    }

    /// Is `item` excluded for `user`?
    pub fn excludes(&self, user: usize, item: u32) -> bool {
        self.get(user, item) == f32::NEG_INFINITY
    }
}

/// Heap entry ordered so that the heap's top is the worst kept candidate:
/// lower score is worse; at equal score the higher index is worse.
#[derive(Clone, Copy)]
struct Worst(f32, u32);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Top-K of every user. `users` is `n_users x dim`, `items` is `n_items x dim`, both row-major.
/// `sink(first_user, lists)` receives consecutive chunks of users in order.
pub fn top_k<E>(
    users: &[f32],
    items: &[f32],
    dim: usize,
    params: &TopkParams,
    adjustments: &Adjustments,
    mut sink: impl FnMut(usize, Vec<Vec<Hit>>) -> Result<(), E>,
) -> Result<(), E> {
    assert!(
        dim > 0 && users.len().is_multiple_of(dim) && items.len().is_multiple_of(dim),
        "matrix shapes: this is a bug"
    );
    let n_users = users.len() / dim;
    let threads = rayon::current_num_threads().max(1);
    // Small user sets are split finer so every thread has a block.
    let block_users = params.block_users.min(n_users.div_ceil(threads)).max(1);
    let blocks: Vec<usize> = (0..n_users).step_by(block_users).collect();
    let chunk = threads * 4;
    let progress = crate::progress::Progress::new("top-K", "user blocks", blocks.len());
    for starts in blocks.chunks(chunk) {
        let lists: Vec<Vec<Vec<Hit>>> = starts
            .par_iter()
            .map(|&u0| {
                let u1 = (u0 + block_users).min(n_users);
                user_block(
                    &users[u0 * dim..u1 * dim],
                    u0,
                    items,
                    dim,
                    params,
                    adjustments,
                )
            })
            .collect();
        sink(starts[0], lists.into_iter().flatten().collect())?;
        progress.inc(starts.len());
    }
    Ok(())
}

/// Convenience: all lists at once (tests, small inputs).
pub fn top_k_all(
    users: &[f32],
    items: &[f32],
    dim: usize,
    params: &TopkParams,
    adjustments: &Adjustments,
) -> Vec<Vec<Hit>> {
    let mut out = Vec::new();
    top_k::<()>(users, items, dim, params, adjustments, |_, lists| {
        out.extend(lists);
        Ok(())
    })
    .expect("infallible sink");
    out
}

fn user_block(
    users: &[f32],
    u0: usize,
    items: &[f32],
    dim: usize,
    params: &TopkParams,
    adjustments: &Adjustments,
) -> Vec<Vec<Hit>> {
    let bu = users.len() / dim;
    let n_items = items.len() / dim;
    let keep = keep(params.k, n_items);
    let mut heaps: Vec<BinaryHeap<Worst>> = (0..bu)
        .map(|_| BinaryHeap::with_capacity(keep.saturating_add(1)))
        .collect();
    let block_items = params.block_items.max(1).min(n_items.max(1));
    let mut tile = vec![0f32; bu * block_items];
    for i0 in (0..n_items).step_by(block_items) {
        let bi = block_items.min(n_items - i0);
        let tile = &mut tile[..bu * bi];
        // tile (bu x bi, row-major) = users (bu x dim) * items[i0..i0+bi]^T (dim x bi)
        let block = &items[i0 * dim..(i0 + bi) * dim];
        blas::sgemm(bu, bi, dim, users, dim, block, dim, true, tile, bi, 0.0);
        for (r, heap) in heaps.iter_mut().enumerate() {
            let row = &mut tile[r * bi..(r + 1) * bi];
            let (adjusted, values) = adjustments.of(u0 + r);
            let lo = adjusted.partition_point(|&x| (x as usize) < i0);
            let hi = adjusted.partition_point(|&x| (x as usize) < i0 + bi);
            for (&x, &v) in adjusted[lo..hi].iter().zip(&values[lo..hi]) {
                row[x as usize - i0] += v;
            }
            let mut threshold = if heap.len() == keep {
                heap.peek().map_or(f32::NEG_INFINITY, |w| w.0)
            } else {
                f32::NEG_INFINITY
            };
            for (j, &s) in row.iter().enumerate() {
                // Items arrive in increasing index order, so an equal score never displaces
                // a kept item: strictly greater is required.
                if s > threshold {
                    heap.push(Worst(s, (i0 + j) as u32));
                    if heap.len() > keep {
                        heap.pop();
                    }
                    if heap.len() == keep {
                        threshold = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0);
                    }
                }
            }
        }
    }
    heaps
        .into_iter()
        .enumerate()
        .map(|(r, heap)| {
            let candidates = heap.into_iter().map(|Worst(_, i)| i);
            finish(
                &users[r * dim..(r + 1) * dim],
                u0 + r,
                candidates,
                items,
                dim,
                adjustments,
                params.k,
            )
        })
        .collect()
}

/// Candidates kept per user before the exact re-scoring: K plus a margin, never more than
/// there are items (a caller may ask for "all").
pub(super) fn keep(k: usize, n_items: usize) -> usize {
    k.saturating_add(MARGIN).min(n_items.max(1))
}

/// The final cut of one user (`user`, row `u`): its candidate item rows re-scored with the exact
/// [`dot`] plus the user's term, excluded items dropped, sorted by score (descending) then item
/// row, cut to `k`. Every kernel ends here, so their lists agree whatever found the candidates.
pub(super) fn finish(
    user: &[f32],
    u: usize,
    candidates: impl IntoIterator<Item = u32>,
    items: &[f32],
    dim: usize,
    adjustments: &Adjustments,
    k: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = candidates
        .into_iter()
        .filter_map(|i| {
            let adjustment = adjustments.get(u, i);
            let similarity = dot(user, &items[i as usize * dim..(i as usize + 1) * dim]);
            (adjustment != f32::NEG_INFINITY).then_some(Hit {
                item: i,
                score: similarity + adjustment,
                adjustment,
            })
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    hits.truncate(k);
    hits
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: every eligible item scored with the exact dot, sorted (score desc, id asc).
    pub(in crate::kernels) fn reference(
        users: &[f32],
        items: &[f32],
        dim: usize,
        k: usize,
        ex: &Adjustments,
    ) -> Vec<Vec<Hit>> {
        users
            .chunks_exact(dim)
            .enumerate()
            .map(|(u, uv)| {
                let mut all: Vec<Hit> = items
                    .chunks_exact(dim)
                    .enumerate()
                    .filter(|(i, _)| !ex.excludes(u, *i as u32))
                    .map(|(i, iv)| {
                        let adjustment = ex.get(u, i as u32);
                        Hit {
                            item: i as u32,
                            score: dot(uv, iv) + adjustment,
                            adjustment,
                        }
                    })
                    .collect();
                all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                all.truncate(k);
                all
            })
            .collect()
    }

    pub(in crate::kernels) fn random_unit(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut v: Vec<f32> = (0..rows * dim)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        crate::domain::normalize_rows(&mut v, dim).unwrap();
        v
    }

    pub(in crate::kernels) fn same(a: &[Vec<Hit>], b: &[Vec<Hit>]) {
        assert_eq!(a.len(), b.len());
        for (u, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.len(), y.len(), "user {u}");
            for (h, g) in x.iter().zip(y) {
                assert_eq!(h.item, g.item, "user {u}: {x:?} vs {y:?}");
                assert!((h.score - g.score).abs() < 1e-6);
                assert_eq!(h.adjustment, g.adjustment);
            }
        }
    }

    /// Seeded exclusions (share `ex_share`) and repeat terms (share `boost_share`, some large
    /// enough to lift an item from the bottom); user 0 has every item excluded, some also
    /// boosted: still excluded.
    pub(in crate::kernels) fn random_adjustments(
        n_users: usize,
        n_items: usize,
        seed: u64,
        ex_share: f64,
        boost_share: f64,
    ) -> Adjustments {
        let mut entries = Vec::new();
        for u in 0..n_users {
            for i in 0..n_items {
                let draw = ((u * 31 + i * 17 + seed as usize) % 100) as f64 / 100.0;
                if draw < ex_share {
                    entries.push((u as u32, i as u32, f32::NEG_INFINITY));
                } else if ((u * 7 + i * 13 + seed as usize) % 100) as f64 / 100.0 < boost_share {
                    entries.push((u as u32, i as u32, (draw * 2.0) as f32));
                }
            }
        }
        entries.extend((0..n_items).map(|i| (0u32, i as u32, f32::NEG_INFINITY)));
        entries.extend((0..n_items).step_by(3).map(|i| (0u32, i as u32, 0.5)));
        Adjustments::from_entries(n_users, entries)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_brute_force(
            n_users in 1usize..40, n_items in 1usize..120, dim in 1usize..37, k in 1usize..30,
            bu in 1usize..17, bi in 1usize..70, seed in 0u64..1000, ex_share in 0.0f64..1.0,
            boost_share in 0.0f64..0.3,
        ) {
            let users = random_unit(n_users, dim, seed);
            let items = random_unit(n_items, dim, seed + 7);
            let ex = random_adjustments(n_users, n_items, seed, ex_share, boost_share);
            let got = top_k_all(&users, &items, dim, &TopkParams { k, block_users: bu, block_items: bi, device: DeviceChoice::Cpu }, &ex);
            let want = reference(&users, &items, dim, k, &ex);
            prop_assert!(got[0].is_empty());
            same(&got, &want);
        }
    }

    #[test]
    fn adjustments_pushed_per_user_or_appended_equal_those_from_entries() {
        let entries = vec![
            (0, 5, 0.5),
            (2, 1, f32::NEG_INFINITY),
            (0, 2, 0.25),
            (2, 1, 0.75),
            (0, 5, 0.125),
        ];
        let all = Adjustments::from_entries(3, entries.clone());
        let of_user = |u: u32| -> Vec<(u32, f32)> {
            (entries.iter().filter(|e| e.0 == u))
                .map(|e| (e.1, e.2))
                .collect()
        };
        let mut pushed = Adjustments::new();
        for u in 0..3 {
            pushed.push_user(&mut of_user(u));
        }
        for u in 0..3 {
            assert_eq!(all.of(u as usize), pushed.of(u as usize));
        }
        assert_eq!(pushed.of(0), (&[2, 5][..], &[0.25, 0.625][..]));
        assert_eq!(pushed.of(1), (&[][..], &[][..]));
        assert_eq!(pushed.of(2), (&[1][..], &[f32::NEG_INFINITY][..]));
        // Appended in two parts (users 0 and 1, then user 2), they are the whole again.
        let (mut first, mut last) = (Adjustments::new(), Adjustments::new());
        for u in 0..3 {
            if u < 2 { &mut first } else { &mut last }.push_user(&mut of_user(u));
        }
        first.append(&last);
        for u in 0..3 {
            assert_eq!(first.of(u), pushed.of(u));
        }
    }

    #[test]
    fn ties_break_by_item_index_and_blocks_do_not_matter() {
        // Items 0..50 are five copies of ten distinct vectors: many exact ties.
        let base = random_unit(10, 24, 3);
        let items: Vec<f32> = (0..5).flat_map(|_| base.clone()).collect();
        let users = random_unit(33, 24, 9);
        let ex = Adjustments::from_entries(
            33,
            vec![
                (1, 0, f32::NEG_INFINITY),
                (1, 10, f32::NEG_INFINITY),
                (2, 49, f32::NEG_INFINITY),
                (3, 7, 0.25),
                (3, 17, 0.25),
            ],
        );
        let want = reference(&users, &items, 24, 12, &ex);
        for (bu, bi) in [(1, 1), (4, 7), (33, 50), (256, 2048)] {
            same(
                &top_k_all(
                    &users,
                    &items,
                    24,
                    &TopkParams {
                        k: 12,
                        block_users: bu,
                        block_items: bi,
                        device: DeviceChoice::Cpu,
                    },
                    &ex,
                ),
                &want,
            );
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let p = TopkParams {
            k: 12,
            block_users: 5,
            block_items: 9,
            device: DeviceChoice::Cpu,
        };
        let a = one.install(|| top_k_all(&users, &items, 24, &p, &ex));
        let b = two.install(|| top_k_all(&users, &items, 24, &p, &ex));
        assert_eq!(a, b);
        same(&a, &want);
    }
}
