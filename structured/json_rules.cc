#include "structured/json_rules.h"

#include <bit>
#include <map>

#include "absl/strings/str_cat.h"
#include "structured/json_numbers.h"
#include "structured/json_schema.h"
#include "structured/utf8_ranges.h"

namespace iquest {
namespace {

using E = GrammarExpr;

// RFC 3339 / RFC 4122 / dotted-quad forms, each exact (see docs/structured-output.md).
const std::map<std::string, std::string, std::less<>> kFormats = {
    {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
    {"ipv4",
     "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}"
     "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"},
    {"date",
     "([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
     "|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
     "|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29"},
    {"time",
     "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]"
     ")"},
};

}  // namespace

std::optional<std::string> JsonRules::FormatRegex(std::string_view format) {
  if (format == "date-time") {
    return absl::StrCat("(", kFormats.at("date"), ")T", kFormats.at("time"));
  }
  auto it = kFormats.find(format);
  if (it == kFormats.end()) return std::nullopt;
  return it->second;
}

int32_t JsonRules::Shared(const std::string& name, const std::function<E()>& body) {
  auto it = shared_.find(name);
  if (it != shared_.end()) return it->second;
  const int32_t id = b_.Declare(name);
  shared_[name] = id;
  b_.Define(id, body());
  return id;
}
GrammarExpr JsonRules::W() {
  // Nothing, one space, or one newline and an indentation: every layout json.dumps and the
  // pretty printers write, and no run of blank lines a sampler could wander into.
  return E::Ref(Shared("ws", [] {
    ByteSet indent;
    indent.Add(' ');
    indent.Add('\t');
    return E::Optional(
        E::Alt({E::Literal(" "),
                E::Seq({E::Literal("\n"), E::Repeat(E::Bytes(indent), 0, kMaxJsonIndent)})}));
  }));
}
GrammarExpr JsonRules::Char() {
  return E::Ref(Shared("char", [] {
    ByteSet simple;
    for (char c : std::string_view("\"\\/bfnrt")) simple.Add(static_cast<uint8_t>(c));
    const E hex = E::Bytes([] {
      ByteSet h = ByteSet::Range('0', '9');
      h.AddAll(ByteSet::Range('a', 'f'));
      h.AddAll(ByteSet::Range('A', 'F'));
      return h;
    }());
    ByteSet not_d = ByteSet::Range('0', '9');
    not_d.AddAll(ByteSet::Range('a', 'c'));
    not_d.AddAll(ByteSet::Range('e', 'f'));
    not_d.AddAll(ByteSet::Range('A', 'C'));
    not_d.AddAll(ByteSet::Range('E', 'F'));
    ByteSet d;
    d.Add('d');
    d.Add('D');
    // \uXXXX without surrogate halves: one escape, one character.
    const E u = E::Alt({E::Seq({E::Bytes(not_d), hex, hex, hex}),
                        E::Seq({E::Bytes(d), E::Bytes(ByteSet::Range('0', '7')), hex, hex})});
    CodepointSet specials;
    specials.Add(0, 0x1F);
    specials.Add('"', '"');
    specials.Add('\\', '\\');
    return E::Alt({Utf8Expr(specials.Complement()), E::Seq({E::Literal("\\"), E::Bytes(simple)}),
                   E::Seq({E::Literal("\\u"), u})});
  }));
}
int32_t JsonRules::String() {
  return Shared("string", [this] {
    return E::Seq({E::Literal("\""), E::Repeat(Char(), 0, -1), E::Literal("\"")});
  });
}
int32_t JsonRules::Number() {
  return Shared("number", [] {
    const E digit = E::Bytes(ByteSet::Range('0', '9'));
    ByteSet e;
    e.Add('e');
    e.Add('E');
    ByteSet sign;
    sign.Add('+');
    sign.Add('-');
    return E::Seq(
        {IntegerRangeExpr(std::nullopt, std::nullopt),
         E::Optional(E::Seq({E::Literal("."), E::Repeat(digit, 1, kMaxFractionDigits)})),
         E::Optional(E::Seq({E::Bytes(e), E::Optional(E::Bytes(sign)), E::Repeat(digit, 1, 2)}))});
  });
}
int32_t JsonRules::Value() {
  auto it = shared_.find("value");
  if (it != shared_.end()) return it->second;
  const int32_t value = b_.Declare("value");
  shared_["value"] = value;
  const int32_t object = Object();
  const int32_t array = b_.Declare("array");
  b_.Define(array,
            E::Seq({E::Literal("["), W(),
                    E::Optional(E::Seq(
                        {E::Ref(value), W(),
                         E::Repeat(E::Seq({E::Literal(","), W(), E::Ref(value), W()}), 0, -1)})),
                    E::Literal("]")}));
  b_.Define(value, E::Alt({E::Ref(object), E::Ref(array), E::Ref(String()), E::Ref(Number()),
                           E::Literal("true"), E::Literal("false"), E::Literal("null")}));
  return value;
}
int32_t JsonRules::Object() {
  auto it = shared_.find("object");
  if (it != shared_.end()) return it->second;
  const int32_t object = b_.Declare("object");
  shared_["object"] = object;
  const int32_t value = Value();
  const E member = E::Seq({E::Ref(String()), W(), E::Literal(":"), W(), E::Ref(value), W()});
  b_.Define(object,
            E::Seq({E::Literal("{"), W(),
                    E::Optional(
                        E::Seq({member, E::Repeat(E::Seq({E::Literal(","), W(), member}), 0, -1)})),
                    E::Literal("}")}));
  return object;
}

GrammarExpr JsonRules::KeyNotIn(const std::vector<std::string>& names) {
  CodepointSet plain;
  plain.Add(0, 0x1F);
  plain.Add('"', '"');
  plain.Add('\\', '\\');
  plain = plain.Complement();
  // A trie of the names' characters; node 0 is the root.
  struct Node {
    std::map<char32_t, int> children;
    bool terminal = false;
  };
  std::vector<Node> trie(1);
  for (const std::string& name : names) {
    int node = 0;
    for (size_t i = 0; i < name.size();) {
      char32_t cp = 0;
      const int len = DecodeUtf8Char(name, i, &cp);
      if (len == 0) break;  // Not UTF-8: no generated key can equal it.
      i += static_cast<size_t>(len);
      auto it = trie[node].children.find(cp);
      if (it == trie[node].children.end()) {
        trie.push_back(Node());
        it = trie[node].children.emplace(cp, static_cast<int>(trie.size()) - 1).first;
      }
      node = it->second;
    }
    trie[node].terminal = true;
  }
  const E any_tail = E::Seq({E::Repeat(Utf8Expr(plain), 0, -1), E::Literal("\"")});
  std::vector<int32_t> rules(trie.size());
  for (size_t i = 0; i < trie.size(); ++i)
    rules[i] = b_.Declare(absl::StrCat("key-", ++num_helpers_));
  for (size_t i = 0; i < trie.size(); ++i) {
    std::vector<E> choices;
    if (!trie[i].terminal) choices.push_back(E::Literal("\""));
    CodepointSet taken;
    for (const auto& [cp, child] : trie[i].children) {
      taken.Add(cp, cp);
      std::string bytes;
      AppendUtf8Char(cp, bytes);
      if (plain.Contains(cp)) choices.push_back(E::Seq({E::Literal(bytes), E::Ref(rules[child])}));
    }
    const CodepointSet rest = taken.Complement().Intersect(plain);
    if (!rest.empty()) choices.push_back(E::Seq({Utf8Expr(rest), any_tail}));
    b_.Define(rules[i], E::Alt(std::move(choices)));
  }
  return E::Seq({E::Literal("\""), E::Ref(rules[0])});
}

GrammarExpr JsonRules::UniqueArray(const std::vector<std::string>& literals, int32_t lo,
                                   int32_t max_count) {
  const int k = static_cast<int>(literals.size());
  const std::string base = absl::StrCat("uniq-", ++num_helpers_);
  std::vector<int32_t> rules(size_t{1} << k);
  for (size_t m = 0; m < rules.size(); ++m) rules[m] = b_.Declare(absl::StrCat(base, "-", m));
  for (size_t m = 0; m < rules.size(); ++m) {
    const int used = std::popcount(m);
    std::vector<E> choices;
    if (used >= lo) choices.push_back(E::Empty());
    if (used < max_count) {
      for (int v = 0; v < k; ++v) {
        if (m & (size_t{1} << v)) continue;
        std::vector<E> seq;
        if (used > 0) seq = {E::Literal(","), W()};
        seq.push_back(E::Literal(literals[static_cast<size_t>(v)]));
        seq.push_back(W());
        seq.push_back(E::Ref(rules[m | (size_t{1} << v)]));
        choices.push_back(E::Seq(std::move(seq)));
      }
    }
    b_.Define(rules[m], E::Alt(std::move(choices)));
  }
  return E::Seq({E::Literal("["), W(), E::Ref(rules[0]), E::Literal("]")});
}

}  // namespace iquest
