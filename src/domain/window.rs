//! What the prepare stage makes of one training window, interned: users by their position in
//! the window's sorted user ids, items by their row in the run's catalog (sorted by id). A
//! (user, item) interaction takes 16 bytes and an exclusion 4.
//!
//! The interactions are the part that grows with events (30 million pairs for a million users
//! is 0.48 GB), and they are only ever read a range of users at a time (the users' text vectors,
//! the behavior model's rows, the repeat and neighbour terms), so they are spilled to an unnamed scratch file
//! in `TMPDIR` as the window is built and read back per range ([`WindowData::interactions`]).
//! What stays in memory is per user (ids, event counts, offsets: about 60 bytes a user) plus
//! the exclusions, which the audit, the popularity lists and the evaluation read user by user.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::vectors::Vectors;
use crate::error::{Error, Result};

/// Bytes of one spilled interaction: the item's catalog row (u32), its days with a positive
/// weight (u32), its weight (f64).
const PAIR_BYTES: usize = 16;

/// Interactions, exclusions and popularity of one training window.
#[derive(Debug, Default)]
pub struct WindowData {
    /// Active users: every user with a valid event in the window, sorted by id.
    pub users: Vec<String>,
    /// Valid (deduplicated) events of each user of `users`.
    pub user_events: Vec<i64>,
    /// The item ids the rows below point into: the run's catalog, sorted by id.
    pub item_ids: Vec<String>,
    /// Available items, most popular first (ties: item id), with their event counts.
    pub popularity: Vec<(String, i64)>,
    /// The catalog row of each `popularity` entry.
    popularity_rows: Vec<u32>,
    /// Per user, `offsets[u]..offsets[u + 1]`: its interactions' positions in `spill`.
    offsets: Vec<usize>,
    /// Every interaction, users in order, each user's items ascending ([`PAIR_BYTES`] each);
    /// `None` when there is none or once released.
    spill: Option<File>,
    /// Per user, `excluded_offsets[u]..excluded_offsets[u + 1]` into `excluded`.
    excluded_offsets: Vec<usize>,
    /// Items each user must not be recommended (catalog rows, ascending).
    excluded: Vec<u32>,
}

/// The interactions of a range of users, read back from the window's spill
/// ([`WindowData::interactions`]).
#[derive(Debug)]
pub struct Interactions {
    /// The users (positions in the window).
    users: Range<usize>,
    /// Per user of `users`, `offsets[u - users.start]..offsets[u - users.start + 1]` into
    /// `items`, `days` and `weights`.
    offsets: Vec<usize>,
    /// Items of each user's interactions (catalog rows, ascending).
    items: Vec<u32>,
    /// Days of the window on which each interaction had a positive weight (an event of a type
    /// with a positive weight).
    days: Vec<u32>,
    /// Sum of the decayed event weights of each interaction.
    weights: Vec<f64>,
}

impl Interactions {
    /// User `u`'s interactions (`u` in the range read): catalog rows (ascending) and their
    /// weights. Empty once [`WindowData::release_interactions`] ran.
    pub fn of(&self, u: usize) -> (&[u32], &[f64]) {
        let at = self.range(u);
        (&self.items[at.clone()], &self.weights[at])
    }

    /// User `u`'s days per interaction, in the order of [`Interactions::of`]: on how many days
    /// of the window the user had an event of a positive-weight type with the item.
    pub fn days(&self, u: usize) -> &[u32] {
        &self.days[self.range(u)]
    }

    fn range(&self, u: usize) -> Range<usize> {
        assert!(self.users.contains(&u), "user {u} of {:?}", self.users);
        match self
            .offsets
            .get(u - self.users.start..u - self.users.start + 2)
        {
            Some(&[a, b]) => a..b,
            _ => 0..0,
        }
    }

    /// User `u`'s text vector into `out`: the mean of the rows of `items` (catalog order) of the
    /// items the user has a positive weight on, weighted by it, L2-normalised. `false` (and `out`
    /// unspecified) when the user has no usable history (only zero weights, say returns).
    pub fn text_vector(&self, u: usize, items: &Vectors, acc: &mut [f64], out: &mut [f32]) -> bool {
        acc.fill(0.0);
        let (rows, weights) = self.of(u);
        for (&row, &weight) in rows.iter().zip(weights) {
            if weight > 0.0 {
                for (a, v) in acc.iter_mut().zip(items.row(row as usize)) {
                    *a += weight * f64::from(*v);
                }
            }
        }
        let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
        if !(norm > 1e-12 && norm.is_finite()) {
            return false;
        }
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = (a / norm) as f32;
        }
        true
    }
}

impl WindowData {
    /// Active users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the window has no active user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The position of user `id` in `users`.
    pub fn user(&self, id: &str) -> Option<usize> {
        self.users.binary_search_by(|u| u.as_str().cmp(id)).ok()
    }

    /// The interactions of users `users` (positions), read from the spill in one read (16 bytes
    /// an interaction). Empty once [`WindowData::release_interactions`] ran.
    pub fn interactions(&self, users: Range<usize>) -> Result<Interactions> {
        assert!(users.end <= self.len(), "users {users:?} of {}", self.len());
        let (Some(file), Some(offsets)) = (&self.spill, self.offsets.get(users.start..=users.end))
        else {
            return Ok(Interactions {
                users,
                offsets: Vec::new(),
                items: Vec::new(),
                days: Vec::new(),
                weights: Vec::new(),
            });
        };
        let first = offsets[0];
        let mut bytes = vec![0u8; (offsets[offsets.len() - 1] - first) * PAIR_BYTES];
        file.read_exact_at(&mut bytes, (first * PAIR_BYTES) as u64)
            .map_err(|e| Error::infra("reading the window's interactions back from TMPDIR", e))?;
        let pairs = bytes.chunks_exact(PAIR_BYTES);
        Ok(Interactions {
            offsets: offsets.iter().map(|o| o - first).collect(),
            items: pairs
                .clone()
                .map(|p| u32::from_le_bytes(p[..4].try_into().expect("4 bytes")))
                .collect(),
            days: pairs
                .clone()
                .map(|p| u32::from_le_bytes(p[4..8].try_into().expect("4 bytes")))
                .collect(),
            weights: pairs
                .map(|p| f64::from_le_bytes(p[8..].try_into().expect("8 bytes")))
                .collect(),
            users,
        })
    }

    /// Catalog rows user `u` must not be recommended (ascending).
    pub fn excluded(&self, u: usize) -> &[u32] {
        &self.excluded[self.excluded_offsets[u]..self.excluded_offsets[u + 1]]
    }

    /// Ids of the items user `id` must not be recommended (none for a user not in the window).
    pub fn excluded_ids(&self, id: &str) -> impl Iterator<Item = &str> {
        let rows = self.user(id).map_or(&[][..], |u| self.excluded(u));
        rows.iter().map(|&r| self.item_ids[r as usize].as_str())
    }

    /// The popularity list of user `u` (`None`: a user not in the window): the most popular
    /// available items minus the user's exclusions, first `k`.
    pub fn popular(&self, u: Option<usize>, k: usize) -> impl Iterator<Item = &(String, i64)> {
        let excluded = u.map_or(&[][..], |u| self.excluded(u));
        self.popularity
            .iter()
            .zip(&self.popularity_rows)
            .filter(|(_, r)| excluded.binary_search(r).is_err())
            .map(|(p, _)| p)
            .take(k)
    }

    /// Drop the (user, item) weights: nothing after top-K reads them.
    pub fn release_interactions(&mut self) {
        self.offsets = Vec::new();
        self.spill = None;
    }
}

/// Users per bucket of the builder's day aggregates (by arrival): `finish` sums one bucket at a
/// time, so what it holds is one bucket's aggregates, not the window's.
const BUCKET_USERS: u32 = 1 << 16;
/// Day aggregates a bucket holds in memory before they go to the scratch file as one block.
const BLOCK_ROWS: usize = 4096;
/// Bytes of one day aggregate: its key (user << 33 | item << 1 | excluded) and weight.
const ROW_BYTES: usize = 16;
/// The excluded flag of a summed pair, in the high bit of its item row.
const EXCLUDED: u32 = 1 << 31;

/// Builds a [`WindowData`] from per-day partial aggregates of the window's events: the window's
/// interaction of (user, item) is the sum of its days' (weights and event counts added, the
/// days with a positive weight counted, the item excluded when any day excludes it). Days are
/// added in date order and each day's weights are summed in that order, so the result does not
/// depend on the engine's row order.
///
/// Nothing here grows with events in memory: the day aggregates go to a scratch file in blocks,
/// bucketed by user, as they arrive; `finish` sums a bucket at a time into a second scratch file
/// (users in arrival order), then copies each user's pairs into the window's spill in id order.
/// Memory is per user (the id twice, its event count and two offsets) plus a block per bucket
/// and, in `finish`, one bucket's aggregates (about 30 MB at 30 events a user).
pub struct WindowBuilder {
    item_ids: Vec<String>,
    user_index: HashMap<String, u32>,
    users: Vec<String>,
    user_events: Vec<i64>,
    item_events: Vec<i64>,
    rows: Buckets,
}

impl WindowBuilder {
    /// An empty window over the catalog `item_ids` (sorted by id; fewer than 2^31).
    pub fn new(item_ids: Vec<String>) -> WindowBuilder {
        let n = item_ids.len();
        assert!(n < EXCLUDED as usize, "a catalog of {n} items");
        WindowBuilder {
            item_ids,
            user_index: HashMap::new(),
            users: Vec::new(),
            user_events: Vec::new(),
            item_events: vec![0; n],
            rows: Buckets::default(),
        }
    }

    /// One day's aggregate of `user` on catalog row `item`: `n_events` valid events, their
    /// decayed weights summed to `weight`, and whether they exclude the item. An error writing
    /// the scratch file is returned by [`WindowBuilder::finish`].
    pub fn add(&mut self, user: &str, item: u32, n_events: i64, weight: f64, excluded: bool) {
        let u = match self.user_index.get(user) {
            Some(&u) => u,
            None => {
                let u = self.users.len() as u32;
                self.user_index.insert(user.to_string(), u);
                self.users.push(user.to_string());
                self.user_events.push(0);
                u
            }
        };
        self.user_events[u as usize] += n_events;
        self.item_events[item as usize] += n_events;
        let key = (u64::from(u) << 33) | (u64::from(item) << 1) | u64::from(excluded);
        self.rows.push((u / BUCKET_USERS) as usize, (key, weight));
    }

    /// The window; `available[r]`: whether catalog row r can be recommended (popularity lists
    /// only available items, those without events last with a count of 0). The interactions
    /// go to the spill, never into memory.
    pub fn finish(self, available: &[bool]) -> Result<WindowData> {
        let WindowBuilder {
            item_ids,
            user_index,
            mut users,
            user_events,
            item_events,
            rows,
        } = self;
        drop(user_index);
        let fail = |e| Error::infra("spilling the window's interactions to TMPDIR", e);
        let (summed, ends) = rows.sum_pairs(users.len()).map_err(fail)?;

        // Users sorted by id; each user's summed pairs copied to the spill in that order.
        let mut order: Vec<u32> = (0..users.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| users[a as usize].cmp(&users[b as usize]));
        let mut data = WindowData {
            users: order
                .iter()
                .map(|&u| std::mem::take(&mut users[u as usize]))
                .collect(),
            user_events: order.iter().map(|&u| user_events[u as usize]).collect(),
            offsets: Vec::with_capacity(order.len() + 1),
            excluded_offsets: Vec::with_capacity(order.len() + 1),
            ..Default::default()
        };
        drop(users);
        let file = tempfile::tempfile().map_err(fail)?;
        let mut spill = BufWriter::with_capacity(1 << 20, &file);
        let (mut bytes, mut n_pairs) = (Vec::new(), 0);
        for &u in &order {
            data.offsets.push(n_pairs);
            data.excluded_offsets.push(data.excluded.len());
            let (first, last) = (ends[u as usize], ends[u as usize + 1]);
            bytes.resize((last - first) * PAIR_BYTES, 0);
            summed
                .read_exact_at(&mut bytes, (first * PAIR_BYTES) as u64)
                .map_err(fail)?;
            for pair in bytes.chunks_exact_mut(PAIR_BYTES) {
                let raw = u32::from_le_bytes(pair[..4].try_into().expect("4 bytes"));
                let item = raw & !EXCLUDED;
                if raw & EXCLUDED != 0 {
                    data.excluded.push(item);
                }
                pair[..4].copy_from_slice(&item.to_le_bytes());
            }
            spill.write_all(&bytes).map_err(fail)?;
            n_pairs += last - first;
        }
        data.offsets.push(n_pairs);
        data.excluded_offsets.push(data.excluded.len());
        spill.flush().map_err(fail)?;
        drop(spill);
        data.spill = Some(file);

        let mut popular: Vec<u32> = (0..item_ids.len() as u32)
            .filter(|&r| available[r as usize])
            .collect();
        // Rows are in id order: a stable sort by count keeps ties by id.
        popular.sort_by_key(|&r| std::cmp::Reverse(item_events[r as usize]));
        data.popularity = popular
            .iter()
            .map(|&r| (item_ids[r as usize].clone(), item_events[r as usize]))
            .collect();
        data.popularity_rows = popular;
        data.item_ids = item_ids;
        Ok(data)
    }
}

/// The builder's day aggregates, bucketed by user: each bucket fills a block of
/// [`BLOCK_ROWS`] in memory, and a full block goes to the end of one scratch file.
#[derive(Default)]
struct Buckets {
    /// Created with the first full block.
    file: Option<File>,
    /// Bytes written to `file`.
    len: u64,
    /// Per bucket, the aggregates not yet written, in arrival order.
    open: Vec<Vec<(u64, f64)>>,
    /// Per bucket, where its written blocks start in `file`, in arrival order.
    blocks: Vec<Vec<u64>>,
    /// The first error writing `file`; nothing is written after it.
    error: Option<std::io::Error>,
    /// A block's bytes on their way to `file`.
    bytes: Vec<u8>,
}

impl Buckets {
    fn push(&mut self, bucket: usize, row: (u64, f64)) {
        if bucket >= self.open.len() {
            self.open.resize_with(bucket + 1, Vec::new);
            self.blocks.resize_with(bucket + 1, Vec::new);
        }
        let open = &mut self.open[bucket];
        if open.capacity() == 0 {
            open.reserve_exact(BLOCK_ROWS);
        }
        open.push(row);
        if open.len() == BLOCK_ROWS {
            if let Err(e) = self.write_block(bucket) {
                self.error.get_or_insert(e);
            }
            self.open[bucket].clear();
        }
    }

    fn write_block(&mut self, bucket: usize) -> std::io::Result<()> {
        if self.error.is_some() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            none => none.insert(tempfile::tempfile()?),
        };
        let bytes = &mut self.bytes;
        bytes.clear();
        for (key, weight) in &self.open[bucket] {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&weight.to_le_bytes());
        }
        file.write_all_at(bytes, self.len)?;
        self.blocks[bucket].push(self.len);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bucket `bucket`'s aggregates, in arrival order.
    fn take(&mut self, bucket: usize) -> std::io::Result<Vec<(u64, f64)>> {
        let blocks = std::mem::take(&mut self.blocks[bucket]);
        let open = std::mem::take(&mut self.open[bucket]);
        let mut rows = Vec::with_capacity(blocks.len() * BLOCK_ROWS + open.len());
        let mut bytes = vec![0u8; BLOCK_ROWS * ROW_BYTES];
        for at in blocks {
            let file = self.file.as_ref().expect("a written block has a file");
            file.read_exact_at(&mut bytes, at)?;
            rows.extend(bytes.chunks_exact(ROW_BYTES).map(|r| {
                let key = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
                (key, f64::from_le_bytes(r[8..].try_into().expect("8 bytes")))
            }));
        }
        rows.extend(open);
        Ok(rows)
    }

    /// Sum every (user, item) over its days, a bucket at a time, into a scratch file of
    /// [`PAIR_BYTES`] pairs (item row with [`EXCLUDED`], days with a positive weight, weight),
    /// users in arrival order, each user's items ascending; and `ends`: user u's pairs are
    /// `ends[u]..ends[u + 1]`.
    fn sum_pairs(mut self, n_users: usize) -> std::io::Result<(File, Vec<usize>)> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let file = tempfile::tempfile()?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut ends = Vec::with_capacity(n_users + 1);
        ends.push(0);
        for bucket in 0..self.open.len() {
            let mut rows = self.take(bucket)?;
            // Stable: a pair's days stay in order, so its weight is summed in date order.
            rows.sort_by_key(|(key, _)| key >> 1);
            let mut start = 0;
            while start < rows.len() {
                let pair = rows[start].0 >> 1;
                let (mut weight, mut days, mut excluded) = (0.0f64, 0u32, false);
                while start < rows.len() && rows[start].0 >> 1 == pair {
                    weight += rows[start].1;
                    days += u32::from(rows[start].1 > 0.0);
                    excluded |= rows[start].0 & 1 == 1;
                    start += 1;
                }
                let item = (pair & ((1 << 32) - 1)) as u32;
                let flag = if excluded { EXCLUDED } else { 0 };
                out.write_all(&(item | flag).to_le_bytes())?;
                out.write_all(&days.to_le_bytes())?;
                out.write_all(&weight.to_le_bytes())?;
                let user = (pair >> 32) as usize;
                // Every user has a pair: users end in order, one after another.
                if ends.len() == user + 1 {
                    ends.push(ends[user]);
                }
                ends[user + 1] += 1;
            }
        }
        assert_eq!(ends.len(), n_users + 1, "every user has a day aggregate");
        out.flush()?;
        drop(out);
        Ok((file, ends))
    }
}

/// Invalid rows by reason, and the total rows of the training window.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvalidRows {
    /// Every row of the window's partitions.
    pub total_rows: u64,
    /// Dropped rows by reason (`null_user_id`, `unknown_event_type`, ...).
    pub by_reason: BTreeMap<String, u64>,
}

impl InvalidRows {
    /// Dropped rows, all reasons together.
    pub fn invalid(&self) -> u64 {
        self.by_reason.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn days_merge_per_user_and_item_in_id_order() {
        let mut b = WindowBuilder::new(ids(&["a", "b", "c", "d"]));
        // Day 1, then day 2; users arrive out of id order.
        b.add("v", 2, 1, 0.5, false);
        b.add("u", 1, 2, 1.0, false);
        b.add("u", 0, 1, 0.25, true);
        b.add("u", 1, 1, 2.0, true);
        b.add("w", 3, 1, 0.0, false);
        let w = b.finish(&[true, true, true, false]).unwrap();
        assert_eq!(w.users, ids(&["u", "v", "w"]));
        assert_eq!(w.user_events, vec![4, 1, 1]);
        let all = w.interactions(0..3).unwrap();
        assert_eq!(all.of(0), (&[0, 1][..], &[0.25, 3.0][..]));
        assert_eq!(all.of(1), (&[2][..], &[0.5][..]));
        assert_eq!(all.of(2), (&[3][..], &[0.0][..]));
        // Days with a positive weight: item b on both days, a on one, a zero weight on none.
        assert_eq!(
            (all.days(0), all.days(1), all.days(2)),
            (&[1, 2][..], &[1][..], &[0][..])
        );
        // Any range reads the same rows back.
        let tail = w.interactions(1..3).unwrap();
        assert_eq!((tail.of(1), tail.of(2)), (all.of(1), all.of(2)));
        assert_eq!(w.interactions(2..2).unwrap().items, Vec::<u32>::new());
        assert_eq!(w.excluded(0), &[0, 1]);
        assert!(w.excluded(1).is_empty() && w.excluded(2).is_empty());
        assert_eq!(w.excluded_ids("u").collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(w.excluded_ids("nobody").count(), 0);
        // Available items only, by events then id; unseen items last with 0.
        let pop: Vec<(String, i64)> = w.popularity.clone();
        assert_eq!(pop, vec![("b".into(), 3), ("a".into(), 1), ("c".into(), 1)]);
        let top: Vec<&str> = w.popular(Some(0), 2).map(|p| p.0.as_str()).collect();
        assert_eq!(top, vec!["c"]);
        let top: Vec<&str> = w.popular(None, 2).map(|p| p.0.as_str()).collect();
        assert_eq!(top, vec!["b", "a"]);
        assert_eq!((w.user("v"), w.user("x")), (Some(1), None));
    }

    #[test]
    fn text_vectors_are_weighted_means_and_zero_weight_users_have_none() {
        let items = Vectors::new(ids(&["a", "b"]), vec![1.0, 0.0, 0.0, 1.0], 2);
        let mut b = WindowBuilder::new(items.ids.clone());
        for (u, i, weight) in [
            ("u1", 0, 3.0),
            ("u1", 1, 1.0),
            ("u2", 0, 0.0),
            ("u3", 1, 2.0),
        ] {
            b.add(u, i, 1, weight, false);
        }
        let w = b.finish(&[true, true]).unwrap().interactions(0..3).unwrap();
        let (mut acc, mut out) = (vec![0f64; 2], vec![0f32; 2]);
        assert!(w.text_vector(0, &items, &mut acc, &mut out));
        let n = 10f32.sqrt();
        assert!((out[0] - 3.0 / n).abs() < 1e-6 && (out[1] - 1.0 / n).abs() < 1e-6);
        assert!(
            !w.text_vector(1, &items, &mut acc, &mut out),
            "u2: only a zero weight"
        );
        assert!(w.text_vector(2, &items, &mut acc, &mut out));
        assert_eq!(out, vec![0.0, 1.0]);
    }

    #[test]
    fn many_buckets_and_blocks_sum_each_pair_in_day_order() {
        // 150,000 users in arrival order other than their ids' (three buckets), buckets with
        // many blocks, pairs repeated over days with weights whose sum depends on the order.
        let n_items = 50u32;
        let mut b = WindowBuilder::new((0..n_items).map(|i| format!("i{i:02}")).collect());
        let mut expected: BTreeMap<(String, u32), (f64, bool, u32)> = BTreeMap::new();
        let mut events: BTreeMap<String, i64> = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _day in 0..4 {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..120_000 {
                let r = next();
                let user = format!("u{}", r % 150_000);
                let item = (r >> 20) as u32 % n_items;
                if !seen.insert((user.clone(), item)) {
                    continue; // one aggregate per (user, item) a day
                }
                // A tenth of the days' aggregates with a zero weight (say a return alone).
                let weight = if (r >> 30) % 10 == 0 {
                    0.0
                } else {
                    (r >> 11) as f64 * 1e-7
                };
                let (n, excluded) = (1 + (r >> 40) as i64 % 3, r >> 63 == 1);
                b.add(&user, item, n, weight, excluded);
                let e = expected
                    .entry((user.clone(), item))
                    .or_insert((0.0, false, 0));
                e.0 += weight;
                e.1 |= excluded;
                e.2 += u32::from(weight > 0.0);
                *events.entry(user).or_default() += n;
            }
        }
        let w = b.finish(&vec![true; n_items as usize]).unwrap();
        assert_eq!(w.users, events.keys().cloned().collect::<Vec<_>>());
        assert_eq!(w.user_events, events.values().copied().collect::<Vec<_>>());
        let all = w.interactions(0..w.len()).unwrap();
        let mut got = BTreeMap::new();
        for (u, user) in w.users.iter().enumerate() {
            let (items, weights) = all.of(u);
            assert!(
                items.windows(2).all(|p| p[0] < p[1]),
                "{user}: items ascending"
            );
            for ((&item, &weight), &days) in items.iter().zip(weights).zip(all.days(u)) {
                let excluded = w.excluded(u).binary_search(&item).is_ok();
                got.insert((user.clone(), item), (weight, excluded, days));
            }
            assert_eq!(
                w.excluded(u).len(),
                items
                    .iter()
                    .filter(|&&i| expected[&(user.clone(), i)].1)
                    .count()
            );
        }
        assert_eq!(got.len(), expected.len());
        for (pair, (weight, excluded, days)) in &expected {
            let (w2, e2, d2) = got[pair];
            assert_eq!(
                (weight.to_bits(), *excluded, *days),
                (w2.to_bits(), e2, d2),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn released_interactions_read_empty() {
        let mut b = WindowBuilder::new(ids(&["a"]));
        b.add("u", 0, 1, 1.0, true);
        let mut w = b.finish(&[true]).unwrap();
        assert_eq!(w.interactions(0..1).unwrap().of(0), (&[0][..], &[1.0][..]));
        w.release_interactions();
        assert_eq!(w.interactions(0..1).unwrap().of(0), (&[][..], &[][..]));
        assert_eq!(w.excluded(0), &[0]);
    }
}
