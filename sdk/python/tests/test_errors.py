import json
import unittest
from decimal import Decimal

import _support  # noqa: F401

import caracal
from caracal.errors import error_from_response

import _fake


def problem(status, code, detail="it went wrong"):
    return json.dumps({"type": "https://caracal.dev/problems/" + code, "title": "T", "status": status,
                       "detail": detail, "code": code}).encode()


class ProblemMapping(unittest.TestCase):
    def test_codes(self):
        cases = [
            (400, "invalid_request", caracal.InvalidRequest),
            (401, "unauthorized", caracal.Unauthorized),
            (403, "forbidden", caracal.Forbidden),
            (403, "agent_suspended", caracal.AgentSuspended),
            (404, "not_found", caracal.NotFound),
            (405, "method_not_allowed", caracal.MethodNotAllowed),
            (409, "conflict", caracal.Conflict),
            (413, "request_too_large", caracal.RequestTooLarge),
            (503, "unavailable", caracal.Unavailable),
            (418, "teapot", caracal.CaracalError),
        ]
        for status, code, cls in cases:
            with self.subTest(code=code):
                e = error_from_response(status, problem(status, code, "agent \"ghost\" not found"))
                self.assertIs(type(e), cls)
                self.assertIsInstance(e, caracal.CaracalError)
                self.assertEqual((e.status, e.code, e.detail), (status, code, "agent \"ghost\" not found"))
                self.assertIn("agent \"ghost\" not found", str(e))
        self.assertIsInstance(error_from_response(403, problem(403, "agent_suspended")), caracal.Forbidden)

    def test_status_decides_without_a_known_code(self):
        e = error_from_response(404, b"<html>not here</html>", "text/html")
        self.assertIs(type(e), caracal.NotFound)
        self.assertIsNone(e.code)
        self.assertIn("not here", e.detail)

    def test_denial(self):
        status, doc = _fake.denial("not_allowed", "resource \"x\" is not in the allowlist")
        e = error_from_response(status, json.dumps(doc).encode())
        self.assertIs(type(e), caracal.BudgetExceeded)
        self.assertIs(caracal.Denied, caracal.BudgetExceeded)
        self.assertEqual(e.status, 402)
        self.assertEqual(e.code, "not_allowed")
        self.assertEqual(e.reason, "resource \"x\" is not in the allowlist")
        self.assertEqual(e.price, Decimal("0.02"))
        self.assertFalse(e.allowed)
        self.assertEqual(len(e.remaining), 1)
        self.assertEqual(e.remaining[0].remaining, Decimal("0.01"))
        self.assertEqual(e.remaining[0].agent_name, "bot")

    def test_reserve_raises_typed_errors(self):
        client = _fake.FakeClient([_fake.denial(), (401, json.loads(problem(401, "unauthorized")))])
        with self.assertRaises(caracal.BudgetExceeded) as cm:
            client.reserve("tool:search", "0.02")
        self.assertEqual(cm.exception.code, "budget_exceeded")
        with self.assertRaises(caracal.Unauthorized):
            client.reserve("tool:search", "0.02")

    def test_transport_error(self):
        client = caracal.Client("http://127.0.0.1:9", "crk_x", timeout=5)
        with self.assertRaises(caracal.TransportError) as cm:
            client.budget_status()
        self.assertIsNone(cm.exception.status)
        self.assertNotIn("crk_x", repr(client))


if __name__ == "__main__":
    unittest.main()
