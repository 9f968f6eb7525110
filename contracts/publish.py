"""Publish each event contract's schema into the repository, and check against it.

    python -m contracts.publish           # write contracts/published/<Event>.v<N>.json
    python -m contracts.publish --check   # CI: exit 1 if a change would break a consumer

A published file is the schema consumers were built against. A change to a contract
that a consumer could not read (``contracts.compat``) fails the check unless the event's
``version`` was raised: then the new version is published beside the old one, and the
old version's contract must stay registered (under another class name, ``event_name``
set to the event's) so the events already on the topics still decode and are handled.
Compatible changes (an optional field) pass, and publishing records them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.compat import breaking_changes
from contracts.schemas import JsonSchema, events, payload_schema, schema_id

PUBLISHED_DIR = Path(__file__).parent / "published"


def current_schemas() -> dict[str, JsonSchema]:
    return {schema_id(c): payload_schema(c) for c in events()}


def published_schemas(directory: Path = PUBLISHED_DIR) -> dict[str, JsonSchema]:
    return {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json")}


def problems(directory: Path = PUBLISHED_DIR) -> list[str]:
    """Everything that would break a consumer, or that is not published yet."""
    current, published = current_schemas(), published_schemas(directory)
    found: list[str] = []
    for name, old in sorted(published.items()):
        if name not in current:
            found.append(
                f"{name} is published but no contract reads it any more: keep that "
                "version's class (consumers may still meet its events)"
            )
            continue
        for change in breaking_changes(old, current[name]):
            found.append(f"{name} {change}: a breaking change needs a new version")
    for name in sorted(current.keys() - published.keys()):
        found.append(f"{name} is not published: run `python -m contracts.publish`")
    return found


def publish(directory: Path = PUBLISHED_DIR) -> list[str]:
    """Write every current schema that breaks nothing; return the ones refused."""
    directory.mkdir(parents=True, exist_ok=True)
    published = published_schemas(directory)
    refused: list[str] = []
    for name, schema in current_schemas().items():
        old = published.get(name)
        changes = breaking_changes(old, schema) if old is not None else []
        if changes:
            refused += [f"{name} {change}: raise its version" for change in changes]
            continue
        text = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        path = directory / f"{name}.json"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"published {path.name}")
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.publish", description=__doc__)
    parser.add_argument("--check", action="store_true", help="check only; exit 1 on a problem")
    parser.add_argument("--dir", type=Path, default=PUBLISHED_DIR, help="published schemas")
    args = parser.parse_args(argv)
    found = problems(args.dir) if args.check else publish(args.dir)
    for line in found:
        print(line, file=sys.stderr)
    if args.check and not found:
        print(f"{len(current_schemas())} event contracts match their published schemas")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
