//! The encoder against sentence-transformers' own output (../shared/data/ref_embeddings).

use std::collections::HashMap;

use recjob::config::DeviceChoice;
use recjob::engine::Engine;
use recjob::kernels::SentenceEncoder;
use recjob::kernels::{Encoder, embed_texts};
use recjob::stages::embed::embed_items;

use crate::common::{col_strings, model_dir, shared_data};

fn reference() -> (Vec<String>, Vec<f32>, usize) {
    read_expected(&shared_data().join("ref_embeddings/all-MiniLM-L6-v2.parquet"))
}

fn read_expected(path: &std::path::Path) -> (Vec<String>, Vec<f32>, usize) {
    let file = std::fs::File::open(path).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
    let (mut texts, mut flat, mut dim) = (Vec::new(), Vec::new(), 0);
    for b in reader {
        let b = b.unwrap();
        texts.extend(col_strings(&b, "text"));
        let (f, d) =
            recjob::io::from_arrow(b.column_by_name("embedding").unwrap().as_ref()).unwrap();
        flat.extend(f);
        dim = d;
    }
    (texts, flat, dim)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers_on_every_reference_row() {
    let (texts, want, dim) = reference();
    assert_eq!(texts.len(), 200);
    let encoder = SentenceEncoder::load(&model_dir(), DeviceChoice::Cpu).unwrap();
    assert_eq!(
        (encoder.dim(), encoder.max_seq_length(), encoder.pooling()),
        (dim, 256, "mean")
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // A small budget forces many batches of mixed lengths.
    let (got, stats) = embed_texts(&encoder, &refs, 600).unwrap();
    assert!(stats.batches > 10, "{stats:?}");
    let mut worst = (1.0f64, 0usize);
    for r in 0..texts.len() {
        let c = cosine(&got[r * dim..(r + 1) * dim], &want[r * dim..(r + 1) * dim]);
        if c < worst.0 {
            worst = (c, r);
        }
        let max_diff = got[r * dim..(r + 1) * dim]
            .iter()
            .zip(&want[r * dim..(r + 1) * dim])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "row {r} {:?}: max |diff| {max_diff}",
            texts[r]
        );
    }
    assert!(
        worst.0 >= 0.99999,
        "row {} {:?}: cosine {}",
        worst.1,
        texts[worst.1],
        worst.0
    );
}

#[test]
fn a_row_embeds_the_same_alone_as_in_any_batch() {
    let (texts, _, dim) = reference();
    let encoder = SentenceEncoder::load(&model_dir(), DeviceChoice::Cpu).unwrap();
    let sample: Vec<&str> = texts.iter().step_by(9).map(String::as_str).collect();
    let (batched, _) = embed_texts(&encoder, &sample, 1 << 20).unwrap();
    let (small, _) = embed_texts(&encoder, &sample, 300).unwrap();
    for (r, text) in sample.iter().enumerate() {
        let (alone, _) = embed_texts(&encoder, &[text], 1 << 20).unwrap();
        for other in [&batched, &small] {
            let d = alone
                .iter()
                .zip(&other[r * dim..(r + 1) * dim])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "{text:?}: alone vs batch differ by {d}");
        }
    }
}

#[tokio::test]
async fn the_cache_reuses_vectors_and_embeds_only_new_texts() {
    let encoder = SentenceEncoder::load(&model_dir(), DeviceChoice::Cpu).unwrap();
    let texts: Vec<String> = ["RED MUG", "BLUE MUG", "RED MUG", "GARDEN HOSE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("item-{i}")).collect();
    let first = embed_items(
        &Engine::Local,
        &encoder,
        &HashMap::new(),
        &ids,
        &texts,
        4096,
    )
    .await
    .unwrap();
    assert_eq!(
        first.new_rows,
        vec![0, 1, 3],
        "duplicates are embedded once"
    );
    let dim = encoder.dim();
    let cache: HashMap<String, Vec<f32>> = first
        .new_rows
        .iter()
        .map(|&r| (first.hashes[r].clone(), first.vectors.row(r).to_vec()))
        .collect();
    let mut changed = texts.clone();
    changed[1] = "BLUE TEAPOT".into();
    let second = embed_items(&Engine::Local, &encoder, &cache, &ids, &changed, 4096)
        .await
        .unwrap();
    assert_eq!((second.new_rows.clone(), second.reused), (vec![1], 3));
    assert_eq!(&second.vectors.flat[0..dim], &first.vectors.flat[0..dim]);
}

/// A second, tiny BERT (fixtures/tiny_bert): CLS pooling, max_seq_length 12 while its
/// tokenizer.json says 64, no Normalize module. Expected vectors come from transformers/PyTorch.
#[test]
fn any_sentence_transformers_directory_is_configured_by_its_own_files() {
    let dir = crate::common::repo().join("fixtures/tiny_bert");
    let (texts, want, dim) = read_expected(&dir.join("expected.parquet"));
    let encoder = SentenceEncoder::load(&dir.join("model"), DeviceChoice::Cpu).unwrap();
    assert_eq!(
        (encoder.dim(), encoder.max_seq_length(), encoder.pooling()),
        (32, 12, "cls")
    );
    assert_eq!(dim, 32);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (got, _) = embed_texts(&encoder, &refs, 48).unwrap();
    for (r, text) in texts.iter().enumerate() {
        let (g, w) = (&got[r * dim..(r + 1) * dim], &want[r * dim..(r + 1) * dim]);
        let max_diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{text:?}: max |diff| {max_diff}");
        let norm: f32 = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            norm > 2.0,
            "{text:?}: not normalised without a Normalize module (norm {norm})"
        );
    }
}

/// The CPU path (packed rows, `kernels::encoder::bert_cpu`) and the GPU path (candle's `BertModel` on
/// padded batches, run here on the CPU) compute the same vectors, for both models.
#[test]
fn the_packed_cpu_forward_matches_candles_bert_model() {
    let tiny = crate::common::repo().join("fixtures/tiny_bert");
    let (reference_texts, _, _) = reference();
    let (tiny_texts, _, _) = read_expected(&tiny.join("expected.parquet"));
    for (dir, texts, budget) in [
        (model_dir(), reference_texts, 2000),
        (tiny.join("model"), tiny_texts, 48),
    ] {
        let packed = SentenceEncoder::load(&dir, DeviceChoice::Cpu).unwrap();
        let candle = SentenceEncoder::load_with(&dir, DeviceChoice::Cpu, true).unwrap();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (a, _) = embed_texts(&packed, &refs, budget).unwrap();
        let (b, _) = embed_texts(&candle, &refs, budget).unwrap();
        let dim = packed.dim();
        for (r, text) in texts.iter().enumerate() {
            let (x, y) = (&a[r * dim..(r + 1) * dim], &b[r * dim..(r + 1) * dim]);
            let scale = y.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1.0);
            let d = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(
                d <= 2e-5 * scale,
                "{}: {text:?}: packed vs candle differ by {d}",
                dir.display()
            );
        }
    }
}

/// `model.dtype = bf16 | f16`: candle's BERT layers in half precision (run here on the CPU,
/// whose half-precision matrix products round like a GPU's: f32 accumulation, rounded results)
/// stay within the bounds README states of sentence-transformers' f32 vectors on every reference
/// row, and their vectors get their own model id (so their own cache entries). The CPU's packed
/// pass ignores the setting.
#[test]
fn half_precision_stays_within_the_stated_cosine_of_f32() {
    use recjob::config::ModelDtype;
    let (texts, want, dim) = reference();
    let f32 = SentenceEncoder::load(&model_dir(), DeviceChoice::Cpu).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (dtype, bound) in [(ModelDtype::Bf16, 0.99), (ModelDtype::F16, 0.9999)] {
        let half =
            SentenceEncoder::load_as(&model_dir(), DeviceChoice::Cpu, None, dtype, true).unwrap();
        let name = dtype.as_str();
        assert_eq!(half.model_id(), format!("{}+{name}", f32.model_id()));
        assert_eq!(half.device(), format!("cpu ({name})"));
        let (got, _) = embed_texts(&half, &refs, 4096).unwrap();
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{name}: non-finite values"
        );
        let worst = (0..texts.len())
            .map(|r| cosine(&got[r * dim..(r + 1) * dim], &want[r * dim..(r + 1) * dim]))
            .fold(1.0f64, f64::min);
        let largest_difference = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{name} vs sentence-transformers f32: worst cosine {worst:.8}, largest difference {largest_difference:e}"
        );
        assert!(worst >= bound, "{name}: worst cosine {worst}");
        // f32 differs from sentence-transformers by ~1e-6 at most.
        assert!(
            largest_difference > 1e-4,
            "{name} as close as f32 ({largest_difference}): did it run in {name}?"
        );
        let packed =
            SentenceEncoder::load_as(&model_dir(), DeviceChoice::Cpu, None, dtype, false).unwrap();
        assert_eq!(packed.model_id(), f32.model_id());
    }
}
