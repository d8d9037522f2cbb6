#!/bin/sh
# Peer benchmark setup: llama.cpp (CPU; llama-bench and llama-mtmd-cli) from the npm package
# node-llama-cpp's git bundle,
# plus a private copy of this repository built for measuring (so edits in progress in the
# working tree do not change a running benchmark). Idempotent. Not run in CI.
#   MG_PEER_CACHE   cache folder (default ~/.cache/mg-peer)
#   MG_PEER_JOBS    build jobs (default 2)
#   MG_PEER_NICE    nice level for builds (default 15)
#   MG_PEER_REFRESH_OURS=1   re-copy the repository and rebuild our side
set -eu
CACHE=${MG_PEER_CACHE:-$HOME/.cache/mg-peer}
JOBS=${MG_PEER_JOBS:-2}
NICE="nice -n ${MG_PEER_NICE:-15}"
NLC_VERSION=${MG_PEER_NLC_VERSION:-3.22.1}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$CACHE"
cd "$CACHE"

# 1. llama.cpp source
if [ ! -f llama.cpp/CMakeLists.txt ]; then
    if [ ! -f "node-llama-cpp-$NLC_VERSION.tgz" ]; then
        npm pack "node-llama-cpp@$NLC_VERSION" >/dev/null
    fi
    rm -rf npm-pkg && mkdir npm-pkg
    tar xzf "node-llama-cpp-$NLC_VERSION.tgz" -C npm-pkg package/llama/gitRelease.bundle
    rm -rf llama.cpp
    git clone -q npm-pkg/package/llama/gitRelease.bundle llama.cpp
    rm -rf npm-pkg
fi
echo "llama.cpp: $(git -C llama.cpp describe --tags --always 2>/dev/null || echo unknown)"

# 2. llama.cpp build (CPU only)
if [ ! -x llama.cpp/build/bin/llama-bench ] || [ ! -x llama.cpp/build/bin/llama-mtmd-cli ]; then
    $NICE cmake -S llama.cpp -B llama.cpp/build -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
        -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF -DGGML_BLAS=OFF \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF \
        -DBUILD_SHARED_LIBS=OFF >/dev/null
    $NICE cmake --build llama.cpp/build --config Release --target llama-bench llama-mtmd-cli -j"$JOBS"
fi
llama.cpp/build/bin/llama-bench --help >/dev/null 2>&1 || { echo "llama-bench does not run" >&2; exit 1; }

# 3. our side: a private copy of the repository, built
if [ "${MG_PEER_REFRESH_OURS:-0}" = 1 ] || [ ! -x ours/lib/bench/llm ] || [ ! -x ours/lib/bench/vision ] ||
        [ ! -x ours/bin/medgemini ]; then
    rm -rf ours && mkdir ours
    tar -C "$REPO" --exclude=./lib --exclude=./.git --exclude=./bench/peer -cf - . | tar -C ours -xf -
    $NICE make -C ours -j"$JOBS" lib/bench/llm lib/bench/vision bin/medgemini >/dev/null
fi
echo "ours: $CACHE/ours ($(cd ours && ls -l --time-style=+%F_%T lib/bench/llm | awk '{print $6}'))"
echo "setup done"
