"""A Client whose HTTP transport is a script, for tests without a server."""

import json

import _support  # noqa: F401

from caracal import Client


class FakeClient(Client):
    """Answers each request with the next scripted (status, body) pair and
    records (method, path, body) of every request."""

    def __init__(self, answers=()):
        super().__init__("http://caracal.invalid", "crk_test")
        self.answers = list(answers)
        self.requests = []

    def _send(self, method, url, headers, body):
        path = url[len(self.base_url):]
        self.requests.append((method, path, json.loads(body) if body else None))
        if not self.answers:
            raise AssertionError(f"unexpected request {method} {path}")
        answer = self.answers.pop(0)
        if callable(answer):
            answer = answer(method, path, body)
        status, doc = answer
        ctype = "application/problem+json" if status >= 400 else "application/json"
        return status, {"content-type": ctype}, json.dumps(doc).encode()


def reservation(rid="r1", amount="0.01"):
    return 201, {"allowed": True, "id": rid, "code": "allowed", "reason": "within every budget",
                 "amount": amount, "currency": "USD", "unpriced": False, "remaining": []}


def event(rid="r1", amount="0.01", outcome="charged"):
    return 200, {"seq": -1, "id": "ev-" + rid, "time": "2026-11-30T03:40:51.134297972Z", "agent_id": "a",
                 "agent_name": "bot", "chain": ["a"], "resource": "tool:search", "operation": "reserve",
                 "amount": amount, "currency": "USD", "request_id": rid, "outcome": outcome,
                 "tokens": {"input": 0, "output": 0, "cached_read": 0, "cache_write": 0, "reasoning": 0}}


def denial(code="budget_exceeded", detail="daily budget of agent \"bot\": spent 0.99 + price 0.02 exceeds limit 1.00 USD"):
    return 402, {"type": "https://caracal.dev/problems/" + code, "title": "Payment Required", "status": 402,
                 "code": code, "detail": detail, "allowed": False, "policy_id": "p1", "price": "0.02",
                 "currency": "USD", "remaining": [{"policy_id": "p1", "agent_id": "a", "agent_name": "bot",
                                                   "window": "daily", "limit": "1.00", "spent": "0.99",
                                                   "reserved": "0.00", "remaining": "0.01", "currency": "USD"}]}
