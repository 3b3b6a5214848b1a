"""Speculative decoding through the real iquest-serve: with --speculative ngram or draft, every
request's tokens equal the same request's with speculation switched off (the per-request
`speculation` field), greedy and seeded alike, over gRPC and HTTP; the final response reports the
drafts; the iquest_spec_decode_* counters move; bad flags and a draft model of another vocabulary
stop the server at start-up with a message naming the problem.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/speculation_test.py
"""

import os
import subprocess
import tempfile
import threading
import unittest

from harness import Server, binary, collect, greedy, make_model, pb
from http_test import request


def motif_prompt(i):
    """A prompt that repeats a short motif: prompt lookup finds matches in it."""
    motif = [3 + (i * 17 + j * 29) % 400 for j in range(3 + i % 4)]
    return [1] + (motif * 8)[:20 + i % 9]


class SpeculationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model_dir = make_model(tempfile.mkdtemp(prefix="iquest-spec-"))
        cls.model_name = os.path.basename(cls.model_dir)

    def run_pairs(self, server, sampled):
        """Each of 8 prompts with speculation on and off, all at once; returns the pairs."""
        results = {}

        def one(key, i, speculation):
            extra = dict(top_p=0.95, seed=100 + i) if sampled else {}
            req = greedy(motif_prompt(i), 24 + i, **extra)
            if sampled:
                req.sampling.temperature = 0.9
            req.sampling.speculation = speculation
            req.request_id = f"p{i}-{int(speculation)}"
            results[key] = collect(server.stub.Generate(req, timeout=60))
        errors = []

        def guarded(*args):
            try:
                one(*args)
            except Exception as e:  # Reported below: a thread's exception is otherwise lost.
                errors.append(e)
        threads = [threading.Thread(target=guarded, args=((i, on), i, on))
                   for i in range(8) for on in (True, False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        return results

    def check_server(self, *flags):
        server = Server(self.model_dir, *flags)
        try:
            drafted = 0
            for sampled in (False, True):
                results = self.run_pairs(server, sampled)
                for i in range(8):
                    on_ids, on_text, on_last = results[(i, True)]
                    off_ids, off_text, off_last = results[(i, False)]
                    self.assertEqual(on_ids, off_ids, f"prompt {i}, sampled={sampled}")
                    self.assertEqual(on_text, off_text)
                    self.assertEqual(len(on_ids), 24 + i)
                    self.assertEqual(off_last.timings.spec_draft_tokens, 0)
                    t = on_last.timings
                    self.assertLessEqual(t.spec_accepted_tokens, t.spec_draft_tokens)
                    if t.spec_num_drafts:
                        self.assertAlmostEqual(
                            t.spec_mean_accepted_length,
                            1 + t.spec_accepted_tokens / t.spec_num_drafts, places=5)
                    drafted += t.spec_draft_tokens
            self.assertGreater(drafted, 0)
            info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            self.assertEqual(info.speculative_method, flags[1])
            self.assertEqual(info.num_speculative_tokens, 4)
            self.assertEqual(info.draft_model_name,
                             self.model_name if flags[1] == "draft" else "")
            self.assertGreater(server.metric("iquest_spec_decode_num_draft_tokens_total"), 0)
            self.assertEqual(server.metric("iquest_spec_decode_num_draft_tokens_total"), drafted)
            accepted = server.metric("iquest_spec_decode_num_accepted_tokens_total")
            self.assertEqual(accepted, server.metric(
                "iquest_spec_decode_num_accepted_tokens_per_pos_total"))
            # HTTP: the extension field, same text either way.
            texts = []
            for speculation in (True, False):
                status, _, body = request(server.http_port, "POST", "/v1/completions", {
                    "model": self.model_name, "prompt": "def hello world def hello world def hello",
                    "max_tokens": 20, "temperature": 0, "speculation": speculation})
                self.assertEqual(status, 200, body)
                texts.append(body["choices"][0]["text"])
            self.assertEqual(texts[0], texts[1])
            status, _, body = request(server.http_port, "POST", "/v1/completions", {
                "model": self.model_name, "prompt": "x", "max_tokens": 2, "speculation": "yes"})
            self.assertEqual(status, 400, body)
            server.wait_kv_free()
        finally:
            self.assertEqual(server.stop(), 0, server.logs())

    def test_ngram(self):
        self.check_server("--speculative", "ngram", "--ngram-min", "1",
                          "--speculative-adaptive=false")

    def test_draft_model(self):
        # The target's own weights as the draft: the drafts are right, so they are accepted.
        self.check_server("--speculative", "draft", "--draft-model", self.model_dir,
                          "--draft-kv-cache-mb", "4")

    def test_bad_configurations_stop_the_server_at_start(self):
        other = tempfile.mkdtemp(prefix="iquest-spec-other-")
        subprocess.run([binary("iquest-make-tiny-model"), "--out", other, "--vocab", "600"],
                       check=True)
        for flags, message in [
                (["--speculative", "bogus"], "not one of none, ngram, draft"),
                (["--speculative", "draft"], "--speculative draft and --draft-model go together"),
                (["--draft-model", self.model_dir], "go together"),
                (["--speculative", "ngram", "--ngram-min", "5", "--ngram-max", "3"],
                 "--ngram-min (5) must not exceed --ngram-max (3)"),
                (["--speculative", "ngram", "--num-speculative-tokens", "17"],
                 "num-speculative-tokens"),
                (["--speculative", "draft", "--draft-model", other], "vocabulary has 600")]:
            args = [binary("iquest-serve"), "--model", self.model_dir, "--port", "0",
                    "--metrics-port", "-1", "--http-port", "-1", *flags]
            out = subprocess.run(args, capture_output=True, text=True, timeout=60)
            self.assertNotEqual(out.returncode, 0, flags)
            self.assertIn(message, out.stdout + out.stderr, flags)


if __name__ == "__main__":
    unittest.main()
