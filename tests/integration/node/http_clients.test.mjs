// Real Node HTTP clients through a faultline `http` proxy: undici (keep-alive on one
// connection, a chunked upload from a stream), global fetch (http_abort, http_delay), and the
// `openai` v4 client streaming chat completions from a local OpenAI-compatible stub through
// the SSE faults (sse_cut, sse_stall, sse_delay, sse_corrupt) and retrying a 429 made by
// http_abort. What each client does is asserted as the client itself reports it.
// Run: cd tests/integration && node --test node/http_clients.test.mjs
// Needs tests/integration/node_modules (./dev setup) and the binary (FAULTLINE_BIN or
// build/faultline). Loopback only, port 0 everywhere.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { createRequire } from "node:module";
import { nowMs, portOf, sleep, startFaultline, stopChild } from "./harness.mjs";

const require = createRequire(import.meta.url);
let undici, OpenAI;
try {
  undici = require("undici");
  OpenAI = require("openai");
} catch (e) {
  throw new Error(`undici / openai not installed: run ./dev setup (npm install in tests/integration) — ${e.message}`);
}
const { request, Agent } = undici;

let server;   // faultline child process
let apiUrl;
let tmpDir;
let stub;     // the upstream: http.Server
let stubAddr;
const seen = { connections: 0, requests: [] };  // what reached the stub (reset per test)

// The pieces of the streamed answer, one per chunk; the last one carries finish_reason.
const PIECES = ["Hello", ",", " this", " is", " a", " streamed", " answer", " through", " faultline", "!"];
const FULL_TEXT = PIECES.join("");
const CHUNK_GAP_MS = 30;

function chunkJson(i) {
  return {
    id: "chatcmpl-stub", object: "chat.completion.chunk", created: 1700000000, model: "stub-model",
    choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: PIECES[i] } : { content: PIECES[i] },
                finish_reason: i === PIECES.length - 1 ? "stop" : null }],
  };
}

// An OpenAI-compatible stub: POST /v1/chat/completions (SSE when "stream": true, JSON
// otherwise), POST /upload (sha256 of the body), anything else: a small text answer.
function startStub() {
  return new Promise((resolve, reject) => {
    const srv = http.createServer(async (req, res) => {
      const hash = crypto.createHash("sha256");
      let length = 0;
      const parts = [];
      for await (const piece of req) {
        hash.update(piece);
        length += piece.length;
        if (length <= 1 << 20) parts.push(piece);
      }
      const url = new URL(req.url, "http://stub");
      seen.requests.push({ method: req.method, path: url.pathname, headers: req.headers, at: nowMs() });
      if (url.pathname === "/v1/chat/completions" && req.method === "POST") {
        const body = JSON.parse(Buffer.concat(parts).toString() || "{}");
        if (body.stream) {
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
          for (let i = 0; i < PIECES.length; i++) {
            res.write(`data: ${JSON.stringify(chunkJson(i))}\n\n`);
            await sleep(CHUNK_GAP_MS);
          }
          res.end("data: [DONE]\n\n");
          return;
        }
        const out = JSON.stringify({
          id: "chatcmpl-stub", object: "chat.completion", created: 1700000000, model: "stub-model",
          choices: [{ index: 0, message: { role: "assistant", content: FULL_TEXT }, finish_reason: "stop" }],
          usage: { prompt_tokens: 1, completion_tokens: PIECES.length, total_tokens: PIECES.length + 1 },
        });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
        res.end(out);
        return;
      }
      if (url.pathname === "/upload") {
        const out = JSON.stringify({ sha256: hash.digest("hex"), length,
                                     chunked: req.headers["transfer-encoding"] === "chunked" });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(out);
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`hello ${req.method} ${url.pathname}`);
    });
    srv.on("connection", () => { seen.connections += 1; });
    srv.keepAliveTimeout = 30000;
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "faultline-node-http-"));
  stub = await startStub();
  stubAddr = `127.0.0.1:${stub.address().port}`;
  ({ proc: server, url: apiUrl } = await startFaultline(tmpDir));
});

after(async () => {
  await stopChild(server);
  if (stub) {
    stub.closeAllConnections();
    await new Promise((r) => stub.close(r));
  }
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// ---- control API helpers -------------------------------------------------------------------

async function api(method, p, body) {
  const res = await fetch(apiUrl + p, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

// A fresh `http` proxy to the stub for one test: { name, port, base, addToxic, removeToxic, close }.
async function httpProxy(name) {
  seen.connections = 0;
  seen.requests = [];
  const created = await api("POST", "/proxies", { name, listen: "127.0.0.1:0", upstream: stubAddr, protocol: "http" });
  assert.equal(created.status, 201, created.text);
  const port = portOf(created.json.listen);
  return {
    name, port, base: `http://127.0.0.1:${port}`,
    async addToxic(toxic) {
      const r = await api("POST", `/proxies/${name}/toxics`, toxic);
      assert.equal(r.status, 200, r.text);
      return r.json;
    },
    async removeToxic(toxic) {
      const r = await api("DELETE", `/proxies/${name}/toxics/${toxic}`);
      assert.equal(r.status, 204, r.text);
    },
    async close() { await api("DELETE", `/proxies/${name}`); },
  };
}

// The sum of the samples of `metric` whose labels include `labels` (null if none).
async function metric(metricName, labels) {
  const text = (await api("GET", "/metrics")).text;
  let sum = null;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== metricName) continue;
    const have = Object.fromEntries([...(m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === String(v))) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

// Polls fn() every 20 ms until ok(value) or timeoutMs; returns the last value.
async function poll(fn, ok, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  let v = await fn();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(20);
    v = await fn();
  }
  return v;
}

function openaiClient(p, options = {}) {
  return new OpenAI({ apiKey: "sk-test", baseURL: `${p.base}/v1`, maxRetries: 0, timeout: 20000, ...options });
}

// Streams a chat completion; resolves { text, chunks: [{ content, at }], error, ms }.
async function streamChat(client) {
  const start = nowMs();
  const chunks = [];
  let error = null;
  try {
    const stream = await client.chat.completions.create({
      model: "stub-model", stream: true, messages: [{ role: "user", content: "hi" }],
    });
    for await (const chunk of stream) {
      chunks.push({ content: chunk.choices[0]?.delta?.content ?? "", at: nowMs() });
    }
  } catch (e) {
    error = e;
  }
  return { text: chunks.map((c) => c.content).join(""), chunks, error, ms: nowMs() - start };
}

// ---- undici and fetch ----------------------------------------------------------------------

test("undici: an Agent with connections:1 reuses one connection through faultline", async () => {
  const p = await httpProxy("node_keepalive");
  const agent = new Agent({ connections: 1, keepAliveTimeout: 30000 });
  try {
    for (let i = 0; i < 5; i++) {
      const res = await request(`${p.base}/seq/${i}`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), `hello GET /seq/${i}`);
    }
    // Concurrent requests queue on the one connection.
    const results = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const res = await request(`${p.base}/par/${i}`, { method: "POST", body: `body ${i}`, dispatcher: agent });
      return [res.statusCode, await res.body.text()];
    }));
    assert.deepEqual(results, [0, 1, 2, 3].map((i) => [200, `hello POST /par/${i}`]));
    assert.equal(seen.connections, 1, "the stub saw one connection");
    assert.equal(await metric("faultline_proxy_connections_total", { proxy: p.name }), 1);
    assert.equal(await poll(() => metric("faultline_proxy_requests_total", { proxy: p.name }), (v) => v >= 9), 9);
    assert.equal(await poll(() => metric("faultline_proxy_responses_total", { proxy: p.name }), (v) => v >= 9), 9);
  } finally {
    await agent.close();
    await p.close();
  }
});

test("undici: a chunked upload from a stream arrives intact", async () => {
  const p = await httpProxy("node_chunked_upload");
  const agent = new Agent({ connections: 1 });
  try {
    const block = crypto.randomBytes(65536);
    const blocks = 160;  // 10 MiB, each block different
    const hash = crypto.createHash("sha256");
    const parts = [];
    for (let i = 0; i < blocks; i++) {
      const b = Buffer.concat([Buffer.from(`${i}:`), block.subarray(0, 65536 - 8)]);
      parts.push(b);
      hash.update(b);
    }
    const total = parts.reduce((n, b) => n + b.length, 0);
    const res = await request(`${p.base}/upload`, { method: "POST", body: Readable.from(parts), dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(await res.body.json(), { sha256: hash.digest("hex"), length: total, chunked: true });
  } finally {
    await agent.close();
    await p.close();
  }
});

test("fetch: http_abort answers 429 with Retry-After and the JSON body; the stub sees nothing", async () => {
  const p = await httpProxy("node_fetch_abort");
  try {
    const body = { error: { code: "1302", message: "High concurrency usage of this API" } };
    await p.addToxic({ name: "busy", type: "http_abort", attributes: {
      status: 429, headers: { "Retry-After": "2" }, body, match: { method: "POST", path: "/v1/chat/" } } });
    const res = await fetch(`${p.base}/v1/chat/completions`, { method: "POST", body: "{}" });
    assert.equal(res.status, 429);
    assert.equal(res.statusText, "Too Many Requests");
    assert.equal(res.headers.get("retry-after"), "2");
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(await res.text(), JSON.stringify(body));
    assert.equal(seen.requests.length, 0);
    const other = await fetch(`${p.base}/v1/models`);
    assert.equal(other.status, 200, "a request the match leaves alone is forwarded");
    assert.equal(await other.text(), "hello GET /v1/models");
    assert.equal(await metric("faultline_toxic_messages_total", { proxy: p.name, toxic: "busy" }), 1);
  } finally {
    await p.close();
  }
});

test("fetch: http_delay 300 ms on the request and on the response", async () => {
  const p = await httpProxy("node_fetch_delay");
  try {
    const fast = nowMs();
    assert.equal((await fetch(`${p.base}/quick`)).status, 200);
    const fastMs = nowMs() - fast;
    for (const phase of ["request", "response"]) {
      await p.addToxic({ name: "d", type: "http_delay", attributes: { delay: 300, phase } });
      const start = nowMs();
      const res = await fetch(`${p.base}/slow-${phase}`);
      assert.equal(await res.text(), `hello GET /slow-${phase}`);
      const ms = nowMs() - start;
      assert.ok(ms >= 280 && ms < 3000, `${phase}: delay 300 but the exchange took ${ms.toFixed(0)} ms`);
      const arrived = seen.requests.at(-1).at - start;
      if (phase === "request") assert.ok(arrived >= 280, `the stub got the request after ${arrived.toFixed(0)} ms`);
      else assert.ok(arrived < 250, `the stub got the request after ${arrived.toFixed(0)} ms`);
      await p.removeToxic("d");
    }
    assert.ok(fastMs < 280, `without the fault the exchange took ${fastMs.toFixed(0)} ms`);
  } finally {
    await p.close();
  }
});

// ---- openai: SSE faults --------------------------------------------------------------------

test("openai: untouched, a stream and a plain completion come through whole", async () => {
  const p = await httpProxy("node_openai_clean");
  try {
    const client = openaiClient(p);
    const r = await streamChat(client);
    assert.equal(r.error, null);
    assert.equal(r.text, FULL_TEXT);
    assert.equal(r.chunks.length, PIECES.length);
    const plain = await client.chat.completions.create({ model: "stub-model", messages: [{ role: "user", content: "hi" }] });
    assert.equal(plain.choices[0].message.content, FULL_TEXT);
  } finally {
    await p.close();
  }
});

test("openai: sse_cut after 3 events ends the stream early; the client throws", async () => {
  const p = await httpProxy("node_openai_cut");
  try {
    await p.addToxic({ name: "cut", type: "sse_cut", attributes: { after_events: 3 } });
    const r = await streamChat(openaiClient(p));
    assert.deepEqual(r.chunks.map((c) => c.content), PIECES.slice(0, 3), "exactly the first 3 chunks");
    // The response was chunked and ends without its last chunk: node-fetch (openai v4's fetch
    // on Node) fails the body with a plain Error "Premature close", which the stream rethrows.
    assert.ok(r.error, "the client notices the stream ended early");
    assert.equal(r.error.code, "ERR_STREAM_PREMATURE_CLOSE", String(r.error));
    assert.equal(r.error.message, "Premature close");
    assert.ok(!(r.error instanceof OpenAI.APIError), "not an APIError: the client does not retry it");
    assert.equal(await metric("faultline_toxic_messages_total", { proxy: p.name, toxic: "cut" }), 1);
    assert.equal(await metric("faultline_proxy_resets_sent_total", { proxy: p.name }), 0);

    // mode reset: the same three chunks, then a reset connection. Depending on whether the
    // socket reports the RST before the body stream sees the end, the client throws the reset
    // itself or the same "Premature close".
    await p.removeToxic("cut");
    await p.addToxic({ name: "cut2", type: "sse_cut", attributes: { after_events: 3, mode: "reset" } });
    const r2 = await streamChat(openaiClient(p));
    assert.deepEqual(r2.chunks.map((c) => c.content), PIECES.slice(0, 3));
    assert.ok(["ECONNRESET", "ERR_STREAM_PREMATURE_CLOSE"].includes(r2.error?.code), String(r2.error));
    assert.equal(await metric("faultline_proxy_resets_sent_total", { proxy: p.name }), 1, "an RST was sent");

    // after_events 0: the head, then nothing. The client gets its stream and no chunk.
    await p.removeToxic("cut2");
    await p.addToxic({ name: "cut0", type: "sse_cut", attributes: { after_events: 0 } });
    const r0 = await streamChat(openaiClient(p));
    assert.deepEqual(r0.chunks, []);
    assert.equal(r0.error?.code, "ERR_STREAM_PREMATURE_CLOSE", String(r0.error));
  } finally {
    await p.close();
  }
});

test("openai: sse_stall after 2 events for 800 ms: a gap of at least 0.75 s between chunks 2 and 3", async () => {
  const p = await httpProxy("node_openai_stall");
  try {
    await p.addToxic({ name: "stall", type: "sse_stall", attributes: { after_events: 2, duration: 800 } });
    const r = await streamChat(openaiClient(p));
    assert.equal(r.error, null);
    assert.equal(r.text, FULL_TEXT, "the stream resumes and completes");
    const gaps = r.chunks.slice(1).map((c, i) => c.at - r.chunks[i].at);
    assert.ok(gaps[1] >= 750, `gap between chunks 2 and 3: ${gaps[1].toFixed(0)} ms`);
    assert.ok(gaps[0] < 750, `gap between chunks 1 and 2: ${gaps[0].toFixed(0)} ms (not stalled)`);
    assert.ok(r.ms < 10000);
  } finally {
    await p.close();
  }
});

test("openai: sse_delay 200 ms spaces the events", async () => {
  const p = await httpProxy("node_openai_delay");
  try {
    await p.addToxic({ name: "sd", type: "sse_delay", attributes: { delay: 200 } });
    const r = await streamChat(openaiClient(p));
    assert.equal(r.error, null);
    assert.equal(r.text, FULL_TEXT);
    assert.ok(r.ms >= 9 * 200, `10 chunks spaced 200 ms apart came in ${r.ms.toFixed(0)} ms`);
    assert.ok(r.ms < 15000, `took ${r.ms.toFixed(0)} ms`);
    const gaps = r.chunks.slice(1).map((c, i) => c.at - r.chunks[i].at);
    const spaced = gaps.filter((g) => g >= 150).length;
    assert.ok(spaced >= gaps.length - 1, `gaps: ${gaps.map((g) => g.toFixed(0)).join(",")}`);
    assert.equal(await metric("faultline_toxic_messages_total", { proxy: p.name, toxic: "sd" }), PIECES.length + 1);
  } finally {
    await p.close();
  }
});

test("openai: sse_corrupt makes the client throw a JSON parse error at that event", async () => {
  const p = await httpProxy("node_openai_corrupt");
  const logged = [];
  const consoleError = console.error;
  console.error = (...args) => { logged.push(args.map(String).join(" ")); };  // the client logs the bad data
  try {
    await p.addToxic({ name: "bad", type: "sse_corrupt", attributes: { after_events: 2 } });
    const r = await streamChat(openaiClient(p));
    console.error = consoleError;
    assert.deepEqual(r.chunks.map((c) => c.content), PIECES.slice(0, 2), "events 1 and 2 are intact");
    assert.ok(r.error instanceof SyntaxError, `expected a JSON SyntaxError, got ${r.error}`);
    assert.match(r.error.message, /JSON/);
    const bad = logged.find((l) => l.startsWith("Could not parse message into JSON:"));
    assert.ok(bad, `the client logs the event it could not parse: ${logged}`);
    const data = bad.slice("Could not parse message into JSON: ".length);
    const original = JSON.stringify(chunkJson(2));
    assert.equal(data.length, original.length, "same length");
    assert.ok(original.startsWith(data.slice(0, data.indexOf("~"))), "the first half is intact");
    assert.match(data, /~{10,}$/, "the second half is overwritten with ~");
  } finally {
    console.error = consoleError;
    await p.close();
  }
});

// ---- openai: retries on a 429 made by faultline -------------------------------------------

test("openai: maxRetries 2 gets past a 429 once the abort is removed", async () => {
  const p = await httpProxy("node_openai_retry");
  try {
    await p.addToxic({ name: "rl", type: "http_abort", toxicity: 1, attributes: {
      status: 429, headers: { "Retry-After": "2" }, body: { error: { message: "rate limited", type: "rate_limit" } } } });
    const client = openaiClient(p, { maxRetries: 2 });
    const start = nowMs();
    const pending = client.chat.completions.create({ model: "stub-model", messages: [{ role: "user", content: "hi" }] });
    pending.catch(() => {});  // awaited below
    // Once faultline has answered the first attempt with a 429, the fault goes away.
    const applied = await poll(() => metric("faultline_toxic_messages_total", { proxy: p.name, toxic: "rl" }),
                               (v) => v >= 1, 10000);
    assert.equal(applied, 1);
    await p.removeToxic("rl");
    const completion = await pending;
    const ms = nowMs() - start;
    assert.equal(completion.choices[0].message.content, FULL_TEXT);
    assert.ok(ms >= 1900, `the client waited the 2 s of Retry-After (took ${ms.toFixed(0)} ms)`);
    assert.equal(await metric("faultline_proxy_requests_total", { proxy: p.name }), 2, "two attempts reached faultline");
    assert.equal(seen.requests.filter((x) => x.path === "/v1/chat/completions").length, 1, "the stub saw only the retry");
  } finally {
    await p.close();
  }
});

test("openai: maxRetries 0 fails with the 429 faultline made", async () => {
  const p = await httpProxy("node_openai_429");
  try {
    const body = { error: { message: "rate limited", type: "rate_limit", code: "1302" } };
    await p.addToxic({ name: "rl", type: "http_abort", toxicity: 1,
                       attributes: { status: 429, headers: { "Retry-After": "1" }, body } });
    const client = openaiClient(p, { maxRetries: 0 });
    let error = null;
    try {
      await client.chat.completions.create({ model: "stub-model", messages: [{ role: "user", content: "hi" }] });
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof OpenAI.RateLimitError, `expected RateLimitError, got ${error}`);
    assert.equal(error.status, 429);
    assert.equal(error.headers["retry-after"], "1");
    assert.deepEqual(error.error, body.error);
    assert.equal(error.code, "1302");
    assert.equal(seen.requests.length, 0);
    assert.equal(await metric("faultline_proxy_requests_total", { proxy: p.name }), 1);
  } finally {
    await p.close();
  }
});
