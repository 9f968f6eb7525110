"""Event contracts: the one place every service's published language is defined.

Services import these, never each other's domain code.
"""

from contracts import core, model, target
from contracts.base import Event, contract_for

__all__ = ["Event", "contract_for", "core", "model", "target"]
