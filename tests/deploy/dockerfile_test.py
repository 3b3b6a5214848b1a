"""Lints deploy/docker (no Docker engine needed): base images pinned by tag, multi-stage with a
non-root numeric USER in the final stage, no ADD of URLs, a HEALTHCHECK, BuildKit cache mounts,
builds through the CI scripts; and runs scripts/ci/bundle.sh on the real build to show that the
runtime layout it produces resolves every library from the bundle.

Usage: dockerfile_test.py [--build-dir DIR]  (the bundle test needs a finished build)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
DOCKER = os.path.join(ROOT, "deploy/docker")
BUILD_DIR = os.path.join(ROOT, "build")


def instructions(path):
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def expand(value, args):
    """${NAME} replaced from the Dockerfile's ARG defaults, until none is left."""
    while "${" in value:
        value = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return value


class DockerfileTest(unittest.TestCase):
    def each(self):
        names = sorted(n for n in os.listdir(DOCKER) if n.startswith("Dockerfile"))
        self.assertEqual(names, ["Dockerfile.cpu", "Dockerfile.cuda"])
        for name in names:
            yield name, instructions(os.path.join(DOCKER, name))

    def test_base_images_are_pinned_by_tag(self):
        for name, steps in self.each():
            with self.subTest(dockerfile=name):
                args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
                stages = set()
                for keyword, rest in steps:
                    if keyword != "FROM":
                        continue
                    image, _, alias = expand(rest, args).partition(" AS ")
                    stages.add(alias.strip())
                    if image in stages:
                        continue
                    repository, _, tag = image.rpartition(":")
                    self.assertTrue(repository and tag, f"{image} has no tag")
                    self.assertNotIn(tag, ["latest", "bookworm-slim", "bookworm"], image)
                    self.assertRegex(tag, r"\d", f"{image}: pin a versioned or dated tag")
                if name == "Dockerfile.cuda":
                    froms = [expand(r, args) for k, r in steps if k == "FROM"]
                    self.assertRegex(froms[0], r"^nvidia/cuda:[\d.]+-devel-")
                    self.assertRegex(froms[-1], r"^nvidia/cuda:[\d.]+-runtime-")
                else:
                    base = expand(args["BASE_IMAGE"], args)
                    self.assertRegex(base, r"^debian:bookworm-\d+-slim$")

    def test_final_stage_runs_as_a_numeric_non_root_user(self):
        for name, steps in self.each():
            with self.subTest(dockerfile=name):
                last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
                users = [r for k, r in steps[last_from:] if k == "USER"]
                self.assertEqual(len(users), 1)
                uid = users[0].split(":")[0]
                self.assertRegex(uid, r"^\d+$", "Kubernetes runAsNonRoot needs a numeric USER")
                self.assertNotEqual(int(uid), 0)
                self.assertEqual(steps[-2][0], "ENTRYPOINT")  # Nothing runs as root after USER.

    def test_no_add_of_urls_and_no_curl_pipes(self):
        for name, steps in self.each():
            with self.subTest(dockerfile=name):
                for keyword, rest in steps:
                    if keyword == "ADD":
                        self.assertNotRegex(rest, r"https?://|git@")
                    self.assertNotRegex(rest, r"(curl|wget)[^|]*\|\s*(ba)?sh")

    def test_healthcheck_asks_for_readiness_on_the_health_port(self):
        for name, steps in self.each():
            with self.subTest(dockerfile=name):
                checks = [r for k, r in steps if k == "HEALTHCHECK"]
                self.assertEqual(len(checks), 1)
                self.assertIn('"iquest.serve.v1.Generation"', checks[0])
                cmd = " ".join(r for k, r in steps if k == "CMD")
                port = re.search(r'"--health-port", "(\d+)"', cmd).group(1)
                self.assertIn(f'"127.0.0.1:{port}"', checks[0])

    def test_builds_with_the_ci_scripts_and_cache_mounts(self):
        for name, steps in self.each():
            with self.subTest(dockerfile=name):
                runs = " ".join(r for k, r in steps if k == "RUN")
                self.assertIn("scripts/ci/build.sh", runs)
                self.assertIn("scripts/ci/bundle.sh build /opt/iquest", runs)
                self.assertIn("--mount=type=cache,target=/root/.cache/ccache", runs)
                self.assertIn("--mount=type=cache,target=/var/cache/apt", runs)
                copies = [r for k, r in steps if k == "COPY" and "--from=build" in r]
                self.assertEqual(copies, ["--from=build /opt/iquest /opt/iquest"])

    def test_dockerignore_keeps_build_outputs_and_git_out(self):
        with open(os.path.join(ROOT, ".dockerignore")) as f:
            ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        for entry in [".git", "build", "**/node_modules", ".ccache"]:
            self.assertIn(entry, ignored)
        self.assertNotIn("README.md", ignored)  # The random model's tokenizer trains on it.


class BundleTest(unittest.TestCase):
    """scripts/ci/bundle.sh on this machine's build: what the runtime stage copies."""

    def test_bundle_resolves_every_library_inside_it(self):
        if not os.path.exists(os.path.join(BUILD_DIR, "bin/iquest-serve")):
            self.fail(f"no build in {BUILD_DIR}")
        dest = tempfile.mkdtemp(prefix="bundle-test-")
        try:
            subprocess.run([os.path.join(ROOT, "scripts/ci/bundle.sh"), BUILD_DIR, dest],
                           check=True, capture_output=True)
            libs = set(os.listdir(os.path.join(dest, "lib")))
            self.assertIn("libiquest_spm_shim.so", libs)
            self.assertTrue(any(n.startswith("libgrpc++") for n in libs))
            self.assertTrue(any(n.startswith("libsentencepiece") for n in libs))  # via the shim
            self.assertFalse([n for n in libs if re.match(r"lib(c|m|pthread)\.so", n)])
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(dest, "lib"))
            for binary in ["iquest-serve", "iquest-cli"]:
                path = os.path.join(dest, "bin", binary)
                ldd = subprocess.run(["ldd", path], env=env, capture_output=True, text=True,
                                     check=True).stdout
                for line in ldd.splitlines():
                    if "=>" in line and not re.search(
                            r"\b(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux[\w-]*)\.so",
                            line):
                        self.assertIn(dest, line, f"{binary}: {line.strip()}")
                subprocess.run([path, "--help"], env=env, check=True, capture_output=True)
        finally:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--build-dir":
        BUILD_DIR = sys.argv[2]
        del sys.argv[1:3]
    unittest.main()
