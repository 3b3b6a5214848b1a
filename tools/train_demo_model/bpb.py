"""Held-out bits per byte, with the windowing protocol our engine's iquest-eval-bpb also uses.

Protocol (docs/demo-model.md): each file is tokenized without special tokens and framed as
[BOS] ids [EOS]. Windows of at most 256 tokens start at 0, 255, 510, ...: consecutive windows
share one token, a window's first token is given, and each of its other tokens is scored from the
window's prefix (positions restart at 0 in every window). So every token after BOS (EOS included)
is scored exactly once. bits per byte = sum of -log2 p(token) / the files' UTF-8 bytes.
"""

import math

import torch
import torch.nn.functional as F

CONTEXT = 256


def windows(ids):
    """The windows of one framed file ([BOS] ids [EOS])."""
    out, start = [], 0
    while start + 1 < len(ids):
        out.append(ids[start:start + CONTEXT])
        start += CONTEXT - 1
    return out


@torch.no_grad()
def bits(model, framed_files, batch=16):
    """Sum of -log2 p over every scored token, and the number of scored tokens."""
    all_windows = [w for ids in framed_files for w in windows(ids)]
    total_nats, count = 0.0, 0
    # Windows of one length are batched together; the order does not change the sum.
    by_len = {}
    for w in all_windows:
        by_len.setdefault(len(w), []).append(w)
    for length in sorted(by_len):
        group = by_len[length]
        for i in range(0, len(group), batch):
            ids = torch.tensor(group[i:i + batch], dtype=torch.long)
            logits = model(ids[:, :-1]).double()
            logp = F.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
            total_nats -= picked.sum().item()
            count += picked.numel()
    return total_nats / math.log(2), count


def frame(ids, cfg):
    return [cfg.bos_token_id] + list(ids) + [cfg.eos_token_id]
