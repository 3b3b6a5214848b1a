"""The committed demo model (models/demo) through the real iquest-serve, with no special cases:
its stored completions, streaming, the prefix cache, version reporting, and the manifest check
refusing a corrupted weight file or a tokenizer from another model.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/demo_model_test.py
IQUEST_DEMO_MODEL=DIR points it at another folder with the same eval/ files.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import demo_completions
from harness import Server, binary, collect, make_model, pb

MODEL = os.environ.get("IQUEST_DEMO_MODEL", demo_completions.DEFAULT_MODEL)


def manifest_fingerprint(model_dir):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        return json.load(f)["fingerprint"]


class DemoModelServingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(MODEL, *demo_completions.SERVER_FLAGS)

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, cls.server.logs()

    def test_stored_completions(self):
        problems = demo_completions.check(self.server.stub,
                                          os.path.join(MODEL, "eval", "completions.json"))
        self.assertEqual(problems, [])

    def test_greedy_text_is_python_shaped(self):
        request = pb.GenerateRequest(text="def fibonacci(n):",
                                     sampling=pb.SamplingParams(temperature=0, max_tokens=48))
        _, text, _ = collect(self.server.stub.Generate(request, timeout=60))
        self.assertIn("\n    ", text)  # An indented body follows the signature.

    def test_streamed_text_equals_the_decoded_ids(self):
        request = pb.GenerateRequest(
            text="import os\n", sampling=pb.SamplingParams(temperature=0.8, seed=5, max_tokens=40,
                                                           ignore_eos=True))
        ids, text, last = collect(self.server.stub.Generate(request, timeout=60))
        self.assertEqual(len(ids), 40)
        self.assertEqual(last.usage.completion_tokens, 40)
        decoded = self.server.stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=10)
        self.assertEqual(text, decoded.text)

    def test_prefix_cache_serves_a_repeated_prompt(self):
        with open(os.path.join(MODEL, "eval", "validation.jsonl")) as f:
            prompt = json.loads(f.readline())["text"][:300]
        request = pb.GenerateRequest(text=prompt,
                                     sampling=pb.SamplingParams(temperature=0, max_tokens=16))
        first_ids, first_text, first = collect(self.server.stub.Generate(request, timeout=60))
        again_ids, again_text, again = collect(self.server.stub.Generate(request, timeout=60))
        self.assertGreater(again.usage.cached_tokens, 0)
        self.assertEqual((again_ids, again_text), (first_ids, first_text))

    def test_model_info_and_metrics_name_the_build_and_the_weights(self):
        info = self.server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        fingerprint = manifest_fingerprint(MODEL)
        self.assertEqual(info.model_fingerprint, fingerprint)
        self.assertRegex(info.build_version, r"^\d+\.\d+\.\d+\+\S+$")
        self.assertEqual(self.server.metric("iquest_build_info", version=info.build_version), 1)
        self.assertEqual(self.server.metric("iquest_model_info", fingerprint=fingerprint,
                                            architecture=info.architecture), 1)


class ManifestCheckTest(unittest.TestCase):
    """Each refusal happens at load: iquest-serve exits 1 and its log names the file."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="iquest-demo-copy-")
        self.model = os.path.join(self.dir, "demo")
        shutil.copytree(MODEL, self.model, ignore=shutil.ignore_patterns("eval"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *flags):
        return subprocess.run([binary("iquest-serve"), "--model", self.model, "--port", "0",
                               "--metrics-port", "-1", "--http-port", "-1", *flags],
                              capture_output=True, text=True, timeout=60)

    def use_foreign_tokenizer(self):
        other = make_model(os.path.join(self.dir, "other"))
        shutil.copy(os.path.join(other, "tokenizer.model"), self.model)

    def test_corrupted_weights_are_refused(self):
        path = os.path.join(self.model, "model.safetensors")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        result = self.start()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("event=load_failed", result.stderr)
        self.assertIn("model.safetensors: sha256", result.stderr)
        self.assertIn("does not match manifest.json", result.stderr)

    def test_a_tokenizer_from_another_model_is_refused(self):
        self.use_foreign_tokenizer()
        result = self.start()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("tokenizer.model: sha256", result.stderr)

    def test_the_override_serves_it_with_a_warning(self):
        self.use_foreign_tokenizer()
        server = Server(self.model, "--allow-manifest-mismatch")
        try:
            info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            self.assertNotEqual(info.model_fingerprint, manifest_fingerprint(self.model))
            self.assertEqual(len(info.model_fingerprint), 16)
        finally:
            self.assertEqual(server.stop(), 0)
        self.assertIn("event=manifest_mismatch_allowed", server.logs())
        self.assertIn("tokenizer.model: sha256", server.logs())


if __name__ == "__main__":
    unittest.main()
