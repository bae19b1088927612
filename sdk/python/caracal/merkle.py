"""Offline verification of Caracal's Merkle proofs (docs/ledger-format.md).

Hashing is RFC 6962's (leaf = SHA-256(0x00 || leaf), node = SHA-256(0x01
|| left || right)); inclusion proofs are checked with the algorithm of RFC
9162 section 2.1.3.2, consistency proofs with that of section 2.1.4.2.
Checkpoints are C2SP signed notes with Ed25519 signatures, checked with
the `cryptography` package when it is installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

INCLUSION_FORMAT = "caracal-inclusion-proof/v1"
CONSISTENCY_FORMAT = "caracal-consistency-proof/v1"
EMPTY_ROOT = hashlib.sha256(b"").digest()
_ED25519 = 0x01  # the note signature algorithm byte of Ed25519


class VerificationError(Exception):
    """A proof, checkpoint or signature does not verify, or is malformed."""


class SignatureUnavailable(VerificationError):
    """The checkpoint signature could not be checked: `cryptography` is missing."""


# -- RFC 6962 hashing ------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, size: int, leaf_hash_: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2).

    Raises VerificationError when the proof has the wrong length for the
    leaf's position, as the RFC's algorithm requires.
    """
    if not 0 <= index < size:
        raise VerificationError(f"leaf_index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf_hash_
    for p in proof:
        if sn == 0:
            raise VerificationError("the proof is longer than the path from the leaf to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the proof is shorter than the path from the leaf to the root")
    return r


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of the leaves (their bytes, not their hashes)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def check_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Checks an RFC 9162 section 2.1.4.2 consistency proof; raises VerificationError."""
    fail = VerificationError(
        f"the tree of size {old_size} (root {old_root.hex()}) is not a prefix of the tree of size "
        f"{new_size} (root {new_root.hex()}): the proof does not verify")
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"old size {old_size} is not within [0, {new_size}]")
    if old_size == 0:
        if old_root != EMPTY_ROOT or proof:
            raise fail
        return
    if old_size == new_size:
        if old_root != new_root or proof:
            raise fail
        return
    if not proof:
        raise fail
    path = list(proof)
    # When old_size is a power of two the old root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise fail


# -- leaves ----------------------------------------------------------------


@dataclass
class Leaf:
    """Every field of one ledger event as hashed into the tree (leaf version 1)."""

    id: str
    time_ns: int
    agent_id: str
    agent_name: str
    chain: List[str]
    resource: str
    operation: str
    quantity: str
    unit: str
    amount_nanos: int
    currency: str
    request_id: str
    outcome: str
    code: str
    reason: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    upstream: str
    unpriced: bool

    @property
    def amount(self) -> Decimal:
        """The amount in units of the currency, exact."""
        return Decimal(self.amount_nanos).scaleb(-9)

    @property
    def time(self) -> datetime:
        """The event's time (UTC), truncated to microseconds."""
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=self.time_ns // 1000)


class _Reader:
    def __init__(self, b: bytes):
        self.b, self.i = b, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.b):
            raise VerificationError("leaf: truncated")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def str(self) -> str:
        try:
            return self.take(self.u32()).decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError("leaf: a string is not UTF-8") from None


def decode_leaf(b: bytes) -> Leaf:
    """Decodes the canonical leaf bytes (docs/ledger-format.md section 1).

    Refuses another version byte, truncated input and trailing bytes.
    """
    r = _Reader(b)
    if r.take(1) != b"\x01":
        raise VerificationError(f"leaf: version byte {b[:1].hex() or 'missing'}, want 01")
    lid, t, agent_id, agent_name = r.str(), r.i64(), r.str(), r.str()
    chain = [r.str() for _ in range(r.u32())]
    resource, operation, quantity, unit = r.str(), r.str(), r.str(), r.str()
    amount, currency, request_id, outcome, code, reason = r.i64(), r.str(), r.str(), r.str(), r.str(), r.str()
    tokens = [r.i64() for _ in range(5)]
    upstream = r.str()
    flag = r.take(1)
    if flag not in (b"\x00", b"\x01"):
        raise VerificationError(f"leaf: unpriced byte {flag.hex()}, want 00 or 01")
    if r.i != len(b):
        raise VerificationError(f"leaf: {len(b) - r.i} trailing bytes")
    return Leaf(lid, t, agent_id, agent_name, chain, resource, operation, quantity, unit, amount, currency,
                request_id, outcome, code, reason, *tokens, upstream, flag == b"\x01")


# -- checkpoints and signed notes ---------------------------------------------


@dataclass
class VerifierKey:
    """A note verifier key: ``<name>+<key hash, 8 hex>+<base64(0x01 || Ed25519 public key)>``."""

    name: str
    key_hash: int
    public_key: bytes

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.key_hash:08x}"

    @classmethod
    def parse(cls, vkey: str) -> "VerifierKey":
        text = vkey.strip()
        # The name holds no '+'; the base64 key may.
        parts = text.split("+", 2)
        if len(parts) != 3 or not parts[0]:
            raise VerificationError(f"public key {text!r}: want <name>+<hash>+<key>")
        name, hash_hex, key_b64 = parts
        try:
            key_hash = int(hash_hex, 16)
            raw = base64.b64decode(key_b64, validate=True)
        except (ValueError, binascii.Error):
            raise VerificationError(f"public key {text!r}: malformed") from None
        if len(hash_hex) != 8 or len(raw) != 33 or raw[0] != _ED25519:
            raise VerificationError(f"public key {text!r}: not an Ed25519 note verifier key")
        if _key_hash(name, raw) != key_hash:
            raise VerificationError(f"public key {text!r}: the key hash does not match the key")
        return cls(name, key_hash, raw[1:])


def _key_hash(name: str, alg_and_key: bytes) -> int:
    return struct.unpack(">I", hashlib.sha256(name.encode("utf-8") + b"\n" + alg_and_key).digest()[:4])[0]


@dataclass
class CheckpointBody:
    """A C2SP tlog-checkpoint: the log's origin, the tree size and the root hash."""

    origin: str
    size: int
    root: bytes
    #: The verifier key IDs whose signatures were checked (empty when unchecked).
    signed_by: List[str] = field(default_factory=list)


def parse_checkpoint(text: str) -> CheckpointBody:
    """Parses a checkpoint body (canonical size and root, as the Go parser requires)."""
    lines = text.split("\n")
    if len(lines) < 4:
        raise VerificationError("checkpoint: want at least origin, size and root lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not origin:
        raise VerificationError("checkpoint: empty origin")
    if not size_s.isdigit() or not size_s.isascii() or str(int(size_s)) != size_s:
        raise VerificationError(f"checkpoint: bad size {size_s!r}")
    try:
        root = base64.b64decode(root_s, validate=True)
    except binascii.Error:
        raise VerificationError(f"checkpoint: bad root hash {root_s!r}") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_s:
        raise VerificationError(f"checkpoint: bad root hash {root_s!r}")
    return CheckpointBody(origin, int(size_s), root)


def _split_note(note: str) -> Tuple[str, List[Tuple[str, bytes]]]:
    """Splits a signed note into its text and its (key name, signature blob) lines."""
    if not note.endswith("\n"):
        raise VerificationError("checkpoint note: does not end in a newline")
    i = note.rfind("\n\n")
    if i < 0:
        raise VerificationError("checkpoint note: no signatures")
    text, sigs = note[:i + 1], note[i + 2:]
    out = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise VerificationError(f"checkpoint note: malformed signature line {line!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2 or not parts[0]:
            raise VerificationError(f"checkpoint note: malformed signature line {line!r}")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise VerificationError(f"checkpoint note: malformed signature line {line!r}") from None
        if len(blob) < 5:
            raise VerificationError(f"checkpoint note: malformed signature line {line!r}")
        out.append((parts[0], blob))
    return text, out


def _ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise SignatureUnavailable(
            "verifying a checkpoint's Ed25519 signature needs the 'cryptography' package "
            "(Debian: apt-get install python3-cryptography; elsewhere: pip install cryptography); "
            "pass check_signature=False to check only the hashes") from None
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except InvalidSignature:
        return False


KeysLike = Union[str, VerifierKey, Iterable[Union[str, VerifierKey]], None]


def _keys(verifier_key: KeysLike) -> List[VerifierKey]:
    if verifier_key is None:
        return []
    items = [verifier_key] if isinstance(verifier_key, (str, VerifierKey)) else list(verifier_key)
    return [k if isinstance(k, VerifierKey) else VerifierKey.parse(k) for k in items]


def open_checkpoint(note: str, verifier_key: KeysLike, check_signature: bool = True) -> CheckpointBody:
    """Verifies a signed checkpoint note with the trusted key(s) and parses its body.

    At least one signature must be by a trusted key and every signature by
    a trusted key must verify; signatures by other keys are ignored, as
    C2SP signed notes specify. With check_signature=False only the body is
    parsed.
    """
    text, sigs = _split_note(note)
    body = parse_checkpoint(text)
    if not check_signature:
        return body
    keys = _keys(verifier_key)
    if not keys:
        raise VerificationError("no public key given to check the checkpoint's signature with")
    for name, blob in sigs:
        khash = struct.unpack(">I", blob[:4])[0]
        for k in keys:
            if k.name == name and k.key_hash == khash:
                if not _ed25519_verify(k.public_key, blob[4:], text.encode("utf-8")):
                    raise VerificationError(f"checkpoint: signature does not verify with key {k.key_id}")
                body.signed_by.append(k.key_id)
    if not body.signed_by:
        names = ", ".join(f"{n}+{struct.unpack('>I', b[:4])[0]:08x}" for n, b in sigs)
        raise VerificationError(f"checkpoint: signature does not verify: signed by unknown key {names} (trusted: {', '.join(k.key_id for k in keys)})")
    return body


# -- proof documents -------------------------------------------------------


def _doc(proof_json: Union[str, bytes, Mapping[str, Any]]) -> Mapping[str, Any]:
    if isinstance(proof_json, Mapping):
        return proof_json
    try:
        doc = json.loads(proof_json)
    except ValueError as e:
        raise VerificationError(f"not a proof document: {e}") from None
    if not isinstance(doc, dict):
        raise VerificationError("not a proof document: want a JSON object")
    return doc


def _hash(v: Any, what: str) -> bytes:
    try:
        if not isinstance(v, str):
            raise ValueError
        b = bytes.fromhex(v)
    except ValueError:
        raise VerificationError(f"{what}: {v!r} is not a 32-byte hex hash") from None
    if len(b) != 32:
        raise VerificationError(f"{what}: {v!r} is not a 32-byte hex hash")
    return b


def _int(doc: Mapping[str, Any], key: str) -> int:
    v = doc.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise VerificationError(f"{key}: want an integer, got {v!r}")
    return v


def _hashes(doc: Mapping[str, Any]) -> List[bytes]:
    proof = doc.get("proof")
    if not isinstance(proof, list):
        raise VerificationError("proof: want a list of hashes")
    return [_hash(h, f"proof hash {i}") for i, h in enumerate(proof)]


@dataclass
class InclusionResult:
    """A verified inclusion proof: the event (leaf) is in the tree of the checkpoint."""

    origin: str
    tree_size: int
    root: bytes
    leaf_index: int
    leaf_hash: bytes
    #: The decoded event, when the proof carries the leaf bytes.
    leaf: Optional[Leaf]
    event_id: Optional[str]
    #: Whether the checkpoint's signature was checked, and by which key.
    signature_checked: bool
    signed_by: List[str] = field(default_factory=list)


def verify_inclusion(proof_json: Union[str, bytes, Mapping[str, Any]], verifier_key: KeysLike = None, *,
                     check_signature: bool = True) -> InclusionResult:
    """Verifies an inclusion proof (`caracal merkle prove`, GET /v1/merkle/proofs/inclusion) offline.

    verifier_key is the log's note verifier key (`caracal keys
    export-public`), or several. Checks the checkpoint's Ed25519 signature
    (needs `cryptography`; check_signature=False skips it), that tree_size
    is the checkpoint's size, that the leaf bytes hash to leaf_hash, and
    that the audit path leads from the leaf to the checkpoint's root.
    Raises VerificationError (SignatureUnavailable without `cryptography`).
    """
    doc = _doc(proof_json)
    if doc.get("format") != INCLUSION_FORMAT:
        raise VerificationError(f"format {doc.get('format')!r}: want {INCLUSION_FORMAT!r}")
    note = doc.get("checkpoint")
    if not isinstance(note, str):
        raise VerificationError("checkpoint: want the signed note")
    cp = open_checkpoint(note, verifier_key, check_signature)
    size, index = _int(doc, "tree_size"), _int(doc, "leaf_index")
    if cp.size != size:
        raise VerificationError(f"tree_size {size} but the checkpoint is for size {cp.size}")
    if not 0 <= index < size:
        raise VerificationError(f"leaf_index {index} is outside a tree of size {size}")
    lh = _hash(doc.get("leaf_hash"), "leaf_hash")
    leaf = None
    if doc.get("leaf"):
        try:
            raw = bytes.fromhex(doc["leaf"])
        except (TypeError, ValueError):
            raise VerificationError("leaf: not hex") from None
        if leaf_hash(raw) != lh:
            raise VerificationError("leaf bytes do not hash to leaf_hash")
        leaf = decode_leaf(raw)
    root = root_from_inclusion_proof(index, size, lh, _hashes(doc))
    if root != cp.root:
        raise VerificationError(f"leaf {index} is not in the tree of size {size} with root {cp.root.hex()}: the proof does not verify")
    event_id = leaf.id if leaf else doc.get("event_id")
    return InclusionResult(cp.origin, size, cp.root, index, lh, leaf, event_id, check_signature, list(cp.signed_by))


@dataclass
class ConsistencyResult:
    """A verified consistency proof: the newer tree extends the older."""

    origin: str
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    signature_checked: bool


def verify_consistency(proof_json: Union[str, bytes, Mapping[str, Any]], verifier_key: KeysLike = None, *,
                       check_signature: bool = True) -> ConsistencyResult:
    """Verifies a consistency proof (`caracal merkle consistency`) offline."""
    doc = _doc(proof_json)
    if doc.get("format") != CONSISTENCY_FORMAT:
        raise VerificationError(f"format {doc.get('format')!r}: want {CONSISTENCY_FORMAT!r}")
    notes = []
    for key in ("old_checkpoint", "new_checkpoint"):
        if not isinstance(doc.get(key), str):
            raise VerificationError(f"{key}: want the signed note")
        try:
            notes.append(open_checkpoint(doc[key], verifier_key, check_signature))
        except SignatureUnavailable:
            raise
        except VerificationError as e:
            raise VerificationError(f"{key}: {e}") from None
    old, cur = notes
    old_size, new_size = _int(doc, "old_size"), _int(doc, "new_size")
    if old.size != old_size or cur.size != new_size:
        raise VerificationError(f"sizes {old_size} → {new_size} do not match the checkpoints' {old.size} → {cur.size}")
    if old.origin != cur.origin:
        raise VerificationError(f"checkpoints come from different logs: {old.origin!r} and {cur.origin!r}")
    check_consistency(old.size, cur.size, old.root, cur.root, _hashes(doc))
    return ConsistencyResult(cur.origin, old.size, cur.size, old.root, cur.root, check_signature)
