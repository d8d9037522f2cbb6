#!/bin/sh
# Builds and tests the Rust binding against the in-tree library (run `make`
# first). Honours MG_LIB_DIR (directory of libmedgemini.so), MG_CLI (the
# medgemini program, used to make the test model) and CARGO_TARGET_DIR.
# Skips (exit 0) only when cargo is not installed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
    export PATH
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "bindings/rust: cargo not found, skipping" >&2
    exit 0
fi

lib=${MG_LIB_DIR:-$root/lib}
if [ ! -e "$lib/libmedgemini.so" ]; then
    echo "bindings/rust: $lib/libmedgemini.so missing (run make)" >&2
    exit 1
fi
export MG_LIB_DIR="$lib"
export MG_CLI="${MG_CLI:-$root/bin/medgemini}"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/lib/rust-target}"
# Cargo's home may be read-only in CI: keep its cache beside the build.
if [ ! -w "${CARGO_HOME:-$HOME/.cargo}" ] 2>/dev/null; then
    export CARGO_HOME="$CARGO_TARGET_DIR/cargo-home"
fi
# The library's own kernels and OpenBLAS: one thread each per test context.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

cd "$here"
cargo test --offline --workspace --quiet
cargo build --offline --quiet --example report
# the example end to end: a tiny random model and the sample chest X-ray
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MG_CLI" mkmodel --shape tiny --dtype q8_0 -o "$tmp/tiny.mgm" 2>/dev/null
"$CARGO_TARGET_DIR/debug/examples/report" "$tmp/tiny.mgm" "$root/examples/data/cxr_nih_00006585_008.png" \
    --max-tokens 4 > "$tmp/report.txt" 2> "$tmp/report.err" || { cat "$tmp/report.err" >&2; exit 1; }
grep -q "random-tiny" "$tmp/report.err"
echo "bindings/rust: ok"
