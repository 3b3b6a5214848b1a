// Builds the tokenizer parity corpus: >= 2,000 lines, deterministic (seeded), each line one
// JSON string as raw bytes (a few lines deliberately hold invalid UTF-8 bytes).
import { Buffer } from "node:buffer";

function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CODE = [
  `#include <vector>\nint main(int argc, char** argv) {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n  return v.size() > 2 ? 0 : 1;\n}\n`,
  `def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n`,
  `const add = (a, b) => a + b;\nexport default function App() {\n  return <div className="app">{add(1, 2)}</div>;\n}\n`,
  `fn main() {\n    let xs: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    println!("{:?}", xs);\n}\n`,
  `package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello, 世界")\n}\n`,
  `public class Hello {\n    public static void main(String[] args) {\n        System.out.println("Hi!");\n    }\n}\n`,
  `SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100.50 GROUP BY u.id;`,
  `<!DOCTYPE html>\n<html><head><title>Test &amp; more</title></head>\n<body><p class='x'>Hello</p></body></html>`,
  `#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l "$f" | awk '{print $1}'\ndone\n`,
  `{"name": "iquest", "version": "0.1.0", "deps": {"a": [1, 2, 3]}, "ok": true, "none": null}`,
  `    if (x != y && z >= 0x1F) { return -1; }  // comment with trailing spaces   `,
  `\t\tdef __init__(self, *args, **kwargs):\r\n\t\t\tsuper().__init__(*args, **kwargs)\r\n`,
  `matrix = [[1,2,3],[4,5,6]]; print(sum(map(sum, matrix)))  # => 21`,
  `let re = /^(?:[a-z0-9!#$%&'*+/=?^_\`{|}~-]+)@example\\.com$/i;`,
  `x = 1_000_000 + 3.14159e-10 - 0b1010 + 0o17 + 0xDEADBEEF`,
];

const PROSE = [
  "The quick brown fox jumps over the lazy dog.",
  "I'm sure you'll agree: we've done it, they're here, and it's fine. DON'T PANIC, I'LL BE BACK, she'D say.",
  "Hello , world ! How are you ? I 'm fine , thanks . Isn 't it great ?",
  "It 's a ' quoted ' word and do n't forget they 're , we 've .",
  "Ünïcödé façade naïve coöperate résumé — “quotes” and ‘single’ … ellipsis",
  "Numbers: 0 7 42 123 1234 12345 1234567890 3.14159 -2.5e10 1,000,000 2024-01-31 12:34:56",
  "Mixed:abc123def456 x1y2z3 v2.0.1-beta+exp.sha.5114f85",
];

const UNICODE = [
  "日本語のテキストです。東京は大きい都市です。",
  "中文文本：你好，世界！这是一个测试。",
  "한국어 텍스트입니다. 안녕하세요!",
  "Ελληνικά: Γειά σου Κόσμε. Русский: Привет, мир!",
  "العربية: مرحبا بالعالم. עברית: שלום עולם.",
  "हिन्दी: नमस्ते दुनिया। ไทย: สวัสดีชาวโลก",
  "Emoji: 😀😃😄 🤖🚀 ❤️ 👍🏽 🇫🇷🇯🇵",
  "ZWJ: 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑‍🤝‍🧑 👁️‍🗨️",
  "Combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0351\u0346\u034b\u036d\u0300a\u0310l\u0357g\u0351o",
  "Decomposed vs composed: \u00e9 e\u0301 \u00c5 A\u030a \u1e9b\u0323",
  "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ∞; √2 ≈ 1.41421; ½ ¾ ⅓ Ⅻ ①②③ ٣٤٥ ४५६",
  "Spaces: a\u00a0b\u2003c\u3000d\u200be\ufeff f\u2028g\u2029h",
  "Symbols: © ® ™ § ¶ † ‡ • ° ± × ÷ ← → ↑ ↓ ⇒ ♠ ♣ ♥ ♦ ☃ ★",
  "Astral: 𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁 𓀀 🀄",
];

const SPECIALS = [
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
  "<s>[INST] What is 2+2? [/INST] 4 </s>",
  "<s><s></s></s><unk> <s> x</s>",
  "<|endoftext|><|endoftext|>text<|endoftext|>",
  "<|im_start|><|im_end|><|im_sta <|im_end <|fim_prefix|>def f():<|fim_suffix|>pass<|fim_middle|>",
  "<think>\nreasoning\n</think>\n\nanswer <tool_call>{\"name\": \"f\"}</tool_call>",
  "<|reserved_special_token_5|> and <|finetune_right_pad_id|>",
];

const INVALID = [
  [0x61, 0xc3, 0x28, 0x62],
  [0xc0, 0xaf, 0x20, 0x41],
  [0xed, 0xa0, 0x80, 0x20, 0x78],
  [0xe2, 0x82, 0x20, 0x79],
  [0xf0, 0x9f, 0x98, 0x21],
  [0xff, 0xfe, 0xfd, 0x7a],
  [0x68, 0x69, 0xf4, 0x90, 0x80, 0x80],
  [0x80, 0x80, 0x80],
  [0xe4, 0xbd],
];

function randomChoice(rng, list) {
  return list[Math.floor(rng() * list.length)];
}

// Random text from a mix of alphabets, punctuation, digits and whitespace: this is what finds
// differences between regex engines.
function randomLine(rng) {
  const pools = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    " \t\n\r  ",
    ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
    "éüñçøåßœÆ",
    "日本語中文한국어",
    "αβγδεЖЗИЙ",
    "\u0301\u0308\u200d\ufe0f",
    "😀🤖👍🏽🇫🇷",
    "'s 're 've 'll 'd 'm 't",
    "\u00a0\u3000\u2003\u205f",
    "²³¹⁴½Ⅻ٣४",
  ];
  const length = 1 + Math.floor(rng() * 60);
  let out = "";
  for (let i = 0; i < length; ++i) {
    const pool = Array.from(randomChoice(rng, pools));
    out += randomChoice(rng, pool);
  }
  return out;
}

// Returns an array of Buffers (one per line, no newline), each a JSON string's bytes.
export function buildCorpus() {
  const rng = mulberry32(20260128);
  const strings = [];
  for (const code of CODE) {
    strings.push(code);
    for (const line of code.split("\n")) strings.push(line);
  }
  for (const group of [PROSE, UNICODE, SPECIALS]) {
    for (const text of group) {
      strings.push(text, " " + text, text + "\n", text.toUpperCase(), text.toLowerCase());
    }
  }
  strings.push("", " ", "  ", "\n", "\r\n", "\t", "a", "'", "'s", "0", "00", "000", "0000");
  for (const n of [1, 2, 3, 5, 8, 16, 17, 64, 200, 1000]) {
    strings.push(" ".repeat(n), "\t".repeat(n), "\n".repeat(n), " \n".repeat(n),
                 "x" + " ".repeat(n) + "y", "9".repeat(n), "ab".repeat(n), "a.".repeat(n),
                 " ".repeat(n) + "\n", "\u3000".repeat(n));
  }
  for (let i = 0; i < 300; ++i) {
    strings.push(`${Math.floor(rng() * 1e9)} ${(rng() * 1000).toFixed(3)} ${i}`);
  }
  while (strings.length < 2100) strings.push(randomLine(rng));
  const lines = strings.map((s) => Buffer.from(JSON.stringify(s), "utf8"));
  for (const bytes of INVALID) {
    // Raw invalid bytes inside the JSON string: ["a<bad>b"].
    lines.push(Buffer.concat([Buffer.from('"x '), Buffer.from(bytes), Buffer.from(' y"')]));
  }
  return lines;
}
