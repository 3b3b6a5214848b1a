"""The OpenAI-compatible HTTP API end to end: the real iquest-serve binary on 127.0.0.1, driven by
raw sockets and http.client (framing, limits, abuse) and by the official `openai` npm client
(tests/server/js), whose answers must equal the gRPC API's for the same seeded requests.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/http_test.py
"""

import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Server, make_model, pb, proc_status

MODEL_DIR = None
JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


def setUpModule():
    global MODEL_DIR
    MODEL_DIR = make_model(tempfile.mkdtemp(prefix="iquest-http-"))


def request(port, method, path, body=None, headers=None, conn=None, timeout=60):
    """(status, headers, parsed JSON or text) of one request; reuses `conn` if given."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    if own:
        conn.close()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return response.status, dict(response.getheaders()), parsed


def stream_events(port, path, body, headers=None):
    """The SSE events of a streaming request: parsed JSON objects, then the string "[DONE]"."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=json.dumps(dict(body, stream=True)), headers=headers or {})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("Content-Type") == "text/event-stream"
    events = []
    for line in response.read().decode().split("\n"):
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    conn.close()
    return events


def grpc_texts(server, request):
    """Text per sample index of a gRPC Generate call, and its last response."""
    texts, last = {}, None
    for r in server.stub.Generate(request, timeout=60):
        texts[r.index] = texts.get(r.index, "") + r.text
        last = r
    return texts, last


class HttpApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(MODEL_DIR, "--chat-template", "chatml", "--max-message-bytes",
                            "65536", "--http-idle-timeout-s", "3", "--max-queue", "512")
        cls.port = cls.server.http_port
        cls.auth = {"Content-Type": "application/json"}
        cls.golden_body = {"model": "m", "prompt": [1, 30, 31], "max_tokens": 6, "temperature": 0}
        cls.golden = cls.post("/v1/completions", dict(cls.golden_body, model=cls.model()))[2]

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, cls.server.logs()

    @classmethod
    def model(cls):
        return os.path.basename(MODEL_DIR.rstrip("/"))

    @classmethod
    def post(cls, path, body, headers=None, conn=None):
        return request(cls.port, "POST", path, body, cls.auth if headers is None else headers,
                       conn)

    def assert_healthy(self):
        """After every abuse: health OK, the golden request unchanged, every KV block free."""
        self.assertEqual(request(self.port, "GET", "/health")[0], 200)
        body = dict(self.golden_body, model=self.model())
        self.assertEqual(self.post("/v1/completions", body)[2]["choices"],
                         self.golden["choices"])
        self.server.wait_kv_free(10)

    def test_completions_equal_the_grpc_api(self):
        status, _, body = self.post("/v1/completions", {
            "model": self.model(), "prompt": "def hello", "max_tokens": 8, "temperature": 0.8,
            "seed": 3, "n": 2})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual([c["index"] for c in body["choices"]], [0, 1])
        texts, last = grpc_texts(self.server, pb.GenerateRequest(
            text="def hello", sampling=pb.SamplingParams(max_tokens=8, temperature=0.8, seed=3,
                                                         n=2)))
        self.assertEqual([c["text"] for c in body["choices"]], [texts[0], texts[1]])
        self.assertEqual(body["usage"]["prompt_tokens"], last.usage.prompt_tokens)
        self.assertEqual(body["usage"]["completion_tokens"], last.usage.completion_tokens)
        self.assertEqual(body["usage"]["total_tokens"],
                         last.usage.prompt_tokens + last.usage.completion_tokens)

    def test_chat_streams_the_same_text_as_unary(self):
        chat = {"model": self.model(), "messages": [{"role": "system", "content": "be brief"},
                                                    {"role": "user", "content": "print x"}],
                "max_tokens": 10, "temperature": 0}
        status, _, unary = self.post("/v1/chat/completions", chat)
        self.assertEqual(status, 200, unary)
        self.assertEqual(unary["object"], "chat.completion")
        message = unary["choices"][0]["message"]
        self.assertEqual(message["role"], "assistant")
        events = stream_events(self.port, "/v1/chat/completions",
                               dict(chat, stream_options={"include_usage": True}), self.auth)
        self.assertEqual(events[-1], "[DONE]")
        chunks = events[:-1]
        self.assertTrue(all(c["object"] == "chat.completion.chunk" for c in chunks))
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        self.assertEqual(text, message["content"])
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        self.assertEqual(finish[-1], "length")
        self.assertEqual(chunks[-1]["choices"], [])  # include_usage: the last chunk, usage only.
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self.assertEqual(chunks[-1]["usage"][key], unary["usage"][key])
        # The same conversation over gRPC.
        texts, _ = grpc_texts(self.server, pb.GenerateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(role="system", content="be brief"),
                                        pb.ChatMessage(role="user", content="print x")]),
            sampling=pb.SamplingParams(max_tokens=10, temperature=0)))
        self.assertEqual(texts[0], message["content"])

    def test_chat_template_and_its_kwargs_reach_the_template(self):
        # vLLM's request fields: a Jinja chat_template and chat_template_kwargs. The prompt the
        # server ran is the one gRPC's ApplyChatTemplate renders for the same fields.
        template = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                    "{% if enable_thinking is defined and not enable_thinking %}/no_think"
                    "{% endif %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}")
        messages = [{"role": "user", "content": "print x"}]
        kwargs = {"enable_thinking": False}
        status, _, body = self.post("/v1/chat/completions", {
            "model": self.model(), "messages": messages, "max_tokens": 2, "temperature": 0,
            "chat_template": template, "chat_template_kwargs": kwargs})
        self.assertEqual(status, 200, body)
        applied = self.server.stub.ApplyChatTemplate(pb.ApplyChatTemplateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="print x")],
                              chat_template=template, chat_template_kwargs=json.dumps(kwargs))),
            timeout=5)
        self.assertEqual(applied.text, "[user] print x\n/no_think[assistant] ")
        self.assertEqual(body["usage"]["prompt_tokens"], len(applied.token_ids))
        for field, value in (("chat_template_kwargs", [1]), ("chat_template", 7)):
            status, _, body = self.post("/v1/chat/completions", {
                "model": self.model(), "messages": messages, field: value})
            self.assertEqual(status, 400, body)
            self.assertEqual(body["error"]["param"], field)
        status, _, body = self.post("/v1/chat/completions", {
            "model": self.model(), "messages": messages, "chat_template": "{% if %}"})
        self.assertEqual(status, 400, body)
        self.assertIn("line 1", body["error"]["message"])

    def test_structured_output_fields_constrain_the_output(self):
        # OpenAI's response_format and vLLM's structured_outputs / guided_* map to the one
        # constraint of the gRPC API; the random model's outputs then parse and validate.
        import re as regex
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                                   "n": {"type": "integer", "minimum": 0,
                                                         "maximum": 9}},
                  "required": ["ok", "n"]}
        bodies = [
            ({"response_format": {"type": "json_schema",
                                  "json_schema": {"name": "r", "schema": schema}}}, "schema"),
            ({"response_format": {"type": "json_object"}}, "object"),
            ({"structured_outputs": {"regex": "[0-9]{4}"}}, "regex"),
            ({"guided_choice": ["up", "down"]}, "choice"),
            ({"guided_json": schema}, "schema"),
            ({"structured_outputs": {"grammar": 'root ::= "a" [bc]{2}'}}, "grammar"),
        ]
        for extra, kind in bodies:
            with self.subTest(kind=kind, extra=extra):
                status, _, body = self.post("/v1/chat/completions", {
                    "model": self.model(), "messages": [{"role": "user", "content": "go"}],
                    "max_tokens": 300, "temperature": 1, "seed": 3, **extra})
                self.assertEqual(status, 200, body)
                choice = body["choices"][0]
                text = choice["message"]["content"]
                if kind == "object" and choice["finish_reason"] == "length":
                    continue  # A free-form object may run past max_tokens.
                self.assertEqual(choice["finish_reason"], "stop", text)
                if kind == "schema":
                    value = json.loads(text)
                    self.assertEqual(sorted(value), ["n", "ok"])
                    self.assertIsInstance(value["ok"], bool)
                    self.assertIn(value["n"], range(10))
                elif kind == "object":
                    self.assertIsInstance(json.loads(text), dict)
                elif kind == "regex":
                    self.assertRegex(text, r"^[0-9]{4}$")
                elif kind == "choice":
                    self.assertIn(text, ["up", "down"])
                else:
                    self.assertIsNotNone(regex.fullmatch("a[bc]{2}", text), text)
        for extra, param in (
                ({"response_format": {"type": "xml"}}, "response_format"),
                ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "guided_regex"),
                ({"guided_choice": "up"}, "guided_choice"),
                ({"guided_regex": "(a"}, "regex")):
            status, _, body = self.post("/v1/completions", {
                "model": self.model(), "prompt": "x", **extra})
            self.assertEqual(status, 400, body)
            self.assertEqual(body["error"]["param"], param)

    def test_tools_with_tool_choice_none_and_tool_call_history(self):
        # Tools and a conversation with calls render as gRPC renders them.
        template = ("{% for t in tools %}<{{ t.function.name }}>{% endfor %}"
                    "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                    "{% for c in m.tool_calls or [] %}{{ c.id }}:{{ c.function.name }}"
                    "{{ c.function.arguments | tojson }}{% endfor %}"
                    "{% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}{% endfor %}")
        tools = [{"type": "function", "function": {"name": "grep", "parameters": {}}}]
        messages = [{"role": "user", "content": "find x"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "grep", "arguments": "{\"q\": \"x\"}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "x.py"}]
        body = {"model": self.model(), "messages": messages, "max_tokens": 2, "temperature": 0,
                "tools": tools, "tool_choice": "none", "chat_template": template}
        status, _, reply = self.post("/v1/chat/completions", body)
        self.assertEqual(status, 200, reply)
        applied = self.server.stub.ApplyChatTemplate(pb.ApplyChatTemplateRequest(
            chat=pb.ChatInput(
                messages=[pb.ChatMessage(role="user", content="find x"),
                          pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(
                              id="c1", function=pb.FunctionCall(name="grep",
                                                                arguments='{"q": "x"}'))]),
                          pb.ChatMessage(role="tool", tool_call_id="c1", content="x.py")],
                tools=json.dumps(tools), chat_template=template)), timeout=5)
        self.assertEqual(applied.text,
                         '<grep>[user]find x[assistant]c1:grep{"q": "x"}[tool]x.py(c1)')
        self.assertEqual(reply["usage"]["prompt_tokens"], len(applied.token_ids))
        for change in ({"tool_choice": "sometimes"}, {"tool_choice": {"type": "function"}},
                       {"tool_choice": {"type": "function", "function": {"name": "nope"}}}):
            status, _, reply = self.post("/v1/chat/completions", dict(body, **change))
            self.assertEqual(status, 400, reply)
            self.assertEqual(reply["error"]["param"], "tool_choice")
        bad = dict(body, messages=[messages[0], dict(messages[1], tool_calls=[{"id": "c"}])])
        status, _, reply = self.post("/v1/chat/completions", bad)
        self.assertEqual(status, 400, reply)
        self.assertEqual(reply["error"]["param"], "messages")

    def test_tool_choice_required_and_named_always_yield_valid_calls(self):
        # The random model writes garbage; "required" and a named function constrain it to calls
        # whose arguments validate against the tool's schema, returned as message.tool_calls.
        import jsonschema
        weather = {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 8},
            "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}
        add = {"type": "object", "properties": {"a": {"type": "integer", "maximum": 99},
                                                "b": {"type": "integer", "minimum": 0}},
               "required": ["a", "b"]}
        tools = [{"type": "function", "function": {"name": "weather", "parameters": weather}},
                 {"type": "function", "function": {"name": "add", "parameters": add}}]
        schemas = {"weather": weather, "add": add}
        base = {"model": self.model(), "messages": [{"role": "user", "content": "go"}],
                "max_tokens": 480, "temperature": 1, "tools": tools,
                "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}
        for seed in range(4):
            status, _, reply = self.post("/v1/chat/completions",
                                         dict(base, seed=seed, tool_choice="required", n=2))
            self.assertEqual(status, 200, reply)
            for choice in reply["choices"]:
                self.assertEqual(choice["finish_reason"], "tool_calls", choice)
                calls = choice["message"]["tool_calls"]
                self.assertGreaterEqual(len(calls), 1)
                for call in calls:
                    self.assertEqual(call["type"], "function")
                    self.assertTrue(call["id"].startswith("call_"))
                    name = call["function"]["name"]
                    jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[name])
        named = {"type": "function", "function": {"name": "add"}}
        status, _, reply = self.post("/v1/chat/completions",
                                     dict(base, seed=9, tool_choice=named))
        self.assertEqual(status, 200, reply)
        calls = reply["choices"][0]["message"]["tool_calls"]
        self.assertEqual([c["function"]["name"] for c in calls], ["add"])
        jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), add)
        self.assertIsNone(reply["choices"][0]["message"]["content"])
        # Streamed: the calls arrive as delta.tool_calls, the last chunk says "tool_calls".
        events = stream_events(self.server.http_port, "/v1/chat/completions",
                               dict(base, seed=2, tool_choice="required", stream=True))
        deltas = [e["choices"][0] for e in events if isinstance(e, dict) and e.get("choices")]
        streamed = [c for d in deltas for c in d["delta"].get("tool_calls", [])]
        self.assertGreaterEqual(len(streamed), 1)
        self.assertEqual([c["index"] for c in streamed], list(range(len(streamed))))
        for call in streamed:
            jsonschema.validate(json.loads(call["function"]["arguments"]),
                                schemas[call["function"]["name"]])
        self.assertEqual(deltas[-1]["finish_reason"], "tool_calls")

    def test_stop_logprobs_echo_and_token_prompts(self):
        base = {"model": self.model(), "prompt": [1, 50, 60, 70], "max_tokens": 12,
                "temperature": 0, "logprobs": 2}
        status, _, full = self.post("/v1/completions", base)
        self.assertEqual(status, 200, full)
        choice = full["choices"][0]
        lp = choice["logprobs"]
        self.assertEqual(len(lp["tokens"]), 12)
        self.assertEqual(len(lp["token_logprobs"]), 12)
        self.assertTrue(all(len(t) <= 2 for t in lp["top_logprobs"]))
        self.assertEqual("".join(lp["tokens"]).strip() != "", True)
        text = choice["text"]
        cut = text[len(text) // 2:][:2]
        stopped = self.post("/v1/completions", dict(base, stop=cut))[2]["choices"][0]
        self.assertEqual(stopped["text"], text[:text.find(cut)])
        self.assertEqual(stopped["finish_reason"], "stop")
        echoed = self.post("/v1/completions", dict(base, echo=True, prompt="x = 1"))[2]
        self.assertTrue(echoed["choices"][0]["text"].startswith("x = 1"))
        # Two prompts, n = 2: choices numbered prompt * n + sample.
        two = self.post("/v1/completions", dict(base, prompt=["a", "b"], n=2, logprobs=None,
                                                temperature=0))[2]
        self.assertEqual([c["index"] for c in two["choices"]], [0, 1, 2, 3])
        self.assertEqual(two["choices"][0]["text"], two["choices"][1]["text"])  # Greedy.

    def test_models_tokenize_detokenize_metrics(self):
        status, _, models = request(self.port, "GET", "/v1/models", headers=self.auth)
        self.assertEqual(status, 200)
        self.assertEqual([m["id"] for m in models["data"]], [self.model()])
        status, _, tokens = self.post("/tokenize", {"prompt": "hello world"})
        self.assertEqual(status, 200, tokens)
        self.assertEqual(tokens["count"], len(tokens["tokens"]))
        grpc_ids = list(self.server.stub.Tokenize(pb.TokenizeRequest(text="hello world"),
                                                  timeout=5).token_ids)
        self.assertEqual(tokens["tokens"], grpc_ids)
        status, _, text = self.post("/detokenize", {"tokens": grpc_ids})
        self.assertEqual((status, text["prompt"]), (200, "hello world"))
        status, headers, metrics = request(self.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("iquest_requests_running", metrics)
        # Request counts and latencies carry the front door: both appear once both were used.
        self.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 1})
        list(self.server.stub.Generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=[1, 2]), sampling=pb.SamplingParams(max_tokens=1)),
            timeout=30))
        metrics = request(self.port, "GET", "/metrics")[2]
        for api in ("grpc", "http"):
            self.assertRegex(metrics, r'iquest_requests_total\{api="%s",finish_reason="length"' % api)
            self.assertRegex(metrics, r'iquest_time_to_first_token_seconds_count\{api="%s"' % api)

    def test_errors_are_openai_shaped_with_the_right_status(self):
        cases = [
            ("malformed JSON", "/v1/completions", b"{not json", self.auth, 400, None),
            ("wrong type", "/v1/completions", {"prompt": "x", "temperature": "hot"}, self.auth,
             400, "temperature"),
            ("out of range", "/v1/completions", {"prompt": "x", "temperature": -1}, self.auth,
             400, "temperature"),
            ("bad n", "/v1/completions", {"prompt": "x", "n": 99}, self.auth, 400, "n"),
            ("no prompt", "/v1/completions", {"max_tokens": 2}, self.auth, 400, "prompt"),
            ("bad messages", "/v1/chat/completions", {"messages": "hi"}, self.auth, 400,
             "messages"),
            ("bad tools", "/v1/chat/completions",
             {"messages": [{"role": "user", "content": "x"}], "tools": [{}]}, self.auth, 400,
             "tools"),
            ("unsupported", "/v1/completions", {"prompt": "x", "suffix": "y"}, self.auth, 400,
             "suffix"),
            ("too long", "/v1/completions", {"prompt": [1] * 3000, "max_tokens": 2}, self.auth,
             400, None),
            ("unknown model", "/v1/completions", {"model": "gpt-9", "prompt": "x"}, self.auth,
             404, "model"),
            ("unknown route", "/v1/embeddings", {"input": "x"}, self.auth, 404, None),
        ]
        for name, path, body, headers, want_status, want_param in cases:
            with self.subTest(name):
                status, _, error = self.post(path, body, headers)
                self.assertEqual(status, want_status, error)
                self.assertEqual(set(error["error"]), {"message", "type", "param", "code"})
                self.assertTrue(error["error"]["message"])
                if want_param:
                    self.assertEqual(error["error"]["param"], want_param, error)
        status, _, error = request(self.port, "GET", "/v1/completions", headers=self.auth)
        self.assertEqual(status, 405)
        self.assert_healthy()

    def test_oversized_body_is_413(self):
        body = json.dumps({"prompt": "x" * 70000})
        status, _, error = self.post("/v1/completions", body)
        self.assertEqual(status, 413, error)
        self.assertIn("exceeds", error["error"]["message"])
        self.assert_healthy()

    def test_two_thousand_keep_alive_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        for i in range(2000):
            if i % 100 == 0:
                status, _, body = self.post("/v1/completions",
                                            {"prompt": [1, 5], "max_tokens": 1, "temperature": 0},
                                            conn=conn)
            else:
                status, _, body = request(self.port, "GET", "/v1/models", headers=self.auth,
                                          conn=conn)
            self.assertEqual(status, 200, body)
        conn.close()
        self.assert_healthy()

    def test_two_hundred_concurrent_streams(self):
        results, errors = {}, []

        def one(i):
            try:
                events = stream_events(self.port, "/v1/completions",
                                       {"prompt": [1, 40 + i % 50], "max_tokens": 6,
                                        "temperature": 0}, self.auth)
                results[i] = "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 200)
        # Same prompt, same greedy text, whatever the batch was.
        self.assertEqual(results[0], results[50])
        self.assert_healthy()

    def test_client_disconnect_mid_stream_frees_its_blocks(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        body = json.dumps({"prompt": [1, 7], "max_tokens": 400, "temperature": 0, "stream": True,
                           "ignore_eos": True})
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-1\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        self.assertIn(b"200 OK", sock.recv(4096))
        sock.close()
        self.server.wait_kv_free(5)
        # Cancelled, not run to its 400 tokens.
        self.server.wait_for(lambda: "request_id=gone-1 code=CANCELLED finish_reason=cancelled"
                             in self.server.logs(), 5, "the cancelled request's log line")
        self.assert_healthy()

    def test_slow_reader_does_not_hold_others(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = json.dumps({"prompt": [1, 9], "max_tokens": 200, "temperature": 0, "stream": True,
                           "ignore_eos": True})
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        # Never read; others are served meanwhile.
        self.assertEqual(self.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 2})[0],
                         200)
        sock.close()
        self.assert_healthy()

    def test_slowloris_connections_do_not_starve_others(self):
        idle = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # Never finished.
            idle.append(s)
        self.assert_healthy()
        # The idle timeout (3 s here) closes them.
        time.sleep(4)
        closed = 0
        for s in idle:
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 1
            s.close()
        self.assertEqual(closed, 200)

    def test_official_openai_client(self):
        node = shutil.which("node")
        if node is None or not os.path.isdir(os.path.join(JS_DIR, "node_modules", "openai")):
            self.fail("node and tests/server/js/node_modules (scripts/install-deps.sh) are needed")
        out = subprocess.run([node, os.path.join(JS_DIR, "openai_client.mjs"),
                              f"http://127.0.0.1:{self.port}/v1", self.model(), "secret-token"],
                             capture_output=True, text=True, timeout=120, cwd=JS_DIR)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        chat = pb.GenerateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="def hello():")]),
            sampling=pb.SamplingParams(max_tokens=8, temperature=0.9, seed=11, n=2))
        texts, last = grpc_texts(self.server, chat)
        self.assertEqual(got["chat"]["texts"], [texts[0], texts[1]])
        self.assertEqual(got["chat"]["usage"]["completion_tokens"], last.usage.completion_tokens)
        self.assertEqual(got["chat"]["usage"]["prompt_tokens"], last.usage.prompt_tokens)
        self.assertTrue(all(lp <= 0 and n == 2 for lp, n in got["chat"]["logprobs"]))
        self.assertEqual(got["chat_stream"]["texts"], {"0": texts[0], "1": texts[1]})
        self.assertEqual(got["chat_stream"]["usage"]["completion_tokens"],
                         got["chat"]["usage"]["completion_tokens"])
        completion = pb.GenerateRequest(
            text="import os\n",
            sampling=pb.SamplingParams(max_tokens=10, temperature=0.7, seed=5, stop=["zz"]))
        texts, last = grpc_texts(self.server, completion)
        self.assertEqual(got["completion"]["text"], texts[0])
        self.assertEqual(got["completion_stream"]["texts"], {"0": texts[0]})
        self.assertEqual(got["completion"]["usage"]["completion_tokens"],
                         last.usage.completion_tokens)
        self.assertEqual(got["models"], [self.model()])
        self.assertEqual(got["unknown_model"], 404)
        self.assert_healthy()


class HttpAuthTest(unittest.TestCase):
    def test_bearer_tokens_from_the_grpc_token_file(self):
        token_file = tempfile.mktemp(prefix="iquest-tokens-")
        with open(token_file, "w") as f:
            f.write("secret-token\n")
        server = Server(MODEL_DIR, "--auth-token-file", token_file)
        try:
            port, body = server.http_port, {"prompt": [1, 2], "max_tokens": 1}
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "secret-token"}):
                status, _, error = request(port, "POST", "/v1/completions", body, headers)
                self.assertEqual(status, 401, headers)
                self.assertEqual(error["error"]["type"], "authentication_error")
            ok = {"Authorization": "Bearer secret-token"}
            self.assertEqual(request(port, "POST", "/v1/completions", body, ok)[0], 200)
            self.assertEqual(request(port, "GET", "/health")[0], 200)  # Probes need no token.
        finally:
            server.stop()
            os.remove(token_file)


class HttpThousandStreamsTest(unittest.TestCase):
    def test_a_thousand_open_streams_need_no_thread_each(self):
        # 1,000 connections, each with a streaming request in flight (the queue holds them, a few
        # run at a time); the server's thread count must not grow with them.
        # Both ends hold 1,000 sockets: raise the soft descriptor limit (the server inherits it).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1000 + 200
        if hard != resource.RLIM_INFINITY and hard < wanted:
            self.skipTest(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
        server = Server(MODEL_DIR, "--max-queue", "1024", "--max-num-seqs", "16",
                        "--http-max-connections", "2000")
        socks = []
        try:
            port = server.http_port
            threads_before = proc_status(server.process.pid, "Threads")
            body = json.dumps({"prompt": [1, 5, 9], "max_tokens": 8, "temperature": 0,
                               "ignore_eos": True, "stream": True}).encode()
            head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                    f"{len(body)}\r\n\r\n").encode()
            for _ in range(1000):
                s = socket.create_connection(("127.0.0.1", port), timeout=60)
                s.sendall(head + body)
                socks.append(s)
            peak = threads_before
            done = 0
            for s in socks:  # Read every stream to its end ([DONE] and the last chunk).
                data = b""
                while not data.endswith(b"0\r\n\r\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    peak = max(peak, proc_status(server.process.pid, "Threads"))
                done += b"data: [DONE]" in data
            self.assertEqual(done, 1000)
            self.assertLessEqual(peak, threads_before + 2, (threads_before, peak))
        finally:
            for s in socks:
                s.close()
            server.stop()


class HttpLimitsTest(unittest.TestCase):
    def test_full_queue_is_429_with_retry_after_and_deadlines_are_504(self):
        server = Server(MODEL_DIR, "--max-queue", "1", "--max-num-seqs", "1")
        try:
            port = server.http_port
            long = {"prompt": [1, 3], "max_tokens": 400, "temperature": 0, "ignore_eos": True}
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                request(port, "POST", "/v1/completions", long))) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            statuses = sorted(status for status, _, _ in results)
            self.assertIn(429, statuses)
            self.assertIn(200, statuses)
            status, headers, error = next(r for r in results if r[0] == 429)
            self.assertEqual(error["error"]["type"], "rate_limit_error")
            self.assertGreaterEqual(int(headers["Retry-After"]), 1)
            # A deadline from the header ends the request with 504; its blocks come back.
            status, _, error = request(port, "POST", "/v1/completions", long,
                                       {"x-request-timeout": "0.05"})
            self.assertEqual(status, 504, error)
            status, _, error = request(port, "POST", "/v1/completions", long,
                                       {"x-request-timeout": "soon"})
            self.assertEqual((status, error["error"]["param"]), (400, "x-request-timeout"))
            server.wait_kv_free(10)
        finally:
            server.stop()


class HttpDrainTest(unittest.TestCase):
    def test_drain_refuses_new_requests_and_finishes_in_flight(self):
        server = Server(MODEL_DIR, "--drain-timeout-s", "30")
        try:
            port = server.http_port
            events = []
            body = {"prompt": [1, 3], "max_tokens": 400, "temperature": 0, "ignore_eos": True}
            worker = threading.Thread(
                target=lambda: events.extend(stream_events(port, "/v1/completions", body)))
            worker.start()
            server.wait_for(lambda: server.load().num_running == 1, 10, "running")
            server.process.send_signal(signal.SIGTERM)
            server.wait_for(lambda: request(port, "GET", "/health")[0] == 503, 10, "health 503")
            self.assertEqual(request(port, "POST", "/v1/completions", body)[0], 503)
            worker.join(60)
            self.assertEqual(events[-1], "[DONE]")
            self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")
            self.assertEqual(server.process.wait(60), 0)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
