//! The hybrid vectors: text embeddings blended with behavior factors (implicit ALS or low-rank
//! EASE over the window, [`crate::kernels::als`], [`crate::kernels::ease`]) and a popularity prior, so that one cosine top-K ranks by all
//! three.
//!
//! The hybrid score is s(u, i) = tau cos(t_u, t_i) + x_u.y_i + beta pi_i (t: text vectors, tau:
//! `hybrid.text_weight`, pi_i: the item's popularity prior, beta: `hybrid.popularity_weight`;
//! the prior is carried as one more factor column). It is written as one dot product of unit
//! vectors:
//! item v_i = [sqrt(tau) t_i, y_i, r_i] / M and user q_u = [sqrt(tau) t_u, x_u, 0] / |.|, with
//! r_i = sqrt(M^2 - tau - |y_i|^2) and M^2 = tau + max_i |y_i|^2, so every |v_i| = 1 and
//! q_u.v_i = s(u, i) / (M |q_u|): a per-user positive scale, which ranks exactly like s.

use std::ops::Range;

use crate::config::{BehaviorModel, HybridConfig};
use crate::domain::{USERS_PER_CHUNK, UserRows, UserVectors, Vectors, WindowData, ranges};
use crate::engine::Engine;
use crate::error::Result;
use crate::io::ScratchRows;
use crate::kernels::{Neighbors, Rows, ease, neighbors};

/// The shrink term of the item-kNN similarity s_ij = c_ij / (sqrt(n_i n_j) + shrink): pairs
/// that few users share count less ([`crate::kernels::neighbors`]).
pub const NEIGHBOR_SHRINK: f64 = 10.0;

/// What the hybrid stage keeps of the users: which of the window's users have a vector (a
/// usable text history: a positive weight on some item), and the behavior part of each one's
/// vector, spilled to a scratch file ([`ScratchRows`]). The vectors themselves are made from it
/// a chunk of users at a time ([`UserFactors::rows`]): a user's text vector is the weighted
/// mean of its items' text vectors ([`crate::domain::Interactions::text_vector`]), recomputed where it is needed,
/// and its factors are read back with its chunk, so neither a million users' vectors nor their
/// factors are held at once.
#[derive(Debug, Default)]
pub struct UserFactors {
    /// The window's users that have a vector (positions in the window, ascending).
    rows: Vec<u32>,
    /// Their ids.
    ids: Vec<String>,
    /// The behavior part; `None`: the vectors are the text vectors.
    behavior: Option<Behavior>,
}

/// The behavior part of the users' hybrid vectors.
#[derive(Debug)]
struct Behavior {
    /// `rows.len() x f` behavior factors (the popularity prior's column included).
    x: ScratchRows,
    /// sqrt(tau), the text part's scale.
    text_scale: f64,
}

impl UserFactors {
    /// The users `rows` of `window` (those with a text vector, [`users_with_text`]) with their
    /// behavior part.
    fn new(window: &WindowData, rows: Vec<u32>, behavior: Option<Behavior>) -> UserFactors {
        UserFactors {
            ids: rows
                .iter()
                .map(|&u| window.users[u as usize].clone())
                .collect(),
            rows,
            behavior,
        }
    }

    /// The users' vectors, made on demand from `window` (its interactions still held) and the
    /// catalog's text vectors `items` (catalog order), both those the stage ran on.
    pub fn rows<'a>(&'a self, window: &'a WindowData, items: &'a Vectors) -> HybridUsers<'a> {
        HybridUsers {
            users: self,
            window,
            items,
        }
    }
}

/// The users' vectors of [`UserFactors::rows`].
pub struct HybridUsers<'a> {
    users: &'a UserFactors,
    window: &'a WindowData,
    items: &'a Vectors,
}

impl UserRows for HybridUsers<'_> {
    fn ids(&self) -> &[String] {
        &self.users.ids
    }

    fn dim(&self) -> usize {
        match &self.users.behavior {
            Some(b) => self.items.dim + b.x.width() + 1,
            None => self.items.dim,
        }
    }

    /// q_u = [sqrt(tau) t_u, x_u, 0] / |.| (module docs), or t_u for text vectors only.
    fn chunk(&self, range: Range<usize>) -> Result<UserVectors> {
        let (users, t, dim) = (self.users, self.items.dim, self.dim());
        let behavior = match &users.behavior {
            Some(b) => Some((b.text_scale, b.x.width(), b.x.read(range.clone())?)),
            None => None,
        };
        let (mut acc, mut text) = (vec![0f64; t], vec![0f32; t]);
        let mut flat = Vec::with_capacity(range.len() * dim);
        let mut row = Vec::with_capacity(dim);
        let mut n_events = Vec::with_capacity(range.len());
        let interactions = self
            .window
            .interactions(window_range(&users.rows[range.clone()]))?;
        for p in range.clone() {
            let u = users.rows[p] as usize;
            interactions.text_vector(u, self.items, &mut acc, &mut text);
            n_events.push(self.window.user_events[u]);
            let Some((st, f, factors)) = &behavior else {
                flat.extend_from_slice(&text);
                continue;
            };
            let at = (p - range.start) * f;
            let x = &factors[at..at + f];
            row.clear();
            row.extend(text.iter().map(|v| st * f64::from(*v)));
            row.extend(x.iter().map(|v| f64::from(*v)));
            row.push(0.0);
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            flat.extend(row.iter().map(|v| (v / norm) as f32));
        }
        Ok(UserVectors {
            vectors: Vectors::new(users.ids[range].to_vec(), flat, dim),
            n_events,
        })
    }
}

/// Learn the factors of the window (users with a text vector x candidate items) and return the
/// hybrid candidates and what makes the user vectors. `items`: the catalog's text vectors
/// (catalog order); `text_items`: the candidates'. The popularity prior rides along as one more
/// factor: sqrt(beta) for every user, sqrt(beta) pi_i for item i, pi_i = ln(1 + n_i) /
/// ln(1 + max n) with n_i the item's events in the window. With `hybrid.factors = 0` and
/// `hybrid.popularity_weight = 0` the text vectors are used unchanged. ALS runs where the
/// `engine` runs the heavy stages (in this process, or each half-sweep as a plan on a cluster).
pub async fn hybrid(
    engine: &Engine,
    params: &HybridConfig,
    window: &WindowData,
    items: &Vectors,
    text_items: Vectors,
) -> Result<(Vectors, UserFactors)> {
    let rows = users_with_text(window, items)?;
    let (candidates, behavior) = if params.factors == 0 && params.popularity_weight == 0.0 {
        (text_items, None)
    } else {
        let (candidates, behavior) = learn(engine, params, window, &rows, text_items).await?;
        (candidates, Some(behavior))
    };
    // The users' ids are copied once the factors are learned and spilled, not beside them.
    Ok((candidates, UserFactors::new(window, rows, behavior)))
}

/// The item neighbours of the window for the neighbour term ([`neighbors`], `hybrid.neighbors`
/// per item, shrink [`NEIGHBOR_SHRINK`]) from every user's items with a positive weight, read
/// from the window's spill a chunk of users at a time; `None` when the term is off.
pub fn item_neighbors(hybrid: &HybridConfig, data: &WindowData) -> Result<Option<Neighbors>> {
    if hybrid.neighbor_weight <= 0.0 {
        return Ok(None);
    }
    let (mut offsets, mut items) = (vec![0usize], Vec::new());
    for range in ranges(data.len(), USERS_PER_CHUNK) {
        let interactions = data.interactions(range.clone())?;
        for u in range {
            let (rows, weights) = interactions.of(u);
            let positive = rows.iter().zip(weights).filter(|(_, w)| **w > 0.0);
            items.extend(positive.map(|(&r, _)| r));
            offsets.push(items.len());
        }
    }
    let n_items = data.item_ids.len();
    Ok(Some(neighbors(
        &offsets,
        &items,
        n_items,
        hybrid.neighbors,
        NEIGHBOR_SHRINK,
    )))
}

/// The positions in `window` of the users with a text vector over the catalog's text vectors
/// `items`, ascending.
fn users_with_text(window: &WindowData, items: &Vectors) -> Result<Vec<u32>> {
    let (mut acc, mut out) = (vec![0f64; items.dim], vec![0f32; items.dim]);
    let mut users = Vec::new();
    for range in ranges(window.len(), USERS_PER_CHUNK) {
        let interactions = window.interactions(range.clone())?;
        users.extend(
            range
                .filter(|&u| interactions.text_vector(u, items, &mut acc, &mut out))
                .map(|u| u as u32),
        );
    }
    Ok(users)
}

/// The window positions from the first to the last of `users` (ascending), to read their
/// interactions in one go.
fn window_range(users: &[u32]) -> Range<usize> {
    match (users.first(), users.last()) {
        (Some(&a), Some(&b)) => a as usize..b as usize + 1,
        _ => 0..0,
    }
}

/// The factors of [`hybrid`]: the hybrid candidates, and the users' (`users`: positions in
/// `window`) behavior part, spilled as it is learned.
async fn learn(
    engine: &Engine,
    params: &HybridConfig,
    window: &WindowData,
    users: &[u32],
    text_items: Vectors,
) -> Result<(Vectors, Behavior)> {
    let item_row = text_items.rows_of(&window.item_ids);
    // The rows of users `range`: each one's candidates with a positive weight, in window order.
    let rows = |range: Range<usize>| -> Result<Rows> {
        let users = &users[range];
        let interactions = window.interactions(window_range(users))?;
        let observed = |u: u32| {
            let (rows, weights) = interactions.of(u as usize);
            rows.iter()
                .zip(weights)
                .filter(|&(&r, &w)| item_row[r as usize].is_some() && w > 0.0)
        };
        let mut rows = Rows::with_capacity(users.iter().map(|&u| observed(u).count()).sum());
        for &u in users {
            rows.push_row(observed(u).map(|(&r, &w)| {
                let item = item_row[r as usize].expect("observed items are candidates");
                (item, w as f32)
            }));
        }
        Ok(rows)
    };
    let (n_users, n_items, f) = (users.len(), text_items.len(), params.factors);
    let beta = params.popularity_weight;
    let sb = beta.sqrt() as f32;
    let width = f + usize::from(beta > 0.0);
    // The users' part: their factors, then sqrt(beta) when the prior is on.
    let x = ScratchRows::zeroed(n_users, width)?;
    let mut wide = Vec::new();
    let mut spill = |first: usize, flat: &[f32]| -> Result<()> {
        if beta == 0.0 {
            return x.put(first, flat);
        }
        for (c, part) in flat.chunks(USERS_PER_CHUNK * f).enumerate() {
            wide.clear();
            for row in part.chunks_exact(f) {
                wide.extend_from_slice(row);
                wide.push(sb);
            }
            x.put(first + c * USERS_PER_CHUNK, &wide)?;
        }
        Ok(())
    };
    let y = match (f, params.model) {
        (0, _) => {
            x.put(0, &vec![sb; n_users])?;
            Vec::new()
        }
        (_, BehaviorModel::Als) => {
            engine
                .als(n_users, &rows, n_items, params, &mut spill)
                .await?
        }
        (_, BehaviorModel::Ease) => ease(n_users, &rows, n_items, params, &mut spill)?,
    };
    let y = if beta > 0.0 {
        let popularity = &window.popularity;
        let max = popularity.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let mut prior = vec![0f32; n_items];
        let index = text_items.index();
        for (item, n) in popularity {
            if let (Some(&j), true) = (index.get(item.as_str()), max > 0) {
                prior[j as usize] = ((*n as f64).ln_1p() / (max as f64).ln_1p()) as f32;
            }
        }
        (0..n_items)
            .flat_map(|j| y[j * f..(j + 1) * f].iter().copied().chain([sb * prior[j]]))
            .collect()
    } else {
        y
    };
    let candidates = blend(params.text_weight, text_items, &y, width);
    let behavior = Behavior {
        x,
        text_scale: params.text_weight.sqrt(),
    };
    Ok((candidates, behavior))
}

/// The unit item vectors of the hybrid score (module docs): `[sqrt(tau) t, y, balance]`, `y`
/// the items' behavior part (`f` values each, catalog order of `text_items`).
pub fn blend(tau: f64, text_items: Vectors, y: &[f32], f: usize) -> Vectors {
    let t = text_items.dim;
    let dim = t + f + 1;
    let st = tau.sqrt();
    let sq = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    let row = |j: usize| &y[j * f..(j + 1) * f];
    let max_y2 = (0..text_items.len())
        .map(|j| sq(row(j)))
        .fold(0.0f64, f64::max);
    let m = (tau + max_y2).sqrt().max(f64::MIN_POSITIVE);
    let mut items = Vec::with_capacity(text_items.len() * dim);
    for j in 0..text_items.len() {
        let y = row(j);
        let row: Vec<f64> = text_items
            .row(j)
            .iter()
            .map(|x| st * f64::from(*x))
            .chain(y.iter().map(|x| f64::from(*x)))
            .collect();
        let balance = (m * m - tau - sq(y)).max(0.0).sqrt();
        items.extend(
            row.iter()
                .chain(std::iter::once(&balance))
                .map(|x| (x / m) as f32),
        );
    }
    text_items.with_vectors(items, dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::WindowBuilder;

    /// Text only plus the prior: with equal text similarity the item with more events in the
    /// window ranks first, and one with none gets no prior at all.
    #[tokio::test]
    async fn the_popularity_prior_breaks_text_ties_towards_popular_items() {
        let items = Vectors::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            2,
        );
        let params = HybridConfig {
            factors: 0,
            text_weight: 1.0,
            popularity_weight: 0.5,
            ..HybridConfig::default()
        };
        // u's text vector is a's, (1, 0); x has no text vector (zero weights) but events:
        // popularity b 9, a 2, c none.
        let mut window = WindowBuilder::new(items.ids.clone());
        window.add("u", 0, 2, 1.0, false);
        window.add("x", 1, 9, 0.0, false);
        let window = window.finish(&[true, true, true]).unwrap();
        let (candidates, users) = hybrid(&Engine::Local, &params, &window, &items, items.clone())
            .await
            .unwrap();
        let users = users.rows(&window, &items).chunk(0..1).unwrap();
        let items = candidates;
        assert_eq!(users.vectors.ids, vec!["u"]);
        assert_eq!(items.dim, 4, "text 2 + prior 1 + balance 1");
        let score = |j: usize| crate::domain::dot(&users.vectors.flat, items.row(j));
        assert!(
            score(1) > score(0),
            "b (9 events) over a (2): {} {}",
            score(1),
            score(0)
        );
        // s = 1 + 0.5 * ln(10)/ln(10) for b, 1 + 0.5 * ln(3)/ln(10) for a, 0 for c.
        let ratio = score(0) / score(1);
        let want = (1.0 + 0.5 * 3f64.ln() / 10f64.ln()) / 1.5;
        assert!((f64::from(ratio) - want).abs() < 1e-5, "{ratio} vs {want}");
        assert!(score(2).abs() < 1e-6);
    }

    /// With `hybrid.model = "ease"` the behavior part follows co-occurrence: items a and b are
    /// bought together by three users, c and d by three others; a user with only a gets b first
    /// (not d, which is as popular), and every vector is unit length.
    #[tokio::test]
    async fn ease_factors_rank_the_co_bought_item_first() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let items = Vectors::new(ids.clone(), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2);
        let users: Vec<String> = (0..7).map(|u| format!("u{u}")).collect();
        let mut window = WindowBuilder::new(ids.clone());
        for (u, bought) in [
            (0, "ab"),
            (1, "ab"),
            (2, "ab"),
            (3, "cd"),
            (4, "cd"),
            (5, "cd"),
            (6, "a"),
        ] {
            for i in bought.bytes() {
                window.add(&users[u], u32::from(i - b'a'), 1, 1.0, false);
            }
        }
        let params = HybridConfig {
            model: BehaviorModel::Ease,
            factors: 4,
            regularization: 1.0,
            text_weight: 0.1,
            popularity_weight: 0.0,
            ..HybridConfig::default()
        };
        let window = window.finish(&[true; 4]).unwrap();
        let (candidates, users) = hybrid(&Engine::Local, &params, &window, &items, items.clone())
            .await
            .unwrap();
        let users = users.rows(&window, &items).chunk(0..7).unwrap();
        let items = candidates;
        assert_eq!(users.n_events, vec![2, 2, 2, 2, 2, 2, 1]);
        for r in 0..4 {
            let norm: f32 = items.row(r).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5, "item {r}: {norm}");
        }
        let score = |j: usize| crate::domain::dot(users.vectors.row(6), items.row(j));
        assert!(
            score(1) > score(3) + 0.1,
            "b {} vs d {}",
            score(1),
            score(3)
        );
    }

    #[test]
    fn blend_gives_unit_vectors_whose_dot_ranks_like_the_hybrid_score() {
        let text_items = Vectors::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            2,
        );
        // u's text vector: 0.8 a + 0.6 b = (0.8, 0.6).
        let mut window = WindowBuilder::new(text_items.ids.clone());
        window.add("u", 0, 1, 0.8, false);
        window.add("u", 1, 2, 0.6, false);
        let window = window.finish(&[true; 3]).unwrap();
        let (x, y) = ([2.0f32], [0.5f32, 0.0, 0.1]);
        let tau = 0.3;
        let items = blend(tau, text_items.clone(), &y, 1);
        let behavior = Behavior {
            x: ScratchRows::write(&x, 1).unwrap(),
            text_scale: tau.sqrt(),
        };
        let rows = users_with_text(&window, &text_items).unwrap();
        let users = UserFactors::new(&window, rows, Some(behavior));
        let users = users.rows(&window, &text_items).chunk(0..1).unwrap();
        assert_eq!(items.dim, 4);
        let text = [0.8f64, 0.6, 0.96];
        let want: Vec<f64> = (0..3)
            .map(|j| tau * text[j] + 2.0 * f64::from(y[j]))
            .collect();
        let got: Vec<f64> = (0..3)
            .map(|j| crate::domain::dot(&users.vectors.flat, items.row(j)) as f64)
            .collect();
        for j in 0..3 {
            let norm: f32 = items.row(j).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-6);
        }
        // Same ratios: got = want / (M |q|) for one positive constant.
        let scale = got[0] / want[0];
        assert!(scale > 0.0);
        for j in 0..3 {
            assert!((got[j] - scale * want[j]).abs() < 1e-6, "{got:?} {want:?}");
        }
    }

    /// User vectors made a chunk at a time are the same bits whatever the chunks; users with
    /// only zero weights get none; text-only vectors are the users' text vectors.
    #[tokio::test]
    async fn user_vectors_do_not_depend_on_the_chunks() {
        let ids: Vec<String> = (0..6).map(|i| format!("i{i}")).collect();
        let flat: Vec<f32> = (0..18).map(|x| ((x * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let mut items = Vectors::new(ids.clone(), flat, 3);
        crate::domain::normalize_rows(&mut items.flat, 3).unwrap();
        let mut window = WindowBuilder::new(ids);
        for u in 0..40u32 {
            for k in 0..(u % 4 + 1) {
                let weight = if u % 9 == 0 { 0.0 } else { 1.0 + f64::from(k) };
                window.add(&format!("u{u:02}"), (u + 2 * k) % 6, 1, weight, false);
            }
        }
        let window = window.finish(&[true; 6]).unwrap();
        for factors in [0, 3] {
            let params = HybridConfig {
                factors,
                popularity_weight: if factors == 0 { 0.0 } else { 0.2 },
                ..HybridConfig::default()
            };
            let (_, users) = hybrid(&Engine::Local, &params, &window, &items, items.clone())
                .await
                .unwrap();
            let rows = users.rows(&window, &items);
            let n = rows.ids().len();
            assert_eq!(n, 40 - 5, "u00, u09, u18, u27, u36 have only zero weights");
            let whole = rows.chunk(0..n).unwrap();
            let mut parts = UserVectors::default();
            for range in [0..7, 7..8, 8..30, 30..n] {
                let part = rows.chunk(range).unwrap();
                parts.vectors.ids.extend(part.vectors.ids);
                parts.vectors.flat.extend(part.vectors.flat);
                parts.n_events.extend(part.n_events);
            }
            parts.vectors.dim = whole.vectors.dim;
            assert_eq!(parts, whole);
            if factors == 0 {
                let (mut acc, mut text) = (vec![0f64; 3], vec![0f32; 3]);
                let u = window.user("u05").unwrap();
                let interactions = window.interactions(u..u + 1).unwrap();
                assert!(interactions.text_vector(u, &items, &mut acc, &mut text));
                let p = whole.vectors.ids.iter().position(|i| i == "u05").unwrap();
                assert_eq!(whole.vectors.row(p), &text[..]);
            } else {
                assert_eq!(whole.vectors.dim, 3 + 3 + 1 + 1);
            }
        }
    }
}
