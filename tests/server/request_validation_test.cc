// The gRPC edge's field checks (server/request_validation.cc) in-process: every range of every
// SamplingParams and GenerateRequest field, at both ends and one past them, NaN and infinities
// for the float fields, -0.0 temperature as greedy, the byte limits, and a missing input. Each
// refusal is INVALID_ARGUMENT naming the field (and its range). Whether a prompt fits the model
// is CheckFits' (tests/scheduler/check_fits_test.cc), so token-id and length refusals are not
// here: the edge passes such prompts through unchanged.
#include "server/request_validation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

constexpr int64_t kVocab = 256;
constexpr int64_t kMaxTokensCap = 100;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

using serve::v1::GenerateRequest;
using Mutation = std::function<void(GenerateRequest&)>;

class RequestValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    TinyModelOptions options;
    options.vocab_size = kVocab;
    options.num_layers = 1;
    ASSERT_OK(WriteTinyModel(dir_->path(), options));
    serving_ = new ServingContext();
    serving_->backend = std::make_unique<CpuBackend>();
    auto model = LlamaModel::Load(dir_->path(), *serving_->backend);
    ASSERT_OK(model);
    serving_->model = std::move(*model);
    serving_->max_model_len = 512;
    serving_->max_tokens_cap = kMaxTokensCap;
    serving_->max_prompt_bytes = 1000;
    serving_->max_num_seqs = 8;
  }
  static void TearDownTestSuite() {
    delete serving_;
    delete dir_;
  }

  // A request every check accepts.
  static GenerateRequest Valid() {
    GenerateRequest r;
    r.mutable_token_ids()->add_ids(3);
    r.mutable_token_ids()->add_ids(4);
    return r;
  }

  static absl::StatusOr<GenerationRequest> Parse(const Mutation& mutate) {
    GenerateRequest r = Valid();
    mutate(r);
    return ToGenerationRequest(r, *serving_);
  }

  // INVALID_ARGUMENT whose message holds every one of `words`.
  static void ExpectRefused(const Mutation& mutate, std::initializer_list<std::string> words) {
    const absl::StatusOr<GenerationRequest> parsed = Parse(mutate);
    ASSERT_FALSE(parsed.ok()) << "accepted; wanted a refusal naming " << *words.begin();
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
    for (const std::string& word : words) {
      EXPECT_NE(parsed.status().message().find(word), std::string::npos)
          << "\"" << parsed.status().message() << "\" lacks \"" << word << "\"";
    }
  }

  static void ExpectAccepted(const Mutation& mutate) {
    const absl::StatusOr<GenerationRequest> parsed = Parse(mutate);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
  }

  static testing::TempDir* dir_;
  static ServingContext* serving_;
};

testing::TempDir* RequestValidationTest::dir_ = nullptr;
ServingContext* RequestValidationTest::serving_ = nullptr;

// A float field: both ends accepted, just outside them, NaN and both infinities refused.
struct FloatRange {
  const char* field;
  std::function<void(serve::v1::SamplingParams&, float)> set;
  float lo, hi;
  bool lo_open = false;  // (lo, hi] rather than [lo, hi].
};

TEST_F(RequestValidationTest, FloatFieldsAcceptTheirRangeAndRefuseOutsideNaNAndInfinity) {
  using P = serve::v1::SamplingParams;
  const FloatRange ranges[] = {
      {"sampling.temperature", [](P& p, float v) { p.set_temperature(v); }, 0, 100},
      {"sampling.top_p", [](P& p, float v) { p.set_top_p(v); }, 0, 1, /*lo_open=*/true},
      {"sampling.min_p", [](P& p, float v) { p.set_min_p(v); }, 0, 1},
      {"sampling.repetition_penalty", [](P& p, float v) { p.set_repetition_penalty(v); }, 0, 10,
       /*lo_open=*/true},
      {"sampling.presence_penalty", [](P& p, float v) { p.set_presence_penalty(v); }, -2, 2},
      {"sampling.frequency_penalty", [](P& p, float v) { p.set_frequency_penalty(v); }, -2, 2},
  };
  for (const FloatRange& range : ranges) {
    SCOPED_TRACE(range.field);
    auto with = [&](float v) -> Mutation {
      return [&range, v](GenerateRequest& r) { range.set(*r.mutable_sampling(), v); };
    };
    if (!range.lo_open) ExpectAccepted(with(range.lo));
    ExpectAccepted(with(range.hi));
    ExpectAccepted(with((range.lo + range.hi) / 2));
    ExpectRefused(with(range.lo_open ? range.lo : std::nextafter(range.lo, -kInf)), {range.field});
    ExpectRefused(with(std::nextafter(range.hi, kInf)), {range.field});
    ExpectRefused(with(kNaN), {range.field});
    ExpectRefused(with(kInf), {range.field});
    ExpectRefused(with(-kInf), {range.field});
  }
}

TEST_F(RequestValidationTest, RefusalsNameTheAllowedRange) {
  ExpectRefused([](GenerateRequest& r) { r.mutable_sampling()->set_temperature(101); },
                {"sampling.temperature", "[0, 100]"});
  ExpectRefused([](GenerateRequest& r) { r.mutable_sampling()->set_top_p(0); },
                {"sampling.top_p", "(0, 1]"});
  ExpectRefused([](GenerateRequest& r) { r.mutable_sampling()->set_max_tokens(0); },
                {"sampling.max_tokens", "[1, 100]"});
}

TEST_F(RequestValidationTest, NegativeZeroTemperatureIsGreedy) {
  const auto parsed =
      Parse([](GenerateRequest& r) { r.mutable_sampling()->set_temperature(-0.0f); });
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->sampling.temperature, 0.0f);
  EXPECT_FALSE(std::signbit(parsed->sampling.temperature));
}

TEST_F(RequestValidationTest, UnsetFieldsTakeTheirDefaults) {
  const auto parsed = Parse([](GenerateRequest&) {});
  ASSERT_OK(parsed);
  const SamplingParams& s = parsed->sampling;
  EXPECT_EQ(s.temperature, 1.0f);
  EXPECT_EQ(s.top_k, 0);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_EQ(s.min_p, 0.0f);
  EXPECT_EQ(s.repetition_penalty, 1.0f);
  EXPECT_EQ(s.max_tokens, 16);
  EXPECT_EQ(s.min_tokens, 0);
  EXPECT_EQ(s.n, 1);
  EXPECT_EQ(s.logprobs, 0);
  EXPECT_FALSE(s.seed.has_value());
  EXPECT_TRUE(s.skip_special_tokens);
  EXPECT_EQ(parsed->prompt_token_ids, (std::vector<int32_t>{3, 4}));
}

// An integer field: [lo, hi] accepted at both ends, refused one past each.
struct IntRange {
  const char* field;
  std::function<void(GenerateRequest&, int64_t)> set;
  int64_t lo, hi;
};

TEST_F(RequestValidationTest, IntegerFieldsAcceptTheirRangeAndRefuseOnePast) {
  using R = GenerateRequest;
  const IntRange ranges[] = {
      {"sampling.top_k", [](R& r, int64_t v) { r.mutable_sampling()->set_top_k(v); }, -1, kVocab},
      {"sampling.max_tokens", [](R& r, int64_t v) { r.mutable_sampling()->set_max_tokens(v); }, 1,
       kMaxTokensCap},
      {"sampling.min_tokens",
       [](R& r, int64_t v) {
         r.mutable_sampling()->set_max_tokens(10);
         r.mutable_sampling()->set_min_tokens(v);
       },
       0, 10},
      {"sampling.n", [](R& r, int64_t v) { r.mutable_sampling()->set_n(v); }, 1, kMaxN},
      {"sampling.logprobs", [](R& r, int64_t v) { r.mutable_sampling()->set_logprobs(v); }, 0,
       kMaxLogprobs},
      {"sampling.prompt_logprobs",
       [](R& r, int64_t v) { r.mutable_sampling()->set_prompt_logprobs(v); }, 0, kMaxLogprobs},
      {"priority", [](R& r, int64_t v) { r.set_priority(v); }, -kMaxPriority, kMaxPriority},
      {"sampling.stop_token_ids",
       [](R& r, int64_t v) { r.mutable_sampling()->add_stop_token_ids(v); }, 0, kVocab - 1},
      {"sampling.logit_bias key",
       [](R& r, int64_t v) { (*r.mutable_sampling()->mutable_logit_bias())[v] = 1.0f; }, 0,
       kVocab - 1},
  };
  for (const IntRange& range : ranges) {
    SCOPED_TRACE(range.field);
    auto with = [&](int64_t v) -> Mutation {
      return [&range, v](GenerateRequest& r) { range.set(r, v); };
    };
    ExpectAccepted(with(range.lo));
    ExpectAccepted(with(range.hi));
    ExpectRefused(with(range.lo - 1), {range.field});
    ExpectRefused(with(range.hi + 1), {range.field});
  }
}

TEST_F(RequestValidationTest, TopKMinusOneMeansNoLimit) {
  const auto parsed = Parse([](GenerateRequest& r) { r.mutable_sampling()->set_top_k(-1); });
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->sampling.top_k, 0);
}

TEST_F(RequestValidationTest, LogitBiasValuesAreBoundedAndFinite) {
  auto bias = [](float v) -> Mutation {
    return [v](GenerateRequest& r) { (*r.mutable_sampling()->mutable_logit_bias())[5] = v; };
  };
  ExpectAccepted(bias(-100));
  ExpectAccepted(bias(100));
  ExpectRefused(bias(100.5f), {"sampling.logit_bias value", "[-100, 100]"});
  ExpectRefused(bias(kNaN), {"sampling.logit_bias value"});
  ExpectRefused(bias(-kInf), {"sampling.logit_bias value"});
  ExpectRefused(
      [](GenerateRequest& r) {
        for (int i = 0; i <= kMaxLogitBias; ++i) {
          (*r.mutable_sampling()->mutable_logit_bias())[i] = 1.0f;
        }
      },
      {"sampling.logit_bias", "at most 1024"});
}

TEST_F(RequestValidationTest, ListLengthsAreBounded) {
  ExpectRefused(
      [](GenerateRequest& r) {
        for (int i = 0; i <= kMaxStopTokenIds; ++i) r.mutable_sampling()->add_stop_token_ids(1);
      },
      {"sampling.stop_token_ids", "at most 64"});
  ExpectRefused(
      [](GenerateRequest& r) {
        for (int i = 0; i <= kMaxStopStrings; ++i) r.mutable_sampling()->add_stop("x");
      },
      {"sampling.stop", "at most 16"});
  ExpectRefused([](GenerateRequest& r) { r.mutable_sampling()->add_stop(""); },
                {"sampling.stop", "1..256 bytes"});
  ExpectRefused(
      [](GenerateRequest& r) {
        r.mutable_sampling()->add_stop(std::string(kMaxStopStringBytes + 1, 'x'));
      },
      {"sampling.stop", "1..256 bytes"});
}

TEST_F(RequestValidationTest, StopStringsAndTextNeedATokenizer) {
  // This context has no tokenizer: the refusal says so rather than failing later.
  ExpectRefused([](GenerateRequest& r) { r.mutable_sampling()->add_stop("\n"); },
                {"sampling.stop", "tokenizer"});
  ExpectRefused([](GenerateRequest& r) { r.set_text("def f():"); }, {"text", "tokenizer"});
  ExpectRefused([](GenerateRequest& r) { r.mutable_chat()->add_messages()->set_content("hi"); },
                {"chat", "tokenizer"});
}

TEST_F(RequestValidationTest, IdentityFieldsAreBounded) {
  ExpectAccepted(
      [](GenerateRequest& r) { r.set_request_id(std::string(kMaxRequestIdBytes, 'a')); });
  ExpectRefused(
      [](GenerateRequest& r) { r.set_request_id(std::string(kMaxRequestIdBytes + 1, 'a')); },
      {"request_id", "at most 128"});
  ExpectRefused([](GenerateRequest& r) { r.set_request_id("has space"); },
                {"request_id", "printable ASCII"});
  ExpectRefused([](GenerateRequest& r) { r.set_request_id("new\nline"); }, {"request_id"});
  ExpectRefused([](GenerateRequest& r) { r.set_request_id("caf\xc3\xa9"); }, {"request_id"});
  ExpectAccepted([](GenerateRequest& r) { r.set_tenant(std::string(kMaxTenantBytes, 't')); });
  ExpectRefused([](GenerateRequest& r) { r.set_tenant(std::string(kMaxTenantBytes + 1, 't')); },
                {"tenant", "at most 64"});
  ExpectAccepted(
      [](GenerateRequest& r) { r.set_cache_salt(std::string(kMaxCacheSaltBytes, 's')); });
  ExpectRefused(
      [](GenerateRequest& r) { r.set_cache_salt(std::string(kMaxCacheSaltBytes + 1, 's')); },
      {"cache_salt", "at most 256"});
}

TEST_F(RequestValidationTest, MissingInputIsRefused) {
  ExpectRefused([](GenerateRequest& r) { r.clear_input(); }, {"input", "required"});
}

TEST_F(RequestValidationTest, PromptFitIsLeftToTheEngine) {
  // Out-of-vocabulary ids, an empty id list and an over-long prompt pass the edge unchanged:
  // CheckFits refuses them with the engine's one message per failure.
  const auto parsed = Parse([](GenerateRequest& r) {
    r.mutable_token_ids()->add_ids(static_cast<int32_t>(kVocab));
    r.mutable_token_ids()->add_ids(-1);
  });
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->prompt_token_ids, (std::vector<int32_t>{3, 4, kVocab, -1}));
  ExpectAccepted([](GenerateRequest& r) { r.mutable_token_ids()->clear_ids(); });
}

TEST_F(RequestValidationTest, DetokenizeIdsAreCheckedHere) {
  GenerateRequest r = Valid();
  EXPECT_OK(CheckTokenIds(r.token_ids().ids(), *serving_, "token_ids"));
  r.mutable_token_ids()->add_ids(kVocab);
  const absl::Status bad = CheckTokenIds(r.token_ids().ids(), *serving_, "token_ids");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("token id 256 is outside [0, 256)"), std::string::npos) << bad;
}

}  // namespace
}  // namespace iquest
