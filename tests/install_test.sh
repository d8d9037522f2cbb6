#!/bin/sh
# install_test.sh - installs into a scratch prefix, then builds
# examples/hello.c against the installed copy using only pkg-config, linked
# both shared and static, and runs both. Also checks the shared library's
# SONAME and that it exports nothing but mg_* symbols.
set -eu
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
MAKEFLAGS= make -s install PREFIX="$prefix" >/dev/null

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags medgemini)
libs=$(pkg-config --libs medgemini)
cc -std=c11 -Wall -Wextra -Werror $cflags "$top/examples/hello.c" -o "$tmp/hello" $libs
LD_LIBRARY_PATH="$prefix/lib" "$tmp/hello" > "$tmp/out.txt"
grep -q "^libmedgemini $(sed -n 's/^#define MG_VERSION_STRING "\(.*\)"/\1/p' include/medgemini.h)\$" "$tmp/out.txt"
# The binary really uses the installed shared library.
LD_LIBRARY_PATH="$prefix/lib" ldd "$tmp/hello" | grep -q "$prefix/lib/libmedgemini.so.0"

cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags --static medgemini) "$top/examples/hello.c" \
   -o "$tmp/hello_static" -Wl,-Bstatic -lmedgemini -Wl,-Bdynamic $(pkg-config --libs --static medgemini | sed 's/-lmedgemini//')
"$tmp/hello_static" > /dev/null
! ldd "$tmp/hello_static" | grep -q libmedgemini

so=$(ls "$prefix"/lib/libmedgemini.so.*.*.*)
readelf -d "$so" | grep -q 'SONAME.*\[libmedgemini.so.0\]'
bad=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sed 's/@.*//' | grep -v '^mg_' || true)
if [ -n "$bad" ]; then echo "non-mg_ exports: $bad"; exit 1; fi
n=$(nm -D --defined-only "$so" | awk '$2 == "T"' | wc -l)
echo "install: 1 passed, 0 failed ($n exported functions)"
