// v2-client.mjs drives an MCP server with the official TypeScript SDK's v2
// client (@modelcontextprotocol/client) and prints a JSON summary.
//
// Usage: node v2-client.mjs '<json config>'
//   transport: "stdio" (command, args, env) or "http" (url, headers)
//   mode:      "pin" (2026-07-28 only) or "auto" (probe, fall back to 2025)
//   tool, toolArgs, n: call tool n times after listing tools
//   answer:    the elicitation answer for multi-round calls (accept | decline)
//   skipList:  call without listing tools first
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

const cfg = JSON.parse(process.argv[2]);

function transport() {
  if (cfg.transport === "http") {
    return new StreamableHTTPClientTransport(new URL(cfg.url), { requestInit: { headers: cfg.headers ?? {} } });
  }
  return new StdioClientTransport({
    command: cfg.command,
    args: cfg.args ?? [],
    env: { ...process.env, ...(cfg.env ?? {}) },
    stderr: "inherit",
  });
}

const client = new Client(
  { name: "caracal-e2e-v2", version: "1.0.0" },
  {
    capabilities: { elicitation: {} },
    versionNegotiation: { mode: cfg.mode === "auto" ? "auto" : { pin: "2026-07-28" } },
  },
);
client.setRequestHandler("elicitation/create", async () =>
  cfg.answer === "decline" ? { action: "decline" } : { action: "accept", content: { ok: true } },
);

const out = { results: [] };
try {
  await client.connect(transport());
  out.protocolVersion = client.getNegotiatedProtocolVersion?.() ?? null;
  if (!cfg.skipList) {
    const tools = await client.listTools();
    out.tools = tools.tools.map((t) => ({ name: t.name, price: t._meta?.["dev.caracal/price"] ?? null }));
  }
  for (let i = 0; i < (cfg.n ?? 1); i++) {
    try {
      const r = await client.callTool({ name: cfg.tool ?? "echo", arguments: cfg.toolArgs ?? {} });
      out.results.push({ isError: r.isError ?? false, text: r.content?.[0]?.text ?? null, structuredContent: r.structuredContent ?? null });
    } catch (e) {
      out.results.push({ thrown: String(e?.message ?? e) });
    }
  }
} catch (e) {
  out.error = String(e?.stack ?? e);
}
await client.close().catch(() => {});
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
