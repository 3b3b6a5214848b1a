"""Static checks of deploy/k8s: every overlay renders with `kubectl kustomize`, passes yamllint,
and the rendered objects keep the Kubernetes rules of DESIGN §10 and reliability.md §5 (probes on
the health port, GPU limits, grace period >= preStop + drain, non-root, read-only root FS, PDB).
No cluster is needed.
"""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
K8S = os.path.join(ROOT, "deploy/k8s")
OVERLAYS = ["cpu", "gpu", "gpu-model-image"]
HEALTH_PORT = 8081
READINESS = "iquest.serve.v1.Generation"


def render(overlay):
    done = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, "overlays", overlay)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{done.stderr}")
    return done.stdout


def objects_by_kind(text):
    out = {}
    for doc in yaml.safe_load_all(text):
        out.setdefault(doc["kind"], []).append(doc)
    return out


def server_container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "iquest-serve")


def flag_value(container, flag, env):
    """The value of --flag in the container's args, with $(VAR) expanded from `env`."""
    for arg in container["args"]:
        if arg.startswith(f"--{flag}="):
            value = arg.split("=", 1)[1]
            return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
    raise AssertionError(f"--{flag} is not in the args")


class RenderedOverlayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rendered = {name: render(name) for name in OVERLAYS}
        cls.objects = {name: objects_by_kind(text) for name, text in cls.rendered.items()}

    def each(self):
        for name in OVERLAYS:
            objects = self.objects[name]
            deployment = objects["Deployment"][0]
            flags = objects["ConfigMap"][0]["data"]
            yield name, objects, deployment, server_container(deployment), flags

    def test_yamllint_sources_and_rendered(self):
        config = os.path.join(ROOT, ".yamllint.yaml")
        done = subprocess.run(["yamllint", "-f", "parsable", "-c", config, K8S],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        for name, text in self.rendered.items():
            done = subprocess.run(["yamllint", "-f", "parsable", "-c", config, "-"], input=text,
                                  capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, f"{name}: {done.stdout}{done.stderr}")

    def test_every_overlay_has_the_objects(self):
        for name, objects, _, _, _ in self.each():
            with self.subTest(overlay=name):
                for kind in ["Deployment", "Service", "ConfigMap", "PersistentVolumeClaim",
                             "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor"]:
                    self.assertEqual(len(objects.get(kind, [])), 1, kind)

    def test_probes_are_grpc_on_the_health_port(self):
        for name, _, _, container, _ in self.each():
            with self.subTest(overlay=name):
                self.assertEqual(flag_value(container, "health-port", {}), str(HEALTH_PORT))
                probes = {kind: container[kind] for kind in
                          ["startupProbe", "readinessProbe", "livenessProbe"]}
                for kind, probe in probes.items():
                    self.assertEqual(probe["grpc"]["port"], HEALTH_PORT, kind)
                # Startup and readiness wait for the model; liveness asks about the process only.
                self.assertEqual(probes["startupProbe"]["grpc"]["service"], READINESS)
                self.assertEqual(probes["readinessProbe"]["grpc"]["service"], READINESS)
                self.assertEqual(probes["livenessProbe"]["grpc"].get("service", ""), "")

    def test_startup_probe_allows_a_long_model_load(self):
        for name, _, _, container, _ in self.each():
            with self.subTest(overlay=name):
                probe = container["startupProbe"]
                budget_s = probe["periodSeconds"] * probe["failureThreshold"]
                self.assertGreaterEqual(budget_s, 1800 if name.startswith("gpu") else 600)

    def test_grace_period_covers_prestop_and_drain(self):
        for name, _, deployment, container, flags in self.each():
            with self.subTest(overlay=name):
                drain_s = int(flag_value(container, "drain-timeout-s", flags))
                command = container["lifecycle"]["preStop"]["exec"]["command"]
                self.assertEqual(command[0], "/bin/sleep")
                grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                self.assertGreaterEqual(grace_s, int(command[1]) + drain_s + 5)

    def test_gpu_limits_only_in_gpu_overlays(self):
        for name, _, deployment, container, flags in self.each():
            with self.subTest(overlay=name):
                limits = container["resources"]["limits"]
                requests = container["resources"]["requests"]
                if name.startswith("gpu"):
                    self.assertEqual(str(limits["nvidia.com/gpu"]), "1")
                    self.assertEqual(requests, limits)  # GPUs cannot be overcommitted.
                    self.assertEqual(flag_value(container, "device", flags), "cuda")
                    self.assertEqual(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0)
                else:
                    self.assertNotIn("nvidia.com/gpu", limits)
                    self.assertEqual(flag_value(container, "device", flags), "cpu")

    def test_non_root_and_read_only_root_filesystem(self):
        for name, _, deployment, _, _ in self.each():
            with self.subTest(overlay=name):
                pod = deployment["spec"]["template"]["spec"]
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
                for container in pod["containers"] + pod.get("initContainers", []):
                    context = container["securityContext"]
                    self.assertTrue(context["readOnlyRootFilesystem"], container["name"])
                    self.assertFalse(context["allowPrivilegeEscalation"], container["name"])
                    self.assertEqual(context["capabilities"]["drop"], ["ALL"])
                    self.assertIn("memory", container["resources"]["limits"])

    def test_model_volume_is_the_pvc_mounted_read_only(self):
        for name, objects, deployment, container, flags in self.each():
            with self.subTest(overlay=name):
                pod = deployment["spec"]["template"]["spec"]
                claim = objects["PersistentVolumeClaim"][0]["metadata"]["name"]
                volumes = {v["name"]: v for v in pod["volumes"]}
                mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
                self.assertEqual(volumes["models"]["persistentVolumeClaim"]["claimName"], claim)
                self.assertTrue(mount["readOnly"])
                model = flag_value(container, "model", flags)
                self.assertTrue(model.startswith(mount["mountPath"]))
                init = pod.get("initContainers", [])
                if name == "gpu-model-image":
                    self.assertEqual([c["name"] for c in init], ["model-copy"])
                    rw = next(m for m in init[0]["volumeMounts"])
                    self.assertEqual(volumes[rw["name"]]["persistentVolumeClaim"]["claimName"],
                                     claim)
                else:
                    self.assertEqual(init, [])

    def test_configmap_feeds_every_expanded_flag(self):
        for name, objects, _, container, flags in self.each():
            with self.subTest(overlay=name):
                refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
                self.assertEqual(refs, [objects["ConfigMap"][0]["metadata"]["name"]])
                for arg in container["args"]:
                    for var in re.findall(r"\$\((\w+)\)", arg):
                        self.assertIn(var, flags, arg)

    def test_service_pdb_hpa_and_servicemonitor_agree(self):
        for name, objects, deployment, container, _ in self.each():
            with self.subTest(overlay=name):
                labels = deployment["spec"]["template"]["metadata"]["labels"]
                service = objects["Service"][0]
                ports = {p["name"]: p for p in service["spec"]["ports"]}
                self.assertEqual(ports["grpc"]["port"], int(flag_value(container, "port", {})))
                self.assertEqual(ports["metrics"]["port"],
                                 int(flag_value(container, "metrics-port", {})))
                self.assertTrue(all(p.get("appProtocol") for p in ports.values()))
                pdb = objects["PodDisruptionBudget"][0]
                monitor = objects["ServiceMonitor"][0]
                for selector in [service["spec"]["selector"],
                                 pdb["spec"]["selector"]["matchLabels"],
                                 monitor["spec"]["selector"]["matchLabels"]]:
                    self.assertLessEqual(selector.items(), labels.items())
                self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
                self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "metrics")
                hpa = objects["HorizontalPodAutoscaler"][0]
                self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
                self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"],
                                 deployment["metadata"]["name"])
                self.assertEqual(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"],
                                 "iquest_requests_waiting")


class PrometheusAdapterTest(unittest.TestCase):
    def test_hpa_metric_comes_from_an_adapter_rule_over_a_served_metric(self):
        with open(os.path.join(K8S, "prometheus-adapter/rules.yaml")) as f:
            rules = yaml.safe_load(f)["rules"]["custom"]
        with open(os.path.join(ROOT, "server/metrics.cc")) as f:
            served = f.read()
        names = {}
        for rule in rules:
            series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
            self.assertIn(f'"{series}"', served, "the server does not export " + series)
            self.assertEqual(set(rule["resources"]["overrides"]), {"namespace", "pod"})
            names[rule["name"]["as"]] = series
        with open(os.path.join(K8S, "base/hpa.yaml")) as f:
            hpa = yaml.safe_load(f)
        for metric in hpa["spec"]["metrics"]:
            self.assertIn(metric["pods"]["metric"]["name"], names)


class DeployScriptTest(unittest.TestCase):
    def test_deploy_renders_the_overlay_with_the_commit_image(self):
        env = dict(os.environ, DEPLOY_RENDER_ONLY="1", DEPLOY_OVERLAY="gpu",
                   KUBE_NAMESPACE="test", CI_REGISTRY_IMAGE="registry.test/g/iquest-serve",
                   CI_COMMIT_SHA="0123abcd")
        done = subprocess.run([os.path.join(ROOT, "scripts/ci/deploy.sh")], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        deployment = objects_by_kind(done.stdout)["Deployment"][0]
        self.assertEqual(server_container(deployment)["image"],
                         "registry.test/g/iquest-serve:0123abcd-cuda")


if __name__ == "__main__":
    unittest.main()
