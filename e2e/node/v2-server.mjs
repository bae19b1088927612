// v2-server.mjs is an MCP server built with the official TypeScript SDK's
// v2 line (@modelcontextprotocol/server), serving both protocol eras: a
// 2026-07-28 client gets resultType, cache hints and serverInfo in every
// result, and multi-round-trip tool calls.
//
// Usage: node v2-server.mjs stdio | http   (http listens on $PORT, path /mcp)
// Tools: echo (returns its message), ask (asks the client to confirm with an
// input_required round, then answers "accept" or "decline").
import http from "node:http";
import { McpServer, createMcpHandler, inputRequired } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";

function factory() {
  const server = new McpServer({ name: "V2 Server", version: "2.4.0" }, { capabilities: { tools: {} } });
  // With V2_PRICED set, echo declares its price for trusted proxies.
  const echoMeta = process.env.V2_PRICED ? { _meta: { "dev.caracal/price": { price: "0.03", currency: "USD" } } } : {};
  server.registerTool("echo", { description: "Echoes", ...echoMeta }, async () => ({ content: [{ type: "text", text: "echo" }] }));
  server.registerTool("ask", { description: "Asks for confirmation first" }, async (...a) => {
    const ctx = a[a.length - 1];
    const answer = ctx?.mcpReq?.inputResponses?.confirm;
    if (!answer) {
      return inputRequired({
        inputRequests: {
          confirm: inputRequired.elicit({
            message: "Go ahead?",
            requestedSchema: { type: "object", properties: { ok: { type: "boolean" } } },
          }),
        },
      });
    }
    return { content: [{ type: "text", text: String(answer.action) }] };
  });
  return server;
}

if (process.argv[2] === "http") {
  const handler = createMcpHandler(factory);
  http
    .createServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = Buffer.concat(chunks);
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers: req.headers,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
      });
      const response = await handler.fetch(request);
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (response.body) {
        for await (const c of response.body) res.write(c);
      }
      res.end();
    })
    .listen(Number(process.env.PORT), "127.0.0.1");
} else {
  serveStdio(factory);
}
