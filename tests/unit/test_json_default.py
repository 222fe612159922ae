"""The one JSON encoder of database values (worker/jsonvalues.py), as the admin API and the CLI's --json use it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from worker.jsonvalues import json_default


def test_database_values_encode_as_iso_times_strings_and_numbers() -> None:
    job = uuid.UUID("6f1c7b0e-4a55-4a52-9a5c-3c1f0f6c2b11")
    value = {"at": datetime(2026, 12, 6, 15, 0, tzinfo=UTC), "day": date(2026, 12, 6), "id": job,
             "n": Decimal("2.5"), "tags": {"a"}}
    assert json.loads(json.dumps(value, default=json_default)) == {
        "at": "2026-12-06T15:00:00+00:00", "day": "2026-12-06", "id": str(job), "n": 2.5, "tags": ["a"],
    }


def test_a_value_it_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable: object"):
        json.dumps(object(), default=json_default)
