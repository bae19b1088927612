"""spend, aspend and metered against a scripted transport: which requests
are made, in which order, for each way a metered block can end."""

import asyncio
import inspect
import threading
import typing
import unittest

import _support  # noqa: F401

import caracal

from _fake import FakeClient, denial, event, reservation


class SpendBlock(unittest.TestCase):
    def test_success_settles_at_the_reserved_amount(self):
        c = FakeClient([reservation("r1", "0.01"), event("r1")])
        with c.spend("tool:search", amount="0.01") as s:
            self.assertEqual(s.id, "r1")
            self.assertEqual(c.requests[-1], ("POST", "/v1/reservations", {"resource": "tool:search", "amount": "0.01"}))
        self.assertEqual(c.requests[-1], ("POST", "/v1/reservations/r1/settle", {}))
        self.assertEqual(s.event.outcome, "charged")

    def test_explicit_settle_and_usage(self):
        c = FakeClient([reservation(), event(amount="0.004")])
        with c.spend("tool:search", "0.01") as s:
            s.settle(amount="0.004")
        self.assertEqual([r[1] for r in c.requests], ["/v1/reservations", "/v1/reservations/r1/settle"])
        self.assertEqual(c.requests[-1][2], {"amount": "0.004"})
        c = FakeClient([reservation(), event()])
        with c.spend("llm:openai/gpt-4o", "0.40", request_id="job-1") as s:
            s.settle(tokens={"input": 1200, "output": 350})
        self.assertEqual(c.requests[0][2]["request_id"], "job-1")
        self.assertEqual(c.requests[-1][2], {"tokens": {"input": 1200, "output": 350}})
        with self.assertRaisesRegex(TypeError, "float"):
            with FakeClient([reservation(), event()]).spend("x", "0.1") as s:
                s.settle(amount=0.1)

    def test_exception_releases_and_propagates(self):
        c = FakeClient([reservation(), event(outcome="refunded")])
        with self.assertRaisesRegex(KeyError, "boom"):
            with c.spend("tool:search", "0.01"):
                raise KeyError("boom")
        self.assertEqual(c.requests[-1][:2], ("POST", "/v1/reservations/r1/release"))
        self.assertIn("KeyError", c.requests[-1][2]["reason"])

    def test_failed_release_keeps_the_blocks_exception(self):
        c = FakeClient([reservation(), (503, {"code": "unavailable", "status": 503, "detail": "x"})])
        with self.assertLogs("caracal", "WARNING"):
            with self.assertRaises(ZeroDivisionError):
                with c.spend("tool:search", "0.01"):
                    1 / 0

    def test_error_settles_with_is_error(self):
        c = FakeClient([reservation(), event()])
        with c.spend("tool:search", "0.01") as s:
            s.error()
        self.assertEqual(c.requests[-1], ("POST", "/v1/reservations/r1/settle", {"is_error": True}))
        self.assertEqual(len(c.requests), 2)  # nothing more on leaving the block

    def test_denied_never_runs_the_block(self):
        c = FakeClient([denial()])
        ran = []
        with self.assertRaises(caracal.BudgetExceeded) as cm:
            with c.spend("tool:search", "0.02"):
                ran.append(1)
        self.assertEqual(ran, [])
        self.assertEqual(len(c.requests), 1)
        self.assertIn("exceeds limit", cm.exception.reason)
        self.assertEqual(str(cm.exception.remaining[0].remaining), "0.01")

    def test_settle_twice_refused(self):
        c = FakeClient([reservation(), event()])
        with c.spend("tool:search", "0.01") as s:
            s.settle()
            with self.assertRaisesRegex(RuntimeError, "already charged"):
                s.release()


class AsyncSpendBlock(unittest.TestCase):
    def test_success_error_and_exception(self):
        async def main():
            c = FakeClient([reservation("a"), event("a"), reservation("b"), event("b"), reservation("c"), event("c", outcome="refunded")])
            async with c.aspend("tool:search", "0.01") as s:
                self.assertEqual(s.id, "a")
            async with c.aspend("tool:search", "0.01") as s:
                await s.error(amount="0.005")
            with self.assertRaises(ValueError):
                async with c.aspend("tool:search", "0.01"):
                    raise ValueError("x")
            return c

        c = asyncio.run(main())
        self.assertEqual([r[1] for r in c.requests], [
            "/v1/reservations", "/v1/reservations/a/settle",
            "/v1/reservations", "/v1/reservations/b/settle",
            "/v1/reservations", "/v1/reservations/c/release"])
        self.assertEqual(c.requests[3][2], {"amount": "0.005", "is_error": True})

    def test_denied(self):
        async def main():
            c = FakeClient([denial("no_budget", "agent has no budget")])
            async with c.aspend("tool:search", "0.01"):
                self.fail("ran")

        with self.assertRaises(caracal.BudgetExceeded) as cm:
            asyncio.run(main())
        self.assertEqual(cm.exception.code, "no_budget")


class AsyncCancellation(unittest.TestCase):
    def test_cancelled_while_reserving_releases_the_reservation(self):
        started, gate, released = threading.Event(), threading.Event(), threading.Event()

        def slow_reserve(method, path, body):
            started.set()
            gate.wait(30)
            return reservation("late")

        def release(method, path, body):
            released.set()
            return event("late", outcome="refunded")

        c = FakeClient([slow_reserve, release])

        async def main():
            task = asyncio.ensure_future(c.aspend("tool:x", "0.01").__aenter__())
            await asyncio.to_thread(started.wait, 30)
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task
            gate.set()  # the reservation is made only now, after the caller gave up

        asyncio.run(main())
        self.assertTrue(released.wait(30), "the late reservation was not released")
        self.assertEqual(c.requests[-1][1], "/v1/reservations/late/release")


class Metered(unittest.TestCase):
    def test_sync_function(self):
        c = FakeClient([reservation(), event()])

        @c.metered("mcp:myserver/{name}", price="0.01")
        def search(query: str, count: int = 10) -> str:
            """Search the web."""
            return f"{count} results for {query}"

        self.assertEqual(search("caracal"), "10 results for caracal")
        self.assertEqual(c.requests[0][2], {"resource": "mcp:myserver/search", "amount": "0.01"})
        self.assertEqual(c.requests[1][1], "/v1/reservations/r1/settle")

    def test_resource_from_arguments_and_pricebook_arguments(self):
        c = FakeClient([reservation(), event()])

        class Opaque:
            pass

        @c.metered("http:{engine}/{name}")
        def query(engine: str, count: int = 5, ctx: object = None):
            return "ok"

        query("bing", ctx=Opaque())
        # Without a price the pricebook prices the call, from its arguments;
        # ones that are not JSON (a framework's context object) are left out.
        self.assertEqual(c.requests[0][2], {"resource": "http:bing/query", "arguments": {"engine": "bing", "count": 5}})

    def test_a_parameter_called_name(self):
        c = FakeClient([reservation(), event()])

        @c.metered("mcp:s/{function}/{name}", price="0.01")
        def greet(name):
            return "hi " + name

        greet("ada")
        self.assertEqual(c.requests[0][2]["resource"], "mcp:s/greet/ada")

    def test_unknown_template_field_refused_at_decoration(self):
        c = FakeClient()
        with self.assertRaisesRegex(ValueError, "nope"):
            @c.metered("mcp:s/{nope}")
            def f(x):
                return x

    def test_exception_releases(self):
        c = FakeClient([reservation(), event(outcome="refunded")])

        @c.metered("mcp:s/{name}", price="0.01")
        def broken():
            raise RuntimeError("upstream down")

        with self.assertRaisesRegex(RuntimeError, "upstream down"):
            broken()
        self.assertEqual(c.requests[-1][1], "/v1/reservations/r1/release")

    def test_mcp_error_result_settles_as_error(self):
        c = FakeClient([reservation(), event()])

        @c.metered("mcp:s/{name}", price="0.01")
        def tool():
            return {"content": [{"type": "text", "text": "failed"}], "isError": True}

        tool()
        self.assertEqual(c.requests[-1][2], {"is_error": True})

    def test_denied_raises_before_the_call(self):
        c = FakeClient([denial()])
        calls = []

        @c.metered("mcp:s/{name}", price="0.02")
        def tool():
            calls.append(1)

        with self.assertRaises(caracal.BudgetExceeded) as cm:
            tool()
        self.assertEqual(calls, [])
        self.assertIn("budget_exceeded", str(cm.exception))
        self.assertIn("exceeds limit", str(cm.exception))

    def test_coroutine_function(self):
        c = FakeClient([reservation(), event(), reservation("r2"), event("r2", outcome="refunded")])

        @c.metered("mcp:s/{name}", price="0.01")
        async def fetch(url: str) -> str:
            """Fetch a page."""
            await asyncio.sleep(0)
            if url == "bad":
                raise IOError("404")
            return "<html>"

        self.assertTrue(inspect.iscoroutinefunction(fetch))
        self.assertEqual(asyncio.run(fetch("https://example.com")), "<html>")
        with self.assertRaises(IOError):
            asyncio.run(fetch("bad"))
        self.assertEqual([r[1] for r in c.requests], ["/v1/reservations", "/v1/reservations/r1/settle",
                                                     "/v1/reservations", "/v1/reservations/r2/release"])

    def test_keeps_what_fastmcp_introspects(self):
        # FastMCP builds a tool's name, description and input schema from
        # the function: __name__, __doc__, inspect.signature (which follows
        # __wrapped__), typing.get_type_hints and iscoroutinefunction.
        c = FakeClient()

        def search(query: str, limit: int = 10, tags: typing.Optional[typing.List[str]] = None) -> str:
            """Search the index.

            Args:
                query: what to look for
            """
            return query

        async def asearch(query: str) -> typing.List[str]:
            """Search, async."""
            return [query]

        for orig in (search, asearch):
            with self.subTest(orig.__name__):
                wrapped = c.metered("mcp:myserver/{name}", price="0.01")(orig)
                self.assertEqual(wrapped.__name__, orig.__name__)
                self.assertEqual(wrapped.__doc__, orig.__doc__)
                self.assertEqual(inspect.signature(wrapped), inspect.signature(orig))
                self.assertEqual(typing.get_type_hints(wrapped), typing.get_type_hints(orig))
                self.assertEqual(inspect.iscoroutinefunction(wrapped), inspect.iscoroutinefunction(orig))
                self.assertIs(wrapped.__wrapped__, orig)


if __name__ == "__main__":
    unittest.main()
