// Control-token placeholders around a Jinja render (see jinja_chat.h for why).
#include "model/tokenizer/jinja_chat.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace iquest {
namespace {

// The lead code point U+10FFFD, then U+F0000 + index. Index kLiteralLead stands for a U+10FFFD
// the caller wrote; the others are control tokens.
constexpr std::string_view kLead = "\xF4\x8F\xBF\xBD";
constexpr char32_t kIndexBase = 0xF0000;
constexpr size_t kLiteralLead = 0xFFFD;  // U+FFFFD, the last index code point.
constexpr size_t kPlaceholderBytes = 8;

void AppendIndex(size_t index, std::string* out) {
  const char32_t c = kIndexBase + static_cast<char32_t>(index);  // U+F0000..U+FFFFD: 4 bytes.
  out->push_back(static_cast<char>(0xF0 | (c >> 18)));
  out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
  out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
  out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
}

// The index encoded at text[pos, pos + 4), or -1.
int64_t ReadIndex(std::string_view text, size_t pos) {
  if (pos + 4 > text.size()) return -1;
  const auto b = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  if ((b(0) & 0xF8) != 0xF0 || (b(1) & 0xC0) != 0x80 || (b(2) & 0xC0) != 0x80 ||
      (b(3) & 0xC0) != 0x80) {
    return -1;
  }
  const char32_t c = (static_cast<char32_t>(b(0) & 0x07) << 18) |
                     (static_cast<char32_t>(b(1) & 0x3F) << 12) |
                     (static_cast<char32_t>(b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  if (c < kIndexBase || c > kIndexBase + kLiteralLead) return -1;
  return c - kIndexBase;
}

}  // namespace

ControlTokenEscaper::ControlTokenEscaper(std::vector<std::string> control_tokens) {
  std::erase_if(control_tokens, [](const std::string& t) { return t.empty(); });
  std::sort(control_tokens.begin(), control_tokens.end(),
            [](const std::string& a, const std::string& b) {
              return a.size() != b.size() ? a.size() > b.size() : a < b;
            });
  control_tokens.erase(std::unique(control_tokens.begin(), control_tokens.end()),
                       control_tokens.end());
  // More than 65533 control tokens would not fit the index code points; no tokenizer has them.
  if (control_tokens.size() > kLiteralLead) control_tokens.resize(kLiteralLead);
  tokens_ = std::move(control_tokens);
  for (const std::string& t : tokens_) first_byte_[static_cast<uint8_t>(t[0])] = true;
  first_byte_[static_cast<uint8_t>(kLead[0])] = true;
}

std::string ControlTokenEscaper::EscapeString(std::string_view text) const {
  std::string out;
  size_t copied = 0;  // text[copied, pos) is still to be appended.
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) continue;
    const std::string_view rest = text.substr(pos);
    size_t index = kLiteralLead;
    size_t len = 0;
    if (rest.starts_with(kLead)) {
      len = kLead.size();
    } else {
      // Longest first, so the first match is the longest.
      for (size_t i = 0; i < tokens_.size(); ++i) {
        if (rest.starts_with(tokens_[i])) {
          index = i;
          len = tokens_[i].size();
          break;
        }
      }
    }
    if (len == 0) continue;
    out.append(text.substr(copied, pos - copied));
    out.append(kLead);
    AppendIndex(index, &out);
    pos += len - 1;
    copied = pos + 1;
  }
  if (copied == 0) return std::string(text);
  out.append(text.substr(copied));
  return out;
}

void ControlTokenEscaper::Escape(nlohmann::ordered_json* data) const {
  if (data->is_string()) {
    *data = EscapeString(data->get_ref<const std::string&>());
  } else if (data->is_array()) {
    for (auto& item : *data) Escape(&item);
  } else if (data->is_object()) {
    nlohmann::ordered_json escaped = nlohmann::ordered_json::object();
    for (auto& [key, value] : data->items()) {
      Escape(&value);
      escaped[EscapeString(key)] = std::move(value);
    }
    *data = std::move(escaped);
  }
}

std::string ControlTokenEscaper::Restore(std::string_view rendered,
                                         std::vector<ByteRange>* content) const {
  std::string out;
  out.reserve(rendered.size());
  size_t pos = 0;
  while (pos < rendered.size()) {
    const size_t lead = rendered.find(kLead, pos);
    const int64_t index =
        lead == std::string_view::npos ? -1 : ReadIndex(rendered, lead + kLead.size());
    const bool known =
        index >= 0 && (static_cast<size_t>(index) < tokens_.size() || index == kLiteralLead);
    if (!known) {
      // A lead the template cut from its index (slicing content), or none left: text as is.
      const size_t end = lead == std::string_view::npos ? rendered.size() : lead + kLead.size();
      out.append(rendered.substr(pos, end - pos));
      pos = end;
      continue;
    }
    out.append(rendered.substr(pos, lead - pos));
    const std::string_view original =
        index == kLiteralLead ? kLead : std::string_view(tokens_[index]);
    content->push_back({out.size(), out.size() + original.size()});
    out.append(original);
    pos = lead + kPlaceholderBytes;
  }
  return out;
}

absl::StatusOr<RenderedChat> RenderJinjaChat(const JinjaChatTemplate& chat_template,
                                             nlohmann::ordered_json data,
                                             bool add_generation_prompt) {
  if (chat_template.escaper != nullptr) chat_template.escaper->Escape(&data);
  nlohmann::ordered_json context = chat_template.special_tokens;
  for (auto& [key, value] : data.items()) context[key] = std::move(value);
  // transformers passes these as None when the caller has none; templates test `tools is none`.
  for (const char* key : {"tools", "documents"}) {
    if (!context.contains(key)) context[key] = nullptr;
  }
  context["add_generation_prompt"] = add_generation_prompt;
  absl::StatusOr<std::string> text = chat_template.program->Render(context);
  if (!text.ok()) {
    // A step or size limit is the request's doing, and retrying will not help.
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", text.status().message()));
  }
  RenderedChat out;
  out.text = chat_template.escaper != nullptr ? chat_template.escaper->Restore(*text, &out.content)
                                              : std::move(*text);
  return out;
}

}  // namespace iquest
