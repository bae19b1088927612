// In-page verification of an inclusion proof (docs/ledger-format.md §6):
// RFC 6962 hashing and the RFC 9162 §2.1.3.2 inclusion algorithm over
// WebCrypto SHA-256, and the checkpoint's Ed25519 note signature over
// WebCrypto Ed25519. Nothing here trusts the server's own verdict.

const enc = new TextEncoder();

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) throw new Error(`not hex: ${String(hex).slice(0, 20)}…`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}
export function bytesToHex(b) { return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(""); }
export function b64ToBytes(s) { const bin = atob(s); return Uint8Array.from(bin, (c) => c.charCodeAt(0)); }
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0; for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
function equal(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
export async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
export const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
export const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

// rootFromInclusionProof is RFC 9162 §2.1.3.2: the root the audit path
// leads to from hash at index in a tree of size, or an Error.
export async function rootFromInclusionProof(index, size, hash, path, log) {
  if (!(index < size)) throw new Error(`leaf index ${index} is not below tree size ${size}`);
  let fn = index, sn = size - 1, r = hash;
  for (const [i, p] of path.entries()) {
    if (sn === 0) throw new Error(`the path is longer than the tree allows (step ${i + 1})`);
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      log?.(`step ${i + 1}: node = SHA-256(0x01 ‖ ${bytesToHex(p).slice(0, 12)}… ‖ r) = ${bytesToHex(r)}`);
      if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
    } else {
      r = await nodeHash(r, p);
      log?.(`step ${i + 1}: node = SHA-256(0x01 ‖ r ‖ ${bytesToHex(p).slice(0, 12)}…) = ${bytesToHex(r)}`);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the path is shorter than the tree needs");
  return r;
}

// parseNote splits a signed note into its body (the text signed) and its
// signature lines, and reads the checkpoint's origin, size and root.
export function parseNote(text) {
  const i = text.indexOf("\n\n");
  if (i < 0) throw new Error("checkpoint: no blank line before the signatures");
  const body = text.slice(0, i + 1);
  const lines = body.split("\n");
  if (lines.length !== 4) throw new Error(`checkpoint: want 3 body lines, got ${lines.length - 1}`);
  const [origin, sizeText, rootB64] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error(`checkpoint: bad size ${sizeText}`);
  const root = b64ToBytes(rootB64);
  if (root.length !== 32) throw new Error("checkpoint: root is not 32 bytes");
  const sigs = [];
  for (const line of text.slice(i + 2).split("\n")) {
    if (line === "") continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error(`checkpoint: bad signature line ${line.slice(0, 30)}`);
    const raw = b64ToBytes(m[2]);
    if (raw.length < 5) throw new Error("checkpoint: short signature");
    sigs.push({ name: m[1], keyHash: raw.slice(0, 4), sig: raw.slice(4) });
  }
  return { body, origin, size: Number(sizeText), root, sigs };
}

// parseVerifierKey reads a note verifier key, name+hash+base64(0x01 ‖ key),
// and checks that its hash is SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4].
export async function parseVerifierKey(vkey) {
  // The base64 key may itself hold "+": split at the first two only.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  if (!m) throw new Error("verifier key: want name+hash+key");
  const parts = m.slice(1);
  const raw = b64ToBytes(parts[2]);
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("verifier key: not an Ed25519 key (0x01 ‖ 32 bytes)");
  const want = (await sha256(concat(enc.encode(parts[0] + "\n"), raw))).slice(0, 4);
  if (bytesToHex(want) !== parts[1]) throw new Error("verifier key: its hash does not match its name and key");
  return { name: parts[0], keyHash: want, pub: raw.slice(1) };
}

// leafEventID reads field 1 (the event ID) of a version-1 leaf.
function leafEventID(leaf) {
  if (leaf[0] !== 1) throw new Error(`leaf: version ${leaf[0]}, want 1`);
  const n = new DataView(leaf.buffer, leaf.byteOffset).getUint32(1);
  return new TextDecoder().decode(leaf.slice(5, 5 + n));
}

// verifyInclusion checks proof (the JSON of GET /v1/merkle/proofs/inclusion)
// against the verifier key, calling step(ok, text) for every check.
// It returns true only if every check passed.
export async function verifyInclusion(proof, vkeyText, eventID, step) {
  let all = true;
  const check = (ok, text) => { step(ok, text); if (!ok) all = false; return ok; };
  try {
    check(proof.format === "caracal-inclusion-proof/v1", `format is ${proof.format}`);
    const note = parseNote(proof.checkpoint);
    step(true, `checkpoint of log "${note.origin}", size ${note.size}, root ${bytesToHex(note.root)}`);
    const vkey = await parseVerifierKey(vkeyText);
    step(true, `verifier key ${vkey.name}+${bytesToHex(vkey.keyHash)}: its hash matches its name and public key`);
    const sig = note.sigs.find((s) => s.name === vkey.name && equal(s.keyHash, vkey.keyHash));
    if (check(!!sig, sig ? "the checkpoint carries a signature by this key" : "no signature line by this key")) {
      const key = await crypto.subtle.importKey("raw", vkey.pub, { name: "Ed25519" }, false, ["verify"]);
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, sig.sig, enc.encode(note.body));
      check(ok, ok ? "Ed25519 signature over the checkpoint body verifies" : "Ed25519 signature does NOT verify");
    }
    check(proof.tree_size === note.size, `proof tree size ${proof.tree_size} ${proof.tree_size === note.size ? "equals" : "differs from"} the checkpoint size ${note.size}`);
    const leaf = hexToBytes(proof.leaf);
    const id = leafEventID(leaf);
    check(!eventID || id === eventID, `the leaf (${leaf.length} bytes) encodes event ${id}`);
    const lh = await leafHash(leaf);
    check(bytesToHex(lh) === proof.leaf_hash, `leaf hash SHA-256(0x00 ‖ leaf) = ${bytesToHex(lh)} ${bytesToHex(lh) === proof.leaf_hash ? "matches" : "does NOT match"} the proof's ${proof.leaf_hash}`);
    const path = proof.proof.map(hexToBytes);
    const root = await rootFromInclusionProof(proof.leaf_index, proof.tree_size, lh, path, (t) => step(true, t));
    check(equal(root, note.root), `computed root ${bytesToHex(root)} ${equal(root, note.root) ? "equals" : "does NOT equal"} the signed root`);
  } catch (e) {
    check(false, e.message);
  }
  return all;
}
