//! Recommend stage: every active user's list. Users with a vector get their exact top-K of the
//! candidate items (blockwise kernel, exclusions and the repeat term inside it,
//! `source = 'personal'`; run by the
//! [`Engine`], in this process or on a cluster); users without a usable history get the
//! popularity list minus their exclusions (`source = 'popular'`), which is also the baseline's
//! list. And `similar_items`: every catalog item's top-K candidates, never itself.

use std::collections::HashMap;

use crate::config::Config;
use crate::domain::{Catalog, Lists, SimilarItem, Source, UserVectors, Vectors, WindowData};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels::{Adjustments, Hit, TopkParams, popular_list, popularity_score};

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
    /// Each active user's list (personal or popular), users sorted: the `recommendations`
    /// table. Items are positions in the candidates.
    pub lists: Lists,
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
/// the others. Lists are built as the kernel hands over each chunk of users.
pub async fn recommend(
    engine: &Engine,
    config: &Config,
    candidates: &Vectors,
    users: &UserVectors,
    data: &WindowData,
) -> Result<Recommendations> {
    let users = &users.vectors;
    let item_pos = candidates.index();
    let adjustments = adjustments(config.hybrid.repeat_weight, users, &item_pos, data);
    let mut out = Assembly::new(config.topk.k, candidates, &item_pos, data);
    let mut sink = |first: usize, lists: Vec<Vec<Hit>>| {
        for (offset, hits) in lists.into_iter().enumerate() {
            out.personal(&users.ids[first + offset], hits)?;
        }
        Ok(())
    };
    let params = params(config, config.topk.k);
    engine
        .top_k_each(
            &users.flat,
            &candidates.flat,
            candidates.dim,
            &params,
            &adjustments,
            &mut sink,
        )
        .await?;
    Ok(out.finish())
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

/// The lists of one run in the making: active users in id order, each with the personal hits
/// handed over for it or, for a user the kernel skips (no vector), the popularity list minus
/// the user's exclusions (also the baseline's list).
struct Assembly<'a> {
    k: usize,
    item_pos: &'a HashMap<&'a str, u32>,
    data: &'a WindowData,
    active: Vec<String>,
    next: usize,
    out: Recommendations,
}

impl<'a> Assembly<'a> {
    fn new(
        k: usize,
        candidates: &Vectors,
        item_pos: &'a HashMap<&'a str, u32>,
        data: &'a WindowData,
    ) -> Assembly<'a> {
        Assembly {
            k,
            item_pos,
            data,
            active: data.active_users(),
            next: 0,
            out: Recommendations {
                lists: Lists::new(candidates.ids.clone()),
                n_personal: 0,
                n_popular: 0,
            },
        }
    }

    /// `user`'s personal list; active users before it get the popularity list. Users come in
    /// id order, each once, and are active.
    fn personal(&mut self, user: &str, hits: Vec<Hit>) -> Result<()> {
        while self
            .active
            .get(self.next)
            .is_some_and(|a| a.as_str() < user)
        {
            self.popular();
        }
        if self.active.get(self.next).map(String::as_str) != Some(user) {
            return Err(Error::Audit(format!(
                "user {user} has a vector but is not the next active user: this is a bug"
            )));
        }
        let user = std::mem::take(&mut self.active[self.next]);
        self.next += 1;
        self.out.n_personal += 1;
        let entries = hits.iter().map(|h| (h.item, h.score, h.adjustment));
        self.out.lists.push(user, Source::Personal, entries);
        Ok(())
    }

    /// The next active user's popularity list.
    fn popular(&mut self) {
        let user = std::mem::take(&mut self.active[self.next]);
        self.next += 1;
        self.out.n_popular += 1;
        let popularity = &self.data.popularity;
        let max_events = popularity.first().map_or(0, |p| p.1);
        let excluded = self
            .data
            .exclusions
            .get(&user)
            .map_or(&[][..], Vec::as_slice);
        let entries: Vec<(u32, f32, f32)> = popular_list(popularity, excluded, self.k)
            .into_iter()
            .map(|(item, n)| {
                let score = popularity_score(*n, max_events);
                (self.item_pos[item.as_str()], score, 0.0)
            })
            .collect();
        self.out.lists.push(user, Source::Popular, entries);
    }

    /// Every remaining active user gets the popularity list.
    fn finish(mut self) -> Recommendations {
        while self.next < self.active.len() {
            self.popular();
        }
        self.out
    }
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
