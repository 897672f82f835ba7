//! The audit: invariants every published partition satisfies, checked on a run's results as
//! they are staged (the lists a chunk of users at a time, [`ListAudit`]). Any violation fails
//! the run (exit 2): the staging is discarded and nothing is published.
//!
//! - every active user has exactly K recommendations, or all its eligible items when fewer
//!   than K are eligible (counted as short, with the reason, in the manifest);
//! - scores are finite and non-increasing with rank (ranks are list positions, 1..n);
//! - no recommendation is an excluded (user, item) pair or an unavailable item;
//! - a personal score equals dot(user embedding, item vector) + its finite, non-negative
//!   repeat and neighbour terms, and a popular row has neither;
//! - embeddings are unit length; `similar_items` never pairs an item with itself.

use std::collections::HashMap;

use crate::domain::{ListRef, Lists, SimilarItem, Source, UserVectors, Vectors, WindowData, dot};
use crate::error::{Error, Result};

const UNIT_TOLERANCE: f64 = 1e-3;
const SCORE_TOLERANCE: f32 = 1e-4;

/// What the audit found besides violations.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AuditReport {
    /// Active users.
    pub users: usize,
    /// Users with fewer than K recommendations.
    pub short_users: usize,
    /// Why they are short.
    pub short_reason: Option<String>,
}

/// The audit of a run's `recommendations` and `user_embeddings`, one chunk of users at a time
/// as the lists are made ([`ListAudit::check`]), so no run holds every list to audit it.
pub struct ListAudit<'a> {
    k: usize,
    /// The run's window: its active users (any valid event) and their exclusions.
    window: &'a WindowData,
    /// The published `item_vectors`.
    candidates: &'a Vectors,
    index: HashMap<&'a str, u32>,
    /// Users checked so far, and the last of them.
    listed: usize,
    last: Option<String>,
    report: AuditReport,
}

impl<'a> ListAudit<'a> {
    /// Nothing checked yet: lists of K items per user over `candidates`, for `window`'s users.
    pub fn new(k: usize, window: &'a WindowData, candidates: &'a Vectors) -> ListAudit<'a> {
        ListAudit {
            k,
            window,
            candidates,
            index: candidates.index(),
            listed: 0,
            last: None,
            report: AuditReport {
                users: window.len(),
                ..Default::default()
            },
        }
    }

    /// The lists of the next users (after every user checked so far, in id order) and the
    /// vectors (`user_embeddings`) of those with a personal list.
    pub fn check(&mut self, lists: &Lists, users: &UserVectors) -> Result<()> {
        if *lists.item_ids != self.candidates.ids {
            return fail("the lists point into other items than the candidates".into());
        }
        let vectors = &users.vectors;
        for r in 0..vectors.len() {
            check_unit("user", &vectors.ids[r], vectors.row(r))?;
        }
        for list in lists.iter() {
            let user = list.user;
            if self.last.as_deref().is_some_and(|last| last >= user) {
                return fail(format!(
                    "user {user}: lists out of user order: this is a bug"
                ));
            }
            self.last = Some(user.to_string());
            self.listed += 1;
            if self.window.user(user).is_none() {
                return fail(format!("user {user} has recommendations but is not active"));
            }
            let vector = match list.source {
                Source::Personal => vectors
                    .ids
                    .binary_search_by(|i| i.as_str().cmp(user))
                    .ok()
                    .map(|r| vectors.row(r)),
                Source::Popular => None,
            };
            self.check_list(lists, list, vector)?;
        }
        Ok(())
    }

    /// Every active user had a list; what the audit found.
    pub fn finish(self) -> Result<AuditReport> {
        if self.listed != self.window.len() {
            return fail(format!(
                "{} users have recommendations, {} are active",
                self.listed,
                self.window.len()
            ));
        }
        Ok(self.report)
    }

    /// One user's list: K rows or all eligible items, and every entry valid.
    fn check_list(
        &mut self,
        lists: &Lists,
        list: ListRef<'_>,
        vector: Option<&[f32]>,
    ) -> Result<()> {
        let user = list.user;
        // Sorted: the window's item rows are in id order.
        let excluded: Vec<&str> = self.window.excluded_ids(user).collect();
        let n_excluded = excluded
            .iter()
            .filter(|i| self.index.contains_key(*i))
            .count();
        let expected = self.k.min(self.candidates.len() - n_excluded);
        if list.items.len() != expected {
            return fail(format!(
                "user {user} has {} recommendations, expected {expected}",
                list.items.len()
            ));
        }
        if expected < self.k {
            self.report.short_users += 1;
            self.report.short_reason = Some(format!(
                "fewer than K = {} eligible items (candidates minus the user's exclusions)",
                self.k
            ));
        }
        for i in 0..list.items.len() {
            check_entry(lists, self.candidates, list, i, &excluded, vector)?;
        }
        Ok(())
    }
}

/// The per-item tables: unit `item_vectors`; `similar_items` never pairs an item with itself
/// and has finite scores.
pub fn audit_items(candidates: &Vectors, similar_items: &[SimilarItem]) -> Result<()> {
    for r in 0..candidates.len() {
        check_unit("item", &candidates.ids[r], candidates.row(r))?;
    }
    for r in similar_items {
        if r.item_id == r.similar_item_id {
            return fail(format!(
                "similar_items pairs item {} with itself",
                r.item_id
            ));
        }
        if !r.score.is_finite() {
            return fail(format!(
                "similar_items: non-finite score for item {}",
                r.item_id
            ));
        }
    }
    Ok(())
}

fn check_unit(what: &str, id: &str, v: &[f32]) -> Result<()> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if (norm - 1.0).abs() > UNIT_TOLERANCE {
        return fail(format!("{what} {id}: embedding norm {norm} is not 1"));
    }
    Ok(())
}

fn fail<T>(msg: String) -> Result<T> {
    Err(Error::Audit(msg))
}

/// Entry `i` of a list: an available item, score order, not excluded, score = dot + repeat +
/// neighbour.
fn check_entry(
    lists: &Lists,
    candidates: &Vectors,
    list: ListRef<'_>,
    i: usize,
    excluded: &[&str],
    vector: Option<&[f32]>,
) -> Result<()> {
    let (user, rank) = (list.user, i + 1);
    let (score, repeat, neighbor) = (list.scores[i], list.repeat[i], list.neighbor[i]);
    let Some(item) = lists.item_ids.get(list.items[i] as usize) else {
        return fail(format!(
            "user {user}: item position {} at rank {rank} is not an available catalog item",
            list.items[i]
        ));
    };
    if !score.is_finite() {
        return fail(format!("user {user}: non-finite score at rank {rank}"));
    }
    if i > 0 && score > list.scores[i - 1] {
        return fail(format!("user {user}: score rises at rank {rank}"));
    }
    if excluded.binary_search(&item.as_str()).is_ok() {
        return fail(format!("user {user}: excluded item {item} recommended"));
    }
    if list.source == Source::Personal {
        let Some(u) = vector else {
            return fail(format!(
                "user {user}: personal recommendation without vectors"
            ));
        };
        for (term, value) in [("repeat", repeat), ("neighbour", neighbor)] {
            if !(value.is_finite() && value >= 0.0) {
                return fail(format!(
                    "user {user}, item {item}: {term} score {value} is not finite and non-negative"
                ));
            }
        }
        let v = candidates.row(list.items[i] as usize);
        if (dot(u, v) + repeat + neighbor - score).abs() > SCORE_TOLERANCE {
            return fail(format!(
                "user {user}, item {item}: score {score} is not the dot product plus the repeat score {repeat} and the neighbour score {neighbor}"
            ));
        }
    } else if repeat != 0.0 || neighbor != 0.0 {
        return fail(format!(
            "user {user}, item {item}: a popular row with a repeat or neighbour score"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::WindowBuilder;

    /// Two candidates, one user with a personal list of both: every invariant holds.
    struct Case {
        /// User u's list: (item position, score, repeat term, neighbour term).
        entries: Vec<(u32, f32, f32, f32)>,
        source: Source,
        users: UserVectors,
        items: Vectors,
        /// The window's (user, catalog row of a or b, excluded) pairs.
        events: Vec<(&'static str, u32, bool)>,
        similar: Vec<SimilarItem>,
    }

    fn valid() -> Case {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        // u = (1, 0); a = (1, 0) scores 1; b = (s, s) scores s.
        Case {
            entries: vec![(0, 1.0, 0.0, 0.0), (1, s, 0.0, 0.0)],
            source: Source::Personal,
            users: UserVectors {
                vectors: Vectors::new(vec!["u".into()], vec![1.0, 0.0], 2),
                n_events: vec![2],
            },
            items: Vectors::new(vec!["a".into(), "b".into()], vec![1.0, 0.0, s, s], 2),
            events: vec![("u", 0, false), ("u", 1, false)],
            similar: vec![SimilarItem {
                item_id: "a".into(),
                rank: 1,
                similar_item_id: "b".into(),
                score: s,
            }],
        }
    }

    fn run(c: &Case, k: usize) -> Result<AuditReport> {
        let mut lists = Lists::new(Arc::new(c.items.ids.clone()));
        lists.push("u".into(), c.source, c.entries.clone());
        let mut window = WindowBuilder::new(c.items.ids.clone());
        for &(user, item, excluded) in &c.events {
            window.add(user, item, 1, 1.0, excluded);
        }
        let window = window.finish(&[true, true]).unwrap();
        let mut lists_audit = ListAudit::new(k, &window, &c.items);
        lists_audit.check(&lists, &c.users)?;
        let report = lists_audit.finish()?;
        audit_items(&c.items, &c.similar)?;
        Ok(report)
    }

    fn fails(c: &Case, k: usize, needle: &str) {
        match run(c, k) {
            Err(Error::Audit(msg)) => assert!(msg.contains(needle), "{msg} lacks {needle:?}"),
            other => panic!("expected an audit failure about {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_run_passes_and_short_users_are_counted() {
        let report = run(&valid(), 2).unwrap();
        assert_eq!((report.users, report.short_users), (1, 0));
        let report = run(&valid(), 3).unwrap();
        assert_eq!(report.short_users, 1);
        assert!(report.short_reason.unwrap().contains("fewer than K = 3"));
    }

    #[test]
    fn every_broken_invariant_fails_the_audit_by_name() {
        let mut c = valid();
        c.events.push(("v", 0, false));
        fails(&c, 2, "2 are active");

        let mut c = valid();
        c.events = vec![("v", 0, false)];
        fails(&c, 2, "user u has recommendations but is not active");

        let mut c = valid();
        c.entries.pop();
        fails(&c, 2, "has 1 recommendations, expected 2");

        let mut c = valid();
        c.entries[1].0 = 7;
        fails(
            &c,
            2,
            "item position 7 at rank 2 is not an available catalog item",
        );

        let mut c = valid();
        c.entries[1].1 = f32::NAN;
        fails(&c, 2, "non-finite score");

        let mut c = valid();
        c.entries[1].1 = 2.0;
        fails(&c, 2, "score rises");

        let mut c = valid();
        c.events[1].2 = true;
        c.entries.remove(0);
        fails(&c, 1, "excluded item b recommended");

        let mut c = valid();
        c.entries[1].1 = 0.5;
        fails(&c, 2, "is not the dot product");

        // A repeat term inside the score passes; one the score does not carry, a negative or
        // a non-finite one, or one on a popular row fails.
        let mut c = valid();
        c.entries[1].2 = 0.25;
        c.entries[1].1 += 0.25;
        run(&c, 2).unwrap();
        let mut c = valid();
        c.entries[1].2 = 0.25;
        fails(&c, 2, "plus the repeat score 0.25");
        let mut c = valid();
        c.entries[1].2 = -0.25;
        c.entries[1].1 -= 0.25;
        fails(&c, 2, "is not finite and non-negative");
        let mut c = valid();
        c.entries[1].2 = f32::INFINITY;
        fails(&c, 2, "is not finite and non-negative");
        let mut c = valid();
        c.source = Source::Popular;
        c.entries[1].2 = 0.25;
        fails(&c, 2, "a popular row with a repeat or neighbour score");

        // The same for the neighbour term, alone and beside a repeat term.
        let mut c = valid();
        (c.entries[1].2, c.entries[1].3) = (0.125, 0.0625);
        c.entries[1].1 += 0.1875;
        run(&c, 2).unwrap();
        let mut c = valid();
        c.entries[1].3 = 0.125;
        fails(&c, 2, "and the neighbour score 0.125");
        let mut c = valid();
        c.entries[1].3 = f32::NAN;
        fails(&c, 2, "neighbour score NaN is not finite and non-negative");
        let mut c = valid();
        c.source = Source::Popular;
        c.entries[1].3 = 0.125;
        fails(&c, 2, "a popular row with a repeat or neighbour score");

        let mut c = valid();
        c.users.vectors.flat = vec![2.0, 0.0];
        c.entries[0].1 = 2.0;
        c.entries[1].1 = 2.0 * std::f32::consts::FRAC_1_SQRT_2;
        fails(&c, 2, "norm");

        let mut c = valid();
        c.users = UserVectors::default();
        fails(&c, 2, "personal recommendation without vectors");

        let mut c = valid();
        c.similar[0].similar_item_id = "a".into();
        fails(&c, 2, "pairs item a with itself");

        let mut c = valid();
        c.similar[0].score = f32::INFINITY;
        fails(&c, 2, "similar_items: non-finite score");
    }

    /// Chunks of users are audited in order: the same lists in two chunks pass, a chunk that
    /// repeats or goes back to an earlier user fails.
    #[test]
    fn chunks_must_come_in_user_order() {
        let c = valid();
        let items = Arc::new(c.items.ids.clone());
        let mut window = WindowBuilder::new(c.items.ids.clone());
        for user in ["u", "v"] {
            window.add(user, 0, 1, 1.0, false);
            window.add(user, 1, 1, 1.0, false);
        }
        let window = window.finish(&[true, true]).unwrap();
        let chunk = |user: &str| {
            let mut lists = Lists::new(items.clone());
            lists.push(user.into(), Source::Personal, c.entries.clone());
            let users = UserVectors {
                vectors: Vectors::new(vec![user.into()], vec![1.0, 0.0], 2),
                n_events: vec![2],
            };
            (lists, users)
        };
        let (u, v) = (chunk("u"), chunk("v"));
        let mut audit = ListAudit::new(2, &window, &c.items);
        audit.check(&u.0, &u.1).unwrap();
        audit.check(&v.0, &v.1).unwrap();
        assert_eq!(audit.finish().unwrap().users, 2);
        let mut audit = ListAudit::new(2, &window, &c.items);
        audit.check(&v.0, &v.1).unwrap();
        match audit.check(&u.0, &u.1) {
            Err(Error::Audit(msg)) => assert!(msg.contains("out of user order"), "{msg}"),
            other => panic!("expected an order failure, got {other:?}"),
        }
    }
}
