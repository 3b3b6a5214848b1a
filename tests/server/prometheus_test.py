"""iquest-serve scraped by a real Prometheus (Debian's), driven by iquest-bench with
cancellations and rejections. Checks through the Prometheus HTTP API that every metric family
exists, that the counters moved by exactly what the bench reports, and that every expression of
every dashboard panel and every recording rule evaluates without error and returns data.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/prometheus_test.py
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from harness import Server, binary, make_model

ROOT = os.path.join(os.path.dirname(__file__), "../..")
FAMILIES = [
    "iquest_requests_running", "iquest_requests_waiting", "iquest_kv_cache_usage_ratio",
    "iquest_kv_cache_blocks", "iquest_cache_config_info", "iquest_requests_total",
    "iquest_requests_rejected_total", "iquest_prompt_tokens_total",
    "iquest_generation_tokens_total", "iquest_prefix_cache_queries_total",
    "iquest_prefix_cache_hits_total", "iquest_preemptions_total",
    "iquest_spec_decode_num_drafts_total", "iquest_spec_decode_num_draft_tokens_total",
    "iquest_spec_decode_num_accepted_tokens_total",
    "iquest_spec_decode_num_accepted_tokens_per_pos_total",
] + [h + "_bucket" for h in (
    "iquest_time_to_first_token_seconds", "iquest_inter_token_latency_seconds",
    "iquest_e2e_request_latency_seconds", "iquest_request_queue_seconds",
    "iquest_request_prompt_tokens", "iquest_request_generation_tokens",
    "iquest_step_duration_seconds", "iquest_batch_tokens")]
SCRAPE_SECONDS = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="iquest-prom-")
        model = make_model(os.path.join(cls.dir, "model"))
        # A small KV pool and queue so that preemptions and rejections happen.
        # Prompt lookup on: the speculative-decoding families and panel have data too.
        cls.server = Server(model, "--num-kv-blocks", "30", "--max-queue", "3",
                            "--max-num-seqs", "4", "--speculative", "ngram", "--ngram-min", "1")
        rules = os.path.join(cls.dir, "rules")
        os.makedirs(rules)
        for name in os.listdir(os.path.join(ROOT, "deploy/prometheus/rules")):
            with open(os.path.join(ROOT, "deploy/prometheus/rules", name)) as f:
                text = f.read().replace("interval: 15s", f"interval: {SCRAPE_SECONDS}s")
            with open(os.path.join(rules, name), "w") as f:
                f.write(text)
        with open(os.path.join(ROOT, "deploy/prometheus/prometheus.yml")) as f:
            config = f.read()
        config = (config.replace("15s", f"{SCRAPE_SECONDS}s")
                  .replace("127.0.0.1:9400", f"127.0.0.1:{cls.server.metrics_port}"))
        config_path = os.path.join(cls.dir, "prometheus.yml")
        with open(config_path, "w") as f:
            f.write(config)
        cls.prom_port = free_port()
        cls.prom_log = open(os.path.join(cls.dir, "prometheus.log"), "w")
        cls.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config_path}",
             f"--storage.tsdb.path={cls.dir}/tsdb",
             f"--web.listen-address=127.0.0.1:{cls.prom_port}"],
            stdout=cls.prom_log, stderr=subprocess.STDOUT)
        Server.wait_for(lambda: cls.value('up{job="iquest-serve"}') == 1, 60, "target up")

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.terminate()
        cls.prometheus.wait(timeout=30)
        cls.prom_log.close()
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def query(cls, expr):
        url = (f"http://127.0.0.1:{cls.prom_port}/api/v1/query?" +
               urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.load(reply)
        except Exception as e:  # noqa: BLE001 - an HTTP 400 carries the PromQL error.
            return {"status": "error", "error": str(e)}
        return body

    @classmethod
    def value(cls, expr):
        body = cls.query(expr)
        result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
        return sum(float(r["value"][1]) for r in result) if result else None

    def bench(self, name, *flags):
        path = os.path.join(self.dir, name + ".json")
        subprocess.run([binary("iquest-bench"), "--target", f"127.0.0.1:{self.server.port}",
                        "--input-len", "24", "--output-len", "24", "--seed", "3",
                        "--json-out", path, *flags], check=True, capture_output=True, timeout=300)
        with open(path) as f:
            return json.load(f)

    def test_metrics_follow_the_bench_in_prometheus(self):
        # Run 1 fits the server (4 streams, 4 seats) and cancels half its streams after their
        # first token; run 2 overruns the queue (16 streams, 4 seats + 3 queued) and gets refusals.
        first = self.bench("cancels", "--concurrency", "4", "--num-requests", "20",
                           "--cancel-fraction", "0.5")
        second = self.bench("overload", "--concurrency", "16", "--num-requests", "40")
        completed = first["num_completed"] + second["num_completed"]
        cancelled = first["num_cancelled"] + second["num_cancelled"]
        exhausted = sum(r["errors"].get("RESOURCE_EXHAUSTED", 0) for r in (first, second))
        summary = [{k: r[k] for k in ("num_completed", "num_cancelled", "errors")}
                   for r in (first, second)]
        self.assertGreater(cancelled, 0, summary)
        self.assertGreater(exhausted, 0, summary)
        self.assertEqual(completed + cancelled + exhausted, 60, summary)
        self.server.wait_kv_free(seconds=5)
        # Let Prometheus take the final values: one scrape interval and some.
        time.sleep(3 * SCRAPE_SECONDS)

        # The exposition passes Prometheus's own linter.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.metrics_port}/metrics",
                                    timeout=5) as reply:
            exposition = reply.read()
        lint = subprocess.run(["promtool", "check", "metrics"], input=exposition,
                              capture_output=True, timeout=60)
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        self.assertEqual(lint.stdout + lint.stderr, b"")
        for family in FAMILIES:
            self.assertIsNotNone(self.value(f"count({family})"), family)
        finished = self.value('sum(iquest_requests_total{finish_reason=~"length|cancelled"})')
        self.assertEqual(finished, completed + cancelled)
        self.assertGreaterEqual(self.value('sum(iquest_requests_total{finish_reason="cancelled"})'),
                                1)
        self.assertEqual(self.value('sum(iquest_requests_rejected_total{code="RESOURCE_EXHAUSTED"})'),
                         exhausted)
        self.assertEqual(self.value("sum(iquest_prompt_tokens_total)"), 24 * (completed + cancelled))
        self.assertGreaterEqual(self.value("sum(iquest_generation_tokens_total)"),
                                first["total_output_tokens"] + second["total_output_tokens"] +
                                cancelled)
        self.assertEqual(self.value("sum(iquest_time_to_first_token_seconds_count)"),
                         completed + cancelled)
        self.assertGreater(self.value("sum(iquest_preemptions_total)"), 0)

        with open(os.path.join(ROOT, "deploy/grafana/iquest-serve.json")) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 12)
        for expr in exprs:
            concrete = expr.replace("$model", ".*").replace("$__rate_interval", "1m")
            body = self.query(concrete)
            self.assertEqual(body.get("status"), "success", f"{concrete}: {body.get('error')}")
            self.assertTrue(body["data"]["result"], f"no data: {concrete}")
        rules = []
        for name in ("iquest-recording.rules.yml",):
            with open(os.path.join(ROOT, "deploy/prometheus/rules", name)) as f:
                rules += re.findall(r"- record: (\S+)", f.read())
        self.assertGreaterEqual(len(rules), 10)
        for record in rules:
            self.assertIsNotNone(self.value(record), f"recording rule {record} has no data")


if __name__ == "__main__":
    unittest.main(verbosity=2)
