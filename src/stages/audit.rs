//! The audit: invariants every published partition satisfies, checked on a run's results
//! before anything is staged. Any violation fails the run (exit 2) with nothing published.
//!
//! - every active user has exactly K recommendations, or all its eligible items when fewer
//!   than K are eligible (counted as short, with the reason, in the manifest);
//! - ranks are 1..n, scores finite and non-increasing with rank;
//! - no recommendation is an excluded (user, item) pair or an unavailable item;
//! - a personal score equals dot(user embedding, item vector) + its finite, non-negative
//!   repeat term, and a popular row has none;
//! - embeddings are unit length; `similar_items` never pairs an item with itself.

use std::collections::{HashMap, HashSet};

use crate::domain::{Recommendation, SimilarItem, Source, UserVectors, Vectors, dot};
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
    /// The `recommendations` rows.
    pub recommendations: &'a [Recommendation],
    /// Active users, sorted.
    pub active_users: &'a [String],
    /// Eligible candidate count per active user (candidates minus exclusions).
    pub eligible: &'a HashMap<String, usize>,
    /// Excluded items per user (sorted).
    pub exclusions: &'a HashMap<String, Vec<String>>,
    /// The published `item_vectors`.
    pub candidates: &'a Vectors,
    /// The published `user_embeddings`.
    pub users: &'a UserVectors,
    /// The `similar_items` rows.
    pub similar_items: &'a [SimilarItem],
}

/// Check every invariant (module docs); the first violation is an [`Error::Audit`].
pub fn audit(input: &AuditInput<'_>) -> Result<AuditReport> {
    let user_vectors = vectors_by_id(&input.users.vectors);
    let item_vectors = vectors_by_id(input.candidates);
    let report = check_lists(input, &user_vectors, &item_vectors)?;
    for (what, set) in [("user", &user_vectors), ("item", &item_vectors)] {
        for (id, v) in set.iter() {
            let norm = v
                .iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum::<f64>()
                .sqrt();
            if (norm - 1.0).abs() > UNIT_TOLERANCE {
                return fail(format!("{what} {id}: embedding norm {norm} is not 1"));
            }
        }
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

fn fail<T>(msg: String) -> Result<T> {
    Err(Error::Audit(msg))
}

type ById<'a> = HashMap<&'a str, &'a [f32]>;

/// Every active user has exactly their list: K rows or all eligible items.
fn check_lists(input: &AuditInput<'_>, users: &ById<'_>, items: &ById<'_>) -> Result<AuditReport> {
    let candidates: HashSet<&str> = input.candidates.ids.iter().map(String::as_str).collect();
    let mut by_user: HashMap<&str, Vec<&Recommendation>> = HashMap::new();
    for r in input.recommendations {
        by_user.entry(r.user_id.as_str()).or_default().push(r);
    }
    let mut report = AuditReport {
        users: input.active_users.len(),
        ..Default::default()
    };
    if by_user.len() != input.active_users.len() {
        return fail(format!(
            "{} users have recommendations, {} are active",
            by_user.len(),
            input.active_users.len()
        ));
    }
    let empty = Vec::new();
    for user in input.active_users {
        let Some(rows) = by_user.get(user.as_str()) else {
            return fail(format!("active user {user} has no recommendations"));
        };
        let eligible = input.eligible.get(user).copied().unwrap_or(0);
        let expected = input.k.min(eligible);
        if rows.len() != expected {
            return fail(format!(
                "user {user} has {} recommendations, expected {expected}",
                rows.len()
            ));
        }
        if expected < input.k {
            report.short_users += 1;
            report.short_reason = Some(format!(
                "fewer than K = {} eligible items (candidates minus the user's exclusions)",
                input.k
            ));
        }
        let excluded = input.exclusions.get(user).unwrap_or(&empty);
        for i in 0..rows.len() {
            check_row(user, i, rows, excluded, &candidates, users, items)?;
        }
    }
    Ok(report)
}

/// Row `i` of a user's list: rank, score order, not excluded, available, score = dot + repeat.
fn check_row(
    user: &str,
    i: usize,
    rows: &[&Recommendation],
    excluded: &[String],
    candidates: &HashSet<&str>,
    users: &ById<'_>,
    items: &ById<'_>,
) -> Result<()> {
    let r = rows[i];
    if r.rank != i as i32 + 1 {
        return fail(format!(
            "user {user}: rank {} at position {}",
            r.rank,
            i + 1
        ));
    }
    if !r.score.is_finite() {
        return fail(format!("user {user}: non-finite score at rank {}", r.rank));
    }
    if i > 0 && r.score > rows[i - 1].score {
        return fail(format!("user {user}: score rises at rank {}", r.rank));
    }
    if excluded.binary_search(&r.item_id).is_ok() {
        return fail(format!(
            "user {user}: excluded item {} recommended",
            r.item_id
        ));
    }
    if !candidates.contains(r.item_id.as_str()) {
        return fail(format!(
            "user {user}: item {} is not an available catalog item",
            r.item_id
        ));
    }
    if r.source == Source::Personal {
        let (Some(u), Some(v)) = (users.get(user), items.get(r.item_id.as_str())) else {
            return fail(format!(
                "user {user}: personal recommendation without vectors"
            ));
        };
        if !(r.repeat_score.is_finite() && r.repeat_score >= 0.0) {
            return fail(format!(
                "user {user}, item {}: repeat score {} is not finite and non-negative",
                r.item_id, r.repeat_score
            ));
        }
        if (dot(u, v) + r.repeat_score - r.score).abs() > SCORE_TOLERANCE {
            return fail(format!(
                "user {user}, item {}: score {} is not the dot product plus the repeat score {}",
                r.item_id, r.score, r.repeat_score
            ));
        }
    } else if r.repeat_score != 0.0 {
        return fail(format!(
            "user {user}, item {}: a popular row with a repeat score",
            r.item_id
        ));
    }
    Ok(())
}

fn vectors_by_id(v: &Vectors) -> HashMap<&str, &[f32]> {
    (0..v.len())
        .map(|r| (v.ids[r].as_str(), v.row(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two candidates, one user with a personal list of both: every invariant holds.
    struct Case {
        recs: Vec<Recommendation>,
        users: UserVectors,
        items: Vectors,
        exclusions: HashMap<String, Vec<String>>,
        eligible: HashMap<String, usize>,
        similar: Vec<SimilarItem>,
        active: Vec<String>,
    }

    fn rec(rank: i32, item: &str, score: f32) -> Recommendation {
        Recommendation {
            user_id: "u".into(),
            rank,
            item_id: item.into(),
            score,
            source: Source::Personal,
            repeat_score: 0.0,
        }
    }

    fn valid() -> Case {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        // u = (1, 0); a = (1, 0) scores 1; b = (s, s) scores s.
        Case {
            recs: vec![rec(1, "a", 1.0), rec(2, "b", s)],
            users: UserVectors {
                vectors: Vectors::new(vec!["u".into()], vec![1.0, 0.0], 2),
                n_events: vec![2],
            },
            items: Vectors::new(vec!["a".into(), "b".into()], vec![1.0, 0.0, s, s], 2),
            exclusions: HashMap::new(),
            eligible: HashMap::from([("u".to_string(), 2)]),
            similar: vec![SimilarItem {
                item_id: "a".into(),
                rank: 1,
                similar_item_id: "b".into(),
                score: s,
            }],
            active: vec!["u".into()],
        }
    }

    fn run(c: &Case, k: usize) -> Result<AuditReport> {
        audit(&AuditInput {
            k,
            recommendations: &c.recs,
            active_users: &c.active,
            eligible: &c.eligible,
            exclusions: &c.exclusions,
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
        let mut c = valid();
        c.eligible.insert("u".into(), 2);
        let report = run(&c, 3).unwrap();
        assert_eq!(report.short_users, 1);
        assert!(report.short_reason.unwrap().contains("fewer than K = 3"));
    }

    #[test]
    fn every_broken_invariant_fails_the_audit_by_name() {
        let mut c = valid();
        c.active.push("v".into());
        fails(&c, 2, "2 are active");

        let mut c = valid();
        c.recs.pop();
        fails(&c, 2, "has 1 recommendations, expected 2");

        let mut c = valid();
        c.recs[1].rank = 3;
        fails(&c, 2, "rank 3 at position 2");

        let mut c = valid();
        c.recs[1].score = f32::NAN;
        fails(&c, 2, "non-finite score");

        let mut c = valid();
        c.recs[1].score = 2.0;
        fails(&c, 2, "score rises");

        let mut c = valid();
        c.exclusions.insert("u".into(), vec!["b".into()]);
        fails(&c, 2, "excluded item b recommended");

        let mut c = valid();
        c.recs[1].item_id = "z".into();
        c.recs[1].source = Source::Popular;
        fails(&c, 2, "item z is not an available catalog item");

        let mut c = valid();
        c.recs[1].score = 0.5;
        fails(&c, 2, "is not the dot product");

        // A repeat term inside the score passes; one the score does not carry, a negative or
        // a non-finite one, or one on a popular row fails.
        let mut c = valid();
        c.recs[1].repeat_score = 0.25;
        c.recs[1].score += 0.25;
        run(&c, 2).unwrap();
        let mut c = valid();
        c.recs[1].repeat_score = 0.25;
        fails(&c, 2, "plus the repeat score 0.25");
        let mut c = valid();
        c.recs[1].repeat_score = -0.25;
        c.recs[1].score -= 0.25;
        fails(&c, 2, "is not finite and non-negative");
        let mut c = valid();
        c.recs[1].repeat_score = f32::INFINITY;
        fails(&c, 2, "is not finite and non-negative");
        let mut c = valid();
        c.recs[1].source = Source::Popular;
        c.recs[1].repeat_score = 0.25;
        fails(&c, 2, "a popular row with a repeat score");

        let mut c = valid();
        c.users.vectors.flat = vec![2.0, 0.0];
        c.recs[0].score = 2.0;
        c.recs[1].score = 2.0 * std::f32::consts::FRAC_1_SQRT_2;
        fails(&c, 2, "norm");

        let mut c = valid();
        c.similar[0].similar_item_id = "a".into();
        fails(&c, 2, "pairs item a with itself");

        let mut c = valid();
        c.similar[0].score = f32::INFINITY;
        fails(&c, 2, "similar_items: non-finite score");
    }
}
