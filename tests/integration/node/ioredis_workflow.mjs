// Not a test itself: the client side of test_verdict_pairs_redis.py's drills (a `command`
// activity with "steps": true). ioredis runs a small write workflow against one Redis address
// for a while: each step SETs a key and GETs it back, paced at RATE steps a second, one step at
// a time. Every step prints one JSON line on stdout:
//   {"start": UNIX_S, "end": UNIX_S, "ok": true|false, "detail": "..."}
// and at the end one summary line {"summary": {...}} (not a step: it has no "start").
// Usage: node ioredis_workflow.mjs PORT SECONDS MODE [RATE]
// MODE picks the client's recovery logic:
//   recovering   ioredis' default retryStrategy (reconnect with backoff, commands queued) and
//                reconnectOnError returning 2 on READONLY (reconnect and send the command again)
//   no-retry     retryStrategy: () => null, maxRetriesPerRequest: 0: a lost connection ends the
//                client, every later step fails
//   no-readonly  default retries, no reconnectOnError: a READONLY reply fails the step
// Loopback only. Every command is bounded (commandTimeout), so is the loop (SECONDS), and a
// watchdog ends the process SECONDS + 10 s after it started whatever happens.
let Redis;
try {
  ({ default: Redis } = await import("ioredis"));
} catch (e) {
  console.error(`ioredis not installed: run ./dev setup (npm install in tests/integration) — ${e.message}`);
  process.exit(2);
}

const [portArg, secondsArg, mode, rateArg] = process.argv.slice(2);
const MODES = {
  recovering: {
    reconnectOnError: (err) => (err.message.startsWith("READONLY") ? 2 : false),
  },
  "no-retry": { retryStrategy: () => null, maxRetriesPerRequest: 0 },
  "no-readonly": {},
};
if (!portArg || !secondsArg || !(mode in MODES)) {
  console.error(`usage: node ioredis_workflow.mjs PORT SECONDS ${Object.keys(MODES).join("|")} [RATE]`);
  process.exit(2);
}
const seconds = Number(secondsArg);
const rate = Number(rateArg || 20);
const watchdog = setTimeout(() => {
  console.error("ioredis_workflow: watchdog: still running after SECONDS + 10 s");
  process.exit(3);
}, (seconds + 10) * 1000);
watchdog.unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now() / 1000;

const redis = new Redis({
  host: "127.0.0.1",
  port: Number(portArg),
  connectTimeout: 1000,
  commandTimeout: 3000,   // longer than any fault window of the drills, so a recovering client rides it out
  lazyConnect: true,
  ...MODES[mode],
});
redis.on("error", () => {});  // connection errors are expected while a fault lasts: steps report them
try {
  await redis.connect();
} catch (e) {
  console.error(`cannot connect to 127.0.0.1:${portArg}: ${e.message}`);
}

const summary = { mode, steps: 0, ok: 0, failed: 0, errors: {}, reconnects: 0 };
redis.on("reconnecting", () => { summary.reconnects++; });
const start = now();
const deadline = start + seconds;
for (let i = 0; now() < deadline; i++) {
  const due = start + i / rate;
  if (now() < due) await sleep((due - now()) * 1000);
  if (now() >= deadline) break;
  const key = `workflow:${process.pid}:${i}`;
  const value = `v${i}`;
  const t0 = now();
  let ok = false;
  let detail;
  try {
    const set = await redis.set(key, value);
    const got = await redis.get(key);
    ok = set === "OK" && got === value;
    detail = ok ? "SET+GET ok" : `SET ${set}, GET ${got}`;
  } catch (e) {
    detail = `${e.name}: ${e.message}`.slice(0, 200);
    const kind = e.message.split(" ")[0];
    summary.errors[kind] = (summary.errors[kind] || 0) + 1;
  }
  summary.steps++;
  if (ok) summary.ok++; else summary.failed++;
  console.log(JSON.stringify({ start: t0, end: now(), ok, detail }));
}
redis.disconnect();
console.log(JSON.stringify({ summary }));
process.exit(0);
