// Rendering a conversation through the model's own Jinja chat template, keeping the guarantee
// the hand-written renderers give: only the template's text can yield control tokens.
//
// How, without taint-tracking every string operation in the interpreter: before rendering, every
// control-token string inside the caller's data (message roles and contents, any string in the
// context that came from the request) is replaced by a two-code-point placeholder from the
// supplementary private use areas. Templates compare, trim, split and concatenate content; none
// of that changes a placeholder, which reads as two ordinary non-space characters. After
// rendering, each placeholder is put back as its original text and its bytes are recorded as a
// content range, where EncodeChat never parses special tokens. Template literals and the
// tokenizer's own bos_token/eos_token stay untouched, so their control tokens are real.
//
// Known differences from python-jinja2 rendering of the same data (all in text that spells a
// control token, so none in ordinary chat): `length` of such content counts the placeholder as
// 2 characters, and `tojson(ensure_ascii=True)` writes it as escapes instead of the token text.
// Two request strings that each hold part of a control token and that a template writes side by
// side could still form one; no template we know writes two request strings with nothing between.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/jinja/jinja.h"
#include "nlohmann/json.hpp"

namespace iquest {

// The control-token strings request data may not spell (the tokenizer's special added tokens).
class ControlTokenEscaper {
 public:
  explicit ControlTokenEscaper(std::vector<std::string> control_tokens);

  // Replaces every control-token string (leftmost, longest) inside every string of `data`,
  // object keys included, by its placeholder; a placeholder's lead code point written by the
  // caller is escaped too, so restoring is exact.
  void Escape(nlohmann::ordered_json* data) const;
  std::string EscapeString(std::string_view text) const;

  // Puts the original text back; `content` receives the byte ranges of `rendered`'s restored
  // pieces, sorted and disjoint.
  std::string Restore(std::string_view rendered, std::vector<ByteRange>* content) const;

  size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::string> tokens_;  // Sorted by length, longest first.
  bool first_byte_[256] = {};
};

// A chat template as written: the parsed program, and what its context gets from the tokenizer.
struct JinjaChatTemplate {
  std::shared_ptr<const JinjaTemplate> program;
  std::shared_ptr<const ControlTokenEscaper> escaper;
  // The variables transformers passes besides the conversation: bos_token, eos_token, ...
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};

// A rendered conversation: the prompt text, and where in it the content lies whose control-token
// strings must stay text. Sorted, disjoint.
struct RenderedChat {
  std::string text;
  std::vector<ByteRange> content;
};

// Renders `data` (an object with "messages" and, when the caller has them, "tools"; the
// escaper is applied to it here) with add_generation_prompt. Template errors are kInvalidArgument
// naming the template line; raise_exception's message is passed through.
absl::StatusOr<RenderedChat> RenderJinjaChat(const JinjaChatTemplate& chat_template,
                                             nlohmann::ordered_json data,
                                             bool add_generation_prompt);

}  // namespace iquest
