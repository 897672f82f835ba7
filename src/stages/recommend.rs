//! Recommend stage: every active user's list. Users with a vector get their exact top-K of the
//! candidate items (blockwise kernel, exclusions and the sparse repeat and neighbour terms
//! inside it, `source = 'personal'`; run by the
//! [`Engine`], in this process or on a cluster); users without a usable history get the
//! popularity list minus their exclusions (`source = 'popular'`), which is also the baseline's
//! list. And `similar_items`: every catalog item's top-K candidates, never itself.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use crate::config::{Config, HybridConfig};
use crate::domain::{
    Catalog, Lists, SimilarItem, Source, USERS_PER_CHUNK, UserRows, UserVectors, Vectors,
    WindowData, dot, ranges,
};
use crate::engine::{Engine, Items};
use crate::error::{Error, Result};
use crate::kernels::{Adjustments, Hit, Neighbors, TopkParams, popularity_score};
use crate::progress::Progress;

/// The items top-K scores against: the catalog's available items in id order (so ties break by
/// item_id), with their rows of `items` (vectors of every catalog item, in catalog order).
/// These are exactly the published `item_vectors`.
pub fn candidates(catalog: &Catalog, items: &Vectors) -> Vectors {
    let rows: Vec<usize> = (0..catalog.ids.len())
        .filter(|&i| catalog.available[i])
        .collect();
    items.select(&rows)
}

/// The lists of one run, whole (a backtest keeps D-1's for D's evaluation; a nightly run
/// streams them, [`Recommender`]).
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
        device: config.topk.device,
    }
}

/// Every active user's list, one chunk of users at a time ([`Recommender::next`]): personal
/// top-K for users with a vector, the popularity list for the others. The vectors of
/// [`USERS_PER_CHUNK`] users ([`USERS_PER_CHUNK_WITH_NEIGHBORS`] while the neighbour term is on)
/// are made at a time and handed back with the chunk's lists (for the audit), so neither every
/// user's vector nor every user's list nor every user's terms are ever held.
pub struct Recommender<'a> {
    engine: &'a Engine,
    params: TopkParams,
    hybrid: HybridConfig,
    /// Item neighbours of the window, when the neighbour term is on.
    neighbors: Option<&'a Neighbors>,
    candidates: &'a Vectors,
    /// The candidates' vectors where the engine reads them.
    items: &'a Items<'a>,
    users: &'a dyn UserRows,
    data: &'a WindowData,
    /// The candidate position of each catalog row.
    candidate: Vec<Option<u32>>,
    chunks: Vec<Range<usize>>,
    /// Chunks made so far.
    made: usize,
    /// Users with a vector whose lists are made, logged: a million users' top-K is a long stage
    /// of many kernel calls, each too short to log its own progress.
    progress: Progress,
    out: Assembly<'a>,
    done: bool,
}

impl<'a> Recommender<'a> {
    /// Nothing made yet; `items`: the vectors of `candidates` ([`Engine::with_items`]);
    /// `neighbors`: the window's item neighbours when the neighbour term is on.
    pub fn new(
        engine: &'a Engine,
        config: &Config,
        candidates: &'a Vectors,
        neighbors: Option<&'a Neighbors>,
        items: &'a Items<'a>,
        users: &'a dyn UserRows,
        data: &'a WindowData,
    ) -> Recommender<'a> {
        Recommender {
            engine,
            params: params(config, config.topk.k),
            hybrid: config.hybrid.clone(),
            neighbors,
            candidates,
            items,
            users,
            data,
            candidate: candidates.rows_of(&data.item_ids),
            chunks: ranges(
                users.ids().len(),
                match neighbors {
                    Some(_) => USERS_PER_CHUNK_WITH_NEIGHBORS,
                    None => USERS_PER_CHUNK,
                },
            )
            .collect(),
            made: 0,
            progress: Progress::lines("recommend", "users with a vector", users.ids().len()),
            out: Assembly::new(config.topk.k, candidates, data),
            done: false,
        }
    }

    /// The lists of the next active users (id order, after those of the previous call), with
    /// the vectors of the users among them that have one; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<(Lists, UserVectors)>> {
        if self.done {
            return Ok(None);
        }
        let Some(range) = self.chunks.get(self.made).cloned() else {
            // Every remaining active user gets the popularity list.
            self.done = true;
            self.out.popular_until(self.data.len());
            return Ok(Some((self.out.lists.take(), UserVectors::default())));
        };
        self.made += 1;
        let chunk = self.users.chunk(range)?;
        let ids = &chunk.vectors.ids;
        let terms = Terms::of_users(
            &self.hybrid,
            self.neighbors,
            &chunk.vectors,
            self.candidates,
            &self.candidate,
            self.data,
        )?;
        let out = &mut self.out;
        let mut sink = |first: usize, lists: Vec<Vec<Hit>>| {
            for (offset, hits) in lists.into_iter().enumerate() {
                let at = first + offset;
                out.personal(&ids[at], hits, |hit| terms.parts(at, hit))?;
            }
            Ok(())
        };
        self.engine
            .top_k_each(
                &chunk.vectors.flat,
                self.items,
                &self.params,
                &terms.all,
                &mut sink,
            )
            .await?;
        self.progress.inc(ids.len());
        Ok(Some((self.out.lists.take(), chunk)))
    }

    /// Users with a personal list and with the popularity list so far.
    pub fn counts(&self) -> (usize, usize) {
        (self.out.n_personal, self.out.n_popular)
    }

    /// Chunks of `size` users instead of [`USERS_PER_CHUNK`].
    #[cfg(test)]
    fn chunked(mut self, size: usize) -> Self {
        self.chunks = ranges(self.users.ids().len(), size).collect();
        self
    }
}

/// Every active user's list at once ([`Recommender`], the chunks appended).
pub async fn recommend(
    engine: &Engine,
    config: &Config,
    candidates: &Vectors,
    neighbors: Option<&Neighbors>,
    users: &dyn UserRows,
    data: &WindowData,
) -> Result<Recommendations> {
    let (flat, dim) = (&candidates.flat, candidates.dim);
    engine
        .with_items(flat, dim, async |items| {
            let mut recommender =
                Recommender::new(engine, config, candidates, neighbors, items, users, data);
            let mut whole: Option<Lists> = None;
            while let Some((lists, _)) = recommender.next().await? {
                match &mut whole {
                    Some(w) => w.append(&lists),
                    None => whole = Some(lists),
                }
            }
            let (n_personal, n_popular) = recommender.counts();
            Ok(Recommendations {
                lists: whole.expect("the last chunk always comes"),
                n_personal,
                n_popular,
            })
        })
        .await
}

/// Users whose terms one rayon task computes, with one neighbour scratch: with the neighbour
/// term on, each candidate vector is read once for all of them ([`UserSums::scale`]).
const TERM_USERS_PER_TASK: usize = 256;

/// Users whose terms are computed in parallel before they are appended to the chunk's: what is
/// held twice while a chunk's terms are made.
const TERM_USERS_PER_ROUND: usize = 4_096;

/// Users per chunk while the neighbour term is on, instead of [`USERS_PER_CHUNK`]: the term
/// touches about 2,500 candidates a user on the 100k synthetic shop (every target that keeps
/// one of the user's items as a neighbour), each held twice (the kernel's sum and the published
/// part) at 8 bytes, so 16,384 users hold about 0.65 GB.
const USERS_PER_CHUNK_WITH_NEIGHBORS: usize = 16_384;

/// The sparse terms of the scores of a chunk of users (README "The model"), by position in the
/// chunk and candidate position: `all` is what the kernel adds, `-inf` for the user's excluded
/// candidates plus the two published parts: the repeat term `repeat_weight * ln(1 + d_ui)` for
/// every candidate i the user had an event of a positive-weight type with on d_ui > 0 days of the
/// window, and the neighbour term ([`NeighborTerm`]).
struct Terms {
    all: Adjustments,
    /// The repeat and the neighbour parts apart, when the neighbour term is on (otherwise a
    /// finite adjustment is the repeat term alone).
    split: Option<(Adjustments, Adjustments)>,
}

impl Terms {
    /// No user yet; `split`: keep the parts apart (the neighbour term is on).
    fn new(split: bool) -> Terms {
        Terms {
            all: Adjustments::new(),
            split: split.then(|| (Adjustments::new(), Adjustments::new())),
        }
    }

    /// `other`'s users after these.
    fn append(&mut self, other: &Terms) {
        self.all.append(&other.all);
        if let (Some((r, n)), Some((other_r, other_n))) = (&mut self.split, &other.split) {
            r.append(other_r);
            n.append(other_n);
        }
    }

    /// The repeat and neighbour parts of `hit`, a hit of the user at position `at`.
    fn parts(&self, at: usize, hit: &Hit) -> (f32, f32) {
        match &self.split {
            Some((repeat, neighbor)) => (repeat.get(at, hit.item), neighbor.get(at, hit.item)),
            None => (hit.adjustment, 0.0),
        }
    }

    /// The terms of the users of `users` (their vectors, chunk order); `candidates`: the
    /// candidates' vectors; `candidate`: the candidate position of each catalog row. Users are
    /// independent: rayon computes [`TERM_USERS_PER_TASK`] at a time, each task with a
    /// neighbour scratch from a pool (one per thread at most), and the result does not depend
    /// on the threads.
    fn of_users(
        hybrid: &HybridConfig,
        neighbors: Option<&Neighbors>,
        users: &Vectors,
        candidates: &Vectors,
        candidate: &[Option<u32>],
        data: &WindowData,
    ) -> Result<Terms> {
        let positions: Vec<Option<usize>> = users.ids.iter().map(|id| data.user(id)).collect();
        let known = || positions.iter().flatten().copied();
        let interactions = data.interactions(match (known().min(), known().max()) {
            (Some(first), Some(last)) => first..last + 1,
            _ => 0..0,
        })?;
        let rho = hybrid.repeat_weight;
        let near_term = neighbors.map(|neighbors| NeighborTerm {
            neighbors,
            gamma: hybrid.neighbor_weight,
            candidate,
        });
        let scratch_rows = near_term.as_ref().map_or(0, |_| candidate.len());
        let pool = Mutex::new(Vec::<Scratch>::new());
        // The terms of the users at positions `first..first + piece.len()` of the chunk.
        let piece_terms = |first: usize, piece: &[Option<usize>]| {
            let mut scratch = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_else(|| Scratch::new(scratch_rows));
            // The neighbour sums of every user of the piece first: their scales are then taken
            // candidate by candidate for all of them at once.
            let mut sums = UserSums::default();
            if let Some(term) = &near_term {
                for &position in piece {
                    if let Some(w) = position {
                        let (rows, weights) = interactions.of(w);
                        term.sums((rows, weights), data.excluded(w), &mut scratch, &mut sums);
                    }
                    sums.end_user();
                }
                sums.scale(|u, p| dot(users.row(first + u), candidates.row(p as usize)));
            }
            let mut out = Terms::new(near_term.is_some());
            let (mut all, mut repeat, mut near) = (Vec::new(), Vec::new(), Vec::new());
            for (u, &position) in piece.iter().enumerate() {
                all.clear();
                repeat.clear();
                near.clear();
                if let Some(w) = position {
                    let excluded = data.excluded(w);
                    all.extend(
                        excluded
                            .iter()
                            .filter_map(|&r| Some((candidate[r as usize]?, f32::NEG_INFINITY))),
                    );
                    if rho > 0.0 {
                        let (rows, days) = (interactions.of(w).0, interactions.days(w));
                        let bought = rows.iter().zip(days).filter(|(_, d)| **d > 0);
                        repeat.extend(bought.filter_map(|(&r, &d)| {
                            Some((candidate[r as usize]?, (rho * f64::from(d).ln_1p()) as f32))
                        }));
                    }
                    if let Some(term) = &near_term {
                        term.values(&sums, u, &mut near);
                    }
                }
                all.extend_from_slice(&repeat);
                all.extend_from_slice(&near);
                out.all.push_user(&mut all);
                if let Some((r, n)) = &mut out.split {
                    r.push_user(&mut repeat);
                    n.push_user(&mut near);
                }
            }
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(scratch);
            out
        };
        let mut out = Terms::new(near_term.is_some());
        for (r, round) in positions.chunks(TERM_USERS_PER_ROUND).enumerate() {
            let first = r * TERM_USERS_PER_ROUND;
            let pieces: Vec<Terms> = round
                .par_chunks(TERM_USERS_PER_TASK)
                .enumerate()
                .map(|(p, piece)| piece_terms(first + p * TERM_USERS_PER_TASK, piece))
                .collect();
            for piece in &pieces {
                out.append(piece);
            }
        }
        Ok(out)
    }
}

/// A neighbour term's working memory for one user at a time: n_ui by catalog row, 0 outside
/// `touched`.
struct Scratch {
    sums: Vec<f64>,
    touched: Vec<u32>,
}

impl Scratch {
    /// For a catalog of `rows` rows.
    fn new(rows: usize) -> Scratch {
        Scratch {
            sums: vec![0.0; rows],
            touched: Vec::new(),
        }
    }
}

/// The neighbour term: n_ui = sum over the user's items j with w_uj > 0 of s_ji (s from
/// [`Neighbors`]; item-kNN on the binary matrix, as its similarities are), and for every eligible
/// candidate (available, not excluded) with n_ui > 0 the term `gamma * D_u * n_ui / max_j n_uj`,
/// the max over those candidates and D_u the user's largest dot product with them (no term when
/// it is not positive): gamma is a share of the user's own score scale, which differs a
/// hundredfold between users.
struct NeighborTerm<'a> {
    neighbors: &'a Neighbors,
    gamma: f64,
    candidate: &'a [Option<u32>],
}

impl NeighborTerm<'_> {
    /// The sums n_ui of the user with window items `items` (catalog rows, weights) and
    /// exclusions `excluded` (catalog rows, ascending), appended to `out` as the user's (candidate
    /// position, n_ui) entries (call [`UserSums::end_user`] after); `scratch` is left as it came
    /// (every sum 0, nothing touched).
    fn sums(
        &self,
        items: (&[u32], &[f64]),
        excluded: &[u32],
        scratch: &mut Scratch,
        out: &mut UserSums,
    ) {
        let Scratch { sums, touched } = scratch;
        for (&r, &weight) in items.0.iter().zip(items.1) {
            if weight > 0.0 {
                let (targets, sims) = self.neighbors.of(r);
                for (&j, &s) in targets.iter().zip(sims) {
                    if sums[j as usize] == 0.0 {
                        touched.push(j);
                    }
                    sums[j as usize] += f64::from(s);
                }
            }
        }
        for &j in touched.iter() {
            let eligible = excluded.binary_search(&j).is_err();
            if let Some(p) = self.candidate[j as usize].filter(|_| eligible) {
                out.entries.push((p, sums[j as usize]));
            }
            sums[j as usize] = 0.0;
        }
        touched.clear();
    }

    /// The term of user `u` of `sums` (its scale taken), appended to `out` as (candidate
    /// position, value).
    fn values(&self, sums: &UserSums, u: usize, out: &mut Vec<(u32, f32)>) {
        let entries = sums.of(u);
        let max = entries.iter().map(|e| e.1).fold(0.0f64, f64::max);
        let scale = sums.scales[u];
        if max > 0.0 && scale > 0.0 {
            let factor = self.gamma * f64::from(scale) / max;
            out.extend(entries.iter().map(|&(p, n)| (p, (factor * n) as f32)));
        }
    }
}

/// The neighbour sums of a few users, in CSR form, and each user's scale D_u once taken.
#[derive(Default)]
struct UserSums {
    /// Each user's (candidate position, n_ui), users one after another.
    entries: Vec<(u32, f64)>,
    /// Where each user's entries end.
    ends: Vec<usize>,
    /// D_u of each user ([`UserSums::scale`]).
    scales: Vec<f32>,
}

impl UserSums {
    /// The entries since the last user's are the next user's.
    fn end_user(&mut self) {
        self.ends.push(self.entries.len());
    }

    fn of(&self, u: usize) -> &[(u32, f64)] {
        let start = if u == 0 { 0 } else { self.ends[u - 1] };
        &self.entries[start..self.ends[u]]
    }

    /// D_u of every user: the largest of `dot(u, p)` over the user's candidates p. The products
    /// are taken candidate by candidate, each candidate's vector read once for all the users
    /// with a sum on it (read user by user, thousands of rows a user in no order, the products
    /// waited on memory). A maximum does not depend on the order, so neither do the scales.
    fn scale(&mut self, dot: impl Fn(usize, u32) -> f32) {
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(self.entries.len());
        for u in 0..self.ends.len() {
            pairs.extend(self.of(u).iter().map(|&(p, _)| (p, u as u32)));
        }
        pairs.sort_unstable();
        self.scales = vec![0.0; self.ends.len()];
        for (p, u) in pairs {
            let s = &mut self.scales[u as usize];
            *s = s.max(dot(u as usize, p));
        }
    }
}

/// The lists of one run in the making: active users in id order, each with the personal hits
/// handed over for it or, for a user the kernel skips (no vector), the popularity list minus
/// the user's exclusions (also the baseline's list).
struct Assembly<'a> {
    k: usize,
    item_pos: HashMap<&'a str, u32>,
    data: &'a WindowData,
    /// The next active user.
    next: usize,
    /// The lists since the last [`Lists::take`].
    lists: Lists,
    n_personal: usize,
    n_popular: usize,
}

impl<'a> Assembly<'a> {
    fn new(k: usize, candidates: &'a Vectors, data: &'a WindowData) -> Assembly<'a> {
        Assembly {
            k,
            item_pos: candidates.index(),
            data,
            next: 0,
            lists: Lists::new(Arc::new(candidates.ids.clone())),
            n_personal: 0,
            n_popular: 0,
        }
    }

    /// `user`'s personal list; active users before it get the popularity list. Users come in
    /// id order, each once, and are active.
    /// `parts`: the repeat and neighbour parts of a hit's adjustment.
    fn personal(
        &mut self,
        user: &str,
        hits: Vec<Hit>,
        parts: impl Fn(&Hit) -> (f32, f32),
    ) -> Result<()> {
        let active = &self.data.users;
        let at = self.next + active[self.next..].partition_point(|a| a.as_str() < user);
        self.popular_until(at);
        if active.get(self.next).map(String::as_str) != Some(user) {
            return Err(Error::Audit(format!(
                "user {user} has a vector but is not the next active user: this is a bug"
            )));
        }
        self.next += 1;
        self.n_personal += 1;
        let entries = hits.iter().map(|h| {
            let (repeat, neighbor) = parts(h);
            (h.item, h.score, repeat, neighbor)
        });
        self.lists.push(user.to_string(), Source::Personal, entries);
        Ok(())
    }

    /// The popularity list for every active user before position `end`.
    fn popular_until(&mut self, end: usize) {
        let max_events = self.data.popularity.first().map_or(0, |p| p.1);
        while self.next < end {
            let u = self.next;
            self.next += 1;
            self.n_popular += 1;
            let entries: Vec<(u32, f32, f32, f32)> = self
                .data
                .popular(Some(u), self.k)
                .map(|(item, n)| {
                    let score = popularity_score(*n, max_events);
                    (self.item_pos[item.as_str()], score, 0.0, 0.0)
                })
                .collect();
            let user = self.data.users[u].clone();
            self.lists.push(user, Source::Popular, entries);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{WindowBuilder, normalize_rows};
    use crate::kernels::on_threads;
    use crate::stages::hybrid::item_neighbors;

    /// Lists streamed in chunks of 4 users with a vector are the lists made in one chunk; each
    /// chunk carries exactly the vectors of its personal users, users without a vector get the
    /// popularity list wherever they fall, and the last chunk holds the users after the last
    /// vector; with the neighbour term on as well.
    #[tokio::test]
    async fn chunked_lists_are_the_whole_lists() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/nightly.toml");
        let mut config = Config::load(std::path::Path::new(path), &[]).unwrap();
        config.topk.k = 3;
        config.hybrid.neighbor_weight = 0.5;
        config.hybrid.neighbors = 2;
        let ids: Vec<String> = (0..8).map(|i| format!("i{i}")).collect();
        let mut window = WindowBuilder::new(ids.clone());
        for u in 0..23u32 {
            for k in 0..3 {
                window.add(
                    &format!("u{u:02}"),
                    (u + 3 * k) % 8,
                    1,
                    1.0,
                    k == 2 && u % 4 == 0,
                );
            }
        }
        let data = window.finish(&[true; 8]).unwrap();
        let flat: Vec<f32> = (0..24).map(|x| ((x * 5 % 13) as f32 - 6.0) / 6.0).collect();
        let mut candidates = Vectors::new(ids, flat, 3);
        normalize_rows(&mut candidates.flat, 3).unwrap();
        // Every user but u00, u03, u06, ... and the last two has a vector.
        let with: Vec<usize> = (0..21).filter(|u| u % 3 != 0).collect();
        let mut flat: Vec<f32> = with
            .iter()
            .flat_map(|&u| [u as f32, 1.0, -(u as f32) / 3.0])
            .collect();
        normalize_rows(&mut flat, 3).unwrap();
        let users = UserVectors {
            vectors: Vectors::new(
                with.iter().map(|&u| data.users[u].clone()).collect(),
                flat,
                3,
            ),
            n_events: vec![3; with.len()],
        };
        let near = item_neighbors(&config.hybrid, &data).unwrap();
        assert!(near.is_some());
        for neighbors in [None, near.as_ref()] {
            let engine = Engine::Local;
            let whole = recommend(&engine, &config, &candidates, neighbors, &users, &data)
                .await
                .unwrap();
            assert_eq!((whole.n_personal, whole.n_popular), (14, 9));
            let (flat, dim) = (&candidates.flat, candidates.dim);
            let (appended, chunks, counts) = engine
                .with_items(flat, dim, async |items| {
                    let mut streamed = Recommender::new(
                        &engine,
                        &config,
                        &candidates,
                        neighbors,
                        items,
                        &users,
                        &data,
                    )
                    .chunked(4);
                    let mut appended = Lists::new(whole.lists.item_ids.clone());
                    let mut chunks = Vec::new();
                    while let Some((lists, vectors)) = streamed.next().await? {
                        let personal: Vec<&str> = lists
                            .iter()
                            .filter(|l| l.source == Source::Personal)
                            .map(|l| l.user)
                            .collect();
                        let with_vectors: Vec<&str> =
                            vectors.vectors.ids.iter().map(String::as_str).collect();
                        assert_eq!(personal, with_vectors);
                        chunks.push(lists.users.clone());
                        appended.append(&lists);
                    }
                    Ok((appended, chunks, streamed.counts()))
                })
                .await
                .unwrap();
            assert_eq!(appended, whole.lists);
            assert_eq!(counts, (14, 9));
            let with_term = whole
                .lists
                .iter()
                .filter(|l| l.neighbor.iter().any(|&n| n > 0.0));
            assert_eq!(with_term.count() > 0, neighbors.is_some());
            assert_eq!(
                chunks.len(),
                5,
                "four chunks of vectors, then the rest: {chunks:?}"
            );
            assert_eq!(chunks[0], ["u00", "u01", "u02", "u03", "u04", "u05"]);
            assert_eq!(chunks[4], ["u21", "u22"]);
        }
    }

    /// D_u taken candidate by candidate for a piece of users is each user's own largest
    /// product over the user's candidates, 0 when none is positive or there is none.
    #[test]
    fn scales_are_each_users_own_largest_product() {
        let lists: [&[u32]; 5] = [&[5, 1, 9], &[], &[9, 2, 5], &[1], &[3, 7]];
        let mut sums = UserSums::default();
        for list in lists {
            sums.entries.extend(list.iter().map(|&p| (p, 1.0)));
            sums.end_user();
        }
        // A product that differs by user and candidate; user 4's are all negative.
        let product = |u: usize, p: u32| match u {
            4 => -(p as f32),
            _ => ((u as f32 + 1.0) * p as f32 - 3.0 * u as f32).sin(),
        };
        sums.scale(product);
        for (u, list) in lists.iter().enumerate() {
            let want = (list.iter().map(|&p| product(u, p))).fold(0.0f32, f32::max);
            assert_eq!(sums.scales[u], want, "user {u}");
        }
        assert!(sums.scales[0] > 0.0 && sums.scales[2] > 0.0);
        assert_eq!((sums.scales[1], sums.scales[4]), (0.0, 0.0));
    }

    /// With the neighbour term on, a chunk's terms do not depend on the threads, and each
    /// user's are those of the user alone, across tasks and rounds; most users get the term.
    #[test]
    fn terms_are_per_user_whatever_the_threads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/nightly.toml");
        let mut config = Config::load(std::path::Path::new(path), &[]).unwrap();
        config.hybrid.neighbor_weight = 0.5;
        config.hybrid.neighbors = 5;
        let n_items = 40;
        let ids: Vec<String> = (0..n_items).map(|i| format!("i{i:02}")).collect();
        let mut window = WindowBuilder::new(ids.clone());
        let n_users = 2 * TERM_USERS_PER_ROUND + 100;
        let names: Vec<String> = (0..n_users).map(|u| format!("u{u:05}")).collect();
        for (u, name) in names.iter().enumerate() {
            for k in 0..4 {
                let item = ((u * 7 + k * k * 3) % n_items) as u32;
                let weight = 1.0 + k as f64;
                window.add(name, item, 1, weight, k == 3 && u % 5 == 0);
            }
        }
        // The last item is unavailable: not a candidate.
        let mut available = vec![true; n_items];
        available[n_items - 1] = false;
        let data = window.finish(&available).unwrap();
        let dim = 3;
        let mut flat: Vec<f32> = (0..(n_items - 1) * dim)
            .map(|x| ((x * 5 % 13) as f32 - 6.0) / 6.0)
            .collect();
        normalize_rows(&mut flat, dim).unwrap();
        let candidates = Vectors::new(ids[..n_items - 1].to_vec(), flat, dim);
        let candidate = candidates.rows_of(&data.item_ids);
        let mut flat: Vec<f32> = (0..n_users * dim)
            .map(|x| ((x * 11 % 17) as f32 - 5.0) / 7.0)
            .collect();
        normalize_rows(&mut flat, dim).unwrap();
        let users = Vectors::new(names, flat, dim);
        let near = item_neighbors(&config.hybrid, &data).unwrap().unwrap();
        let terms = |users: &Vectors| {
            Terms::of_users(
                &config.hybrid,
                Some(&near),
                users,
                &candidates,
                &candidate,
                &data,
            )
            .unwrap()
        };
        fn parts(t: &Terms, u: usize) -> [(&[u32], &[f32]); 3] {
            let (repeat, neighbor) = t.split.as_ref().unwrap();
            [t.all.of(u), repeat.of(u), neighbor.of(u)]
        }
        let one = on_threads(1, || terms(&users));
        let three = on_threads(3, || terms(&users));
        for u in 0..n_users {
            assert_eq!(parts(&one, u), parts(&three, u), "user {u}");
        }
        for u in (0..n_users).step_by(97).chain([n_users - 1]) {
            let alone = terms(&users.select(&[u]));
            assert_eq!(parts(&alone, 0), parts(&three, u), "user {u} alone");
        }
        let with_term = (0..n_users)
            .filter(|&u| !parts(&three, u)[2].0.is_empty())
            .count();
        assert!(with_term > n_users / 2, "{with_term} of {n_users} users");
    }
}
