// JinjaTemplate: parse once, render many times; each Render has its own budget.
#include "model/tokenizer/jinja/jinja.h"

#include "common/status.h"
#include "model/tokenizer/jinja/interpreter.h"
#include "model/tokenizer/jinja/parser.h"

namespace iquest {

struct JinjaTemplate::Program {
  jinja::Body body;
};

absl::StatusOr<JinjaTemplate> JinjaTemplate::Parse(std::string_view source, JinjaLimits limits) {
  ASSIGN_OR_RETURN(jinja::Body body, jinja::ParseTemplate(source));
  auto program = std::make_shared<Program>();
  program->body = std::move(body);
  return JinjaTemplate(std::move(program), limits);
}

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::ordered_json& context) const {
  if (!context.is_object())
    return absl::InvalidArgumentError("the template context must be an object");
  return jinja::RenderBody(program_->body, jinja::Value::FromJson(context), limits_);
}

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::json& context) const {
  // dump/parse keeps nlohmann::json's (sorted) key order. Invalid UTF-8 is replaced rather than
  // thrown on, and the parse of our own dump cannot fail.
  return Render(nlohmann::ordered_json::parse(
      context.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), nullptr, false));
}

}  // namespace iquest
