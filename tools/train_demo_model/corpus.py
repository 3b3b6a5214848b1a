"""The demo model's corpus: the Python standard library of the build machine, minus tests.

Deterministic: the file list is sorted, the validation split is drawn with a fixed seed, and each
file is read as UTF-8 bytes (files that are not valid UTF-8 are left out, and say so).
"""

import os
import random

STDLIB_DIR = "/usr/lib/python3.11"
# Test folders (and installed third-party packages) are not the standard library's own code.
EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
SPLIT_SEED = 20261128
VALIDATION_FRACTION = 0.02


def list_files(root=STDLIB_DIR):
    """Sorted relative paths of the corpus's *.py files."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                paths.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(paths)


def read_texts(paths, root=STDLIB_DIR):
    """{path: text} for the files that decode as UTF-8; the others are reported and skipped."""
    texts = {}
    for path in paths:
        with open(os.path.join(root, path), "rb") as f:
            data = f.read()
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            print(f"corpus: skipping {path}: not UTF-8")
    return texts


def split(paths):
    """(train, validation): a fixed-seed shuffle holds out about 2 % of the files."""
    shuffled = list(paths)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * VALIDATION_FRACTION))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])
