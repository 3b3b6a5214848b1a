"""The Loop architecture and sliding windows through the real iquest-serve: a tiny
IQuestLoopCoderForCausalLM folder (4-token local window, gates that matter) is served;
GetModelInfo reports the architecture, loop_num and the window; concurrent greedy requests give
exactly iquest-generate's tokens for the same prompts (prompts longer than the window, the
prefix cache on). A Mistral folder reports its per-layer sliding windows and serves past them.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/loop_test.py
"""

import tempfile
import threading
import unittest

from harness import Server, collect, greedy, make_model, offline_greedy, pb


def prompt(i):
    """Prompts of 9..30 tokens sharing a 6-token prefix (the prefix cache hits)."""
    return [1, 40, 41, 42, 43, 44] + [5 + (i * 37 + j * 11) % 500 for j in range(3 + i * 3)]


class LoopServingTest(unittest.TestCase):
    def serve_and_compare(self, model_dir, num_requests):
        server = Server(model_dir)
        try:
            info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
            results, errors = {}, []

            def one(i):
                try:
                    results[i] = collect(server.stub.Generate(greedy(prompt(i), 12), timeout=60))
                except Exception as e:  # Reported below: a thread's exception is otherwise lost.
                    errors.append(e)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(num_requests)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            for i in range(num_requests):
                self.assertEqual(results[i][0], offline_greedy(model_dir, prompt(i), 12),
                                 f"request {i}")
            return info
        finally:
            server.stop()

    def test_loop_model_serves_as_iquest_generate_decodes(self):
        model_dir = make_model(tempfile.mkdtemp(prefix="iquest-loop-"), arch="loop",
                               extra=["--window", "4", "--gate-bias", "0"])
        info = self.serve_and_compare(model_dir, 6)
        self.assertEqual(info.architecture, "IQuestLoopCoderForCausalLM")
        self.assertEqual(info.loop_num, 2)
        self.assertEqual(info.loop_window, 4)
        self.assertEqual(list(info.layer_sliding_windows), [])

    def test_mistral_reports_and_serves_its_sliding_window(self):
        model_dir = make_model(tempfile.mkdtemp(prefix="iquest-mistral-"), arch="mistral",
                               extra=["--sliding-window", "5"])
        info = self.serve_and_compare(model_dir, 4)
        self.assertEqual(info.architecture, "MistralForCausalLM")
        self.assertEqual(info.loop_num, 1)
        self.assertEqual(list(info.layer_sliding_windows), [5, 5])
        self.assertEqual(info.max_context_length, 512)  # The window no longer caps it.


if __name__ == "__main__":
    unittest.main()
