"""SqlStore: the Store protocol on SQLAlchemy, for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from sqlalchemy import Engine, Update, create_engine, event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import GatekeeperError, InvalidInput, TemporaryError
from gatekeeper.domain.fencing import Term
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.phases import sources as phase_sources
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict

from . import access_sql
from .audit_chain import AuditEntry, AuditHead, AuditRecord, AuditReport
from .base import Approval, Event, ReleaseRecord, TokenRecord
from .models import (
    IDLE_PHASES,
    ApprovalRow,
    GateResultRow,
    ReleaseRow,
    StepRow,
    TargetStateRow,
)
from .rows import approvals_of, event_row, events_of, gate_results_of, release_row
from .rows import as_json as _json
from .rows import aware as _aware
from .rows import dumps as _dumps
from .rows import record_of as _record
from .schema import _WRITE, MIGRATIONS, migrate, script_heads
from .service_sql import Fence, ServiceSql

# How long a SQLite writer waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 30.0
__all__ = ["MIGRATIONS", "SqlStore", "migrate", "normalise_url", "script_heads"]


def normalise_url(url: str) -> URL:
    """Parse a store URL; bare ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    text = url.strip()
    for bare in ("postgres://", "postgresql://"):
        if text.startswith(bare):
            text = "postgresql+psycopg://" + text[len(bare) :]
    try:
        parsed = make_url(text)
    except ArgumentError as e:
        raise InvalidInput(f"store URL {url!r} is not a database URL: {e}") from e
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"store URL {_shown(parsed)}: {backend!r} is not supported; "
            "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db"
        )
    return parsed


def _shown(url: URL) -> str:
    return repr(url.render_as_string(hide_password=True))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (the driver's implicit one is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front, so a read-then-write never meets a newer
    # snapshot (SQLITE_BUSY without waiting); readers stay deferred and never block on WAL.
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# PostgreSQL connections kept open, and how many more a burst may open (closed again when
# returned): the API's worker threads (server.threads, 4 by default) beside the controller's
# drivers, one per running release.
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 20


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            json_serializer=_dumps,
            pool_pre_ping=True,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
        )
    database = url.database or ""
    in_memory = database in ("", ":memory:")
    connect_args: dict[str, Any] = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    if in_memory:
        engine = create_engine(
            url, json_serializer=_dumps, connect_args=connect_args, poolclass=StaticPool
        )
    else:
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GatekeeperError(f"store {_shown(url)}: cannot create {folder}: {e}") from e
        engine = create_engine(url, json_serializer=_dumps, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _active_row(session: Session, app: str, environment: str) -> ReleaseRow | None:
    return session.scalars(
        select(ReleaseRow)
        .where(
            ReleaseRow.app == app,
            ReleaseRow.environment == environment,
            ReleaseRow.phase.not_in(IDLE_PHASES),
        )
        .order_by(ReleaseRow.created_at.desc(), ReleaseRow.id.desc())
        .limit(1)
    ).first()


def _busy(release_id: str, app: str, environment: str, active: ReleaseRow) -> InvalidInput:
    return InvalidInput(
        f"release {release_id!r}: app {app!r} in environment {environment!r} already has "
        f"an active release {active.id!r} (phase {active.phase}); "
        "wait for it to finish or stop it first"
    )


def _changed(session: Session, statement: Update) -> int:
    """Run an UPDATE and say how many rows it changed."""
    done = session.execute(statement.execution_options(synchronize_session=False))
    return cast("CursorResult[Any]", done).rowcount


def _conflict(session: Session, record: ReleaseRecord) -> InvalidInput | None:
    """Why ``record`` cannot be created now, or None."""
    existing = session.scalar(select(ReleaseRow.id).where(ReleaseRow.id == record.release_id))
    if existing is not None:
        return InvalidInput(f"release {record.release_id!r} exists already")
    if Phase(record.phase).active:
        active = _active_row(session, record.app, record.environment)
        if active is not None:
            return _busy(record.release_id, record.app, record.environment, active)
    return None


def _unknown(release_id: str) -> InvalidInput:
    return InvalidInput(f"release {release_id!r} does not exist")


class SqlStore(ServiceSql):
    """The system of record on a SQL database; see ``Store`` and ``ServiceStore`` for the
    contract.

    Open with ``SqlStore.open(url)``, which migrates the schema to head first. Every
    method is one transaction. Approvals are idempotent: a second approval of the same
    step by the same approver is ignored and the first one stands. ``fenced`` gives a
    view for a leader term (see ``gatekeeper.domain.fencing``).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock = SYSTEM_CLOCK,
        *,
        fence: Fence | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock  # stamps updated_at and the step log
        self._dialect = engine.dialect.name
        self._fence = fence  # set on a fenced view, which shares the engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(
            engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    @classmethod
    def open(cls, url: str, clock: Clock = SYSTEM_CLOCK) -> SqlStore:
        """Connect to ``url`` (sqlite:///file.db or postgresql+psycopg://...) and migrate."""
        parsed = normalise_url(url)
        engine = _engine(parsed)
        try:
            migrate(engine)
        except OperationalError as e:
            engine.dispose()
            message = f"store {_shown(parsed)}: cannot open: {e.orig}"
            if parsed.get_backend_name() == "postgresql":
                raise TemporaryError(message, delay=5.0) from e  # server down or restarting
            raise GatekeeperError(message) from e
        except SQLAlchemyError as e:
            engine.dispose()
            raise GatekeeperError(f"store {_shown(parsed)}: cannot migrate: {e}") from e
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock)

    @property
    def engine(self) -> Engine:
        return self._engine

    def warm(self) -> int:
        """Open the pool's connections now, at once, rather than in the first requests (a
        new PostgreSQL backend takes milliseconds to fork): returns how many are open."""
        size = PG_POOL_SIZE if self._engine.dialect.name == "postgresql" else 1
        opened: list[Any] = []
        try:
            for _ in range(size):
                connection = self._engine.connect()
                opened.append(connection)
                connection.exec_driver_sql("SELECT 1")
        except OperationalError as e:
            raise TemporaryError(f"store {_shown(self._engine.url)}: cannot connect: {e}") from e
        finally:
            for connection in opened:
                connection.close()
        return len(opened)

    def close(self) -> None:
        if self._fence is None:  # a fenced view leaves the shared connections open
            self._engine.dispose()

    def fenced(self, term: Term, alive: Callable[[], bool]) -> SqlStore:
        return SqlStore(self._engine, self._clock, fence=Fence(term, alive))

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        """One transaction; database trouble comes out as the gatekeeper's own errors.

        IntegrityError passes through for the caller to explain.
        """
        maker = self._write if write else self._read
        try:
            with maker.begin() as session:
                if self._fence is not None:
                    self._fence.check(session, write=write, dialect=self._dialect)
                yield session
        except IntegrityError:
            raise
        except OperationalError as e:
            raise TemporaryError(f"store: database unavailable or busy: {e.orig}") from e
        except SQLAlchemyError as e:
            raise GatekeeperError(f"store: {e}") from e

    def _require(self, session: Session, release_id: str) -> None:
        found = session.scalar(select(ReleaseRow.id).where(ReleaseRow.id == release_id))
        if found is None:
            raise _unknown(release_id)

    def _busy_conflict(self, session: Session, record: ReleaseRecord) -> InvalidInput | None:
        if not Phase(record.phase).active:
            return None
        active = _active_row(session, record.app, record.environment)
        return (
            None
            if active is None
            else _busy(record.release_id, record.app, record.environment, active)
        )

    # Releases

    def create_release(self, record: ReleaseRecord) -> None:
        row = release_row(record)
        try:
            with self._tx(write=True) as session:
                conflict = _conflict(session, record)
                if conflict is not None:
                    raise conflict
                session.add(row)
        except IntegrityError as e:
            # Another writer got in between the check and the insert (PostgreSQL); the
            # primary key and the partial unique index had the last word. Say which.
            with self._tx(write=False) as session:
                conflict = _conflict(session, record)
            if conflict is not None:
                raise conflict from e
            raise InvalidInput(f"release {record.release_id!r}: refused: {e.orig}") from e

    def get_release(self, release_id: str) -> ReleaseRecord | None:
        with self._tx(write=False) as session:
            row = session.get(ReleaseRow, release_id)
            return None if row is None else _record(row)

    def active_release(self, app: str, environment: str) -> ReleaseRecord | None:
        with self._tx(write=False) as session:
            row = _active_row(session, app, environment)
            return None if row is None else _record(row)

    def list_releases(self, app: str | None = None, limit: int = 100) -> list[ReleaseRecord]:
        """Newest first (by created_at), at most ``limit``, of one app or of all."""
        if limit < 1:
            raise InvalidInput(f"limit {limit}: must be 1 or more")
        query = select(ReleaseRow)
        if app is not None:
            query = query.where(ReleaseRow.app == app)
        query = query.order_by(ReleaseRow.created_at.desc(), ReleaseRow.id.desc()).limit(limit)
        with self._tx(write=False) as session:
            return [_record(row) for row in session.scalars(query)]

    def set_phase(
        self,
        release_id: str,
        phase: Phase,
        reason: str,
        *,
        expected: Iterable[Phase] | None = None,
        stopped: bool | None = None,
    ) -> None:
        value = Phase(phase).value
        allowed_from = sorted(p.value for p in phase_sources(Phase(phase), expected))
        changes: dict[str, object] = {
            "phase": value,
            "reason": reason,
            "updated_at": self._clock.now(),
        }
        if stopped is not None:
            changes["stopped"] = stopped
        try:
            with self._tx(write=True) as session:
                done = _changed(
                    session,
                    update(ReleaseRow)
                    .where(ReleaseRow.id == release_id, ReleaseRow.phase.in_(allowed_from))
                    .values(**changes),
                )
                if done != 1:
                    row = session.get(ReleaseRow, release_id)
                    if row is None:
                        raise _unknown(release_id)
                    active = _active_row(session, row.app, row.environment)
                    note = (
                        f"{active.id!r} is the active release of {row.app}/{row.environment}"
                        if active is not None and active.id != release_id
                        else ""
                    )
                    raise PhaseConflict(release_id, Phase(row.phase), Phase(phase), note)
        except IntegrityError as e:
            # Only the one-active index can object: this would make a second active release.
            with self._tx(write=False) as session:
                row = session.get(ReleaseRow, release_id)
                active = None if row is None else _active_row(session, row.app, row.environment)
                if row is not None and active is not None:
                    raise _busy(release_id, row.app, row.environment, active) from e
            raise InvalidInput(f"release {release_id!r}: phase {value}: refused: {e.orig}") from e

    def complete_step(self, release_id: str, index: int, name: str, outcome: str) -> None:
        """Log step ``index`` and advance next_step to index+1, exactly once.

        Only when next_step == index: then the log row and the advance commit together.
        An index below next_step is a replay (the step ran again after a crash before the
        executor saw the commit): nothing changes and no second log row is written. An
        index above next_step would skip steps and is refused.
        """
        if index < 0:
            raise InvalidInput(f"step index {index}: must be 0 or more")
        now = self._clock.now()
        try:
            with self._tx(write=True) as session:
                advanced = _changed(
                    session,
                    update(ReleaseRow)
                    .where(ReleaseRow.id == release_id, ReleaseRow.next_step == index)
                    .values(next_step=index + 1, updated_at=now),
                )
                if advanced == 1:
                    session.add(
                        StepRow(
                            release_id=release_id, index=index, name=name, outcome=outcome, at=now
                        )
                    )
                    return
                current = session.scalar(
                    select(ReleaseRow.next_step).where(ReleaseRow.id == release_id)
                )
                if current is None:
                    raise _unknown(release_id)
                if index > current:
                    raise InvalidInput(
                        f"release {release_id!r}: step {index} ({name}) completed while "
                        f"step {current} is next; steps complete in order"
                    )
        except IntegrityError as e:
            raise InvalidInput(
                f"release {release_id!r}: step {index} ({name}) is logged already "
                f"although next_step was {index}: {e.orig}"
            ) from e

    # Audit

    def record_event(self, event: Event) -> None:
        row = event_row(event)
        with self._tx(write=True) as session:
            self._require(session, event.release_id)
            session.add(row)

    def events(self, release_id: str) -> list[Event]:
        """In time order; events with the same time in the order they were recorded."""
        with self._tx(write=False) as session:
            return events_of(session, release_id)

    def record_gate_results(self, release_id: str, results: list[GateResult]) -> None:
        rows = [
            GateResultRow(
                release_id=release_id,
                at=_aware(r.at, f"gate {r.gate} at"),
                gate=r.gate,
                verdict=Verdict(r.verdict).value,
                value=r.value,
                threshold=r.threshold,
                window_s=r.window_s,
                requests=r.requests,
                reason=r.reason,
                labels=_json(r.labels, f"gate {r.gate} labels"),
            )
            for r in results
        ]
        with self._tx(write=True) as session:
            self._require(session, release_id)
            session.add_all(rows)

    def gate_results(self, release_id: str, limit: int = 1000) -> list[GateResult]:
        """The latest ``limit`` results, returned oldest first."""
        if limit < 1:
            raise InvalidInput(f"limit {limit}: must be 1 or more")
        with self._tx(write=False) as session:
            return gate_results_of(session, release_id, limit)

    # Approvals

    def add_approval(self, approval: Approval) -> None:
        """Idempotent per (release, step, approver): a repeat is ignored, the first stands."""
        values = {
            "release_id": approval.release_id,
            "step": approval.step,
            "approver": approval.approver,
            "role": approval.role,
            "at": _aware(approval.at, "approval at"),
            "comment": approval.comment,
        }
        keys = ["release_id", "step", "approver"]
        if self._dialect == "postgresql":
            statement: Any = (
                pg_insert(ApprovalRow).values(values).on_conflict_do_nothing(index_elements=keys)
            )
        else:
            statement = (
                sqlite_insert(ApprovalRow)
                .values(values)
                .on_conflict_do_nothing(index_elements=keys)
            )
        with self._tx(write=True) as session:
            self._require(session, approval.release_id)
            session.execute(statement)

    def approvals(self, release_id: str) -> list[Approval]:
        with self._tx(write=False) as session:
            return approvals_of(session, release_id)

    # Target state

    def save_target_state(self, release_id: str, state: dict[str, Any]) -> None:
        values = {
            "release_id": release_id,
            "state": _json(state, "target state"),
            "updated_at": self._clock.now(),
        }
        if self._dialect == "postgresql":
            pg = pg_insert(TargetStateRow).values(values)
            statement: Any = pg.on_conflict_do_update(
                index_elements=["release_id"],
                set_={"state": pg.excluded.state, "updated_at": pg.excluded.updated_at},
            )
        else:
            lite = sqlite_insert(TargetStateRow).values(values)
            statement = lite.on_conflict_do_update(
                index_elements=["release_id"],
                set_={"state": lite.excluded.state, "updated_at": lite.excluded.updated_at},
            )
        with self._tx(write=True) as session:
            self._require(session, release_id)
            session.execute(statement)

    def target_state(self, release_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as session:
            row = session.get(TargetStateRow, release_id)
            return None if row is None else row.state

    # API tokens (the SQL is in access_sql)

    def create_token(self, token: TokenRecord) -> None:
        for name in ("token_id", "principal", "token_hash"):
            if not str(getattr(token, name)).strip():
                raise InvalidInput(f"token {token.token_id!r}: {name} is empty")
        created = _aware(token.created_at, f"token {token.token_id} created_at")
        expires = (
            None
            if token.expires_at is None
            else _aware(token.expires_at, f"token {token.token_id} expires_at")
        )
        try:
            with self._tx(write=True) as session:
                taken = access_sql.token_taken(session, token)
                if taken is not None:
                    raise taken
                session.add(access_sql.token_row(token, created, expires))
        except IntegrityError as e:
            with self._tx(write=False) as session:
                taken = access_sql.token_taken(session, token)
            if taken is not None:
                raise taken from e
            raise InvalidInput(f"token {token.token_id!r}: refused: {e.orig}") from e

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._tx(write=False) as session:
            return access_sql.find_token(session, token_hash)

    def list_tokens(self) -> list[TokenRecord]:
        with self._tx(write=False) as session:
            return access_sql.list_tokens(session)

    def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        when = _aware(at, f"token {token_id} revoked_at")
        with self._tx(write=True) as session:
            return access_sql.revoke(session, token_id, when)

    # The audit log (the SQL and the chain's lock are in access_sql)

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        for name in ("actor", "action"):
            if not str(getattr(entry, name)).strip():
                raise InvalidInput(f"audit entry: {name} is empty")
        at = _aware(entry.at, f"audit entry {entry.action} at")
        detail = _json(entry.detail, f"audit entry {entry.action} detail")
        try:
            with self._tx(write=True) as session:
                return access_sql.append(session, entry, at, detail)
        except IntegrityError as e:
            # A writer that bypassed the head's lock took the seq first: try again.
            raise TemporaryError(f"audit log: append of {entry.action} refused: {e.orig}") from e

    def audit_entries(
        self, release_id: str | None = None, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        if limit < 1:
            raise InvalidInput(f"limit {limit}: must be 1 or more")
        with self._tx(write=False) as session:
            return access_sql.entries(session, release_id, after_seq, limit)

    def audit_head(self) -> AuditHead:
        with self._tx(write=False) as session:
            return access_sql.head(session)

    def verify_audit(self, anchor: AuditHead | None = None) -> AuditReport:
        """One snapshot from the head to the last entry: appends meanwhile are not seen."""
        engine = self._engine
        if self._dialect == "postgresql":  # SQLite's read transaction is a snapshot already
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        try:
            with sessionmaker(engine).begin() as session:
                return access_sql.verify(session, anchor)
        except OperationalError as e:
            raise TemporaryError(f"store: database unavailable or busy: {e.orig}") from e
        except SQLAlchemyError as e:
            raise GatekeeperError(f"store: {e}") from e
