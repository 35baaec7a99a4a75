"""What ships: the package installs with its console script, and the Dockerfile agrees with
the repository it copies from. The image itself needs a Docker engine to build; its recipe
runs without one in ``test_container_recipe.py``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision)==([0-9][\w.]*)", text))


def test_console_script_runs() -> None:
    script = Path(sys.executable).with_name("attnviz")
    assert script.exists(), "pip install -e . (scripts/setup.sh) installs the attnviz command"
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "analyze" in res.stdout


def test_wheel_holds_the_package_the_entry_point_and_licence(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info/ beside the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "attnviz", source / "attnviz",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    # The image installs from its sources the same way, in /app: what the build leaves there
    # must go in the same RUN step, or the image carries a second copy of the package.
    left = {p.name for p in source.iterdir()} - {"attnviz", "pyproject.toml", "README.md"}
    assert left, "the build wrote nothing beside the sources: the clean-up below tests nothing"
    (install,) = [line for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
                  if line.startswith("RUN ") and re.search(r"pip install --no-deps \.(\s|$)", line)]
    cleanup = re.search(r"rm -rf ([^&]+)", install)
    removed = set(cleanup.group(1).split()) if cleanup else set()
    assert left <= removed, f"the image keeps {sorted(left - removed)} in /app"
    (wheel,) = (tmp_path / "dist").glob("attnviz-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata, entry_points = z.read(meta).decode(), z.read(entry).decode()
    assert "attnviz/cli.py" in names and "attnviz/attention/simam.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "attnviz = attnviz.cli:main" in entry_points
    assert re.search(r"^Version: \d+\.\d+\.\d+$", metadata, re.M)
    assert re.search(r"^License-Expression: MIT$", metadata, re.M)


def test_dockerfile_copies_only_what_exists() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"


def test_dockerfile_installs_the_pinned_torch_pair() -> None:
    requirements = _pins((ROOT / "requirements.txt").read_text())
    assert set(requirements) == {"torch", "torchvision"}
    assert _pins(DOCKERFILE) == requirements
    assert _pins((ROOT / "pyproject.toml").read_text()) == requirements


@pytest.mark.parametrize("needle", [
    "USER attnviz",  # not root
    "EXPOSE 8501",
    "ATTNVIZ_OFFLINE=1",  # the offline default, no network in the container
    "/_stcore/health",  # the endpoint tests/test_browser.py checks on a live server
    'CMD ["streamlit", "run", "app.py", "--server.port=8501"',
    "ARG TORCH_INDEX=",  # the documented build argument for CUDA wheels
])
def test_dockerfile_runs_the_app_as_documented(needle: str) -> None:
    assert needle in DOCKERFILE
    assert re.search(r"^HEALTHCHECK ", DOCKERFILE, re.M)


def test_docker_context_leaves_out_the_environment_and_results() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)
