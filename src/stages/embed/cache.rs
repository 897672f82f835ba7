//! The embedding cache is the `item_embeddings` table: `item_id, content_hash, model,
//! embedding`, keyed by `content_hash = sha256(model id, pooling, max length, text)`.
//!
//! Each run publishes only the vectors it computed, as one new file
//! `item_embeddings/part-<run_id>.parquet`, written to staging and copied into place before the
//! run's manifest like every other output. Entries are immutable facts ("this text under this
//! model is this vector"), so a file left by a crashed run is still correct; a file that cannot
//! be read is skipped with a warning and its texts are embedded again, never trusted.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::io::{Location, from_arrow, id_strings, is_data_file, read_parquet};
use crate::publish::ITEM_EMBEDDINGS;

/// The cache key of `text` under a model.
pub fn content_hash(model_id: &str, pooling: &str, max_seq_length: usize, text: &str) -> String {
    let mut h = Sha256::new();
    for part in [model_id, pooling, &max_seq_length.to_string(), text] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Vectors of `model_id` already in the cache, by content hash.
pub async fn load(
    output_root: &Location,
    model_id: &str,
    dim: usize,
) -> Result<HashMap<String, Vec<f32>>> {
    let table = output_root.child(ITEM_EMBEDDINGS);
    let mut cache = HashMap::new();
    for meta in table.list_files().await?.iter().filter(|m| is_data_file(m)) {
        // Only files directly in the table directory: staging lives elsewhere.
        if meta.location.prefix_match(&table.prefix).map(|p| p.count()) != Some(1) {
            continue;
        }
        let batches = match read_parquet(&table.store, &meta.location).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %table.object_url(&meta.location), error = %e, "skipping unreadable embedding cache file");
                continue;
            }
        };
        let url = table.object_url(&meta.location);
        match entries(&batches, model_id, dim, &url) {
            Ok((found, other_dim)) => {
                if other_dim > 0 {
                    tracing::warn!(file = %url, vectors = other_dim, dim, "embedding cache entries of this model with another dimension: not used (embedded again)");
                }
                cache.extend(found);
            }
            Err(why) => {
                tracing::warn!(file = %url, error = %why, "skipping an embedding cache file that breaks its contract; its texts are embedded again");
            }
        }
    }
    Ok(cache)
}

/// The entries of `model_id` in one cache file's batches, and how many of them had another
/// dimension than `dim`. `Err` says how the file breaks the table's contract.
fn entries(
    batches: &[RecordBatch],
    model_id: &str,
    dim: usize,
    url: &str,
) -> std::result::Result<(HashMap<String, Vec<f32>>, usize), String> {
    let mut out = HashMap::new();
    let mut other_dim = 0;
    for b in batches {
        let column = |c: &str| {
            b.column_by_name(c)
                .ok_or_else(|| format!("column {c} is missing"))
        };
        let hashes = id_strings(
            column("content_hash")?.as_ref(),
            &format!("{url}, column content_hash"),
        )
        .map_err(|e| e.to_string())?;
        let models = id_strings(column("model")?.as_ref(), &format!("{url}, column model"))
            .map_err(|e| e.to_string())?;
        let (flat, d) = from_arrow(column("embedding")?.as_ref())
            .map_err(|e| format!("column embedding: {e}"))?;
        for (r, (hash, model)) in hashes.into_iter().zip(models).enumerate() {
            if model != model_id {
                continue;
            }
            if d != dim {
                other_dim += 1;
                continue;
            }
            out.insert(hash, flat[r * dim..(r + 1) * dim].to_vec());
        }
    }
    Ok((out, other_dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_separates_every_part() {
        let base = content_hash("m", "mean", 256, "text");
        assert_eq!(base, content_hash("m", "mean", 256, "text"));
        for other in [
            content_hash("m2", "mean", 256, "text"),
            content_hash("m", "cls", 256, "text"),
            content_hash("m", "mean", 128, "text"),
            content_hash("m", "mean", 256, "text "),
            content_hash("mmean", "", 256, "text"),
        ] {
            assert_ne!(base, other);
        }
    }
}
