// v2-client.mjs drives an MCP server with the official TypeScript SDK's v2
// client (@modelcontextprotocol/client) and prints a JSON summary.
//
// Usage: node v2-client.mjs '<json config>'
//   transport: "stdio" (command, args, env) or "http" (url, headers)
//   mode:      "pin" (2026-07-28 only) or "auto" (probe, fall back to 2025)
//   tool, toolArgs, n: call tool n times after listing tools
//   answer:    the elicitation answer for multi-round calls (accept | decline)
//   skipList:  call without listing tools first
//   calls:     [{tool, toolArgs}] called in order instead of tool/n
//   discover:  record server/discover's serverInfo name and capabilities
//   listen:    a subscriptions/listen filter opened before the calls; then
//              wait for expectChanges notifications/tools/list_changed
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
  if (cfg.discover) {
    out.serverName = client.getServerVersion?.()?.name ?? null;
    out.capabilities = client.getServerCapabilities?.() ?? null;
  }
  let sub;
  let changes = 0;
  let changed;
  const enough = new Promise((resolve) => (changed = resolve));
  if (cfg.listen) {
    client.setNotificationHandler("notifications/tools/list_changed", () => {
      if (++changes >= (cfg.expectChanges ?? 1)) changed();
    });
    sub = await client.listen(cfg.listen);
    out.honored = sub.honoredFilter;
  }
  const calls = cfg.calls ?? Array.from({ length: cfg.n ?? 1 }, () => ({ tool: cfg.tool, toolArgs: cfg.toolArgs }));
  for (const c of calls) {
    try {
      const r = await client.callTool({ name: c.tool ?? "echo", arguments: c.toolArgs ?? {} });
      out.results.push({ isError: r.isError ?? false, text: r.content?.[0]?.text ?? null, structuredContent: r.structuredContent ?? null });
    } catch (e) {
      out.results.push({ thrown: String(e?.message ?? e) });
    }
  }
  if (sub) {
    await Promise.race([enough, new Promise((r) => setTimeout(r, 20000))]);
    out.changes = changes;
    await sub.close();
    out.closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("timeout"), 5000))]);
  }
} catch (e) {
  out.error = String(e?.stack ?? e);
}
await client.close().catch(() => {});
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
