// Shared helpers of the Node integration tests (imported by the *.test.mjs files, not a test
// itself): the faultline binary, starting and stopping child processes, a loopback echo
// server and small socket / HTTP helpers. Loopback only, port 0 everywhere.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.FAULTLINE_BIN || path.resolve(here, "../../../build/faultline");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// SIGTERM, SIGKILL after 10 s; resolves once the child has exited.
export async function stopChild(proc) {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 10000);
    await exited;
    clearTimeout(t);
  }
}

// A long-running faultline child (`faultline ARGS...`) that writes HOST:PORT to `portFile`;
// resolves { proc, host, port, output() } once it has (output: what it logged so far).
export async function startWithPortFile(args, portFile) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`faultline binary not found at ${BIN}: build it (./dev build) or set FAULTLINE_BIN`);
  }
  const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LOG_LEVEL: "warn" } });
  let log = "";
  proc.stdout.on("data", (d) => { log += d; });
  proc.stderr.on("data", (d) => { log += d; });
  let exited = null;
  proc.on("exit", (code, sig) => { exited = { code, sig }; });
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`faultline ${args[0]} exited early ${JSON.stringify(exited)}: ${log}`);
    if (fs.existsSync(portFile)) {
      const text = fs.readFileSync(portFile, "utf8").trim();
      if (text) {
        const i = text.lastIndexOf(":");
        return { proc, host: text.slice(0, i), port: Number(text.slice(i + 1)), output: () => log };
      }
    }
    await sleep(20);
  }
  await stopChild(proc);
  throw new Error(`faultline ${args[0]} did not write ${portFile} within 15 s: ${log}`);
}

// `faultline serve` on 127.0.0.1, API port 0, its port file in `dir`. Resolves
// { proc, url } (url = http://127.0.0.1:PORT) once the port file is written.
export async function startFaultline(dir) {
  const portFile = path.join(dir, "api.addr");
  const { proc, host, port } = await startWithPortFile(
      ["serve", "--host", "127.0.0.1", "--port", "0", "--port-file", portFile], portFile);
  return { proc, url: `http://${host}:${port}` };
}

// A JSON-RPC error reply with no id, as the MCP SDK's servers send for transport errors.
export function mcpJsonError(res, status, message) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message } }));
}

// The usual stateful Streamable HTTP MCP server as an (async) request handler: one transport,
// and a fresh McpServer from makeServer(), per session. `sdk` holds the SDK's
// StreamableHTTPServerTransport and isInitializeRequest (each test loads the SDK itself).
// Options: `sessions` (Mcp-Session-Id -> transport, for tests that look into it),
// onBody(req, body) for each parsed POST body, onSession(id) for each new session, and
// refuseGet (answer GET, the optional standalone SSE stream, with 405).
export function mcpSessionHandler(sdk, makeServer,
                                  { sessions = new Map(), onBody = () => {}, onSession = () => {}, refuseGet = false } = {}) {
  return async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (refuseGet && req.method === "GET") {
      res.writeHead(405, { allow: "POST, DELETE" });
      return res.end();
    }
    let body;
    if (req.method === "POST") {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return mcpJsonError(res, 400, "Parse error");
      }
      onBody(req, body);
    }
    const sid = req.headers["mcp-session-id"];
    if (sid) {
      const t = sessions.get(sid);
      if (!t) return mcpJsonError(res, 404, "Session not found");
      return t.handleRequest(req, res, body);
    }
    if (req.method !== "POST" || !sdk.isInitializeRequest(body)) return mcpJsonError(res, 400, "No valid session ID");
    const transport = new sdk.StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => { sessions.set(id, transport); onSession(id); },
    });
    transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
    await makeServer().connect(transport);
    return transport.handleRequest(req, res, body);
  };
}

// A TCP echo server on 127.0.0.1, port 0; it ends (half-closes) when the client ends.
export function startEcho() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    });
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

export function portOf(listen) {
  return Number(listen.slice(listen.lastIndexOf(":") + 1));
}

// GET apiUrl + p with fetch: { status, body } (parsed JSON for a 200, else the text).
export async function rawGet(apiUrl, p) {
  const res = await fetch(apiUrl + p);
  return { status: res.status, body: res.status === 200 ? await res.json() : await res.text() };
}

// isStatusError(status) for assert.rejects: a ToxiproxyError (the client's class) naming
// that HTTP status.
export function statusErrorMatcher(ToxiproxyError) {
  return (status) => (err) => {
    assert.ok(err instanceof ToxiproxyError, `expected ToxiproxyError, got ${err}`);
    assert.match(err.message, new RegExp(`status code ${status}\\b`));
    return true;
  };
}

// One echo round trip through 127.0.0.1:port; resolves { data, ms }. When the connection
// ends before the whole payload came back it rejects, or with shortOk resolves
// { data, ms, ended: true } with what came.
export function roundTrip(port, payload, timeoutMs = 5000, { shortOk = false } = {}) {
  return new Promise((resolve, reject) => {
    const start = nowMs();
    const chunks = [];
    let len = 0;
    const sock = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error("round trip timed out")); }, timeoutMs);
    sock.on("error", (e) => { clearTimeout(timer); reject(e); });
    sock.on("connect", () => sock.write(payload));
    sock.on("data", (d) => {
      chunks.push(d);
      len += d.length;
      if (len >= payload.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve({ data: Buffer.concat(chunks), ms: nowMs() - start });
      }
    });
    sock.on("end", () => {
      if (len < payload.length) {
        clearTimeout(timer);
        if (shortOk) resolve({ data: Buffer.concat(chunks), ms: nowMs() - start, ended: true });
        else reject(new Error(`closed after ${len} of ${payload.length} bytes`));
      }
    });
  });
}

// A port that was free a moment ago.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Resolves true if "PING" gets "+PONG" (or "-NOAUTH": serving, with a password) from
// 127.0.0.1:port within 1 s.
function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => { sock.destroy(); resolve(false); }, 1000);
    sock.on("error", () => { clearTimeout(timer); resolve(false); });
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(/^(\+PONG|-NOAUTH)/.test(d.toString()));
    });
  });
}

// redis-server on 127.0.0.1, a free port, no persistence, its files in `dir`; `extraArgs`
// are more options. Resolves { proc, port, log() } once it answers PING. Fails (with the
// install hint) when redis-server is missing.
export async function startRedis(dir, extraArgs = []) {
  let log = "";
  for (let attempt = 0; attempt < 3; attempt++) {  // a free port can be taken in between
    const port = await freePort();
    const proc = spawn("redis-server", ["--port", String(port), "--save", "", "--appendonly", "no",
                                        "--bind", "127.0.0.1", "--dir", dir, ...extraArgs],
                       { stdio: ["ignore", "pipe", "pipe"] });
    let exited = false;
    proc.on("error", (e) => { log += `spawn error: ${e.message}\n`; exited = true; });
    proc.on("exit", () => { exited = true; });
    proc.stdout.on("data", (d) => { log += d; });
    proc.stderr.on("data", (d) => { log += d; });
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline && !exited) {
      if (await redisPing(port)) return { proc, port, log: () => log };
      await sleep(50);
    }
    if (!exited) proc.kill("SIGKILL");
  }
  throw new Error(`redis-server did not start (run ./dev setup; apt package redis-server): ${log}`);
}
