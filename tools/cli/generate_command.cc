// `iquest-cli generate` and `chat`: one streaming Generate call printed as it arrives.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "iquest/serve/v1/generation.grpc.pb.h"
#include "tools/cli/commands.h"

namespace iquest {
namespace {

namespace v1 = iquest::serve::v1;

std::string FinishReasonName(v1::FinishReason reason) {
  const std::string name = v1::FinishReason_Name(reason);
  const std::string prefix = "FINISH_REASON_";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

// Accumulates the stream and decides what reaches stdout. Text is preferred; ids are the
// fallback for a server without a tokenizer (it sends token ids and empty text).
class StreamPrinter {
 public:
  StreamPrinter(bool multi_sample, bool print_ids, std::ostream& out)
      : multi_sample_(multi_sample), print_ids_(print_ids), out_(out) {}

  void Add(const v1::GenerateResponse& response) {
    Sample& sample = samples_[response.index()];
    sample.text += response.text();
    sample.ids.insert(sample.ids.end(), response.token_ids().begin(), response.token_ids().end());
    if (!response.text().empty()) saw_text_ = true;
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      sample.finish_reason = response.finish_reason();
    }
    if (response.has_usage()) usage_ = response.usage();
    if (response.has_timings()) timings_ = response.timings();
    if (multi_sample_) return;
    if (print_ids_) {
      for (int32_t id : response.token_ids()) PrintId(id);
    } else {
      out_ << response.text();
    }
    out_.flush();
  }

  // Ends a line left open by streamed output, so that an error report starts on its own line.
  void EndPartialLine() {
    if (printed_any_id_ || (!multi_sample_ && !print_ids_ && saw_text_)) out_ << "\n";
    out_.flush();
  }

  // Prints what was held back, then the summary to `err`.
  void Finish(std::ostream& err) {
    // Without text from the server, the ids are all there is to show.
    const bool as_ids = print_ids_ || !saw_text_;
    if (multi_sample_) {
      for (const auto& [index, sample] : samples_) {
        out_ << "--- sample " << index << " ---\n"
             << (as_ids ? absl::StrJoin(sample.ids, " ") : sample.text) << "\n";
      }
    } else {
      // A single sample's text (or, with --print-ids, its ids) was streamed already.
      if (!saw_text_ && !print_ids_) {
        for (const auto& [index, sample] : samples_) out_ << absl::StrJoin(sample.ids, " ");
      }
      out_ << "\n";
    }
    out_.flush();
    for (const auto& [index, sample] : samples_) {
      err << "finish_reason[" << index << "]=" << FinishReasonName(sample.finish_reason) << "\n";
    }
    err << "usage: prompt_tokens=" << usage_.prompt_tokens()
        << " completion_tokens=" << usage_.completion_tokens()
        << " cached_tokens=" << usage_.cached_tokens() << "\n";
    err << "timings: queue_s=" << timings_.queue_seconds()
        << " prefill_s=" << timings_.prefill_seconds() << " ttft_s=" << timings_.ttft_seconds()
        << " decode_s=" << timings_.decode_seconds() << " e2e_s=" << timings_.e2e_seconds() << "\n";
  }

 private:
  struct Sample {
    std::string text;
    std::vector<int32_t> ids;
    v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  };

  void PrintId(int32_t id) {
    out_ << (printed_any_id_ ? " " : "") << id;
    printed_any_id_ = true;
  }

  const bool multi_sample_;
  const bool print_ids_;
  std::ostream& out_;
  std::map<int32_t, Sample> samples_;
  bool saw_text_ = false;
  bool printed_any_id_ = false;
  v1::Usage usage_;
  v1::Timings timings_;
};

}  // namespace

int RunGenerate(const Connection& connection, const v1::GenerateRequest& request, bool print_ids,
                std::ostream& out, std::ostream& err) {
  auto stub = v1::Generation::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Prepare(context);
  const bool multi_sample = request.sampling().has_n() && request.sampling().n() > 1;
  StreamPrinter printer(multi_sample, print_ids, out);
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) printer.Add(response);
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    printer.EndPartialLine();
    return ReportRpcError(context, status, err);
  }
  printer.Finish(err);
  return 0;
}

int ReportRpcError(const grpc::ClientContext& context, const grpc::Status& status,
                   std::ostream& err) {
  err << "error: " << DescribeStatus(status);
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto retry = trailers.find("retry-after-ms");
  if (retry != trailers.end()) {
    err << " (retry-after-ms=" << std::string(retry->second.data(), retry->second.size()) << ")";
  }
  err << "\n";
  return 1;
}

}  // namespace iquest
