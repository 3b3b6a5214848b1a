"""KV-cache events end to end: the real iquest-serve publishes on ZeroMQ, a subscriber written
here (Debian's python3-zmq and python3-msgpack) decodes vLLM's array-like EventBatch layout,
replays it, and must end with exactly the server's prefix-cache contents after a randomized
workload that stores and evicts blocks. Hashes and token ids are checked against an independent
computation of the block keys (SHA-256 of parent key, int32 tokens, salt), sequence numbers
against gaps.

Run by ctest (label e2e) as: /usr/bin/python3 tests/server/kv_events_test.py
"""

import hashlib
import random
import socket
import struct
import tempfile
import threading
import time
import unittest

import msgpack
import zmq

from harness import Server, make_model, pb
from http_test import request

BLOCK_SIZE = 4  # The harness's --block-size.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def block_keys(tokens, salt=b""):
    """(external hash, parent external hash, block tokens) of every full block of `tokens`."""
    out, parent, parent_ext = [], None, None
    for i in range(len(tokens) // BLOCK_SIZE):
        block = tokens[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]
        h = hashlib.sha256()
        if parent is not None:
            h.update(parent)
        h.update(struct.pack(f"<{BLOCK_SIZE}i", *block))
        h.update(struct.pack("<Q", len(salt)) + salt)
        parent = h.digest()
        ext = int.from_bytes(parent[:8], "big") & ((1 << 63) - 1)
        out.append((ext, parent_ext, block))
        parent_ext = ext
    return out


class KvEventsTest(unittest.TestCase):
    def test_replayed_events_equal_the_prefix_cache(self):
        model_dir = make_model(tempfile.mkdtemp(prefix="iquest-kv-events-"))
        port = free_port()
        # The subscriber lives on its own thread and polls all along: ZeroMQ sends the
        # subscription (and so gets messages) only while the application uses the socket.
        context = zmq.Context()
        received, stop, bound = [], threading.Event(), threading.Event()

        def subscribe():
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"kv@test")
            sub.bind(f"tcp://127.0.0.1:{port}")  # The server connects (no wildcard).
            bound.set()
            while not stop.is_set():
                if sub.poll(50):
                    received.append(sub.recv_multipart())
            sub.close(linger=0)
        thread = threading.Thread(target=subscribe)
        thread.start()
        bound.wait(10)
        server = Server(model_dir, "--kv-events-endpoint", f"tcp://127.0.0.1:{port}",
                        "--kv-events-topic", "kv@test", "--num-kv-blocks", "48")
        try:
            time.sleep(1.0)  # ZeroMQ's slow joiner: the subscription reaches the server first.
            rng = random.Random(5)
            stems = [[1] + [rng.randrange(3, 500) for _ in range(rng.randrange(8, 30))]
                     for _ in range(6)]
            expected = {}  # External hash -> (parent, tokens), from our own computation.
            for i in range(60):
                prompt = rng.choice(stems) + [rng.randrange(3, 500) for _ in range(rng.randrange(0, 12))]
                generate = pb.GenerateRequest(token_ids=pb.TokenIds(ids=prompt),
                                             sampling=pb.SamplingParams(max_tokens=4, temperature=0,
                                                                        ignore_eos=True))
                ids = [t for r in server.stub.Generate(generate, timeout=30) for t in r.token_ids]
                # Blocks of the prompt and output whose K/V were computed: all but the last token.
                for ext, parent, block in block_keys((prompt + ids)[:-1]):
                    expected[ext] = (parent, block)
                if i == 40:
                    # vLLM's reset: the subscriber must see AllBlocksCleared and start over.
                    server.wait_kv_free(10)
                    status = request(server.http_port, "POST", "/reset_prefix_cache", {})[0]
                    self.assertEqual(status, 200)
            server.wait_kv_free(10)
            time.sleep(1.0)
            stop.set()
            thread.join(10)
            batches = []
            for topic, seq, payload in received:
                self.assertEqual(topic, b"kv@test")
                batches.append((int.from_bytes(seq, "big"), msgpack.unpackb(payload, raw=False)))
            self.assertTrue(batches)
            seqs = [s for s, _ in batches]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "gaps")
            cached, stored, removed, cleared = set(), 0, 0, 0
            for _, batch in batches:
                self.assertEqual(len(batch), 3)  # [ts, events, data_parallel_rank]
                ts, events, rank = batch
                self.assertIsInstance(ts, float)
                self.assertEqual(rank, 0)
                for event in events:
                    if event[0] == "AllBlocksCleared":
                        cached.clear()
                        cleared += 1
                    elif event[0] == "BlockStored":
                        _, hashes, parent, tokens, block_size, lora, medium = event
                        self.assertEqual((block_size, lora, medium), (BLOCK_SIZE, None, "CPU"))
                        for h in hashes:
                            self.assertIn(h, expected, "a hash we did not compute")
                            self.assertEqual((parent, tokens), expected[h])
                            cached.add(h)
                            stored += 1
                    else:
                        self.assertEqual(event[0], "BlockRemoved")
                        for h in event[1]:
                            self.assertIn(h, cached)
                            cached.discard(h)
                            removed += 1
            self.assertGreater(removed, 0, "the workload should have evicted blocks")
            self.assertGreaterEqual(cleared, 1)
            # Idle, every keyed block is in the free queue: the server's cached-block count.
            self.assertEqual(len(cached), server.load().num_cached_kv_blocks)
            self.assertGreater(stored, len(cached))
        finally:
            stop.set()
            thread.join(10)
            self.assertEqual(server.stop(), 0)
            context.term()


if __name__ == "__main__":
    unittest.main()
