//! The GPU forward pass: candle's BERT encoder layers behind recjob's own embeddings and
//! attention mask, in f32 or bf16 (`model.dtype`).
//!
//! candle's `BertModel` builds its additive mask as `(1 - m) * f32::MIN` in the model's dtype.
//! In bf16 (and f16) `f32::MIN` rounds to `-inf`, so every attended position gets
//! `0 * -inf = NaN` and every vector is NaN. The mask here is `(m - 1) * 10000`: finite in every
//! dtype, and after the softmax exactly as excluding as f32's minimum (`exp(-10000)` is 0 in
//! f32), so f32 gives the same vectors as `BertModel`. The embeddings are BERT's: word +
//! token type (all 0) + absolute position, then layer norm.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use candle_transformers::models::bert::{BertEncoder, Config};

/// Added to the attention scores of padding positions.
const MASKED: f64 = -10_000.0;

/// A BERT model on a candle device.
pub struct BertCandle {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    encoder: BertEncoder,
}

impl BertCandle {
    /// Load from a checkpoint's tensors (names with or without a `bert.` prefix), in the
    /// VarBuilder's dtype.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<BertCandle> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let e = vb.pp("embeddings");
        let hidden = config.hidden_size;
        Ok(BertCandle {
            word: candle_nn::embedding(config.vocab_size, hidden, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                e.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                e.pp("token_type_embeddings"),
            )?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, e.pp("LayerNorm"))?,
            encoder: BertEncoder::load(vb.pp("encoder"), config)?,
        })
    }

    /// Hidden states (`rows x width x hidden`, the model's dtype) of padded `ids` (`rows x
    /// width`, u32) whose `mask` (u32, 1 = token, 0 = padding) has the same shape.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, width) = ids.dims2()?;
        let positions = Tensor::arange(0u32, width as u32, ids.device())?;
        let x = (self.word.forward(ids)? + self.token_type.forward(&ids.zeros_like()?)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let x = self.norm.forward(&x)?;
        let bias = mask
            .to_dtype(DType::F32)?
            .affine(-MASKED, MASKED)?
            .to_dtype(x.dtype())?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        self.encoder.forward(&x, &bias)
    }
}
