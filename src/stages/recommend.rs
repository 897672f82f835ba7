//! Recommend stage: every active user's list. Users with a vector get their exact top-K of the
//! candidate items (blockwise kernel, exclusions and the repeat term inside it,
//! `source = 'personal'`; run by the
//! [`Engine`], in this process or on a cluster); users without a usable history get the
//! popularity list minus their exclusions (`source = 'popular'`), which is also the baseline's
//! list. And `similar_items`: every catalog item's top-K candidates, never itself.

use std::collections::HashMap;

use crate::config::Config;
use crate::domain::{
    Catalog, Lists, SimilarItem, Source, USERS_PER_CHUNK, UserRows, Vectors, WindowData, ranges,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels::{Adjustments, Hit, TopkParams, popularity_score};

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
/// the others. User vectors are made a chunk of users at a time, and lists are built as the
/// kernel hands over each block of users.
pub async fn recommend(
    engine: &Engine,
    config: &Config,
    candidates: &Vectors,
    users: &dyn UserRows,
    data: &WindowData,
) -> Result<Recommendations> {
    let item_pos = candidates.index();
    let candidate = candidates.rows_of(&data.item_ids);
    let mut out = Assembly::new(config.topk.k, candidates, &item_pos, data);
    let params = params(config, config.topk.k);
    for range in ranges(users.ids().len(), USERS_PER_CHUNK) {
        let chunk = users.chunk(range);
        let ids = &chunk.vectors.ids;
        let adjustments = adjustments(config.hybrid.repeat_weight, ids, &candidate, data);
        let mut sink = |first: usize, lists: Vec<Vec<Hit>>| {
            for (offset, hits) in lists.into_iter().enumerate() {
                out.personal(&ids[first + offset], hits)?;
            }
            Ok(())
        };
        let (flat, dim) = (&chunk.vectors.flat, candidates.dim);
        engine
            .top_k_each(
                flat,
                &candidates.flat,
                dim,
                &params,
                &adjustments,
                &mut sink,
            )
            .await?;
    }
    Ok(out.finish())
}

/// The sparse terms of the scores of users `ids` (README "The model"): `-inf` for the user's
/// excluded candidates, and the repeat term `repeat_weight * w_ui / max_j w_uj` for every
/// candidate i the user has a positive decayed weight w_ui on in the window. `candidate`: the
/// candidate position of each catalog row.
fn adjustments(
    repeat_weight: f64,
    ids: &[String],
    candidate: &[Option<u32>],
    data: &WindowData,
) -> Adjustments {
    let mut out = Adjustments::new();
    let mut entries = Vec::new();
    for id in ids {
        entries.clear();
        if let Some(w) = data.user(id) {
            let excluded = data.excluded(w).iter();
            entries.extend(
                excluded.filter_map(|&r| Some((candidate[r as usize]?, f32::NEG_INFINITY))),
            );
            let (rows, weights) = data.interactions(w);
            let max = weights.iter().copied().fold(0.0, f64::max);
            if repeat_weight > 0.0 && max > 0.0 {
                let repeat = rows.iter().zip(weights).filter(|(_, w)| **w > 0.0);
                entries.extend(repeat.filter_map(|(&r, &weight)| {
                    Some((
                        candidate[r as usize]?,
                        (repeat_weight * weight / max) as f32,
                    ))
                }));
            }
        }
        out.push_user(&mut entries);
    }
    out
}

/// The lists of one run in the making: active users in id order, each with the personal hits
/// handed over for it or, for a user the kernel skips (no vector), the popularity list minus
/// the user's exclusions (also the baseline's list).
struct Assembly<'a> {
    k: usize,
    item_pos: &'a HashMap<&'a str, u32>,
    data: &'a WindowData,
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
        let active = &self.data.users;
        while active.get(self.next).is_some_and(|a| a.as_str() < user) {
            self.popular();
        }
        if active.get(self.next).map(String::as_str) != Some(user) {
            return Err(Error::Audit(format!(
                "user {user} has a vector but is not the next active user: this is a bug"
            )));
        }
        self.next += 1;
        self.out.n_personal += 1;
        let entries = hits.iter().map(|h| (h.item, h.score, h.adjustment));
        self.out
            .lists
            .push(user.to_string(), Source::Personal, entries);
        Ok(())
    }

    /// The next active user's popularity list.
    fn popular(&mut self) {
        let u = self.next;
        self.next += 1;
        self.out.n_popular += 1;
        let max_events = self.data.popularity.first().map_or(0, |p| p.1);
        let entries: Vec<(u32, f32, f32)> = self
            .data
            .popular(Some(u), self.k)
            .map(|(item, n)| {
                let score = popularity_score(*n, max_events);
                (self.item_pos[item.as_str()], score, 0.0)
            })
            .collect();
        let user = self.data.users[u].clone();
        self.out.lists.push(user, Source::Popular, entries);
    }

    /// Every remaining active user gets the popularity list.
    fn finish(mut self) -> Recommendations {
        while self.next < self.data.len() {
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
