// Small tokenizer.json documents for the tokenizer tests: a byte-level BPE (GPT-2/Llama-3 style)
// and a SentencePiece-style BPE with byte fallback (Llama-2 style), built in code.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/tokenizer/bpe_model.h"
#include "model/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace iquest::testing {

// The byte-level form of a raw byte string (what tokenizer.json vocabularies store).
inline std::string ByteLevel(const std::string& bytes) {
  std::string out;
  for (char c : bytes) unicode::AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &out);
  return out;
}

// 256 byte tokens (ids 0..255), then one token per merge result in order, then added tokens
// <|bos|> (special), <|eos|> (special), <tool> (not special).
inline nlohmann::json ByteLevelTokenizerJson(bool pair_merges = false, bool ignore_merges = false) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevel(std::string(1, static_cast<char>(b)))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},   {"l", "l"},     {"he", "ll"}, {"hell", "o"}, {" ", "w"},   {"o", "r"},
      {" w", "or"}, {" wor", "ld"}, {"l", "d"},   {" ", " "},    {"  ", "  "}, {"\xC3", "\xA9"},
  };
  nlohmann::json merge_list = nlohmann::json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    const std::string merged = ByteLevel(a + b);
    if (!vocab.contains(merged)) vocab[merged] = id++;
    if (pair_merges) {
      merge_list.push_back({ByteLevel(a), ByteLevel(b)});
    } else {
      merge_list.push_back(ByteLevel(a) + " " + ByteLevel(b));
    }
  }
  vocab[ByteLevel("hellox")] = id++;  // Reachable only through ignore_merges.
  nlohmann::json added = nlohmann::json::array();
  auto add = [&](const std::string& content, bool special) {
    added.push_back({{"id", id++},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  };
  add("<|bos|>", true);
  add("<|eos|>", true);
  add("<tool>", false);
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"ignore_merges", ignore_merges},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
}

// Llama-2 style: "▁"-prefixed pieces, <0x00>..<0xFF> byte tokens, <unk>/<s>/</s>, BOS added by a
// TemplateProcessing post-processor.
inline nlohmann::json SpmStyleTokenizerJson() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int id = 259;
  for (const char* piece : {"\u2581", "a", "b", "c", "h", "i", "\u2581h", "\u2581hi", "\u00e9"}) {
    vocab[piece] = id++;
  }
  return {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\u2581"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", {"\u2581 h", "\u2581h i"}}}},
  };
}

}  // namespace iquest::testing
