"""Every place Helios reaches into Faust's or aiokafka's internals, in one module.

Written against faust-streaming 0.15.3 and aiokafka 0.14.0 (the versions ``pyproject.toml`` pins).
These are attributes without a documented contract: when either pin moves, this module and its
tests (``tests/unit/test_faust_adapter.py``) are what to check, and nothing else should need to change.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

#: The versions the attributes below were read from.
FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"


def table_store(table: Any) -> MutableMapping[str, Any]:
    """A table's in-memory store (``Table.data``): what the changelog restored, read and trimmed directly.

    Reading it outside a stream's event avoids Faust's "current event" partition lookup, which a batch
    of many partitions cannot provide.
    """
    data: MutableMapping[str, Any] = table.data
    return data


def recovery_completed(app: Any) -> bool:
    """Whether the table recovery of the latest assignment has finished (``app.tables.recovery``)."""
    return bool(app.tables.recovery.completed.is_set())


def assigned_actives(app: Any) -> set[Any]:
    """The active (not standby) partitions assigned to this worker; empty before the consumer exists."""
    try:
        return set(app.assignor.assigned_actives())
    except Exception:  # no consumer or assignment yet
        return set()


def consumer_state(app: Any, tp: Any, highwater: int | None) -> str:
    """Where aiokafka and Faust stand on a partition, for a stall warning: which layer held it back.

    A diagnostic: it never raises (the private structures may be missing mid-rebalance).
    """
    consumer: Any = app.consumer
    try:
        state = consumer._thread._ensure_consumer()._subscription.subscription.assignment.state_value(tp)
        return (
            f"highwater {highwater}, aiokafka position {state._position}{' paused' if state.paused else ''}, "
            f"Faust: last offset read {consumer._read_offset.get(tp)}, "
            f"active {tp in consumer._active_partitions}, paused {tp in consumer._paused_partitions}, "
            f"buffer full {tp in consumer._buffered_partitions}, "
            f"flow {consumer.flow_active}/{app.flow_control.is_active()}, "
            f"generation {app.consumer_generation_id}"
        )
    except Exception as exc:
        return f"highwater {highwater}; consumer state unavailable: {exc!r}"
