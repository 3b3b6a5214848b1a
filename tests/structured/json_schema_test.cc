// JSON schema -> grammar: bounds decided exactly (every integer in a window, decimals around the
// bounds), texts drawn from the grammar parse as JSON with the required shape, unsupported
// keywords refused by name. The broad check (60 schemas, python3-jsonschema as the validator) is
// tests/structured/json_schema_samples_test.py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "nlohmann/json.hpp"
#include "tests/structured/structured_testing.h"

namespace iquest {
namespace {

using ::iquest::testing::Accepts;
using ::iquest::testing::Compile;
using ::iquest::testing::Sample;
using ::testing::HasSubstr;

std::shared_ptr<GrammarMatcher> Schema(const std::string& schema) {
  auto m = Compile(ConstraintSpec::kJsonSchema, schema);
  EXPECT_TRUE(m.ok()) << schema << ": " << m.status();
  return m.ok() ? *m : nullptr;
}

TEST(JsonSchemaTest, IntegerBoundsAreExact) {
  struct Case {
    const char* schema;
    int64_t lo, hi;  // Inclusive.
  };
  const std::vector<Case> cases = {
      {R"({"type":"integer","minimum":-17,"maximum":305})", -17, 305},
      {R"({"type":"integer","exclusiveMinimum":-1,"exclusiveMaximum":1000})", 0, 999},
      {R"({"type":"integer","minimum":7})", 7, INT64_MAX},
      {R"({"type":"integer","maximum":-3})", INT64_MIN, -3},
      {R"({"type":"integer","minimum":0.5,"maximum":99.5})", 1, 99},
      {R"({"type":"integer","minimum":-1000,"maximum":-999})", -1000, -999},
  };
  for (const Case& c : cases) {
    auto m = Schema(c.schema);
    ASSERT_NE(m, nullptr);
    for (int64_t v = -1200; v <= 1200; ++v) {
      ASSERT_EQ(Accepts(*m, std::to_string(v)), v >= c.lo && v <= c.hi) << c.schema << " " << v;
    }
    EXPECT_FALSE(Accepts(*m, "007"));
    EXPECT_FALSE(Accepts(*m, "-0"));
  }
}

TEST(JsonSchemaTest, NumberBoundsAreExact) {
  auto m = Schema(R"({"type":"number","minimum":-2,"exclusiveMaximum":3})");
  ASSERT_NE(m, nullptr);
  for (const char* text : {"-2", "-2.0", "-1.999", "0", "0.5", "2.9999", "1", "-0.25"}) {
    EXPECT_TRUE(Accepts(*m, text)) << text;
  }
  for (const char* text : {"-2.001", "3", "3.0", "3.5", "-3", "1e2", "01", "1.", ".5"}) {
    EXPECT_FALSE(Accepts(*m, text)) << text;
  }
  auto positive = Schema(R"({"type":"number","exclusiveMinimum":0})");
  EXPECT_TRUE(Accepts(*positive, "0.001"));
  EXPECT_FALSE(Accepts(*positive, "0"));
  EXPECT_FALSE(Accepts(*positive, "0.000"));
  EXPECT_FALSE(Accepts(*positive, "-1"));
}

TEST(JsonSchemaTest, ObjectsKeepOrderRequiredAndNoExtras) {
  auto m = Schema(R"({"type":"object","properties":{"a":{"type":"integer"},
      "b":{"type":"string","maxLength":3},"c":{"type":"boolean"}},"required":["b"]})");
  ASSERT_NE(m, nullptr);
  for (const char* ok : {R"({"b":"x"})", R"({"a":1,"b":"xyz","c":true})",
                         R"({ "b" : "" , "c":false })", "{\n  \"a\": -5,\n  \"b\": \"\\n\"\n}"}) {
    EXPECT_TRUE(Accepts(*m, ok)) << ok;
  }
  for (const char* bad : {R"({})", R"({"a":1})", R"({"b":"abcd"})", R"({"b":"x","d":1})",
                          R"({"c":true,"b":"x"})", R"({"b":"x",})"}) {
    EXPECT_FALSE(Accepts(*m, bad)) << bad;
  }
}

TEST(JsonSchemaTest, AdditionalPropertiesNeverRepeatAListedKey) {
  auto m = Schema(R"({"type":"object","properties":{"a":{"type":"integer"}},
      "additionalProperties":{"type":"string"}})");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(Accepts(*m, R"({"a":1,"ab":"x","":"y","b":"z"})"));
  EXPECT_FALSE(Accepts(*m, R"({"a":1,"a":"x"})"));
  EXPECT_FALSE(Accepts(*m, R"({"a":"x"})"));
}

TEST(JsonSchemaTest, ArraysCountsPrefixesAndUniqueness) {
  auto m = Schema(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(Accepts(*m, "[1]"));
  EXPECT_TRUE(Accepts(*m, "[1, 2]"));
  EXPECT_TRUE(Accepts(*m, "[1,2,3]"));
  EXPECT_FALSE(Accepts(*m, "[1,2,3,4]"));
  auto prefix = Schema(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"null"}],
      "items":false,"minItems":1})");
  EXPECT_TRUE(Accepts(*prefix, R"(["a"])"));
  EXPECT_TRUE(Accepts(*prefix, R"(["a",null])"));
  EXPECT_FALSE(Accepts(*prefix, R"(["a",null,1])"));
  EXPECT_FALSE(Accepts(*prefix, "[]"));
  auto unique = Schema(R"({"type":"array","items":{"enum":["x","y","z"]},"uniqueItems":true})");
  EXPECT_TRUE(Accepts(*unique, R"(["z","x"])"));
  EXPECT_FALSE(Accepts(*unique, R"(["x","x"])"));
  EXPECT_TRUE(Accepts(*unique, "[]"));
}

TEST(JsonSchemaTest, RefsAnyOfEnumsAndFormats) {
  auto m = Schema(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},
      "$ref":"#/$defs/node"})");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(Accepts(*m, R"({"v":1,"next":{"v":2,"next":null}})"));
  EXPECT_FALSE(Accepts(*m, R"({"v":1,"next":{"v":2}})"));
  auto e = Schema(R"({"enum":["a\"b", 3, null, {"k":[1]}]})");
  EXPECT_TRUE(Accepts(*e, R"("a\"b")"));
  EXPECT_TRUE(Accepts(*e, R"({"k":[1]})"));
  EXPECT_FALSE(Accepts(*e, "4"));
  auto date = Schema(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(Accepts(*date, R"("2024-02-29")"));
  EXPECT_FALSE(Accepts(*date, R"("2023-02-29")"));
  EXPECT_FALSE(Accepts(*date, R"("1900-02-29")"));
  EXPECT_TRUE(Accepts(*date, R"("2000-02-29")"));
  EXPECT_FALSE(Accepts(*date, R"("2024-04-31")"));
  EXPECT_FALSE(Accepts(*date, R"("0000-01-01")"));
  auto pattern = Schema(R"({"type":"string","pattern":"^[a-z]+\"\\\\$"})");
  EXPECT_TRUE(Accepts(*pattern, R"("ab\"\\")"));  // The JSON text of ab"\ .
}

TEST(JsonSchemaTest, DrawnTextsParseAsJsonOfTheRightShape) {
  auto m = Schema(R"({"type":"object","properties":{"id":{"type":"integer","minimum":1},
      "tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":4},"maxItems":3},
      "score":{"type":["number","null"]}},"required":["id","tags"]})");
  ASSERT_NE(m, nullptr);
  std::mt19937 rng(11);
  for (int i = 0; i < 200; ++i) {
    std::string text;
    ASSERT_TRUE(Sample(*m, rng, &text, 0.5, 20000));
    const auto doc = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << nlohmann::json(text).dump();
    ASSERT_TRUE(doc["id"].is_number_integer()) << text;
    EXPECT_GE(doc["id"].get<int64_t>(), 1);
    ASSERT_TRUE(doc["tags"].is_array());
    EXPECT_LE(doc["tags"].size(), 3u);
    for (const auto& tag : doc["tags"]) {
      const std::string s = tag.get<std::string>();
      // Lengths count characters.
      size_t chars = 0;
      for (char c : s) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      EXPECT_GE(chars, 1u) << text;
      EXPECT_LE(chars, 4u) << text;
    }
  }
}

TEST(JsonSchemaTest, JsonObjectIsAnyObject) {
  auto m = Compile(ConstraintSpec::kJsonObject, "");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(Accepts(**m, R"({"a":[1,{"b":null}],"c":"\u00e9"})"));
  EXPECT_FALSE(Accepts(**m, "[1]"));
  EXPECT_FALSE(Accepts(**m, R"({"a":})"));
}

TEST(JsonSchemaTest, UnsupportedKeywordsAreRefusedByName) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"type":"string","not":{}})", "keyword 'not'"},
      {R"({"type":"integer","multipleOf":3})", "keyword 'multipleOf'"},
      {R"({"type":"object","patternProperties":{}})", "keyword 'patternProperties'"},
      {R"({"type":"number","minimum":0.5})", "bounds on type number"},
      {R"({"type":"string","format":"email"})", "format 'email'"},
      {R"({"type":"array","items":{"type":"integer"},"uniqueItems":true})", "uniqueItems"},
      {R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "allOf"},
      {R"({"$ref":"http://example.com/s"})", "$ref"},
      {R"({"$ref":"#/$defs/missing"})", "points at nothing"},
      {R"({"type":"integer","minimum":5,"maximum":4})", "leave no value"},
      {R"({"type":"string","minLength":5,"maxLength":4})", "maxLength"},
      {R"({"type":"object","properties":{"a":{}},"required":["b"]})", "required property 'b'"},
      {R"({"type":"wat"})", "unknown type 'wat'"},
      {R"j({"type":"string","pattern":"(?=x)"})j", "lookaround"},
      {R"(false)", "matches nothing"},
      {R"({"a":)", "not valid JSON"},
      {R"({"type":"object","properties":{"x":{"type":"string","not":1}}})", "/properties/x"},
  };
  for (const auto& [schema, expected] : cases) {
    auto m = Compile(ConstraintSpec::kJsonSchema, schema);
    ASSERT_FALSE(m.ok()) << schema;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << schema;
    EXPECT_THAT(m.status().message(), HasSubstr(expected)) << schema;
  }
}

}  // namespace
}  // namespace iquest
