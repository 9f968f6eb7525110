"""The menu catalogue: which menus exist and which roles see each; data, not code.

The catalogue is a JSON file (``gateway/menus.json`` unless ``GATEWAY_MENUS_FILE`` names
another, e.g. a mounted ConfigMap)::

    {"menus": [{"id": "jobs", "title": "Jobs", "method": "GET", "path": "/cores",
                "roles": ["admin"]}, ...]}

``roles`` lists the roles that see a menu; ``"*"`` means every signed-in user. The file is
read and checked once, when the gateway starts: a bad catalogue stops it from starting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servicekit.auth import Identity

DEFAULT_CATALOGUE = Path(__file__).with_name("menus.json")
EVERYONE = "*"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Menu:
    id: str
    title: str
    method: str
    path: str
    roles: frozenset[str]

    def visible_to(self, who: Identity) -> bool:
        return EVERYONE in self.roles or not self.roles.isdisjoint(who.roles)

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "method": self.method, "path": self.path}


class MenuCatalogue:
    def __init__(self, menus: list[Menu]) -> None:
        self.menus = tuple(menus)

    def __iter__(self) -> Iterator[Menu]:
        return iter(self.menus)

    def visible_to(self, who: Identity) -> list[Menu]:
        """The menus ``who`` may see, in catalogue order."""
        return [menu for menu in self.menus if menu.visible_to(who)]

    @classmethod
    def load(cls, path: Path | None = None, known_roles: tuple[str, ...] = ()) -> MenuCatalogue:
        source = path or DEFAULT_CATALOGUE
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"menu catalogue {source}: cannot read it: {exc}") from exc
        return cls.parse(data, str(source), known_roles)

    @classmethod
    def parse(
        cls, data: object, source: str = "menu catalogue", known_roles: tuple[str, ...] = ()
    ) -> MenuCatalogue:
        def bad(message: str) -> ValueError:
            return ValueError(f"{source}: {message}")

        entries = data.get("menus") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise bad('expected {"menus": [...]}')
        menus: list[Menu] = []
        seen: set[str] = set()
        allowed_roles = {EVERYONE, *known_roles}
        for index, entry in enumerate(entries):
            where = f"menus[{index}]"
            if not isinstance(entry, dict):
                raise bad(f"{where} must be an object")
            fields = {}
            for name in ("id", "title", "method", "path"):
                value = entry.get(name)
                if not isinstance(value, str) or not value:
                    raise bad(f"{where}.{name} must be a non-empty string")
                fields[name] = value
            if fields["id"] in seen:
                raise bad(f"{where}.id {fields['id']!r} is used twice")
            seen.add(fields["id"])
            method = fields["method"].upper()
            if method not in _METHODS:
                raise bad(f"{where}.method must be one of {', '.join(sorted(_METHODS))}")
            if not fields["path"].startswith("/"):
                raise bad(f"{where}.path must start with '/'")
            roles = entry.get("roles")
            if not (isinstance(roles, list) and roles and all(isinstance(r, str) for r in roles)):
                raise bad(f'{where}.roles must be a non-empty list of roles (or ["*"])')
            if known_roles and not set(roles) <= allowed_roles:
                unknown = sorted(set(roles) - allowed_roles)
                raise bad(f"{where}.roles has unknown roles {unknown}")
            menus.append(
                Menu(fields["id"], fields["title"], method, fields["path"], frozenset(roles))
            )
        return cls(menus)
