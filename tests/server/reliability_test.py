"""Replays every request row of reliability.md (b) against the live server and checks each gets
its expected status code. Afterwards the server is still SERVING, a golden request gives the
same output, and KV usage is back to zero.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/reliability_test.py
"""

import math
import os
import socket
import struct
import tempfile
import threading
import time
import unittest

import grpc

from harness import SERVING, Server, collect, greedy, make_model, pb

IA = grpc.StatusCode.INVALID_ARGUMENT
# Bytes that do not parse never reach our handler: gRPC 1.51's callback server answers them
# UNIMPLEMENTED (the sync server says INTERNAL "Error parsing request proto").
PARSE_ERROR = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL)
RE = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK
VOCAB = 512
CONTEXT = 256


def sampled(**fields):
    """A greedy 2-token request on a 3-token prompt with `fields` set on SamplingParams."""
    params = {"max_tokens": 2, "temperature": 0.0}
    params.update(fields)
    return pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 5, 6]),
                              sampling=pb.SamplingParams(**params))


def ids(n, value=7):
    return pb.GenerateRequest(token_ids=pb.TokenIds(ids=[value] * n),
                              sampling=pb.SamplingParams(max_tokens=1, temperature=0))


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


# (name, request, expected code). Requests are GenerateRequest messages or raw bytes.
def table():
    return [
        # Transport / protobuf.
        ("random bytes", bytes(range(7, 250)), PARSE_ERROR),
        ("truncated varint", b"\x1a\x05\x08\xff", PARSE_ERROR),
        ("length past the end", b"\x12\x7f" + b"abc", PARSE_ERROR),
        ("invalid UTF-8 text", b"\x12\x02\xc3\x28", PARSE_ERROR),
        ("overlong UTF-8 text", b"\x12\x02\xc0\xaf", PARSE_ERROR),
        ("surrogate UTF-8 text", b"\x12\x03\xed\xa0\x80", PARSE_ERROR),
        ("unknown field ignored",
         sampled().SerializeToString() + b"\xf8\x06\x01", OK),  # Field 111, varint 1.
        # Prompt.
        ("no input", pb.GenerateRequest(), IA),
        ("empty token ids", ids(0), IA),
        ("empty text", pb.GenerateRequest(text=""), IA),
        ("prompt of the context length minus one", ids(CONTEXT - 1), OK),
        ("prompt + max_tokens = context + 1", ids(CONTEXT), IA),
        ("prompt of context + 1 tokens", ids(CONTEXT + 1), IA),
        ("token id -1", ids(3, -1), IA),
        ("token id vocab_size", ids(3, VOCAB), IA),
        ("token id INT32_MAX", ids(3, 2**31 - 1), IA),
        ("10^6 token ids", ids(10**6), IA),
        ("1 MB of 'a.'", pb.GenerateRequest(text="a." * 500000), IA),
        ("1 MB of whitespace", pb.GenerateRequest(text=" " * 1000000), IA),
        ("special-token text, NUL, RTL, combining, emoji",
         pb.GenerateRequest(text="<s></s>\x00\u202e\u0301 \U0001F600\u200d\U0001F600",
                            sampling=pb.SamplingParams(max_tokens=2)), OK),
        # max_tokens.
        ("max_tokens 0", sampled(max_tokens=0), IA),
        ("max_tokens -1", sampled(max_tokens=-1), IA),
        ("max_tokens INT32_MAX", sampled(max_tokens=2**31 - 1), IA),
        # temperature.
        ("temperature NaN", sampled(temperature=math.nan), IA),
        ("temperature +Inf", sampled(temperature=math.inf), IA),
        ("temperature -1", sampled(temperature=-1.0), IA),
        ("temperature -0.0 is greedy", sampled(temperature=-0.0), OK),
        ("temperature 1e308", sampled(temperature=1e308), IA),
        # top_p.
        ("top_p NaN", sampled(top_p=math.nan), IA),
        ("top_p 0", sampled(top_p=0.0), IA),
        ("top_p -0.1", sampled(top_p=-0.1), IA),
        ("top_p 1.0000001", sampled(top_p=1.0000001), IA),
        ("top_p 1", sampled(top_p=1.0), OK),
        # top_k.
        ("top_k -2", sampled(top_k=-2), IA),
        ("top_k 0 disables", sampled(top_k=0), OK),
        ("top_k -1 disables", sampled(top_k=-1), OK),
        ("top_k vocab+1", sampled(top_k=VOCAB + 1), IA),
        ("top_k INT32_MAX", sampled(top_k=2**31 - 1), IA),
        # min_p and penalties.
        ("min_p NaN", sampled(min_p=math.nan), IA),
        ("presence_penalty +Inf", sampled(presence_penalty=math.inf), IA),
        ("frequency_penalty -1e9", sampled(frequency_penalty=-1e9), IA),
        ("repetition_penalty 0", sampled(repetition_penalty=0.0), IA),
        ("repetition_penalty 1e9", sampled(repetition_penalty=1e9), IA),
        # seed.
        ("seed UINT64_MAX", sampled(seed=2**64 - 1, temperature=1.0), OK),
        # n.
        ("n 0", sampled(n=0), IA),
        ("n 10^6", sampled(n=10**6), IA),
        # stop strings.
        ("10^4 stop strings", sampled(stop=["x"] * 10000), IA),
        ("one 1 MB stop string", sampled(stop=["y" * 1000000]), IA),
        ("empty stop string", sampled(stop=[""]), IA),
        ("stop token id out of vocab", sampled(stop_token_ids=[VOCAB]), IA),
        # logprobs.
        ("logprobs -1", sampled(logprobs=-1), IA),
        ("logprobs vocab_size", sampled(logprobs=VOCAB), IA),
        ("logprobs 10^6", sampled(logprobs=10**6), IA),
        ("prompt_logprobs -1", sampled(prompt_logprobs=-1), IA),
        ("prompt_logprobs 10^6", sampled(prompt_logprobs=10**6), IA),
        ("logit_bias NaN", sampled(logit_bias={3: math.nan}), IA),
        ("logit_bias key out of vocab", sampled(logit_bias={VOCAB: 1.0}), IA),
        # Other fields.
        ("priority 10^6", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]), priority=10**6), IA),
        ("tenant of 1 KB", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]), tenant="t" * 1024),
         IA),
        ("request_id with spaces",
         pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]), request_id="a b"), IA),
        ("path-like request_id is just a name",
         pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]), request_id="../../etc/passwd",
                            sampling=pb.SamplingParams(max_tokens=1)), OK),
    ]


class ReliabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model_dir = make_model(tempfile.mkdtemp(prefix="iquest-rel-"), vocab=VOCAB)
        # No per-thread malloc caches (tcache): glibc's mallinfo2 counts chunks parked there as
        # in use, so a gRPC thread that joins in the second burst of test_rapid_reset_burst would
        # add up to ~200 KB of "live" heap without any leak.
        env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
        cls.server = Server(cls.model_dir, "--max-model-len", str(CONTEXT),
                            "--max-message-bytes", str(16 << 20), "--handshake-timeout-s", "2",
                            env=env)
        cls.raw = cls.server.channel.unary_stream(
            "/iquest.serve.v1.Generation/Generate", request_serializer=lambda x: x,
            response_deserializer=pb.GenerateResponse.FromString)

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def code_of(self, request, timeout=60, **kwargs):
        try:
            if isinstance(request, bytes):
                list(self.raw(request, timeout=timeout, **kwargs))
            else:
                collect(self.server.stub.Generate(request, timeout=timeout, **kwargs))
            return OK
        except grpc.RpcError as e:
            return e.code()

    def live_heap(self):
        return self.server.metric("iquest_heap_in_use_bytes")

    def wait_idle(self):
        """Nothing queued, nothing running, every KV block back."""
        self.server.wait_for(lambda: self.server.load().num_waiting == 0, 10, "queue empty")
        self.server.wait_kv_free(seconds=10)

    def test_every_row_gets_its_code_and_nothing_is_lost(self):
        golden = collect(self.server.stub.Generate(greedy([1, 40, 41, 42], 8), timeout=30))[0]
        for name, request, expected in table():
            with self.subTest(name):
                if isinstance(expected, tuple):
                    self.assertIn(self.code_of(request), expected, name)
                else:
                    self.assertEqual(self.code_of(request), expected, name)
        # 100 tokens: the request cannot finish within whatever deadline reaches the server (a
        # 2-token one once did on a loaded CI machine, before the client's own timer fired).
        self.assertEqual(self.code_of(sampled(max_tokens=100), timeout=1e-6),
                         grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertNotEqual(self.code_of(sampled(), metadata=[("x-big", "v" * 100000)]), OK)
        self.assertEqual(self.server.readiness(), SERVING)
        self.assertEqual(collect(self.server.stub.Generate(greedy([1, 40, 41, 42], 8),
                                                           timeout=30))[0], golden)
        self.server.wait_kv_free()

    def test_client_strings_are_logged_bounded_and_escaped(self):
        huge = "r" * (1 << 20)
        self.assertEqual(self.code_of(pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]),
                                                         request_id=huge)),
                         grpc.StatusCode.INVALID_ARGUMENT)
        forged = "id\x1b[2J\nts=fake level=error event=forged"
        self.assertEqual(self.code_of(pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1]),
                                                         request_id=forged)),
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.server.wait_for(lambda: "(1048576 bytes)" in self.server.logs(), 5, "the log line")
        lines = self.server.logs().splitlines()
        self.assertLess(max(len(line) for line in lines), 2000)
        self.assertFalse(any("\x1b" in line for line in lines))
        self.assertFalse(any(line.startswith("ts=fake") for line in lines))
        self.assertTrue(any('request_id="' + "r" * 128 + '...(1048576 bytes)"' in line
                            for line in lines))

    def test_connections_that_never_handshake_are_closed(self):
        # Ten TCP connections that send nothing, and ten that send half an HTTP/2 preface: the
        # server closes each after --handshake-timeout-s (2 s here) and keeps serving.
        started = time.time()
        sockets = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", self.server.port))
            if i % 2:
                s.sendall(b"PRI * HTTP/2.0\r\n")
            s.settimeout(30)
            sockets.append(s)
        for s in sockets:
            try:
                while s.recv(1 << 16):  # The server's SETTINGS may come first; then EOF.
                    pass
            except ConnectionResetError:
                pass  # Closed with a reset: closed all the same.
            s.close()
        self.assertLess(time.time() - started, 10)
        self.assertEqual(collect(self.server.stub.Generate(greedy([1, 2], 2), timeout=30))[2]
                         .finish_reason, pb.FINISH_REASON_LENGTH)

    def test_error_messages_name_the_field_and_range(self):
        try:
            collect(self.server.stub.Generate(sampled(top_p=1.5), timeout=10))
            self.fail("accepted top_p 1.5")
        except grpc.RpcError as e:
            self.assertIn("sampling.top_p", e.details())
            self.assertIn("(0, 1]", e.details())
            self.assertNotIn(self.model_dir, e.details())  # No paths leak.
        try:
            collect(self.server.stub.Generate(ids(CONTEXT + 5), timeout=10))
        except grpc.RpcError as e:
            self.assertIn(str(CONTEXT), e.details())

    def test_rapid_reset_burst(self):
        """15k streams opened and reset at once on one connection (the HTTP/2 rapid-reset
        pattern), in three rounds of 5k: the server keeps serving and holds no blocks, threads
        stay bounded, and live heap does not grow round after round.

        Memory is judged by iquest_heap_in_use_bytes (bytes malloc has handed out and not had
        back), not RSS: a burst grows glibc's arenas to a high-water mark that depends on how
        many streams were in flight at once, and freed memory stays resident (measured: RSS
        37-283 MB after the same bursts, live heap 1.2-1.6 MB with tcache off), so an RSS delta
        flakes without a leak. Live heap itself can take one step when gRPC grows its thread pool
        in a burst (a CI run measured a step of over 1 MB from round 1 to 2; here, 1.0-2.2 MB
        across runs, flat within one), and stays there. A leak grows it every round, so the test
        fails only when both round-to-round steps exceed 1 MB: a leak of 200 bytes per reset.
        Between 20 and 1000 of each 5000 reset streams reach the handler (it varies from burst
        to burst), so per-request leaks are test_cancelled_requests_leave_no_live_heap's to
        catch; this one bounds the reset path."""
        from harness import proc_status
        pid = self.server.process.pid

        def burst():
            for _ in range(5000):
                self.server.stub.Generate(sampled(max_tokens=50), timeout=30).cancel()
            self.wait_idle()
            return proc_status(pid, "Threads")

        def settled_heap():
            # Resets still in flight in gRPC hold memory for a moment: wait until a second
            # passes without the figure moving by more than 64 KB (10 s at most).
            deadline = time.time() + 10
            last = self.live_heap()
            while time.time() < deadline:
                time.sleep(1)
                now = self.live_heap()
                if abs(now - last) < 64 * 1024:
                    return now
                last = now
            return last

        threads, heaps = [], []
        for _ in range(3):
            threads.append(burst())
            heaps.append(settled_heap())
            self.assertLess(heaps[-1], 16 * 1024 * 1024)
        steps = [b - a for a, b in zip(heaps, heaps[1:])]
        self.assertTrue(min(steps) < 1024 * 1024,
                        f"live heap grew by over 1 MB in every round: {heaps} bytes")
        self.assertEqual(self.server.readiness(), SERVING)
        # gRPC's callback pool may add a few threads with the load (the quota caps it at 64).
        self.assertLessEqual(threads[-1], threads[0] + 8)
        self.assertLess(threads[-1], 80)
        self.assertLess(proc_status(pid, "VmRSS"), 1024 * 1024)  # kB: arenas stay bounded.
        self.assertEqual(self.code_of(sampled()), OK)

    def test_cancelled_requests_leave_no_live_heap(self):
        """1000 requests, each cancelled by the client after its first streamed token, so each
        one went through admission, the engine and the reactor: live heap (after a warm-up
        round) comes back to within 512 KB, i.e. a leak of 0.5 KB per request fails. (Most of
        the rapid-reset test's streams never reach the handler, so it cannot say this.)"""

        def cancel_after_first_token(n):
            for _ in range(n):
                call = self.server.stub.Generate(sampled(max_tokens=50), timeout=30)
                next(call)
                call.cancel()
            self.wait_idle()

        cancel_after_first_token(100)  # Warm-up: threads, arenas, caches reach their size.
        base = self.live_heap()
        cancel_after_first_token(1000)
        limit = base + 512 * 1024
        self.server.wait_for(lambda: self.live_heap() < limit, 10,
                             f"live heap back under {limit:.0f} bytes")
        self.assertEqual(self.code_of(sampled()), OK)

    def test_ping_flood_is_refused_without_harm(self):
        """A client pinging every 10 ms while idle breaks the server's ping policy
        (--min-ping-interval-s, max ping strikes 2), which gRPC answers with GOAWAY
        too_many_pings. What this test holds the server to: no harm, everyone else is served."""
        flood = grpc.insecure_channel(
            f"127.0.0.1:{self.server.port}",
            options=[("grpc.keepalive_time_ms", 10), ("grpc.keepalive_timeout_ms", 1000),
                     ("grpc.keepalive_permit_without_calls", 1),
                     ("grpc.http2.max_pings_without_data", 0),
                     ("grpc.http2.min_time_between_pings_ms", 10)])
        try:
            grpc.channel_ready_future(flood).result(timeout=10)
            import time
            time.sleep(3)
        finally:
            flood.close()
        self.assertEqual(self.server.readiness(), SERVING)
        self.assertEqual(self.code_of(sampled()), OK)

    def test_message_over_the_receive_limit(self):
        server = Server(self.model_dir, "--max-message-bytes", "65536")
        try:
            request = pb.GenerateRequest(text="z" * 70000)
            with self.assertRaises(grpc.RpcError) as error:
                collect(server.stub.Generate(request, timeout=10))
            self.assertEqual(error.exception.code(), RE)
            self.assertEqual(server.readiness(), SERVING)
        finally:
            server.stop()

    def test_bounded_queue_answers_resource_exhausted_with_a_retry_hint(self):
        server = Server(self.model_dir, "--max-queue", "2", "--max-num-seqs", "1")
        try:
            codes, hints = [], []
            lock = threading.Lock()

            def run():
                call = server.stub.Generate(greedy([1, 2, 3], 200), timeout=60)
                try:
                    for _ in call:
                        pass
                    code = OK
                except grpc.RpcError as e:
                    code = e.code()
                    for key, value in e.trailing_metadata() or ():
                        if key == "retry-after-ms":
                            with lock:
                                hints.append(value)
                with lock:
                    codes.append(code)

            threads = [threading.Thread(target=run) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            self.assertEqual(len(codes), 12)
            self.assertGreaterEqual(codes.count(RE), 6)
            self.assertGreaterEqual(codes.count(OK), 1)
            self.assertEqual(len(hints), codes.count(RE))
            # Measured, not a constant: bounded, and spread by the jitter.
            self.assertTrue(all(100 <= int(h) <= 30000 for h in hints), hints)
            self.assertGreater(len(set(hints)), 1, hints)
            server.wait_kv_free()
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
