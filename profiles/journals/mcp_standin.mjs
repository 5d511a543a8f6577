// The MCP side of profiles/journals/make.py, with the official SDK (@modelcontextprotocol/sdk,
// installed in tests/integration/node_modules by ./dev setup).
//   node mcp_standin.mjs serve         a stateless Streamable HTTP MCP server (JSON responses) on
//                                      127.0.0.1 and a free port; prints "listening HOST:PORT"
//   node mcp_standin.mjs drive URL     an SDK client session against URL (through faultline):
//                                      initialize, tools/list, a few tools/call, one tool error
// Stateless with JSON responses so a replay needs no session id and answers each POST at once.
import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "tests", "integration", "package.json"));
async function load(spec) {
  try {
    return await import(pathToFileURL(require.resolve(spec)).href);
  } catch (e) {
    throw new Error(`${spec} not found: run ./dev setup (npm ci in tests/integration) — ${e.message}`);
  }
}
const { McpServer } = await load("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = await load("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { z } = await load("zod");

// Tools named after the seed stack's MCP server (chat, listmodels, thinkdeep).
function makeServer() {
  const s = new McpServer({ name: "seed-stack-mcp-standin", version: "1.0.0" });
  s.registerTool("listmodels", { description: "Models the providers offer", inputSchema: {} }, async () => ({
    content: [{ type: "text", text: "kimi-k2-0905-preview, kimi-k2-turbo-preview, glm-4.5-flash, glm-4.6" }],
  }));
  s.registerTool("chat", { description: "Ask a model", inputSchema: { prompt: z.string(), model: z.string().optional() } },
    async ({ prompt, model }) => {
      if (!prompt.trim()) return { isError: true, content: [{ type: "text", text: "chat: prompt is empty" }] };
      return { content: [{ type: "text", text: `(${model ?? "glm-4.5-flash"}) Stand-in answer to: ${prompt}` }] };
    });
  s.registerTool("thinkdeep", { description: "Multi-step analysis", inputSchema: { problem: z.string() } },
    async ({ problem }) => ({ content: [{ type: "text", text: `Step 1: restate "${problem}". Step 2: check the cache. Step 3: conclude.` }] }));
  return s;
}

async function serve() {
  const server = http.createServer(async (req, res) => {
    if (req.url !== "/mcp") { res.writeHead(404).end(); return; }
    if (req.method !== "POST") {  // stateless: no standalone SSE stream, no session to delete
      res.writeHead(405, { "content-type": "application/json", allow: "POST" });
      res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: "Method not allowed." }, id: null }));
      return;
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const mcp = makeServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on("close", () => { transport.close(); mcp.close(); });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, JSON.parse(Buffer.concat(chunks).toString("utf8")));
  });
  server.listen(0, "127.0.0.1", () => console.log(`listening 127.0.0.1:${server.address().port}`));
}

async function drive(url) {
  const client = new Client({ name: "seed-stack-client", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const opts = { timeout: 5000 };
  await client.listTools(undefined, opts);
  await client.callTool({ name: "listmodels", arguments: {} }, undefined, opts);
  await client.callTool({ name: "chat", arguments: { prompt: "Summarise thread:7f3a in one line", model: "kimi-k2-0905-preview" } }, undefined, opts);
  await client.callTool({ name: "thinkdeep", arguments: { problem: "Why did the stress run fail V.4?" } }, undefined, opts);
  await client.callTool({ name: "chat", arguments: { prompt: "" } }, undefined, opts);  // a tool error (isError)
  await client.close();
}

const [mode, arg] = process.argv.slice(2);
if (mode === "serve") await serve();
else if (mode === "drive" && arg) await drive(arg);
else { console.error("usage: node mcp_standin.mjs serve | drive URL"); process.exit(2); }
