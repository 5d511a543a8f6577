// Every Toxiproxy toxic type through toxiproxy-node-client 4.x (add, get, update, remove,
// with the attributes the server returns), and ioredis through a faultline proxy with
// latency and reset_peer toxics.
// Run: node --test tests/integration/node/toxics_client.test.mjs
// Needs tests/integration/node_modules (./dev setup), redis-server on PATH, and the binary
// (FAULTLINE_BIN or build/faultline). Loopback only, port 0 everywhere.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { nowMs, portOf, rawGet, roundTrip as echoRoundTrip, startEcho, startFaultline,
         startRedis, statusErrorMatcher, stopChild } from "./harness.mjs";

const require = createRequire(import.meta.url);

let client, Redis;
try {
  client = require("toxiproxy-node-client");
  Redis = require("ioredis");
} catch (e) {
  throw new Error(`toxiproxy-node-client / ioredis not installed: run ./dev setup ` +
                  `(npm install in tests/integration) — ${e.message}`);
}
const { Toxiproxy, Toxic, ToxiproxyError } = client;
const isStatusError = statusErrorMatcher(ToxiproxyError);

// Here a connection that ends early resolves with what came back ({ ended: true }).
const roundTrip = (port, payload, timeoutMs = 5000) =>
  echoRoundTrip(port, payload, timeoutMs, { shortOk: true });

let server;      // faultline child process
let apiUrl;
let echo;        // net.Server
let echoAddr;
let redis;       // redis-server child process
let redisPort;
let tmpDir;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "faultline-node-toxics-"));
  echo = await startEcho();
  echoAddr = `127.0.0.1:${echo.address().port}`;
  ({ proc: server, url: apiUrl } = await startFaultline(tmpDir));
});

after(async () => {
  await stopChild(redis);
  await stopChild(server);
  if (echo) await new Promise((r) => echo.close(r));
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// Each Toxiproxy type: attributes to create with, attributes to update to, the stream.
const TYPES = [
  { type: "latency", stream: "downstream", attrs: { latency: 100, jitter: 10 }, next: { latency: 200, jitter: 0 } },
  { type: "bandwidth", stream: "downstream", attrs: { rate: 500 }, next: { rate: 1000 } },
  { type: "slow_close", stream: "downstream", attrs: { delay: 100 }, next: { delay: 300 } },
  { type: "timeout", stream: "upstream", attrs: { timeout: 1000 }, next: { timeout: 0 } },
  { type: "reset_peer", stream: "upstream", attrs: { timeout: 0 }, next: { timeout: 500 } },
  { type: "slicer", stream: "downstream", attrs: { average_size: 64, size_variation: 16, delay: 100 },
    next: { average_size: 128, size_variation: 0, delay: 0 } },
  { type: "limit_data", stream: "downstream", attrs: { bytes: 1000 }, next: { bytes: 2048 } },
];

for (const spec of TYPES) {
  test(`${spec.type}: addToxic, getToxic, update, remove with the returned attributes`, async () => {
    const tp = new Toxiproxy(apiUrl);
    const pname = `node_${spec.type}`;
    const p = await tp.createProxy({ name: pname, listen: "127.0.0.1:0", upstream: echoAddr });
    try {
      const name = `t_${spec.type}`;
      const toxic = await p.addToxic({ name, type: spec.type, stream: spec.stream, toxicity: 1,
                                       attributes: spec.attrs });
      assert.ok(toxic instanceof Toxic);
      const expected = { attributes: spec.attrs, name, stream: spec.stream, toxicity: 1, type: spec.type };
      assert.deepEqual(toxic.toJson(), expected, "addToxic returns exactly the Toxiproxy attributes");
      assert.equal(toxic.getPath(), `${apiUrl}/proxies/${pname}/toxics/${name}`);

      const fetched = await p.getToxic(name);
      assert.ok(fetched instanceof Toxic);
      assert.deepEqual(fetched.toJson(), expected);
      const listed = await rawGet(apiUrl, `/proxies/${pname}/toxics`);
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body.map((t) => t.name), [name]);

      // Update the way the client's users do: the whole toxic with new attributes.
      const updated = await toxic.update({ ...toxic.toJson(), attributes: spec.next });
      assert.ok(updated instanceof Toxic);
      assert.deepEqual(updated.toJson(), { ...expected, attributes: spec.next });
      assert.deepEqual((await p.getToxic(name)).attributes, spec.next);

      // Toxicity alone: attributes are kept (an update merges).
      const half = await updated.update({ ...updated.toJson(), toxicity: 0.5 });
      assert.equal(half.toxicity, 0.5);
      assert.deepEqual(half.attributes, spec.next);

      // A duplicate name is a conflict.
      await assert.rejects(p.addToxic({ name, type: spec.type, stream: spec.stream, toxicity: 1,
                                        attributes: spec.attrs }), isStatusError(409));

      await half.remove();
      await assert.rejects(p.getToxic(name), isStatusError(404));
      await assert.rejects(half.remove(), isStatusError(404));
      assert.deepEqual((await rawGet(apiUrl, `/proxies/${pname}/toxics`)).body, []);
    } finally {
      await p.remove();
    }
  });
}

test("slicer with Toxiproxy's zero defaults is refused (400), not a crash", async () => {
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_bad_slicer", listen: "127.0.0.1:0", upstream: echoAddr });
  try {
    await assert.rejects(p.addToxic({ name: "s", type: "slicer", stream: "downstream", toxicity: 1,
                                      attributes: { average_size: 0, size_variation: 0, delay: 0 } }),
                         isStatusError(400));
    await assert.rejects(p.addToxic({ name: "b", type: "bandwidth", stream: "downstream", toxicity: 1,
                                      attributes: { rate: -1 } }), isStatusError(400));
    assert.deepEqual((await rawGet(apiUrl, "/proxies/node_bad_slicer/toxics")).body, []);
    assert.equal((await roundTrip(portOf(p.listen), Buffer.from("still alive"))).data.toString(),
                 "still alive");
  } finally {
    await p.remove();
  }
});

test("toxics added through the client act on traffic", async () => {
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_traffic", listen: "127.0.0.1:0", upstream: echoAddr });
  const port = portOf(p.listen);
  try {
    const lat = await p.addToxic({ name: "lat", type: "latency", stream: "upstream", toxicity: 1,
                                   attributes: { latency: 150, jitter: 0 } });
    const slow = await roundTrip(port, Buffer.from("slow"));
    assert.equal(slow.data.toString(), "slow");
    assert.ok(slow.ms >= 150, `latency 150 but the round trip took ${slow.ms.toFixed(1)} ms`);
    await lat.remove();

    const lim = await p.addToxic({ name: "lim", type: "limit_data", stream: "downstream", toxicity: 1,
                                   attributes: { bytes: 10 } });
    const cut = await roundTrip(port, Buffer.alloc(100, 0x61), 3000);
    assert.equal(cut.data.length, 10, "limit_data 10: exactly 10 bytes come back");
    await lim.remove();
    const fast = await roundTrip(port, Buffer.from("fast"));
    assert.ok(fast.ms < 150, `no toxics but the round trip took ${fast.ms.toFixed(1)} ms`);
  } finally {
    await p.remove();
  }
});

test("ioredis through faultline: latency delays a GET, reset_peer fails it, removal heals", async () => {
  ({ proc: redis, port: redisPort } = await startRedis(tmpDir));
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_redis", listen: "127.0.0.1:0", upstream: `127.0.0.1:${redisPort}` });
  const opts = { host: "127.0.0.1", port: portOf(p.listen), maxRetriesPerRequest: 0,
                 retryStrategy: () => null, enableOfflineQueue: false, lazyConnect: true,
                 connectTimeout: 5000, commandTimeout: 5000 };
  const clients = [];
  const newClient = async () => {
    const r = new Redis(opts);
    r.on("error", () => {});  // ECONNRESET is expected below; the command's rejection is checked
    clients.push(r);
    await r.connect();
    return r;
  };
  try {
    const r = await newClient();
    assert.equal(await r.set("faultline:k", "v1"), "OK");
    let t = nowMs();
    assert.equal(await r.get("faultline:k"), "v1");
    assert.ok(nowMs() - t < 150, `GET without toxics took ${(nowMs() - t).toFixed(1)} ms`);

    const lat = await p.addToxic({ name: "lat", type: "latency", stream: "downstream", toxicity: 1,
                                   attributes: { latency: 200, jitter: 0 } });
    t = nowMs();
    assert.equal(await r.get("faultline:k"), "v1");
    const ms = nowMs() - t;
    assert.ok(ms >= 199, `downstream latency 200 but GET took ${ms.toFixed(1)} ms`);
    assert.ok(ms < 200 + 300, `downstream latency 200 but GET took ${ms.toFixed(1)} ms`);
    await lat.remove();
    t = nowMs();
    assert.equal(await r.get("faultline:k"), "v1");
    assert.ok(nowMs() - t < 150, `latency removed but GET took ${(nowMs() - t).toFixed(1)} ms`);

    const rp = await p.addToxic({ name: "rp", type: "reset_peer", stream: "upstream", toxicity: 1,
                                  attributes: { timeout: 0 } });
    t = nowMs();
    await assert.rejects(r.get("faultline:k"), (err) => {
      const text = `${err.code || ""} ${err.message || ""}`;
      assert.match(text, /ECONNRESET|Connection is closed/, `unexpected error: ${text}`);
      return true;
    });
    assert.ok(nowMs() - t < 3000, `reset_peer took ${(nowMs() - t).toFixed(1)} ms to fail the GET`);
    await rp.remove();

    const r2 = await newClient();
    assert.equal(await r2.get("faultline:k"), "v1");
    assert.equal(await r2.set("faultline:k", "v2"), "OK");
    assert.equal(await r2.get("faultline:k"), "v2");
  } finally {
    for (const c of clients) c.disconnect();
    await p.remove();
  }
});
