// Runs the page's verifier (assets/merkle.js) under Node's WebCrypto on the
// cases a Go test writes to the file named by argv[2], and prints one line
// of JSON per case: {"name", "ok", "failed": [step texts that failed]}.
import { readFileSync } from "node:fs";
import { verifyInclusion } from "../assets/merkle.js";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const c of cases) {
  const failed = [];
  const ok = await verifyInclusion(c.proof, c.key, c.event_id, (pass, text) => { if (!pass) failed.push(text); });
  console.log(JSON.stringify({ name: c.name, ok, failed }));
}
