// A sandboxed interpreter for the Jinja2 subset Hugging Face chat templates use, rendering as
// transformers' apply_chat_template does (jinja2's ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loopcontrols; its own tojson, raise_exception, strftime_now).
// Rendering is bounded: a template cannot loop forever, grow a string without bound or reach
// Python-level attributes, whatever it contains.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace iquest {

namespace jinja {
struct Stmt;
}  // namespace jinja

struct JinjaLimits {
  // Statements executed plus expressions evaluated; far above what a chat template needs for a
  // long conversation (about 100 per message), low enough that a runaway loop ends within a few
  // seconds.
  int64_t max_steps = 10'000'000;
  // The rendered prompt, and any string built on the way (so `s ~ s` doubling stops early).
  int64_t max_output_bytes = 4 << 20;
  // Macro calls within macro calls (recursive macros).
  int max_recursion_depth = 64;
};

class JinjaTemplate {
 public:
  // Parse errors name the line and column: "template line 3, column 14: ...".
  static absl::StatusOr<JinjaTemplate> Parse(std::string_view source, JinjaLimits limits = {});

  // `context` is an object of the template's variables: messages, tools, add_generation_prompt,
  // bos_token, eos_token, ... Ordered, because tojson writes keys in the caller's order (as
  // Python's dicts keep it) and tool schemas should reach the model as written.
  // Run-time errors name the template line; raise_exception(msg) yields kInvalidArgument whose
  // message is msg; a limit hit is kResourceExhausted.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& context) const;

 private:
  struct Program;
  JinjaTemplate(std::shared_ptr<const Program> program, JinjaLimits limits)
      : program_(std::move(program)), limits_(limits) {}

  std::shared_ptr<const Program> program_;  // Shared: templates are immutable once parsed.
  JinjaLimits limits_;
};

}  // namespace iquest
