//! Times one `als` call (the behavior stage's kernel) on a synthetic implicit-feedback problem and
//! measures how exact its last half-sweep is (BENCHMARKS.md "ALS kernel"). With `--neighbors N`
//! it times the item-neighbour kernel (`recjob::kernels::neighbors`, N per item) on the same
//! problem instead.
//!
//! ```sh
//! cargo run --example als_bench -- [--users 200000] [--items 100000] [--events 6000000]
//!     [--factors 128] [--iterations 10] [--repeats 3] [--check 200] [--neighbors 0]
//! ```
//!
//! Events: items Zipf(1.0) over the catalog, users Zipf(0.5), weights 0.5^(age / 14 days) for an
//! age uniform in 60 days; repeated (user, item) pairs are merged by summing their weights, as
//! the job's interactions are. Every value comes from a fixed splitmix64 sequence, so each run
//! times the same problem. After the timed runs, `--check` item rows (the last ones ALS solved)
//! are compared against a dense f64 Cholesky solve of their normal equations, built here from the
//! learned user factors: the relative error |y - y*| / |y*| is printed (max and median).

#![allow(clippy::print_stdout)] // a measuring tool: its result is its output

use std::collections::HashMap;
use std::time::Instant;

use recjob::config::HybridConfig;
use recjob::kernels::{Factors, Rows, als, neighbors};

struct Args {
    users: usize,
    items: usize,
    events: usize,
    factors: usize,
    iterations: usize,
    repeats: usize,
    check: usize,
    neighbors: usize,
}

fn args() -> Args {
    let mut a = Args {
        users: 200_000,
        items: 100_000,
        events: 6_000_000,
        factors: 128,
        iterations: 10,
        repeats: 3,
        check: 200,
        neighbors: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value: usize = pair
            .get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: expected a number", pair[0]));
        match pair[0].as_str() {
            "--users" => a.users = value,
            "--items" => a.items = value,
            "--events" => a.events = value,
            "--factors" => a.factors = value,
            "--iterations" => a.iterations = value,
            "--repeats" => a.repeats = value,
            "--check" => a.check = value,
            "--neighbors" => a.neighbors = value,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// splitmix64: the next value of a fixed sequence, as a float in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Cumulative Zipf(s) weights over ranks 1..=n, normalised to end at 1.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += (k as f64).powf(-s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn draw(cdf: &[f64], state: &mut u64) -> u32 {
    let u = uniform(state);
    cdf.partition_point(|c| *c < u).min(cdf.len() - 1) as u32
}

/// The users' rows: (item, decayed weight) per user, items ascending.
fn problem(a: &Args) -> Rows {
    let (items, users) = (zipf_cdf(a.items, 1.0), zipf_cdf(a.users, 0.5));
    let mut state = 42u64;
    let mut merged: HashMap<(u32, u32), f32> = HashMap::with_capacity(a.events);
    for _ in 0..a.events {
        let user = draw(&users, &mut state);
        // Popular items are not all popular with the same users: spread ranks over ids.
        let item = (draw(&items, &mut state) as u64 * 2_654_435_761 % a.items as u64) as u32;
        let age_days = 60.0 * uniform(&mut state);
        *merged.entry((user, item)).or_default() += 0.5f64.powf(age_days / 14.0) as f32;
    }
    let mut pairs: Vec<((u32, u32), f32)> = merged.into_iter().collect();
    pairs.sort_unstable_by_key(|&(key, _)| key);
    let mut rows = Rows::with_capacity(pairs.len());
    let mut at = 0;
    for user in 0..a.users as u32 {
        let end = at + pairs[at..].partition_point(|((u, _), _)| *u == user);
        rows.push_row(pairs[at..end].iter().map(|&((_, item), w)| (item, w)));
        at = end;
    }
    rows
}

/// Dense Cholesky solve of `a x = b` in f64 (`a` symmetric positive definite, row-major n x n).
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for j in 0..n {
        let d = (a[j * n + j] - (0..j).map(|k| a[j * n + k].powi(2)).sum::<f64>()).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s: f64 = (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum();
            a[i * n + j] = (a[i * n + j] - s) / d;
        }
    }
    for i in 0..n {
        b[i] = (b[i] - (0..i).map(|k| a[i * n + k] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    for i in (0..n).rev() {
        b[i] = (b[i] - (i + 1..n).map(|k| a[k * n + i] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    b
}

/// Relative errors of `check` item rows against their exact solves given the user factors.
fn check(fit: &Factors, by_user: &Rows, a: &Args, p: &HybridConfig) -> Vec<f64> {
    let f = fit.f;
    let mut gram = vec![0f64; f * f];
    for x in fit.users.chunks_exact(f) {
        for r in 0..f {
            for c in 0..f {
                gram[r * f + c] += f64::from(x[r]) * f64::from(x[c]);
            }
        }
    }
    let by_item = by_user.transpose(a.items);
    let ids: Vec<usize> = (0..a.items)
        .filter(|&i| !by_item.row(i).0.is_empty())
        .collect();
    let mut state = 7u64;
    let mut errors = Vec::new();
    for _ in 0..a.check.min(ids.len()) {
        let item = ids[(uniform(&mut state) * ids.len() as f64) as usize];
        let mut m = gram.clone();
        let mut b = vec![0f64; f];
        for d in 0..f {
            m[d * f + d] += p.regularization;
        }
        let (users, weights) = by_item.row(item);
        for (&u, &w) in users.iter().zip(weights) {
            let x = &fit.users[u as usize * f..(u as usize + 1) * f];
            let cw = p.alpha * f64::from(w);
            for r in 0..f {
                b[r] += (1.0 + cw) * f64::from(x[r]);
                for c in 0..f {
                    m[r * f + c] += cw * f64::from(x[r]) * f64::from(x[c]);
                }
            }
        }
        let want = cholesky_solve(m, b);
        let got = &fit.items[item * f..(item + 1) * f];
        let diff: f64 = want
            .iter()
            .zip(got)
            .map(|(w, g)| (w - f64::from(*g)).powi(2))
            .sum();
        let norm: f64 = want.iter().map(|w| w * w).sum();
        errors.push((diff / norm).sqrt());
    }
    errors
}

fn main() {
    let a = args();
    let t = Instant::now();
    let by_user = problem(&a);
    let per_user: Vec<usize> = (0..a.users).map(|u| by_user.row(u).0.len()).collect();
    let params = HybridConfig {
        factors: a.factors,
        iterations: a.iterations,
        ..HybridConfig::default()
    };
    println!(
        "{{\"users\": {}, \"items\": {}, \"observations\": {}, \"factors\": {}, \"iterations\": {}, \"threads\": {}, \"generate_s\": {:.2}}}",
        a.users,
        a.items,
        per_user.iter().sum::<usize>(),
        a.factors,
        a.iterations,
        rayon::current_num_threads(),
        t.elapsed().as_secs_f64()
    );
    let by_item = by_user.transpose(a.items);
    let per_item: Vec<usize> = (0..a.items).map(|i| by_item.row(i).0.len()).collect();
    drop(by_item);
    let heavy = |counts: &[usize]| counts.iter().filter(|n| **n > a.factors).count();
    println!(
        "{{\"max_per_user\": {}, \"max_per_item\": {}, \"users_over_f\": {}, \"items_over_f\": {}, \"items_observed\": {}}}",
        per_user.iter().max().unwrap_or(&0),
        per_item.iter().max().unwrap_or(&0),
        heavy(&per_user),
        heavy(&per_item),
        per_item.iter().filter(|n| **n > 0).count()
    );
    if a.neighbors > 0 {
        return time_neighbors(&by_user, &per_user, &a);
    }
    let mut times = Vec::new();
    let mut fit = None;
    for run in 0..a.repeats {
        let rows = by_user.clone();
        let t = Instant::now();
        fit = Some(als(rows, a.items, &params));
        times.push(t.elapsed().as_secs_f64());
        println!("{{\"run\": {run}, \"als_s\": {:.2}}}", times[run]);
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!("{{\"median_als_s\": {median:.2}, \"runs\": {times:?}}}");
    }
    if let (Some(fit), true) = (fit, a.check > 0) {
        let mut errors = check(&fit, &by_user, &a, &params);
        errors.sort_by(f64::total_cmp);
        println!(
            "{{\"checked_item_rows\": {}, \"max_rel_error\": {:.3e}, \"median_rel_error\": {:.3e}}}",
            errors.len(),
            errors.last().copied().unwrap_or(0.0),
            errors.get(errors.len() / 2).copied().unwrap_or(0.0)
        );
    }
}

/// The item-neighbour kernel on the users' items, `repeats` times (shrink 10, as the job).
fn time_neighbors(by_user: &Rows, per_user: &[usize], a: &Args) {
    let mut offsets = vec![0usize];
    let mut items = Vec::new();
    for u in 0..a.users {
        items.extend_from_slice(by_user.row(u).0);
        offsets.push(items.len());
    }
    let pairs: f64 = per_user.iter().map(|&n| (n * n) as f64).sum();
    let mut times = Vec::new();
    for run in 0..a.repeats {
        let t = Instant::now();
        let kept = neighbors(&offsets, &items, a.items, a.neighbors, 10.0);
        times.push(t.elapsed().as_secs_f64());
        println!(
            "{{\"run\": {run}, \"neighbors_s\": {:.2}, \"kept_pairs\": {}, \"sum_of_squared_user_items\": {pairs:.3e}}}",
            times[run],
            kept.len()
        );
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!("{{\"median_neighbors_s\": {median:.2}, \"runs\": {times:?}}}");
    }
}
