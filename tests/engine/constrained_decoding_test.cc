// Constrained decoding in the engine: the sampler never draws a token the grammar forbids and
// allows EOS only where the grammar may end; a sample's place follows its output tokens however
// they came (a fork's own first token, a rollback, a dead end).
#include "engine/constrained_decoding.h"

#include <gtest/gtest.h>

#include "engine/mask_worker.h"
#include "engine/sampler.h"
#include "structured/constraint.h"

namespace iquest {
namespace {

// Tokens: 0 = EOS, 1 = "a", 2 = "b", 3 = "ab", 4 = "c".
std::shared_ptr<GrammarMatcher> Matcher(const std::string& regex) {
  std::vector<std::string> bytes = {"", "a", "b", "ab", "c"};
  std::vector<bool> excluded = {true, false, false, false, false};
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kRegex;
  spec.text = regex;
  auto grammar = CompileConstraint(spec, GrammarLimits());
  EXPECT_TRUE(grammar.ok()) << grammar.status();
  return std::make_shared<GrammarMatcher>(*std::move(grammar),
                                          std::make_shared<TokenVocabulary>(bytes, excluded));
}

Request MakeRequest(std::shared_ptr<GrammarMatcher> grammar, std::vector<int32_t> output,
                    uint64_t id = 1) {
  Request r;
  r.id = id;
  r.sampling.grammar = std::move(grammar);
  r.sampling.seed = 9;
  r.SetPrompt({1, 2});
  r.token_ids.insert(r.token_ids.end(), output.begin(), output.end());
  r.eos_token_ids = {0};
  return r;
}

ScheduledBatch Batch(Request& r) {
  ScheduledBatch batch;
  r.num_computed_tokens = r.num_tokens() - 1;
  batch.requests.push_back({&r, 1});
  return batch;
}

TEST(ConstrainedDecodingTest, SamplerDrawsOnlyAllowedTokensAndEosWhereTheGrammarMayEnd) {
  auto grammar = Matcher("(ab)+");
  ConstrainedDecoding decoding;
  Sampler sampler;
  // The model prefers EOS and "c" overwhelmingly; the grammar leaves "a" and "ab" at the start.
  const std::vector<float> logits = {50, 0, 0, 1, 60};
  for (int position = 0; position < 50; ++position) {
    Request r = MakeRequest(grammar, {}, static_cast<uint64_t>(position + 1));
    r.sampling.temperature = 1.0f;
    r.token_ids.resize(static_cast<size_t>(r.prompt_len));
    const std::vector<TokenConstraint> c = decoding.Constraints(Batch(r));
    const int32_t token = sampler.Sample(logits, r, position, &c[0]).token;
    EXPECT_TRUE(token == 1 || token == 3) << token;
    EXPECT_FALSE(c[0].allow_stop);
  }
  // After "ab" the text may end: EOS (the model's favourite here) is allowed again.
  Request done = MakeRequest(grammar, {3}, 100);
  done.sampling.temperature = 0.0f;
  const std::vector<TokenConstraint> c = decoding.Constraints(Batch(done));
  EXPECT_TRUE(c[0].allow_stop);
  EXPECT_EQ(sampler.Sample(std::vector<float>{50, 0, 0, 1, 60}, done, 0, &c[0]).token, 0);
}

TEST(ConstrainedDecodingTest, PlaceFollowsTheOutputTokens) {
  auto grammar = Matcher("abc");
  ConstrainedDecoding decoding;
  Request r = MakeRequest(grammar, {1});
  EXPECT_EQ(decoding.AfterStep(r), ConstrainedDecoding::Verdict::kContinue);
  r.token_ids.push_back(2);
  EXPECT_EQ(decoding.AfterStep(r), ConstrainedDecoding::Verdict::kContinue);
  // A rollback (the output shrank, as speculation's rejection does) replays from the start.
  r.token_ids.pop_back();
  r.token_ids.pop_back();
  r.token_ids.push_back(3);  // "ab" in one token.
  EXPECT_EQ(decoding.AfterStep(r), ConstrainedDecoding::Verdict::kContinue);
  r.token_ids.push_back(4);
  EXPECT_EQ(decoding.AfterStep(r), ConstrainedDecoding::Verdict::kComplete);
  // A fork: a new id whose output is its own first token, replayed from the initial place.
  Request fork = MakeRequest(grammar, {3}, 2);
  EXPECT_EQ(decoding.AfterStep(fork), ConstrainedDecoding::Verdict::kContinue);
  EXPECT_EQ(decoding.num_tracked(), 2u);
  decoding.Forget(1);
  decoding.Forget(2);
  EXPECT_EQ(decoding.num_tracked(), 0u);
}

TEST(ConstrainedDecodingTest, ATokenOutsideTheGrammarIsADeadEnd) {
  auto grammar = Matcher("a+");
  ConstrainedDecoding decoding;
  Request r = MakeRequest(grammar, {1, 4});
  EXPECT_EQ(decoding.AfterStep(r), ConstrainedDecoding::Verdict::kDeadEnd);
  // EOS where the grammar may end is the end, not a dead end.
  Request eos = MakeRequest(grammar, {1, 0}, 2);
  EXPECT_NE(decoding.AfterStep(eos), ConstrainedDecoding::Verdict::kDeadEnd);
}

TEST(MaskWorkerTest, EachJobsResultComesBackToTake) {
  MaskWorker worker;
  for (int i = 0; i < 100; ++i) {
    worker.Start([i] { return std::vector<TokenConstraint>(static_cast<size_t>(i % 7)); });
    EXPECT_TRUE(worker.busy());
    EXPECT_EQ(worker.Take().size(), static_cast<size_t>(i % 7));
    EXPECT_FALSE(worker.busy());
  }
}

}  // namespace
}  // namespace iquest
