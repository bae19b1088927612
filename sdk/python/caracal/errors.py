"""Typed exceptions for the API's RFC 9457 problems."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Dict, List, Optional, Type


class CaracalError(Exception):
    """An error answered by `caracal serve` (or no answer at all).

    status is the HTTP status (None when the server was not reached), code
    the problem's Caracal code (such as "not_found"), detail its
    human-readable explanation, problem the whole problem object.
    """

    def __init__(self, status: Optional[int], code: Optional[str], detail: str,
                 problem: Optional[Dict[str, Any]] = None):
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: Dict[str, Any] = dict(problem or {})
        self.title: Optional[str] = self.problem.get("title")
        self.type: Optional[str] = self.problem.get("type")
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        code = self.code or "error"
        return f"{where}{code}: {self.detail}" if self.detail else f"{where}{code}"


class InvalidRequest(CaracalError):
    """400 invalid_request: the detail names the field."""


class Unauthorized(CaracalError):
    """401: no credential, or an unknown, expired or revoked one."""


class Forbidden(CaracalError):
    """403: the credential may not do this."""


class AgentSuspended(Forbidden):
    """403 agent_suspended: the key's agent is suspended."""


class NotFound(CaracalError):
    """404: no such agent, key, policy, reservation, rule or checkpoint."""


class MethodNotAllowed(CaracalError):
    """405."""


class Conflict(CaracalError):
    """409: a name taken, a key already revoked."""


class RequestTooLarge(CaracalError):
    """413: the request body is larger than the server accepts."""


class Unavailable(CaracalError):
    """503: the ledger could not be reached; a reservation is refused (fail closed)."""


class TransportError(CaracalError):
    """The server could not be reached or answered something that is not HTTP."""


class BudgetExceeded(CaracalError):
    """402: a reservation was refused by a budget, an allowlist or a price rule.

    code is the decision code (budget_exceeded, not_allowed, no_budget,
    unpriced, currency_mismatch, invalid_arguments, …), reason the server's
    explanation, remaining what each budget of the agent's chain has left
    (a list of caracal.Remaining), price the amount that was refused.
    """

    def __init__(self, status: Optional[int], code: Optional[str], detail: str,
                 problem: Optional[Dict[str, Any]] = None):
        super().__init__(status, code, detail, problem)
        from .models import Remaining  # models imports nothing from here at load time
        from ._convert import parse_amount

        p = self.problem
        self.reason: str = detail
        self.allowed: bool = bool(p.get("allowed", False))
        self.policy_id: Optional[str] = p.get("policy_id")
        self.currency: Optional[str] = p.get("currency")
        self.price: Optional[Decimal] = _lenient(parse_amount, p.get("price"))
        self.remaining: List[Remaining] = [Remaining.from_json(r) for r in (p.get("remaining") or []) if isinstance(r, dict)]


# Refused reservations: every decision code is a 402 with this type.
Denied = BudgetExceeded

_BY_CODE: Dict[str, Type[CaracalError]] = {
    "invalid_request": InvalidRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "agent_suspended": AgentSuspended,
    "not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "conflict": Conflict,
    "request_too_large": RequestTooLarge,
    "unavailable": Unavailable,
}

_BY_STATUS: Dict[int, Type[CaracalError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    402: BudgetExceeded,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    503: Unavailable,
}


def _lenient(fn, value):
    try:
        return fn(value)
    except (ValueError, TypeError):
        return None


def error_from_response(status: int, body: bytes, content_type: str = "") -> CaracalError:
    """Maps an error response to the most specific exception.

    A 402 is always a BudgetExceeded whatever its decision code; otherwise
    the problem's code decides, then the status. A body that is not a
    problem (a proxy's HTML page) still gives a CaracalError with the status.
    """
    problem: Dict[str, Any] = {}
    try:
        doc = json.loads(body.decode("utf-8"), parse_float=Decimal)
        if isinstance(doc, dict):
            problem = doc
    except (UnicodeDecodeError, ValueError):
        pass
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = problem.get("detail")
    if not isinstance(detail, str):
        detail = problem.get("title") if isinstance(problem.get("title"), str) else ""
        if not detail and not problem:
            detail = body[:200].decode("utf-8", "replace").strip()
    if status == 402:
        cls: Type[CaracalError] = BudgetExceeded
    else:
        cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or CaracalError
    return cls(status, code, detail, problem)
