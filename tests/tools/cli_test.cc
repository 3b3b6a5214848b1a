// iquest-cli end to end against the fake server: what each command sends, what it prints, exit
// codes, and that a bearer token reaches the server but never the output.
#include "tools/cli/cli.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_generation_server.h"

namespace iquest {
namespace {

using testing::FakeGenerationServer;
using testing::FakeServerOptions;

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

CliRun RunAgainst(const FakeGenerationServer& server, std::vector<std::string> args) {
  args.insert(args.begin() + 1, {"--target", server.target(), "--timeout-ms", "10000"});
  std::ostringstream out;
  std::ostringstream err;
  const int code = RunCli(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(CliTest, GenerateStreamsTextAndReportsTheSummary) {
  FakeGenerationServer server;
  const CliRun run = RunAgainst(server, {"generate", "--prompt", "hello", "--max-tokens", "3",
                                         "--temperature", "0", "--stop", "a,b", "--stop=c"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "t0 t1 t2 \n");
  EXPECT_NE(run.err.find("finish_reason[0]=LENGTH"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("prompt_tokens=5 completion_tokens=3"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("ttft_s=0.001"), std::string::npos) << run.err;

  const auto request = server.last_generate_request();
  EXPECT_EQ(request.text(), "hello");
  EXPECT_EQ(request.sampling().max_tokens(), 3);
  EXPECT_TRUE(request.sampling().has_temperature());
  EXPECT_EQ(request.sampling().temperature(), 0.0F);
  EXPECT_FALSE(request.sampling().has_top_p());  // Unset flags leave the server's default.
  ASSERT_EQ(request.sampling().stop_size(), 2);
  EXPECT_EQ(request.sampling().stop(0), "a,b");
  EXPECT_EQ(request.sampling().stop(1), "c");
}

TEST(CliTest, GeneratePrintsTokenIdsWhenTheServerHasNoTokenizer) {
  FakeServerOptions options;
  options.has_tokenizer = false;
  FakeGenerationServer server(options);
  const CliRun run = RunAgainst(
      server, {"generate", "--prompt-ids", "1,2,3", "--max-tokens", "3", "--ignore-eos", "--seed",
               "7", "--top-k", "5", "--priority", "-3", "--tenant", "team", "--request-id", "r1"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "100 101 102\n");
  const auto request = server.last_generate_request();
  EXPECT_EQ(request.token_ids().ids_size(), 3);
  EXPECT_TRUE(request.sampling().ignore_eos());
  EXPECT_EQ(request.sampling().seed(), 7U);
  EXPECT_EQ(request.sampling().top_k(), 5);
  EXPECT_EQ(request.priority(), -3);
  EXPECT_EQ(request.tenant(), "team");
  EXPECT_EQ(request.request_id(), "r1");
}

TEST(CliTest, PrintIdsPrintsIdsEvenWithText) {
  FakeGenerationServer server;
  const CliRun run =
      RunAgainst(server, {"generate", "--prompt", "x", "--max-tokens", "2", "--print-ids"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "100 101\n");
}

TEST(CliTest, GeneratePrintsEachSampleWhole) {
  FakeGenerationServer server;
  const CliRun run =
      RunAgainst(server, {"generate", "--prompt", "x", "--max-tokens", "2", "--n", "2"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "--- sample 0 ---\nt0 t1 \n--- sample 1 ---\nt0 t1 \n");
  EXPECT_NE(run.err.find("finish_reason[1]=LENGTH"), std::string::npos) << run.err;
}

TEST(CliTest, GenerateNeedsExactlyOneInput) {
  FakeGenerationServer server;
  EXPECT_EQ(RunAgainst(server, {"generate"}).code, 2);
  EXPECT_EQ(RunAgainst(server, {"generate", "--prompt", "a", "--prompt-ids", "1"}).code, 2);
  EXPECT_EQ(RunAgainst(server, {"generate", "--prompt-ids", "1,x"}).code, 2);
  EXPECT_EQ(server.num_generate_calls(), 0);
}

TEST(CliTest, RpcErrorsExitNonZeroWithTheCodeName) {
  FakeServerOptions options;
  options.reject_every = 1;
  FakeGenerationServer server(options);
  const CliRun run = RunAgainst(server, {"generate", "--prompt", "hi"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "error: RESOURCE_EXHAUSTED: queue full (retry-after-ms=250)\n");
}

TEST(CliTest, TimeoutBecomesTheDeadline) {
  FakeServerOptions options;
  options.token_delay = std::chrono::milliseconds(200);
  FakeGenerationServer server(options);
  std::ostringstream out;
  std::ostringstream err;
  const int code = RunCli({"generate", "--target", server.target(), "--prompt", "hi",
                           "--max-tokens", "50", "--timeout-ms", "100"},
                          out, err);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(err.str().rfind("error: DEADLINE_EXCEEDED", 0), 0U) << err.str();
  EXPECT_EQ(out.str(), "");  // The deadline came before the first token.
}

TEST(CliTest, AnErrorMidStreamEndsThePartialLine) {
  FakeServerOptions options;
  options.token_delay = std::chrono::milliseconds(50);
  FakeGenerationServer server(options);
  std::ostringstream out;
  std::ostringstream err;
  const int code = RunCli({"generate", "--target", server.target(), "--prompt", "hi",
                           "--max-tokens", "1000", "--timeout-ms", "400"},
                          out, err);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(out.str().rfind("t0 t1 ", 0), 0U) << out.str();
  EXPECT_EQ(out.str().back(), '\n');
  EXPECT_EQ(err.str().rfind("error: DEADLINE_EXCEEDED", 0), 0U) << err.str();
}

TEST(CliTest, ChatSendsTheSystemPromptThenTheMessagesInOrder) {
  FakeGenerationServer server;
  const CliRun run =
      RunAgainst(server, {"chat", "--system", "be brief", "--message", "user:Hi: there",
                          "--message", "assistant:Hello", "--message=user:Again"});
  ASSERT_EQ(run.code, 0) << run.err;
  const auto request = server.last_generate_request();
  const auto& messages = request.chat().messages();
  ASSERT_EQ(messages.size(), 4);
  EXPECT_EQ(messages[0].role(), "system");
  EXPECT_EQ(messages[0].content(), "be brief");
  EXPECT_EQ(messages[1].role(), "user");
  EXPECT_EQ(messages[1].content(), "Hi: there");
  EXPECT_EQ(messages[2].role(), "assistant");
  EXPECT_EQ(messages[3].content(), "Again");
  EXPECT_EQ(RunAgainst(server, {"chat", "--message", "robot:hi"}).code, 2);
  EXPECT_EQ(RunAgainst(server, {"chat"}).code, 2);
}

TEST(CliTest, UnaryCommands) {
  FakeGenerationServer server;
  EXPECT_EQ(RunAgainst(server, {"tokenize", "--text", "ab"}).out, "97,98\n");
  EXPECT_EQ(RunAgainst(server, {"detokenize", "--ids", "104,105"}).out, "hi\n");
  EXPECT_EQ(RunAgainst(server, {"detokenize", "--ids", "1,x"}).code, 2);

  const CliRun info = RunAgainst(server, {"info"});
  ASSERT_EQ(info.code, 0) << info.err;
  const nlohmann::json model = nlohmann::json::parse(info.out, nullptr, false);
  ASSERT_FALSE(model.is_discarded()) << info.out;
  EXPECT_EQ(model["model_name"], "fake-model");
  EXPECT_EQ(model["vocab_size"], 1000);

  const nlohmann::json load =
      nlohmann::json::parse(RunAgainst(server, {"load"}).out, nullptr, false);
  ASSERT_FALSE(load.is_discarded());
  EXPECT_EQ(load["num_running"], 2);
  EXPECT_EQ(load["num_preemptions"], "0");  // Proto JSON spells int64 as a string.

  const CliRun abort = RunAgainst(server, {"abort", "--ids", "a,b", "--tenant", "team-a"});
  EXPECT_EQ(abort.out, "num_requested=2 num_cancelled=2\n");
  EXPECT_EQ(server.last_abort_request().request_ids_size(), 2);
  EXPECT_EQ(server.last_abort_request().tenant(), "team-a");
  EXPECT_EQ(RunAgainst(server, {"abort"}).code, 2);
}

TEST(CliTest, HealthReportsServingStatus) {
  FakeGenerationServer server;
  const CliRun live = RunAgainst(server, {"health"});
  EXPECT_EQ(live.code, 0) << live.err;
  EXPECT_EQ(live.out, "SERVING\n");
  const std::string service = "iquest.serve.v1.Generation";
  server.server().GetHealthCheckService()->SetServingStatus(service, false);
  const CliRun ready = RunAgainst(server, {"health", "--service", service});
  EXPECT_EQ(ready.code, 3);
  EXPECT_EQ(ready.out, "NOT_SERVING\n");
  const CliRun unknown = RunAgainst(server, {"health", "--service", "nope"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_EQ(unknown.err.rfind("error: NOT_FOUND", 0), 0U) << unknown.err;
}

TEST(CliTest, UsageErrors) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({}, out, err), 2);
  EXPECT_EQ(RunCli({"frobnicate"}, out, err), 2);
  EXPECT_EQ(RunCli({"info", "--bogus"}, out, err), 2);
  EXPECT_EQ(RunCli({"info", "--tls-cert", "c.pem"}, out, err), 2);  // mTLS needs --tls-ca.
  std::ostringstream help;
  EXPECT_EQ(RunCli({"generate", "--help"}, help, err), 0);
  EXPECT_NE(help.str().find("--stop"), std::string::npos);
}

std::string Testdata(const std::string& name) {
  return std::string(IQUEST_TOOLS_TESTDATA_DIR) + "/" + name;
}

std::shared_ptr<grpc::ServerCredentials> TlsCredentials(bool require_client_certificate) {
  auto read = [](const std::string& name) {
    std::ifstream in(Testdata(name));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  grpc::SslServerCredentialsOptions ssl(
      require_client_certificate ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                 : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_root_certs = read("localhost.crt");
  ssl.pem_key_cert_pairs.push_back({read("localhost.key"), read("localhost.crt")});
  return grpc::SslServerCredentials(ssl);
}

TEST(CliTest, TlsWithTheServersCa) {
  FakeServerOptions options;
  options.credentials = TlsCredentials(false);
  FakeGenerationServer server(options);
  const CliRun tls = RunAgainst(server, {"info", "--tls-ca", Testdata("localhost.crt")});
  EXPECT_EQ(tls.code, 0) << tls.err;
  const CliRun plaintext = RunAgainst(server, {"info"});
  EXPECT_EQ(plaintext.code, 1);
  EXPECT_EQ(plaintext.err.rfind("error: UNAVAILABLE", 0), 0U) << plaintext.err;
}

TEST(CliTest, MutualTlsSendsTheClientCertificate) {
  FakeServerOptions options;
  options.credentials = TlsCredentials(true);
  FakeGenerationServer server(options);
  const CliRun mtls =
      RunAgainst(server, {"info", "--tls-ca", Testdata("localhost.crt"), "--tls-cert",
                          Testdata("localhost.crt"), "--tls-key", Testdata("localhost.key")});
  EXPECT_EQ(mtls.code, 0) << mtls.err;
  const CliRun no_cert = RunAgainst(server, {"info", "--tls-ca", Testdata("localhost.crt")});
  EXPECT_EQ(no_cert.code, 1);
  EXPECT_EQ(RunAgainst(server, {"info", "--tls-ca", Testdata("missing.crt")}).code, 2);
}

TEST(CliTest, TokenFileSendsBearerMetadata) {
  testing::TempDir dir;
  std::ofstream(dir.Join("token")) << "x\n";
  FakeGenerationServer server;
  const CliRun run = RunAgainst(server, {"info", "--token-file", dir.Join("token")});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(server.last_authorization(), "Bearer x");
  RunAgainst(server, {"info"});
  EXPECT_EQ(server.last_authorization(), "");
}

TEST(CliTest, TheTokenNeverReachesTheOutput) {
  const std::string token = "s3cr3t-T0KEN-value";
  testing::TempDir dir;
  std::ofstream(dir.Join("good")) << token << "\n";
  std::ofstream(dir.Join("bad")) << "wrong-" << token << "\n";
  FakeServerOptions options;
  options.required_token = token;
  FakeGenerationServer server(options);

  const CliRun ok =
      RunAgainst(server, {"generate", "--prompt", "hi", "--token-file", dir.Join("good")});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(server.last_authorization(), "Bearer " + token);
  const CliRun denied =
      RunAgainst(server, {"generate", "--prompt", "hi", "--token-file", dir.Join("bad")});
  EXPECT_EQ(denied.code, 1);
  EXPECT_EQ(denied.err, "error: UNAUTHENTICATED: missing or bad bearer token\n");
  for (const CliRun* run : {&ok, &denied}) {
    EXPECT_EQ(run->out.find(token), std::string::npos) << run->out;
    EXPECT_EQ(run->err.find(token), std::string::npos) << run->err;
  }
  std::ofstream(dir.Join("empty")) << "\n";
  EXPECT_EQ(RunAgainst(server, {"info", "--token-file", dir.Join("empty")}).code, 2);
  EXPECT_EQ(RunAgainst(server, {"info", "--token-file", dir.Join("missing")}).code, 2);
}

}  // namespace
}  // namespace iquest
