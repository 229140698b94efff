// Encodes and decodes texts with transformers.js's tokenizer for a local model folder.
// Usage: node tokenize.mjs TRANSFORMERS_JS_DIR MODEL_DIR < texts.json > out.json
//   texts.json: ["text", ...]; out.json: [{"ids": [...], "decoded": "..."}, ...]
// ids exclude special tokens (add_special_tokens: false); decoded skips them.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join, resolve, dirname, basename } from 'node:path';

const [tjsDir, modelDir] = process.argv.slice(2);
const tjs = await import(pathToFileURL(join(tjsDir, 'node_modules/@huggingface/transformers/dist/transformers.node.mjs')).href);
tjs.env.allowRemoteModels = false;
tjs.env.allowLocalModels = true;
tjs.env.localModelPath = dirname(resolve(modelDir)) + '/';
const tok = await tjs.AutoTokenizer.from_pretrained(basename(resolve(modelDir)));
const texts = JSON.parse(readFileSync(0, 'utf8'));
const out = texts.map((text) => {
  const ids = tok.encode(text, { add_special_tokens: false });
  // decode refuses an empty list; the text of no ids is "".
  return { ids, decoded: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : '' };
});
process.stdout.write(JSON.stringify(out));
