//! The heavy stages as DataFusion plans over recjob's functions (`Engine::Sql`, the plans a
//! Ballista cluster runs) give bit for bit what the in-process kernels give. Here the plans run
//! on a local `SessionContext`; `cluster.rs` runs them on Ballista.

use arrow::array::{Array, AsArray};
use recjob::config::{DeviceChoice, HybridConfig};
use recjob::engine::{Engine, SqlEngine};
use recjob::error::ExitCode;
use recjob::io::Location;
use recjob::kernels::Encoder;
use recjob::kernels::SentenceEncoder;
use recjob::kernels::{Adjustments, Rows, TopkParams};

use crate::common::*;

/// Titles of the first `n` Online Retail catalog items (real texts of varied length).
fn titles(n: usize) -> Vec<String> {
    let dir = shared_data().join("online_retail/parquet/catalog/dt=2010-12-01");
    let mut out = Vec::new();
    for file in walk(&dir) {
        for b in read_file(&file) {
            let t = b.column_by_name("title").unwrap().as_string::<i32>();
            out.extend((0..t.len()).map(|i| t.value(i).to_string()));
        }
    }
    out.truncate(n);
    assert_eq!(out.len(), n, "catalog has fewer than {n} titles");
    out
}

fn sql_engine(staging: &std::path::Path, model_dir: &str) -> Engine {
    Engine::Sql(Box::new(SqlEngine {
        ctx: recjob::engine::context(),
        url: "local-plans".into(),
        staging: Location::parse(staging.to_str().unwrap()).unwrap(),
        partitions: 3,
        model_dir: model_dir.into(),
        device: DeviceChoice::Cpu,
        dtype: recjob::config::ModelDtype::F32,
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_over_recjob_functions_equal_the_local_kernels_bit_for_bit() {
    let model = model_dir();
    let encoder = SentenceEncoder::load(&model, DeviceChoice::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("_engine");
    let sql = sql_engine(&staging, model.to_str().unwrap());

    let texts = titles(600);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // A small budget: many batches, spread over the 3 staged files.
    let (local, _) = Engine::Local.embed(&encoder, &refs, 512).await.unwrap();
    let (planned, stats) = sql.embed(&encoder, &refs, 512).await.unwrap();
    assert!(stats.batches > 6, "{} batches", stats.batches);
    assert_eq!(local.len(), refs.len() * encoder.dim());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&local) == bits(&planned),
        "embeddings differ between the local kernel and the plan"
    );
    assert!(!has_files(&staging), "staged inputs are removed");

    // Top-K: the first 200 titles as queries against all 600, with exclusions and repeat terms.
    let dim = encoder.dim();
    let users = &local[..200 * dim];
    let entries: Vec<(u32, u32, f32)> = (0..200u32)
        .flat_map(|u| {
            [
                (u, u, f32::NEG_INFINITY),
                (u, (u * 7 + 3) % 600, f32::NEG_INFINITY),
                (u, (u * 11 + 5) % 600, 0.5),
            ]
        })
        .collect();
    let exclusions = Adjustments::from_entries(200, entries.clone());
    let params = TopkParams {
        k: 25,
        block_users: 64,
        block_items: 128,
        device: DeviceChoice::Cpu,
    };
    let a = Engine::Local
        .top_k(users, &local, dim, &params, &exclusions)
        .await
        .unwrap();
    let b = sql
        .top_k(users, &local, dim, &params, &exclusions)
        .await
        .unwrap();
    assert_eq!(a.len(), 200);
    assert!(a.iter().all(|l| l.len() == 25));
    assert!(
        a == b,
        "top-K lists differ between the local kernel and the plan"
    );
    assert!(
        b.iter()
            .enumerate()
            .all(|(u, l)| l.iter().all(|h| !exclusions.excludes(u, h.item))),
        "an excluded item came back"
    );
    let boosted = b.iter().flatten().filter(|h| h.adjustment == 0.5).count();
    assert!(boosted > 100, "repeat terms reached {boosted} lists");
    assert!(!has_files(&staging), "staged inputs are removed");

    // The items staged once serve every call of a stage (two halves of the users here): one
    // staged items file while they run, the same lists, nothing left after, also after a failure.
    let half = |first: u32| {
        let part = entries
            .iter()
            .filter(|e| (first..first + 100).contains(&e.0));
        Adjustments::from_entries(100, part.map(|&(u, i, v)| (u - first, i, v)).collect())
    };
    let items_files = || {
        walk(&staging)
            .filter(|f| f.file_name().is_some_and(|n| n == "items.parquet"))
            .count()
    };
    let halves = sql
        .with_items(&local, dim, async |items| {
            let mut lists = Vec::new();
            for first in [0u32, 100] {
                assert_eq!(items_files(), 1, "the items are staged once");
                let queries = &users[first as usize * dim..(first as usize + 100) * dim];
                let mut sink = |_: usize, l: Vec<Vec<recjob::kernels::Hit>>| {
                    lists.extend(l);
                    Ok(())
                };
                sql.top_k_each(queries, items, &params, &half(first), &mut sink)
                    .await?;
            }
            Ok(lists)
        })
        .await
        .unwrap();
    assert!(
        halves == b,
        "the halves' lists differ from the whole call's"
    );
    assert!(!has_files(&staging), "staged items are removed");
    let failed = sql
        .with_items(&local, dim, async |_| -> recjob::error::Result<()> {
            assert_eq!(items_files(), 1);
            Err(recjob::error::Error::Audit(
                "a failure inside the stage".into(),
            ))
        })
        .await;
    assert!(failed.is_err());
    assert!(
        !has_files(&staging),
        "staged items are removed after a failure"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_side_failure_is_an_infrastructure_error_naming_the_function() {
    let encoder = SentenceEncoder::load(&model_dir(), DeviceChoice::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("_engine");
    let missing = tmp.path().join("no-model");
    let sql = sql_engine(&staging, missing.to_str().unwrap());
    let err = sql
        .embed(&encoder, &["RED MUG", "BLUE TEAPOT"], 512)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("recjob_embed") && msg.contains("no-model"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), ExitCode::Infrastructure);
    assert!(
        !has_files(&staging),
        "staged inputs are removed after a failure"
    );
}

/// ALS with every half-sweep a plan (the users' rows staged, their transpose a plan, the fixed
/// side staged per half-sweep) gives the in-process kernel's factors bit for bit at the shipped
/// 128 factors: users on both solve paths (fewer and more observations than factors), users
/// and an item nobody observed. Nothing staged is left.
#[tokio::test(flavor = "multi_thread")]
async fn als_as_plans_equals_the_local_kernel_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("_engine");
    let sql = sql_engine(&staging, "unused");
    let (n_users, n_items, f) = (700usize, 300usize, 128usize);
    // User u's items, distinct, in a fixed scrambled order (not item order), item 299 never.
    let row = |u: usize| -> Vec<(u32, f32)> {
        let n = match u {
            u if u % 50 == 0 => 0,
            u if u % 97 == 1 => 150,
            u => 1 + (u * 7919) % 23,
        };
        // 113 is prime to 299: distinct items for k < 299.
        (0..n)
            .map(|k| ((u * 31 + k * 113) % 299) as u32)
            .map(|i| (i, 0.25 + ((u + i as usize) % 9) as f32 * 0.5))
            .collect()
    };
    let rows = |range: std::ops::Range<usize>| {
        let mut rows = Rows::with_capacity(0);
        for u in range {
            rows.push_row(row(u));
        }
        Ok(rows)
    };
    let params = HybridConfig {
        factors: f,
        iterations: 3,
        alpha: 10.0,
        regularization: 0.5,
        ..HybridConfig::default()
    };
    let mut solved = Vec::new();
    for engine in [&Engine::Local, &sql] {
        let mut users = vec![f32::NAN; n_users * f];
        let mut sink = |first: usize, x: &[f32]| {
            users[first * f..first * f + x.len()].copy_from_slice(x);
            Ok(())
        };
        let items = engine
            .als(n_users, &rows, n_items, &params, &mut sink)
            .await
            .unwrap();
        solved.push((users, items));
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let ((local_users, local_items), (plan_users, plan_items)) = (&solved[0], &solved[1]);
    assert!(local_users.iter().all(|x| x.is_finite()));
    assert!(
        local_users[..f].iter().all(|x| *x == 0.0),
        "user 0 has no rows"
    );
    assert!(
        local_items[299 * f..].iter().all(|x| *x == 0.0),
        "item 299 is never seen"
    );
    assert!(local_items[..f].iter().any(|x| *x != 0.0));
    assert!(
        bits(local_users) == bits(plan_users),
        "user factors differ between the local kernel and the plans"
    );
    assert!(
        bits(local_items) == bits(plan_items),
        "item factors differ between the local kernel and the plans"
    );
    assert!(!has_files(&staging), "staged inputs are removed");
}
