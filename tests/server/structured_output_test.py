"""Structured output end to end: the real server with a random-weight tiny model (which writes
garbage when unconstrained), sampled at temperature 1 with n = 4, and independent checkers:
python3-jsonschema for JSON schemas, Python's re.fullmatch for regexes, Python's own parser (ast)
and a hand-written recursive-descent parser for GBNF grammars.

Every sample must finish with finish_reason STOP (the grammar ended it, or EOS where it may end)
and pass its checker. The KV pool is small (128 blocks of 4), so n = 4 samples of a few hundred
tokens preempt each other: a preempted sample must resume in its grammar.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/structured_output_test.py
"""

import ast
import json
import random
import re
import tempfile
import threading
import unittest

import grpc
import jsonschema

from harness import Server, collect, greedy, make_model, offline_greedy, pb

MODEL_DIR = None
MAX_TOKENS = 440  # Prompt + max_tokens within the tiny model's 512 positions.


def setUpModule():
    global MODEL_DIR
    MODEL_DIR = make_model(tempfile.mkdtemp(prefix="iquest-structured-"))


def short_string(**extra):
    # Strings are bounded: over a 512-token vocabulary a random model closes an unbounded string
    # about once every 500 tokens.
    return {"type": "string", "maxLength": 8, **extra}


# Written for the test: every supported keyword, alone and combined.
HAND_SCHEMAS = [
    {"type": "boolean"},
    {"type": "null"},
    {"type": "integer"},
    {"type": "number"},
    short_string(),
    {"type": "string", "minLength": 3, "maxLength": 5},
    {"type": "integer", "minimum": -50, "maximum": 50},
    {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 7},
    {"type": "integer", "minimum": 1000},
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "number", "exclusiveMinimum": -3, "maximum": 2},
    {"enum": ["red", "green", "blue", 7, None, True]},
    {"const": {"fixed": [1, 2, "three"]}},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "format": "ipv4"},
    {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    {"type": "string", "pattern": "(ab|cd)+x?"},
    {"type": ["integer", "null"]},
    {"type": ["string", "boolean"], "maxLength": 4},
    {"anyOf": [{"type": "integer", "maximum": 0}, short_string()]},
    {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "null"}, "maxItems": 3}]},
    {"allOf": [{"type": "integer", "minimum": 3, "maximum": 9}]},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 6},
    {"type": "array", "items": short_string(), "minItems": 2, "maxItems": 4},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False},
    {"type": "array", "prefixItems": [{"const": "head"}], "items": {"type": "number"},
     "maxItems": 4},
    {"type": "array", "items": {"enum": ["a", "b", "c", "d"]}, "uniqueItems": True},
    {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 1},
    {"type": "object", "properties": {"name": short_string(), "age": {
        "type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"]},
    {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"},
                                      "c": {"type": "integer"}}},
    {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {
        "type": "array", "items": short_string(), "maxItems": 3}}, "required": ["tags"],
     "additionalProperties": False},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"},
                                      "where": {"type": "string", "format": "ipv4"}},
     "required": ["when", "where"]},
    {"type": "object", "properties": {"outer": {"type": "object", "properties": {
        "inner": {"type": "object", "properties": {"leaf": {"type": "boolean"}},
                  "required": ["leaf"]}}, "required": ["inner"]}}, "required": ["outer"]},
    {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {
        "type": "number", "minimum": 0, "maximum": 10}}, "required": ["kind", "r"]},
    {"anyOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
         "required": ["kind", "x"]},
        {"type": "object", "properties": {"kind": {"const": "b"}, "y": short_string()},
         "required": ["kind", "y"]}]},
    {"$defs": {"point": {"type": "object", "properties": {
        "x": {"type": "integer", "minimum": -9, "maximum": 9},
        "y": {"type": "integer", "minimum": -9, "maximum": 9}}, "required": ["x", "y"]}},
     "type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 3},
    {"definitions": {"node": {"type": "object", "properties": {
        "v": {"type": "integer", "minimum": 0, "maximum": 99},
        "kids": {"type": "array", "items": {"$ref": "#/definitions/node"}, "maxItems": 2}},
        "required": ["v"]}}, "$ref": "#/definitions/node"},
    {"type": "object", "properties": {"status": {"enum": ["ok", "error"]},
                                      "code": {"type": "integer", "minimum": 100, "maximum": 599},
                                      "detail": {"type": ["string", "null"], "maxLength": 6}},
     "required": ["status", "code", "detail"]},
    {"title": "annotated", "description": "annotations are ignored", "type": "object",
     "properties": {"x": {"type": "integer", "default": 3, "examples": [1]}},
     "required": ["x"], "$comment": "no effect"},
    {"type": "object", "properties": {"matrix": {"type": "array", "maxItems": 2, "items": {
        "type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": 0,
                                                  "maximum": 9}}}}, "required": ["matrix"]},
    {"type": "object", "properties": {"flag": {"type": "boolean"}},
     "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}},
    {"type": "string", "format": "time"},
    {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}},
     "required": ["ts"]},
]


def generated_schemas(count, seed):
    """Objects of random shape from a pool of leaf schemas, nested up to two levels."""
    rng = random.Random(seed)
    leaves = [{"type": "boolean"}, {"type": "integer", "minimum": -20, "maximum": 20},
              short_string(), {"enum": ["x", "y", 3]}, {"type": "null"},
              {"type": "number", "minimum": -1, "maximum": 1},
              {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 5},
               "maxItems": 3},
              {"type": "string", "pattern": "[a-f0-9]{2,4}"}, {"type": ["boolean", "null"]}]

    def obj(depth):
        names = rng.sample(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"],
                           rng.randint(1, 4))
        props = {}
        for name in names:
            props[name] = obj(depth + 1) if depth < 2 and rng.random() < 0.25 else \
                rng.choice(leaves)
        required = [n for n in names if rng.random() < 0.6]
        return {"type": "object", "properties": props, "required": required}

    return [obj(0) for _ in range(count)]


SCHEMAS = HAND_SCHEMAS + generated_schemas(20, seed=5)


def run(server, prompt, n=4, seed=None, max_tokens=MAX_TOKENS, **constraint):
    """The n samples' texts and their last responses' finish reasons."""
    sampling = pb.SamplingParams(temperature=1.0, max_tokens=max_tokens, n=n, **constraint)
    if seed is not None:
        sampling.seed = seed
    texts, reasons = [""] * n, [None] * n
    for response in server.stub.Generate(pb.GenerateRequest(text=prompt, sampling=sampling),
                                         timeout=120):
        texts[response.index] += response.text
        if response.finish_reason:
            reasons[response.index] = response.finish_reason
    return texts, reasons


class StructuredOutputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(MODEL_DIR)

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, cls.server.logs()

    def assert_stopped(self, reasons, what):
        self.assertEqual(reasons, [pb.FINISH_REASON_STOP_TOKEN] * len(reasons), what)

    def test_json_schemas_validate_with_python_jsonschema(self):
        self.assertGreaterEqual(len(SCHEMAS), 50)
        checked = 0
        for i, schema in enumerate(SCHEMAS):
            with self.subTest(schema=i):
                texts, reasons = run(self.server, "data:", seed=100 + i,
                                     json_schema=json.dumps(schema))
                self.assert_stopped(reasons, (schema, texts))
                validator = jsonschema.Draft202012Validator(
                    schema, format_checker=jsonschema.draft202012_format_checker)
                for text in texts:
                    value = json.loads(text)
                    errors = [e.message for e in validator.iter_errors(value)]
                    self.assertEqual(errors, [], (schema, text))
                    checked += 1
        self.assertEqual(checked, 4 * len(SCHEMAS))
        self.server.wait_kv_free()

    def test_regex_outputs_fullmatch(self):
        patterns = [r"[0-9]{3}-[0-9]{4}", r"(yes|no|maybe)", r"[a-z]+@[a-z]+\.(com|org)",
                    r"\d+(\.\d{1,2})?", r"#[0-9a-fA-F]{6}", r"(ab)*c{2,3}", r"[A-Z][a-z]{0,6}",
                    r"\w{2,5} \w{2,5}", r"[^a-z\n]{1,5}", r"(0|[1-9][0-9]{0,3})(,[0-9]{3})*",
                    r"\(\d{3}\) \d{3}-\d{4}", r"x{,3}y"]
        for i, pattern in enumerate(patterns):
            with self.subTest(pattern=pattern):
                texts, reasons = run(self.server, "text:", seed=7 + i, regex=pattern)
                self.assert_stopped(reasons, texts)
                for text in texts:
                    self.assertIsNotNone(re.fullmatch(pattern, text), (pattern, text))

    def test_choice_outputs_are_one_of_the_choices(self):
        choices = ["positive", "negative", "neutral", "posit", "n/a", "día"]
        seen = set()
        for seed in range(6):
            texts, reasons = run(self.server, "label:", seed=seed,
                                 choice=pb.ChoiceConstraint(choices=choices))
            self.assert_stopped(reasons, texts)
            for text in texts:
                self.assertIn(text, choices)
                seen.add(text)
        self.assertGreater(len(seen), 1)  # Temperature 1 on garbage logits: not one answer.

    def test_gbnf_outputs_parse_with_independent_parsers(self):
        arithmetic = r"""
            root ::= expr
            expr ::= term (("+" | "-") term){0,3}
            term ::= factor (("*" | "/") factor){0,2}
            factor ::= [1-9] [0-9]{0,2} | "(" expr ")"
        """
        for seed in range(5):
            texts, reasons = run(self.server, "calc:", seed=seed, grammar=arithmetic)
            self.assert_stopped(reasons, texts)
            for text in texts:
                tree = ast.parse(text, mode="eval")  # Python's parser, not ours.
                self.assertIsInstance(tree.body, (ast.BinOp, ast.Constant), text)

        # key=value lines; checked by a recursive-descent parser written here.
        config = r"""
            root ::= line{1,4}
            line ::= key "=" value "\n"
            key ::= [a-z] [a-z_]{0,5}
            value ::= number | "\"" [^"\n]{0,6} "\"" | "[" (number ("," number){0,2})? "]"
            number ::= "-"? [0-9]{1,4}
        """
        for seed in range(5):
            texts, reasons = run(self.server, "config:", seed=seed, grammar=config)
            self.assert_stopped(reasons, texts)
            for text in texts:
                self.assertTrue(parse_config(text), repr(text))

    def test_json_object_is_an_object(self):
        texts, reasons = run(self.server, "obj:", seed=3, max_tokens=MAX_TOKENS,
                             json_object=True)
        for text, reason in zip(texts, reasons):
            if reason == pb.FINISH_REASON_STOP_TOKEN:  # Free-form objects may run long.
                self.assertIsInstance(json.loads(text), dict)
            else:
                self.assertEqual(reason, pb.FINISH_REASON_LENGTH)
                self.assertTrue(text.lstrip().startswith("{"), text)

    def test_bad_constraints_are_invalid_argument_naming_the_field(self):
        cases = [
            (dict(json_schema='{"type": "string", "not": {}}'), "sampling.json_schema",
             "keyword 'not'"),
            (dict(json_schema="{not json"), "sampling.json_schema", "not valid JSON"),
            (dict(regex="(a"), "sampling.regex", "missing ')'"),
            (dict(regex="(a)\\1"), "sampling.regex", "backreferences"),
            (dict(grammar="root ::= root \"x\""), "sampling.grammar", "left-recursive"),
            (dict(grammar="start ::= \"x\""), "sampling.grammar", "root"),
            (dict(choice=pb.ChoiceConstraint(choices=[])), "sampling.choice", "1 to 1024"),
            (dict(json_schema="x" * (300 << 10)), "sampling.json_schema", "at most"),
            (dict(regex="a{1,100000}"), "sampling.regex", "repetition count"),
            (dict(regex=""), "sampling.regex", "only the empty text"),
            (dict(grammar='root ::= ""'), "sampling.grammar", "only the empty text"),
        ]
        for constraint, field, message in cases:
            with self.subTest(field=field, message=message):
                with self.assertRaises(grpc.RpcError) as error:
                    run(self.server, "x", n=1, **constraint)
                self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(field, error.exception.details())
                self.assertIn(message, error.exception.details())
        # The server kept serving and lost nothing.
        texts, reasons = run(self.server, "x", n=1, seed=1, regex="[0-9]{2}")
        self.assertRegex(texts[0], r"^[0-9]{2}$")
        self.server.wait_kv_free()

    def test_unconstrained_batch_mates_are_untouched(self):
        prompt = [1, 17, 99, 250, 31]
        expected = offline_greedy(MODEL_DIR, prompt, 24)
        results = {}

        def constrained(k):
            results[k] = run(self.server, "data:", seed=50 + k,
                             json_schema=json.dumps(HAND_SCHEMAS[29]))

        threads = [threading.Thread(target=constrained, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        ids, _, last = collect(self.server.stub.Generate(greedy(prompt, 24), timeout=60))
        for t in threads:
            t.join()
        self.assertEqual(ids, expected)
        for texts, reasons in results.values():
            self.assert_stopped(reasons, texts)
            for text in texts:
                jsonschema.validate(json.loads(text), HAND_SCHEMAS[29])

    def test_same_seed_same_outputs_and_the_grammar_is_compiled_once(self):
        def compiles(result):
            return sum(v for (name, labels), v in self.server.metrics().items()
                       if name == "iquest_grammar_compiles_total" and ("result", result) in labels)

        schema = json.dumps({"type": "array", "items": {"type": "integer"}, "maxItems": 77})
        compiled, cached = compiles("compiled"), compiles("cached")
        first = run(self.server, "again:", seed=77, json_schema=schema)
        second = run(self.server, "again:", seed=77, json_schema=schema)
        self.assertEqual(first, second)
        self.assertEqual(compiles("compiled"), compiled + 1)
        self.assertEqual(compiles("cached"), cached + 1)


class ToolCallTest(unittest.TestCase):
    """Tool calls over gRPC: "required" and a named function constrain the random model to calls
    valid under the tools' schemas; "auto" parses calls out of the text (here the text is forced
    into the Hermes format by a regex constraint, as a model trained for it would write)."""

    ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                            "b": {"type": "boolean"}}, "required": ["a", "b"]}
    ECHO = {"type": "object", "properties": {"text": short_string()}, "required": ["text"]}
    TOOLS = [{"type": "function", "function": {"name": "add", "parameters": ADD}},
             {"type": "function", "function": {"name": "echo", "parameters": ECHO}}]

    @classmethod
    def setUpClass(cls):
        cls.server = Server(MODEL_DIR, "--chat-template", "chatml")

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, cls.server.logs()

    def chat(self, seed, n=4, sampling=None, **choice):
        request = pb.GenerateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="call something")],
                              tools=json.dumps(self.TOOLS), **choice),
            sampling=sampling or pb.SamplingParams(temperature=1.0, max_tokens=400, n=n,
                                                   seed=seed))
        texts, calls, reasons = [""] * n, [[] for _ in range(n)], [None] * n
        for r in self.server.stub.Generate(request, timeout=120):
            texts[r.index] += r.text
            calls[r.index] += list(r.tool_calls)
            if r.finish_reason:
                reasons[r.index] = r.finish_reason
        return texts, calls, reasons

    def test_required_always_yields_calls_valid_under_their_schema(self):
        schemas = {"add": self.ADD, "echo": self.ECHO}
        for seed in range(5):
            texts, calls, reasons = self.chat(seed, tool_choice="required")
            self.assertEqual(reasons, [pb.FINISH_REASON_STOP_TOKEN] * 4, texts)
            for text, sample_calls in zip(texts, calls):
                self.assertEqual(text, "")
                self.assertGreaterEqual(len(sample_calls), 1)
                for call in sample_calls:
                    self.assertEqual(call.type, "function")
                    jsonschema.validate(json.loads(call.function.arguments),
                                        schemas[call.function.name])
            ids = [c.id for sample in calls for c in sample]
            self.assertEqual(len(ids), len(set(ids)))

    def test_named_function_is_the_one_call(self):
        texts, calls, reasons = self.chat(3, tool_choice_function="echo")
        for sample_calls in calls:
            self.assertEqual([c.function.name for c in sample_calls], ["echo"])
            jsonschema.validate(json.loads(sample_calls[0].function.arguments), self.ECHO)

    def test_auto_parses_calls_out_of_the_text(self):
        pattern = r'ok <tool_call>\{"name": "add", "arguments": \{"a": [1-9], "b": true\}\}' \
                  r'</tool_call> done'
        sampling = pb.SamplingParams(temperature=1.0, max_tokens=200, n=2, seed=1, regex=pattern)
        texts, calls, reasons = self.chat(1, n=2, sampling=sampling, tool_choice="auto")
        for text, sample_calls in zip(texts, calls):
            self.assertEqual(text, "ok  done")
            self.assertEqual(len(sample_calls), 1)
            self.assertEqual(sample_calls[0].function.name, "add")
            self.assertRegex(sample_calls[0].function.arguments, r'^\{"a":[1-9],"b":true\}$')

    def test_bad_tool_choices_are_invalid_argument(self):
        for choice, message in ((dict(tool_choice="sometimes"), "chat.tool_choice"),
                                (dict(tool_choice_function="nope"), "no tool named 'nope'")):
            with self.assertRaises(grpc.RpcError) as error:
                self.chat(0, n=1, **choice)
            self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(message, error.exception.details())
        with self.assertRaises(grpc.RpcError) as error:
            self.chat(0, n=1, tool_choice="required",
                      sampling=pb.SamplingParams(max_tokens=5, regex="a"))
        self.assertIn("cannot be combined", error.exception.details())


class PreemptionTest(unittest.TestCase):
    """A KV pool of 96 tokens: 4 samples of 40+ tokens each preempt one another, and every
    preempted sample resumes (by recompute) at its place in its grammar."""

    def test_preempted_samples_resume_in_their_grammar(self):
        server = Server(MODEL_DIR, "--num-kv-blocks", "24")
        try:
            pattern = r"[a-z]{40,50}( [0-9]{10,20}){1,2}"
            for seed in range(3):
                texts, reasons = run(server, "data:", seed=seed, max_tokens=90, regex=pattern)
                self.assertEqual(reasons, [pb.FINISH_REASON_STOP_TOKEN] * 4, texts)
                for text in texts:
                    self.assertIsNotNone(re.fullmatch(pattern, text), text)
            preemptions = sum(v for (name, _), v in server.metrics().items()
                              if name == "iquest_preemptions_total")
            self.assertGreater(preemptions, 0)
            server.wait_kv_free()
        finally:
            assert server.stop() == 0, server.logs()


def parse_config(text):
    """Recursive descent over root ::= line{1,4}; True when all of `text` parses."""
    pos = 0

    def take(pred, lo, hi):
        nonlocal pos
        start = pos
        while pos < len(text) and pos - start < hi and pred(text[pos]):
            pos += 1
        return pos - start >= lo

    def number():
        nonlocal pos
        if text.startswith("-", pos):
            pos += 1
        return take(str.isdigit, 1, 4) and (pos >= len(text) or not text[pos].isdigit())

    def value():
        nonlocal pos
        if text.startswith('"', pos):
            pos += 1
            take(lambda c: c not in '"\n', 0, 6)
            if not text.startswith('"', pos):
                return False
            pos += 1
            return True
        if text.startswith("[", pos):
            pos += 1
            if text.startswith("]", pos):
                pos += 1
                return True
            count = 0
            while True:
                if not number():
                    return False
                count += 1
                if text.startswith("]", pos):
                    pos += 1
                    return count <= 3
                if not text.startswith(",", pos):
                    return False
                pos += 1
        return number()

    lines = 0
    while pos < len(text):
        if not ("a" <= text[pos] <= "z"):
            return False
        pos += 1
        take(lambda c: "a" <= c <= "z" or c == "_", 0, 5)
        if not text.startswith("=", pos):
            return False
        pos += 1
        if not value() or not text.startswith("\n", pos):
            return False
        pos += 1
        lines += 1
    return 1 <= lines <= 4


if __name__ == "__main__":
    unittest.main()
