// Replay round trip with the official MCP TypeScript SDK (@modelcontextprotocol/sdk v1,
// Streamable HTTP, stateful sessions): an SDK Client <-> SDK McpServer session (initialize,
// notifications/initialized, tools/list, tools/call with server log notifications in the
// call's SSE stream, the same call twice, DELETE to end the session) is recorded through a
// faultline `mcp` proxy (`serve --record`). Then:
//   (a) `faultline replay server` on the journal serves a real SDK Client, with no MCP server
//       running: the client gets exactly what it got when recording, nothing unmatched;
//   (b) `faultline replay client` drives a fresh real SDK server: zero divergences, although
//       the new server issues another Mcp-Session-Id (the replayer sends the live one);
//   and the comparison can fail: against a server whose `add` is wrong, (b) reports it.
// Run: node --test tests/integration/node/mcp_replay.test.mjs
// Needs tests/integration/node_modules (./dev setup) and the binary (FAULTLINE_BIN or
// build/faultline). Loopback only, port 0 everywhere, every wait bounded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { BIN, mcpSessionHandler, portOf, startWithPortFile, stopChild } from "./harness.mjs";

let Client, StreamableHTTPClientTransport, McpServer, StreamableHTTPServerTransport;
let isInitializeRequest, LoggingMessageNotificationSchema, z;
try {
  ({ Client } = await import("@modelcontextprotocol/sdk/client/index.js"));
  ({ StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js"));
  ({ McpServer } = await import("@modelcontextprotocol/sdk/server/mcp.js"));
  ({ StreamableHTTPServerTransport } = await import("@modelcontextprotocol/sdk/server/streamableHttp.js"));
  ({ isInitializeRequest, LoggingMessageNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js"));
  ({ z } = await import("zod"));
} catch (e) {
  throw new Error(`@modelcontextprotocol/sdk not installed: run ./dev setup ` +
                  `(npm install in tests/integration) — ${e.message}`);
}

const CALL = { timeout: 10000 };  // every SDK request is bounded (the SDK's default is 60 s)
const CALLS = [
  ["echo", { text: "hello, replay" }],
  ["add", { a: 2, b: 3 }],
  ["listmodels", {}],
  ["countdown", { from: 3 }],
  ["add", { a: 2, b: 3 }],  // the same request twice: answered in recorded order
];

let tmpDir;
let recDir;
let recorded;        // what the SDK client got while recording
const servers = [];  // MCP servers to close at the end

// An SDK MCP server on 127.0.0.1:0, one transport per session (the usual stateful setup).
// `wrongAdd` makes `add` subtract: a server that regressed. GET (the optional standalone SSE
// stream) answers 405, which the spec allows: an open-ended stream has no reply to compare.
function startMcpServer({ wrongAdd = false } = {}) {
  const stats = { sessions: [], toolCalls: 0 };
  const makeServer = () => {
    const s = new McpServer({ name: "faultline-replay-test-server", version: "1.0.0" },
                            { capabilities: { logging: {} } });
    s.registerTool("echo", { description: "Echoes its text", inputSchema: { text: z.string() } }, async ({ text }) => {
      stats.toolCalls++;
      return { content: [{ type: "text", text }] };
    });
    s.registerTool("add", { description: "a + b", inputSchema: { a: z.number(), b: z.number() } }, async ({ a, b }) => {
      stats.toolCalls++;
      return { content: [{ type: "text", text: String(wrongAdd ? a - b : a + b) }] };
    });
    s.registerTool("listmodels", { description: "The models this server offers", inputSchema: {} }, async () => {
      stats.toolCalls++;
      return { content: [{ type: "text", text: "glm-4.6,kimi-k2" }] };
    });
    // Log notifications ride in the call's SSE stream before its result.
    s.registerTool("countdown", { description: "Counts down, logging each step", inputSchema: { from: z.number() } },
                   async ({ from }, extra) => {
                     stats.toolCalls++;
                     for (let i = from; i > 0; i--) {
                       await extra.sendNotification({ method: "notifications/message",
                                                      params: { level: "info", data: `tick ${i}` } });
                     }
                     return { content: [{ type: "text", text: "liftoff" }] };
                   });
    return s;
  };
  const srv = http.createServer(mcpSessionHandler({ StreamableHTTPServerTransport, isInitializeRequest }, makeServer, {
    refuseGet: true, onSession: (id) => { stats.sessions.push(id); },
  }));
  return new Promise((resolve, reject) => {
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      servers.push(srv);
      resolve({ srv, port: srv.address().port, stats });
    });
  });
}

// Runs a child to its end (bounded); resolves { code, out }.
function run(args, { timeoutMs = 60000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let out = "";
    proc.stdout.on("data", (d) => { out += d; });
    proc.stderr.on("data", (d) => { out += d; });
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.on("error", reject);
    proc.on("exit", (code, sig) => { clearTimeout(timer); resolve({ code, sig, out }); });
  });
}

// One SDK client session through 127.0.0.1:port; returns what the client got.
async function session(port) {
  const client = new Client({ name: "faultline-replay-test", version: "1.0.0" });
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params.data); });
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`));
  try {
    await client.connect(transport, CALL);
    const out = { sessionId: transport.sessionId, server: client.getServerVersion(),
                  capabilities: client.getServerCapabilities() };
    out.tools = (await client.listTools(undefined, CALL)).tools;
    out.calls = [];
    for (const [name, args] of CALLS) out.calls.push(await client.callTool({ name, arguments: args }, undefined, CALL));
    out.logs = logs;
    await transport.terminateSession();  // DELETE: the session ends on the server too
    return out;
  } finally {
    await client.close();
  }
}

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "faultline-mcp-replay-"));
  recDir = path.join(tmpDir, "rec");
  const mcp = await startMcpServer();
  const portFile = path.join(tmpDir, "api.addr");
  const fl = await startWithPortFile(["serve", "--host", "127.0.0.1", "--port", "0", "--port-file", portFile,
                                      "--record", recDir], portFile);
  try {
    const res = await fetch(`http://127.0.0.1:${fl.port}/proxies`, {
      method: "POST", signal: AbortSignal.timeout(5000),
      body: JSON.stringify({ name: "mcp", listen: "127.0.0.1:0", upstream: `127.0.0.1:${mcp.port}`, protocol: "mcp" }),
    });
    const proxy = await res.json();
    assert.equal(res.status, 201, JSON.stringify(proxy));
    recorded = await session(portOf(proxy.listen));
  } finally {
    await stopChild(fl.proc);  // closes the recording (index.json says complete)
  }
  assert.equal(mcp.stats.toolCalls, CALLS.length);
  assert.deepEqual(recorded.logs, ["tick 3", "tick 2", "tick 1"]);
  assert.equal(recorded.calls[1].content[0].text, "5");
  assert.ok(fs.existsSync(path.join(recDir, "index.json")), "the recording was written");
});

after(async () => {
  for (const s of servers) {
    s.closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

test("(a) replay server: a real SDK client gets exactly the recorded session, with no MCP server", async () => {
  const portFile = path.join(tmpDir, "replay-server.addr");
  const replay = await startWithPortFile(["replay", "server", "--journal", recDir, "--listen", "127.0.0.1:0",
                                          "--port-file", portFile, "--unmatched", "error"], portFile);
  let live;
  try {
    live = await session(replay.port);
  } finally {
    await stopChild(replay.proc);
  }
  // The whole session as the client saw it: server info, capabilities, tools, every call's
  // result (the repeated `add` too), the log notifications, even the session id.
  assert.deepEqual(live, recorded);
  const m = /replay server: served (\d+), unmatched (\d+)/.exec(replay.output());
  assert.ok(m, `no summary line in: ${replay.output()}`);
  assert.equal(Number(m[2]), 0, `unmatched requests: ${replay.output()}`);
  assert.ok(Number(m[1]) >= 2 + CALLS.length + 2, `served ${m[1]}`);  // initialize, initialized, list, calls, DELETE
});

async function replayClient(port, speed) {
  return run(["replay", "client", "--journal", recDir, "--target", `127.0.0.1:${port}`, "--speed", speed,
              "--timeout", "10", "--no-progress"]);
}

const summaryOf = (out) => {
  const m = /replay client: (\d+) exchanges, (\d+) matched, (\d+) mismatched, (\d+) errors/.exec(out);
  assert.ok(m, `no summary line in: ${out}`);
  return { exchanges: Number(m[1]), matched: Number(m[2]), mismatched: Number(m[3]), errors: Number(m[4]) };
};

// At the recorded pace (--speed 1): the SDK client spread the session over several
// keep-alive connections, and only the recorded timing keeps their order (the DELETE last).
test("(b) replay client: a fresh real SDK server answers the recorded session with zero divergences", async () => {
  const mcp = await startMcpServer();
  const r = await replayClient(mcp.port, "1");
  const s = summaryOf(r.out);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(s, { exchanges: s.exchanges, matched: s.exchanges, mismatched: 0, errors: 0 }, r.out);
  assert.ok(s.exchanges >= 2 + CALLS.length + 2, r.out);
  // The live server did the work, in a session of its own (not the recorded id).
  assert.equal(mcp.stats.toolCalls, CALLS.length);
  assert.equal(mcp.stats.sessions.length, 1);
  assert.notEqual(mcp.stats.sessions[0], recorded.sessionId);
});

test("(b) replay client: a server whose answers changed is reported, exit 1", async () => {
  const mcp = await startMcpServer({ wrongAdd: true });
  const r = await replayClient(mcp.port, "1");
  const s = summaryOf(r.out);
  assert.equal(r.code, 1, r.out);
  assert.equal(s.mismatched, 2, r.out);  // both `add` calls: "-1" where "5" was recorded
  assert.equal(s.errors, 0, r.out);
  assert.match(r.out, /SSE event 1 data .*-1/);
});
