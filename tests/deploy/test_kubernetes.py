"""The Kubernetes manifests (deploy/k8s): every overlay rendered offline with `kubectl kustomize` and
checked against the Kubernetes API schemas (kubernetes-validate), then what artforge relies on in them:
ports, probes, the repository path, the headless Service, the autoscaler's metric, the GPU and object
storage variants, and the KServe manifest."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install 'artforge[dev]')")
kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="kubernetes-validate is not installed (pip install 'artforge[dev]')")

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the schemas checked against: an API version still served by current clusters
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None,
                                   reason="kubectl is not installed (Debian: apt-get install kubectl): the "
                                          "kustomize overlays are not rendered")


def render(overlay: str) -> dict[tuple[str, str], dict]:
    """`kubectl kustomize` of an overlay: (kind, name) -> resource."""
    done = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {(r["kind"], r["metadata"]["name"]): r for r in yaml.safe_load_all(done.stdout) if r}


def triton_container(resources: dict) -> dict:
    return resources[("Deployment", "triton")]["spec"]["template"]["spec"]["containers"][0]


@needs_kubectl
@pytest.mark.parametrize("overlay", ["cpu", "gpu", "cpu-object-storage"])
def test_every_overlay_renders_and_matches_the_kubernetes_schemas(overlay):
    resources = render(overlay)
    for resource in resources.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)  # raises on an unknown field
    assert {kind for kind, _ in resources} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}


def test_a_wrong_field_is_caught_by_the_schema_check():
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["port"] = 8000  # a typo of 'ports'
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@needs_kubectl
def test_triton_serves_the_repository_on_its_three_ports_with_health_probes():
    resources = render("cpu")
    container = triton_container(resources)
    assert "--model-repository=/models/repo" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # warm-up and engine loading
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] and mounts["dshm"]["mountPath"] == "/dev/shm"
    spec = resources[("Deployment", "triton")]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"]
    assert resources[("PersistentVolumeClaim", "artforge-models")]["spec"]["accessModes"] == ["ReadOnlyMany"]


@needs_kubectl
def test_services_give_one_address_every_pod_for_client_balancing_and_the_metrics():
    resources = render("cpu")
    pods = resources[("Deployment", "triton")]["spec"]["template"]["metadata"]["labels"]
    headless = resources[("Service", "triton-headless")]["spec"]
    assert headless["clusterIP"] == "None" and [p["port"] for p in headless["ports"]] == [8001]
    metrics = resources[("Service", "triton-metrics")]
    assert metrics["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    for name in ("triton", "triton-headless", "triton-metrics"):
        selector = resources[("Service", name)]["spec"]["selector"]
        assert selector.items() <= pods.items()  # each Service finds the Triton pods


@needs_kubectl
def test_the_autoscaler_scales_the_deployment_on_queue_time_from_the_adapter_rule():
    resources = render("cpu")
    hpa = resources[("HorizontalPodAutoscaler", "triton")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    assert metric == "avg_time_queue_us" and [r["name"]["as"] for r in rules] == [metric]
    assert "nv_inference_queue_duration_us" in rules[0]["metricsQuery"]  # one of Triton's own metrics


@needs_kubectl
def test_gpu_overlay_asks_for_a_gpu_and_runs_the_container_of_artforges_tensorrt():
    from artforge.serving.gpu_container import IMAGE, TRITON_CONTAINERS

    container = triton_container(render("gpu"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-repository=/models/repo-gpu" in container["args"]
    assert container["image"] == IMAGE.format(tag=TRITON_CONTAINERS["10.5"])  # the gpu extra's TensorRT 10.5
    dockerfile = (K8S.parent / "docker" / "Dockerfile.cpu").read_text()
    assert f"FROM {container['image']}" in dockerfile  # the CPU image is the same Triton


@needs_kubectl
def test_object_storage_overlay_copies_the_repository_before_triton_starts():
    resources = render("cpu-object-storage")
    spec = resources[("Deployment", "triton")]["spec"]["template"]["spec"]
    assert ("PersistentVolumeClaim", "artforge-models") not in resources
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    copy = spec["initContainers"][0]
    assert copy["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]
    assert "/models/repo" in copy["command"][-1] and copy["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "uri"


def test_kserve_inference_service_uses_the_triton_runtime_with_protocol_v2():
    service = yaml.safe_load((K8S / "kserve" / "inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "pvc://artforge-models/repo"  # the volume the base overlay mounts
    # its container fields are a core Container's: checked against that schema
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
                                  "spec": {"containers": [{"name": "kserve-container", "image": "triton",
                                                           "args": model["args"], "ports": model["ports"],
                                                           "resources": model["resources"]}]}},
                                 KUBERNETES_VERSION, strict=True)
