"""Metering helpers: the spend context managers and the metered decorator."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import string
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TypeVar

from ._convert import AmountLike
from .models import Event, Reservation

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

log = logging.getLogger("caracal")

F = TypeVar("F", bound=Callable[..., Any])


class Spend:
    """One metered call: reserve on enter, then exactly one settle or release.

    On leaving the block: if settle() or error() already ran, nothing more
    happens; after an exception the reservation is released (the call is
    taken not to have cost anything) and the exception propagates; else
    it is settled at the amount reserved. ``reservation`` is the admitted
    Reservation, ``event`` the ledger event of the settlement or release.
    """

    def __init__(self, client: "Client", resource: str, amount: Optional[AmountLike] = None, *,
                 arguments: Any = None, request_id: Optional[str] = None, operation: Optional[str] = None,
                 quantity: Optional[str] = None, unit: Optional[str] = None):
        self._client = client
        self.resource = resource
        self._reserve_kw: Dict[str, Any] = dict(amount=amount, arguments=arguments, request_id=request_id,
                                                operation=operation, quantity=quantity, unit=unit)
        self.reservation: Optional[Reservation] = None
        self.event: Optional[Event] = None

    @property
    def id(self) -> str:
        """The reservation's ID (what settle and release take)."""
        if self.reservation is None:
            raise RuntimeError("not reserved yet: use the spend object inside its with block")
        return self.reservation.id

    @property
    def done(self) -> bool:
        return self.event is not None

    def _reserve(self) -> "Spend":
        self.reservation = self._client.reserve(self.resource, **self._reserve_kw)
        return self

    def settle(self, amount: Optional[AmountLike] = None, **kw: Any) -> Event:
        """Settles now: with amount, with usage (tokens=…, arguments=…), or at the amount reserved."""
        if self.event is not None:
            raise RuntimeError(f"reservation {self.id} is already {self.event.outcome}")
        self.event = self._client.settle(self.id, amount, **kw)
        return self.event

    def error(self, amount: Optional[AmountLike] = None, **kw: Any) -> Event:
        """Settles now as a call that failed after it ran (is_error).

        It is charged unless the price rule says charge_errors: false.
        """
        return self.settle(amount, is_error=True, **kw)

    def release(self, reason: Optional[str] = None) -> Event:
        """Releases now: the call did not run and costs nothing."""
        if self.event is not None:
            raise RuntimeError(f"reservation {self.id} is already {self.event.outcome}")
        self.event = self._client.release(self.id, reason)
        return self.event

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self.reservation is None or self.event is not None:
            return
        if exc is None:
            self.settle()
            return
        try:
            self.release(f"{type(exc).__name__} in the metered block")
        except Exception as e:  # the block's own exception is the one to raise
            # Unreleased, the reservation is settled as unconfirmed by the
            # server's sweep after the reservation TTL.
            log.warning("caracal: releasing reservation %s after %s failed: %s", self.id, type(exc).__name__, e)

    def __enter__(self) -> "Spend":
        return self._reserve()

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._finish(exc)


async def _areserve(spend: Spend) -> None:
    """Reserves in a worker thread; a cancelled caller does not leak the reservation.

    The thread cannot be stopped, so a reservation it makes after the
    caller was cancelled is released at once, rather than held until the
    server's sweep charges it as unconfirmed. Whichever side learns last
    that both happened (the thread, or the cancelled caller) releases it,
    so it is released exactly once.
    """
    lock = threading.Lock()
    state = {"abandoned": False, "delivered": False}

    def work() -> None:
        spend._reserve()
        with lock:
            if not state["abandoned"]:
                state["delivered"] = True
                return
        spend._finish(asyncio.CancelledError())

    try:
        await asyncio.to_thread(work)
    except asyncio.CancelledError:
        with lock:
            state["abandoned"] = True
            delivered = state["delivered"]
        if delivered:
            threading.Thread(target=spend._finish, args=(asyncio.CancelledError(),), daemon=True).start()
        raise


class AsyncSpend:
    """Spend for ``async with``; the blocking HTTP calls run in a worker thread.

    settle, error and release are coroutines here; otherwise it behaves
    as Spend.
    """

    def __init__(self, client: "Client", resource: str, amount: Optional[AmountLike] = None, **kw: Any):
        self._spend = Spend(client, resource, amount, **kw)
        self.resource = resource

    @property
    def reservation(self) -> Optional[Reservation]:
        return self._spend.reservation

    @property
    def event(self) -> Optional[Event]:
        return self._spend.event

    @property
    def id(self) -> str:
        return self._spend.id

    @property
    def done(self) -> bool:
        return self._spend.done

    async def settle(self, amount: Optional[AmountLike] = None, **kw: Any) -> Event:
        return await asyncio.to_thread(self._spend.settle, amount, **kw)

    async def error(self, amount: Optional[AmountLike] = None, **kw: Any) -> Event:
        return await asyncio.to_thread(self._spend.error, amount, **kw)

    async def release(self, reason: Optional[str] = None) -> Event:
        return await asyncio.to_thread(self._spend.release, reason)

    async def __aenter__(self) -> "AsyncSpend":
        await _areserve(self._spend)
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        await asyncio.to_thread(self._spend._finish, exc)


def _template_fields(template: str) -> set:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _is_error_result(result: Any) -> bool:
    """An MCP tool result that reports a failure (CallToolResult.isError)."""
    if isinstance(result, dict):
        return result.get("isError") is True
    return getattr(result, "isError", False) is True


def metered(client: "Client", resource: str, price: Optional[AmountLike] = None, *,
            send_arguments: Optional[bool] = None, operation: Optional[str] = None) -> Callable[[F], F]:
    """Meters every call of the decorated function or coroutine function.

    resource is a str.format template over the function's name (``{name}``,
    or ``{function}`` when a parameter is called name) and its arguments by
    parameter name, e.g. "mcp:myserver/{name}" or "http:search/{engine}". price is the amount reserved (and charged) per
    call; without it the pricebook prices the call, and the call's
    JSON-serialisable arguments are sent for per-unit rules
    (send_arguments overrides that choice).

    A refused call raises BudgetExceeded (with .reason and .remaining)
    before the function runs. An exception from the function releases the
    reservation and propagates; a result carrying isError (an MCP
    CallToolResult) is settled as an error. The wrapper keeps the
    function's name, docstring and signature (functools.wraps), so
    frameworks that introspect tool functions (FastMCP) see the original.
    """
    if send_arguments is None:
        send_arguments = price is None

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        wanted = _template_fields(resource)
        unknown = wanted - set(sig.parameters) - {"name", "function"}
        if unknown:
            raise ValueError(f"resource template {resource!r} names {sorted(unknown)}, which {func.__name__} has no parameter for")

        def spend_for(args: tuple, kwargs: dict) -> Spend:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            fmt = {"name": func.__name__, "function": func.__name__, **values}
            res = resource.format(**fmt) if wanted else resource
            arguments = None
            if send_arguments:
                arguments = {k: v for k, v in values.items()
                             if sig.parameters[k].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
                             and _jsonable(v)}
            return Spend(client, res, price, arguments=arguments or None, operation=operation)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                s = spend_for(args, kwargs)
                await _areserve(s)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as e:
                    await asyncio.to_thread(s._finish, e)
                    raise
                if _is_error_result(result):
                    await asyncio.to_thread(s.error)
                else:
                    await asyncio.to_thread(s._finish, None)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s = spend_for(args, kwargs)
            s._reserve()
            try:
                result = func(*args, **kwargs)
            except BaseException as e:
                s._finish(e)
                raise
            if _is_error_result(result):
                s.error()
            else:
                s._finish(None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
