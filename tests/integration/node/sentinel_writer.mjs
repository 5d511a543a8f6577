// Not a test itself: the client side of test_sentinel_failover.py's drill. ioredis in
// sentinel mode (it asks the sentinels where the master is, and asks again after losing it)
// writes keys in a loop for a while, one at a time; a write counts as acknowledged when
// Redis answered OK. Then it asks a sentinel where the master is now, reads every
// acknowledged key back from there, and prints one JSON summary on stdout for the drill's
// tolerances:
//   acked, errors, lost (acked keys missing or different on the current master),
//   unverified (acked keys it could not read back), endpoints (acks per master address, in the
//   order first used), acked_after_switch (acks on another address than the first one),
//   master_after (what the sentinel says now), no_write_lost, reconnected.
// Usage: node sentinel_writer.mjs SENTINEL_PORT[,PORT...] MASTER_NAME SECONDS [SUMMARY_FILE]
// (the summary also goes to SUMMARY_FILE, for the test to read after the drill).
// Loopback only. Every call is bounded (connect/command timeouts), so is the loop.
import fs from "node:fs";

let Redis;
try {
  ({ default: Redis } = await import("ioredis"));
} catch (e) {
  throw new Error(`ioredis not installed: run ./dev setup (npm install in tests/integration) — ${e.message}`);
}

const [portsArg, masterName, secondsArg, summaryFile] = process.argv.slice(2);
if (!portsArg || !masterName || !secondsArg) {
  console.error("usage: node sentinel_writer.mjs SENTINEL_PORT[,PORT...] MASTER_NAME SECONDS");
  process.exit(2);
}
const sentinels = portsArg.split(",").map((p) => ({ host: "127.0.0.1", port: Number(p) }));
const seconds = Number(secondsArg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const redis = new Redis({
  sentinels,
  name: masterName,
  connectTimeout: 1000,
  commandTimeout: 1500,          // a write stuck on a dead connection fails instead of hanging
  maxRetriesPerRequest: 50,
  retryStrategy: () => 100,      // reconnect (asking the sentinels again) every 100 ms
  sentinelRetryStrategy: () => 100,
  enableOfflineQueue: true,
  lazyConnect: false,
});
redis.on("error", () => {});     // connection errors are expected while the master is cut

let endpoint = null;             // the master address the current connection reached
redis.on("ready", () => {
  endpoint = redis.stream ? `${redis.stream.remoteAddress}:${redis.stream.remotePort}` : "?";
});
let reconnects = 0;
redis.on("reconnecting", () => { reconnects++; });

const acked = [];                // [key, value]
const perEndpoint = new Map();   // address -> acks, in the order first used
let errors = 0;
let firstError = null;
const deadline = Date.now() + seconds * 1000;
for (let i = 0; Date.now() < deadline; i++) {
  const key = `sentinel-drill:${i}`;
  const value = `v${i}`;
  try {
    const reply = await redis.set(key, value);
    if (reply === "OK") {
      acked.push([key, value]);
      perEndpoint.set(endpoint, (perEndpoint.get(endpoint) || 0) + 1);
    } else {
      errors++;
    }
  } catch (e) {
    errors++;
    if (!firstError) firstError = e.message;
    await sleep(20);
  }
  await sleep(1);  // a few hundred writes a second: plenty for the verdict, light on a busy machine
}
redis.disconnect();

// Where the sentinels say the master is now, and every acknowledged key read back from there.
async function masterNow() {
  for (const s of sentinels) {
    const c = new Redis({ host: s.host, port: s.port, connectTimeout: 1000, commandTimeout: 2000,
                          maxRetriesPerRequest: 0, retryStrategy: null, lazyConnect: true });
    c.on("error", () => {});
    try {
      await c.connect();
      const addr = await c.call("SENTINEL", "get-master-addr-by-name", masterName);
      if (Array.isArray(addr)) return `${addr[0]}:${addr[1]}`;
    } catch {
      // try the next sentinel
    } finally {
      c.disconnect();
    }
  }
  return null;
}

const masterAfter = await masterNow();
let lost = 0;
let unverified = acked.length;
let readError = null;
const lostExamples = [];
if (masterAfter) {
  const [host, port] = [masterAfter.slice(0, masterAfter.lastIndexOf(":")), Number(masterAfter.slice(masterAfter.lastIndexOf(":") + 1))];
  const c = new Redis({ host, port, connectTimeout: 1000, commandTimeout: 5000, maxRetriesPerRequest: 0,
                        retryStrategy: null, lazyConnect: true });
  c.on("error", () => {});
  try {
    await c.connect();
    for (let i = 0; i < acked.length; i += 500) {
      const batch = acked.slice(i, i + 500);
      const values = await c.mget(...batch.map(([k]) => k));
      batch.forEach(([k, v], j) => {
        unverified--;
        if (values[j] !== v) {
          lost++;
          if (lostExamples.length < 5) lostExamples.push(`${k} = ${values[j]}`);
        }
      });
    }
  } catch (e) {
    readError = e.message;
  } finally {
    c.disconnect();
  }
} else {
  readError = "no sentinel named a master";
}

const endpoints = Object.fromEntries(perEndpoint);
const first = perEndpoint.size ? [...perEndpoint.keys()][0] : null;
const ackedAfterSwitch = [...perEndpoint].filter(([a]) => a !== first).reduce((n, [, c]) => n + c, 0);
const summary = JSON.stringify({
  acked: acked.length, errors, reconnects, first_error: firstError, endpoints,
  acked_after_switch: ackedAfterSwitch, master_after: masterAfter,
  lost, unverified, lost_examples: lostExamples, read_error: readError,
  no_write_lost: acked.length > 0 && lost === 0 && unverified === 0,
  reconnected: ackedAfterSwitch > 0,
});
if (summaryFile) fs.writeFileSync(summaryFile, summary + "\n");
console.log(summary);
