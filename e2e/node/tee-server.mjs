// tee-server.mjs runs an MCP stdio server as a child and appends the name
// of every tools/call it forwards to the file named by $TEE_LOG, so a test
// can prove which calls reached the server.
// Usage: TEE_LOG=calls.log node tee-server.mjs COMMAND ARGS...
import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { createInterface } from "node:readline";

const [cmd, ...args] = process.argv.slice(2);
const child = spawn(cmd, args, { stdio: ["pipe", "inherit", "inherit"] });
child.on("exit", (code) => process.exit(code ?? 1));
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  try {
    const m = JSON.parse(line);
    if (m.method === "tools/call") appendFileSync(process.env.TEE_LOG, m.params.name + "\n");
  } catch {}
  child.stdin.write(line + "\n");
});
rl.on("close", () => child.stdin.end());
