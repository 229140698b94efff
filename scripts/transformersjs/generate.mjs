// Generates greedily with transformers.js from a local model folder, on the CPU, local files only.
// Usage: node generate.mjs TRANSFORMERS_JS_DIR MODEL_DIR PROMPT MAX_NEW_TOKENS [ignore-eos|stop] [THREADS] [spin|nospin] > out.json
//   PROMPT "ids:1,403" feeds those ids as they are (no tokenizer needed); ignore-eos generates
//   MAX_NEW_TOKENS whatever comes (the benchmark's fixed length); THREADS > 0 sets onnxruntime's
//   intra-op threads (as shears --threads does); nospin turns onnxruntime's busy-waiting of idle
//   threads off (as shears' sessions do), spin (the default) keeps onnxruntime-node's default.
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
const rawIDs = prompt.startsWith('ids:');
const tok = rawIDs ? null : await tjs.AutoTokenizer.from_pretrained(name);
const threads = Number(process.argv[7] ?? 0);
const session_options = threads > 0 ? { intraOpNumThreads: threads } : {};
if (process.argv[8] === 'nospin') session_options.extra = { session: { intra_op: { allow_spinning: '0' } } };
const model = await tjs.AutoModelForCausalLM.from_pretrained(name, { device: 'cpu', dtype: 'fp32', session_options });
const t1 = performance.now();
let inputs;
if (rawIDs) {
  const ids = prompt.slice(4).split(',').map((x) => BigInt(x));
  inputs = { input_ids: new tjs.Tensor('int64', BigInt64Array.from(ids), [1, ids.length]),
    attention_mask: new tjs.Tensor('int64', BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]) };
} else {
  inputs = tok(prompt);
}
const opts = { ...inputs, max_new_tokens: Number(maxNew), do_sample: false, num_beams: 1 };
if (process.argv[6] === 'ignore-eos') opts.eos_token_id = null;
const out = await model.generate(opts);
const t2 = performance.now();
const promptIDs = Array.from(inputs.input_ids.data, Number);
const all = Array.from(out.data, Number);
const ids = all.slice(promptIDs.length);
process.stdout.write(JSON.stringify({ ids, prompt_ids: promptIDs, text: tok && ids.length ? tok.decode(ids, { skip_special_tokens: true }) : '',
  load_ms: t1 - t0, generate_ms: t2 - t1 }));
