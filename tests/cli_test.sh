#!/bin/sh
# cli_test.sh CLI - end-to-end checks of the medgemini command-line tool:
# mkmodel writes models that info reads back, checksums verify, errors exit
# non-zero with a message on stderr and nothing on stdout.
set -u
CLI=${1:?usage: cli_test.sh path/to/medgemini}
# MG_RUNNER (e.g. a valgrind command line) wraps every run of the tool.
if [ -n "${MG_RUNNER:-}" ]; then
  real_cli=$CLI
  CLI=run_cli
  run_cli() { $MG_RUNNER "$real_cli" "$@"; }
fi
TMP=${MG_TEST_TMP:-lib/tmp}/cli.$$
mkdir -p "$TMP"
pass=0 fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
expect() { # expect DESCRIPTION CONDITION...
  d=$1; shift
  if "$@"; then ok; else bad "$d"; fi
}

"$CLI" version > "$TMP/v.txt" 2>&1
expect "version prints build info" grep -q 'simd=' "$TMP/v.txt"

"$CLI" mkmodel --shape tiny -o "$TMP/tiny.mgm" 2>"$TMP/mk.err"
expect "mkmodel tiny exits 0" test $? -eq 0
"$CLI" info "$TMP/tiny.mgm" > "$TMP/info.txt" 2>&1
expect "info exits 0" test $? -eq 0
expect "info shows format version" grep -q '^format version: 1$' "$TMP/info.txt"
expect "info shows metadata" grep -q 'text.hidden_size = 64' "$TMP/info.txt"
expect "info shows tensors" grep -q 'text.blk.1.ffn_down' "$TMP/info.txt"
expect "info shows vision" grep -q '^image encoder: yes$' "$TMP/info.txt"
# tiny: 2 text layers x 13 tensors + 2 global, 2 vision layers x 16 + 7
expect "tiny has 67 tensors" grep -q '^tensors (67):' "$TMP/info.txt"

"$CLI" mkmodel --shape tiny --dtype q4_0 --compress --seed 7 -o "$TMP/q4.mgm" 2>/dev/null
expect "mkmodel q4_0 compressed exits 0" test $? -eq 0
"$CLI" info --verify "$TMP/q4.mgm" > "$TMP/q4.txt" 2>&1
expect "info --verify exits 0" test $? -eq 0
expect "q4 model has q4_0 tensors" grep -q 'text.blk.0.attn_q .*q4_0' "$TMP/q4.txt"
expect "compressed tensors reported" grep -q ' yes$' "$TMP/q4.txt"
expect "checksums verified" grep -q '^checksums: verified$' "$TMP/q4.txt"

# Same seed, same bytes; another seed, other bytes.
"$CLI" mkmodel --shape tiny --dtype q8_0 --seed 3 -o "$TMP/a.mgm" 2>/dev/null
"$CLI" mkmodel --shape tiny --dtype q8_0 --seed 3 -o "$TMP/b.mgm" 2>/dev/null
"$CLI" mkmodel --shape tiny --dtype q8_0 --seed 4 -o "$TMP/c.mgm" 2>/dev/null
expect "mkmodel is deterministic" cmp -s "$TMP/a.mgm" "$TMP/b.mgm"
expect "seed changes weights" sh -c "! cmp -s '$TMP/a.mgm' '$TMP/c.mgm'"

# A given shape: one dimension overridden.
"$CLI" mkmodel --hidden 96 --heads 6 --kv-heads 3 --layers 1 --no-vision -o "$TMP/g.mgm" 2>/dev/null
"$CLI" info "$TMP/g.mgm" > "$TMP/g.txt" 2>&1
expect "override hidden" grep -q 'text.hidden_size = 96' "$TMP/g.txt"
expect "override changes tensor shape" grep -q 'text.blk.0.attn_q .* 96 x 96 ' "$TMP/g.txt"
expect "one layer" sh -c "! grep -q 'text.blk.1.' '$TMP/g.txt'"
"$CLI" mkmodel --heads 3 -o "$TMP/x.mgm" 2>/dev/null
expect "inconsistent shape exits 2" test $? -eq 2

# MG_SIMD lowers the kernels' SIMD level.
MG_SIMD=scalar "$CLI" version > "$TMP/v2.txt" 2>&1
expect "MG_SIMD=scalar honoured" grep -q 'simd=scalar ' "$TMP/v2.txt"

# generate: text out, logits dump with one line per prompt position.
"$CLI" generate -m "$TMP/tiny.mgm" -n 8 "Heart size is normal." > "$TMP/gen.txt" 2> "$TMP/gen.err"
expect "generate exits 0" test $? -eq 0
expect "generate prints a line" test "$(wc -l < "$TMP/gen.txt")" -ge 1
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300,301,302 -n 4 --dump-logits "$TMP/lg.txt" > /dev/null 2>&1
expect "dump-logits exits 0" test $? -eq 0
expect "dump-logits: 4 positions" test "$(wc -l < "$TMP/lg.txt")" -eq 4
expect "dump-logits: vocab columns" test "$(head -1 "$TMP/lg.txt" | wc -w)" -eq 512
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300 -n 6 --temp 0.9 --seed 4 > "$TMP/s1.txt" 2>/dev/null
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300 -n 6 --temp 0.9 --seed 4 > "$TMP/s2.txt" 2>/dev/null
expect "seeded generation repeats" cmp -s "$TMP/s1.txt" "$TMP/s2.txt"
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,99999 > /dev/null 2> "$TMP/e.err"
expect "bad token id fails" test $? -eq 1
expect "bad token id: message" grep -q 'out of range' "$TMP/e.err"
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,x > /dev/null 2>&1
expect "malformed --ids exits 2" test $? -eq 2

# Report and VQA from image files (tiny random model: the text is noise).
"$CLI" mkmodel --shape tiny -o "$TMP/img.mgm" 2>/dev/null
"$CLI" report "tests/data/vision/gray_odd.png" "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" -n 5 > "$TMP/r1.txt" 2> "$TMP/r.err"
expect "report exits 0" test $? -eq 0
"$CLI" report "tests/data/vision/gray_odd.png" "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" -n 5 > "$TMP/r2.txt" 2>/dev/null
expect "greedy report repeats" cmp -s "$TMP/r1.txt" "$TMP/r2.txt"
"$CLI" report "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" -n 5 --instruction "Findings?" --seed 3 --temp 0.8 > /dev/null 2>&1
expect "report with options exits 0" test $? -eq 0
"$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -m "$TMP/img.mgm" -n 5 > /dev/null 2>&1
expect "vqa exits 0" test $? -eq 0
"$CLI" vqa "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" > /dev/null 2>&1
expect "vqa without -q exits 2" test $? -eq 2
"$CLI" report "$TMP/missing.png" -m "$TMP/img.mgm" > /dev/null 2> "$TMP/e.err"
expect "report on a missing image fails" test $? -eq 1
"$CLI" report "tests/data/vision/rgb.jpg" -m "$TMP/g.mgm" > /dev/null 2> "$TMP/e.err"
expect "report without an image encoder fails" test $? -eq 1
expect "report without an image encoder: message" grep -q 'no image encoder' "$TMP/e.err"

"$CLI" mkmodel --shape tiny --image-size 60 -o "$TMP/x.mgm" 2>/dev/null
expect "image size not a multiple of the patch exits 2" test $? -eq 2
"$CLI" mkmodel --shape tiny --image-tokens 15 -o "$TMP/x.mgm" 2>/dev/null
expect "non-square image tokens exit 2" test $? -eq 2

# Errors: exit code, message on stderr, nothing on stdout.
head -c 1000 "$TMP/tiny.mgm" > "$TMP/trunc.mgm"
"$CLI" info "$TMP/trunc.mgm" > "$TMP/e.out" 2> "$TMP/e.err"
expect "truncated model fails" test $? -eq 1
expect "truncated model: message" grep -q 'malformed model file' "$TMP/e.err"
expect "truncated model: stdout empty" test ! -s "$TMP/e.out"
"$CLI" info "$TMP/missing.mgm" > /dev/null 2> "$TMP/e.err"
expect "missing file fails" test $? -eq 1
"$CLI" mkmodel --shape nosuch -o "$TMP/x.mgm" 2>/dev/null
expect "unknown shape exits 2" test $? -eq 2
"$CLI" mkmodel --dtype q5 -o "$TMP/x.mgm" 2>/dev/null
expect "unknown dtype exits 2" test $? -eq 2
"$CLI" nosuchcommand 2>/dev/null
expect "unknown command exits 2" test $? -eq 2

rm -rf "$TMP"
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
