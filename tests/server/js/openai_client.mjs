// Drives iquest-serve's HTTP API with the official OpenAI Node client, as an application would,
// and prints what it got as one JSON object; tests/server/http_test.py compares it with the gRPC
// API's answers to the same requests.
// Usage: node openai_client.mjs BASE_URL MODEL API_KEY
import OpenAI from "openai";

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });

async function collectStream(stream) {
  const texts = {};
  const finish = {};
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      const piece = choice.delta ? (choice.delta.content ?? "") : (choice.text ?? "");
      texts[choice.index] = (texts[choice.index] ?? "") + piece;
      if (choice.finish_reason) finish[choice.index] = choice.finish_reason;
    }
  }
  return { texts, finish, usage };
}

const out = {};
const chatMessages = [{ role: "user", content: "def hello():" }];

const chat = await client.chat.completions.create({
  model, messages: chatMessages, max_tokens: 8, temperature: 0.9, seed: 11, n: 2,
  logprobs: true, top_logprobs: 2,
});
out.chat = {
  texts: chat.choices.map((c) => c.message.content),
  finish: chat.choices.map((c) => c.finish_reason),
  logprobs: chat.choices[0].logprobs.content.map((t) => [t.logprob, t.top_logprobs.length]),
  usage: chat.usage,
};

out.chat_stream = await collectStream(await client.chat.completions.create({
  model, messages: chatMessages, max_tokens: 8, temperature: 0.9, seed: 11, n: 2, stream: true,
  stream_options: { include_usage: true },
}));

const completion = await client.completions.create({
  model, prompt: "import os\n", max_tokens: 10, temperature: 0.7, seed: 5, stop: ["zz"],
  logprobs: 1,
});
out.completion = {
  text: completion.choices[0].text,
  finish: completion.choices[0].finish_reason,
  tokens: completion.choices[0].logprobs.tokens.length,
  usage: completion.usage,
};

out.completion_stream = await collectStream(await client.completions.create({
  model, prompt: "import os\n", max_tokens: 10, temperature: 0.7, seed: 5, stop: ["zz"],
  stream: true,
}));

out.models = (await client.models.list()).data.map((m) => m.id);

try {
  await client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 1 });
  out.unknown_model = "accepted";
} catch (e) {
  out.unknown_model = e.status;
}

console.log(JSON.stringify(out));
