"""Which NVIDIA Triton container can serve a `--runtime native` repository, checked before it starts.

A TensorRT engine loads only in the TensorRT version that built it (or, built version-compatible, in
the same or a later TensorRT 10 with Triton's `--backend-config=tensorrt,version-compatible=true`).
`artforge export` records the builder's version in each model's config.pbtxt (`artforge.tensorrt`);
this module reads those records, refuses repositories no single container can serve, and names the
container whose TensorRT matches.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.options import Command, option
from artforge.serving.repository_config import parse_config, runtime_of

# TensorRT major.minor -> the newest Triton container (NGC tag) that ships it, from the "Container
# Versions" table of NVIDIA's Triton release notes. Another container: pass --image.
TRITON_CONTAINERS = {"10.0": "24.05", "10.1": "24.06", "10.2": "24.07", "10.3": "24.08", "10.4": "24.09",
                     "10.5": "24.10", "10.6": "24.11", "10.7": "24.12", "10.8": "25.02"}
IMAGE = "nvcr.io/nvidia/tritonserver:{tag}-py3"
NATIVE = ("tensorrt_plan", "onnxruntime_onnx")
COMPOSE_FILE = Path(__file__).with_name("docker-compose.gpu.yml")


@dataclass
class ContainerPlan:
    """The container and Triton flags for one repository, and why."""

    repository: Path
    image: str
    tensorrt: dict[str, str] = field(default_factory=dict)  # model -> TensorRT version of its engine
    version_compatible: bool = False

    @property
    def triton_args(self) -> str:
        return "--backend-config=tensorrt,version-compatible=true" if self.version_compatible else ""

    def compose_command(self) -> str:
        env = {"TRITON_IMAGE": self.image, "REPO": str(self.repository), "TRITON_ARGS": self.triton_args}
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + \
            f" docker compose -f {shlex.quote(str(COMPOSE_FILE))} up"


def tensorrt_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def container_for(version: str) -> str:
    tag = TRITON_CONTAINERS.get(tensorrt_minor(version))
    if tag is None:
        raise ArtforgeError(f"no known Triton container ships TensorRT {version}; pass --image with one whose "
                            "release notes list that TensorRT (docs/gpu.md), or rebuild the engine with the "
                            "TensorRT of your container")
    return IMAGE.format(tag=tag)


def read_models(repository: Path) -> dict[str, object]:
    repository = Path(repository)
    if not repository.is_dir():
        raise ArtforgeError(f"model repository {repository} does not exist; create it with 'artforge export'")
    models = {p.name: parse_config((p / "config.pbtxt").read_text())
              for p in sorted(repository.iterdir()) if (p / "config.pbtxt").exists()}
    if not models:
        raise ArtforgeError(f"model repository {repository} has no models (no NAME/config.pbtxt)")
    return models


def plan_container(repository: str | Path, image: str | None = None) -> ContainerPlan:
    """Check that one Triton container can serve every model of `repository`; name it."""
    repository = Path(repository).resolve()
    models = read_models(repository)
    embedded = [name for name, config in models.items() if runtime_of(config) not in NATIVE]
    if embedded:
        raise ArtforgeError(f"model(s) {', '.join(embedded)} in {repository} run in the Python backend with ONNX "
                            "Runtime (--runtime embedded), which NVIDIA's container does not have installed: serve "
                            "them with 'artforge serve', or export them again with --runtime native")
    engines = {name: json.loads(config.parameters["artforge.tensorrt"].string_value)
               for name, config in models.items() if config.platform == "tensorrt_plan"}
    unrecorded = [name for name, config in models.items()
                  if config.platform == "tensorrt_plan" and "artforge.tensorrt" not in config.parameters]
    if unrecorded:
        raise ArtforgeError(f"model(s) {', '.join(unrecorded)} hold TensorRT engines with no record of the TensorRT "
                            "that built them; export them again")
    plan = ContainerPlan(repository, image or "", {n: e["version"] for n, e in engines.items()},
                         any(e["version_compatible"] for e in engines.values()))
    strict = {n: e["version"] for n, e in engines.items() if not e["version_compatible"]}
    if len({tensorrt_minor(v) for v in strict.values()}) > 1:
        raise ArtforgeError(f"the engines in {repository} were built by different TensorRT versions "
                            f"({describe(strict)}) and one container ships one TensorRT: rebuild them with one "
                            "version, or with --trt-version-compatible")
    # a version-compatible engine loads in its own or a later TensorRT 10: the strict engines (else the
    # newest engine) decide the container
    deciding = list(strict.values()) or list(plan.tensorrt.values())
    newest = max(deciding, key=version_key, default=None)
    later = {n: v for n, v in plan.tensorrt.items() if newest and version_key(v) > version_key(newest)}
    if later:
        raise ArtforgeError(f"engines built by a later TensorRT ({describe(later)}) cannot load in the TensorRT "
                            f"{newest} the other engines need; rebuild them with {newest}")
    if not plan.image:
        plan.image = container_for(newest) if newest else IMAGE.format(tag=TRITON_CONTAINERS["10.5"])
    check_image(plan, strict)
    return plan


def version_key(version: str) -> list[int]:
    return [int(x) for x in version.split(".") if x.isdigit()]


def describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{name}: TensorRT {version}" for name, version in sorted(versions.items()))


def check_image(plan: ContainerPlan, strict: dict[str, str]) -> None:
    """An image we know the TensorRT of must match every engine that is not version-compatible."""
    known = {IMAGE.format(tag=tag): minor for minor, tag in TRITON_CONTAINERS.items()}
    shipped = known.get(plan.image)
    wrong = {n: v for n, v in strict.items() if shipped and tensorrt_minor(v) != shipped}
    if wrong:
        raise ArtforgeError(f"{plan.image} ships TensorRT {shipped}, but engines here were built by another "
                            f"({describe(wrong)}); an engine only loads in the TensorRT that built it")


# ---- `artforge gpu-compose` ----
@dataclass(kw_only=True)
class GpuComposeOptions:
    repository: str = option(help="Triton model repository exported with --runtime native", required=True)
    image: str | None = option(None, help="the Triton container to use (default: the one shipping the engines' "
                                          "TensorRT)")


def gpu_compose_command(opts: GpuComposeOptions) -> None:
    plan = plan_container(opts.repository, opts.image)
    for model, version in sorted(plan.tensorrt.items()):
        print(f"  {model}: TensorRT {version} engine")
    print(f"container: {plan.image}{'  (version-compatible engines)' if plan.version_compatible else ''}")
    print(plan.compose_command())


COMMAND = Command(
    "gpu-compose", help="check a --runtime native repository and print the docker compose command for NVIDIA's "
                        "container",
    description="A TensorRT engine loads only in the TensorRT version that built it. This reads the version "
                "'artforge export' recorded for every engine in the repository, refuses repositories that "
                "no single Triton container can serve (mixed TensorRT versions, Python-backend models), "
                "names the container whose TensorRT matches, and prints the docker compose command "
                "(artforge/serving/docker-compose.gpu.yml) with the repository's absolute path.",
    examples="  artforge gpu-compose --repository repo-gpu\n"
             "  artforge gpu-compose --repository repo-gpu --image nvcr.io/nvidia/tritonserver:24.10-py3\n"
             "containers per TensorRT version: docs/gpu.md",
    options=GpuComposeOptions, run=gpu_compose_command)
