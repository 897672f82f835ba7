//! Recommend stage: every active user's list. Users with a vector get their exact top-K of the
//! candidate items (blockwise kernel, exclusions inside it, `source = 'personal'`; run by the
//! [`Engine`], in this process or on a cluster); users without
//! a usable history get the popularity list minus their exclusions (`source = 'popular'`), which
//! is also the baseline's list. And `similar_items`: every catalog item's top-K candidates,
//! never itself.

use std::collections::HashMap;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::Result;
use crate::evaluate::RankedList;
use crate::fallback::{popular_lists, popularity_score};
use crate::prepare::WindowData;
use crate::read::Catalog;
use crate::topk::{Exclusions, TopkParams};
use crate::users::UserVectors;
use crate::write::RecRow;

/// The items top-K scores against: the catalog's available items in id order (so ties break by
/// item_id), with their vectors. These are exactly the published `item_vectors`.
pub struct Candidates {
    pub ids: Vec<String>,
    /// `ids.len() x dim`, row-major, unit length.
    pub flat: Vec<f32>,
    pub dim: usize,
    index: HashMap<String, u32>,
}

impl Candidates {
    /// `item_flat` holds the vectors of every catalog item, in catalog order.
    pub fn from_catalog(catalog: &Catalog, item_flat: &[f32], dim: usize) -> Candidates {
        let rows: Vec<usize> = (0..catalog.ids.len())
            .filter(|&i| catalog.available[i])
            .collect();
        let ids: Vec<String> = rows.iter().map(|&i| catalog.ids[i].clone()).collect();
        let mut flat = Vec::with_capacity(rows.len() * dim);
        for &i in &rows {
            flat.extend_from_slice(&item_flat[i * dim..(i + 1) * dim]);
        }
        Candidates::new(ids, flat, dim)
    }

    /// Candidates `ids` (sorted) with their vectors.
    pub fn new(ids: Vec<String>, flat: Vec<f32>, dim: usize) -> Candidates {
        let index = ids
            .iter()
            .enumerate()
            .map(|(j, id)| (id.clone(), j as u32))
            .collect();
        Candidates {
            ids,
            flat,
            dim,
            index,
        }
    }

    /// The same items with other vectors (`ids.len() x dim`).
    pub fn with_vectors(self, flat: Vec<f32>, dim: usize) -> Candidates {
        assert_eq!(flat.len(), self.ids.len() * dim, "one vector per candidate");
        Candidates { flat, dim, ..self }
    }

    pub fn position(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn vector(&self, j: usize) -> &[f32] {
        &self.flat[j * self.dim..(j + 1) * self.dim]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The lists of one run.
pub struct Recommendations {
    /// Rows of the `recommendations` table, user by user, rank order.
    pub rows: Vec<RecRow>,
    /// Active users (any valid event in the window), sorted.
    pub active_users: Vec<String>,
    /// Each active user's list, and the baseline's (popularity) list, in `active_users` order.
    pub lists: Vec<RankedList>,
    pub baseline: Vec<RankedList>,
    /// Candidates minus the user's exclusions, per active user.
    pub eligible: HashMap<String, usize>,
    pub n_personal: usize,
    pub n_popular: usize,
}

fn params(config: &Config, k: usize) -> TopkParams {
    TopkParams {
        k,
        block_users: config.topk.block_users,
        block_items: config.topk.block_items,
    }
}

pub async fn recommend(
    engine: &Engine,
    config: &Config,
    candidates: &Candidates,
    users: &UserVectors,
    data: &WindowData,
) -> Result<Recommendations> {
    let k = config.topk.k;
    let user_pos: HashMap<&str, u32> = users
        .user_ids
        .iter()
        .enumerate()
        .map(|(u, id)| (id.as_str(), u as u32))
        .collect();
    let mut pairs = Vec::new();
    for (user, excluded) in &data.exclusions {
        if let Some(&u) = user_pos.get(user.as_str()) {
            pairs.extend(
                excluded
                    .iter()
                    .filter_map(|i| candidates.position(i).map(|j| (u, j))),
            );
        }
    }
    let exclusions = Exclusions::from_pairs(users.user_ids.len(), pairs);
    let lists = engine
        .top_k(
            &users.flat,
            &candidates.flat,
            candidates.dim,
            &params(config, k),
            &exclusions,
        )
        .await?;
    let personal: HashMap<&str, Vec<crate::topk::Hit>> = users
        .user_ids
        .iter()
        .map(String::as_str)
        .zip(lists)
        .collect();

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
            .filter(|i| candidates.position(i).is_some())
            .count();
        out.eligible
            .insert(user.clone(), candidates.len() - n_excluded);
        let row = |r: usize, item: String, score: f32, source: &'static str| RecRow {
            user_id: user.clone(),
            rank: r as i32 + 1,
            item_id: item,
            score,
            source,
        };
        let rows: Vec<RecRow> = match personal.get(user.as_str()) {
            Some(hits) => {
                out.n_personal += 1;
                hits.iter()
                    .enumerate()
                    .map(|(r, h)| {
                        row(
                            r,
                            candidates.ids[h.item as usize].clone(),
                            h.score,
                            "personal",
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
                            "popular",
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
    Ok(out)
}

/// `similar_items`: each catalog item (`item_ids`, vectors `item_flat`) against the candidates,
/// never itself. Rows use `user_id` for the query item and `item_id` for the similar one.
pub async fn similar_items(
    engine: &Engine,
    config: &Config,
    item_ids: &[String],
    item_flat: &[f32],
    candidates: &Candidates,
) -> Result<Vec<RecRow>> {
    let self_pairs: Vec<(u32, u32)> = item_ids
        .iter()
        .enumerate()
        .filter_map(|(q, id)| candidates.position(id).map(|j| (q as u32, j)))
        .collect();
    let lists = engine
        .top_k(
            item_flat,
            &candidates.flat,
            candidates.dim,
            &params(config, config.similar_items.k),
            &Exclusions::from_pairs(item_ids.len(), self_pairs),
        )
        .await?;
    let mut similar = Vec::new();
    for (query, hits) in item_ids.iter().zip(lists) {
        similar.extend(hits.iter().enumerate().map(|(r, h)| RecRow {
            user_id: query.clone(),
            rank: r as i32 + 1,
            item_id: candidates.ids[h.item as usize].clone(),
            score: h.score,
            source: "content",
        }));
    }
    Ok(similar)
}
