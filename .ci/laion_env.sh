#!/usr/bin/env bash
# Build the LAION-CLAP reference environment (laion_clap 1.1.7, numpy < 2) into the folder given, for the
# parity test (tests/convert/test_laion_parity.py), which finds it through SUPCLAP_LAION_PYTHON:
#
#     bash .ci/laion_env.sh .venv-laion && export SUPCLAP_LAION_PYTHON=$PWD/.venv-laion/bin/python
#
# Kept apart from the project's environment: laion_clap pins numpy < 2. Nothing here is a project dependency.
# An environment already built from the same pins is reused.
set -euo pipefail
target="${1:?usage: bash .ci/laion_env.sh FOLDER}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
requirements="$repo/tests/convert/requirements-laion.txt"
stamp="$target/requirements-laion.sha256"
start=$SECONDS

if [ -x "$target/bin/python" ] && [ -f "$stamp" ] && sha256sum --status -c "$stamp" 2>/dev/null; then
    echo "LAION-CLAP environment in $target: up to date ($((SECONDS - start)) s)"
    exit 0
fi
rm -rf "$target"
python3 -m venv "$target"
# The CPU wheel first, as in the project's set-up: a bare `torch` requirement would pull a CUDA build.
"$target/bin/python" -m pip install --quiet torch==2.13.0
"$target/bin/python" -m pip install --quiet -r "$requirements"
# torchaudio from PyPI is a CUDA build: importing it raises OSError (libc10_cuda.so), which laion_clap's
# `except ImportError` does not catch. Without its compiled extension torchaudio falls back to pure Python,
# and what laion_clap uses (MelSpectrogram, AmplitudeToDB) is pure torch.
site="$("$target/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$target/torchaudio_extension_disabled"
find "$site/torchaudio/lib" -maxdepth 1 -name '*.so' -exec mv {} "$target/torchaudio_extension_disabled/" \;
"$target/bin/python" -c 'import numpy, torchaudio, torchlibrosa; assert numpy.__version__ < "2"; print("torch", __import__("torch").__version__, "torchaudio", torchaudio.__version__, "numpy", numpy.__version__)'
(cd "$(dirname "$requirements")" && sha256sum "$requirements") > "$stamp"
echo "LAION-CLAP environment built in $target: $((SECONDS - start)) s"
