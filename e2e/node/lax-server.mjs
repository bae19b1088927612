// lax-server.mjs is a deliberately lax MCP stdio server: it runs every
// tools/call it receives, whatever its id (none, null, an object), and
// appends the tool's name to the file named by LAX_LOG, so that a test
// can count the calls that really ran. "hang" never answers.
import { appendFileSync } from "node:fs";
import { createInterface } from "node:readline";

const log = process.env.LAX_LOG;
const send = (m) => process.stdout.write(JSON.stringify(m) + "\n");
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const id = "id" in msg ? msg.id : null;
  switch (msg.method) {
    case "initialize":
      send({ jsonrpc: "2.0", id, result: { protocolVersion: msg.params?.protocolVersion ?? "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "lax", version: "1" } } });
      break;
    case "ping":
      send({ jsonrpc: "2.0", id, result: {} });
      break;
    case "tools/list":
      send({ jsonrpc: "2.0", id, result: { tools: [{ name: "paid", inputSchema: { type: "object" } }, { name: "hang", inputSchema: { type: "object" } }] } });
      break;
    case "tools/call":
      if (log) appendFileSync(log, msg.params?.name + "\n");
      if (msg.params?.name !== "hang") {
        send({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text: "ran " + msg.params?.name }] } });
      }
      break;
  }
});
