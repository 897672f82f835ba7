//! The audit: invariants every published partition satisfies, checked on a run's results
//! before anything is staged. Any violation fails the run (exit 2) with nothing published.
//!
//! - every active user has exactly K recommendations, or all its eligible items when fewer
//!   than K are eligible (counted as short, with the reason, in the manifest);
//! - scores are finite and non-increasing with rank (ranks are list positions, 1..n);
//! - no recommendation is an excluded (user, item) pair or an unavailable item;
//! - a personal score equals dot(user embedding, item vector) + its finite, non-negative
//!   repeat term, and a popular row has none;
//! - embeddings are unit length; `similar_items` never pairs an item with itself.

use crate::domain::{
    ListRef, Lists, SimilarItem, Source, USERS_PER_CHUNK, UserRows, UserVectors, Vectors,
    WindowData, dot, ranges,
};
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

/// A run's results, as the audit reads them.
pub struct AuditInput<'a> {
    /// Recommendations per user.
    pub k: usize,
    /// The `recommendations` rows: every active user's list.
    pub lists: &'a Lists,
    /// The run's window: its active users (any valid event) and their exclusions.
    pub window: &'a WindowData,
    /// The published `item_vectors`.
    pub candidates: &'a Vectors,
    /// The published `user_embeddings`.
    pub users: &'a dyn UserRows,
    /// The `similar_items` rows.
    pub similar_items: &'a [SimilarItem],
}

/// Check every invariant (module docs); the first violation is an [`Error::Audit`].
pub fn audit(input: &AuditInput<'_>) -> Result<AuditReport> {
    let report = check_lists(input)?;
    for r in 0..input.candidates.len() {
        check_unit("item", &input.candidates.ids[r], input.candidates.row(r))?;
    }
    for r in input.similar_items {
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
    Ok(report)
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

/// The user vectors, made a chunk at a time in user order as the lists ask for them; every
/// chunk is made once and its vectors checked for unit length.
struct UserChunks<'a> {
    users: &'a dyn UserRows,
    chunks: Vec<std::ops::Range<usize>>,
    /// Chunks made so far; the last one is `current`.
    made: usize,
    current: UserVectors,
}

impl<'a> UserChunks<'a> {
    fn new(users: &'a dyn UserRows) -> UserChunks<'a> {
        UserChunks {
            users,
            chunks: ranges(users.ids().len(), USERS_PER_CHUNK).collect(),
            made: 0,
            current: UserVectors::default(),
        }
    }

    /// Make (and check) the next chunk; `false` when all are made.
    fn advance(&mut self) -> Result<bool> {
        let Some(range) = self.chunks.get(self.made).cloned() else {
            return Ok(false);
        };
        self.made += 1;
        self.current = self.users.chunk(range);
        let v = &self.current.vectors;
        for r in 0..v.len() {
            check_unit("user", &v.ids[r], v.row(r))?;
        }
        Ok(true)
    }

    /// The vector of `user`, if it has one (users are asked for in id order).
    fn vector(&mut self, user: &str) -> Result<Option<&[f32]>> {
        let ids = self.users.ids();
        let Ok(p) = ids.binary_search_by(|i| i.as_str().cmp(user)) else {
            return Ok(None);
        };
        while self.made <= p / USERS_PER_CHUNK {
            self.advance()?;
        }
        if self.made != p / USERS_PER_CHUNK + 1 {
            return fail(format!(
                "user {user}: lists out of user order: this is a bug"
            ));
        }
        Ok(Some(self.current.vectors.row(p % USERS_PER_CHUNK)))
    }

    /// Make and check the chunks no list asked for.
    fn finish(mut self) -> Result<()> {
        while self.advance()? {}
        Ok(())
    }
}

/// Every active user has exactly their list: K rows or all eligible items.
fn check_lists(input: &AuditInput<'_>) -> Result<AuditReport> {
    let lists = input.lists;
    if lists.item_ids != input.candidates.ids {
        return fail("the lists point into other items than the candidates".into());
    }
    let candidates = input.candidates.index();
    let window = input.window;
    let mut users = UserChunks::new(input.users);
    let mut report = AuditReport {
        users: window.len(),
        ..Default::default()
    };
    if lists.len() != window.len() {
        return fail(format!(
            "{} users have recommendations, {} are active",
            lists.len(),
            window.len()
        ));
    }
    for list in lists.iter() {
        let user = list.user;
        if window.user(user).is_none() {
            return fail(format!("user {user} has recommendations but is not active"));
        }
        // Sorted: the window's item rows are in id order.
        let excluded: Vec<&str> = window.excluded_ids(user).collect();
        let n_excluded = excluded
            .iter()
            .filter(|i| candidates.contains_key(*i))
            .count();
        let expected = input.k.min(candidates.len() - n_excluded);
        if list.items.len() != expected {
            return fail(format!(
                "user {user} has {} recommendations, expected {expected}",
                list.items.len()
            ));
        }
        if expected < input.k {
            report.short_users += 1;
            report.short_reason = Some(format!(
                "fewer than K = {} eligible items (candidates minus the user's exclusions)",
                input.k
            ));
        }
        let vector = match list.source {
            Source::Personal => users.vector(user)?,
            Source::Popular => None,
        };
        for i in 0..list.items.len() {
            check_entry(input, list, i, &excluded, vector)?;
        }
    }
    users.finish()?;
    Ok(report)
}

/// Entry `i` of a list: an available item, score order, not excluded, score = dot + repeat.
fn check_entry(
    input: &AuditInput<'_>,
    list: ListRef<'_>,
    i: usize,
    excluded: &[&str],
    vector: Option<&[f32]>,
) -> Result<()> {
    let (user, rank) = (list.user, i + 1);
    let (score, repeat) = (list.scores[i], list.repeat[i]);
    let Some(item) = input.lists.item_ids.get(list.items[i] as usize) else {
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
        if !(repeat.is_finite() && repeat >= 0.0) {
            return fail(format!(
                "user {user}, item {item}: repeat score {repeat} is not finite and non-negative"
            ));
        }
        let v = input.candidates.row(list.items[i] as usize);
        if (dot(u, v) + repeat - score).abs() > SCORE_TOLERANCE {
            return fail(format!(
                "user {user}, item {item}: score {score} is not the dot product plus the repeat score {repeat}"
            ));
        }
    } else if repeat != 0.0 {
        return fail(format!(
            "user {user}, item {item}: a popular row with a repeat score"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::WindowBuilder;

    /// Two candidates, one user with a personal list of both: every invariant holds.
    struct Case {
        /// User u's list: (item position, score, repeat term).
        entries: Vec<(u32, f32, f32)>,
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
            entries: vec![(0, 1.0, 0.0), (1, s, 0.0)],
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
        let mut lists = Lists::new(c.items.ids.clone());
        lists.push("u".into(), c.source, c.entries.clone());
        let mut window = WindowBuilder::new(c.items.ids.clone());
        for &(user, item, excluded) in &c.events {
            window.add(user, item, 1, 1.0, excluded);
        }
        audit(&AuditInput {
            k,
            lists: &lists,
            window: &window.finish(&[true, true]),
            candidates: &c.items,
            users: &c.users,
            similar_items: &c.similar,
        })
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
        fails(&c, 2, "a popular row with a repeat score");

        let mut c = valid();
        c.users.vectors.flat = vec![2.0, 0.0];
        c.entries[0].1 = 2.0;
        c.entries[1].1 = 2.0 * std::f32::consts::FRAC_1_SQRT_2;
        fails(&c, 2, "norm");

        let mut c = valid();
        c.similar[0].similar_item_id = "a".into();
        fails(&c, 2, "pairs item a with itself");

        let mut c = valid();
        c.similar[0].score = f32::INFINITY;
        fails(&c, 2, "similar_items: non-finite score");
    }
}
