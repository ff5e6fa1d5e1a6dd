"""The built wheel holds the tree on disk: packages are found, not listed by hand (a hand-kept list once
left artforge.families out of a wheel, found on a GPU machine), and the files export copies beside
model.py ship inside it."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from artforge.registry import families

ROOT = Path(__file__).resolve().parents[1]
MODEL_PY_HELPERS = ["triton_python_model.py", "request_limits.py", "decoding.py", "openvino_session.py"]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    # built from a copy: setuptools' build/ folder would otherwise carry modules deleted since the last build
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "artforge", source / "artforge", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("artforge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_every_module_of_the_tree(wheel_files):
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "artforge").rglob("*.py")}
    assert on_disk - wheel_files == set(), "modules missing from the wheel"
    assert {name for name in wheel_files if name.endswith(".py")} - on_disk == set(), "modules not in the tree"


def test_the_wheel_holds_every_family_and_what_model_py_needs(wheel_files):
    def shipped(module: str) -> bool:
        path = module.replace(".", "/")
        return f"{path}.py" in wheel_files or f"{path}/__init__.py" in wheel_files

    for family in families():
        assert shipped(family.config_cls.__module__) and shipped(family.make_spec.__module__), family.name
        for hook in (family.trainer, family.client, family.evaluator, family.peers):
            assert not hook or shipped(hook.partition(":")[0]), (family.name, hook)
    for helper in [*MODEL_PY_HELPERS, "docker-compose.gpu.yml"]:
        assert f"artforge/serving/{helper}" in wheel_files, helper


def test_no_stage_folder_is_left_at_the_top_level():
    packages = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()]
    assert sorted(packages) == ["artforge", "tests"]
