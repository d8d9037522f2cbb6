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
# --kv-bf16: the same prompt's logits from a bf16 KV cache: same shape, close
# to the f32 cache's (the first position sees only itself: equal up to the
# bf16 rounding of its value vector)
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300,301,302 -n 4 --kv-bf16 --dump-logits "$TMP/lgb.txt" > /dev/null 2>&1
expect "generate --kv-bf16 exits 0" test $? -eq 0
expect "--kv-bf16 logits: one line per position" test "$(wc -l < "$TMP/lgb.txt")" -eq 4
expect "--kv-bf16 logits close to the f32 cache's" awk 'NR==FNR { for (i = 1; i <= NF; i++) a[FNR, i] = $i; next }
  { for (i = 1; i <= NF; i++) { d = $i - a[FNR, i]; if (d < 0) d = -d; if (d > m) m = d; if (d > 0) nz = 1 } }
  END { exit !(m < 0.05 && nz) }' "$TMP/lg.txt" "$TMP/lgb.txt"
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300 -n 6 --temp 0.9 --seed 4 > "$TMP/s1.txt" 2>/dev/null
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300 -n 6 --temp 0.9 --seed 4 > "$TMP/s2.txt" 2>/dev/null
expect "seeded generation repeats" cmp -s "$TMP/s1.txt" "$TMP/s2.txt"
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,99999 > /dev/null 2> "$TMP/e.err"
expect "bad token id fails" test $? -eq 1
expect "bad token id: message" grep -q 'out of range' "$TMP/e.err"
"$CLI" generate -m "$TMP/tiny.mgm" --ids 2,x > /dev/null 2>&1
expect "malformed --ids exits 2" test $? -eq 2
# A context that fills during the answer: the text so far on stdout, why it
# stops on stderr, exit status 3 (it used to exit 0 without a word).
"$CLI" generate -m "$TMP/tiny.mgm" --ctx 4 --ids 2,300 -n 8 > "$TMP/cf.txt" 2> "$TMP/cf.err"
expect "generate cut by a full context exits 3" test $? -eq 3
expect "generate cut by a full context says so" grep -q 'answer cut short' "$TMP/cf.err"
# the same for a report: a context two tokens longer than its prompt
"$CLI" report examples/data/cxr_nih_00006585_008.png -m "$TMP/tiny.mgm" -n 1 \
  --prompt-ids "$TMP/rp.txt" > /dev/null 2>&1
rpn=$(( $(wc -l < "$TMP/rp.txt") + 1 ))
"$CLI" report examples/data/cxr_nih_00006585_008.png -m "$TMP/tiny.mgm" -n 8 --ctx "$rpn" \
  > "$TMP/rcf.txt" 2> "$TMP/rcf.err"
expect "report cut by a full context exits 3" test $? -eq 3
expect "report cut by a full context says so" grep -q 'medgemini report: answer cut short' "$TMP/rcf.err"

# convert: a Hugging Face folder (the decoder's reference fixture) to q8_0,
# with a small tokenizer.json given by --tokenizer, and --eval on prompts.
FX=tests/reference/fixtures/gqa1_full
cat > "$TMP/tok.json" <<'EOF'
{"added_tokens": [
 {"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
 {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5, "e": 6,
            "h": 7, "r": 8, "t": 9, "s": 10, "i": 11, "n": 12, "o": 13, "th": 14, "\u2581th": 15},
  "merges": [["t", "h"], ["\u2581", "th"]]}}
EOF
printf 'the heart is normal\nno effusion there\n' > "$TMP/prompts.txt"
"$CLI" convert "$FX" -o "$TMP/conv.mgm" --type q8_0 --tokenizer "$TMP/tok.json" \
  --eval "$TMP/prompts.txt" > "$TMP/conv.out" 2> "$TMP/conv.err"
expect "convert exits 0" test $? -eq 0
expect "convert prints per-tensor error" grep -q 'text.blk.0.attn_q .*q8_0 .*rms err' "$TMP/conv.err"
expect "convert --eval prints agreement" grep -q 'top-1 agreement .* KL' "$TMP/conv.out"
"$CLI" info "$TMP/conv.mgm" > "$TMP/conv.txt" 2>&1
expect "converted model loads" test $? -eq 0
expect "converted: q8_0 matrices" grep -q 'text.blk.1.ffn_down .*q8_0' "$TMP/conv.txt"
expect "converted: tokenizer padded" grep -q 'tokenizer.tokens = .*(512 elements)' "$TMP/conv.txt"
expect "converted: checksums recorded" grep -q 'general.source_sha256' "$TMP/conv.txt"
expect "no eval scratch file left" test ! -e "$TMP/conv.mgm.eval-f32.tmp"
"$CLI" convert "$FX" -o "$TMP/convz.mgm" --compress --quiet 2>/dev/null
expect "convert --compress exits 0" test $? -eq 0
"$CLI" convert "$TMP/missing_dir" -o "$TMP/x.mgm" > "$TMP/e.out" 2> "$TMP/e.err"
expect "convert of a missing source fails" test $? -eq 1
expect "convert error: message" grep -q 'medgemini convert: ' "$TMP/e.err"
expect "convert error: stdout empty" test ! -s "$TMP/e.out"
"$CLI" convert "$FX" -o "$TMP/x.mgm" --type q5 2>/dev/null
expect "convert unknown type exits 2" test $? -eq 2
"$CLI" convert "$TMP/tiny.mgm" -o "$TMP/x.mgm" 2> "$TMP/e.err"
expect "convert of a non-GGUF file fails" grep -q 'not a GGUF file' "$TMP/e.err"

# Vocabulary pruning and metadata: convert --prune-vocab --meta; the same
# pruned tokenizer from `tokenize --prune-vocab --save-tokenizer`.
printf 'the heart\n' > "$TMP/corpus.txt"
"$CLI" convert "$FX" -o "$TMP/pruned.mgm" --tokenizer "$TMP/tok.json" --quiet \
  --prune-vocab "$TMP/corpus.txt" --meta general.name=demo \
  --meta 'prompt.report_instruction=Describe it.' 2> "$TMP/pr.err"
expect "convert --prune-vocab exits 0" test $? -eq 0
"$CLI" info "$TMP/pruned.mgm" > "$TMP/pr.txt" 2>&1
# kept: 4 specials, 9 letters, the space marker and "th" (from "the")
expect "pruned: vocab_size" grep -q 'text.vocab_size = 15$' "$TMP/pr.txt"
expect "pruned: embedding rows" grep -q 'text.token_embd .* 64 x 15 ' "$TMP/pr.txt"
expect "--meta sets general.name" grep -q 'general.name = "demo"' "$TMP/pr.txt"
expect "--meta sets a prompt" grep -q 'prompt.report_instruction = "Describe it."' "$TMP/pr.txt"
"$CLI" tokenize --tokenizer "$TMP/tok.json" --prune-vocab "$TMP/corpus.txt" \
  --save-tokenizer "$TMP/pruned.json" < /dev/null > "$TMP/e.out" 2> "$TMP/pt.err"
expect "tokenize --prune-vocab exits 0" test $? -eq 0
expect "tokenize --prune-vocab summary" grep -q 'kept 15 of 16 tokens and 1 of 2 merges; wrote ' "$TMP/pt.err"
expect "tokenize --save-tokenizer: stdout empty" test ! -s "$TMP/e.out"
printf 'the heart\nthere\n' | "$CLI" tokenize --tokenizer "$TMP/pruned.json" > "$TMP/ids1.txt" 2>&1
printf 'the heart\nthere\n' | "$CLI" tokenize -m "$TMP/pruned.mgm" > "$TMP/ids2.txt" 2>&1
expect "pruned tokenizer.json = pruned model's tokenizer" cmp -s "$TMP/ids1.txt" "$TMP/ids2.txt"
"$CLI" tokenize -m "$TMP/pruned.mgm" --save-tokenizer "$TMP/resaved.json" 2> "$TMP/rs.err"
expect "tokenize -m --save-tokenizer exits 0" test $? -eq 0
expect "tokenize --save-tokenizer summary" grep -q 'wrote .*resaved.json (15 tokens, 1 merges)' "$TMP/rs.err"
"$CLI" convert "$FX" -o "$TMP/x.mgm" --meta text.vocab_size=3 > /dev/null 2> "$TMP/e.err"
expect "convert --meta outside general./prompt. fails" test $? -eq 1
expect "convert --meta refusal: message" grep -q "meta key 'text.vocab_size'" "$TMP/e.err"
"$CLI" convert "$FX" -o "$TMP/x.mgm" --tokenizer "$TMP/tok.json" --prune-vocab "$TMP/none.txt" \
  > /dev/null 2> "$TMP/e.err"
expect "convert --prune-vocab without the corpus fails" grep -q "corpus '.*none.txt'.*(input/output error)" "$TMP/e.err"
"$CLI" tokenize --tokenizer "$TMP/tok.json" --prune-vocab "$TMP/none.txt" --save-tokenizer \
  "$TMP/x.json" 2> /dev/null
expect "tokenize --prune-vocab without the corpus fails" test $? -eq 1

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
# several questions: each answered as the single-question call answers it
one=$("$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -m "$TMP/img.mgm" -n 5 2>/dev/null)
two=$("$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -q "Where?" -m "$TMP/img.mgm" -n 5 2>/dev/null)
expect "vqa -q twice prints Q:/A: pairs" test "$(printf '%s\n' "$two" | grep -c '^Q: ')" -eq 2
expect "vqa -q twice: the first answer is the single call's" \
  test "$(printf '%s\n' "$two" | sed -n 's/^A: //p' | head -1)" = "$(printf '%s\n' "$one" | head -1)"
# the second question with the image from the context's cache: same answer
# as the first question's when asked twice
three=$("$CLI" vqa "tests/data/vision/rgb.jpg" -q "Where?" -q "Is there a fracture?" -m "$TMP/img.mgm" -n 5 2>/dev/null)
expect "vqa: a later question is answered as it is alone" \
  test "$(printf '%s\n' "$three" | sed -n 's/^A: //p' | sed -n 2p)" = "$(printf '%s\n' "$one" | head -1)"
# progress bar on request (stderr is not a terminal here)
"$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -m "$TMP/img.mgm" -n 5 \
  --progress > /dev/null 2> "$TMP/p.err"
expect "vqa --progress draws the encoder's progress" grep -q 'encoding image 1/1' "$TMP/p.err"
expect "vqa --progress draws the prompt's progress" grep -q 'reading the prompt' "$TMP/p.err"
"$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -m "$TMP/img.mgm" -n 5 \
  > /dev/null 2> "$TMP/p.err"
expect "vqa: no progress bar when stderr is not a terminal" test ! -s "$TMP/p.err"
# speculative decoding: the same text
"$CLI" generate -m "$TMP/tiny.mgm" -n 40 "a b c a b c a b" > "$TMP/g1.out" 2>/dev/null
"$CLI" generate -m "$TMP/tiny.mgm" -n 40 --draft "a b c a b c a b" > "$TMP/g2.out" 2>/dev/null
expect "generate --draft exits 0 with the same text" cmp -s "$TMP/g1.out" "$TMP/g2.out"
two_d=$("$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -q "Where?" -m "$TMP/img.mgm" -n 5 --draft 2>/dev/null)
expect "vqa --draft: the same answers" test "$two_d" = "$two"
# a draft model with the same tokenizer (another seed, one layer)
"$CLI" mkmodel --shape tiny --seed 5 --layers 1 -o "$TMP/draft.mgm" 2>/dev/null
"$CLI" generate -m "$TMP/tiny.mgm" -n 40 --draft-model "$TMP/draft.mgm" --draft-max 3 \
  "a b c a b c a b" > "$TMP/g3.out" 2>/dev/null
expect "generate --draft-model exits 0 with the same text" cmp -s "$TMP/g1.out" "$TMP/g3.out"
two_m=$("$CLI" vqa "tests/data/vision/rgb.jpg" -q "Is there a fracture?" -q "Where?" -m "$TMP/img.mgm" -n 5 \
  --draft-model "$TMP/draft.mgm" 2>/dev/null)
expect "vqa --draft-model: the same answers" test "$two_m" = "$two"
"$CLI" mkmodel --shape tiny --vocab 600 -o "$TMP/other.mgm" 2>/dev/null
"$CLI" generate -m "$TMP/tiny.mgm" -n 4 --draft-model "$TMP/other.mgm" "x" > /dev/null 2> "$TMP/d.err"
expect "generate --draft-model with another vocabulary fails" test $? -eq 1
expect "... saying why" grep -q "vocabulary" "$TMP/d.err"
"$CLI" generate -m "$TMP/tiny.mgm" -n 4 --draft-max 17 "x" > /dev/null 2>&1
expect "generate --draft-max 17 is bad usage" test $? -eq 2
# chat: one answer line per message; the first is the vqa answer
printf 'Is there a fracture?\n\nWhere?\n' | "$CLI" chat "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" \
  -n 5 > "$TMP/chat.out" 2> "$TMP/chat.err"
expect "chat exits 0" test $? -eq 0
expect "chat answers each message (blank lines skipped)" test "$(wc -l < "$TMP/chat.out")" -eq 2
expect "chat: the first answer is vqa's" test "$(head -1 "$TMP/chat.out")" = "$(printf '%s\n' "$one" | head -1)"
printf 'Is there a fracture?\n/reset\nIs there a fracture?\n' | "$CLI" chat "tests/data/vision/rgb.jpg" \
  -m "$TMP/img.mgm" -n 5 > "$TMP/chat2.out" 2>/dev/null
expect "chat: /reset starts over with the images" \
  test "$(sed -n 2p "$TMP/chat2.out")" = "$(head -1 "$TMP/chat.out")"
printf 'Hello\n' | "$CLI" chat -m "$TMP/img.mgm" -n 3 > /dev/null 2>&1
expect "chat without images exits 0" test $? -eq 0
"$CLI" chat "$TMP/ct3.nii.gz" -m "$TMP/img.mgm" < /dev/null > /dev/null 2>&1
expect "chat on a volume exits 2" test $? -eq 2
"$CLI" generate -m "$TMP/tiny.mgm" --ctx 3 "a prompt longer than three tokens" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "generate with a prompt that does not fit exits 1" test $? -eq 1
expect "generate with a prompt that does not fit says so" grep -q 'the prompt does not fit' "$TMP/e.err"
expect "generate with a prompt that does not fit prints nothing" test ! -s "$TMP/o.txt"
"$CLI" report "tests/data/vision/rgb.jpg" -m "$TMP/img.mgm" -n 2 --sr "$TMP/no.dcm" > /dev/null 2> "$TMP/e.err"
expect "report --sr on a JPEG fails" test $? -eq 1
expect "report --sr on a JPEG: message" grep -q 'not a DICOM file' "$TMP/e.err"
expect "report --sr on a JPEG writes no SR" test ! -e "$TMP/no.dcm"
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


# image: JPEG/PNG decode as PNM; DICOM against dcmtk when both are at hand.
"$CLI" image tests/data/images/gray.jpg -o "$TMP/gray.pgm" 2>"$TMP/img.err"
expect "image JPEG exits 0" test $? -eq 0
expect "image JPEG equals Pillow's decode" cmp -s "$TMP/gray.pgm" tests/data/images/gray.pgm
"$CLI" image tests/data/images/gray16.png --info > "$TMP/png.txt" 2>&1
expect "image --info PNG" grep -q '^source: PNG$' "$TMP/png.txt"
expect "image --info 16-bit" grep -q '^format: gray16$' "$TMP/png.txt"
"$CLI" image tests/data/images/gray.jpg -o "$TMP/gray.ppm" >"$TMP/o.txt" 2>"$TMP/e.txt"
expect "grey image to .ppm exits 1" test $? -eq 1
expect "grey image to .ppm says why" grep -q 'use a .pgm name' "$TMP/e.txt"
SHARED=${MG_SHARED_DATA:-../shared/data}
DCM=$SHARED/dicom
if [ -d "$DCM" ]; then
  "$CLI" image "$DCM/ct_single/CT_small.dcm" --info > "$TMP/ct.txt" 2>&1
  expect "image --info DICOM exits 0" test $? -eq 0
  expect "info names the syntax" grep -q '^transfer syntax: Explicit VR Little Endian (1.2.840.10008.1.2.1)$' "$TMP/ct.txt"
  expect "info shows the rescale" grep -q '^rescale: slope 1 intercept -1024$' "$TMP/ct.txt"
  expect "info shows the window" grep -q '^window: auto (min..max) center 136 width 2064$' "$TMP/ct.txt"
  "$CLI" image "$DCM/ct_series_3slice/01.dcm" --raw -o "$TMP/raw.pgm" 2>/dev/null
  expect "image --raw exits 0" test $? -eq 0
  expect "raw CT is a 16-bit PGM" sh -c "head -c 16 '$TMP/raw.pgm' | grep -q '^65535$'"
  "$CLI" image "$DCM/mr/emri_small.dcm" --frame 10 -o "$TMP/x.pgm" >"$TMP/o.txt" 2>"$TMP/e.txt"
  expect "frame past the end exits 1" test $? -eq 1
  expect "frame past the end says how many" grep -q 'the file has 10 frames' "$TMP/e.txt"
  expect "frame error prints nothing on stdout" test ! -s "$TMP/o.txt"
  "$CLI" image "$DCM/transfer_syntax_variants/MR_small_bigendian.dcm" -o "$TMP/x.pgm" 2>"$TMP/e.txt"
  expect "big endian refused" test $? -eq 1
  expect "refusal names the syntax" grep -q 'Explicit VR Big Endian (1.2.840.10008.1.2.2)' "$TMP/e.txt"
  # The CR chest radiograph is JPEG 2000: its values equal those of the
  # uncompressed copy made with pydicom and Pillow (OpenJPEG).
  if [ -f "$DCM/cr_chest/RG1_J2KI.dcm" ]; then
    "$CLI" image "$DCM/cr_chest/RG1_J2KI.dcm" --info > "$TMP/cr.txt" 2>&1
    expect "image --info JPEG 2000 exits 0" test $? -eq 0
    expect "info names JPEG 2000" grep -q '^transfer syntax: JPEG 2000 (1.2.840.10008.1.2.4.91)$' "$TMP/cr.txt"
    expect "info shows the CR size" grep -q '^size: 1841x1955$' "$TMP/cr.txt"
    "$CLI" image "$DCM/cr_chest/RG1_J2KI.dcm" --raw -o "$TMP/cr_j2k.pgm" 2>/dev/null
    expect "JPEG 2000 --raw exits 0" test $? -eq 0
    if [ -f "$DCM/cr_chest/RG1_J2KI_decoded_ExplicitVRLittleEndian.dcm" ]; then
      "$CLI" image "$DCM/cr_chest/RG1_J2KI_decoded_ExplicitVRLittleEndian.dcm" --raw \
        -o "$TMP/cr_raw.pgm" 2>/dev/null
      expect "JPEG 2000 CR equals its uncompressed copy" cmp -s "$TMP/cr_j2k.pgm" "$TMP/cr_raw.pgm"
    fi
  fi
  if command -v dcm2pnm >/dev/null 2>&1; then
    # The same window and the min-max window give dcmtk's bytes exactly.
    "$CLI" image "$DCM/ct_series_3slice/01.dcm" --window 40,400 -o "$TMP/w.pgm" 2>/dev/null
    dcm2pnm -q -O +Ww 40 400 +op "$DCM/ct_series_3slice/01.dcm" "$TMP/w_dcmtk.pgm"
    expect "--window equals dcm2pnm +Ww" cmp -s "$TMP/w.pgm" "$TMP/w_dcmtk.pgm"
    "$CLI" image "$DCM/ct_single/CT_small.dcm" -o "$TMP/a.pgm" 2>/dev/null
    dcm2pnm -q -O +Wm +op "$DCM/ct_single/CT_small.dcm" "$TMP/a_dcmtk.pgm"
    expect "automatic window equals dcm2pnm +Wm" cmp -s "$TMP/a.pgm" "$TMP/a_dcmtk.pgm"
    "$CLI" image "$DCM/transfer_syntax_variants/SC_rgb_rle_2frame.dcm" --frame 1 -o "$TMP/f.ppm" 2>/dev/null
    dcm2pnm -q -O +F 2 +op "$DCM/transfer_syntax_variants/SC_rgb_rle_2frame.dcm" "$TMP/f_dcmtk.ppm"
    expect "RLE colour frame 1 equals dcm2pnm" cmp -s "$TMP/f.ppm" "$TMP/f_dcmtk.ppm"
  else
    echo "cli: dcmtk absent; DICOM comparisons skipped"
  fi
else
  echo "cli: shared DICOM data absent; DICOM checks skipped"
fi

# volume: a DICOM series to NIfTI, checked with nibabel against pydicom (and
# dcm2niix when installed) by tests/volume/reference.py; a NIfTI file read.
"$CLI" volume > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "volume without arguments exits 2" test $? -eq 2
"$CLI" volume "$TMP/no-such-folder" --info > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "volume of a missing folder exits 1" test $? -eq 1
expect "volume error names the path" grep -q "cannot open '.*no-such-folder'" "$TMP/e.txt"
expect "volume error prints nothing on stdout" test ! -s "$TMP/o.txt"
"$CLI" volume "$TMP" --info > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "volume of a folder without DICOM exits 1" test $? -eq 1
expect "volume says no DICOM image was found" grep -q 'no DICOM image among' "$TMP/e.txt"
if [ -d "$DCM/ct_series_3slice" ]; then
  S3=$DCM/ct_series_3slice
  "$CLI" volume "$S3" --info > "$TMP/vol.txt" 2>&1
  expect "volume --info exits 0" test $? -eq 0
  expect "volume --info size" grep -q '^size: 512 x 512 x 3$' "$TMP/vol.txt"
  expect "volume --info spacing" grep -q '^spacing: 0.810547 0.810547 1 mm$' "$TMP/vol.txt"
  expect "volume --info orientation" grep -q '^orientation: LPS ' "$TMP/vol.txt"
  expect "volume --info series UID" grep -q '^series: 1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1$' "$TMP/vol.txt"
  expect "volume --info files" grep -q '^files: 3 used, 1 skipped$' "$TMP/vol.txt"
  expect "volume --info the lowest slice first" grep -q '^  0 .*/03.dcm 0$' "$TMP/vol.txt"
  expect "volume --info HU range" grep -q '^values: -3024 .. 1381$' "$TMP/vol.txt"
  "$CLI" volume "$S3/01.dcm" "$S3/03.dcm" "$S3/02.dcm" -o "$TMP/ct3.nii.gz" > "$TMP/o.txt" 2>&1
  expect "volume -o exits 0" test $? -eq 0
  expect "volume -o writes gzip" sh -c "head -c 2 '$TMP/ct3.nii.gz' | od -An -tx1 | grep -q '1f 8b'"
  "$CLI" volume "$TMP/ct3.nii.gz" --info > "$TMP/nii.txt" 2>&1
  expect "volume reads its NIfTI back" grep -q '^source: NIfTI$' "$TMP/nii.txt"
  expect "NIfTI back: same size" grep -q '^size: 512 x 512 x 3$' "$TMP/nii.txt"
  expect "NIfTI back: same range" grep -q '^values: -3024 .. 1381$' "$TMP/nii.txt"
  expect "NIfTI back: same origin" grep -q '^origin: -235.2 -226.8 -128.69 mm' "$TMP/nii.txt"
  if /usr/bin/python3 -c 'import pydicom, numpy, nibabel' >/dev/null 2>&1; then
    D2N=
    command -v dcm2niix >/dev/null 2>&1 && D2N="--dcm2niix $S3"
    /usr/bin/python3 tests/volume/reference.py expect "$S3" "$TMP/ct3_ref" &&
      /usr/bin/python3 tests/volume/reference.py check-nifti "$TMP/ct3.nii.gz" "$TMP/ct3_ref" $D2N \
        > "$TMP/chk.txt" 2>&1
    expect "volume NIfTI equals pydicom's series (nibabel${D2N:+, dcm2niix})" test $? -eq 0
  else
    echo "cli: python3 with pydicom and nibabel absent; NIfTI output not cross-checked"
  fi
  # The slices a model reads (MedGemma 1.5's recipe), and reports / answers on volumes.
  "$CLI" volume "$S3" --slices-dir "$TMP/sl" --slices 2 > "$TMP/sl.txt" 2> "$TMP/e.txt"
  expect "volume --slices-dir exits 0" test $? -eq 0
  expect "2 of 3 slices: z 1 first" grep -qx 'slice 1: z 1' "$TMP/sl.txt"
  expect "2 of 3 slices: z 2 last" grep -qx 'slice 2: z 2' "$TMP/sl.txt"
  expect "no third slice file" test ! -e "$TMP/sl/slice_003.ppm"
  expect "slices are 512x512 RGB PPM" sh -c "head -c 15 '$TMP/sl/slice_002.ppm' | tr '\n' ' ' | grep -q '^P6 512 512 255 '"
  "$CLI" volume "$S3" --slices-dir "$TMP/sl" --slices 0 > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "volume --slices 0 exits 2" test $? -eq 2
  "$CLI" report "$S3" -m "$TMP/tiny.mgm" -n 4 --slices 2 --prompt-ids "$TMP/ids.txt" \
    > "$TMP/rep.txt" 2> "$TMP/e.txt"
  expect "report on a series folder exits 0" test $? -eq 0
  expect "report on a series prints text" test -s "$TMP/rep.txt"
  # tiny: 16 tokens per image (id 8), 2 slices
  expect "the prompt holds 2 x 16 image tokens" test "$(grep -cx 8 "$TMP/ids.txt")" -eq 32
  tr '\n' ' ' < "$TMP/ids.txt" | "$CLI" tokenize -m "$TMP/tiny.mgm" --decode > "$TMP/dec.txt" 2>&1
  expect "the prompt labels slice 1" grep -qx 'SLICE 1' "$TMP/dec.txt"
  expect "the prompt labels slice 2" grep -q '^SLICE 2' "$TMP/dec.txt"
  expect "no third slice label" sh -c "! grep -q 'SLICE 3' '$TMP/dec.txt'"
  "$CLI" vqa "$TMP/ct3.nii.gz" -q "Where?" -m "$TMP/tiny.mgm" -n 3 --slices 1 --window minmax \
    > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "vqa on a NIfTI volume exits 0" test $? -eq 0
  "$CLI" report "$S3/01.dcm" "$S3/02.dcm" --volume -m "$TMP/tiny.mgm" -n 2 > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report --volume on DICOM files exits 0" test $? -eq 0
  "$CLI" report "$S3" -m "$TMP/tiny.mgm" -n 3 --slices 2 --sr "$TMP/sr.dcm" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report --sr on a series exits 0" test $? -eq 0
  expect "report --sr writes a DICOM file" sh -c "head -c 132 '$TMP/sr.dcm' | tail -c 4 | grep -q DICM"
  if command -v dsrdump > /dev/null 2>&1; then
    dsrdump "$TMP/sr.dcm" > "$TMP/srd.txt" 2> "$TMP/srd.err"
    expect "dsrdump reads the SR" test $? -eq 0
    expect "dsrdump has no warnings" test ! -s "$TMP/srd.err"
    expect "the SR names the model file" grep -q 'tiny.mgm' "$TMP/srd.txt"
    uid=$(dcmdump +P StudyInstanceUID "$S3/01.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
    expect "the series has a study UID" test -n "$uid"
    expect "the SR is in the series' study" sh -c "dcmdump +P StudyInstanceUID '$TMP/sr.dcm' | grep -qF '$uid'"
  fi
  # a PACS export of two studies: listed, then one report (and one SR) each
  mkdir -p "$TMP/pacs/a" "$TMP/pacs/b" "$TMP/srs"
  cp "$DCM/cr_chest/RG1_J2KI.dcm" "$TMP/pacs/a/"
  cp "$S3"/*.dcm "$TMP/pacs/b/"
  "$CLI" study "$TMP/pacs" > "$TMP/st.txt" 2> "$TMP/e.txt"
  expect "study exits 0" test $? -eq 0
  expect "study lists two studies" test "$(grep -c '^study ' "$TMP/st.txt")" -eq 2
  expect "study finds the CT volume" grep -q 'accession 03086212, volume' "$TMP/st.txt"
  expect "study finds the radiograph's frontal view" grep -q "frontal: $TMP/pacs/a/RG1_J2KI.dcm" "$TMP/st.txt"
  "$CLI" report "$TMP/pacs" -m "$TMP/tiny.mgm" -n 3 --slices 2 --sr "$TMP/srs" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report on two studies exits 0" test $? -eq 0
  expect "one report per study" test "$(grep -c '^== study ' "$TMP/o.txt")" -eq 2
  expect "one SR per study" test "$(ls "$TMP/srs" | grep -c '\.dcm$')" -eq 2
  if command -v dsrdump > /dev/null 2>&1; then
    for f in "$TMP"/srs/*.dcm; do
      dsrdump "$f" > "$TMP/srd.txt" 2> "$TMP/srd.err"
      rc=$?
      expect "dsrdump reads $(basename "$f")" test $rc -eq 0
      expect "dsrdump has no warning for $(basename "$f")" test ! -s "$TMP/srd.err"
      expect "$(basename "$f") is in its study" sh -c "dcmdump +P StudyInstanceUID '$f' | grep -qF '$(basename "$f" .dcm)'"
    done
  fi
  "$CLI" report "$TMP/pacs" -m "$TMP/tiny.mgm" -n 3 --slices 2 --sr "$TMP/one.dcm" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "two studies and an --sr file exit 2" test $? -eq 2
  # the same patient a year earlier (dates and the UIDs that hold them changed): a prior
  mkdir -p "$TMP/pacs2/now" "$TMP/pacs2/before"
  cp "$DCM/cr_chest/RG1_J2KI.dcm" "$TMP/pacs2/now/"
  /usr/bin/python3 -c "import sys; d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(d.replace(b'20040826', b'20030826'))" \
    "$DCM/cr_chest/RG1_J2KI.dcm" "$TMP/pacs2/before/old.dcm"
  "$CLI" study "$TMP/pacs2" > "$TMP/st2.txt" 2> "$TMP/e.txt"
  expect "study finds the prior" grep -q '^  prior: study 1 (20030826)' "$TMP/st2.txt"
  "$CLI" report "$TMP/pacs2" -m "$TMP/tiny.mgm" -n 2 --prior > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report --prior exits 0" test $? -eq 0
  expect "report --prior uses the prior's frontal view" grep -q "(with the prior study of 20030826: $TMP/pacs2/before/old.dcm)" "$TMP/o.txt"
  "$CLI" study "$TMP/missing" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "study on a missing folder exits 1" test $? -eq 1
  "$CLI" report "$TMP/ct3.nii.gz" -m "$TMP/tiny.mgm" -n 2 --slices 1 --sr "$TMP/sr2.dcm" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report --sr on NIfTI exits 1" test $? -eq 1
  expect "report --sr on NIfTI says why" grep -q 'needs DICOM input' "$TMP/e.txt"
  "$CLI" report "$TMP/ct3.nii.gz" "$S3/01.dcm" -m "$TMP/tiny.mgm" > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "a NIfTI file with another path exits 2" test $? -eq 2
  "$CLI" report "$S3" -m "$TMP/tiny.mgm" --ctx 40 > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "a volume too long for the context exits 1" test $? -eq 1
  expect "which says to ask for fewer slices" grep -q 'fewer slices' "$TMP/e.txt"
  expect "and prints nothing on stdout" test ! -s "$TMP/o.txt"
  "$CLI" report "$S3" -m "$TMP/tiny.mgm" --window bone > "$TMP/o.txt" 2> "$TMP/e.txt"
  expect "report --window bone exits 2" test $? -eq 2
fi

# prs predict: risks from a .sscore with a genomics model (mkmodel --genome).
"$CLI" mkmodel --shape tiny --genome 4,3 -o "$TMP/g43.mgm" 2>/dev/null
expect "mkmodel --genome exits 0" test $? -eq 0
{
  printf '#FID\tIID\tALLELE_CT'
  for s in AVG SUM; do for t in 0 1 2 3; do for c in 0 1 2; do printf '\tt%s_p%s_%s' $t $c $s; done; done; done
  printf '\n'
  for i in 1 2 3; do
    printf 'F%s\tI%s\t10' $i $i
    for k in $(seq 1 12); do printf '\t0'; done
    for k in $(seq 1 12); do printf '\t%s.%s' $((k % 3 - 1)) $((i * 7 + k)); done
    printf '\n'
  done
} > "$TMP/g.sscore"
"$CLI" prs predict --scores-in "$TMP/g.sscore" -m "$TMP/g43.mgm" --outcome "type 2 diabetes" \
  --outcome stroke --out "$TMP/g" > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "prs predict exits 0" test $? -eq 0
expect "prs predict prints nothing on stdout" test ! -s "$TMP/o.txt"
expect "prs predict header" sh -c "head -n 1 '$TMP/g.risk' | grep -q '^#FID	IID	type 2 diabetes	stroke\$'"
expect "prs predict: one row per individual, in order" \
  sh -c "cut -f 2 '$TMP/g.risk' | tail -n +2 | tr '\n' ' ' | grep -q '^I1 I2 I3 \$'"
expect "prs predict: risks in [0, 1]" \
  awk -F '\t' 'NR > 1 { for (i = 3; i <= NF; i++) if ($i < 0 || $i > 1) exit 1 } END { exit NR != 4 }' "$TMP/g.risk"
"$CLI" prs predict --scores-in "$TMP/g.sscore" -m "$TMP/g43.mgm" --out "$TMP/g2" > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "prs predict without --outcome exits 2" test $? -eq 2
"$CLI" prs predict --scores-in "$TMP/g.sscore" -m "$TMP/tiny.mgm" --outcome x --out "$TMP/g3" \
  > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "prs predict with a model without a genomics encoder exits 1" test $? -eq 1
expect "which it says" grep -q 'genomics encoder' "$TMP/e.txt"
expect "and leaves no .risk file" test ! -e "$TMP/g3.risk"
printf '#FID\tIID\tBMI_SUM\nF1\tI1\t0.5\n' > "$TMP/bmi.sscore"
"$CLI" prs predict --scores-in "$TMP/bmi.sscore" -m "$TMP/g43.mgm" --outcome x --out "$TMP/g4" \
  > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "prs predict with no score the model reads exits 1" test $? -eq 1
expect "which it says" grep -q 'none of the 1 scores' "$TMP/e.txt"
printf '#FID\tIID\tt0_p0_SUM\nF1\tI1\tzero\n' > "$TMP/bad.sscore"
"$CLI" prs predict --scores-in "$TMP/bad.sscore" -m "$TMP/g43.mgm" --outcome x --out "$TMP/g5" \
  > "$TMP/o.txt" 2> "$TMP/e.txt"
expect "a malformed .sscore exits 1 naming the line" grep -q 'line 2' "$TMP/e.txt"

# Saying what happened: every failure said on stderr, with the exit status
# of the convention (0 done, 1 error, 2 bad usage, 3 answer cut short by a
# full context, 130 stopped by Ctrl-C).
IMG=tests/data/vision/rgb.jpg
if [ -c /dev/full ]; then
  # output that cannot be written: exit 1 and the reason, once (only ever as
  # stdout or a file the tool itself writes: the library removes a file it
  # failed to write, which must never be the device)
  "$CLI" report "$IMG" -m "$TMP/tiny.mgm" -n 4 > /dev/full 2> "$TMP/e.err"
  expect "report > /dev/full exits 1" test $? -eq 1
  expect "report > /dev/full says why" grep -qx 'medgemini report: cannot write the output: No space left on device' "$TMP/e.err"
  "$CLI" vqa "$IMG" -q "Where?" -q "Why?" -m "$TMP/tiny.mgm" -n 4 > /dev/full 2> "$TMP/e.err"
  expect "vqa > /dev/full exits 1" test $? -eq 1
  expect "vqa > /dev/full says so once and stops" test "$(cat "$TMP/e.err")" = 'medgemini vqa: cannot write the output: No space left on device'
  "$CLI" generate -m "$TMP/tiny.mgm" -n 4 "Heart" > /dev/full 2> "$TMP/e.err"
  expect "generate > /dev/full exits 1" test $? -eq 1
  expect "generate > /dev/full says why" grep -q '^medgemini generate: cannot write the output: No space' "$TMP/e.err"
  "$CLI" info "$TMP/tiny.mgm" > /dev/full 2> "$TMP/e.err"
  expect "info > /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q '^medgemini info: cannot write the output: No space' '$TMP/e.err'"
  printf 'the heart\n' | "$CLI" tokenize -m "$TMP/tiny.mgm" > /dev/full 2> "$TMP/e.err"
  expect "tokenize > /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q '^medgemini tokenize: cannot write the output: No space' '$TMP/e.err'"
  "$CLI" --help > /dev/full 2> "$TMP/e.err"
  expect "--help > /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q '^medgemini help: cannot write the output' '$TMP/e.err'"
  "$CLI" image tests/data/images/gray.jpg -o /dev/full > /dev/null 2> "$TMP/e.err"
  expect "image -o /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q \"^medgemini image: cannot write '/dev/full': No space\" '$TMP/e.err'"
  "$CLI" report "$IMG" -m "$TMP/tiny.mgm" -n 2 --prompt-ids /dev/full > /dev/null 2> "$TMP/e.err"
  expect "report --prompt-ids /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q '^medgemini report: cannot write /dev/full: No space' '$TMP/e.err'"
  "$CLI" generate -m "$TMP/tiny.mgm" --ids 2,300 -n 1 --dump-logits /dev/full > /dev/null 2> "$TMP/e.err"
  expect "generate --dump-logits /dev/full exits 1 saying why" \
    sh -c "test $? -eq 1 && grep -q '^medgemini generate: cannot write /dev/full: No space' '$TMP/e.err'"
  expect "/dev/full is still the device" test -c /dev/full
fi
# answers cut short by a full context: each question still asked, exit 3
"$CLI" vqa "$IMG" -q "Where?" -q "Where?" -m "$TMP/tiny.mgm" -n 8 --ctx 72 > "$TMP/o.txt" 2> "$TMP/e.err"
expect "vqa: two answers cut short exit 3" test $? -eq 3
expect "vqa: both answers printed" test "$(grep -c '^A: .' "$TMP/o.txt")" -eq 2
expect "vqa: the first cut short is named" grep -q '^medgemini vqa: question 1 of 2: answer cut short: the context holds 72 tokens' "$TMP/e.err"
expect "vqa: the second too" grep -q '^medgemini vqa: question 2 of 2: answer cut short' "$TMP/e.err"
# cut short after its first token (the prompt fills 70 of 70), an answer is
# the answer limited to one token (here an incomplete UTF-8 byte: U+FFFD,
# which the library returns but does not stream; the tool prints it)
"$CLI" vqa "$IMG" -q "Where?" -m "$TMP/tiny.mgm" -n 1 > "$TMP/one.txt" 2> /dev/null
"$CLI" vqa "$IMG" -q "Where?" -m "$TMP/tiny.mgm" -n 8 --ctx 70 > "$TMP/o.txt" 2> "$TMP/e.err"
expect "vqa cut short after one token exits 3" test $? -eq 3
expect "... printing the one-token answer" cmp -s "$TMP/one.txt" "$TMP/o.txt"
expect "... which is not empty" test "$(wc -c < "$TMP/o.txt")" -gt 1
# a question whose prompt does not fit: exit 1, named, the run stops there
"$CLI" vqa "$IMG" -q "Where?" -q "Why?" -m "$TMP/tiny.mgm" -n 8 --ctx 60 > "$TMP/o.txt" 2> "$TMP/e.err"
expect "vqa: a prompt that does not fit exits 1" test $? -eq 1
expect "vqa: ... naming the question and the sizes" grep -q '^medgemini vqa: question 1 of 2: .*needs [0-9]* tokens; the context holds 60' "$TMP/e.err"
expect "vqa: ... and stops there" sh -c "! grep -q 'question 2' '$TMP/e.err'"
# chat: an answer cut short, then a message that no longer fits: exit 1, both said
printf 'Where?\nWhy?\n' | "$CLI" chat "$IMG" -m "$TMP/tiny.mgm" -n 8 --ctx 72 > "$TMP/o.txt" 2> "$TMP/e.err"
expect "chat: cut short then full exits 1" test $? -eq 1
expect "chat: the cut-short answer is said" grep -q '^medgemini chat: answer cut short: the context holds 72 tokens' "$TMP/e.err"
expect "chat: the message that does not fit is said" grep -q '^medgemini chat: .*need [0-9]* tokens; the context holds 72' "$TMP/e.err"
"$CLI" generate -m "$TMP/tiny.mgm" --ctx 100000 "x" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "--ctx above the model's exits 1" test $? -eq 1
expect "... with the library's reason" grep -q "^medgemini generate: cannot create a context: n_ctx 100000 is above the model's context length 512" "$TMP/e.err"
# Ctrl-C while generating: the answer so far on stdout, exit 130
if command -v python3 > /dev/null 2>&1; then
  cat > "$TMP/sigint.py" <<'PY'
import array, fcntl, os, signal, subprocess, sys, termios, time
# sigint.py OUT ERR CMD...: CMD's stdout into a 4 KiB pipe; SIGINT once the
# pipe is nearly full (CMD is then streaming an answer longer than the
# pipe, so it is still generating); the pipe drained into OUT; exits with
# CMD's exit status.
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
r, w = os.pipe()
fcntl.fcntl(r, 1031, 4096)  # F_SETPIPE_SZ
with open(err, "wb") as ef:
    p = subprocess.Popen(cmd, stdout=w, stderr=ef, stdin=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(w)
    n = array.array("i", [0])
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 600:
        fcntl.ioctl(r, termios.FIONREAD, n)
        if n[0] >= 3072:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    with open(out, "wb") as of:
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            of.write(b)
    sys.exit(p.wait())
PY
  # seed 6, greedy: about 10 bytes a token, 1000 tokens (more than the pipe holds)
  "$CLI" mkmodel --no-vision --layers 1 --context 1024 --seed 6 -o "$TMP/long.mgm" 2>/dev/null
  python3 "$TMP/sigint.py" "$TMP/o.txt" "$TMP/e.err" ${MG_RUNNER:-} "${real_cli:-$CLI}" \
    generate -m "$TMP/long.mgm" -n 1000 "x y z"
  expect "generate stopped by Ctrl-C exits 130" test $? -eq 130
  expect "... saying so" grep -qx 'medgemini generate: stopped: interrupted (the answer so far is above)' "$TMP/e.err"
  expect "... after printing the answer so far" test "$(wc -c < "$TMP/o.txt")" -ge 3072
else
  echo "cli: python3 absent; Ctrl-C not checked"
fi
# bad usage: exit 2 and what was wrong
"$CLI" generate -m "$TMP/tiny.mgm" --ctx abc "x" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "generate --ctx abc exits 2 saying why" \
  sh -c "test $? -eq 2 && grep -qx 'medgemini generate: bad value for --ctx: abc' '$TMP/e.err'"
"$CLI" report "$IMG" -m "$TMP/tiny.mgm" --frobnicate > "$TMP/o.txt" 2> "$TMP/e.err"
expect "report with an unknown option exits 2 saying why" \
  sh -c "test $? -eq 2 && grep -qx 'medgemini report: unknown option --frobnicate' '$TMP/e.err'"
"$CLI" vqa "$IMG" -m "$TMP/tiny.mgm" -q > "$TMP/o.txt" 2> "$TMP/e.err"
expect "vqa -q without a question exits 2 saying why" \
  sh -c "test $? -eq 2 && grep -qx 'medgemini vqa: -q needs a value' '$TMP/e.err'"
"$CLI" image "$IMG" --window 40 --info > "$TMP/o.txt" 2> "$TMP/e.err"
expect "image --window 40 exits 2 saying why" \
  sh -c "test $? -eq 2 && grep -qx 'medgemini image: --window wants C,W' '$TMP/e.err'"
"$CLI" prs score --bfile "$TMP/x" --score "$TMP/y" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "prs score without --out exits 2 with the usage" \
  sh -c "test $? -eq 2 && grep -q '^usage: medgemini prs score' '$TMP/e.err'"
expect "... and says nothing on stdout" test ! -s "$TMP/o.txt"
# missing or damaged models and inputs: exit 1, the file and the reason
"$CLI" report "$IMG" -m "$TMP/missing.mgm" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "report with a missing model exits 1" test $? -eq 1
expect "... naming it and why" grep -q "^medgemini report: .*missing.mgm: cannot open .*No such file or directory (input/output error)" "$TMP/e.err"
expect "... with nothing on stdout" test ! -s "$TMP/o.txt"
"$CLI" generate -m "$TMP/trunc.mgm" "x" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "generate with a truncated model exits 1" test $? -eq 1
expect "... saying it is truncated" grep -q '^medgemini generate: .*trunc.mgm: .*truncated.*(malformed model file)' "$TMP/e.err"
"$CLI" prs predict --scores-in "$TMP/x.sscore" -m "$TMP/trunc.mgm" --outcome a --out "$TMP/z" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "prs predict with a truncated model exits 1 saying why" \
  sh -c "test $? -eq 1 && grep -q '^medgemini prs predict: .*trunc.mgm: .*(malformed model file)' '$TMP/e.err'"
head -c 300 "$IMG" > "$TMP/trunc.jpg"
"$CLI" image "$TMP/trunc.jpg" --info > "$TMP/o.txt" 2> "$TMP/e.err"
expect "image of a truncated JPEG exits 1 saying why" \
  sh -c "test $? -eq 1 && grep -q '^medgemini image: .*trunc.jpg: JPEG: .*(malformed image)' '$TMP/e.err'"
"$CLI" report "$IMG" "$TMP/trunc.jpg" -m "$TMP/tiny.mgm" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "report with a truncated image exits 1" test $? -eq 1
expect "... naming it" grep -q '^medgemini report: .*trunc.jpg: JPEG: .*(malformed image)' "$TMP/e.err"
expect "... before any text" test ! -s "$TMP/o.txt"
"$CLI" prs score --bfile "$TMP/nope" --score "$TMP/y" --out "$TMP/y" > "$TMP/o.txt" 2> "$TMP/e.err"
expect "prs score of missing genotypes exits 1 saying why" \
  sh -c "test $? -eq 1 && grep -q '^medgemini prs: cannot open .*nope.fam' '$TMP/e.err'"
printf '2 300\n2 99999\n' | "$CLI" tokenize -m "$TMP/tiny.mgm" --decode > "$TMP/o.txt" 2> "$TMP/e.err"
expect "tokenize --decode of an id out of range exits 1" test $? -eq 1
expect "... naming the line" grep -q '^medgemini tokenize: line 2: invalid argument' "$TMP/e.err"
# several studies, one with a damaged image: the other is reported, the
# damaged one named, and the run exits 1 with a count
if [ -f "$DCM/cr_chest/RG1_J2KI.dcm" ]; then
  mkdir -p "$TMP/mixed/now" "$TMP/mixed/before"
  cp "$DCM/cr_chest/RG1_J2KI.dcm" "$TMP/mixed/now/"
  # a year earlier (another study), its JPEG 2000 codestream's first bytes gone
  /usr/bin/python3 -c "import sys; d=open(sys.argv[1],'rb').read().replace(b'20040826', b'20030826'); i=d.find(b'\xff\x4f\xff\x51'); open(sys.argv[2],'wb').write(d[:i]+bytes(64)+d[i+64:])" \
    "$DCM/cr_chest/RG1_J2KI.dcm" "$TMP/mixed/before/old.dcm"
  "$CLI" report "$TMP/mixed" -m "$TMP/tiny.mgm" -n 3 > "$TMP/o.txt" 2> "$TMP/e.err"
  expect "report over two studies, one damaged, exits 1" test $? -eq 1
  expect "... naming the study and the file" grep -q '^medgemini report: study 1 of 2 (.*20030826.*): .*old.dcm: JPEG 2000: .*(malformed image)' "$TMP/e.err"
  expect "... counting it" grep -qx 'medgemini report: 1 of 2 studies without a complete report' "$TMP/e.err"
  expect "... and still reports the other" test "$(sed -n '/^== study 2 of 2/{n;p;}' "$TMP/o.txt" | wc -c)" -gt 1
fi

rm -rf "$TMP"
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
