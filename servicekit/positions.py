"""Where a consumer group reads: its lag per partition, a rewind when the broker changed,
and the offsets applied but not committed yet.

A broker that is another cluster than the one read so far (the embedded broker after a
restart: empty, then re-filled by the outbox relays) has other offsets: the positions and
commits of the old one would skip records. Every partition is then read from its
beginning again; the inbox skips the events already applied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from servicekit import metrics
from servicekit.kafka import broker_view

log = structlog.get_logger(__name__)

LAG_REFRESH_S = 5.0


class Positions:
    def __init__(self, service: str, group_id: str, applied: PendingOffsets | None = None) -> None:
        self.service = service
        self.group_id = group_id
        self.applied = applied  # offsets applied since the last commit: no lag
        self._lag: dict[TopicPartition, Any] = {}  # label children, looked up once
        self.cluster_id: str | None = None  # the broker cluster this consumer reads
        self.rewind = False  # read the next assigned partitions from their beginning
        # Commits the offsets applied but not committed yet (the consumer sets it while it
        # runs): called before partitions are revoked, so their next reader starts after them.
        self.flush: Callable[[], Awaitable[None]] | None = None

    def set_lag(self, partition: TopicPartition, lag: int) -> None:
        gauge = self._lag.get(partition)
        if gauge is None:
            gauge = self._lag[partition] = metrics.CONSUMER_LAG.labels(
                self.service, self.group_id, partition.topic, str(partition.partition)
            )
        gauge.set(max(0, lag))

    def fetched(self, consumer: AIOKafkaConsumer, done: dict[TopicPartition, int]) -> None:
        """The lag of each partition a batch was read from, ``done`` its next offsets."""
        for partition, next_offset in done.items():
            highwater = consumer.highwater(partition)
            if highwater is not None:
                self.set_lag(partition, highwater - next_offset)

    async def report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag from the broker's offsets every few seconds, so a consumer stuck on one
        record (or starved of fetches) still shows its lag growing."""
        while True:
            await asyncio.sleep(LAG_REFRESH_S)
            await self.check_cluster(consumer)
            try:
                await self.measure_lag(consumer)
            except Exception as exc:  # the consume loop reports outages; try again later
                log.debug("lag not measured", error=repr(exc))

    async def measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Each assigned partition's lag: its end less what was committed, or applied
        since the last commit."""
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for partition in partitions:
            # Nothing committed yet: the group reads from the earliest record.
            committed = await consumer.committed(partition)
            done = starts[partition] if committed is None else committed
            if self.applied is not None:
                done = max(done, self.applied.offsets.get(partition, done))
            self.set_lag(partition, ends[partition] - done)

    async def check_cluster(self, consumer: AIOKafkaConsumer) -> None:
        """On another cluster than the one read so far, seek every assigned partition to
        its beginning, and those assigned later too (:meth:`listener`)."""
        try:
            cluster = (await broker_view(consumer._client)).cluster_id
        except Exception as exc:  # the consume loop reports outages
            log.debug("cluster id not read", error=repr(exc))
            return
        if cluster is None:
            return
        if self.cluster_id is not None and cluster != self.cluster_id:
            log.warning(
                "consumer met a new broker cluster: reading from the beginning",
                group=self.group_id,
                cluster_id=cluster,
            )
            self.rewind = True
            if assigned := consumer.assignment():
                await consumer.seek_to_beginning(*assigned)
        self.cluster_id = cluster

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        return _RewindOnAssign(self, consumer)


class _RewindOnAssign(ConsumerRebalanceListener):
    """After a new broker cluster was met, partitions assigned by the next rebalances
    start from their beginning too, not from offsets committed before the rewind."""

    def __init__(self, positions: Positions, consumer: AIOKafkaConsumer) -> None:
        self.positions = positions
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.positions.flush is not None:
            try:
                await self.positions.flush()
            except Exception as exc:  # the next reader applies them again: the inbox skips them
                log.debug("offsets not committed before the rebalance", error=repr(exc))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.positions.rewind and assigned:
            await self.consumer.seek_to_beginning(*assigned)
            self.positions.rewind = False  # from here on, its commits are this cluster's


class PendingOffsets:
    """The offsets of the batches applied since the last commit. They are committed at
    most every ``interval_s`` (a commit is a broker round trip per batch otherwise): what
    a restart redelivers meanwhile is in the inbox already, so it changes nothing. A batch
    with a dead letter commits at once, and a rebalance commits before the partitions go
    (``Positions.flush``)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.offsets: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self.committed_at = time.monotonic()

    def add(self, done: dict[TopicPartition, int]) -> None:
        self.offsets.update(done)

    def drop(self) -> None:
        """Forget them (offsets of a broker that went: never committed to another one)."""
        self.offsets = {}

    def wait_ms(self, longest_ms: int) -> int:
        """How long a fetch may wait and still wake up in time to commit them."""
        if not self.offsets:
            return longest_ms
        due = self.committed_at + self.interval_s - time.monotonic()
        return max(0, min(longest_ms, int(due * 1000)))

    def due(self) -> bool:
        return time.monotonic() - self.committed_at >= self.interval_s

    async def commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit those of partitions still assigned; kept for the next try if it fails."""
        self.committed_at = time.monotonic()
        if not self.offsets:
            return
        assigned = consumer.assignment()
        pending = {tp: offset for tp, offset in self.offsets.items() if tp in assigned}
        self.offsets = {}
        if not pending:
            return
        try:
            await consumer.commit(pending)
        except BaseException:
            for partition, offset in pending.items():  # not taken: keep them for the next try
                self.offsets.setdefault(partition, offset)
            raise
