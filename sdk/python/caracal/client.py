"""The HTTP client of `caracal serve` (docs/api.md, docs/openapi.yaml)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import __version__
from ._convert import AmountLike, format_amount, format_time
from .errors import TransportError, error_from_response
from .metering import AsyncSpend, Spend, metered as _metered
from .models import (
    Agent, AgentDetail, APIKey, Budget, Checkpoint, CreatedKey, Delegation, Event,
    EventPage, ImportResult, MerkleStatus, PerUnit, Policy, PriceRule, Reservation,
    SigningKey, SummaryRow, Tokens,
)

TimeLike = Union[datetime, date, str]
TokensLike = Union[Tokens, Mapping[str, int]]


def _q(segment: str) -> str:
    """Escapes one path segment (an agent name, an ID)."""
    return urllib.parse.quote(str(segment), safe="")


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return format_amount(v)
    if isinstance(v, (datetime, date)):
        return format_time(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _drop_none(d: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class Client:
    """A client of the admin and metering API of `caracal serve`.

    token_or_key is an admin token (cra_…) for the admin methods or an
    agent key (crk_…) for metering (reserve, settle, release, spend,
    metered) and the agent's own budget_status. Every method is blocking
    and thread-safe; the a-prefixed helpers run them in a thread.
    """

    def __init__(self, base_url: str, token_or_key: str, timeout: float = 30.0,
                 user_agent: Optional[str] = None):
        if not base_url:
            raise ValueError("base_url is empty")
        if not token_or_key:
            raise ValueError("token_or_key is empty: pass an admin token (cra_…) or an agent key (crk_…)")
        base = base_url.rstrip("/")
        # The API lives under /v1; accept a base URL given with or without it.
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        self.timeout = timeout
        self._auth = "Bearer " + token_or_key
        self.user_agent = user_agent or f"caracal-python/{__version__}"

    def __repr__(self) -> str:  # never the secret
        return f"Client({self.base_url!r})"

    # -- transport --------------------------------------------------------

    def _send(self, method: str, url: str, headers: Dict[str, str], body: Optional[bytes]) -> Tuple[int, Dict[str, str], bytes]:
        """Sends one request; returns status, headers and body of any answer."""
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            try:
                data = e.read()
            finally:
                e.close()
            return e.code, {k.lower(): v for k, v in (e.headers or {}).items()}, data
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TransportError(None, "transport", f"{method} {url}: {reason}") from e

    def _url(self, path: str, query: Optional[Mapping[str, Any]]) -> str:
        url = self.base_url + path
        if query:
            q = []
            for k, v in query.items():
                if v is None or v is False:
                    continue
                if v is True:
                    v = "true"
                elif isinstance(v, (datetime, date)):
                    v = format_time(v, k)
                q.append((k, str(v)))
            if q:
                url += "?" + urllib.parse.urlencode(q)
        return url

    def _call(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
              body: Any = None, *, raw_body: Optional[bytes] = None,
              content_type: str = "application/json", accept: str = "application/json") -> bytes:
        url = self._url(path, query)
        headers = {"Authorization": self._auth, "Accept": accept, "User-Agent": self.user_agent}
        data = raw_body
        if data is None and body is not None:
            data = json.dumps(body, default=_json_default).encode("utf-8")
        if data is not None:
            headers["Content-Type"] = content_type
        status, resp_headers, payload = self._send(method, url, headers, data)
        if status >= 400:
            raise error_from_response(status, payload, resp_headers.get("content-type", ""))
        return payload

    def _json(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None, body: Any = None, **kw: Any) -> Any:
        payload = self._call(method, path, query, body, **kw)
        try:
            # parse_float keeps any JSON number exact; amounts are strings anyway.
            return json.loads(payload.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as e:
            raise TransportError(None, "bad_response", f"{method} {path}: the answer is not JSON: {e}") from e

    # -- agents and keys --------------------------------------------------

    def register_agent(self, name: str, owner: str, parent: Optional[str] = None,
                       metadata: Optional[Mapping[str, str]] = None) -> Agent:
        """Registers an agent (`caracal agent register`)."""
        body = _drop_none({"name": name, "owner": owner, "parent": parent,
                           "metadata": dict(metadata) if metadata is not None else None})
        return Agent.from_json(self._json("POST", "/v1/agents", body=body))

    def list_agents(self) -> List[Agent]:
        return [Agent.from_json(a) for a in self._json("GET", "/v1/agents")]

    def get_agent(self, agent: str) -> AgentDetail:
        """An agent (name or ID) with its keys, active policies and budgets."""
        return AgentDetail.from_json(self._json("GET", f"/v1/agents/{_q(agent)}"))

    def suspend_agent(self, agent: str) -> Agent:
        return Agent.from_json(self._json("POST", f"/v1/agents/{_q(agent)}/suspend"))

    def resume_agent(self, agent: str) -> Agent:
        return Agent.from_json(self._json("POST", f"/v1/agents/{_q(agent)}/resume"))

    def create_key(self, agent: str, expires_in: Optional[str] = None) -> CreatedKey:
        """Creates an agent key; its secret is ``.key`` of the result, shown once."""
        body = _drop_none({"expires_in": expires_in})
        return CreatedKey.from_json(self._json("POST", f"/v1/agents/{_q(agent)}/keys", body=body))

    def list_keys(self, agent: Optional[str] = None) -> List[APIKey]:
        """One agent's keys, or every agent's when agent is None (prefixes only)."""
        path = f"/v1/agents/{_q(agent)}/keys" if agent is not None else "/v1/keys"
        return [APIKey.from_json(k) for k in self._json("GET", path)]

    def revoke_key(self, key_id: str) -> APIKey:
        return APIKey.from_json(self._json("POST", f"/v1/keys/{_q(key_id)}/revoke"))

    # -- policies and delegations ----------------------------------------

    @staticmethod
    def _budget_fields(limit: Optional[AmountLike], currency: Optional[str], window: Optional[str],
                       window_type: Optional[str], timezone: Optional[str],
                       allow: Optional[Sequence[str]]) -> Dict[str, Any]:
        return _drop_none({
            "limit": format_amount(limit, "limit") if limit is not None else None,
            "currency": currency, "window": window, "window_type": window_type,
            "timezone": timezone, "allow": list(allow) if allow is not None else None,
        })

    def create_policy(self, agent: str, limit: AmountLike, *, currency: Optional[str] = None,
                      window: Optional[str] = None, window_type: Optional[str] = None,
                      timezone: Optional[str] = None, allow: Optional[Sequence[str]] = None) -> Policy:
        """Puts a budget on an agent (`caracal policy create`); defaults are the CLI's."""
        body = {"agent": agent, **self._budget_fields(limit, currency, window, window_type, timezone, allow)}
        return Policy.from_json(self._json("POST", "/v1/policies", body=body))

    def list_policies(self, agent: Optional[str] = None, all: bool = False) -> List[Policy]:
        return [Policy.from_json(p) for p in self._json("GET", "/v1/policies", {"agent": agent, "all": all})]

    def get_policy(self, policy_id: str) -> Policy:
        return Policy.from_json(self._json("GET", f"/v1/policies/{_q(policy_id)}"))

    def update_policy(self, policy_id: str, *, limit: Optional[AmountLike] = None, currency: Optional[str] = None,
                      window: Optional[str] = None, window_type: Optional[str] = None,
                      timezone: Optional[str] = None, allow: Optional[Sequence[str]] = None) -> Policy:
        """Writes a new version; arguments left None keep their value, allow=[] clears the allowlist."""
        body = self._budget_fields(limit, currency, window, window_type, timezone, allow)
        return Policy.from_json(self._json("PATCH", f"/v1/policies/{_q(policy_id)}", body=body))

    def deactivate_policy(self, policy_id: str) -> Policy:
        return Policy.from_json(self._json("POST", f"/v1/policies/{_q(policy_id)}/deactivate"))

    def policy_history(self, policy_id: str) -> List[Policy]:
        return [Policy.from_json(p) for p in self._json("GET", f"/v1/policies/{_q(policy_id)}/history")]

    def create_delegation(self, parent: str, child: str, limit: AmountLike, *, currency: Optional[str] = None,
                          window: Optional[str] = None, window_type: Optional[str] = None,
                          timezone: Optional[str] = None, allow: Optional[Sequence[str]] = None) -> Delegation:
        """Gives child a budget carved from parent's (`caracal delegation create`)."""
        body = {"parent": parent, "child": child,
                **self._budget_fields(limit, currency, window, window_type, timezone, allow)}
        return Delegation.from_json(self._json("POST", "/v1/delegations", body=body))

    def list_delegations(self, agent: Optional[str] = None, all: bool = False) -> List[Delegation]:
        return [Delegation.from_json(d) for d in self._json("GET", "/v1/delegations", {"agent": agent, "all": all})]

    def revoke_delegation(self, policy_id: str) -> Delegation:
        return Delegation.from_json(self._json("POST", f"/v1/delegations/{_q(policy_id)}/revoke"))

    # -- pricebook ---------------------------------------------------------

    @staticmethod
    def _resource_path(resource: str) -> str:
        # The pattern is the rest of the path, slashes included (docs/api.md).
        return "/v1/pricebook/" + urllib.parse.quote(resource, safe="/:*@")

    def list_prices(self) -> List[PriceRule]:
        return [PriceRule.from_json(r) for r in self._json("GET", "/v1/pricebook")]

    def get_price(self, resource: str) -> PriceRule:
        """The rule stored for a pattern, else the rule that prices a resource (``.matched`` set)."""
        return PriceRule.from_json(self._json("GET", self._resource_path(resource)))

    def set_price(self, resource: str, *, per_call: Optional[AmountLike] = None,
                  input_per_million: Optional[AmountLike] = None, output_per_million: Optional[AmountLike] = None,
                  cached_input_per_million: Optional[AmountLike] = None,
                  cache_write_per_million: Optional[AmountLike] = None,
                  reasoning_per_million: Optional[AmountLike] = None,
                  per_unit: Union[PerUnit, Mapping[str, Any], None] = None,
                  charge_errors: Optional[bool] = None, currency: Optional[str] = None) -> PriceRule:
        """Creates or replaces the rule for a pattern (`caracal pricebook set`)."""
        body: Dict[str, Any] = {"currency": currency, "charge_errors": charge_errors}
        for name, v in (("per_call", per_call), ("input_per_million", input_per_million),
                        ("output_per_million", output_per_million),
                        ("cached_input_per_million", cached_input_per_million),
                        ("cache_write_per_million", cache_write_per_million),
                        ("reasoning_per_million", reasoning_per_million)):
            if v is not None:
                body[name] = format_amount(v, name)
        if per_unit is not None:
            pu = per_unit if isinstance(per_unit, Mapping) else {"path": per_unit.path, "price": per_unit.price}
            body["per_unit"] = {"path": pu["path"], "price": format_amount(pu["price"], "per_unit.price")}
        return PriceRule.from_json(self._json("PUT", self._resource_path(resource), body=_drop_none(body)))

    def delete_price(self, resource: str) -> str:
        """Deletes the rule for a pattern; returns the pattern deleted."""
        return self._json("DELETE", self._resource_path(resource))["deleted"]

    def import_prices(self, pricebook: Union[str, bytes, Mapping[str, Any]]) -> ImportResult:
        """Sets every rule of a pricebook file in one transaction.

        A str or bytes is sent as YAML (the file format of `caracal
        pricebook import`); a mapping as JSON.
        """
        if isinstance(pricebook, Mapping):
            return ImportResult.from_json(self._json("POST", "/v1/pricebook/import", body=dict(pricebook)))
        data = pricebook.encode("utf-8") if isinstance(pricebook, str) else bytes(pricebook)
        return ImportResult.from_json(self._json("POST", "/v1/pricebook/import", raw_body=data,
                                                 content_type="application/yaml"))

    # -- budgets and ledger -----------------------------------------------

    def budget_status(self, agent: Optional[str] = None, include_children: bool = False) -> List[Budget]:
        """The budgets that bind an agent (`caracal budget status`).

        With an agent key, those of the key's own agent.
        """
        return [Budget.from_json(b) for b in self._json("GET", "/v1/budgets", {"agent": agent, "include_children": include_children})]

    @staticmethod
    def _filters(agent: Optional[str], include_children: bool, since: Optional[TimeLike],
                 until: Optional[TimeLike], resource: Optional[str], outcome: Optional[str]) -> Dict[str, Any]:
        return {"agent": agent, "include_children": include_children,
                "since": format_time(since, "since") if since is not None else None,
                "until": format_time(until, "until") if until is not None else None,
                "resource": resource, "outcome": outcome}

    def query_events(self, *, agent: Optional[str] = None, include_children: bool = False,
                     since: Optional[TimeLike] = None, until: Optional[TimeLike] = None,
                     resource: Optional[str] = None, outcome: Optional[str] = None,
                     limit: Optional[int] = None, cursor: Optional[str] = None) -> EventPage:
        """One page of ledger events, the newest first (`caracal ledger query`)."""
        q = self._filters(agent, include_children, since, until, resource, outcome)
        q.update(limit=limit, cursor=cursor)
        return EventPage.from_json(self._json("GET", "/v1/ledger/events", q))

    def iter_events(self, *, page_size: int = 1000, **filters: Any) -> Iterator[Event]:
        """Every matching event, the newest first, following next_cursor page by page."""
        cursor = None
        while True:
            page = self.query_events(limit=page_size, cursor=cursor, **filters)
            yield from page.events
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def ledger_summary(self, by: str = "resource", *, agent: Optional[str] = None, include_children: bool = False,
                       since: Optional[TimeLike] = None, until: Optional[TimeLike] = None,
                       resource: Optional[str] = None, outcome: Optional[str] = None) -> List[SummaryRow]:
        """Events, charges and denials grouped by resource, agent or day."""
        q = self._filters(agent, include_children, since, until, resource, outcome)
        q["by"] = by
        return [SummaryRow.from_json(r) for r in self._json("GET", "/v1/ledger/summary", q)]

    def export_ledger(self, format: str = "jsonl", *, agent: Optional[str] = None, include_children: bool = False,
                      since: Optional[TimeLike] = None, until: Optional[TimeLike] = None,
                      resource: Optional[str] = None, outcome: Optional[str] = None) -> str:
        """Every matching event in ledger order, as JSON Lines or CSV text."""
        q = self._filters(agent, include_children, since, until, resource, outcome)
        q["format"] = format
        return self._call("GET", "/v1/ledger/export", q, accept="*/*").decode("utf-8")

    def iter_export(self, **filters: Any) -> Iterator[Event]:
        """Every matching event in ledger order (the oldest first), read as the server streams it.

        Takes the filters of export_ledger; holds one line in memory at a time.
        """
        q = self._filters(filters.pop("agent", None), filters.pop("include_children", False),
                          filters.pop("since", None), filters.pop("until", None),
                          filters.pop("resource", None), filters.pop("outcome", None))
        if filters:
            raise TypeError(f"unknown filters: {', '.join(sorted(filters))}")
        q["format"] = "jsonl"
        url = self._url("/v1/ledger/export", q)
        headers = {"Authorization": self._auth, "Accept": "application/jsonl", "User-Agent": self.user_agent}
        req = urllib.request.Request(url, method="GET", headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            try:
                raise error_from_response(e.code, e.read()) from None
            finally:
                e.close()
        except (urllib.error.URLError, OSError) as e:
            raise TransportError(None, "transport", f"GET {url}: {getattr(e, 'reason', e)}") from e
        with resp:
            for line in resp:
                if line.strip():
                    yield Event.from_json(json.loads(line, parse_float=Decimal))

    def export_events(self, **filters: Any) -> List[Event]:
        """Every matching event in ledger order (the oldest first), parsed."""
        return list(self.iter_export(**filters))

    # -- merkle -----------------------------------------------------------

    def merkle_status(self) -> MerkleStatus:
        return MerkleStatus.from_json(self._json("GET", "/v1/merkle/status"))

    def checkpoints(self) -> List[Checkpoint]:
        return [Checkpoint.from_json(c) for c in self._json("GET", "/v1/merkle/checkpoints")]

    def latest_checkpoint(self) -> Checkpoint:
        return Checkpoint.from_json(self._json("GET", "/v1/merkle/checkpoints/latest"))

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint.from_json(self._json("GET", f"/v1/merkle/checkpoints/{int(size)}"))

    def prove_inclusion(self, event: Optional[str] = None, *, seq: Optional[int] = None,
                        size: Optional[int] = None) -> Dict[str, Any]:
        """An inclusion proof document (docs/ledger-format.md), for verify_inclusion."""
        if (event is None) == (seq is None):
            raise ValueError("give exactly one of event and seq")
        return self._json("GET", "/v1/merkle/proofs/inclusion", {"event": event, "seq": seq, "size": size})

    def prove_consistency(self, old_size: int, new_size: Optional[int] = None) -> Dict[str, Any]:
        """A consistency proof document, for verify_consistency."""
        return self._json("GET", "/v1/merkle/proofs/consistency", {"from": old_size, "to": new_size})

    def signing_keys(self) -> List[SigningKey]:
        return [SigningKey.from_json(k) for k in self._json("GET", "/v1/merkle/keys")]

    # -- metering ---------------------------------------------------------

    def reserve(self, resource: str, amount: Optional[AmountLike] = None, *,
                arguments: Any = None, request_id: Optional[str] = None, operation: Optional[str] = None,
                quantity: Optional[str] = None, unit: Optional[str] = None) -> Reservation:
        """Decides and reserves one call (agent key).

        Priced by the pricebook (and arguments, for per-unit rules) unless
        amount is given. Raises BudgetExceeded when refused, Unavailable
        when the ledger could not decide.
        """
        body = _drop_none({"resource": resource, "operation": operation,
                           "amount": format_amount(amount) if amount is not None else None,
                           "arguments": arguments, "request_id": request_id,
                           "quantity": quantity, "unit": unit})
        return Reservation.from_json(self._json("POST", "/v1/reservations", body=body))

    def settle(self, reservation_id: str, amount: Optional[AmountLike] = None, *,
               tokens: Optional[TokensLike] = None, arguments: Any = None, is_error: bool = False,
               quantity: Optional[str] = None, unit: Optional[str] = None) -> Event:
        """Charges a reservation: amount, or usage (tokens), or neither for the amount reserved.

        Settling again returns the first event, so a retry is safe.
        """
        if amount is not None and tokens is not None:
            raise ValueError("give amount or tokens, not both")
        if isinstance(tokens, Tokens):
            tokens = tokens.to_json()
        body = _drop_none({"amount": format_amount(amount) if amount is not None else None,
                           "tokens": dict(tokens) if tokens is not None else None,
                           "arguments": arguments, "is_error": True if is_error else None,
                           "quantity": quantity, "unit": unit})
        return Event.from_json(self._json("POST", f"/v1/reservations/{_q(reservation_id)}/settle", body=body))

    def release(self, reservation_id: str, reason: Optional[str] = None) -> Event:
        """Releases a reservation whose call never ran (a refunded event of amount 0)."""
        body = _drop_none({"reason": reason})
        return Event.from_json(self._json("POST", f"/v1/reservations/{_q(reservation_id)}/release", body=body))

    def spend(self, resource: str, amount: Optional[AmountLike] = None, **kw: Any) -> Spend:
        """A context manager: reserves on enter, settles on success, releases on an exception.

            with client.spend("tool:search", amount="0.01") as s:
                result = search(q)
        """
        return Spend(self, resource, amount, **kw)

    def aspend(self, resource: str, amount: Optional[AmountLike] = None, **kw: Any) -> AsyncSpend:
        """The async form of spend: ``async with client.aspend(...) as s:``."""
        return AsyncSpend(self, resource, amount, **kw)

    def metered(self, resource: str, price: Optional[AmountLike] = None, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator metering every call of a function or coroutine function.

        See caracal.metering.metered.
        """
        return _metered(self, resource, price, **kw)
