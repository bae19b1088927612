"""Offline proof verification against answers made by other implementations.

The RFC 6962 vectors are the published certificate-transparency ones (also
the known answers of merkle/merkle_test.go); testdata/proofs.json is made
by the Go merkle package (merkle/sdkfixture_test.go), with a fixed key.
"""

import copy
import hashlib
import json
import os
import sys
import unittest
from decimal import Decimal
from unittest import mock

import _support  # noqa: F401

import caracal
from caracal import merkle

KA_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
KA_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf, 1-based as published; tree size; audit path)
KA_INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
KA_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

# docs/ledger-format.md section 1, worked example (TestLeafEncodingWorkedExample in Go).
WORKED_LEAF = bytes.fromhex(
    "010000002430623566376331652d386434612d346632622d396536312d336137643263396231663030"
    "187b82e5355ba000000000026131" "0000000a72657365617263686572"
    "0000000200000002613100000002613000000011" "6c6c6d3a6f70656e61692f6770742d346f"
    "00000010636861742e636f6d706c6574696f6e73" "0000000000000000" "0000000000bebc20"
    "00000003555344" "000000027231" "0000000763686172676564" "0000000000000000"
    "00000000000003e800000000000003e8" "000000000000000000000000000000000000000000000000"
    "000000066f70656e6169" "00")
WORKED_HASH = "c83361ce841b5488c5b51f081daecd38ce406bcd5d4c52c0bebf7f2717999194"


def h(x):
    return bytes.fromhex(x)


def without_cryptography():
    """Makes `import cryptography…` fail, as on a host without the package."""
    blocked = {name: None for name in (
        "cryptography", "cryptography.exceptions", "cryptography.hazmat",
        "cryptography.hazmat.primitives", "cryptography.hazmat.primitives.asymmetric",
        "cryptography.hazmat.primitives.asymmetric.ed25519")}
    return mock.patch.dict(sys.modules, blocked)


def load_fixture():
    with open(os.path.join(_support.TESTDATA, "proofs.json"), encoding="utf-8") as f:
        return json.load(f)


class RFC6962KnownAnswers(unittest.TestCase):
    def test_roots(self):
        leaves = [h(x) for x in KA_LEAVES]
        for n, want in enumerate(KA_ROOTS):
            self.assertEqual(merkle.tree_root(leaves[:n]).hex(), want, f"root of {n} leaves")

    def test_leaf_and_node_hashing(self):
        self.assertEqual(merkle.leaf_hash(b"").hex(), KA_ROOTS[1])
        self.assertEqual(merkle.node_hash(merkle.leaf_hash(b""), merkle.leaf_hash(b"\x00")).hex(), KA_ROOTS[2])

    def test_inclusion_proofs(self):
        for leaf, size, path in KA_INCLUSION:
            with self.subTest(leaf=leaf, size=size):
                lh = merkle.leaf_hash(h(KA_LEAVES[leaf - 1]))
                got = merkle.root_from_inclusion_proof(leaf - 1, size, lh, [h(p) for p in path])
                self.assertEqual(got.hex(), KA_ROOTS[size])

    def test_inclusion_proof_tampered(self):
        leaf, size, path = KA_INCLUSION[2]
        lh = merkle.leaf_hash(h(KA_LEAVES[leaf - 1]))
        proof = [h(p) for p in path]
        cases = {
            "hash flipped": (leaf - 1, size, lh, [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:]),
            "index moved": (leaf, size, lh, proof),
            "wrong leaf": (leaf - 1, size, merkle.leaf_hash(b"x"), proof),
            "path reordered": (leaf - 1, size, lh, list(reversed(proof))),
        }
        for name, args in cases.items():
            with self.subTest(name):
                self.assertNotEqual(merkle.root_from_inclusion_proof(*args).hex(), KA_ROOTS[size])
        with self.assertRaisesRegex(merkle.VerificationError, "shorter"):
            merkle.root_from_inclusion_proof(leaf - 1, size, lh, proof[:-1])
        with self.assertRaisesRegex(merkle.VerificationError, "longer"):
            merkle.root_from_inclusion_proof(leaf - 1, size, lh, proof + proof[:1])
        with self.assertRaisesRegex(merkle.VerificationError, "outside"):
            merkle.root_from_inclusion_proof(size, size, lh, proof)

    def test_consistency_proofs(self):
        for old, new, path in KA_CONSISTENCY:
            with self.subTest(old=old, new=new):
                merkle.check_consistency(old, new, h(KA_ROOTS[old]), h(KA_ROOTS[new]), [h(p) for p in path])
        merkle.check_consistency(0, 8, h(KA_ROOTS[0]), h(KA_ROOTS[8]), [])

    def test_consistency_proof_tampered(self):
        old, new, path = KA_CONSISTENCY[2]
        proof = [h(p) for p in path]
        bad = {
            "hash flipped": (old, new, h(KA_ROOTS[old]), h(KA_ROOTS[new]), [b"\x00" * 32] + proof[1:]),
            "wrong old root": (old, new, h(KA_ROOTS[old - 1]), h(KA_ROOTS[new]), proof),
            "wrong new root": (old, new, h(KA_ROOTS[old]), h(KA_ROOTS[new - 1]), proof),
            "truncated": (old, new, h(KA_ROOTS[old]), h(KA_ROOTS[new]), proof[:-1]),
            "empty": (4, 8, h(KA_ROOTS[4]), h(KA_ROOTS[8]), []),
            "equal sizes, proof given": (8, 8, h(KA_ROOTS[8]), h(KA_ROOTS[8]), proof[:1]),
        }
        for name, args in bad.items():
            with self.subTest(name):
                with self.assertRaises(merkle.VerificationError):
                    merkle.check_consistency(*args)


class LeafEncoding(unittest.TestCase):
    def test_worked_example(self):
        self.assertEqual(len(WORKED_LEAF), 225)
        self.assertEqual(merkle.leaf_hash(WORKED_LEAF).hex(), WORKED_HASH)
        leaf = caracal.decode_leaf(WORKED_LEAF)
        self.assertEqual(leaf.id, "0b5f7c1e-8d4a-4f2b-9e61-3a7d2c9b1f00")
        self.assertEqual(leaf.time_ns, 1764147600000000000)
        self.assertEqual(leaf.time.isoformat(), "2025-11-26T09:00:00+00:00")
        self.assertEqual(leaf.chain, ["a1", "a0"])
        self.assertEqual(leaf.amount, Decimal("0.0125"))
        self.assertEqual((leaf.input_tokens, leaf.output_tokens), (1000, 1000))
        self.assertEqual((leaf.outcome, leaf.upstream, leaf.unpriced), ("charged", "openai", False))

    def test_decoder_refuses_non_canonical(self):
        cases = {
            "version 2": b"\x02" + WORKED_LEAF[1:],
            "truncated": WORKED_LEAF[:-1],
            "trailing byte": WORKED_LEAF + b"\x00",
            "unpriced 2": WORKED_LEAF[:-1] + b"\x02",
            "empty": b"",
        }
        for name, b in cases.items():
            with self.subTest(name):
                with self.assertRaises(caracal.VerificationError):
                    caracal.decode_leaf(b)

    def test_fixture_leaf_matches_go_fields(self):
        f = load_fixture()
        leaf = caracal.decode_leaf(bytes.fromhex(f["inclusion"][5]["leaf"]))
        go = f["leaf_4"]
        self.assertEqual(
            (leaf.id, leaf.time_ns, leaf.agent_id, leaf.agent_name, leaf.chain, leaf.resource, leaf.operation,
             leaf.amount_nanos, leaf.currency, leaf.request_id, leaf.outcome, leaf.unpriced),
            (go["ID"], go["TimeNS"], go["AgentID"], go["AgentName"], go["Chain"], go["Resource"], go["Operation"],
             go["AmountNanos"], go["Currency"], go["RequestID"], go["Outcome"], go["Unpriced"]))


class GoProofsWithSignatures(unittest.TestCase):
    def setUp(self):
        self.f = load_fixture()
        self.key = self.f["verifier_key"]

    @_support.needs_cryptography
    def test_every_inclusion_proof_verifies(self):
        for p in self.f["inclusion"]:
            with self.subTest(index=p["leaf_index"], size=p["tree_size"]):
                r = caracal.verify_inclusion(json.dumps(p), self.key)
                self.assertEqual(r.root.hex(), self.f["roots"][str(p["tree_size"])])
                self.assertEqual(r.event_id, p["event_id"])
                self.assertEqual(r.origin, "example.com/log")
                self.assertTrue(r.signature_checked)
                self.assertEqual(r.signed_by, ["+".join(self.key.split("+", 2)[:2])])

    @_support.needs_cryptography
    def test_every_consistency_proof_verifies(self):
        for p in self.f["consistency"]:
            with self.subTest(old=p["old_size"], new=p["new_size"]):
                r = caracal.verify_consistency(p, self.key)
                self.assertEqual(r.new_root.hex(), self.f["roots"][str(p["new_size"])])

    @_support.needs_cryptography
    def test_tampered_inclusion_proofs_fail(self):
        base = self.f["inclusion"][5]  # leaf 4 of 17

        def edit(fn):
            p = copy.deepcopy(base)
            fn(p)
            return p

        cases = {
            "leaf changed": (edit(lambda p: p.update(leaf=p["leaf"][:-2] + "01")), "do not hash to leaf_hash"),
            "leaf and leaf hash changed": (edit(lambda p: p.update(
                leaf=p["leaf"][:-2] + "01",
                leaf_hash=hashlib.sha256(b"\x00" + bytes.fromhex(p["leaf"][:-2] + "01")).hexdigest())), "does not verify"),
            "proof hash changed": (edit(lambda p: p["proof"].__setitem__(0, "00" * 32)), "does not verify"),
            "index moved": (edit(lambda p: p.update(leaf_index=5)), "does not verify"),
            "size moved": (edit(lambda p: p.update(tree_size=16)), "tree_size 16"),
            "checkpoint forged": (edit(lambda p: p.update(checkpoint=p["checkpoint"].replace("\n17\n", "\n18\n", 1))), "signature does not verify"),
            "signature cut": (edit(lambda p: p.update(checkpoint=p["checkpoint"].split("\n\n")[0] + "\n\n")), "signature"),
            "bad hex": (edit(lambda p: p.update(leaf_hash="zz")), "leaf_hash"),
            "other format": (edit(lambda p: p.update(format="x")), "format"),
        }
        for name, (p, want) in cases.items():
            with self.subTest(name):
                with self.assertRaisesRegex(caracal.VerificationError, want):
                    caracal.verify_inclusion(p, self.key)

    @_support.needs_cryptography
    def test_wrong_key_fails(self):
        with self.assertRaisesRegex(caracal.VerificationError, "unknown key"):
            caracal.verify_inclusion(self.f["inclusion"][3], self.f["other_verifier_key"])
        # Trusting both keys is fine: the one that signed verifies.
        caracal.verify_inclusion(self.f["inclusion"][3], [self.f["other_verifier_key"], self.key])

    @_support.needs_cryptography
    def test_key_with_wrong_hash_refused(self):
        name, khash, key = self.key.split("+", 2)
        with self.assertRaisesRegex(caracal.VerificationError, "key hash"):
            caracal.verify_inclusion(self.f["inclusion"][3], f"{name}+{int(khash, 16) ^ 1:08x}+{key}")

    @_support.needs_cryptography
    def test_tampered_consistency_proof_fails(self):
        p = copy.deepcopy(self.f["consistency"][2])
        p["proof"][0] = "11" * 32
        with self.assertRaisesRegex(caracal.VerificationError, "not a prefix"):
            caracal.verify_consistency(p, self.key)


class WithoutCryptography(unittest.TestCase):
    def setUp(self):
        self.f = load_fixture()

    def test_signature_check_says_it_needs_cryptography(self):
        with without_cryptography():
            with self.assertRaisesRegex(caracal.SignatureUnavailable, "needs the 'cryptography' package"):
                caracal.verify_inclusion(self.f["inclusion"][2], self.f["verifier_key"])

    def test_hashes_still_checked(self):
        with without_cryptography():
            r = caracal.verify_inclusion(self.f["inclusion"][2], check_signature=False)
            self.assertFalse(r.signature_checked)
            self.assertEqual(r.root.hex(), self.f["roots"]["17"])
            p = copy.deepcopy(self.f["inclusion"][2])
            p["proof"][1] = "00" * 32
            with self.assertRaisesRegex(caracal.VerificationError, "does not verify"):
                caracal.verify_inclusion(p, check_signature=False)
            caracal.verify_consistency(self.f["consistency"][0], check_signature=False)

    def test_forged_checkpoint_root_caught_by_hashes(self):
        # Without the signature only the hashes bind the proof to the root
        # the checkpoint states: a checkpoint for another root fails.
        p = copy.deepcopy(self.f["inclusion"][2])
        other_root = merkle.base64.b64encode(b"\x07" * 32).decode()
        lines = p["checkpoint"].split("\n")
        lines[2] = other_root
        p["checkpoint"] = "\n".join(lines)
        with self.assertRaisesRegex(caracal.VerificationError, "does not verify"):
            caracal.verify_inclusion(p, check_signature=False)


class CheckpointParsing(unittest.TestCase):
    def test_non_canonical_bodies_refused(self):
        root = "Ul8adIXy+SoPXmG6694xajrW1rxODhGfHs1NeXKl0lA="
        for body in ("o\n03\n%s\n" % root, "o\n+3\n%s\n" % root, "\n3\n%s\n" % root,
                     "o\n3\nUl8adIXy+SoPXmG6694xajrW1rxODhGfHs1NeXKl0lB=\n", "o\n3\n"):
            with self.subTest(body=body):
                with self.assertRaises(caracal.VerificationError):
                    merkle.parse_checkpoint(body)
        cp = merkle.parse_checkpoint("caracal/vm\n3\n%s\n" % root)
        self.assertEqual((cp.origin, cp.size), ("caracal/vm", 3))


if __name__ == "__main__":
    unittest.main()
