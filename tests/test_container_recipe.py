"""The Dockerfile's recipe, run without a Docker engine (none runs on the build machines).

The build context is staged from the Dockerfile's own ``COPY`` lines (nothing else of the
checkout), the environment from its ``ENV`` block, and everything runs as an unprivileged user
with a fresh home in a network namespace of its own (no route out, loopback only), as the
container would. In there, its ``CMD`` starts the server and its ``HEALTHCHECK`` command must
pass; the app (AppTest) must show the offline default's first analysis and the CLI must analyse
a photo. The interpreter and packages are this checkout's ``.venv``, pinned like the image's.
What this cannot show is the image build itself (the base image, pip inside it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
UID = 10001  # the Dockerfile's useradd --uid


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _env(instructions) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _one(instructions, word: str) -> str:
    (value,) = [rest for w, rest in instructions if w == word]
    return value


def _stage(instructions, app: Path) -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    skip = shutil.ignore_patterns("__pycache__", *[p for p in ignored if "/" not in p])
    for word, rest in instructions:
        if word != "COPY":
            continue
        *sources, dest = rest.split()
        for src in sources:
            target = app / dest / Path(src).name if dest.endswith("/") else app / dest
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=skip)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target)


def _closed_ancestors(path: str) -> list[tuple[str, str]]:
    """(directory others cannot enter, the entry below it on ``path``) for each such ancestor:
    a pyenv interpreter under /root, say, which the image's user could not run. The image
    has its interpreter in /usr/local; the launcher opens a way to this one (see LAUNCHER)."""
    real = Path(os.path.realpath(path))
    parts = [real, *real.parents][::-1]
    return [(str(a), str(b)) for a, b in zip(parts, parts[1:])
            if a != Path("/") and not a.stat().st_mode & 0o001]


# Runs as root inside new network and mount namespaces: brings loopback up (the container has
# it), shows the interpreter's directory to the user where a closed directory hides it (a
# tmpfs over the closed one, this namespace only, with the one entry bound back), then does
# everything else as the unprivileged user.
LAUNCHER = r'''
import fcntl, json, os, socket, struct, subprocess, sys, tempfile, time
cfg = json.loads(sys.argv[1])
for closed, entry in cfg["expose"]:
    stash = tempfile.mkdtemp()
    subprocess.run(["mount", "--bind", closed, stash], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", closed], check=True)
    os.makedirs(entry, exist_ok=True)
    subprocess.run(["mount", "--bind", os.path.join(stash, os.path.relpath(entry, closed)),
                    entry], check=True)
as_user = dict(user=cfg["uid"], group=cfg["uid"], extra_groups=[], cwd=cfg["app"],
               env=cfg["env"])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS up
out = {}
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3).close()
    out["network"] = "reachable"
except OSError as e:
    out["network"] = f"unreachable: {e}"
log = open(cfg["log"], "w")
server = subprocess.Popen(cfg["cmd"], stdout=log, stderr=subprocess.STDOUT, **as_user)
try:
    deadline = time.monotonic() + cfg["start_period"]
    healthy = False
    while time.monotonic() < deadline and server.poll() is None:
        if subprocess.run(cfg["health"], capture_output=True, **as_user).returncode == 0:
            healthy = True
            break
        time.sleep(1)
    out["healthy"] = healthy
    out["server_alive"] = server.poll() is None
    for name, argv in cfg["checks"].items():
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600, **as_user)
        out[name] = {"rc": r.returncode, "stdout": r.stdout[-4000:], "stderr": r.stderr[-4000:]}
finally:
    server.terminate()
    server.wait(30)
print(json.dumps(out))
'''

APP_CHECK = """
from streamlit.testing.v1 import AppTest
import attnviz
at = AppTest.from_file("app.py", default_timeout=300).run()
print(attnviz.__file__)
print("exceptions:", [e.value for e in at.exception])
print("top:", [p.text for p in at.get("progress")][:1])
print("energy tiles:", sum(" · energy" in c for img in at.image for c in img.captions))
"""


def _sandbox_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to the image's user and make a network namespace"
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    if subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True).returncode:
        return "network and mount namespaces are not permitted here"
    return None


@pytest.fixture(scope="module")
def container_run():
    reason = _sandbox_available()
    if reason:
        pytest.skip(reason)
    steps = _instructions(DOCKERFILE)
    assert _one(steps, "USER") == "attnviz" and _one(steps, "WORKDIR") == "/app"
    base = Path(tempfile.mkdtemp(prefix="attnviz-container-"))
    try:
        base.chmod(0o755)
        app, home = base / "app", base / "home"
        app.mkdir()
        home.mkdir()
        _stage(steps, app)
        for path in (base, *base.rglob("*")):
            os.chown(path, UID, UID)  # the Dockerfile's chown -R attnviz:attnviz /app
        venv_bin = str(Path(sys.executable).parent)
        env = {**_env(steps), "HOME": str(home), "PATH": f"{venv_bin}:/usr/bin:/bin",
               "LANG": "C.UTF-8"}
        health = _one(steps, "HEALTHCHECK")
        start_period = int(re.search(r"--start-period=(\d+)s", health).group(1))
        config = {
            "uid": UID, "app": str(app), "env": env, "log": str(base / "server.log"),
            "expose": _closed_ancestors(sys.executable),
            "cmd": json.loads(_one(steps, "CMD")),
            "health": shlex.split(health.split(" CMD ", 1)[1]),
            "start_period": start_period,
            "checks": {
                "app": ["python", "-c", APP_CHECK],
                "cli": ["python", "-m", "attnviz", "analyze", "assets/samples/chelsea.jpg",
                        "--out", str(home / "out")],
                "app_listing": ["python", "-c", "import os; print(sorted(os.listdir()))"],
            },
        }
        res = subprocess.run(["unshare", "--net", "--mount", sys.executable, "-c", LAUNCHER,
                              json.dumps(config)], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        result = json.loads(res.stdout.strip().splitlines()[-1])
        result["server_log"] = (base / "server.log").read_text()
        result["app_dir"] = str(app)
        result["out"] = sorted(p.name for p in (home / "out").rglob("*")) \
            if (home / "out").exists() else []
        yield result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_recipe_runs_with_no_network(container_run):
    assert container_run["network"].startswith("unreachable"), container_run["network"]


def test_cmd_serves_and_the_health_check_passes(container_run):
    assert container_run["healthy"] and container_run["server_alive"], \
        container_run["server_log"][-2000:]
    assert "8501" in container_run["server_log"]


def test_the_app_shows_the_offline_default_from_the_copied_files(container_run):
    r = container_run["app"]
    assert r["rc"] == 0, r["stderr"]
    lines = r["stdout"].splitlines()
    assert lines[0].startswith(container_run["app_dir"])  # the COPY'd package, not the checkout
    assert "exceptions: []" in lines
    assert any(line.startswith("top: ['1. ") and "cat" in line.lower() for line in lines), lines
    assert "energy tiles: 16" in lines


def test_the_cli_analyses_a_photo_as_the_image_user(container_run):
    r = container_run["cli"]
    assert r["rc"] == 0, r["stderr"]
    assert "summary.json" in container_run["out"] or any(
        n.endswith(".json") for n in container_run["out"]), container_run["out"]


def test_the_app_leaves_its_directory_as_copied(container_run):
    # PYTHONDONTWRITEBYTECODE and a writable home: nothing lands next to the code.
    listed = container_run["app_listing"]["stdout"]
    assert "__pycache__" not in listed and "out" not in listed
