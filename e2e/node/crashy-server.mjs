// crashy-server.mjs is an MCP stdio server (official SDK) whose "crash" tool
// kills the process mid-call, for testing supervision and restarts.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const server = new McpServer({ name: "crashy", version: "1.0.0" });
server.registerTool("ok", { description: "answers ok" }, async () => ({ content: [{ type: "text", text: "ok" }] }));
server.registerTool("crash", { description: "exits mid-call" }, async () => {
  process.stderr.write("crashy: exiting mid-call\n");
  process.exit(7);
});
await server.connect(new StdioServerTransport());
process.stderr.write("crashy: started\n");
