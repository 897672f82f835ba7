//! Recommend stage: every active user's list. Users with a vector get their exact top-K of the
//! candidate items (blockwise kernel, exclusions and the repeat term inside it,
//! `source = 'personal'`; run by the
//! [`Engine`], in this process or on a cluster); users without a usable history get the
//! popularity list minus their exclusions (`source = 'popular'`), which is also the baseline's
//! list. And `similar_items`: every catalog item's top-K candidates, never itself.

use std::collections::HashMap;

use crate::config::Config;
use crate::domain::{
    Catalog, RankedList, Recommendation, SimilarItem, Source, UserVectors, Vectors, WindowData,
};
use crate::engine::Engine;
use crate::error::Result;
use crate::kernels::{Adjustments, Hit, TopkParams, popular_lists, popularity_score};

/// The items top-K scores against: the catalog's available items in id order (so ties break by
/// item_id), with their rows of `items` (vectors of every catalog item, in catalog order).
/// These are exactly the published `item_vectors`.
pub fn candidates(catalog: &Catalog, items: &Vectors) -> Vectors {
    let rows: Vec<usize> = (0..catalog.ids.len())
        .filter(|&i| catalog.available[i])
        .collect();
    items.select(&rows)
}

/// The lists of one run.
pub struct Recommendations {
    /// Rows of the `recommendations` table, user by user, rank order.
    pub rows: Vec<Recommendation>,
    /// Active users (any valid event in the window), sorted.
    pub active_users: Vec<String>,
    /// Each active user's list, and the baseline's (popularity) list, in `active_users` order.
    pub lists: Vec<RankedList>,
    /// The popularity baseline's list of each active user.
    pub baseline: Vec<RankedList>,
    /// Candidates minus the user's exclusions, per active user.
    pub eligible: HashMap<String, usize>,
    /// Users with a personal list.
    pub n_personal: usize,
    /// Users with the popularity list.
    pub n_popular: usize,
}

fn params(config: &Config, k: usize) -> TopkParams {
    TopkParams {
        k,
        block_users: config.topk.block_users,
        block_items: config.topk.block_items,
    }
}

/// Every active user's list: personal top-K for users with a vector, the popularity list for
/// the others.
pub async fn recommend(
    engine: &Engine,
    config: &Config,
    candidates: &Vectors,
    users: &UserVectors,
    data: &WindowData,
) -> Result<Recommendations> {
    let k = config.topk.k;
    let users = &users.vectors;
    let item_pos = candidates.index();
    let adjustments = adjustments(config.hybrid.repeat_weight, users, &item_pos, data);
    let lists = engine
        .top_k(
            &users.flat,
            &candidates.flat,
            candidates.dim,
            &params(config, k),
            &adjustments,
        )
        .await?;
    let personal: HashMap<&str, Vec<Hit>> =
        users.ids.iter().map(String::as_str).zip(lists).collect();

    Ok(assemble(
        config.topk.k,
        candidates,
        &item_pos,
        personal,
        data,
    ))
}

/// The sparse terms of each user's scores (README "The model"): `-inf` for the user's excluded
/// candidates, and the repeat term `repeat_weight * w_ui / max_j w_uj` for every candidate i the
/// user has a positive decayed weight w_ui on in the window.
fn adjustments(
    repeat_weight: f64,
    users: &Vectors,
    item_pos: &HashMap<&str, u32>,
    data: &WindowData,
) -> Adjustments {
    let user_pos = users.index();
    let mut entries = Vec::new();
    for (user, excluded) in &data.exclusions {
        if let Some(&u) = user_pos.get(user.as_str()) {
            entries.extend(
                excluded
                    .iter()
                    .filter_map(|i| item_pos.get(i.as_str()).map(|&j| (u, j, f32::NEG_INFINITY))),
            );
        }
    }
    if repeat_weight > 0.0 {
        // Interactions are sorted by user: one run of rows per user.
        for rows in data.interactions.chunk_by(|a, b| a.user_id == b.user_id) {
            let Some(&u) = user_pos.get(rows[0].user_id.as_str()) else {
                continue;
            };
            let max = rows.iter().map(|r| r.weight).fold(0.0, f64::max);
            if max <= 0.0 {
                continue;
            }
            entries.extend(rows.iter().filter(|r| r.weight > 0.0).filter_map(|r| {
                let j = *item_pos.get(r.item_id.as_str())?;
                Some((u, j, (repeat_weight * r.weight / max) as f32))
            }));
        }
    }
    Adjustments::from_entries(users.len(), entries)
}

/// Each active user's rows: the personal hits where the user has them, else the popularity
/// list (also the baseline's list).
fn assemble(
    k: usize,
    candidates: &Vectors,
    item_pos: &HashMap<&str, u32>,
    personal: HashMap<&str, Vec<Hit>>,
    data: &WindowData,
) -> Recommendations {
    let active_users = data.active_users();
    // The baseline's lists are also the fallback of users without a usable history.
    let baseline = popular_lists(data, &active_users, k);
    let events_of: HashMap<&str, i64> = data
        .popularity
        .iter()
        .map(|(i, n)| (i.as_str(), *n))
        .collect();
    let max_events = data.popularity.first().map_or(0, |p| p.1);
    let empty = Vec::new();
    let mut out = Recommendations {
        rows: Vec::new(),
        lists: Vec::with_capacity(active_users.len()),
        baseline: Vec::new(),
        eligible: HashMap::new(),
        n_personal: 0,
        n_popular: 0,
        active_users: Vec::new(),
    };
    for (user, popular) in active_users.iter().zip(&baseline) {
        let excluded = data.exclusions.get(user).unwrap_or(&empty);
        let n_excluded = excluded
            .iter()
            .filter(|i| item_pos.contains_key(i.as_str()))
            .count();
        out.eligible
            .insert(user.clone(), candidates.len() - n_excluded);
        let row = |r: usize, item: String, score: f32, source: Source, repeat_score: f32| {
            Recommendation {
                user_id: user.clone(),
                rank: r as i32 + 1,
                item_id: item,
                score,
                source,
                repeat_score,
            }
        };
        let rows: Vec<Recommendation> = match personal.get(user.as_str()) {
            Some(hits) => {
                out.n_personal += 1;
                hits.iter()
                    .enumerate()
                    .map(|(r, h)| {
                        row(
                            r,
                            candidates.ids[h.item as usize].clone(),
                            h.score,
                            Source::Personal,
                            h.adjustment,
                        )
                    })
                    .collect()
            }
            None => {
                out.n_popular += 1;
                popular
                    .items
                    .iter()
                    .enumerate()
                    .map(|(r, item)| {
                        row(
                            r,
                            item.clone(),
                            popularity_score(events_of[item.as_str()], max_events),
                            Source::Popular,
                            0.0,
                        )
                    })
                    .collect()
            }
        };
        out.lists.push(RankedList {
            user_id: user.clone(),
            items: rows.iter().map(|r| r.item_id.clone()).collect(),
        });
        out.rows.extend(rows);
    }
    out.baseline = baseline;
    out.active_users = active_users;
    out
}

/// `similar_items`: each catalog item (`items`, its text vectors) against the candidates,
/// never itself.
pub async fn similar_items(
    engine: &Engine,
    config: &Config,
    items: &Vectors,
    candidates: &Vectors,
) -> Result<Vec<SimilarItem>> {
    let item_pos = candidates.index();
    let self_pairs: Vec<(u32, u32)> = items
        .ids
        .iter()
        .enumerate()
        .filter_map(|(q, id)| item_pos.get(id.as_str()).map(|&j| (q as u32, j)))
        .collect();
    let lists = engine
        .top_k(
            &items.flat,
            &candidates.flat,
            candidates.dim,
            &params(config, config.similar_items.k),
            &Adjustments::exclusions(items.len(), self_pairs),
        )
        .await?;
    let mut similar = Vec::new();
    for (query, hits) in items.ids.iter().zip(lists) {
        similar.extend(hits.iter().enumerate().map(|(r, h)| SimilarItem {
            item_id: query.clone(),
            rank: r as i32 + 1,
            similar_item_id: candidates.ids[h.item as usize].clone(),
            score: h.score,
        }));
    }
    Ok(similar)
}
