// iquest-bench-engine: engine figures on one model folder, llama-bench style.
//  1. Step overhead: Scheduler::Schedule + building BatchInputs + Scheduler::Update with N
//     running requests and no forward pass (the bookkeeping a step costs beyond the model).
//  2. Prefill: one forward pass over a --prefill-tokens prompt in one batch (llama-bench's pp).
//  3. Decode throughput at several batch sizes through the real engine (prompt 16 tokens,
//     greedy, EOS ignored, --decode-tokens generated per request; batch 1 is llama-bench's tg),
//     as generated tokens per second of decode time.
// Each figure is measured --repeats times after one warm-up and reported as min/median/max.
// --shape=llama3-8b|iquest-40b|iquest-40b-loop builds a model of that shape with random weights
// made on the backend itself (--device=cuda: on the GPU; DESIGN.md section 12), instead of loading
// --model; the batch-1 figure is then also given as weight bytes read per second.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/engine.h"
#include "kernels/backend.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "tools/decode_run.h"

namespace iquest {
namespace {

using Seconds = std::chrono::duration<double>;

double StepOverheadMicros(int64_t num_requests, int64_t num_steps) {
  SchedulerConfig config;
  config.max_num_seqs = num_requests;
  config.max_num_batched_tokens = 64 * num_requests;
  config.max_waiting_requests = num_requests;
  config.max_model_len = 4096;
  const int64_t block_size = 16;
  Scheduler scheduler(config, /*num_blocks=*/num_requests * 40, block_size);
  for (int64_t i = 0; i < num_requests; ++i) {
    auto r = std::make_unique<Request>();
    std::vector<int32_t> prompt(64, static_cast<int32_t>(i % 1000));
    prompt[0] = static_cast<int32_t>(i);  // Distinct prompts: no prefix sharing.
    r->SetPrompt(std::move(prompt));
    r->sampling.max_tokens = 512;
    (void)scheduler.AddRequest(std::move(r));
  }
  auto step = [&] {
    const ScheduledBatch batch = scheduler.Schedule(Clock::now());
    BatchBuilder builder(block_size);
    for (const ScheduledRequest& s : batch.requests) {
      const std::span<const int32_t> chunk =
          std::span<const int32_t>(s.request->token_ids)
              .subspan(s.request->num_computed_tokens, s.num_tokens);
      builder.AddSequence(chunk, s.request->num_computed_tokens, s.request->block_ids,
                          LogitsWanted::kLast);
    }
    const BatchInputs inputs = builder.Build();
    std::vector<std::vector<int32_t>> sampled(batch.requests.size(), std::vector<int32_t>{7});
    scheduler.Update(batch, sampled);
    return inputs.num_tokens();
  };
  step();  // The prefill step.
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < num_steps; ++i) step();
  return Seconds(std::chrono::steady_clock::now() - start).count() * 1e6 /
         static_cast<double>(num_steps);
}

// Prompt tokens per second of one forward pass over `num_tokens` prompt tokens (logits of the
// last position only, as in serving).
absl::StatusOr<double> PrefillTokensPerSecond(LlamaModel& model, Backend& backend,
                                              int64_t num_tokens) {
  constexpr int64_t kBlockSize = 16;
  KvCacheConfig cache_config;
  cache_config.block_size = kBlockSize;
  cache_config.dtype = backend.preferred_kv_dtype();
  cache_config.num_blocks = (num_tokens + kBlockSize - 1) / kBlockSize;
  auto cache = KvCache::Create(backend, model.config(), cache_config);
  if (!cache.ok()) return cache.status();
  std::vector<int32_t> block_table(static_cast<size_t>(cache_config.num_blocks));
  std::iota(block_table.begin(), block_table.end(), 0);
  std::vector<int32_t> prompt(static_cast<size_t>(num_tokens));
  for (int64_t t = 0; t < num_tokens; ++t) {
    prompt[static_cast<size_t>(t)] = static_cast<int32_t>((t * 7 + 1) % model.config().vocab_size);
  }
  BatchBuilder builder(kBlockSize);
  builder.AddSequence(prompt, 0, block_table, LogitsWanted::kLast);
  const BatchInputs inputs = builder.Build();
  std::vector<float> logits;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = model.Forward(inputs, **cache, logits);
  if (!status.ok()) return status;
  return static_cast<double>(num_tokens) /
         Seconds(std::chrono::steady_clock::now() - start).count();
}

// Model shapes for --shape, with random weights (LlamaModel::CreateRandom).
absl::StatusOr<ModelConfig> ShapeConfig(const std::string& name) {
  ModelConfig c;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.head_dim = 128;
  c.eos_token_ids = {2};
  if (name == "llama3-8b") {  // Meta-Llama-3-8B's config.json
    c.architecture_name = "LlamaForCausalLM";
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.vocab_size = 128256;
    c.max_context_len = 8192;
  } else if (name == "iquest-40b") {  // IQuest-Coder-V1-40B's config.json
    c.architecture_name = "IQuestCoderForCausalLM";
    c.hidden_size = 5120;
    c.intermediate_size = 27648;
    c.num_layers = 80;
    c.num_heads = 40;
    c.num_kv_heads = 8;
    c.vocab_size = 76800;
    c.max_context_len = 131072;
  } else if (name == "iquest-40b-loop" || name == "tiny-loop") {
    // IQuest-Coder-V1-40B-Loop-Instruct's config.json: the 40B shape, two passes, a 64-token
    // local window; "tiny-loop" for tests of this tool.
    ASSIGN_OR_RETURN(c, ShapeConfig(name == "tiny-loop" ? "tiny" : "iquest-40b"));
    c.architecture_name = "IQuestLoopCoderForCausalLM";
    c.architecture = Architecture::kIQuestLoopCoder;
    c.loop_num = 2;
    c.loop_window = name == "tiny-loop" ? 8 : 64;
  } else if (name == "tiny" || name == "tiny-128k") {
    // "tiny" for tests of this tool; "tiny-128k" has Llama-3's vocabulary: the logits traffic.
    c.architecture_name = "LlamaForCausalLM";
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.vocab_size = name == "tiny" ? 300 : 128256;
    c.max_context_len = 2048;
  } else {
    return absl::InvalidArgumentError(
        "--shape must be llama3-8b, iquest-40b, iquest-40b-loop, tiny-128k, tiny or tiny-loop, "
        "got " +
        name);
  }
  return c;
}

// Bytes of the weights one decode step reads: every layer matrix once per pass (a Loop model
// runs its stack loop_num times; its gates are [heads, head_dim] per layer), lm_head once (the
// embedding rows a step gathers are negligible).
double WeightBytesPerToken(const ModelConfig& c, size_t element_bytes) {
  const double h = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_kv_heads * c.head_dim);
  const double layer = h * q * 2 + h * kv * 2 + 3 * h * static_cast<double>(c.intermediate_size);
  const double gates = c.loop_num > 1 ? q * static_cast<double>(c.num_layers) : 0.0;
  return (layer * static_cast<double>(c.num_layers * c.loop_num) + gates +
          h * static_cast<double>(c.vocab_size)) *
         static_cast<double>(element_bytes);
}

// KV-cache bytes one token holds: K and V of every KV layer (a Loop model's passes 2.. add a
// local layer each; see model_config.h).
double KvBytesPerToken(const ModelConfig& c, size_t element_bytes) {
  return 2.0 * static_cast<double>(c.num_kv_layers() * c.num_kv_heads * c.head_dim) *
         static_cast<double>(element_bytes);
}

struct Spread {
  double min = 0, median = 0, max = 0;
};

// Runs `measure` once to warm up, then `repeats` times.
template <typename Fn>
absl::StatusOr<Spread> Repeat(int64_t repeats, Fn measure) {
  std::vector<double> values;
  for (int64_t i = 0; i <= repeats; ++i) {
    absl::StatusOr<double> value = measure();
    if (!value.ok()) return value.status();
    if (i > 0) values.push_back(*value);
  }
  std::sort(values.begin(), values.end());
  Spread spread;
  spread.min = values.front();
  spread.max = values.back();
  const size_t n = values.size();
  spread.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return spread;
}

std::string SpreadJson(const Spread& s) {
  char buffer[160];
  std::snprintf(buffer, sizeof(buffer), "{\"min\": %.3f, \"median\": %.3f, \"max\": %.3f}", s.min,
                s.median, s.max);
  return buffer;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string model_dir = "build/models/random";
  std::string batches = "1,8,16,32";
  int64_t decode_tokens = 128;
  int64_t prefill_tokens = 512;
  int64_t repeats = 3;
  int64_t overhead_requests = 256;
  bool json = false;
  bool describe_shape = false;
  std::string device = "cpu";
  std::string shape;
  iquest::BackendOptions backend_options;
  iquest::FlagParser flags("iquest-bench-engine",
                           "Engine step overhead, prefill and decode throughput of one model.");
  flags.AddString("model", &model_dir, "HF checkpoint folder");
  flags.AddString("device", &device, "cpu or cuda");
  flags.AddString("shape", &shape,
                  "llama3-8b, iquest-40b, iquest-40b-loop, tiny-128k, tiny or tiny-loop: "
                  "random bf16 weights made on the device, instead of --model");
  flags.AddString("batches", &batches, "comma-separated decode batch sizes");
  flags.AddInt("decode-tokens", &decode_tokens, "tokens generated per request", 2, 4096);
  flags.AddInt("prefill-tokens", &prefill_tokens, "prompt tokens of the prefill figure; 0 = skip",
               0, 1 << 20);
  flags.AddInt("repeats", &repeats, "measurements per figure after one warm-up", 1, 100);
  flags.AddInt("overhead-requests", &overhead_requests,
               "running requests for the overhead figure; 0 = skip", 0, 65536);
  flags.AddBool("json", &json, "print one JSON object instead of tables");
  flags.AddBool("describe-shape", &describe_shape,
                "with --shape: print its bf16 weight and KV bytes per token and exit (no model "
                "is built: a 40B shape needs a GPU's memory)");
  iquest::RegisterBackendFlags(flags, &backend_options);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  iquest::SetMinLogLevel(iquest::LogLevel::kWarning);
  std::vector<int32_t> batch_sizes;
  if (!iquest::ParseIntList(batches, 1, 4096, &batch_sizes).ok()) return 2;
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  };

  if (describe_shape) {
    auto config = iquest::ShapeConfig(shape);
    if (!config.ok()) return fail(config.status());
    std::printf(
        "shape %s: %ld layers x %ld pass%s, weights %.0f bytes/token (bf16, all passes), "
        "KV cache %.0f bytes/token (bf16, %ld KV layers)\n",
        shape.c_str(), static_cast<long>(config->num_layers), static_cast<long>(config->loop_num),
        config->loop_num > 1 ? "es" : "", iquest::WeightBytesPerToken(*config, 2),
        iquest::KvBytesPerToken(*config, 2), static_cast<long>(config->num_kv_layers()));
    return 0;
  }
  double overhead = 0;
  if (overhead_requests > 0) overhead = iquest::StepOverheadMicros(overhead_requests, 200);
  if (device != "cpu" && device != "cuda") {
    return fail(absl::InvalidArgumentError("--device must be cpu or cuda, got " + device));
  }
  auto backend = iquest::MakeBackend(
      device == "cuda" ? iquest::Device::kCuda : iquest::Device::kCpu, backend_options);
  if (!backend.ok()) return fail(backend.status());
  absl::StatusOr<std::unique_ptr<iquest::LlamaModel>> model;
  double weight_bytes = 0;
  if (shape.empty()) {
    model = iquest::LlamaModel::Load(model_dir, **backend);
  } else {
    auto config = iquest::ShapeConfig(shape);
    if (!config.ok()) return fail(config.status());
    model = iquest::LlamaModel::CreateRandom(*config, iquest::DType::kBF16, 1, **backend);
    model_dir = "random " + shape;
    weight_bytes = iquest::WeightBytesPerToken(*config, 2);
  }
  if (!model.ok()) return fail(model.status());

  iquest::Spread prefill;
  if (prefill_tokens > 0) {
    auto spread = iquest::Repeat(repeats, [&] {
      return iquest::PrefillTokensPerSecond(**model, **backend, prefill_tokens);
    });
    if (!spread.ok()) return fail(spread.status());
    prefill = *spread;
  }
  std::vector<iquest::Spread> decode;
  // Per batch: bytes to the host per step with backend sampling, and with every row's logits
  // copied out (the path before backend sampling), from one run each.
  std::vector<std::pair<double, double>> host_bytes;
  for (int32_t batch : batch_sizes) {
    const int max_tokens = static_cast<int>(decode_tokens) + 1;
    double bytes = 0;
    auto spread = iquest::Repeat(repeats, [&]() -> absl::StatusOr<double> {
      absl::StatusOr<iquest::DecodeRun> run = iquest::RunDecode(**model, batch, max_tokens, true);
      if (!run.ok()) return run.status();
      bytes = run->bytes_to_host_step;
      return run->tok_s;
    });
    if (!spread.ok()) return fail(spread.status());
    decode.push_back(*spread);
    absl::StatusOr<iquest::DecodeRun> host_run =
        iquest::RunDecode(**model, batch, max_tokens, false);
    if (!host_run.ok()) return fail(host_run.status());
    host_bytes.emplace_back(bytes, host_run->bytes_to_host_step);
  }

  const std::string backend_name((*backend)->name());
  if (json) {
    std::printf("{\"model\": \"%s\", \"backend\": \"%s\", \"repeats\": %ld,\n", model_dir.c_str(),
                backend_name.c_str(), static_cast<long>(repeats));
    if (overhead_requests > 0) std::printf(" \"step_overhead_us\": %.1f,\n", overhead);
    std::printf(" \"prefill_tokens\": %ld, \"prefill_tok_s\": %s,\n",
                static_cast<long>(prefill_tokens), iquest::SpreadJson(prefill).c_str());
    std::printf(" \"decode_tokens\": %ld, \"decode\": [", static_cast<long>(decode_tokens));
    for (size_t i = 0; i < decode.size(); ++i) {
      std::printf(
          "%s\n  {\"batch\": %d, \"tok_s\": %s, \"bytes_to_host_per_step\": %.0f, "
          "\"bytes_to_host_per_step_host_sampling\": %.0f}",
          i == 0 ? "" : ",", batch_sizes[i], iquest::SpreadJson(decode[i]).c_str(),
          host_bytes[i].first, host_bytes[i].second);
    }
    std::printf("]");
    std::printf(",\n \"kv_bytes_per_token\": %.0f",
                iquest::KvBytesPerToken((*model)->config(),
                                        iquest::DTypeSize((*backend)->preferred_kv_dtype())));
    if (weight_bytes > 0) {
      std::printf(",\n \"weight_bytes\": %.0f, \"batch1_weight_gb_s\": %.1f", weight_bytes,
                  weight_bytes * decode[0].median / 1e9);
    }
    std::printf("}\n");
    return 0;
  }
  std::printf("model %s, backend %s, %ld repeats after a warm-up (min / median / max)\n",
              model_dir.c_str(), backend_name.c_str(), static_cast<long>(repeats));
  if (overhead_requests > 0) {
    std::printf(
        "step overhead (schedule + batch inputs + update, no forward), %ld running: %.1f us/step\n",
        static_cast<long>(overhead_requests), overhead);
  }
  if (prefill_tokens > 0) {
    std::printf("prefill %ld tokens: %.1f / %.1f / %.1f tok/s\n", static_cast<long>(prefill_tokens),
                prefill.min, prefill.median, prefill.max);
  }
  std::printf("\n%-8s %-30s %-18s %s\n", "batch", "decode tok/s (min/med/max)", "median vs batch 1",
              "bytes to host/step: backend sampling | host sampling");
  for (size_t i = 0; i < decode.size(); ++i) {
    std::printf("%-8d %8.1f / %8.1f / %8.1f   %-18.2f %.0f | %.0f\n", batch_sizes[i], decode[i].min,
                decode[i].median, decode[i].max, decode[i].median / decode[0].median,
                host_bytes[i].first, host_bytes[i].second);
  }
  const iquest::ModelConfig& config = (*model)->config();
  const iquest::DType kv_dtype = (*backend)->preferred_kv_dtype();
  std::printf("KV cache %.0f bytes/token (%ld KV layers, %s)\n",
              iquest::KvBytesPerToken(config, iquest::DTypeSize(kv_dtype)),
              static_cast<long>(config.num_kv_layers()),
              std::string(iquest::DTypeName(kv_dtype)).c_str());
  if (weight_bytes > 0) {
    // Batch-1 decode reads every weight once per token and pass: its bound is memory bandwidth.
    std::printf("weights %.2f GB/token (%ld pass%s); batch %d median reads them at %.1f GB/s\n",
                weight_bytes / 1e9, static_cast<long>(config.loop_num),
                config.loop_num > 1 ? "es" : "", batch_sizes[0],
                weight_bytes * decode[0].median / 1e9);
  }
  return 0;
}
