//! Texts through an [`Encoder`] in token-budget batches: planned longest first
//! ([`super::batching`]), run one batch per worker, put back in input order. A batch that runs
//! out of device memory is split in two and retried.

use std::time::Instant;

use super::api::{EmbedStats, Encoder};
use super::batching;
use crate::error::{Error, Result};

/// Embed `texts` in token-budget batches; returns `texts.len() x dim` row-major vectors in the
/// input order. A batch that runs out of device memory is split in two and retried.
pub fn embed_texts(
    encoder: &dyn Encoder,
    texts: &[&str],
    max_batch_tokens: usize,
) -> Result<(Vec<f32>, EmbedStats)> {
    let started = Instant::now();
    let tokens = encoder.tokenize(texts)?;
    let batches = plan(&tokens, max_batch_tokens);
    let out = encode_batches(encoder, &tokens, &batches)?;
    let stats = EmbedStats {
        texts: texts.len(),
        tokens: tokens.iter().map(Vec::len).sum(),
        batches: batches.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    stats.log(&encoder.device());
    Ok((out, stats))
}

/// The token-budget batches of tokenized texts ([`batching::plan`]).
pub fn plan(tokens: &[Vec<u32>], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
    batching::plan(&lengths, max_batch_tokens)
}

/// Encode planned `batches` of rows of `tokens`; returns `tokens.len() x dim` row-major vectors
/// in row order. A batch's vectors depend only on its rows, never on the other batches, so the
/// same batches give the same bits wherever they run (one process, or Ballista executors).
///
/// On CPU, [`Encoder::workers`] batches run at once, each on its own single-threaded rayon pool:
/// the encoder's matrix products are small per attention head and its element-wise kernels are
/// sequential, so whole batches in parallel use the cores far better than threads inside one
/// batch (BENCHMARKS.md "Embedding vs sentence-transformers"). Memory holds one
/// batch of activations per worker, whatever the number of texts.
pub fn encode_batches(
    encoder: &dyn Encoder,
    tokens: &[Vec<u32>],
    batches: &[Vec<usize>],
) -> Result<Vec<f32>> {
    let dim = encoder.dim();
    let progress = crate::progress::Progress::new("embedding", "texts", tokens.len());
    let workers = encoder.workers().clamp(1, batches.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(Vec<usize>, Vec<f32>)>> = std::sync::Mutex::new(Vec::new());
    let failure: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = (workers > 1).then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .expect("a rayon pool")
                });
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if b >= batches.len() || failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let run = || encode_splitting(encoder, tokens, &batches[b]);
                    let out = match &pool {
                        Some(p) => p.install(run),
                        None => run(),
                    };
                    match out {
                        Ok(done) => {
                            progress.inc(batches[b].len());
                            results.lock().expect("lock").extend(done);
                        }
                        Err(e) => {
                            failure.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    let mut out = vec![0f32; tokens.len() * dim];
    for (rows, vectors) in results.into_inner().expect("lock") {
        for (j, &row) in rows.iter().enumerate() {
            out[row * dim..(row + 1) * dim].copy_from_slice(&vectors[j * dim..(j + 1) * dim]);
        }
    }
    drop(progress);
    Ok(out)
}

/// Encode one planned batch; on out-of-memory, split it in halves and retry each.
fn encode_splitting(
    encoder: &dyn Encoder,
    tokens: &[Vec<u32>],
    batch: &[usize],
) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
    let mut done = Vec::new();
    let mut pending = vec![batch];
    while let Some(rows) = pending.pop() {
        let ids: Vec<&[u32]> = rows.iter().map(|&r| tokens[r].as_slice()).collect();
        match encoder.encode(&ids) {
            Ok(vectors) => done.push((rows.to_vec(), vectors)),
            Err(e) if is_out_of_memory(&e) && rows.len() > 1 => {
                let (a, b) = rows.split_at(rows.len() / 2);
                tracing::warn!(
                    rows = rows.len(),
                    "encoder out of memory: splitting the batch and retrying"
                );
                pending.push(b);
                pending.push(a);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn is_out_of_memory(e: &Error) -> bool {
    let msg = e.to_string().to_ascii_lowercase();
    msg.contains("out of memory") || msg.contains("out_of_memory")
}
