"""The compatibility check: each contract against its published schema.

The breaking changes are made on a copy of contracts/ in a temporary directory, and
``python -m contracts.publish --check`` runs there, as CI runs it here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import contracts
from contracts.publish import main

CONTRACTS = Path(contracts.__file__).parent


def test_the_repository_contracts_match_their_published_schemas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--check"]) == 0, capsys.readouterr().err
    assert "event contracts match their published schemas" in capsys.readouterr().out


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(CONTRACTS, tmp_path / "contracts", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit(root: Path, module: str, old: str, new: str) -> None:
    path = root / "contracts" / f"{module}.py"
    text = path.read_text()
    assert old in text, f"{old!r} not in {module}.py"
    path.write_text(text.replace(old, new, 1))


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contracts.publish", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_an_untouched_copy_passes(copy: Path) -> None:
    result = run(copy, "--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("module", "old", "new", "expected"),
    [
        pytest.param(
            "model",
            "    user_id: str\n    model_name: str\n",
            "    user_id: str\n",
            "Requested.v1 modelName: removed (or renamed)",
            id="removed",
        ),
        pytest.param(
            "model",
            "    user_id: str\n    model_name: str\n",
            "    user_id: str\n    name: str\n",
            "Approved.v1 modelName: removed (or renamed)",
            id="renamed",
        ),
        pytest.param(
            "core",
            "    step: int\n",
            "    step: str\n",
            "ModelProgressed.v1 step: type changed from integer to string",
            id="type-changed",
        ),
        pytest.param(
            "target",
            "    model_request_id: int\n",
            "    model_request_id: int\n    channel: str\n",
            "TargetRequested.v1 channel: new required field",
            id="new-required",
        ),
        pytest.param(
            "core",
            "    tries: int = 1",
            "    tries: int",
            "ModelCompleted.v1 check.tries: became required",
            id="nested-became-required",
        ),
    ],
)
def test_a_breaking_change_fails_the_check(
    copy: Path, module: str, old: str, new: str, expected: str
) -> None:
    edit(copy, module, old, new)
    result = run(copy, "--check")
    assert result.returncode == 1
    assert expected in result.stderr
    # and publishing refuses to overwrite the published schema with it
    assert run(copy).returncode == 1
    assert run(copy, "--check").returncode == 1


def test_an_optional_field_is_compatible(copy: Path) -> None:
    edit(
        copy,
        "model",
        "class Requested(ModelRequestEvent):\n    pass\n",
        "class Requested(ModelRequestEvent):\n    priority: int | None = None\n",
    )
    assert run(copy, "--check").returncode == 0
    published = run(copy)
    assert published.returncode == 0
    assert "published Requested.v1.json" in published.stdout
    assert "priority" in (copy / "contracts/published/Requested.v1.json").read_text()


NEW_VERSION = (
    "class Requested(ModelRequestEvent):\n    version: ClassVar[int] = 2\n    priority: int\n"
)
OLD_VERSION_KEPT = (
    "class RequestedV1(ModelRequestEvent):\n"
    '    """Requested as version 1 wrote it: still decoded and handled."""\n\n'
    '    event_name: ClassVar[str | None] = "Requested"\n\n\n'
)


def test_a_raised_version_needs_the_old_one_kept(copy: Path) -> None:
    edit(copy, "model", "class Requested(ModelRequestEvent):\n    pass\n", NEW_VERSION)
    result = run(copy, "--check")
    assert result.returncode == 1
    assert "Requested.v1 is published but no contract reads it any more" in result.stderr
    assert "Requested.v2 is not published" in result.stderr


def test_a_raised_version_with_both_handled_passes(copy: Path) -> None:
    edit(
        copy,
        "model",
        "class Requested(ModelRequestEvent):\n    pass\n",
        OLD_VERSION_KEPT + NEW_VERSION,
    )
    assert "Requested.v2 is not published" in run(copy, "--check").stderr
    published = run(copy)
    assert published.returncode == 0, published.stderr
    assert "published Requested.v2.json" in published.stdout
    result = run(copy, "--check")
    assert result.returncode == 0, result.stderr
    # both versions decode: v1 under the original type, v2 under its own
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from contracts import contract_for as c; "
            "print(c('nocode.model.Requested').__name__, c('nocode.model.Requested.v2').__name__)",
        ],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert probe.stdout.split() == ["RequestedV1", "Requested"]
