"""Column types that keep times and floats exact on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect, String, Text
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, TIMESTAMP
from sqlalchemy.types import TypeDecorator, TypeEngine

# "2024-05-01T12:00:00.000000+00:00": fixed width, so text order is time order.
ISO_WIDTH = 32


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes, stored in UTC.

    PostgreSQL: ``timestamp with time zone``. Elsewhere: fixed-width ISO-8601 text with
    microseconds and ``+00:00``, which sorts and compares like the times themselves.
    Naive datetimes are refused: the store never guesses a time zone.
    """

    impl = String(ISO_WIDTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(ISO_WIDTH))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store keeps aware times")
        utc = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return utc
        return utc.isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(parsed, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


class ExactFloat(TypeDecorator[float]):
    """Floats including NaN and ±Inf, bit-exact.

    PostgreSQL: ``double precision`` (holds NaN and Infinity natively). Elsewhere: the
    shortest round-trip ``repr`` as text ('0.1', 'nan', 'inf', '-inf'), since SQLite turns
    NaN into NULL. NULL stays None.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DOUBLE_PRECISION())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: float | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = float(value)
        if dialect.name == "postgresql":
            return number
        return repr(number)

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        if value is None:
            return None
        return float(value)
