// iquest-bench-spec: speculative decoding's figures (issue 20), side by side with the same
// engine decoding one token per step. For each batch size and workload, --repeats interleaved
// runs of: speculation off, prompt lookup (--speculative ngram, adaptive k), and, with
// --draft-model, draft-model speculation; the median decode tok/s of each, its ratio to "off",
// and the acceptance over all repeats (drafts accepted / verified, and tokens per verifying
// step). First, the cost of verifying k drafts: what bounds the speed-up.
//
// Workloads, from the demo model's own domain (Python source, models/demo/eval):
//  - edit: the prompt is a window of a held-out file, a blank line, and the window's first line
//    again: "write it back". Greedy.
//  - novel: a prompt of random tokens, sampled at temperature 1 (seeded): text that repeats
//    nothing, where prompt lookup finds little and what it finds is rejected.
// Figures only: nothing here is a pass/fail test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tools/decode_run.h"

namespace iquest {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Edit prompts: one per held-out file, cycling, each at most `max_prompt` tokens.
absl::StatusOr<std::vector<std::vector<int32_t>>> EditPrompts(const std::string& jsonl,
                                                              const Tokenizer& tokenizer,
                                                              int32_t bos, int64_t max_prompt) {
  std::ifstream in(jsonl);
  if (!in) return absl::NotFoundError("cannot read " + jsonl);
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json file = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!file.is_object() || !file.contains("text") || !file["text"].is_string()) continue;
    const std::string text = file["text"].get<std::string>();
    // Start at a function, as an agent editing code would show one.
    size_t start = text.find("\ndef ");
    if (start == std::string::npos) start = text.find("\n    def ");
    if (start == std::string::npos) continue;
    ++start;
    const size_t first_line_end = text.find('\n', start);
    if (first_line_end == std::string::npos) continue;
    const std::string first_line = text.substr(start, first_line_end + 1 - start);
    ASSIGN_OR_RETURN(std::vector<int32_t> head, tokenizer.Encode("\n\n" + first_line, false));
    // The longest window (in whole lines) that leaves room for the head.
    std::vector<int32_t> window;
    for (size_t end = first_line_end; end != std::string::npos; end = text.find('\n', end + 1)) {
      ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                       tokenizer.Encode(text.substr(start, end - start), false));
      if (static_cast<int64_t>(ids.size() + head.size()) + 1 > max_prompt) break;
      window = std::move(ids);
    }
    if (window.empty()) continue;
    std::vector<int32_t> prompt;
    if (bos >= 0) prompt.push_back(bos);
    prompt.insert(prompt.end(), window.begin(), window.end());
    prompt.insert(prompt.end(), head.begin(), head.end());
    prompts.push_back(std::move(prompt));
  }
  if (prompts.empty()) return absl::InvalidArgumentError(jsonl + " has no usable file");
  return prompts;
}

// The forward pass of one sequence verifying k drafts (1 + k query rows, logits for all, after
// `context` cached tokens), in microseconds: the median of `iters`. Its ratio to k = 0 is what a
// step that verifies k drafts costs; (1 + k) / ratio bounds the speed-up when all are accepted.
double VerifyMicros(LlamaModel& model, KvCache& cache, int64_t context, int64_t k, int iters) {
  const int64_t block_size = cache.block_size();
  std::vector<int32_t> table((context + k + block_size) / block_size);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(i);
  std::vector<double> micros;
  for (int it = 0; it < iters; ++it) {
    BatchBuilder builder(block_size);
    builder.AddSequence(std::vector<int32_t>(static_cast<size_t>(k + 1), 7), context, table,
                        LogitsWanted::kAll);
    const BatchInputs inputs = builder.Build();
    const auto start = std::chrono::steady_clock::now();
    if (!model.ForwardToDevice(inputs, cache).ok()) return 0;
    model.backend().Synchronize();
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  return Median(micros);
}

struct Mode {
  const char* name;
  SpeculationMethod method;
};

int Main(int argc, char** argv) {
  std::string model_dir = "models/demo", draft_dir, edit_file = "models/demo/eval/validation.jsonl";
  std::string batches = "1,8";
  int64_t max_tokens = 96, repeats = 5, num_speculative_tokens = 4, max_prompt_tokens = 512;
  bool adaptive = true;
  int64_t verify_iters = 20;
  BackendOptions backend_options;
  FlagParser flags("iquest-bench-spec",
                   "Speculative decoding vs one token per step: decode tok/s and acceptance.");
  flags.AddString("model", &model_dir, "target model folder (with its tokenizer)");
  flags.AddString("draft-model", &draft_dir, "also measure draft-model speculation with this");
  flags.AddString("edit-file", &edit_file,
                  "JSONL of {\"text\": source file} for the edit workload");
  flags.AddString("batches", &batches, "comma-separated batch sizes");
  flags.AddInt("max-tokens", &max_tokens, "tokens generated per request", 8, 4096);
  flags.AddInt("max-prompt-tokens", &max_prompt_tokens, "longest edit prompt", 16, 1 << 20);
  flags.AddInt("repeats", &repeats, "interleaved runs per figure (the median is printed)", 1, 50);
  flags.AddInt("num-speculative-tokens", &num_speculative_tokens, "K", 1,
               SpeculationConfig::kMaxSpeculativeTokens);
  flags.AddInt("verify-iters", &verify_iters, "forward passes per verification-cost figure", 1,
               10000);
  flags.AddBool("adaptive", &adaptive, "adaptive k (false: always K drafts when proposed)");
  RegisterBackendFlags(flags, &backend_options);
  ParseFlagsOrExit(flags, argc, argv);
  SetMinLogLevel(LogLevel::kWarning);
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  };
  auto backend = MakeBackend(Device::kCpu, backend_options);
  if (!backend.ok()) return fail(backend.status());
  auto model = LlamaModel::Load(model_dir, **backend);
  if (!model.ok()) return fail(model.status());
  std::unique_ptr<LlamaModel> draft;
  if (!draft_dir.empty()) {
    auto loaded = LlamaModel::Load(draft_dir, **backend);
    if (!loaded.ok()) return fail(loaded.status());
    draft = std::move(*loaded);
  }
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return fail(tokenizer.status());
  const ModelConfig& config = (*model)->config();
  const int64_t max_prompt = std::min<int64_t>(
      max_prompt_tokens, std::min<int64_t>(config.max_context_len, 4096) - max_tokens);
  auto edits = EditPrompts(edit_file, **tokenizer, config.bos_token_id, max_prompt);
  if (!edits.ok()) return fail(edits.status());

  {
    KvCacheConfig kv;
    kv.block_size = 16;
    kv.num_blocks = (max_prompt + 64) / 16 + 2;
    kv.dtype = (*backend)->preferred_kv_dtype();
    auto cache = KvCache::Create(**backend, config, kv);
    if (!cache.ok()) return fail(cache.status());
    const int64_t context = std::min<int64_t>(max_prompt, 200);
    const int iters = verify_iters;
    std::printf("forward of one sequence verifying k drafts after %lld tokens (median of %d):\n",
                static_cast<long long>(context), iters);
    const double base = VerifyMicros(**model, **cache, context, 0, iters);
    for (int64_t k = 0; k <= num_speculative_tokens; ++k) {
      const double us = k == 0 ? base : VerifyMicros(**model, **cache, context, k, iters);
      std::printf("  k %2lld: %9.0f us  %5.2fx of k 0; all accepted: %.2f tokens per k-0 step\n",
                  static_cast<long long>(k), us, us / base, static_cast<double>(k + 1) * base / us);
    }
  }
  std::vector<Mode> modes = {{"off", SpeculationMethod::kNone},
                             {"ngram", SpeculationMethod::kNgram}};
  if (draft != nullptr) modes.push_back({"draft", SpeculationMethod::kDraft});
  std::printf("model %s, %lld tokens per request, K %lld, %lld threads, median of %lld\n",
              model_dir.c_str(), static_cast<long long>(max_tokens),
              static_cast<long long>(num_speculative_tokens),
              static_cast<long long>(backend_options.num_threads), static_cast<long long>(repeats));
  // ratio: of the batch's tok/s (first first token to last finish); req: of the mean request's
  // own rate. verified: drafts verified per generated token, over all repeats.
  std::printf("%-6s %5s %-6s %10s %7s %7s %9s %9s %9s\n", "work", "batch", "mode", "tok/s", "ratio",
              "req", "accepted", "tok/step", "verified");
  std::vector<int32_t> batch_sizes;
  if (!ParseIntList(batches, 1, 4096, &batch_sizes).ok()) return 2;
  for (const int32_t batch_size : batch_sizes) {
    const int batch = static_cast<int>(batch_size);
    for (const char* workload : {"edit", "novel"}) {
      const bool edit = std::string(workload) == "edit";
      auto configure = [&](int i, GenerationRequest& r) {
        if (edit) {
          r.prompt_token_ids = (*edits)[static_cast<size_t>(i) % edits->size()];
          return;
        }
        std::mt19937 random(static_cast<uint32_t>(i + 1));
        r.prompt_token_ids.assign(48, 0);
        for (int32_t& t : r.prompt_token_ids)
          t = static_cast<int32_t>(3 + random() % (config.vocab_size - 3));
        r.sampling.temperature = 1.0f;
        r.sampling.seed = static_cast<uint64_t>(i);
      };
      std::vector<std::vector<double>> rates(modes.size()), request_rates(modes.size());
      std::vector<SpecDecodeCounters> counters(modes.size());
      for (int64_t rep = 0; rep < repeats; ++rep) {
        for (size_t m = 0; m < modes.size(); ++m) {
          absl::StatusOr<DecodeRun> run =
              RunDecode(**model, batch, static_cast<int>(max_tokens), true, configure,
                        [&](EngineConfig& engine) {
                          engine.speculation.method = modes[m].method;
                          engine.speculation.num_speculative_tokens =
                              static_cast<int32_t>(num_speculative_tokens);
                          engine.speculation.adaptive = adaptive;
                          engine.draft_model = draft.get();
                          engine.draft_kv_cache = engine.kv_cache;
                        });
          if (!run.ok()) return fail(run.status());
          rates[m].push_back(run->tok_s);
          request_rates[m].push_back(run->mean_request_tok_s);
          counters[m].num_drafts += run->spec.num_drafts;
          counters[m].num_draft_tokens += run->spec.num_draft_tokens;
          counters[m].num_accepted_tokens += run->spec.num_accepted_tokens;
        }
      }
      for (size_t m = 0; m < modes.size(); ++m) {
        const SpecDecodeCounters& c = counters[m];
        // Each repeat ran the modes back to back: the ratio is the median of those pairs',
        // which the machine's drift between repeats does not move.
        std::vector<double> ratios, request_ratios;
        for (size_t r = 0; r < rates[m].size(); ++r) {
          ratios.push_back(rates[m][r] / rates[0][r]);
          request_ratios.push_back(request_rates[m][r] / request_rates[0][r]);
        }
        std::printf("%-6s %5d %-6s %10.1f %6.2fx %6.2fx", workload, batch, modes[m].name,
                    Median(rates[m]), Median(ratios), Median(request_ratios));
        if (m == 0) {
          std::printf("\n");
          continue;
        }
        std::printf(" %8.1f%% %9.2f %9.3f   runs:",
                    c.num_draft_tokens == 0 ? 0.0
                                            : 100.0 * static_cast<double>(c.num_accepted_tokens) /
                                                  static_cast<double>(c.num_draft_tokens),
                    c.num_drafts == 0 ? 0.0
                                      : 1.0 + static_cast<double>(c.num_accepted_tokens) /
                                                  static_cast<double>(c.num_drafts),
                    static_cast<double>(c.num_draft_tokens) /
                        static_cast<double>(repeats * batch * max_tokens));
        for (double r : rates[m]) std::printf(" %.0f", r);
        std::printf("  (off:");
        for (double r : rates[0]) std::printf(" %.0f", r);
        std::printf(")\n");
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) { return iquest::Main(argc, argv); }
