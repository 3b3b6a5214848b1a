// iquest-bench-grammar: structured-output figures over a real tokenizer's vocabulary (issue 24):
//  1. Compile time of 20 JSON schemas (CompileConstraint + the matcher over the vocabulary).
//  2. Mask time per token: for each schema a document of its language (drawn at random over
//     printable ASCII, then tokenized by the real tokenizer, as a model would write it) is
//     walked token by token; each step's GrammarMatcher::Mask is timed. The first walk starts
//     from a freshly compiled grammar (cold DFA and mask cache), the second reuses it (warm), as
//     a second request with the same schema would. One thread.
//  3. Decode throughput at --batch requests through the real engine on a random model with the
//     tokenizer's vocabulary: unconstrained (backend sampling), unconstrained with every row
//     sampled on the host, and every request under a JSON schema. Temperature 1.
// Figures only: nothing here is a pass/fail test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/engine.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/llama.h"
#include "model/tokenizer/tokenizer.h"
#include "structured/constraint.h"
#include "structured/tokenizer_vocabulary.h"
#include "tools/decode_run.h"

namespace iquest {
namespace {

using Seconds = std::chrono::duration<double>;

// Twenty schemas of the kinds agents send: tool arguments, records, nested lists, enums.
const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]})",
    R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]}},"required":["city"]})",
    R"({"type":"array","items":{"type":"integer","minimum":0,"maximum":1000},"maxItems":20})",
    R"({"type":"object","properties":{"query":{"type":"string","maxLength":200},"limit":{"type":"integer","minimum":1,"maximum":50}},"required":["query"]})",
    R"({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"},"overwrite":{"type":"boolean"}},"required":["path","content"]})",
    R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"created":{"type":"string","format":"date-time"}},"required":["id","created"]})",
    R"({"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","pattern":"[A-Z]{3}-[0-9]{4}"},"qty":{"type":"integer","minimum":1}},"required":["sku","qty"]}}},"required":["items"]})",
    R"({"anyOf":[{"type":"object","properties":{"ok":{"const":true},"value":{"type":"number"}},"required":["ok","value"]},{"type":"object","properties":{"ok":{"const":false},"error":{"type":"string"}},"required":["ok","error"]}]})",
    R"({"type":"object","properties":{"title":{"type":"string","minLength":1,"maxLength":80},"tags":{"type":"array","items":{"type":"string"},"uniqueItems":false,"maxItems":8},"draft":{"type":"boolean"}},"required":["title"]})",
    R"({"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["name"]}},"$ref":"#/$defs/node"})",
    R"({"type":"object","properties":{"lat":{"type":"number","minimum":-90,"maximum":90},"lon":{"type":"number","minimum":-180,"maximum":180}},"required":["lat","lon"]})",
    R"({"type":"object","properties":{"language":{"enum":["python","c++","rust","go","java","typescript"]},"code":{"type":"string"}},"required":["language","code"]})",
    R"({"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"thought":{"type":"string"},"action":{"type":"string"}},"required":["thought","action"]},"minItems":1}},"required":["steps"]})",
    R"({"type":"object","properties":{"ip":{"type":"string","format":"ipv4"},"port":{"type":"integer","minimum":1,"maximum":65535}},"required":["ip","port"]})",
    R"({"type":"object","properties":{"a":{"type":["string","null"]},"b":{"type":["integer","null"]},"c":{"type":["boolean","null"]}},"required":["a","b","c"]})",
    R"({"type":"object","properties":{"matrix":{"type":"array","items":{"type":"array","items":{"type":"number"}}}},"required":["matrix"]})",
    R"({"type":"object","properties":{"date":{"type":"string","format":"date"},"amount":{"type":"number","exclusiveMinimum":0},"currency":{"enum":["USD","EUR","CNY"]}},"required":["date","amount","currency"]})",
    R"({"type":"object","properties":{"meta":{"type":"object","properties":{"version":{"type":"integer"},"author":{"type":"string"}}},"body":{"type":"string"}},"required":["body"]})",
    R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"},{"type":"boolean"}],"items":false})",
    R"({"type":"object","properties":{"function":{"const":"search"},"arguments":{"type":"object","properties":{"q":{"type":"string"},"page":{"type":"integer","minimum":1}},"required":["q"]}},"required":["function","arguments"]})",
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// A document of `matcher`'s language over single bytes, preferring printable ASCII (as model
// text mostly is); it stops at an accepting state with probability 0.2 per step.
std::string DrawDocument(GrammarMatcher& matcher, std::mt19937& rng) {
  std::string text;
  GrammarState state = matcher.initial();
  std::vector<int32_t> printable, any;
  for (int step = 0; step < 4000 && !state.complete(); ++step) {
    if (state.accepting() && std::uniform_real_distribution<>(0, 1)(rng) < 0.2) break;
    const auto mask = matcher.Mask(state);
    printable.clear();
    any.clear();
    for (int32_t b = 0; b < 256; ++b) {
      if (!MaskAllows(*mask, b)) continue;
      any.push_back(b);
      if (b >= 0x20 && b < 0x7f) printable.push_back(b);
    }
    const std::vector<int32_t>& from = printable.empty() ? any : printable;
    if (from.empty()) break;
    const int32_t b = from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
    matcher.Advance(state, b);
    text.push_back(static_cast<char>(b));
  }
  return text;
}

std::shared_ptr<const TokenVocabulary> ByteVocabulary() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  return std::make_shared<TokenVocabulary>(bytes, std::vector<bool>(256, false));
}

ConstraintSpec SchemaSpec(const char* schema) {
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kJsonSchema;
  spec.text = schema;
  return spec;
}

absl::StatusOr<std::shared_ptr<GrammarMatcher>> CompileOver(
    const ConstraintSpec& spec, std::shared_ptr<const TokenVocabulary> vocabulary) {
  absl::StatusOr<Grammar> grammar = CompileConstraint(spec, GrammarLimits());
  if (!grammar.ok()) return grammar.status();
  return std::make_shared<GrammarMatcher>(*std::move(grammar), std::move(vocabulary));
}

int CompileAndMaskFigures(const Tokenizer& tokenizer,
                          const std::shared_ptr<const TokenVocabulary>& vocabulary) {
  std::printf("vocabulary: %d tokens, %d trie nodes, longest token %d bytes\n\n",
              vocabulary->vocab_size(), vocabulary->num_nodes(), vocabulary->max_depth());
  std::vector<double> compile_ms, cold_us, warm_us;
  int64_t tokens = 0, hits = 0, computed = 0;
  std::mt19937 rng(42);
  const auto bytes = ByteVocabulary();
  std::printf("%-3s %10s %8s %12s %12s\n", "#", "compile_ms", "tokens", "cold_p50_us",
              "cold_max_us");
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const ConstraintSpec spec = SchemaSpec(kSchemas[i]);
    const auto start = std::chrono::steady_clock::now();
    auto matcher = CompileOver(spec, vocabulary);
    compile_ms.push_back(Seconds(std::chrono::steady_clock::now() - start).count() * 1e3);
    if (!matcher.ok()) {
      std::fprintf(stderr, "schema %zu: %s\n", i, matcher.status().ToString().c_str());
      return 1;
    }
    auto drawer = CompileOver(spec, bytes);
    const std::string document = DrawDocument(**drawer, rng);
    EncodeOptions options;
    options.add_special_tokens = false;
    options.parse_special_tokens = false;
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(document, options);
    if (!ids.ok()) return 1;
    std::vector<double> this_cold;
    for (int pass = 0; pass < 2; ++pass) {
      GrammarState state = (*matcher)->initial();
      for (int32_t id : *ids) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto mask = (*matcher)->Mask(state);
        const double us = Seconds(std::chrono::steady_clock::now() - t0).count() * 1e6;
        (pass == 0 ? this_cold : warm_us).push_back(us);
        if (!MaskAllows(*mask, id) || !(*matcher)->Advance(state, id)) {
          std::fprintf(stderr, "schema %zu: token %d of the document not allowed\n", i, id);
          return 1;
        }
      }
    }
    const GrammarMatcherStats stats = (*matcher)->stats();
    hits += stats.num_mask_cache_hits;
    computed += stats.num_masks_computed;
    tokens += static_cast<int64_t>(ids->size());
    std::printf("%-3zu %10.2f %8zu %12.1f %12.1f\n", i, compile_ms.back(), ids->size(),
                Percentile(this_cold, 0.5), Percentile(this_cold, 1.0));
    cold_us.insert(cold_us.end(), this_cold.begin(), this_cold.end());
  }
  double total_ms = 0;
  for (double ms : compile_ms) total_ms += ms;
  std::printf("\ncompile: %zu schemas, total %.1f ms, p50 %.2f ms, max %.2f ms\n",
              compile_ms.size(), total_ms, Percentile(compile_ms, 0.5),
              Percentile(compile_ms, 1.0));
  std::printf("mask per token, cold grammar (%lld tokens): p50 %.1f us, p99 %.1f us, max %.1f us\n",
              static_cast<long long>(tokens), Percentile(cold_us, 0.5), Percentile(cold_us, 0.99),
              Percentile(cold_us, 1.0));
  std::printf("mask per token, warm grammar: p50 %.2f us, p99 %.2f us, max %.2f us\n",
              Percentile(warm_us, 0.5), Percentile(warm_us, 0.99), Percentile(warm_us, 1.0));
  std::printf("masks computed %lld, served from the cache %lld\n\n",
              static_cast<long long>(computed), static_cast<long long>(hits));
  return 0;
}

int DecodeFigures(const std::shared_ptr<const TokenVocabulary>& vocabulary,
                  const BackendOptions& options, int batch, int decode_tokens, int hidden) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(Device::kCpu, options);
  if (!backend.ok()) return 1;
  ModelConfig c;
  c.architecture_name = "LlamaForCausalLM";
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = hidden / 4;
  c.vocab_size = vocabulary->vocab_size();
  c.max_context_len = 2048;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  auto model = LlamaModel::CreateRandom(c, DType::kBF16, 7, **backend);
  if (!model.ok()) return 1;
  // Never finishes within the run: every request stays in the batch for all its tokens.
  ConstraintSpec spec = SchemaSpec(
      R"({"type":"array","minItems":1000,"items":{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string","maxLength":12},"tags":{"type":"array","items":{"enum":["a","b","c"]}}},"required":["id","name","tags"]}})");
  auto grammar = CompileOver(spec, vocabulary);
  if (!grammar.ok()) return 1;
  std::printf(
      "decode, batch %d, %d tokens each, random model (hidden %d, vocab %d), "
      "temperature 1:\n",
      batch, decode_tokens, hidden, static_cast<int>(c.vocab_size));
  struct Run {
    const char* name;
    bool backend_sampling;
    bool constrained;
  };
  double baseline = 0;
  for (const Run& run :
       {Run{"unconstrained", true, false}, Run{"unconstrained, host sampling", false, false},
        Run{"json_schema on every request", true, true}}) {
    std::vector<double> rates;
    for (int rep = 0; rep < 3; ++rep) {
      // A fresh matcher each repeat would re-measure the cold DFA; the shared one is what a
      // server holds for a repeated schema.
      absl::StatusOr<DecodeRun> result = RunDecode(
          **model, batch, decode_tokens, run.backend_sampling, [&](int i, GenerationRequest& r) {
            for (int t = 0; t < 16; ++t) r.prompt_token_ids[t] = (i * 31 + t * 7 + 1) % 1000;
            r.sampling.temperature = 1.0f;
            r.sampling.seed = static_cast<uint64_t>(i);
            r.sampling.grammar = run.constrained ? *grammar : nullptr;
          });
      if (!result.ok()) {
        std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
        return 1;
      }
      rates.push_back(result->tok_s);
    }
    const double median = Percentile(rates, 0.5);
    if (baseline == 0) baseline = median;
    std::printf("  %-32s %9.1f tok/s  (%.3fx)\n", run.name, median, median / baseline);
  }
  return 0;
}

int Main(int argc, char** argv) {
  std::string tokenizer_dir;
  int64_t batch = 16, decode_tokens = 128, hidden = 256;
  BackendOptions backend_options;
  FlagParser flags("iquest-bench-grammar",
                   "Structured output: compile time, mask time per token, constrained decode.");
  flags.AddString("tokenizer", &tokenizer_dir, "folder with tokenizer.json (e.g. Llama-3's)");
  flags.AddInt("batch", &batch, "decode batch size", 1, 256);
  flags.AddInt("decode-tokens", &decode_tokens, "tokens per request in the decode figure", 2, 1500);
  flags.AddInt("hidden", &hidden, "hidden size of the random decode model", 64, 4096);
  RegisterBackendFlags(flags, &backend_options);
  ParseFlagsOrExit(flags, argc, argv);
  SetMinLogLevel(LogLevel::kWarning);
  auto tokenizer = Tokenizer::Load(tokenizer_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  const auto vocabulary = BuildTokenVocabulary(**tokenizer, (*tokenizer)->vocab_size());
  if (int rc = CompileAndMaskFigures(**tokenizer, vocabulary); rc != 0) return rc;
  return DecodeFigures(vocabulary, backend_options, static_cast<int>(batch),
                       static_cast<int>(decode_tokens), static_cast<int>(hidden));
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) { return iquest::Main(argc, argv); }
