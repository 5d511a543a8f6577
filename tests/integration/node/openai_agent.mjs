// Not a test itself: the "workflow" of test_openai_recovery.py. A small HTTP server on
// 127.0.0.1 (port 0) whose GET /step/N runs step N of an LLM workflow with the official
// `openai` v4 client against BASE_URL: even steps stream a chat completion (SSE), odd steps
// ask for a plain one. A step succeeds (200) when the answer is complete (finish_reason
// "stop" and the expected text); otherwise it answers 502 with why.
//
// Two kinds of retry, both on with --retries on, both off with --retries off:
//   - the client's own: openai's maxRetries (429 honouring Retry-After, 5xx with backoff);
//   - the workflow's: a step whose stream broke mid-way (openai v4 does not retry that, it
//     throws "Premature close") is run again, up to STEP_ATTEMPTS times.
// So "a failure does not end the workflow" is what --retries on should show, and what
// --retries off should not.
//
// Usage: node openai_agent.mjs BASE_URL EXPECTED_TEXT --retries on|off PORT_FILE
// Writes 127.0.0.1:PORT to PORT_FILE once listening. Loopback only; every call is bounded.
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let OpenAI;
try {
  OpenAI = require("openai");
} catch (e) {
  throw new Error(`openai not installed: run ./dev setup (npm install in tests/integration) — ${e.message}`);
}

const [baseUrl, expectedText, flag, mode, portFile] = process.argv.slice(2);
if (!baseUrl || !expectedText || flag !== "--retries" || !["on", "off"].includes(mode) || !portFile) {
  console.error("usage: node openai_agent.mjs BASE_URL EXPECTED_TEXT --retries on|off PORT_FILE");
  process.exit(2);
}
const retries = mode === "on";
const STEP_ATTEMPTS = retries ? 8 : 1;
const client = new OpenAI({ apiKey: "sk-test", baseURL: baseUrl, maxRetries: retries ? 4 : 0, timeout: 10000 });
const MESSAGES = [{ role: "user", content: "Say hello" }];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One attempt of a step: resolves the answer's text, throws with why it is incomplete.
async function attempt(streaming) {
  if (!streaming) {
    const r = await client.chat.completions.create({ model: "stub-model", messages: MESSAGES });
    const choice = r.choices[0];
    if (choice.finish_reason !== "stop") throw new Error(`finish_reason ${choice.finish_reason}`);
    return choice.message.content;
  }
  const stream = await client.chat.completions.create({ model: "stub-model", messages: MESSAGES, stream: true });
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  if (finish !== "stop") throw new Error(`the stream ended without finish_reason "stop" after ${JSON.stringify(text)}`);
  return text;
}

let stepRetries = 0;
const failures = {};  // why steps failed: the HTTP status of an API error, or "stream"
async function step(n) {
  const streaming = n % 2 === 0;
  let why = "";
  let kind = "";
  for (let i = 0; i < STEP_ATTEMPTS; i++) {
    if (i > 0) {
      stepRetries++;
      await sleep(150);
    }
    try {
      const text = await attempt(streaming);
      if (text !== expectedText) throw new Error(`unexpected answer ${JSON.stringify(text)}`);
      return { ok: true, attempts: i + 1, streaming };
    } catch (e) {
      why = `${e.constructor.name}: ${e.message}`;
      kind = e instanceof OpenAI.APIError ? String(e.status ?? "connection") : "stream";
      // Only a broken stream is the workflow's to retry; an API error already had the
      // client's own retries.
      if (e instanceof OpenAI.APIError) break;
    }
  }
  failures[kind] = (failures[kind] || 0) + 1;
  return { ok: false, why, streaming };
}

const server = http.createServer(async (req, res) => {
  const m = /^\/step\/(\d+)$/.exec(req.url);
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ step_retries: stepRetries, failures }));
  }
  if (req.method !== "GET" || !m) {
    res.writeHead(404);
    return res.end();
  }
  const r = await step(Number(m[1]));
  res.writeHead(r.ok ? 200 : 502, { "content-type": "application/json" });
  res.end(JSON.stringify(r));
});
server.keepAliveTimeout = 30000;
server.listen(0, "127.0.0.1", () => {
  fs.writeFileSync(portFile, `127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
