//! Ranked lists of many users in flat arrays: the shape a night's recommendations take between
//! the top-K kernel, the audit, the evaluation and the Parquet writer, a chunk of users at a
//! time. 65,536 users with 50 items each are 3.3M `(item, score, repeat_score, neighbor_score)`
//! entries of 16 bytes plus one id per user; the item ids are shared by every chunk.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use super::records::{RankedList, Source};

/// Every user's list: user `u`'s entries are `offsets[u]..offsets[u + 1]` of `items`, `scores`,
/// `repeat` and `neighbor`, in rank order; `items` are positions in `item_ids`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    /// Users, sorted by id.
    pub users: Vec<String>,
    /// The items the entries point into (shared by the chunks of one run).
    pub item_ids: Arc<Vec<String>>,
    offsets: Vec<usize>,
    items: Vec<u32>,
    scores: Vec<f32>,
    repeat: Vec<f32>,
    neighbor: Vec<f32>,
    sources: Vec<Source>,
}

/// One user's list, borrowed from [`Lists`].
#[derive(Debug, Clone, Copy)]
pub struct ListRef<'a> {
    /// The user's id.
    pub user: &'a str,
    /// Item positions in [`Lists::item_ids`], rank order.
    pub items: &'a [u32],
    /// Published scores, same order.
    pub scores: &'a [f32],
    /// The repeat term of each score (0 for popular rows).
    pub repeat: &'a [f32],
    /// The neighbour term of each score (0 for popular rows).
    pub neighbor: &'a [f32],
    /// Where the list came from.
    pub source: Source,
}

impl Lists {
    /// No users yet; entries point into `item_ids`.
    pub fn new(item_ids: Arc<Vec<String>>) -> Lists {
        Lists {
            item_ids,
            offsets: vec![0],
            ..Lists::default()
        }
    }

    /// The lists so far, leaving none (the same items) for the users that come next.
    pub fn take(&mut self) -> Lists {
        std::mem::replace(self, Lists::new(self.item_ids.clone()))
    }

    /// Append `next`'s lists (the users after these, entries into the same items).
    pub fn append(&mut self, next: &Lists) {
        debug_assert!(
            Arc::ptr_eq(&self.item_ids, &next.item_ids) || self.item_ids == next.item_ids
        );
        for list in next.iter() {
            let entries = (0..list.items.len()).map(|i| {
                let (item, score) = (list.items[i], list.scores[i]);
                (item, score, list.repeat[i], list.neighbor[i])
            });
            self.push(list.user.to_string(), list.source, entries);
        }
    }

    /// Append the next user's list (users must come in id order). `entries`: (item position,
    /// score, repeat term, neighbour term), rank order.
    pub fn push(
        &mut self,
        user: String,
        source: Source,
        entries: impl IntoIterator<Item = (u32, f32, f32, f32)>,
    ) {
        debug_assert!(self.users.last().is_none_or(|last| *last < user));
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        for (item, score, repeat, neighbor) in entries {
            self.items.push(item);
            self.scores.push(score);
            self.repeat.push(repeat);
            self.neighbor.push(neighbor);
        }
        self.users.push(user);
        self.sources.push(source);
        self.offsets.push(self.items.len());
    }

    /// Users with a list.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Entries of every list together (the rows of `recommendations`).
    pub fn entries(&self) -> usize {
        self.items.len()
    }

    /// User `u`'s list.
    pub fn get(&self, u: usize) -> ListRef<'_> {
        let r = self.offsets[u]..self.offsets[u + 1];
        ListRef {
            user: &self.users[u],
            items: &self.items[r.clone()],
            scores: &self.scores[r.clone()],
            repeat: &self.repeat[r.clone()],
            neighbor: &self.neighbor[r],
            source: self.sources[u],
        }
    }

    /// Every list, user order.
    pub fn iter(&self) -> impl Iterator<Item = ListRef<'_>> {
        (0..self.len()).map(|u| self.get(u))
    }

    /// The entries of users `users` (a range of user positions).
    pub fn entry_range(&self, users: Range<usize>) -> Range<usize> {
        self.offsets[users.start]..self.offsets[users.end]
    }

    /// Item ids of user `u`'s list, rank order.
    pub fn item_ids_of(&self, u: usize) -> impl Iterator<Item = &str> {
        self.get(u)
            .items
            .iter()
            .map(|&i| self.item_ids[i as usize].as_str())
    }

    /// These lists as the lists evaluated on the next day: those of the users in `keep` (the
    /// users with ground truth), and how many users had a list.
    pub fn previous(&self, keep: &HashSet<&str>) -> PreviousLists {
        PreviousLists {
            lists: (0..self.len())
                .filter(|&u| keep.contains(self.users[u].as_str()))
                .map(|u| RankedList {
                    user_id: self.users[u].clone(),
                    items: self.item_ids_of(u).map(str::to_string).collect(),
                })
                .collect(),
            n_listed: self.len(),
        }
    }
}

/// The lists made for D-1 that the evaluation of D reads: those of the users with ground truth
/// on D (user order), and how many users had a list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviousLists {
    /// Lists of users with ground truth.
    pub lists: Vec<RankedList>,
    /// Users with a list, ground truth or not.
    pub n_listed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_each_users_entries_in_order() {
        let items = Arc::new(vec!["a".into(), "b".into(), "c".into()]);
        let mut lists = Lists::new(items);
        lists.push(
            "u1".into(),
            Source::Personal,
            [(2, 0.9, 0.1, 0.2), (0, 0.5, 0.0, 0.0)],
        );
        lists.push("u2".into(), Source::Popular, []);
        lists.push("u3".into(), Source::Popular, [(1, 1.0, 0.0, 0.0)]);
        assert_eq!((lists.len(), lists.entries()), (3, 3));
        let u1 = lists.get(0);
        assert_eq!(
            (u1.user, u1.items, u1.scores),
            ("u1", &[2, 0][..], &[0.9, 0.5][..])
        );
        assert_eq!((u1.repeat, u1.neighbor), (&[0.1, 0.0][..], &[0.2, 0.0][..]));
        assert!(lists.get(1).items.is_empty());
        assert_eq!(lists.entry_range(1..3), 2..3);
        let keep: HashSet<&str> = ["u1", "u3", "nobody"].into_iter().collect();
        let previous = lists.previous(&keep);
        assert_eq!((previous.lists.len(), previous.n_listed), (2, 3));
        assert_eq!(previous.lists[0].items, vec!["c", "a"]);
        assert_eq!(previous.lists[1].user_id, "u3");
    }

    #[test]
    fn taken_chunks_append_to_the_whole() {
        let items = Arc::new(vec!["a".into(), "b".into(), "c".into()]);
        let (mut whole, mut chunks) = (Lists::new(items.clone()), Lists::new(items.clone()));
        let mut parts = Lists::new(items);
        for (n, user) in ["u1", "u2", "u3", "u4"].into_iter().enumerate() {
            let entries = [(n as u32 % 3, 1.0 - n as f32 / 10.0, 0.0, n as f32)];
            whole.push(user.into(), Source::Personal, entries);
            chunks.push(user.into(), Source::Personal, entries);
            if n % 2 == 1 {
                parts.append(&chunks.take());
                assert!(chunks.is_empty());
            }
        }
        assert_eq!(parts, whole);
        assert_eq!(parts.entry_range(0..4), 0..4);
    }
}
