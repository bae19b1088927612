"""The SDK against a real `caracal serve`.

The binary comes from CARACAL_BIN (`make test-python` builds bin/caracal
and sets it). Without it these tests fail rather than skip: a run that
did not exercise the server must not look green.
"""

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from decimal import Decimal

import _support

import caracal

SERVER = None


class Server:
    """A throwaway Caracal home (SQLite) with `caracal serve` on a free port."""

    def __init__(self, binary):
        self.bin = binary
        self.home = tempfile.mkdtemp(prefix="caracal-pysdk-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CARACAL_")}
        self.env["CARACAL_HOME"] = self.home
        self.proc = None
        self.lines = []
        self.url = None

    def cli(self, *args):
        r = subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"caracal {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "-o", "json"))

    def start(self):
        self.cli("init")
        self.admin_token = self.cli_json("admin", "token", "create", "--name", "sdk-tests")["token"]
        self.public_key = self.cli("keys", "export-public").strip()
        self.proc = subprocess.Popen([self.bin, "serve", "--listen", "127.0.0.1:0"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"caracal serve: listening on (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not self.url:
            self.stop()
            raise AssertionError("caracal serve did not report its address:\n" + "".join(self.lines))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def setUpModule():
    global SERVER
    binary = os.environ.get("CARACAL_BIN")
    if not binary:
        raise AssertionError("CARACAL_BIN is not set: the integration tests need a caracal binary with `serve` "
                             "(run `make test-python`, which builds bin/caracal and sets it)")
    if not os.access(binary, os.X_OK):
        raise AssertionError(f"CARACAL_BIN={binary!r} is not an executable file")
    SERVER = Server(binary)
    SERVER.start()


def tearDownModule():
    if SERVER:
        SERVER.stop()


_names = iter(range(10**6))


def admin():
    return caracal.Client(SERVER.url, SERVER.admin_token, timeout=30)


def agent_client(prefix, limit, window="total"):
    """A fresh agent with a budget; returns its name and a client holding its key."""
    a = admin()
    name = f"{prefix}-{next(_names)}"
    a.register_agent(name, "sdk-tests")
    a.create_policy(name, limit, window=window)
    key = a.create_key(name).key
    return name, caracal.Client(SERVER.url, key, timeout=30)


def wait_for(what, fn, timeout=30):
    """Polls fn until it returns a true value; the integrator signs every 200 ms."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class AdminAPI(unittest.TestCase):
    def test_agents_and_keys(self):
        a = admin()
        parent = a.register_agent("adm-parent", "alice@example.com", metadata={"team": "infra"})
        self.assertEqual((parent.name, parent.status, parent.metadata), ("adm-parent", "active", {"team": "infra"}))
        child = a.register_agent("adm-child", "alice@example.com", parent="adm-parent")
        self.assertEqual(child.parent_id, parent.id)
        self.assertIn("adm-child", [x.name for x in a.list_agents()])
        with self.assertRaises(caracal.Conflict):
            a.register_agent("adm-parent", "bob")
        with self.assertRaises(caracal.InvalidRequest) as cm:
            a.register_agent("bad name!", "bob")
        self.assertEqual(cm.exception.code, "invalid_request")

        key = a.create_key("adm-parent", expires_in="30d")
        self.assertTrue(key.key.startswith("crk_"))
        self.assertNotIn(key.key, repr(key))
        self.assertIsNotNone(key.expires_at)
        self.assertEqual([k.id for k in a.list_keys("adm-parent")], [key.id])
        self.assertIn(key.id, [k.id for k in a.list_keys()])

        detail = a.get_agent("adm-parent")
        self.assertEqual([k.id for k in detail.keys], [key.id])
        self.assertEqual(a.suspend_agent("adm-parent").status, "suspended")
        with self.assertRaises(caracal.AgentSuspended):
            caracal.Client(SERVER.url, key.key).reserve("tool:x", "0.01")
        self.assertEqual(a.resume_agent("adm-parent").status, "active")

        revoked = a.revoke_key(key.id)
        self.assertIsNotNone(revoked.revoked_at)
        with self.assertRaises(caracal.Conflict):
            a.revoke_key(key.id)
        with self.assertRaises(caracal.Unauthorized):
            caracal.Client(SERVER.url, key.key).budget_status()
        with self.assertRaises(caracal.NotFound) as cm:
            a.get_agent("ghost")
        self.assertIn("ghost", cm.exception.detail)

    def test_policies_and_delegations(self):
        a = admin()
        a.register_agent("pol-parent", "o")
        a.register_agent("pol-child", "o")
        p = a.create_policy("pol-parent", "25", window="daily", timezone="Europe/Paris", allow=["mcp:fs/*"])
        self.assertEqual((p.limit, p.version, p.window, p.timezone, p.allow), (Decimal("25"), 1, "daily", "Europe/Paris", ["mcp:fs/*"]))
        p2 = a.update_policy(p.id, limit=Decimal("50.5"))
        self.assertEqual((p2.limit, p2.version, p2.allow), (Decimal("50.5"), 2, ["mcp:fs/*"]))
        self.assertEqual(a.update_policy(p.id, allow=[]).allow, [])
        self.assertEqual([x.version for x in a.policy_history(p.id)], [1, 2, 3])
        self.assertEqual(a.get_policy(p.id).limit, Decimal("50.5"))
        self.assertIn(p.id, [x.id for x in a.list_policies(agent="pol-parent")])

        d = a.create_delegation("pol-parent", "pol-child", "5")
        self.assertEqual((d.parent, d.child, d.limit, d.status), ("pol-parent", "pol-child", Decimal("5"), "active"))
        with self.assertRaises(caracal.CaracalError) as cm:
            a.create_delegation("pol-parent", "pol-child", "500")  # above the parent's limit
        self.assertIn(cm.exception.status, (400, 409))
        self.assertIn(d.policy_id, [x.policy_id for x in a.list_delegations(agent="pol-parent")])
        self.assertEqual(a.revoke_delegation(d.policy_id).status, "revoked")

        self.assertFalse(a.deactivate_policy(p.id).active)
        self.assertNotIn(p.id, [x.id for x in a.list_policies(agent="pol-parent")])
        self.assertIn(p.id, [x.id for x in a.list_policies(agent="pol-parent", all=True)])

    def test_pricebook(self):
        a = admin()
        r = a.set_price("mcp:pb/*", per_call="0.01", per_unit={"path": "count", "price": "0.002"}, charge_errors=False)
        self.assertEqual((r.per_call, r.per_unit.path, r.per_unit.price, r.charge_errors),
                         (Decimal("0.01"), "count", Decimal("0.002"), False))
        got = a.get_price("mcp:pb/web")
        self.assertEqual((got.resource, got.matched), ("mcp:pb/*", "mcp:pb/web"))
        self.assertIn("mcp:pb/*", [x.resource for x in a.list_prices()])
        imported = a.import_prices("prices:\n  - resource: \"llm:pb/model\"\n    input_per_million: \"2.50\"\n    output_per_million: \"10\"\n")
        self.assertEqual(imported.imported, 1)
        self.assertEqual(a.get_price("llm:pb/model").output_per_million, Decimal("10"))
        self.assertEqual(a.delete_price("mcp:pb/*"), "mcp:pb/*")
        with self.assertRaises(caracal.NotFound):
            a.get_price("mcp:pb/web")

    def test_credentials(self):
        with self.assertRaises(caracal.Unauthorized):
            caracal.Client(SERVER.url, "cra_not-a-token").list_agents()
        _, agent = agent_client("cred", "1")
        with self.assertRaises(caracal.Forbidden):
            agent.list_agents()
        self.assertEqual(len(agent.budget_status()), 1)  # its own budgets only


class Metering(unittest.TestCase):
    def test_spend_block(self):
        name, c = agent_client("spend", "1.00")
        with c.spend("tool:search", amount="0.10") as s:
            self.assertEqual(s.reservation.amount, Decimal("0.10"))
            self.assertEqual(s.reservation.remaining[0].remaining, Decimal("0.90"))
        self.assertEqual((s.event.outcome, s.event.amount), ("charged", Decimal("0.10")))

        with c.spend("tool:search", "0.20") as s:
            s.settle(amount="0.05")
        self.assertEqual(s.event.amount, Decimal("0.05"))

        with self.assertRaises(RuntimeError):
            with c.spend("tool:search", "0.30") as s:
                raise RuntimeError("the tool failed before it ran")
        self.assertEqual((s.event.outcome, s.event.amount), ("refunded", Decimal("0")))

        with c.spend("tool:search", "0.07") as s:
            s.error()
        self.assertEqual(s.event.outcome, "charged")  # errors are charged unless the rule says otherwise

        with self.assertRaises(caracal.BudgetExceeded) as cm:
            with c.spend("tool:search", "0.90"):
                self.fail("a refused block ran")
        e = cm.exception
        self.assertEqual((e.status, e.code), (402, "budget_exceeded"))
        self.assertTrue(e.reason)
        self.assertEqual(e.remaining[0].remaining, Decimal("0.78"))

        b = admin().budget_status(agent=name)[0]
        self.assertEqual((b.spent, b.reserved, b.remaining), (Decimal("0.22"), Decimal("0"), Decimal("0.78")))
        outcomes = sorted(ev.outcome for ev in admin().iter_events(agent=name))
        self.assertEqual(outcomes, ["charged", "charged", "charged", "denied", "refunded"])

    def test_usage_settlement_priced_by_the_pricebook(self):
        admin().set_price("llm:sdk/model", input_per_million="2", output_per_million="10")
        _, c = agent_client("usage", "5")
        with c.spend("llm:sdk/model", "0.50") as s:
            s.settle(tokens={"input": 1000, "output": 500})
        self.assertEqual(s.event.amount, Decimal("0.007"))  # 1000*2/1e6 + 500*10/1e6
        self.assertEqual((s.event.tokens.input, s.event.tokens.output), (1000, 500))

    def test_pricebook_prices_errors_and_arguments(self):
        a = admin()
        a.set_price("tool:err/*", per_call="0.05", charge_errors=False)
        a.set_price("mcp:units/*", per_call="0.01", per_unit={"path": "count", "price": "0.002"})
        name, c = agent_client("priced", "1")
        with c.spend("tool:err/x") as s:  # no amount: the pricebook's
            self.assertEqual(s.reservation.amount, Decimal("0.05"))
            s.error()
        self.assertEqual((s.event.outcome, s.event.amount), ("charged", Decimal("0")))

        @c.metered("mcp:units/{name}")
        def lookup(query: str, count: int = 1) -> str:
            return query * count

        self.assertEqual(lookup("ab", count=3), "ababab")
        [ev] = [e for e in a.iter_events(agent=name) if e.resource == "mcp:units/lookup"]
        self.assertEqual(ev.amount, Decimal("0.016"))  # 0.01 + 3 × 0.002, priced from the arguments sent

    def test_aspend(self):
        name, c = agent_client("aspend", "1")

        async def main():
            async with c.aspend("tool:a", "0.25") as s:
                await asyncio.sleep(0)
            with self.assertRaises(caracal.BudgetExceeded):
                async with c.aspend("tool:a", "0.80"):
                    pass
            return s

        s = asyncio.run(main())
        self.assertEqual(s.event.amount, Decimal("0.25"))
        self.assertEqual(admin().budget_status(agent=name)[0].spent, Decimal("0.25"))

    def test_metered_sync_and_async(self):
        name, c = agent_client("deco", "0.05")

        @c.metered("mcp:myserver/{name}", price="0.02")
        def search(query: str) -> str:
            """Search."""
            return "found " + query

        @c.metered("mcp:myserver/{name}", price="0.02")
        async def fetch(url: str) -> str:
            """Fetch."""
            return "page " + url

        self.assertEqual(search("a"), "found a")
        self.assertEqual(asyncio.run(fetch("b")), "page b")
        with self.assertRaises(caracal.BudgetExceeded) as cm:
            search("c")  # 0.04 spent, 0.02 more exceeds 0.05
        self.assertEqual(cm.exception.code, "budget_exceeded")
        rows = {r.key: r for r in admin().ledger_summary(by="resource", agent=name)}
        self.assertEqual(rows["mcp:myserver/search"].charged, Decimal("0.02"))
        self.assertEqual(rows["mcp:myserver/search"].denied, 1)
        self.assertEqual(rows["mcp:myserver/fetch"].charged, Decimal("0.02"))

    def test_200_parallel_spends_admit_exactly_50(self):
        name, c = agent_client("crowd", "0.50")
        n = 200
        barrier = threading.Barrier(n)
        admitted, denied, other = [], [], []
        lock = threading.Lock()

        def one(i):
            barrier.wait()
            try:
                with c.spend("tool:crowd", "0.01"):
                    pass
                with lock:
                    admitted.append(i)
            except caracal.BudgetExceeded:
                with lock:
                    denied.append(i)
            except Exception as e:  # anything else is a finding
                with lock:
                    other.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(other, [])
        self.assertEqual((len(admitted), len(denied)), (50, 150))

        b = admin().budget_status(agent=name)[0]
        self.assertEqual((b.spent, b.reserved, b.remaining), (Decimal("0.50"), Decimal("0"), Decimal("0")))
        events = list(admin().iter_events(agent=name, page_size=37))
        self.assertEqual(len(events), 200)
        self.assertEqual(len({e.id for e in events}), 200)
        self.assertEqual(sum(1 for e in events if e.outcome == "charged"), 50)
        self.assertEqual(sum(1 for e in events if e.outcome == "denied"), 150)
        self.assertEqual(sum((e.amount for e in events), Decimal(0)), Decimal("0.50"))
        [row] = admin().ledger_summary(by="agent", agent=name)
        self.assertEqual((row.events, row.charged, row.denied), (200, Decimal("0.50"), 150))


class MerkleProofs(unittest.TestCase):
    def _settled_event(self):
        _, c = agent_client("proof", "1")
        with c.spend("tool:proved", "0.03") as s:
            pass
        a = admin()
        ev_id = s.event.id
        # Wait until the integrator has put the event in a signed checkpoint.
        def proof():
            try:
                return a.prove_inclusion(ev_id)
            except (caracal.NotFound, caracal.InvalidRequest, caracal.Conflict):
                return None
        return ev_id, wait_for("the event to be in a signed checkpoint", proof)

    @_support.needs_cryptography
    def test_inclusion_proof_from_the_server_verifies_offline(self):
        ev_id, proof = self._settled_event()
        # The key comes from the CLI, not the server: trust only what you hold.
        r = caracal.verify_inclusion(json.dumps(proof), SERVER.public_key)
        self.assertEqual(r.event_id, ev_id)
        self.assertEqual((r.leaf.resource, r.leaf.amount, r.leaf.outcome), ("tool:proved", Decimal("0.03"), "charged"))
        self.assertTrue(r.signature_checked)
        self.assertIn(SERVER.public_key, [k.public_key for k in admin().signing_keys()])
        cp = admin().checkpoint(r.tree_size)
        self.assertEqual(cp.root, r.root.hex())

        tampered = copy.deepcopy(proof)
        tampered["leaf"] = tampered["leaf"].replace(b"tool:proved".hex(), b"tool:proves".hex())
        with self.assertRaises(caracal.VerificationError):
            caracal.verify_inclusion(tampered, SERVER.public_key)
        forged = copy.deepcopy(proof)
        forged["checkpoint"] = forged["checkpoint"].replace(f"\n{r.tree_size}\n", f"\n{r.tree_size + 1}\n", 1)
        forged["tree_size"] = r.tree_size + 1
        with self.assertRaisesRegex(caracal.VerificationError, "signature"):
            caracal.verify_inclusion(forged, SERVER.public_key)

        status = admin().merkle_status()
        self.assertGreaterEqual(status.tree_size, r.tree_size)
        first = admin().checkpoints()[0].size
        latest = admin().latest_checkpoint().size
        cons = caracal.verify_consistency(admin().prove_consistency(first, latest), SERVER.public_key)
        self.assertEqual((cons.old_size, cons.new_size), (first, latest))

    def test_hashes_checked_without_signature(self):
        _, proof = self._settled_event()
        r = caracal.verify_inclusion(proof, check_signature=False)
        self.assertFalse(r.signature_checked)
        bad = copy.deepcopy(proof)
        bad["leaf_index"] = (bad["leaf_index"] + 1) % bad["tree_size"] if bad["tree_size"] > 1 else 0
        bad["proof"] = bad["proof"] + ["00" * 32]
        with self.assertRaises(caracal.VerificationError):
            caracal.verify_inclusion(bad, check_signature=False)


class Ledger(unittest.TestCase):
    def test_query_pages_and_export(self):
        name, c = agent_client("ledger", "1")
        for i in range(5):
            with c.spend(f"tool:l{i}", "0.01"):
                pass
        a = admin()
        page = a.query_events(agent=name, limit=2)
        self.assertEqual(len(page.events), 2)
        self.assertIsNotNone(page.next_cursor)
        self.assertEqual(page.events[0].resource, "tool:l4")  # newest first
        all_ids = [e.id for e in a.iter_events(agent=name, page_size=2)]
        self.assertEqual(len(all_ids), 5)
        exported = a.export_events(agent=name)
        self.assertEqual([e.resource for e in exported], [f"tool:l{i}" for i in range(5)])  # ledger order
        csv = a.export_ledger("csv", agent=name)
        self.assertTrue(csv.startswith("seq,id,time"))
        self.assertEqual(len(csv.strip().splitlines()), 6)
        t0 = exported[0].time
        self.assertIsNotNone(t0.tzinfo)
        later = a.query_events(agent=name, since=exported[2].time.replace(microsecond=0))
        self.assertTrue(set(e.id for e in exported[3:]) <= {e.id for e in later.events})
        with self.assertRaises(caracal.InvalidRequest):
            a.query_events(limit=5000)


if __name__ == "__main__":
    unittest.main()
