//! The audit between write and publish: invariants every published partition satisfies.
//! Any violation fails the run (exit 2) with nothing published.
//!
//! - every active user has exactly K recommendations, or all its eligible items when fewer
//!   than K are eligible (counted as short, with the reason, in the manifest);
//! - ranks are 1..n, scores finite and non-increasing with rank;
//! - no recommendation is an excluded (user, item) pair or an unavailable item;
//! - a personal score equals dot(user embedding, item vector);
//! - embeddings are unit length; `similar_items` never pairs an item with itself.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::vectors;
use crate::write::RecRow;

const UNIT_TOLERANCE: f64 = 1e-3;
const SCORE_TOLERANCE: f32 = 1e-4;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AuditReport {
    pub users: usize,
    pub short_users: usize,
    pub short_reason: Option<String>,
}

pub struct AuditInput<'a> {
    pub k: usize,
    pub recommendations: &'a [RecRow],
    pub active_users: &'a [String],
    /// Eligible candidate count per active user (candidates minus exclusions).
    pub eligible: &'a HashMap<String, usize>,
    pub exclusions: &'a HashMap<String, Vec<String>>,
    pub candidates: &'a HashSet<&'a str>,
    pub user_vectors: &'a HashMap<&'a str, &'a [f32]>,
    pub item_vectors: &'a HashMap<&'a str, &'a [f32]>,
    pub similar_items: &'a [RecRow],
}

pub fn audit(input: &AuditInput<'_>) -> Result<AuditReport> {
    let fail = |msg: String| Err(Error::Audit(msg));
    let mut by_user: HashMap<&str, Vec<&RecRow>> = HashMap::new();
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
        for (i, r) in rows.iter().enumerate() {
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
            if !input.candidates.contains(r.item_id.as_str()) {
                return fail(format!(
                    "user {user}: item {} is not an available catalog item",
                    r.item_id
                ));
            }
            if r.source == "personal" {
                let (Some(u), Some(v)) = (
                    input.user_vectors.get(user.as_str()),
                    input.item_vectors.get(r.item_id.as_str()),
                ) else {
                    return fail(format!(
                        "user {user}: personal recommendation without vectors"
                    ));
                };
                if (vectors::dot(u, v) - r.score).abs() > SCORE_TOLERANCE {
                    return fail(format!(
                        "user {user}, item {}: score {} is not the dot product",
                        r.item_id, r.score
                    ));
                }
            }
        }
    }
    for (what, set) in [("user", input.user_vectors), ("item", input.item_vectors)] {
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
        if r.user_id == r.item_id {
            return fail(format!(
                "similar_items pairs item {} with itself",
                r.item_id
            ));
        }
        if !r.score.is_finite() {
            return fail(format!(
                "similar_items: non-finite score for item {}",
                r.user_id
            ));
        }
    }
    Ok(report)
}
