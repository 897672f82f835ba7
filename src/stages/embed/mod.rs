//! Embed stage: every catalog item's text embedding, reusing the vectors already in the
//! embedding cache ([`cache`], the `item_embeddings` table) by content hash, so a rerun or the
//! next night embeds only new or changed texts. The encoding itself runs through the
//! [`Engine`] (this process, or a cluster).

pub mod cache;

use std::collections::HashMap;

use crate::domain::Vectors;
use crate::engine::Engine;
use crate::error::Result;
use crate::kernels::{EmbedStats, Encoder};

/// Vectors of every catalog item, reusing cached vectors by content hash.
#[derive(Debug, Default)]
pub struct ItemEmbeddings {
    /// One text embedding per item, in the order given.
    pub vectors: Vectors,
    /// Each item's cache key ([`cache::content_hash`]).
    pub hashes: Vec<String>,
    /// Rows whose vectors were computed in this call (one per distinct new text).
    pub new_rows: Vec<usize>,
    /// Items whose vector came from the cache.
    pub reused: usize,
    /// Throughput of the texts embedded.
    pub stats: EmbedStats,
}

/// Embed the texts of items `ids` through `engine`, reusing `cached` vectors by content hash.
pub async fn embed_items(
    engine: &Engine,
    encoder: &dyn Encoder,
    cached: &HashMap<String, Vec<f32>>,
    ids: &[String],
    texts: &[String],
    max_batch_tokens: usize,
) -> Result<ItemEmbeddings> {
    let dim = encoder.dim();
    let hashes: Vec<String> = texts
        .iter()
        .map(|t| {
            cache::content_hash(
                encoder.model_id(),
                encoder.pooling(),
                encoder.max_seq_length(),
                t,
            )
        })
        .collect();
    // Position of each new distinct text among the texts to embed.
    let mut new_index: HashMap<&str, usize> = HashMap::new();
    let mut new_rows = Vec::new();
    let mut reused = 0;
    for (row, h) in hashes.iter().enumerate() {
        if cached.contains_key(h) {
            reused += 1;
        } else if !new_index.contains_key(h.as_str()) {
            new_index.insert(h, new_rows.len());
            new_rows.push(row);
        }
    }
    let new_texts: Vec<&str> = new_rows.iter().map(|&r| texts[r].as_str()).collect();
    let (computed, stats) = engine.embed(encoder, &new_texts, max_batch_tokens).await?;
    let mut flat = vec![0f32; texts.len() * dim];
    for (row, h) in hashes.iter().enumerate() {
        let v: &[f32] = match cached.get(h) {
            Some(v) => v,
            None => {
                let j = new_index[h.as_str()];
                &computed[j * dim..(j + 1) * dim]
            }
        };
        flat[row * dim..(row + 1) * dim].copy_from_slice(v);
    }
    tracing::info!(embedded = new_rows.len(), reused, "item embeddings");
    Ok(ItemEmbeddings {
        vectors: Vectors::new(ids.to_vec(), flat, dim),
        hashes,
        new_rows,
        reused,
        stats,
    })
}
