"""Where a consumer group reads: its lag per partition, and a rewind when the broker changed.

A broker that is another cluster than the one read so far (the embedded broker after a
restart: empty, then re-filled by the outbox relays) has other offsets: the positions and
commits of the old one would skip records. Every partition is then read from its
beginning again; the inbox skips the events already applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from servicekit import metrics
from servicekit.kafka import broker_view

log = structlog.get_logger(__name__)

LAG_REFRESH_S = 5.0


class Positions:
    def __init__(self, service: str, group_id: str) -> None:
        self.service = service
        self.group_id = group_id
        self.cluster_id: str | None = None  # the broker cluster this consumer reads
        self.rewind = False  # read the next assigned partitions from their beginning
        # Commits the offsets applied but not committed yet (the consumer sets it while it
        # runs): called before partitions are revoked, so their next reader starts after them.
        self.flush: Callable[[], Awaitable[None]] | None = None

    def set_lag(self, partition: TopicPartition, lag: int) -> None:
        metrics.CONSUMER_LAG.labels(
            self.service, self.group_id, partition.topic, str(partition.partition)
        ).set(max(0, lag))

    async def report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag from the broker's offsets every few seconds, so a consumer stuck on one
        record (or starved of fetches) still shows its lag growing."""
        while True:
            await asyncio.sleep(LAG_REFRESH_S)
            await self.check_cluster(consumer)
            try:
                partitions = list(consumer.assignment())
                ends = await consumer.end_offsets(partitions)
                starts = await consumer.beginning_offsets(partitions)
                for partition in partitions:
                    # Nothing committed yet: the group reads from the earliest record.
                    committed = await consumer.committed(partition)
                    done = starts[partition] if committed is None else committed
                    self.set_lag(partition, ends[partition] - done)
            except Exception as exc:  # the consume loop reports outages; try again later
                log.debug("lag not measured", error=repr(exc))

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
