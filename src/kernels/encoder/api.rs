//! The encoder's interface: what a model must do (tokenize, encode a batch), how its token
//! vectors are pooled, and the throughput figures a call reports.

use crate::error::Result;

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Masked mean over the real tokens.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

/// A sentence encoder. Implementations must embed a row identically (within float noise)
/// alone and in any batch.
pub trait Encoder: Send + Sync {
    /// Identifies the weights; part of the cache key.
    fn model_id(&self) -> &str;
    /// `mean` or `cls`.
    fn pooling(&self) -> &str;
    /// Tokens kept per text.
    fn max_seq_length(&self) -> usize;
    /// Embedding dimension.
    fn dim(&self) -> usize;
    /// Where it runs, for logs and manifests (`cpu`, `cuda:0`).
    fn device(&self) -> String;
    /// Token ids per text, special tokens included, truncated to `max_seq_length`.
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>>;
    /// Vectors of one padded batch, row-major `batch.len() x dim`.
    fn encode(&self, batch: &[&[u32]]) -> Result<Vec<f32>>;
    /// Batches to run at once (each single-threaded); 1 for a GPU.
    fn workers(&self) -> usize {
        1
    }
}

/// Throughput of one [`embed_texts`] call.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmbedStats {
    /// Texts embedded.
    pub texts: usize,
    /// Tokens encoded (special tokens included).
    pub tokens: usize,
    /// Encoder batches.
    pub batches: usize,
    /// Wall time.
    pub seconds: f64,
}

impl EmbedStats {
    /// Log the throughput (one line, when anything was embedded).
    pub fn log(&self, device: &str) {
        if self.texts > 0 {
            tracing::info!(
                texts = self.texts,
                tokens = self.tokens,
                batches = self.batches,
                seconds = format!("{:.2}", self.seconds),
                texts_per_s = format!("{:.0}", self.texts as f64 / self.seconds.max(1e-9)),
                tokens_per_s = format!("{:.0}", self.tokens as f64 / self.seconds.max(1e-9)),
                device,
                "embedded texts"
            );
        }
    }
}
