"""Password hashing: argon2id, memory-hard, computed off the event loop.

argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, 64 MiB, 3 passes,
4 lanes): about 0.15 s per hash on a small machine. Hashes run in worker threads, at most
:data:`MAX_CONCURRENT_HASHES` at once, so a burst of logins neither stalls the proxy nor
asks for unbounded memory (64 MiB each).
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_CONCURRENT_HASHES = 4


class Passwords:
    def __init__(
        self, hasher: PasswordHasher | None = None, concurrency: int = MAX_CONCURRENT_HASHES
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches; False (never an error) for a mismatch or a bad hash."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    async def prepare(self) -> None:
        """Make the stand-in hash :meth:`verify_nobody` checks against (at startup)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("no such user: a password nobody has")

    async def verify_nobody(self, password: str) -> None:
        """Spend what a real check costs, for a user that does not exist.

        Answering an unknown user at once would tell who exists by the response time.
        """
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than today's (rehash on login)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
