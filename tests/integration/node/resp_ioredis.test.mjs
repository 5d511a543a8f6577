// ioredis against a real redis-server through a faultline `"protocol": "resp"` proxy: the
// resp_* faults of docs/protocols.md as a Node application sees them (ReplyError messages,
// pipelines in order under resp_delay, a write that failed for the client but happened).
// Run: node --test tests/integration/node/resp_ioredis.test.mjs
// Needs tests/integration/node_modules (./dev setup), redis-server on PATH, and the binary
// (FAULTLINE_BIN or build/faultline). Loopback only, port 0 everywhere.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { nowMs, portOf, startFaultline, startRedis, stopChild } from "./harness.mjs";

const require = createRequire(import.meta.url);

let Redis, ReplyError;
try {
  Redis = require("ioredis");
  ({ ReplyError } = Redis);
} catch (e) {
  throw new Error(`ioredis not installed: run ./dev setup (npm install in tests/integration) — ${e.message}`);
}

const LOADING = "LOADING Redis is loading the dataset in memory";
const READONLY = "READONLY You can't write against a read only replica.";

let tmpDir;
let server;    // faultline child process
let apiUrl;
let redis;     // { proc, port, log }
const clients = [];

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "faultline-node-resp-"));
  ({ proc: server, url: apiUrl } = await startFaultline(tmpDir));
  redis = await startRedis(tmpDir);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await stopChild(redis?.proc);
  await stopChild(server);
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// One control API call; resolves { status, body } (JSON when it parses).
async function api(method, p, body) {
  const res = await fetch(apiUrl + p, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed };
}

// A resp proxy to the redis-server with these faults; resolves its port.
async function respProxy(name, faults) {
  const created = await api("POST", "/proxies", { name, listen: "127.0.0.1:0",
                                                  upstream: `127.0.0.1:${redis.port}`, protocol: "resp" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.protocol, "resp");
  for (const f of faults) {
    const r = await api("POST", `/proxies/${name}/toxics`, { toxicity: 1, ...f });
    assert.equal(r.status, 200, `adding ${JSON.stringify(f)}: ${JSON.stringify(r.body)}`);
  }
  return portOf(created.body.listen);
}

// An ioredis client on 127.0.0.1:port that fails fast instead of retrying.
async function client(port) {
  const r = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0,
                        retryStrategy: () => null, enableOfflineQueue: false,
                        connectTimeout: 5000, commandTimeout: 10000 });
  r.on("error", () => {});  // rejections are checked on the commands themselves
  clients.push(r);
  await r.connect();
  return r;
}

// The sum of the /metrics samples `name` whose labels include `labels`.
async function metric(name, labels) {
  const text = await (await fetch(`${apiUrl}/metrics`, { signal: AbortSignal.timeout(10000) })).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.split(" ").pop());
    }
  }
  return sum;
}

const replyError = (message) => (err) => {
  assert.ok(err instanceof ReplyError, `expected a ReplyError, got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.message, message);
  return true;
};

test("resp_error LOADING on GET thread:*: ioredis rejects with exactly Redis' ReplyError", async () => {
  const port = await respProxy("ior_loading", [
    { name: "loading", type: "resp_error",
      attributes: { error: LOADING, match: { command: "GET", key: "thread:*" } } },
  ]);
  const direct = await client(redis.port);
  await direct.set("thread:1", "stored");
  await direct.set("other", "fine");
  const r = await client(port);
  await assert.rejects(r.get("thread:1"), replyError(LOADING));
  await assert.rejects(r.get("thread:42"), replyError(LOADING));
  // Other keys and commands on the same connection are untouched, replies still pair up.
  assert.equal(await r.get("other"), "fine");
  assert.equal(await r.set("thread:1", "written"), "OK", "only GET is matched");
  assert.equal(await direct.get("thread:1"), "written");
  assert.equal(await r.ping(), "PONG");
  assert.equal(await metric("faultline_toxic_messages_total", { proxy: "ior_loading", toxic: "loading" }), 2);
  // In a transaction the refused GET aborts EXEC, as on a real loading server.
  await assert.rejects(r.multi().set("tx:a", "1").get("thread:1").exec(), (err) => {
    assert.match(err.message, /^EXECABORT Transaction discarded because of previous errors/);
    assert.deepEqual(err.previousErrors.map((e) => e.message), [LOADING]);
    return true;
  });
  assert.equal(await direct.exists("tx:a"), 0, "nothing of the aborted transaction ran");
  assert.deepEqual(await r.multi().set("tx:a", "1").get("tx:a").exec(), [[null, "OK"], [null, "1"]]);
});

test("an ioredis pipeline of 50 commands under resp_delay on SET: results in order, right values", async () => {
  const port = await respProxy("ior_delay", [
    { name: "slow_set", type: "resp_delay", attributes: { delay: 200, match: { command: "SET" } } },
  ]);
  const r = await client(port);
  const pipe = r.pipeline();
  const expected = [];
  for (let i = 0; i < 25; i++) {
    pipe.set(`p:${i}`, `value-${i}`);
    expected.push([null, "OK"]);
    pipe.get(`p:${i}`);  // must see the SET before it, delayed or not
    expected.push([null, `value-${i}`]);
  }
  const t = nowMs();
  const results = await pipe.exec();
  const ms = nowMs() - t;
  assert.equal(results.length, 50);
  assert.deepEqual(results, expected);
  assert.ok(ms >= 190, `SETs delayed 200 ms but the pipeline took ${ms.toFixed(1)} ms`);
  assert.ok(ms < 5000, `the pipeline took ${ms.toFixed(1)} ms`);
  assert.equal(await metric("faultline_toxic_messages_total", { proxy: "ior_delay", toxic: "slow_set" }), 25);
  // GET alone is not delayed.
  const t2 = nowMs();
  assert.equal(await r.get("p:3"), "value-3");
  assert.ok(nowMs() - t2 < 190, `an unmatched GET took ${(nowMs() - t2).toFixed(1)} ms`);
});

test("resp_error READONLY after forwarding: the write rejects, but the value is stored", async () => {
  const port = await respProxy("ior_readonly", [
    { name: "readonly", type: "resp_error",
      attributes: { error: READONLY, when: "after", match: { command: "set" } } },
  ]);
  const r = await client(port);
  const direct = await client(redis.port);
  await assert.rejects(r.set("ro:k", "v"), replyError(READONLY));
  assert.equal(await direct.get("ro:k"), "v", "the SET ran on redis-server");
  assert.equal(await r.get("ro:k"), "v", "reads are not matched");
  await assert.rejects(r.set("ro:k", "v2"), replyError(READONLY));
  assert.equal(await direct.get("ro:k"), "v2");
  // Not every write: only SET is matched.
  assert.equal(await r.hset("ro:h", "f", "1"), 1);
  assert.equal(await r.incr("ro:n"), 1);
});
