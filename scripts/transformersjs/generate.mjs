// Generates greedily with transformers.js from a local model folder, on the CPU, local files only.
// Usage: node generate.mjs TRANSFORMERS_JS_DIR MODEL_DIR PROMPT MAX_NEW_TOKENS > out.json
//   out.json: {"ids": [...generated ids, prompt excluded...], "prompt_ids": [...], "text": "...",
//              "load_ms": N, "generate_ms": N}
// The prompt is encoded with the folder's tokenizer (BOS added as tokenizer_config.json says).
import { pathToFileURL } from 'node:url';
import { join, resolve, dirname, basename } from 'node:path';

const [tjsDir, modelDir, prompt, maxNew] = process.argv.slice(2);
const t0 = performance.now();
const tjs = await import(pathToFileURL(join(tjsDir, 'node_modules/@huggingface/transformers/dist/transformers.node.mjs')).href);
tjs.env.allowRemoteModels = false;
tjs.env.allowLocalModels = true;
tjs.env.localModelPath = dirname(resolve(modelDir)) + '/';
const name = basename(resolve(modelDir));
const tok = await tjs.AutoTokenizer.from_pretrained(name);
const model = await tjs.AutoModelForCausalLM.from_pretrained(name, { device: 'cpu', dtype: 'fp32' });
const t1 = performance.now();
const inputs = tok(prompt);
const out = await model.generate({ ...inputs, max_new_tokens: Number(maxNew), do_sample: false, num_beams: 1 });
const t2 = performance.now();
const promptIDs = Array.from(inputs.input_ids.data, Number);
const all = Array.from(out.data, Number);
const ids = all.slice(promptIDs.length);
process.stdout.write(JSON.stringify({ ids, prompt_ids: promptIDs, text: tok.decode(ids, { skip_special_tokens: true }),
  load_ms: t1 - t0, generate_ms: t2 - t1 }));
