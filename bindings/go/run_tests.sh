#!/bin/sh
# Builds and tests the Go binding against the library of this source tree
# (or the one MG_LIB names). Exits 0 with a message when no Go toolchain is
# installed. Environment (all optional):
#   MG_LIB           the shared library (default: <repo>/lib/libmedgemini.so.0)
#   MG_CLI           the medgemini CLI, used to make test models
#                    (default: <repo>/bin/medgemini)
#   MG_GO_RACE=1     also run the tests under the race detector
#   MG_GO_CACHE=DIR  keep the build cache there between runs
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v go >/dev/null 2>&1; then
    echo "bindings/go: skipped (no go toolchain; install the Debian package golang-go)"
    exit 0
fi

lib=${MG_LIB:-$root/lib/libmedgemini.so.0}
if [ ! -f "$lib" ]; then
    echo "bindings/go: $lib not found (run make first, or set MG_LIB)" >&2
    exit 1
fi
export MG_CLI=${MG_CLI:-$root/bin/medgemini}
if [ ! -x "$MG_CLI" ]; then
    echo "bindings/go: $MG_CLI not found (run make first, or set MG_CLI)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/medgemini-go.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

# the linker wants libmedgemini.so: link one next to the library we test
libdir=$(cd "$(dirname "$lib")" && pwd)
if [ ! -e "$libdir/libmedgemini.so" ]; then
    mkdir -p "$tmp/lib"
    ln -s "$libdir/$(basename "$lib")" "$tmp/lib/libmedgemini.so"
    libdir=$tmp/lib
fi

export GOCACHE=${MG_GO_CACHE:-$tmp/gocache}
export GOPATH=$tmp/gopath
export GOFLAGS=-mod=readonly
export GOPROXY=off GOSUMDB=off GO111MODULE=on GOTOOLCHAIN=local
export CGO_ENABLED=1
export CGO_CFLAGS="-I$root/include ${CGO_CFLAGS:-}"
export CGO_LDFLAGS="-L$libdir ${CGO_LDFLAGS:-}"
export LD_LIBRARY_PATH="$(cd "$(dirname "$lib")" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GODEBUG=cgocheck=2   # full checks of the cgo pointer rules

cd "$here"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    echo "bindings/go: not gofmt-formatted: $unformatted" >&2
    exit 1
fi
go vet ./...
go test -count=1 ./...
if [ "${MG_GO_RACE:-0}" = 1 ]; then
    go test -count=1 -race ./...
fi
echo "bindings/go: ok"
