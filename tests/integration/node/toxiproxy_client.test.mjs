// toxiproxy-node-client 4.x (npm) against faultline: the real client, unmodified.
// Run: node --test tests/integration/node/toxiproxy_client.test.mjs
// Needs tests/integration/node_modules (./dev setup) and the binary (FAULTLINE_BIN or
// build/faultline). Loopback only, port 0 everywhere.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { portOf, rawGet, roundTrip, startEcho, startFaultline, statusErrorMatcher,
         stopChild } from "./harness.mjs";

let client;
try {
  client = createRequire(import.meta.url)("toxiproxy-node-client");
} catch (e) {
  throw new Error(`toxiproxy-node-client not installed: run ./dev setup ` +
                  `(npm install in tests/integration) — ${e.message}`);
}
const { Toxiproxy, Proxy, Toxic, ToxiproxyError } = client;
const isStatusError = statusErrorMatcher(ToxiproxyError);

let server;      // faultline child process
let apiUrl;      // http://127.0.0.1:PORT
let echo;        // net.Server
let echoAddr;    // 127.0.0.1:PORT
let tmpDir;

// Resolves "refused" | "connected".
function connectOutcome(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error("connect timed out")); }, 3000);
    sock.on("connect", () => { clearTimeout(timer); sock.destroy(); resolve("connected"); });
    sock.on("error", (e) => {
      clearTimeout(timer);
      if (e.code === "ECONNREFUSED") resolve("refused");
      else reject(e);
    });
  });
}

before(async () => {
  echo = await startEcho();
  echoAddr = `127.0.0.1:${echo.address().port}`;
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "faultline-node-"));
  ({ proc: server, url: apiUrl } = await startFaultline(tmpDir));
});

after(async () => {
  await stopChild(server);
  if (echo) await new Promise((r) => echo.close(r));
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

test("getVersion returns Toxiproxy's version JSON", async () => {
  const tp = new Toxiproxy(apiUrl);
  const text = await tp.getVersion();
  assert.deepEqual(JSON.parse(text), { version: "2.12.0" });
});

test("createProxy, get, getAll, update (enable/disable), remove", async () => {
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_a", listen: "127.0.0.1:0", upstream: echoAddr });
  assert.ok(p instanceof Proxy);
  assert.equal(p.name, "node_a");
  assert.equal(p.upstream, echoAddr);
  assert.equal(p.enabled, true);
  assert.match(p.listen, /^127\.0\.0\.1:\d+$/);
  const port = portOf(p.listen);
  assert.notEqual(port, 0, "listen must report the bound port");
  assert.deepEqual(p.toJson(), { enabled: true, listen: p.listen, name: "node_a", upstream: echoAddr });

  const rt = await roundTrip(port, Buffer.from("hello through faultline"));
  assert.equal(rt.data.toString(), "hello through faultline");

  // duplicate → 409
  await assert.rejects(
    tp.createProxy({ name: "node_a", listen: "127.0.0.1:0", upstream: echoAddr }),
    isStatusError(409));

  const got = await tp.get("node_a");
  assert.ok(got instanceof Proxy);
  assert.deepEqual(got.toJson(), p.toJson());

  const all = await tp.getAll();
  assert.ok(Object.hasOwn(all, "node_a"), `getAll keys: ${Object.keys(all)}`);
  assert.ok(all.node_a instanceof Proxy);
  assert.deepEqual(all.node_a.toJson(), p.toJson());

  // update (the client POSTs to /proxies/{name}): the full body, as typed
  const off = await p.update({ enabled: false, listen: p.listen, upstream: p.upstream });
  assert.ok(off instanceof Proxy);
  assert.equal(off.enabled, false);
  assert.equal(off.name, "node_a");
  assert.equal(off.upstream, echoAddr);
  assert.equal(await connectOutcome(port), "refused");
  const on = await off.update({ enabled: true, listen: p.listen, upstream: p.upstream });
  assert.equal(on.enabled, true);
  assert.equal(on.listen, p.listen, "re-enabled on the same address");
  assert.equal((await roundTrip(port, Buffer.from("again"))).data.toString(), "again");

  // update with a partial body (JS callers do pass just { enabled })
  const off2 = await on.update({ enabled: false });
  assert.equal(off2.enabled, false);
  assert.equal(off2.upstream, echoAddr, "partial update must keep upstream");
  const on2 = await off2.update({ enabled: true });
  assert.equal(on2.enabled, true);
  assert.equal(portOf(on2.listen), port);

  await on2.remove();
  await assert.rejects(tp.get("node_a"), isStatusError(404));
  const after = await tp.getAll();
  assert.ok(!Object.hasOwn(after, "node_a"));
  await assert.rejects(on2.remove(), isStatusError(404));
});

test("populate: proxies, idempotence and an empty array", async () => {
  const tp = new Toxiproxy(apiUrl);
  const res = await tp.populate([
    { name: "pop_1", listen: "127.0.0.1:0", upstream: echoAddr },
    { name: "pop_2", listen: "127.0.0.1:0", upstream: echoAddr, enabled: false },
  ]);
  assert.deepEqual(Object.keys(res).sort(), ["pop_1", "pop_2"]);
  assert.ok(res.pop_1 instanceof Proxy);
  assert.equal(res.pop_1.enabled, true);
  assert.equal(res.pop_1.upstream, echoAddr);
  assert.notEqual(portOf(res.pop_1.listen), 0);
  assert.equal(res.pop_2.enabled, false);
  const rt = await roundTrip(portOf(res.pop_1.listen), Buffer.from("populated"));
  assert.equal(rt.data.toString(), "populated");

  // Re-populating with the bound address keeps the proxy (same listen, same upstream).
  const again = await tp.populate([{ name: "pop_1", listen: res.pop_1.listen, upstream: echoAddr }]);
  assert.deepEqual(Object.keys(again), ["pop_1"]);
  assert.equal(again.pop_1.listen, res.pop_1.listen);

  // An empty array must not throw (the client iterates res.data.proxies with for…of).
  const empty = await tp.populate([]);
  assert.deepEqual(empty, {});

  // Invalid entry → 400, surfaced as ToxiproxyError
  await assert.rejects(tp.populate([{ name: "pop_bad", listen: "127.0.0.1:0" }]), isStatusError(400));

  for (const name of ["pop_1", "pop_2"]) await (await tp.get(name)).remove();
});

test("latency toxic: addToxic, getToxic, update, remove", async () => {
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_tox", listen: "127.0.0.1:0", upstream: echoAddr });
  const port = portOf(p.listen);

  const toxic = await p.addToxic({
    name: "lat", type: "latency", stream: "downstream", toxicity: 1,
    attributes: { latency: 100, jitter: 0 },
  });
  assert.ok(toxic instanceof Toxic);
  assert.deepEqual(toxic.toJson(), {
    attributes: { latency: 100, jitter: 0 }, name: "lat", stream: "downstream", toxicity: 1,
    type: "latency",
  });
  assert.equal(toxic.getPath(), `${apiUrl}/proxies/node_tox/toxics/lat`);

  const rt = await roundTrip(port, Buffer.from("slow"));
  assert.equal(rt.data.toString(), "slow");
  assert.ok(rt.ms >= 90, `latency 100 ms but the round trip took ${rt.ms.toFixed(1)} ms`);

  await assert.rejects(p.addToxic({
    name: "lat", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 1, jitter: 0 },
  }), isStatusError(409));
  await assert.rejects(p.addToxic({
    name: "bogus", type: "no_such_type", stream: "downstream", toxicity: 1, attributes: {},
  }), isStatusError(400));

  const fetched = await p.getToxic("lat");
  assert.deepEqual(fetched.toJson(), toxic.toJson());

  // Toxic.update posts the whole toxic (as the client's users do: {...toJson(), attributes})
  const updated = await toxic.update({ ...toxic.toJson(), attributes: { latency: 250, jitter: 10 } });
  assert.ok(updated instanceof Toxic);
  assert.deepEqual(updated.toJson(), {
    attributes: { latency: 250, jitter: 10 }, name: "lat", stream: "downstream", toxicity: 1,
    type: "latency",
  });
  assert.deepEqual((await p.getToxic("lat")).attributes, { latency: 250, jitter: 10 });

  // An upstream toxic with toxicity < 1 keeps its values
  const up = await p.addToxic({
    name: "lat_up", type: "latency", stream: "upstream", toxicity: 0.5, attributes: { latency: 5, jitter: 0 },
  });
  assert.equal(up.stream, "upstream");
  assert.equal(up.toxicity, 0.5);
  const listed = await rawGet(apiUrl, "/proxies/node_tox/toxics");
  assert.deepEqual(listed.body.map((t) => t.name), ["lat_up", "lat"], "upstream toxics first");

  await updated.remove();
  await up.remove();
  await assert.rejects(p.getToxic("lat"), isStatusError(404));
  await assert.rejects(updated.remove(), isStatusError(404));
  assert.deepEqual((await rawGet(apiUrl, "/proxies/node_tox")).body.toxics, []);

  const fast = await roundTrip(port, Buffer.from("fast"));
  assert.ok(fast.ms < 200, `toxic removed but the round trip took ${fast.ms.toFixed(1)} ms`);
  await p.remove();
});

test("reset re-enables proxies and removes all toxics", async () => {
  const tp = new Toxiproxy(apiUrl);
  const p = await tp.createProxy({ name: "node_reset", listen: "127.0.0.1:0", upstream: echoAddr });
  await p.addToxic({ name: "lat", type: "latency", stream: "upstream", toxicity: 1,
                     attributes: { latency: 50, jitter: 0 } });
  const off = await p.update({ enabled: false, listen: p.listen, upstream: p.upstream });
  assert.equal(off.enabled, false);

  const r = await tp.reset();   // POST /reset with no body
  assert.equal(r, undefined);
  const now = await tp.get("node_reset");
  assert.equal(now.enabled, true);
  assert.equal(now.listen, p.listen);
  const raw = await rawGet(apiUrl, "/proxies/node_reset");
  assert.deepEqual(raw.body.toxics, []);
  assert.equal((await roundTrip(portOf(p.listen), Buffer.from("after reset"))).data.toString(),
               "after reset");
  await now.remove();
});

test("errors surface as ToxiproxyError", async () => {
  const tp = new Toxiproxy(apiUrl);
  await assert.rejects(tp.get("does_not_exist"), isStatusError(404));
  await assert.rejects(tp.createProxy({ name: "", listen: "127.0.0.1:0", upstream: echoAddr }),
                       isStatusError(400));
  const dead = new Toxiproxy("http://127.0.0.1:1");
  await assert.rejects(dead.getAll(), (e) => e instanceof ToxiproxyError);
});
