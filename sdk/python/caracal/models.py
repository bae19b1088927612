"""Result types of the API, as dataclasses.

Amounts are decimal.Decimal and times aware datetimes. Members the server
adds later are kept in each object's ``raw`` dictionary (the JSON object
as received), so an older SDK still sees them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from ._convert import parse_amount, parse_time

T = TypeVar("T", bound="_Model")


def _amount(**kw: Any) -> Any:
    return field(default=None, metadata={"conv": parse_amount}, **kw)


def _time(**kw: Any) -> Any:
    return field(default=None, metadata={"conv": parse_time}, **kw)


def _one(cls: Callable[[], Any]) -> Any:
    return field(default=None, metadata={"conv": lambda v: None if v is None else cls().from_json(v)})


def _many(cls: Callable[[], Any]) -> Any:
    return field(default_factory=list, metadata={"conv": lambda v: [cls().from_json(x) for x in (v or [])]})


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


class _Model:
    raw: Dict[str, Any]

    @classmethod
    def from_json(cls: Type[T], obj: Any) -> T:
        """Builds the object from the API's JSON object."""
        if not isinstance(obj, dict):
            raise ValueError(f"{cls.__name__}: want a JSON object, got {type(obj).__name__}")
        kw: Dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name == "raw" or f.name not in obj:
                continue
            conv = f.metadata.get("conv")
            kw[f.name] = conv(obj[f.name]) if conv else obj[f.name]
        out = cls(**kw)
        out.raw = obj
        return out


# _one and _many take a lambda returning the class rather than the class,
# so a model may refer to one defined further down.


@dataclass
class Agent(_Model):
    id: str = ""
    name: str = ""
    owner: str = ""
    status: str = ""
    parent_id: Optional[str] = None
    metadata: Dict[str, str] = field(default_factory=dict)
    created_at: Optional[datetime] = _time()
    raw: Dict[str, Any] = _raw()


@dataclass
class APIKey(_Model):
    id: str = ""
    agent_id: str = ""
    prefix: str = ""
    created_at: Optional[datetime] = _time()
    expires_at: Optional[datetime] = _time()
    revoked_at: Optional[datetime] = _time()
    raw: Dict[str, Any] = _raw()


@dataclass
class CreatedKey(APIKey):
    """A new key: ``key`` is its secret (crk_…), shown in this answer only."""

    agent_name: str = ""
    key: str = field(default="", repr=False)


@dataclass
class Policy(_Model):
    id: str = ""
    agent_id: str = ""
    version: int = 0
    limit: Optional[Decimal] = _amount()
    currency: str = ""
    window: str = ""
    window_type: str = ""
    timezone: str = ""
    allow: List[str] = field(default_factory=list)
    active: bool = False
    delegated_from: Optional[str] = None
    created_at: Optional[datetime] = _time()
    raw: Dict[str, Any] = _raw()


@dataclass
class Budget(_Model):
    policy_id: str = ""
    agent_id: str = ""
    agent: str = ""
    window: str = ""
    window_type: str = ""
    window_start: Optional[datetime] = _time()
    resets_at: Optional[datetime] = _time()
    limit: Optional[Decimal] = _amount()
    spent: Optional[Decimal] = _amount()
    reserved: Optional[Decimal] = _amount()
    remaining: Optional[Decimal] = _amount()
    currency: str = ""
    percent_used: Optional[Decimal] = _amount()
    raw: Dict[str, Any] = _raw()


@dataclass
class AgentDetail(Agent):
    keys: List[APIKey] = _many(lambda: APIKey)
    policies: List[Policy] = _many(lambda: Policy)
    budgets: List[Budget] = _many(lambda: Budget)


@dataclass
class Delegation(_Model):
    policy_id: str = ""
    parent_id: str = ""
    parent: str = ""
    child_id: str = ""
    child: str = ""
    limit: Optional[Decimal] = _amount()
    currency: str = ""
    window: str = ""
    window_type: str = ""
    timezone: str = ""
    version: int = 0
    status: str = ""
    raw: Dict[str, Any] = _raw()


@dataclass
class PerUnit(_Model):
    """A per-unit price: ``price`` for each unit of the argument at gjson ``path``."""

    path: str = ""
    price: Optional[Decimal] = _amount()
    raw: Dict[str, Any] = _raw()


@dataclass
class PriceRule(_Model):
    resource: str = ""
    currency: str = ""
    per_call: Optional[Decimal] = _amount()
    input_per_million: Optional[Decimal] = _amount()
    output_per_million: Optional[Decimal] = _amount()
    cached_input_per_million: Optional[Decimal] = _amount()
    cache_write_per_million: Optional[Decimal] = _amount()
    reasoning_per_million: Optional[Decimal] = _amount()
    per_unit: Optional[PerUnit] = _one(lambda: PerUnit)
    charge_errors: Optional[bool] = None
    updated_at: Optional[datetime] = _time()
    #: The resource asked for, when a lookup found the rule by matching it.
    matched: Optional[str] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class ImportResult(_Model):
    imported: int = 0
    rules: List[PriceRule] = _many(lambda: PriceRule)
    raw: Dict[str, Any] = _raw()


@dataclass
class Remaining(_Model):
    """What one budget of the agent's chain has left after (or at) a decision."""

    policy_id: str = ""
    agent_id: str = ""
    agent_name: Optional[str] = None
    window: str = ""
    limit: Optional[Decimal] = _amount()
    spent: Optional[Decimal] = _amount()
    reserved: Optional[Decimal] = _amount()
    remaining: Optional[Decimal] = _amount()
    currency: str = ""
    raw: Dict[str, Any] = _raw()


@dataclass
class Tokens(_Model):
    input: int = 0
    output: int = 0
    cached_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    raw: Dict[str, Any] = _raw()

    def to_json(self) -> Dict[str, int]:
        return {k: getattr(self, k) for k in ("input", "output", "cached_read", "cache_write", "reasoning") if getattr(self, k)}


@dataclass
class Event(_Model):
    """One ledger event. ``seq`` is its Merkle leaf index, -1 until integrated."""

    seq: int = -1
    id: str = ""
    time: Optional[datetime] = _time()
    agent_id: str = ""
    agent_name: str = ""
    chain: List[str] = field(default_factory=list)
    resource: str = ""
    operation: str = ""
    quantity: Optional[str] = None
    unit: Optional[str] = None
    amount: Optional[Decimal] = _amount()
    currency: str = ""
    request_id: str = ""
    outcome: str = ""
    code: Optional[str] = None
    reason: Optional[str] = None
    tokens: Optional[Tokens] = _one(lambda: Tokens)
    upstream: Optional[str] = None
    unpriced: bool = False
    raw: Dict[str, Any] = _raw()


@dataclass
class EventPage(_Model):
    events: List[Event] = _many(lambda: Event)
    #: Pass as ``cursor`` to read the next, older page; None on the last page.
    next_cursor: Optional[str] = None
    raw: Dict[str, Any] = _raw()


@dataclass
class SummaryRow(_Model):
    key: str = ""
    events: int = 0
    charged: Optional[Decimal] = _amount()
    denied: int = 0
    currency: str = ""
    #: Events on resources no price rule priced (charged the default price, or refused for it).
    unpriced: int = 0
    raw: Dict[str, Any] = _raw()


@dataclass
class CheckpointInfo(_Model):
    size: int = 0
    root: str = ""
    key_id: str = ""
    created_at: Optional[datetime] = _time()
    age_seconds: Optional[Decimal] = _amount()
    raw: Dict[str, Any] = _raw()


@dataclass
class MerkleStatus(_Model):
    tree_size: int = 0
    checkpoint: Optional[CheckpointInfo] = _one(lambda: CheckpointInfo)
    pending_events: int = 0
    oldest_pending: Optional[datetime] = _time()
    lag_seconds: Optional[Decimal] = _amount()
    raw: Dict[str, Any] = _raw()


@dataclass
class Checkpoint(_Model):
    """A stored checkpoint; ``note`` is the signed note, verbatim."""

    size: int = 0
    root: str = ""
    key_id: str = ""
    created_at: Optional[datetime] = _time()
    note: str = ""
    raw: Dict[str, Any] = _raw()


@dataclass
class SigningKey(_Model):
    """A checkpoint signing key; ``public_key`` is its note verifier key."""

    id: str = ""
    name: str = ""
    public_key: str = ""
    created_at: Optional[datetime] = _time()
    retired_at: Optional[datetime] = _time()
    raw: Dict[str, Any] = _raw()


@dataclass
class Reservation(_Model):
    """An admitted reservation; ``id`` is what settle and release take."""

    allowed: bool = True
    id: str = ""
    code: str = ""
    reason: str = ""
    amount: Optional[Decimal] = _amount()
    currency: str = ""
    unpriced: bool = False
    remaining: List[Remaining] = _many(lambda: Remaining)
    raw: Dict[str, Any] = _raw()
