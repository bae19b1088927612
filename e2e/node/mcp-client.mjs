// mcp-client.mjs drives an MCP server with the official TypeScript SDK
// client and prints a JSON transcript of everything it saw, so a Go test can
// compare a direct connection with one through `caracal mcp`.
//
// Usage: node mcp-client.mjs '<json config>'
//   transport: "stdio" (command, args, env) or "http" (url, headers)
//   scenario:  "everything" | "calls" (tool, toolArgs, n: sequential calls)
//              | "concurrent" (tool, toolArgs, n: parallel calls)
//   expectPrice: check that every listed tool carries _meta["dev.caracal/price"],
//                then remove it so transcripts compare equal
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  EmptyResultSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const cfg = JSON.parse(process.argv[2]);
const PRICE = "dev.caracal/price";

function transport() {
  if (cfg.transport === "http") {
    return new StreamableHTTPClientTransport(new URL(cfg.url), {
      requestInit: { headers: cfg.headers ?? {} },
    });
  }
  return new StdioClientTransport({
    command: cfg.command,
    args: cfg.args ?? [],
    env: { ...process.env, ...(cfg.env ?? {}) },
    stderr: "inherit",
  });
}

// gen makes a value that satisfies a JSON schema, preferring defaults.
function gen(schema) {
  if (!schema || typeof schema !== "object") return "test";
  if (schema.default !== undefined) return schema.default;
  if (schema.const !== undefined) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (Array.isArray(schema.anyOf)) return gen(schema.anyOf[0]);
  switch (schema.type) {
    case "string":
      return schema.format === "uri" || schema.format === "url" ? "https://example.com/page" : "test";
    case "number":
    case "integer":
      return schema.minimum ?? 1;
    case "boolean":
      return false;
    case "array":
      return [];
    case "object": {
      const out = {};
      for (const [k, v] of Object.entries(schema.properties ?? {})) {
        if ((schema.required ?? []).includes(k)) out[k] = gen(v);
      }
      return out;
    }
  }
  return "test";
}

// Arguments that keep the run fast and offline.
const overrides = {
  "gzip-file-as-resource": { name: "hello.txt.gz", data: "data:text/plain;base64,aGVsbG8gd29ybGQ=" },
  "trigger-long-running-operation": { duration: 1, steps: 3 },
  "trigger-sampling-request": { prompt: "Say hi", maxTokens: 10 },
  echo: { message: "hello through caracal" },
  "trigger-url-elicitation": { url: "https://example.com/page", elicitationId: "e2e-elicitation" },
  "get-sum": { a: 2, b: 40 },
};

const seen = { logging: 0, roots: 0, sampling: 0, elicitation: 0 };

function newClient() {
  const client = new Client(
    { name: "caracal-e2e", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    seen.sampling++;
    return { model: "e2e-model", role: "assistant", content: { type: "text", text: "sampled reply" }, stopReason: "endTurn" };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    seen.elicitation++;
    if (req.params.mode === "url") return { action: "accept" };
    return { action: "accept", content: gen(req.params.requestedSchema) };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    seen.roots++;
    return { roots: [{ uri: "file:///tmp/e2e", name: "e2e" }] };
  });
  client.setNotificationHandler(LoggingMessageNotificationSchema, async () => {
    seen.logging++;
  });
  return client;
}

async function listAll(fn, field) {
  const out = [];
  let cursor;
  let pages = 0;
  do {
    const r = await fn(cursor ? { cursor } : {});
    out.push(...r[field]);
    cursor = r.nextCursor;
    pages++;
  } while (cursor && pages < 100);
  return out;
}

const errorOf = (e) => ({ error: { code: e.code ?? null, message: String(e.message ?? e) } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stripPrice(tools) {
  const missing = [];
  for (const t of tools) {
    const p = t._meta?.[PRICE];
    if (cfg.expectPrice) {
      if (!p || typeof p.price !== "string" || typeof p.currency !== "string" || typeof p.unpriced !== "boolean") {
        missing.push(t.name);
      }
      delete t._meta[PRICE];
      if (t._meta && Object.keys(t._meta).length === 0) delete t._meta;
    } else if (p) {
      missing.push(t.name + " (price present on a direct connection)");
    }
  }
  return { missing, prices: cfg.expectPrice ? Object.fromEntries(tools.map((t) => [t.name, null])) : undefined };
}

async function everything(client) {
  const t = {};
  // server-everything asks for roots 350 ms after initialisation.
  await sleep(600);
  t.serverVersion = client.getServerVersion();
  t.serverCapabilities = client.getServerCapabilities();
  t.instructions = client.getInstructions();
  t.ping = await client.ping();
  const listed = await listAll((p) => client.listTools(p), "tools");
  const prices = {};
  for (const tool of listed) prices[tool.name] = tool._meta?.[PRICE] ?? null;
  t.priceCheck = stripPrice(listed).missing;
  listed.sort((a, b) => a.name.localeCompare(b.name));
  t.tools = listed;
  t.calls = {};
  let calls = 0;
  const progress = [];
  for (const tool of listed) {
    if (tool.execution?.taskSupport === "required") {
      // A plain tools/call is refused by the SDK client itself.
      t.calls[tool.name] = { skipped: "taskSupport required" };
      continue;
    }
    const args = overrides[tool.name] ?? gen(tool.inputSchema);
    try {
      const opts = tool.name === "trigger-long-running-operation" ? { onprogress: (p) => progress.push(p), resetTimeoutOnProgress: true } : {};
      calls++;
      let r = await client.callTool({ name: tool.name, arguments: args }, undefined, opts);
      if (tool.name === "get-env") r = { ...r, content: r.content.map((c) => ({ type: c.type, text: "<environment>" })) };
      t.calls[tool.name] = r;
    } catch (e) {
      t.calls[tool.name] = errorOf(e);
    }
  }
  t.progress = progress;
  t.resources = await listAll((p) => client.listResources(p), "resources");
  t.resourceTemplates = await listAll((p) => client.listResourceTemplates(p), "resourceTemplates");
  t.reads = {};
  for (const r of t.resources.slice(0, 6)) {
    try {
      t.reads[r.uri] = await client.readResource({ uri: r.uri });
    } catch (e) {
      t.reads[r.uri] = errorOf(e);
    }
  }
  try {
    t.subscribe = await client.subscribeResource({ uri: t.resources[0].uri });
    t.unsubscribe = await client.unsubscribeResource({ uri: t.resources[0].uri });
  } catch (e) {
    t.subscribe = errorOf(e);
  }
  t.prompts = await listAll((p) => client.listPrompts(p), "prompts");
  t.promptGets = {};
  for (const p of t.prompts) {
    const args = {};
    for (const a of p.arguments ?? []) if (a.required) args[a.name] = a.name === "resourceId" ? "1" : "test";
    try {
      t.promptGets[p.name] = await client.getPrompt({ name: p.name, arguments: args });
    } catch (e) {
      t.promptGets[p.name] = errorOf(e);
    }
  }
  try {
    t.setLevel = await client.setLoggingLevel("debug");
  } catch (e) {
    t.setLevel = errorOf(e);
  }
  const unknown = await client.request({ method: "caracal/unknown-method", params: {} }, EmptyResultSchema).catch(errorOf);
  t.unknownMethod = unknown;
  // toggle-simulated-logging was called above; give its first messages time.
  for (let i = 0; i < 40 && seen.logging === 0; i++) await sleep(50);
  return { transcript: t, calls, seen, prices };
}

async function calls(client, parallel) {
  const one = async (i) => {
    try {
      return await client.callTool({ name: cfg.tool, arguments: { ...(cfg.toolArgs ?? {}) } });
    } catch (e) {
      return errorOf(e);
    }
  };
  const results = [];
  if (parallel) {
    results.push(...(await Promise.all(Array.from({ length: cfg.n }, (_, i) => one(i)))));
  } else {
    for (let i = 0; i < cfg.n; i++) results.push(await one(i));
  }
  return { results, calls: cfg.n };
}

const client = newClient();
const tr = transport();
await client.connect(tr);
let out;
switch (cfg.scenario) {
  case "everything":
    out = await everything(client);
    break;
  case "calls":
    out = await calls(client, false);
    break;
  case "concurrent":
    out = await calls(client, true);
    break;
  default:
    throw new Error("unknown scenario " + cfg.scenario);
}
if (cfg.transport === "http" && tr.sessionId) {
  out.sessionId = tr.sessionId;
  await tr.terminateSession().catch(() => {});
}
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
