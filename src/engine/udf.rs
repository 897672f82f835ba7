//! The engine's functions: the heavy stages as scalar functions, so they run wherever
//! DataFusion runs a plan (this process, or Ballista executors).
//!
//! - `recjob_embed(texts, model_dir, device, model_id, dtype)`: one encoder batch per row;
//! - `recjob_topk(query, excluded, items_url, k, block_users, block_items)`: each row's exact
//!   top-K of the staged item vectors.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array};
use arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::config::{DeviceChoice, ModelDtype};
use crate::io::{Dot, Location, from_arrow, read_parquet};
use crate::kernels::{
    Adjustments, Encoder, Hit, SentenceEncoder, TopkParams, encode_batches, top_k_all,
};

/// Every function the engine's sessions have: in this process, the Ballista scheduler's and the
/// executors' ([`super::cluster`]).
pub fn all() -> Vec<ScalarUDF> {
    vec![Dot::udf(), Embed::udf(), TopK::udf()]
}

fn scalar_str(args: &[ColumnarValue], i: usize, name: &str) -> Result<String> {
    match &args[i] {
        ColumnarValue::Scalar(s) => match s.try_as_str() {
            Some(Some(v)) => Ok(v.to_string()),
            _ => exec_err!("{name}: argument {} must be a non-null string", i + 1),
        },
        ColumnarValue::Array(_) => exec_err!("{name}: argument {} must be a constant", i + 1),
    }
}

fn scalar_usize(args: &[ColumnarValue], i: usize, name: &str) -> Result<usize> {
    match &args[i] {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::UInt64)? {
            datafusion::scalar::ScalarValue::UInt64(Some(v)) => Ok(v as usize),
            _ => exec_err!("{name}: argument {} must be a non-null integer", i + 1),
        },
        ColumnarValue::Array(_) => exec_err!("{name}: argument {} must be a constant", i + 1),
    }
}

fn engine_err(e: impl std::fmt::Display) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(e.to_string())
}

/// `recjob_embed(texts list<utf8>, model_dir, device, model_id, dtype) -> list<float32>`: each row is
/// one encoder batch; its vectors come back concatenated (`texts x dim`). The encoder is loaded
/// once per process from `model_dir` (which must hold the model `model_id`, the driver's).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Embed {
    signature: Signature,
}

impl Embed {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(Embed {
            signature: Signature::any(5, Volatility::Immutable),
        })
    }
}

type Encoders =
    std::sync::Mutex<std::collections::HashMap<(String, String, String), Arc<SentenceEncoder>>>;

fn encoder(dir: &str, device: &str, dtype: &str) -> Result<Arc<SentenceEncoder>> {
    static ENCODERS: std::sync::LazyLock<Encoders> = std::sync::LazyLock::new(Default::default);
    let key = (dir.to_string(), device.to_string(), dtype.to_string());
    if let Some(e) = ENCODERS.lock().expect("lock").get(&key) {
        return Ok(e.clone());
    }
    let choice = DeviceChoice::parse(device)
        .ok_or_else(|| engine_err(format!("recjob_embed: unknown device {device:?}")))?;
    let dtype = ModelDtype::parse(dtype)
        .ok_or_else(|| engine_err(format!("recjob_embed: unknown dtype {dtype:?}")))?;
    let loaded = SentenceEncoder::load_as(std::path::Path::new(dir), choice, None, dtype, false)
        .map_err(|e| engine_err(format!("recjob_embed on {}: {e:#}", host())))?;
    let loaded = Arc::new(loaded);
    ENCODERS.lock().expect("lock").insert(key, loaded.clone());
    Ok(loaded)
}

fn host() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid {}", std::process::id()))
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "recjob_embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Float32, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let (dir, device) = (
            scalar_str(&args.args, 1, name)?,
            scalar_str(&args.args, 2, name)?,
        );
        let model_id = scalar_str(&args.args, 3, name)?;
        let dtype = scalar_str(&args.args, 4, name)?;
        let encoder = encoder(&dir, &device, &dtype)?;
        if encoder.model_id() != model_id {
            return exec_err!(
                "recjob_embed on {}: {dir} holds model {}, the driver's is {model_id}",
                host(),
                encoder.model_id()
            );
        }
        let batches = ColumnarValue::values_to_arrays(&args.args[..1])?;
        let Some(lists) = batches[0].as_list_opt::<i32>() else {
            return exec_err!("recjob_embed: texts must be list<utf8>");
        };
        let mut texts: Vec<&str> = Vec::new();
        let mut rows: Vec<Vec<usize>> = Vec::with_capacity(lists.len());
        let values = lists.values().as_string_opt::<i32>();
        let Some(values) = values else {
            return exec_err!("recjob_embed: texts must be list<utf8>");
        };
        for r in 0..lists.len() {
            let (a, b) = (
                lists.value_offsets()[r] as usize,
                lists.value_offsets()[r + 1] as usize,
            );
            rows.push((texts.len()..texts.len() + (b - a)).collect());
            texts.extend((a..b).map(|i| values.value(i)));
        }
        let tokens = encoder.tokenize(&texts).map_err(engine_err)?;
        let flat = encode_batches(encoder.as_ref(), &tokens, &rows)
            .map_err(|e| engine_err(format!("recjob_embed on {}: {e:#}", host())))?;
        let dim = encoder.dim();
        let offsets = arrow::buffer::OffsetBuffer::from_lengths(rows.iter().map(|r| r.len() * dim));
        let list = arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new_list_field(
                DataType::Float32,
                true,
            )),
            offsets,
            Arc::new(Float32Array::from(flat)),
            None,
        );
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `recjob_topk(query, adjusted list<uint32>, adjustment list<float32>, items_url, k,
/// block_users, block_items) -> list<struct<item uint32, score float32, adjustment float32>>`:
/// each row's exact top-K of the item vectors stored at `items_url` (Parquet with one
/// `embedding` column, sorted by item id; read once per process), with the row's sparse
/// adjustments (`-inf`: excluded) applied as the kernel applies them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TopK {
    signature: Signature,
}

impl TopK {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(TopK {
            signature: Signature::any(7, Volatility::Immutable),
        })
    }
}

fn hit_fields() -> arrow::datatypes::Fields {
    arrow::datatypes::Fields::from(vec![
        arrow::datatypes::Field::new("item", DataType::UInt32, false),
        arrow::datatypes::Field::new("score", DataType::Float32, false),
        arrow::datatypes::Field::new("adjustment", DataType::Float32, false),
    ])
}

/// The hits of one `recjob_topk` row.
pub fn hits_from_arrow(hits: &ArrayRef) -> Vec<Hit> {
    let s = hits.as_struct();
    let items = s.column(0).as_primitive::<arrow::datatypes::UInt32Type>();
    let scores = s.column(1).as_primitive::<Float32Type>();
    let adjustments = s.column(2).as_primitive::<Float32Type>();
    (0..s.len())
        .map(|i| Hit {
            item: items.value(i),
            score: scores.value(i),
            adjustment: adjustments.value(i),
        })
        .collect()
}

/// The adjustments of a batch of rows from its `adjusted` and `adjustment` list columns; `None`
/// when their types or lengths do not match.
fn adjustments_from_arrow(adjusted: &ArrayRef, adjustment: &ArrayRef) -> Option<Adjustments> {
    let (items, values) = (
        adjusted.as_list_opt::<i32>()?,
        adjustment.as_list_opt::<i32>()?,
    );
    let mut entries = Vec::new();
    for r in 0..items.len() {
        let (i, v) = (items.value(r), values.value(r));
        let i = i.as_primitive_opt::<arrow::datatypes::UInt32Type>()?;
        let v = v.as_primitive_opt::<Float32Type>()?;
        if i.len() != v.len() {
            return None;
        }
        entries.extend(
            i.values()
                .iter()
                .zip(v.values().iter())
                .map(|(&i, &v)| (r as u32, i, v)),
        );
    }
    Some(Adjustments::from_entries(items.len(), entries))
}

type ItemCache = std::sync::Mutex<Vec<(String, Arc<(Vec<f32>, usize)>)>>;

/// Item vectors by URL; the two most recent are kept (a run's two top-K stages).
fn items(url: &str) -> Result<Arc<(Vec<f32>, usize)>> {
    static ITEMS: std::sync::LazyLock<ItemCache> = std::sync::LazyLock::new(Default::default);
    let mut cache = ITEMS.lock().expect("lock");
    if let Some((_, v)) = cache.iter().find(|(u, _)| u == url) {
        return Ok(v.clone());
    }
    // Invoked on the executor's async runtime: read on a thread of its own.
    let read = std::thread::scope(|s| {
        s.spawn(|| -> std::result::Result<(Vec<f32>, usize), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let parent = url.rsplit_once('/').map_or(url, |(p, _)| p);
                let name = url.rsplit('/').next().unwrap_or_default();
                let location = Location::parse(parent).map_err(|e| e.to_string())?;
                let path = location.path(name);
                let batches = read_parquet(&location.store, &path)
                    .await
                    .map_err(|e| format!("reading {url}: {e}"))?;
                let mut flat = Vec::new();
                let mut dim = 0;
                for b in &batches {
                    let (v, d) =
                        from_arrow(b.column(0).as_ref()).map_err(|e| format!("{url}: {e}"))?;
                    flat.extend(v);
                    dim = d;
                }
                Ok((flat, dim))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("reading item vectors panicked".into()))
    })
    .map_err(|e| engine_err(format!("recjob_topk on {}: {e}", host())))?;
    let read = Arc::new(read);
    cache.insert(0, (url.to_string(), read.clone()));
    cache.truncate(2);
    Ok(read)
}

impl ScalarUDFImpl for TopK {
    fn name(&self) -> &str {
        "recjob_topk"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Struct(hit_fields()), true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let url = scalar_str(&args.args, 3, name)?;
        let params = TopkParams {
            k: scalar_usize(&args.args, 4, name)?,
            block_users: scalar_usize(&args.args, 5, name)?,
            block_items: scalar_usize(&args.args, 6, name)?,
            // Executors rank on their CPUs (README "Scale-out").
            device: DeviceChoice::Cpu,
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args[..3])?;
        let (queries, dim) = from_arrow(arrays[0].as_ref())
            .map_err(|e| engine_err(format!("{name}: query: {e}")))?;
        let adjustments = adjustments_from_arrow(&arrays[1], &arrays[2])
            .ok_or_else(|| engine_err(format!("{name}: adjusted must be list<uint32> and adjustment list<float32> of equal lengths")))?;
        let items = items(&url)?;
        let (item_flat, item_dim) = (&items.0, items.1);
        if queries.is_empty() {
            return Ok(ColumnarValue::Array(arrow::array::new_empty_array(
                &self.return_type(&[])?,
            )));
        }
        if dim != item_dim {
            return exec_err!("{name}: query dimension {dim}, item dimension {item_dim}");
        }
        let lists = top_k_all(&queries, item_flat, dim, &params, &adjustments);
        let fields = hit_fields();
        let hits = || lists.iter().flatten();
        let structs = arrow::array::StructArray::new(
            fields.clone(),
            vec![
                Arc::new(arrow::array::UInt32Array::from_iter_values(
                    hits().map(|h| h.item),
                )),
                Arc::new(Float32Array::from_iter_values(hits().map(|h| h.score))),
                Arc::new(Float32Array::from_iter_values(hits().map(|h| h.adjustment))),
            ],
            None,
        );
        let offsets = arrow::buffer::OffsetBuffer::from_lengths(lists.iter().map(Vec::len));
        let list = arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new_list_field(
                DataType::Struct(fields),
                true,
            )),
            offsets,
            Arc::new(structs),
            None,
        );
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}
