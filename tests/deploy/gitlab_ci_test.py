"""Checks .gitlab-ci.yml: gitlab-ci-local (npm, pinned in tests/deploy/js) parses it and validates
it against GitLab's JSON schema; the jobs each kind of pipeline gets, their stages and needs, are
the ones docs/deploy.md documents; every job runs only project scripts, which exist; the workflow
rules skip changes that touch docs alone.

gitlab-ci-local evaluates job rules but not workflow rules, so the workflow's path list is checked
here directly against the repository's folders.
"""

import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
GITLAB_CI_LOCAL = os.path.join(ROOT, "tests/deploy/js/node_modules/.bin/gitlab-ci-local")
STAGES = ["build", "test", "eval", "package", "deploy"]
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def load_pipeline():
    with open(os.path.join(ROOT, ".gitlab-ci.yml")) as f:
        return yaml.safe_load(f)


def jobs_of(pipeline):
    """The jobs: top-level mappings that are not hidden (.name) templates or global keywords."""
    return {name: job for name, job in pipeline.items()
            if isinstance(job, dict) and not name.startswith(".")
            and name not in ("workflow", "default", "variables")}


def resolved(pipeline, job):
    """The job with its `extends` templates merged in (one level is all this file uses)."""
    merged = {}
    for base in [job.get("extends")] if isinstance(job.get("extends"), str) else job.get(
            "extends", []):
        merged.update(pipeline[base])
    merged.update(job)
    return merged


class GitlabCiLocal:
    """gitlab-ci-local --list-csv over a scratch git repository holding .gitlab-ci.yml, so that
    branch names are ours and nothing is written into the source tree."""

    def __init__(self):
        if not os.access(GITLAB_CI_LOCAL, os.X_OK):
            raise AssertionError("gitlab-ci-local is missing: run scripts/install-deps.sh")
        self.dir = tempfile.mkdtemp(prefix="gitlab-ci-test-")
        shutil.copy(os.path.join(ROOT, ".gitlab-ci.yml"), self.dir)
        subprocess.run(GIT + ["init", "-q", "-b", "main"], cwd=self.dir, check=True)
        subprocess.run(GIT + ["add", "-A"], cwd=self.dir, check=True)
        subprocess.run(GIT + ["commit", "-qm", "pipeline"], cwd=self.dir, check=True)

    def jobs(self, *variables):
        """{job: (stage, when, allow_failure, needs)} of the pipeline under these variables."""
        command = [GITLAB_CI_LOCAL, "--list-csv", "--json-schema-validation"]
        for variable in variables:
            command += ["--variable", variable]
        done = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, HOME=self.dir, NO_COLOR="1"))
        if done.returncode != 0:
            raise AssertionError(f"gitlab-ci-local failed:\n{done.stdout}\n{done.stderr}")
        lines = [line for line in done.stdout.splitlines() if line.count(";") == 5]
        header = lines[0].split(";")
        assert header[0] == "name", done.stdout
        out = {}
        for line in lines[1:]:
            name, _, stage, when, allow_failure, needs = line.split(";")
            out[name] = (stage, when, allow_failure == "true",
                         [n for n in needs.strip("[]").split(",") if n])
        return out

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PipelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.local = GitlabCiLocal()
        cls.pipeline = load_pipeline()

    @classmethod
    def tearDownClass(cls):
        cls.local.close()

    def test_main_push_runs_everything_but_the_gpu_eval(self):
        jobs = self.local.jobs("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main")
        self.assertEqual(jobs, {
            "image:cpu": ("build", "on_success", False, []),
            "image:cuda": ("build", "on_success", False, []),
            "unit-tests": ("test", "on_success", False, []),
            "sanitizers": ("test", "on_success", False, []),
            "tsan": ("test", "on_success", False, []),
            "fuzz": ("test", "on_success", False, []),
            "gpu-check": ("test", "manual", True, []),
            "eval": ("eval", "on_success", False, ["unit-tests"]),
            "package": ("package", "on_success", False,
                        ["image:cpu", "image:cuda", "unit-tests", "sanitizers", "eval"]),
            "deploy:staging": ("deploy", "on_success", False, ["package"]),
        })

    def test_gpu_eval_runs_on_main_when_a_checkpoint_is_configured(self):
        jobs = self.local.jobs("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main",
                               "EVAL_MODEL_DIR=/models/iquest-coder-7b")
        self.assertEqual(jobs["eval:gpu"], ("eval", "manual", True, ["unit-tests"]))

    def test_merge_requests_neither_package_nor_deploy(self):
        jobs = self.local.jobs("CI_PIPELINE_SOURCE=merge_request_event",
                               "CI_COMMIT_BRANCH=", "CI_MERGE_REQUEST_IID=7",
                               "EVAL_MODEL_DIR=/models/x")
        self.assertEqual(sorted(jobs), ["eval", "fuzz", "gpu-check", "image:cpu", "image:cuda",
                                        "sanitizers", "tsan", "unit-tests"])

    def test_tags_package_but_do_not_deploy(self):
        jobs = self.local.jobs("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=",
                               "CI_COMMIT_TAG=v0.1.0")
        self.assertIn("package", jobs)
        self.assertNotIn("deploy:staging", jobs)

    def test_other_branch_pushes_run_nothing(self):
        self.assertEqual(self.local.jobs("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=feature"),
                         {})

    def test_yamllint(self):
        done = subprocess.run(["yamllint", "-f", "parsable", "-c",
                               os.path.join(ROOT, ".yamllint.yaml"),
                               os.path.join(ROOT, ".gitlab-ci.yml")],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_stages_in_order(self):
        self.assertEqual(self.pipeline["stages"], STAGES)

    def test_jobs_call_only_existing_project_scripts(self):
        jobs = jobs_of(self.pipeline)
        self.assertGreaterEqual(len(jobs), 9)
        for name, job in jobs.items():
            job = resolved(self.pipeline, job)
            for key in ["before_script", "script", "after_script"]:
                for line in job.get(key, []):
                    with self.subTest(job=name, line=line):
                        match = re.fullmatch(r"(scripts/ci/[\w.-]+)( [\w-]+)*", line)
                        self.assertIsNotNone(match, "not a project script call")
                        path = os.path.join(ROOT, match.group(1))
                        self.assertTrue(os.access(path, os.X_OK), "missing or not executable")
                        with open(path) as f:
                            shebang = f.readline().strip()
                        shell = {"#!/usr/bin/env bash": "bash", "#!/bin/sh": "sh"}.get(shebang)
                        if shell:
                            done = subprocess.run([shell, "-n", path], capture_output=True,
                                                  text=True)
                            self.assertEqual(done.returncode, 0, done.stderr)

    def test_gpu_jobs_are_serialised_on_the_gpu_runner(self):
        for name in ["gpu-check", "eval:gpu"]:
            job = resolved(self.pipeline, self.pipeline[name])
            self.assertEqual(job["tags"], ["gpu"], name)
            self.assertEqual(job["resource_group"], "gpu-h200", name)
            self.assertIn("timeout", job, name)

    def test_artifacts_expire_and_tests_report_junit(self):
        for name, job in jobs_of(self.pipeline).items():
            if "artifacts" in job:
                self.assertIn("expire_in", job["artifacts"], name)
        for name in ["unit-tests", "sanitizers", "tsan", "eval"]:
            self.assertIn("junit", self.pipeline[name]["artifacts"]["reports"], name)
        with open(os.path.join(ROOT, "scripts/ci/unit-tests.sh")) as f:
            self.assertIn("--output-junit", f.read())

    def test_deploy_is_main_only_into_a_staging_environment(self):
        job = self.pipeline["deploy:staging"]
        self.assertEqual(job["environment"]["name"], "staging")
        self.assertEqual([r["if"] for r in job["rules"]],
                         ["$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"])
        self.assertFalse(job["interruptible"])

    def test_scripts_never_expose_secrets(self):
        ci = os.path.join(ROOT, "scripts/ci")
        for name in sorted(os.listdir(ci)):
            with open(os.path.join(ci, name)) as f:
                text = f.read()
            with self.subTest(script=name):
                self.assertNotRegex(text, r"set -[a-z]*x|set -o xtrace")
                for line in text.splitlines():
                    if "PASSWORD" in line:
                        self.assertIn("--password-stdin", line)
                        self.assertNotRegex(line, r"\becho\b")

    def test_workflow_skips_docs_only_changes(self):
        rules = self.pipeline["workflow"]["rules"]
        path_rules = [r for r in rules if "changes" in r]
        self.assertEqual(len(path_rules), 1)
        self.assertIn("merge_request_event", path_rules[0]["if"])
        patterns = path_rules[0]["changes"]["paths"]

        def matches(path):
            return any(fnmatch.fnmatch(path, p.replace("**/*", "*")) for p in patterns)

        for doc in ["docs/deploy.md", "README.md", "docs/architecture.md"]:
            self.assertFalse(matches(doc), doc)
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
        self.assertTrue(tracked)
        for path in tracked:
            if path.startswith("docs/") or path.endswith(".md") or path == ".gitignore":
                continue
            with self.subTest(path=path):
                self.assertTrue(matches(path), "a code change here would run no pipeline")


if __name__ == "__main__":
    unittest.main()
