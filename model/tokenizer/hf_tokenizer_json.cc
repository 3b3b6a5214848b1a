// Parsing of tokenizer.json into HfTokenizerSpec. Every unsupported or malformed component is a
// load error naming the field, never a silently different tokenizer.
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/json_util.h"
#include "model/tokenizer/hf_tokenizer.h"
#include "utf8proc.h"

namespace iquest {
namespace {

using json = nlohmann::json;
constexpr char kSource[] = "tokenizer.json";

absl::Status Unsupported(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kSource, ": field '", path, "' ", what));
}

std::string TypeOf(const json& node) {
  auto it = node.find("type");
  return it != node.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The {"String": s} form of a pattern; regex patterns are not supported where this is used.
absl::StatusOr<std::string> StringPattern(const json& node, const std::string& path) {
  auto pattern = node.find("pattern");
  if (pattern != node.end() && pattern->is_object()) {
    auto s = pattern->find("String");
    if (s != pattern->end() && s->is_string()) return s->get<std::string>();
  }
  return Unsupported(path + ".pattern",
                     "must be {\"String\": ...} (regex patterns are unsupported)");
}

absl::Status ParseNormalizer(const json& node, const std::string& path,
                             std::vector<NormalizerStep>* steps) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object()) return Unsupported(path, "must be an object or null");
  const std::string type = TypeOf(node);
  const JsonReader reader(node, kSource, path + ".");
  NormalizerStep step;
  if (type == "Sequence") {
    auto list = node.find("normalizers");
    if (list == node.end() || !list->is_array()) return Unsupported(path, "needs 'normalizers'");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          ParseNormalizer((*list)[i], absl::StrCat(path, ".normalizers[", i, "]"), steps));
    }
    return absl::OkStatus();
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    int options = UTF8PROC_STABLE;
    options |= (type == "NFC" || type == "NFKC") ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (type[2] == 'K') options |= UTF8PROC_COMPAT;
    step.utf8proc_options = options;
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::Kind::kPrepend;
    ASSIGN_OR_RETURN(step.text, reader.String("prepend"));
  } else if (type == "Replace") {
    step.kind = NormalizerStep::Kind::kReplace;
    ASSIGN_OR_RETURN(step.text, StringPattern(node, path));
    ASSIGN_OR_RETURN(step.content, reader.String("content"));
    if (step.text.empty()) return Unsupported(path + ".pattern", "must not be empty");
  } else {
    return Unsupported(path + ".type", absl::StrCat("'", type, "' is not a supported normalizer"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseMetaspace(const JsonReader& reader, PreTokenizerSpec* spec) {
  spec->metaspace = true;
  ASSIGN_OR_RETURN(spec->replacement, reader.String("replacement", "\u2581"));
  ASSIGN_OR_RETURN(spec->metaspace_split, reader.Bool("split", true));
  ASSIGN_OR_RETURN(const bool add_prefix_space, reader.Bool("add_prefix_space", true));
  spec->prepend =
      add_prefix_space ? PreTokenizerSpec::Prepend::kAlways : PreTokenizerSpec::Prepend::kNever;
  if (reader.Has("prepend_scheme")) {
    ASSIGN_OR_RETURN(const std::string scheme, reader.String("prepend_scheme"));
    if (scheme == "always") {
      spec->prepend = PreTokenizerSpec::Prepend::kAlways;
    } else if (scheme == "first") {
      spec->prepend = PreTokenizerSpec::Prepend::kFirst;
    } else if (scheme == "never") {
      spec->prepend = PreTokenizerSpec::Prepend::kNever;
    } else {
      return reader.FieldError("prepend_scheme", "must be always, first or never");
    }
  }
  return absl::OkStatus();
}

absl::Status SetSplit(SplitPattern pattern, const std::string& path, PreTokenizerSpec* spec) {
  if (spec->split.has_value()) return Unsupported(path, "is a second splitting step (unsupported)");
  spec->split = pattern;
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& node, const std::string& path, PreTokenizerSpec* spec) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object()) return Unsupported(path, "must be an object or null");
  const std::string type = TypeOf(node);
  const JsonReader reader(node, kSource, path + ".");
  if (type == "Sequence") {
    auto list = node.find("pretokenizers");
    if (list == node.end() || !list->is_array()) return Unsupported(path, "needs 'pretokenizers'");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          ParsePreTokenizer((*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]"), spec));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    spec->byte_level = true;
    ASSIGN_OR_RETURN(spec->add_prefix_space, reader.Bool("add_prefix_space", false));
    ASSIGN_OR_RETURN(const bool use_regex, reader.Bool("use_regex", true));
    if (use_regex) RETURN_IF_ERROR(SetSplit(SplitPattern::kGpt2, path, spec));
    return absl::OkStatus();
  }
  if (type == "Metaspace") return ParseMetaspace(reader, spec);
  if (type == "Split") {
    auto pattern = node.find("pattern");
    auto regex =
        pattern != node.end() && pattern->is_object() ? pattern->find("Regex") : node.end();
    if (pattern == node.end() || !pattern->is_object() || regex == pattern->end() ||
        !regex->is_string()) {
      return Unsupported(path + ".pattern", "must be {\"Regex\": ...}");
    }
    ASSIGN_OR_RETURN(const std::string behavior, reader.String("behavior", "Isolated"));
    ASSIGN_OR_RETURN(const bool invert, reader.Bool("invert", false));
    if (absl::AsciiStrToLower(behavior) != "isolated" || invert) {
      return Unsupported(path, "must have behavior Isolated and invert false");
    }
    auto recognized = RecognizeSplitPattern(regex->get<std::string>());
    if (!recognized.ok())
      return Unsupported(path + ".pattern", std::string(recognized.status().message()));
    return SetSplit(*recognized, path, spec);
  }
  return Unsupported(path + ".type", absl::StrCat("'", type, "' is not a supported pre-tokenizer"));
}

absl::Status ParseDecoder(const json& node, const std::string& path, DecoderSpec* spec) {
  if (!node.is_object()) return Unsupported(path, "must be an object");
  const std::string type = TypeOf(node);
  const JsonReader reader(node, kSource, path + ".");
  if (type == "Sequence") {
    auto list = node.find("decoders");
    if (list == node.end() || !list->is_array()) return Unsupported(path, "needs 'decoders'");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ParseDecoder((*list)[i], absl::StrCat(path, ".decoders[", i, "]"), spec));
    }
  } else if (type == "ByteLevel") {
    spec->byte_level = true;
  } else if (type == "ByteFallback") {
    spec->byte_fallback = true;
  } else if (type == "Fuse") {
    // Pieces are always fused.
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(std::string from, StringPattern(node, path));
    ASSIGN_OR_RETURN(std::string to, reader.String("content"));
    if (from.empty()) return Unsupported(path + ".pattern", "must not be empty");
    spec->replaces.emplace_back(std::move(from), std::move(to));
  } else if (type == "Strip") {
    ASSIGN_OR_RETURN(const std::string content, reader.String("content"));
    ASSIGN_OR_RETURN(const int64_t start, reader.Int("start", 0));
    ASSIGN_OR_RETURN(const int64_t stop, reader.Int("stop", 0));
    if (content != " " || stop != 0 || start < 0 || start > 16) {
      return Unsupported(path, "only Strip of leading spaces (content ' ', stop 0) is supported");
    }
    spec->strip_leading_spaces = static_cast<int>(start);
  } else if (type == "Metaspace") {
    PreTokenizerSpec metaspace;
    RETURN_IF_ERROR(ParseMetaspace(reader, &metaspace));
    spec->replaces.emplace_back(metaspace.replacement, " ");
    spec->strip_first_space = metaspace.prepend != PreTokenizerSpec::Prepend::kNever;
  } else {
    return Unsupported(path + ".type", absl::StrCat("'", type, "' is not a supported decoder"));
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const json& root, int32_t max_id, std::vector<AddedToken>* out) {
  auto list = root.find("added_tokens");
  if (list == root.end() || list->is_null()) return absl::OkStatus();
  if (!list->is_array()) return Unsupported("added_tokens", "must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const JsonReader reader((*list)[i], kSource, absl::StrCat("added_tokens[", i, "]."));
    if (!(*list)[i].is_object())
      return Unsupported(absl::StrCat("added_tokens[", i, "]"), "must be an object");
    AddedToken token;
    ASSIGN_OR_RETURN(const int64_t id, reader.Int("id"));
    if (id < 0 || id >= max_id) {
      return reader.FieldError("id", absl::StrCat("is ", id, ", out of range [0, ", max_id, ")"));
    }
    token.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(token.content, reader.String("content"));
    if (token.content.empty()) return reader.FieldError("content", "must not be empty");
    ASSIGN_OR_RETURN(token.lstrip, reader.Bool("lstrip", false));
    ASSIGN_OR_RETURN(token.rstrip, reader.Bool("rstrip", false));
    ASSIGN_OR_RETURN(token.single_word, reader.Bool("single_word", false));
    ASSIGN_OR_RETURN(token.normalized, reader.Bool("normalized", false));
    ASSIGN_OR_RETURN(token.special, reader.Bool("special", false));
    out->push_back(std::move(token));
  }
  return absl::OkStatus();
}

// Ids of a TemplateProcessing "SpecialToken" item, looked up in its special_tokens table.
absl::Status TemplateSpecialIds(const json& processor, const json& item, const std::string& path,
                                std::vector<int32_t>* ids) {
  auto name = item.find("id");
  auto table = processor.find("special_tokens");
  if (name == item.end() || !name->is_string() || table == processor.end() || !table->is_object()) {
    return Unsupported(path, "SpecialToken needs an id listed in special_tokens");
  }
  auto entry = table->find(name->get<std::string>());
  auto entry_ids = entry != table->end() && entry->is_object() ? entry->find("ids") : table->end();
  if (entry == table->end() || !entry->is_object() || entry_ids == entry->end() ||
      !entry_ids->is_array()) {
    return Unsupported(path, "SpecialToken needs an id listed in special_tokens");
  }
  for (const auto& id : *entry_ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24)) {
      return Unsupported(path, "has a bad special token id");
    }
    ids->push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return absl::OkStatus();
}

absl::Status ParsePostProcessor(const json& node, const std::string& path, HfTokenizerSpec* spec) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object()) return Unsupported(path, "must be an object or null");
  const std::string type = TypeOf(node);
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    auto list = node.find("processors");
    if (list == node.end() || !list->is_array()) return Unsupported(path, "needs 'processors'");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          ParsePostProcessor((*list)[i], absl::StrCat(path, ".processors[", i, "]"), spec));
    }
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return Unsupported(path + ".type",
                       absl::StrCat("'", type, "' is not a supported post-processor"));
  }
  auto single = node.find("single");
  if (single == node.end() || !single->is_array()) return Unsupported(path, "needs 'single'");
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    const std::string item_path = absl::StrCat(path, ".single[", i, "]");
    if (!item.is_object()) return Unsupported(item_path, "must be an object");
    if (auto special = item.find("SpecialToken"); special != item.end() && special->is_object()) {
      RETURN_IF_ERROR(TemplateSpecialIds(node, *special, item_path,
                                         seen_sequence ? &spec->suffix_ids : &spec->prefix_ids));
    } else if (item.contains("Sequence")) {
      seen_sequence = true;
    } else {
      return Unsupported(item_path, "must be a SpecialToken or a Sequence");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HfTokenizerSpec> ParseTokenizerJson(std::string_view json_text) {
  ASSIGN_OR_RETURN(const json root, ParseJsonStrict(json_text, kSource));
  if (!root.is_object()) return Unsupported("(root)", "must be an object");
  HfTokenizerSpec spec;
  static const json kNull;
  auto field = [&](const char* key) -> const json& {
    auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  RETURN_IF_ERROR(ParseNormalizer(field("normalizer"), "normalizer", &spec.normalizers));
  RETURN_IF_ERROR(ParsePreTokenizer(field("pre_tokenizer"), "pre_tokenizer", &spec.pre_tokenizer));
  if (field("decoder").is_null()) return Unsupported("decoder", "must be set");
  RETURN_IF_ERROR(ParseDecoder(field("decoder"), "decoder", &spec.decoder));
  const json& model = field("model");
  if (!model.is_object()) return Unsupported("model", "must be an object");
  if (const std::string type = TypeOf(model); !type.empty() && type != "BPE") {
    return Unsupported("model.type", absl::StrCat("'", type, "' is not supported (only BPE)"));
  }
  const bool byte_level = spec.pre_tokenizer.byte_level || spec.decoder.byte_level;
  ASSIGN_OR_RETURN(spec.model, BpeModel::FromJson(model, byte_level, kSource));
  const json& added = field("added_tokens");
  // Added tokens may extend the vocabulary, by at most one id each.
  const int32_t max_id =
      spec.model.num_ids() + static_cast<int32_t>(added.is_array() ? added.size() : 0);
  RETURN_IF_ERROR(ParseAddedTokens(root, max_id, &spec.added_tokens));
  RETURN_IF_ERROR(ParsePostProcessor(field("post_processor"), "post_processor", &spec));
  for (const int32_t id : spec.prefix_ids) {
    if (id >= max_id)
      return Unsupported("post_processor", "references an id beyond the vocabulary");
  }
  for (const int32_t id : spec.suffix_ids) {
    if (id >= max_id)
      return Unsupported("post_processor", "references an id beyond the vocabulary");
  }
  return spec;
}

}  // namespace iquest
