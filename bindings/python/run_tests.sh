#!/bin/sh
# Runs the Python binding's tests against the in-tree library (build it first
# with `make`). Environment: MG_LIB (the .so; default ROOT/lib/libmedgemini.so.0),
# MG_CLI (default ROOT/bin/medgemini), PYTHON (default /usr/bin/python3).
# Exits 0 with a message when Python or pytest is absent, unless
# MG_BINDINGS_REQUIRE=1 (then that is a failure).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

skip() {
    if [ "${MG_BINDINGS_REQUIRE:-0}" = 1 ]; then
        echo "python bindings: FAIL: $1" >&2
        exit 1
    fi
    echo "python bindings: SKIP: $1"
    exit 0
}

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi
fi
[ -n "$PY" ] || skip "no python3"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || skip "python3 older than 3.9"
"$PY" -c 'import pytest' 2>/dev/null || skip "pytest not installed (Debian: python3-pytest)"

export MG_LIB="${MG_LIB:-$root/lib/libmedgemini.so.0}"
export MG_CLI="${MG_CLI:-$root/bin/medgemini}"
if [ ! -e "$MG_LIB" ] || [ ! -x "$MG_CLI" ]; then
    echo "python bindings: $MG_LIB or $MG_CLI missing: run make first" >&2
    exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
# one OpenBLAS thread: the tests run several generations at once
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
cd "$here"
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
