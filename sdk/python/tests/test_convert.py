import datetime as dt
import unittest
from decimal import Decimal

import _support  # noqa: F401

from caracal import _convert as c
from caracal.models import Budget, Event


class Amounts(unittest.TestCase):
    def test_parse(self):
        for s, want in [("0.50", Decimal("0.50")), ("25", Decimal(25)), ("-0.000000001", Decimal("-1E-9")),
                        ("123456789012.123456789", Decimal("123456789012.123456789"))]:
            with self.subTest(s=s):
                got = c.parse_amount(s)
                self.assertIsInstance(got, Decimal)
                self.assertEqual(got, want)
        self.assertEqual(str(c.parse_amount("0.50")), "0.50")  # the server's scale is kept
        self.assertIsNone(c.parse_amount(None))
        for bad in ("abc", "NaN", "Infinity", "", 0.5, True, [1]):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    c.parse_amount(bad)

    def test_sums_are_exact(self):
        total = sum((c.parse_amount("0.1") for _ in range(10)), Decimal(0))
        self.assertEqual(total, Decimal("1.0"))

    def test_format(self):
        for v, want in [(Decimal("0.01"), "0.01"), ("0.40", "0.40"), (3, "3"), (Decimal("1E+2"), "100"),
                        (Decimal("1E-9"), "0.000000001"), (" 2.5 ", "2.5"), (Decimal("0.100000000000"), "0.1"),
                        (Decimal("-1.5"), "-1.5")]:
            with self.subTest(v=v):
                self.assertEqual(c.format_amount(v), want)

    def test_format_refuses_floats_and_inexact(self):
        for v in (0.1, 1.0, True):
            with self.subTest(v=v):
                with self.assertRaisesRegex(TypeError, "not a"):
                    c.format_amount(v)
        for v in ("0.0000000001", Decimal("1.0000000001"), "x", "NaN", Decimal("Infinity")):
            with self.subTest(v=v):
                with self.assertRaises(ValueError):
                    c.format_amount(v)


class Times(unittest.TestCase):
    def test_parse(self):
        t = c.parse_time("2026-11-30T03:40:51.134297972Z")
        self.assertEqual(t, dt.datetime(2026, 11, 30, 3, 40, 51, 134297, tzinfo=dt.timezone.utc))
        t = c.parse_time("2026-11-30T04:40:51+01:00")
        self.assertEqual(t, dt.datetime(2026, 11, 30, 3, 40, 51, tzinfo=dt.timezone.utc))
        self.assertEqual(c.parse_time("2026-01-02T03:04:05.5Z").microsecond, 500000)
        self.assertIsNone(c.parse_time(None))
        for bad in ("2026-11-30", "2026-11-30T03:40:51", "yesterday", 5):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    c.parse_time(bad)

    def test_format(self):
        self.assertEqual(c.format_time(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)), "2026-11-01T00:00:00Z")
        self.assertEqual(c.format_time(dt.datetime(2026, 11, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
                         "2026-11-01T02:00:00+02:00")
        self.assertEqual(c.format_time(dt.date(2026, 11, 1)), "2026-11-01T00:00:00Z")
        with self.assertRaisesRegex(ValueError, "no time zone"):
            c.format_time(dt.datetime(2026, 11, 1))
        with self.assertRaises(ValueError):
            c.format_time("last week")


class Models(unittest.TestCase):
    def test_budget(self):
        doc = {"policy_id": "p", "agent_id": "a", "agent": "bot", "window": "daily", "window_type": "calendar",
               "window_start": "2026-11-30T00:00:00Z", "resets_at": "2026-12-01T00:00:00Z", "limit": "1.00",
               "spent": "0.30", "reserved": "0.00", "remaining": "0.70", "currency": "USD",
               "percent_used": Decimal("30.00"), "new_member": 1}
        b = Budget.from_json(doc)
        self.assertEqual((b.limit, b.spent, b.remaining), (Decimal("1.00"), Decimal("0.30"), Decimal("0.70")))
        self.assertEqual(b.resets_at, dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
        self.assertEqual(b.raw["new_member"], 1)  # a member this SDK does not know is kept

    def test_event_tokens(self):
        e = Event.from_json({"seq": 3, "id": "e", "amount": "0.31", "tokens": {"input": 1200, "output": 350}})
        self.assertEqual((e.seq, e.amount, e.tokens.input, e.tokens.output), (3, Decimal("0.31"), 1200, 350))
        with self.assertRaises(ValueError):
            Event.from_json([1])


if __name__ == "__main__":
    unittest.main()
