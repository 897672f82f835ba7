//! The engine's functions: the heavy stages as scalar functions, so they run wherever
//! DataFusion runs a plan (this process, or Ballista executors).
//!
//! - `recjob_embed(texts, model_dir, device, model_id, dtype)`: one encoder batch per row;
//! - `recjob_topk(query, excluded, items_url, k, block_users, block_items)`: each row's exact
//!   top-K of the staged item vectors;
//! - `recjob_als(other, weight, fixed_url, n_fixed, factors, alpha, lambda)`: each row's ALS
//!   solve against the staged fixed side of a half-sweep;
//! - `recjob_als_items(first, count, user_rows_url, fixed_url, ...)`: the same for a range of
//!   items, their rows gathered from the staged users' rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, UInt32Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::config::{DeviceChoice, HybridConfig, ModelDtype};
use crate::io::{Dot, Location, from_arrow, read_parquet};
use crate::kernels::{
    Adjustments, Encoder, HalfSweep, Hit, Rows, SentenceEncoder, TopkParams, encode_batches,
    top_k_all,
};

/// Every function the engine's sessions have: in this process, the Ballista scheduler's and the
/// executors' ([`super::cluster`]).
pub fn all() -> Vec<ScalarUDF> {
    vec![
        Dot::udf(),
        Embed::udf(),
        TopK::udf(),
        Als::udf(),
        AlsItems::udf(),
    ]
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

fn scalar_f64(args: &[ColumnarValue], i: usize, name: &str) -> Result<f64> {
    match &args[i] {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64)? {
            datafusion::scalar::ScalarValue::Float64(Some(v)) => Ok(v),
            _ => exec_err!("{name}: argument {} must be a non-null number", i + 1),
        },
        ColumnarValue::Array(_) => exec_err!("{name}: argument {} must be a constant", i + 1),
    }
}

/// `read` (object store I/O) run to completion from inside a function the executor's async
/// runtime invoked: on a thread of its own, with a runtime of its own.
fn block_on<T: Send>(
    read: impl Future<Output = std::result::Result<T, String>> + Send,
) -> std::result::Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(read)
        })
        .join()
        .unwrap_or_else(|_| Err("reading staged data panicked".into()))
    })
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

/// Each row of two list columns of the same shape, `list<uint32>` and `list<float32>`, as its
/// pair of value slices; `None` when the types or a row's lengths differ. The sparse rows of
/// `recjob_topk` (adjustments) and of `recjob_als` (observations).
fn paired_lists<'a>(
    keys: &'a ArrayRef,
    values: &'a ArrayRef,
) -> Option<Vec<(&'a [u32], &'a [f32])>> {
    let (keys, values) = (keys.as_list_opt::<i32>()?, values.as_list_opt::<i32>()?);
    let k = keys.values().as_primitive_opt::<UInt32Type>()?.values();
    let v = values.values().as_primitive_opt::<Float32Type>()?.values();
    let (ko, vo) = (keys.value_offsets(), values.value_offsets());
    if ko.len() != vo.len() {
        return None;
    }
    (0..keys.len())
        .map(|r| {
            let (ka, kb) = (ko[r] as usize, ko[r + 1] as usize);
            let (va, vb) = (vo[r] as usize, vo[r + 1] as usize);
            (kb - ka == vb - va).then(|| (&k[ka..kb], &v[va..vb]))
        })
        .collect()
}

/// The adjustments of a batch of rows from its `adjusted` and `adjustment` list columns; `None`
/// when their types or lengths do not match.
fn adjustments_from_arrow(adjusted: &ArrayRef, adjustment: &ArrayRef) -> Option<Adjustments> {
    let rows = paired_lists(adjusted, adjustment)?;
    let entries = rows.iter().enumerate().flat_map(|(r, (items, values))| {
        items
            .iter()
            .zip(*values)
            .map(move |(&i, &v)| (r as u32, i, v))
    });
    Some(Adjustments::from_entries(rows.len(), entries.collect()))
}

type ItemCache = std::sync::Mutex<Vec<(String, Arc<(Vec<f32>, usize)>)>>;

/// Item vectors by URL; the two most recent are kept (a run's two top-K stages).
fn items(url: &str) -> Result<Arc<(Vec<f32>, usize)>> {
    static ITEMS: std::sync::LazyLock<ItemCache> = std::sync::LazyLock::new(Default::default);
    let mut cache = ITEMS.lock().expect("lock");
    if let Some((_, v)) = cache.iter().find(|(u, _)| u == url) {
        return Ok(v.clone());
    }
    // Top-K comes after ALS: its last fixed side and the items' rows are no longer needed.
    *SWEEP.lock().expect("lock") = None;
    *GATHERED.lock().expect("lock") = (String::new(), Vec::new());
    let read = block_on(async {
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
            let (v, d) = from_arrow(b.column(0).as_ref()).map_err(|e| format!("{url}: {e}"))?;
            flat.extend(v);
            dim = d;
        }
        Ok((flat, dim))
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

/// `recjob_als(other list<uint32>, weight list<float32>, fixed_url, n_fixed, factors, alpha,
/// lambda) -> list<float32>`: each row's exact implicit-ALS minimiser ([`HalfSweep`]) given the
/// fixed side staged under `fixed_url`: Parquet files of `row uint32, factor list<float32>`,
/// `n_fixed` rows of `factors` values (a row not there is zero). The fixed side is read and
/// prepared once per process and half-sweep.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Als {
    signature: Signature,
}

impl Als {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(Als {
            signature: Signature::any(7, Volatility::Immutable),
        })
    }
}

/// The rows of a staged factor table's batch (`row uint32, factor list<float32>`, `f` values a
/// row) and their values, row-major; `None` when the types or lengths are not those.
pub fn factor_rows(batch: &RecordBatch, f: usize) -> Option<(&[u32], &[f32])> {
    let rows = batch.column(0).as_primitive_opt::<UInt32Type>()?;
    let lists = batch.column(1).as_list_opt::<i32>()?;
    let offsets = lists.value_offsets();
    let regular = offsets.windows(2).all(|w| (w[1] - w[0]) as usize == f);
    let values = lists.values().as_primitive_opt::<Float32Type>()?.values();
    let (a, b) = (offsets[0] as usize, offsets[lists.len()] as usize);
    regular.then_some((rows.values().as_ref(), &values[a..b]))
}

/// The latest half-sweep of `recjob_als`, by its fixed side's URL and parameters: kept until
/// the next one, or until the process next reads item vectors (ALS has ended).
static SWEEP: std::sync::Mutex<Option<(String, Arc<HalfSweep>)>> = std::sync::Mutex::new(None);

/// The half-sweep against the fixed side staged under `url`.
fn half_sweep(url: &str, n: usize, params: &HybridConfig) -> Result<Arc<HalfSweep>> {
    let f = params.factors;
    let key = format!("{url} {n} {f} {} {}", params.alpha, params.regularization);
    // Held while a side loads: the tasks of one executor load it once.
    let mut cached = SWEEP.lock().expect("lock");
    if let Some((k, sweep)) = cached.as_ref()
        && *k == key
    {
        return Ok(sweep.clone());
    }
    // The previous half-sweep's side is freed before the next one is read.
    *cached = None;
    let y = block_on(async {
        let location = Location::parse(url).map_err(|e| e.to_string())?;
        let mut y = vec![0f32; n * f];
        let files = location.list_files().await.map_err(|e| e.to_string())?;
        for file in files {
            let batches = read_parquet(&location.store, &file.location)
                .await
                .map_err(|e| format!("reading {}: {e}", file.location))?;
            for b in &batches {
                let (rows, values) = factor_rows(b, f)
                    .ok_or_else(|| format!("{}: not rows of {f} factors", file.location))?;
                for (&r, x) in rows.iter().zip(values.chunks_exact(f.max(1))) {
                    let Some(to) = y.get_mut(r as usize * f..(r as usize + 1) * f) else {
                        return Err(format!("{}: row {r} of {n}", file.location));
                    };
                    to.copy_from_slice(x);
                }
            }
        }
        Ok(y)
    })
    .map_err(|e| engine_err(format!("recjob_als on {}: {e}", host())))?;
    let sweep = Arc::new(HalfSweep::new(y, params));
    *cached = Some((key, sweep.clone()));
    Ok(sweep)
}

/// The ALS rows of a batch from its `other` and `weight` list columns; `None` when their types
/// or lengths do not match or a row names another side's row outside `0..n`.
fn rows_from_arrow(other: &ArrayRef, weight: &ArrayRef, n: usize) -> Option<Rows> {
    let lists = paired_lists(other, weight)?;
    let mut rows = Rows::with_capacity(lists.iter().map(|(o, _)| o.len()).sum());
    for (o, w) in lists {
        if o.iter().any(|&j| j as usize >= n) {
            return None;
        }
        rows.push_row(o.iter().copied().zip(w.iter().copied()));
    }
    Some(rows)
}

impl ScalarUDFImpl for Als {
    fn name(&self) -> &str {
        "recjob_als"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Float32, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let (url, n, params) = sweep_args(&args.args, 2, name)?;
        let f = params.factors;
        let arrays = ColumnarValue::values_to_arrays(&args.args[..2])?;
        let rows = rows_from_arrow(&arrays[0], &arrays[1], n).ok_or_else(|| {
            engine_err(format!(
                "{name}: other must be list<uint32> with rows below {n} and weight list<float32> of equal lengths"
            ))
        })?;
        let mut out = vec![0f32; rows.len() * f];
        if !rows.is_empty() {
            half_sweep(&url, n, &params)?.solve(&rows, &mut out);
        }
        Ok(float_lists(out, std::iter::repeat_n(f, rows.len())))
    }
}

/// The half-sweep arguments from `at` on: `fixed_url, n_fixed, factors, alpha, lambda`.
fn sweep_args(
    args: &[ColumnarValue],
    at: usize,
    name: &str,
) -> Result<(String, usize, HybridConfig)> {
    let params = HybridConfig {
        factors: scalar_usize(args, at + 2, name)?,
        alpha: scalar_f64(args, at + 3, name)?,
        regularization: scalar_f64(args, at + 4, name)?,
        ..HybridConfig::default()
    };
    Ok((
        scalar_str(args, at, name)?,
        scalar_usize(args, at + 1, name)?,
        params,
    ))
}

/// A `list<float32>` column of `values` cut into rows of `lengths`.
fn float_lists(values: Vec<f32>, lengths: impl IntoIterator<Item = usize>) -> ColumnarValue {
    let list = arrow::array::ListArray::new(
        Arc::new(arrow::datatypes::Field::new_list_field(
            DataType::Float32,
            true,
        )),
        arrow::buffer::OffsetBuffer::from_lengths(lengths),
        Arc::new(Float32Array::from(values)),
        None,
    );
    ColumnarValue::Array(Arc::new(list))
}

/// `recjob_als_items(first uint32, count uint32, user_rows_url, fixed_url, n_fixed, factors,
/// alpha, lambda) -> list<float32>`: the items' half-sweep, a range of items per row. The items'
/// rows are gathered from the users' rows staged under `user_rows_url` (Parquet files of `row,
/// other, weight` in user order: each item's users come in user order, as
/// [`Rows::transpose`] gives them), once per process and range; each item is solved as
/// `recjob_als` solves a row, and the range's factors come back concatenated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AlsItems {
    signature: Signature,
}

impl AlsItems {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(AlsItems {
            signature: Signature::any(8, Volatility::Immutable),
        })
    }
}

/// The items' rows gathered so far, by range, for the users' rows under one URL.
type Gathered = std::sync::Mutex<(String, Vec<((usize, usize), Arc<Rows>)>)>;
static GATHERED: Gathered = std::sync::Mutex::new((String::new(), Vec::new()));

/// The rows of items `first..first + count` from the users' rows staged under `url`.
fn item_rows(url: &str, first: usize, count: usize) -> Result<Arc<Rows>> {
    let mut gathered = GATHERED.lock().expect("lock");
    if gathered.0 != url {
        *gathered = (url.to_string(), Vec::new());
    }
    if let Some((_, rows)) = gathered.1.iter().find(|(r, _)| *r == (first, count)) {
        return Ok(rows.clone());
    }
    let end = first + count;
    let rows = block_on(async {
        let location = Location::parse(url).map_err(|e| e.to_string())?;
        let mut items: Vec<Vec<(u32, f32)>> = vec![Vec::new(); count];
        // Files in name order, rows in order within a file: users in order.
        for file in location.list_files().await.map_err(|e| e.to_string())? {
            let batches = read_parquet(&location.store, &file.location)
                .await
                .map_err(|e| format!("reading {}: {e}", file.location))?;
            for b in &batches {
                let users = b.column(0).as_primitive_opt::<UInt32Type>();
                let rows = rows_from_arrow(b.column(1), b.column(2), u32::MAX as usize);
                let (Some(users), Some(rows)) = (users, rows) else {
                    return Err(format!("{}: not ALS rows", file.location));
                };
                for (k, &u) in users.values().iter().enumerate() {
                    let (other, weight) = rows.row(k);
                    for (&i, &w) in other.iter().zip(weight) {
                        if (first..end).contains(&(i as usize)) {
                            items[i as usize - first].push((u, w));
                        }
                    }
                }
            }
        }
        let mut rows = Rows::with_capacity(items.iter().map(Vec::len).sum());
        for item in items {
            rows.push_row(item);
        }
        Ok(rows)
    })
    .map_err(|e| engine_err(format!("recjob_als_items on {}: {e}", host())))?;
    let rows = Arc::new(rows);
    gathered.1.push(((first, count), rows.clone()));
    Ok(rows)
}

impl ScalarUDFImpl for AlsItems {
    fn name(&self) -> &str {
        "recjob_als_items"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Float32, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let user_rows = scalar_str(&args.args, 2, name)?;
        let (url, n, params) = sweep_args(&args.args, 3, name)?;
        let f = params.factors;
        let arrays = ColumnarValue::values_to_arrays(&args.args[..2])?;
        let (Some(firsts), Some(counts)) = (
            arrays[0].as_primitive_opt::<UInt32Type>(),
            arrays[1].as_primitive_opt::<UInt32Type>(),
        ) else {
            return exec_err!("{name}: first and count must be uint32");
        };
        let mut out = Vec::new();
        let mut lengths = Vec::new();
        for (&first, &count) in firsts.values().iter().zip(counts.values()) {
            let rows = item_rows(&user_rows, first as usize, count as usize)?;
            let mut x = vec![0f32; rows.len() * f];
            half_sweep(&url, n, &params)?.solve(&rows, &mut x);
            lengths.push(x.len());
            out.extend(x);
        }
        Ok(float_lists(out, lengths))
    }
}
