"""Static checks of deploy/k8s: every overlay renders with `kubectl kustomize`, passes yamllint,
and the rendered objects keep the Kubernetes rules of DESIGN §10 and reliability.md §5 (probes on
the health port, GPU limits, grace period >= preStop + drain, non-root, read-only root FS, PDB).
The llm-d overlay's InferencePool, endpoint picker and HTTPRoute must fit the server they route
to: the pool selects the server's pods on its HTTP port, the picker reads metrics the server
exports. No cluster is needed.
"""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
K8S = os.path.join(ROOT, "deploy/k8s")
OVERLAYS = ["cpu", "gpu", "gpu-model-image", "llm-d"]
HEALTH_PORT = 8081
READINESS = "iquest.serve.v1.Generation"
# The llm-d overlay's endpoint-picker objects; everything else in an overlay is the server's.
EPP = "iquest-serve-epp"


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


def server_objects(objects):
    """The server's objects: all but the endpoint picker's (named iquest-serve-epp...)."""
    out = {}
    for kind, docs in objects.items():
        mine = [d for d in docs if not d["metadata"]["name"].startswith(EPP)]
        if mine:
            out[kind] = mine
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
        cls.objects = {name: server_objects(objects_by_kind(text))
                       for name, text in cls.rendered.items()}

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


def served_metrics_source():
    with open(os.path.join(ROOT, "server/metrics.cc")) as f:
        return f.read()


def arg_value(container, flag):
    """The value of --flag=VALUE in the container's args, or None."""
    for arg in container.get("args", []):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
    return None


def named(docs, name):
    matches = [d for d in docs if d["metadata"]["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"{len(matches)} objects named {name}")
    return matches[0]


# The EndpointPickerConfig fields GIE v1.5.0 knows (apix/config/v1alpha1, decoded strictly) and
# the core-metrics-extractor's parameters (pkg/epp/framework/plugins/datalayer/extractor/metrics/
# factories.go, decoded leniently, so a misspelt key would be ignored without this check).
EPP_CONFIG_KEYS = {"apiVersion", "kind", "featureGates", "plugins", "schedulingProfiles",
                   "saturationDetector", "dataLayer", "flowControl", "parser"}
EXTRACTOR_KEYS = {"engineLabelKey", "defaultEngine", "engineConfigs"}
ENGINE_CONFIG_KEYS = {"name", "queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec",
                      "loraSpec", "cacheInfoSpec", "cacheBlockSizeLabelName",
                      "cacheNumBlocksLabelName", "cacheBlockSizeSpec", "cacheNumBlocksSpec"}
# Since GIE v1.4 the EPP refuses to start when any of these is set (engineConfigs replace them).
LEGACY_METRIC_FLAGS = ["total-queued-requests-metric", "total-running-requests-metric",
                       "kv-cache-usage-percentage-metric", "lora-info-metric",
                       "cache-info-metric"]


class LlmdOverlayTest(unittest.TestCase):
    """The llm-d overlay: an InferencePool of the server pods, GIE's endpoint picker (EPP) reading
    our metrics, and an HTTPRoute from the inference gateway to the pool."""

    @classmethod
    def setUpClass(cls):
        cls.objects = objects_by_kind(render("llm-d"))
        cls.server = named(cls.objects["Deployment"], "iquest-serve")
        cls.container = server_container(cls.server)
        cls.epp = named(cls.objects["Deployment"], EPP)
        cls.epp_container = next(c for c in cls.epp["spec"]["template"]["spec"]["containers"]
                                 if c["name"] == "epp")
        cls.pool = cls.objects["InferencePool"][0]
        config_maps = [c for c in cls.objects["ConfigMap"]
                       if c["metadata"]["name"].startswith(EPP + "-config")]
        assert len(config_maps) == 1, config_maps
        cls.epp_config_map = config_maps[0]
        (key, text), = cls.epp_config_map["data"].items()
        cls.epp_config_key = key
        cls.epp_config = yaml.safe_load(text)

    def test_one_pool_one_route_one_picker(self):
        for kind in ["InferencePool", "HTTPRoute"]:
            self.assertEqual(len(self.objects.get(kind, [])), 1, kind)
        self.assertEqual(self.pool["apiVersion"], "inference.networking.k8s.io/v1")
        self.assertEqual(self.objects["HTTPRoute"][0]["apiVersion"],
                         "gateway.networking.k8s.io/v1")
        self.assertEqual(self.epp["spec"]["replicas"], 1)

    def test_pool_selects_the_server_pods_and_not_the_picker(self):
        selector = self.pool["spec"]["selector"]["matchLabels"]
        self.assertEqual(set(self.pool["spec"]["selector"]), {"matchLabels"})
        server_labels = self.server["spec"]["template"]["metadata"]["labels"]
        epp_labels = self.epp["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(selector.items(), server_labels.items())
        self.assertFalse(selector.items() <= epp_labels.items())

    def test_target_port_is_the_servers_http_port(self):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.assertIn("http", ports)
        self.assertEqual(arg_value(self.container, "http-port"), str(ports["http"]))
        self.assertEqual(self.pool["spec"]["targetPorts"], [{"number": ports["http"]}])
        self.assertEqual(self.pool["spec"].get("appProtocol", "http"), "http")
        service = named(self.objects["Service"], "iquest-serve")
        http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
        self.assertEqual(http["targetPort"], ports["http"])
        self.assertEqual(http["appProtocol"], "http")

    def test_endpoint_picker_ref_is_the_pickers_service(self):
        ref = self.pool["spec"]["endpointPickerRef"]
        self.assertEqual(ref.get("kind", "Service"), "Service")
        self.assertEqual(ref.get("group", ""), "")
        self.assertIn(ref.get("failureMode", "FailClose"), {"FailOpen", "FailClose"})
        service = named(self.objects["Service"], ref["name"])
        ports = {p["port"]: p for p in service["spec"]["ports"]}
        self.assertIn(ref["port"]["number"], ports)
        epp_labels = self.epp["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(service["spec"]["selector"].items(), epp_labels.items())
        # The ext-proc port the EPP listens on (--grpc-port, default 9002).
        grpc = int(arg_value(self.epp_container, "grpc-port") or 9002)
        self.assertEqual(ports[ref["port"]["number"]]["targetPort"], grpc)
        self.assertIn(grpc, [p["containerPort"] for p in self.epp_container["ports"]])

    def test_picker_serves_this_pool(self):
        self.assertEqual(arg_value(self.epp_container, "pool-name"),
                         self.pool["metadata"]["name"])
        self.assertIn(arg_value(self.epp_container, "pool-group"),
                      [None, "inference.networking.k8s.io"])
        env = {e["name"]: e for e in self.epp_container["env"]}
        self.assertEqual(env["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.namespace")
        image = self.epp_container["image"]
        self.assertRegex(image, r"^registry\.k8s\.io/gateway-api-inference-extension/epp:"
                                r"v\d+\.\d+\.\d+$")

    def test_picker_config_is_mounted(self):
        pod = self.epp["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if "configMap" in v)
        self.assertEqual(volume["configMap"]["name"], self.epp_config_map["metadata"]["name"])
        mount = next(m for m in self.epp_container["volumeMounts"]
                     if m["name"] == volume["name"])
        self.assertEqual(arg_value(self.epp_container, "config-file"),
                         f"{mount['mountPath']}/{self.epp_config_key}")

    def test_picker_reads_metrics_the_server_exports(self):
        for flag in LEGACY_METRIC_FLAGS:
            self.assertIsNone(arg_value(self.epp_container, flag), flag)
        config = self.epp_config
        self.assertEqual(config["apiVersion"], "inference.networking.x-k8s.io/v1alpha1")
        self.assertEqual(config["kind"], "EndpointPickerConfig")
        self.assertLessEqual(set(config), EPP_CONFIG_KEYS)
        plugins = {p["name"]: p for p in config["plugins"]}
        for profile in config["schedulingProfiles"]:
            for ref in profile["plugins"]:
                self.assertIn(ref["pluginRef"], plugins)
        sources = config["dataLayer"]["sources"]
        self.assertEqual(len(sources), 1)
        self.assertEqual(plugins[sources[0]["pluginRef"]]["type"], "metrics-data-source")
        extractor_name = sources[0]["extractors"][0]["pluginRef"]
        extractor = plugins[extractor_name]
        self.assertEqual(extractor["type"], "core-metrics-extractor")
        params = extractor["parameters"]
        self.assertLessEqual(set(params), EXTRACTOR_KEYS)
        engines = {e["name"]: e for e in params["engineConfigs"]}
        engine = engines[params["defaultEngine"]]
        self.assertLessEqual(set(engine), ENGINE_CONFIG_KEYS)
        # Server pods name that engine too, so the picker never falls back to vLLM's names.
        pod_labels = self.server["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(pod_labels[params["engineLabelKey"]], engine["name"])

        served = served_metrics_source()
        expected = {"queuedRequestsSpec": "iquest_requests_waiting",
                    "runningRequestsSpec": "iquest_requests_running",
                    "kvUsageSpec": "iquest_kv_cache_usage_ratio",
                    "cacheInfoSpec": "iquest_cache_config_info",
                    "loraSpec": ""}
        for field, metric in expected.items():
            self.assertEqual(engine[field], metric, field)
        for field in ENGINE_CONFIG_KEYS:
            if field.endswith("Spec") and engine.get(field):
                family = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", engine[field]).group(1)
                self.assertIn(f'"{family}"', served, f"{field}: the server does not export "
                              + family)
        # The cache-info labels the picker reads block size and block count from.
        for field in ["cacheBlockSizeLabelName", "cacheNumBlocksLabelName"]:
            self.assertIn(f'{{"{engine[field]}",', served, field)

    def test_picker_scrapes_the_servers_metrics_port(self):
        source = next(p for p in self.epp_config["plugins"] if p["type"] == "metrics-data-source")
        self.assertEqual(source["parameters"].get("path", "/metrics"), "/metrics")
        self.assertEqual(source["parameters"].get("scheme", "http"), "http")
        self.assertEqual(arg_value(self.epp_container, "model-server-metrics-port"),
                         flag_value(self.container, "metrics-port", {}))

    def test_picker_rbac(self):
        pod = self.epp["spec"]["template"]["spec"]
        account = named(self.objects["ServiceAccount"], pod["serviceAccountName"])
        binding = named(self.objects["RoleBinding"], EPP)
        self.assertIn({"kind": "ServiceAccount", "name": account["metadata"]["name"]},
                      binding["subjects"])
        self.assertEqual(binding["roleRef"]["kind"], "Role")
        role = named(self.objects["Role"], binding["roleRef"]["name"])
        granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
                   for group in rule["apiGroups"] for resource in rule["resources"]}
        for needed in [("inference.networking.k8s.io", "inferencepools"), ("", "pods")]:
            self.assertLessEqual({"get", "list", "watch"}, granted[needed], needed)
        self.assertNotIn("ClusterRole", self.objects)

    def test_picker_security_and_resources(self):
        pod = self.epp["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        context = self.epp_container["securityContext"]
        self.assertTrue(context["readOnlyRootFilesystem"])
        self.assertFalse(context["allowPrivilegeEscalation"])
        self.assertEqual(context["capabilities"]["drop"], ["ALL"])
        self.assertIn("memory", self.epp_container["resources"]["limits"])
        for kind in ["livenessProbe", "readinessProbe"]:
            self.assertEqual(self.epp_container[kind]["grpc"]["port"], 9003, kind)
        server_grace = self.server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], server_grace)

    def test_httproute_sends_the_gateways_traffic_to_the_pool(self):
        route = self.objects["HTTPRoute"][0]
        parents = route["spec"]["parentRefs"]
        self.assertEqual(len(parents), 1)
        self.assertEqual(parents[0].get("kind", "Gateway"), "Gateway")
        self.assertEqual(parents[0]["name"], "inference-gateway")
        refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
        self.assertTrue(refs)
        for ref in refs:
            self.assertEqual(ref["group"], "inference.networking.k8s.io")
            self.assertEqual(ref["kind"], "InferencePool")
            self.assertEqual(ref["name"], self.pool["metadata"]["name"])


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
