"""The statements every delivery runs find their rows through an index, so their cost does not
grow with the number of copies the database holds (checked with SQLite's query planner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event

from relay.messaging.messages import ACKNOWLEDGE_COPIES
from relay.storage.tables import metadata


def test_acknowledging_copies_seeks_them_through_an_index(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'plans.db'}")
    metadata.create_all(engine)
    executed: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda *args: executed.append((args[2], args[3])))
    with engine.begin() as connection:
        connection.execute(ACKNOWLEDGE_COPIES, {
            "copies": [("tenant", "phone", "m1"), ("tenant", "tablet", "m2")], "message_ids": ["m1", "m2"],
            "device_ids": ["phone", "tablet"], "now": None,
        })
        sql, parameters = executed[-1]
        plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    engine.dispose()
    assert any(step.startswith("SEARCH message_copies USING INDEX") for step in plan), plan
    assert not any(step.startswith("SCAN message_copies") for step in plan), plan
