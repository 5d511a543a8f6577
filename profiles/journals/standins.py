"""Local stand-ins for the seed stack's HTTP services, used only to make the bundled journals.

- An OpenAI-compatible provider, as Moonshot Kimi (`/v1/...`) or Zhipu GLM (`/api/paas/v4/...`)
  serve it: `POST <base>/chat/completions` (JSON, or SSE with `"stream": true`) and
  `GET <base>/models`. It wants `Authorization: Bearer <any key>` and answers 401 in the
  provider's error shape without one. Answers are deterministic (ids and `created` come from a
  counter), so a re-made journal differs from the committed one only in timestamps.
- A Redis Commander look-alike: `GET /` (the page its compose healthcheck fetches).

Nothing here talks to the internet and no real key is used anywhere.
"""
import http.server
import json
import threading
import time

PROVIDERS = {
    # name: (path prefix, default model, models, error body for a missing key)
    "kimi": ("/v1", "kimi-k2-0905-preview",
             ["kimi-k2-0905-preview", "kimi-k2-turbo-preview", "kimi-thinking-preview", "kimi-k2-0711-preview"],
             {"error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}}),
    "glm": ("/api/paas/v4", "glm-4.5-flash",
            ["glm-4.5-flash", "glm-4.6", "glm-4.5", "glm-4.5-air"],
            {"error": {"code": "1000", "message": "Authentication failed"}}),
}

# What the stand-in "model" says: the last user message, answered in a few words.
def answer_for(messages):
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(last, list):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    return f"Stand-in answer to: {last[:80]}"


class ProviderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin-provider"
    sys_version = ""
    provider = "kimi"

    def log_message(self, fmt, *args):
        pass

    def _send_json(self, status, body, extra_headers=()):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _next_id(self):
        with self.server.lock:
            self.server.count += 1
            return self.server.count

    def _authorized(self):
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and len(auth) > len("Bearer ")

    def do_GET(self):
        prefix, _, models, unauthorized = PROVIDERS[self.provider]
        if self.path != prefix + "/models":
            return self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        if not self._authorized():
            return self._send_json(401, unauthorized)
        self._send_json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1730419200, "owned_by": self.provider} for m in models]})

    def do_POST(self):
        prefix, default_model, models, unauthorized = PROVIDERS[self.provider]
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path != prefix + "/chat/completions":
            return self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        if not self._authorized():
            return self._send_json(401, unauthorized)
        try:
            req = json.loads(raw)
        except ValueError:
            return self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        model = req.get("model", default_model)
        if model not in models:
            return self._send_json(404, {"error": {"message": f"model {model} not found", "type": "resource_not_found_error"}})
        n = self._next_id()
        cid = f"chatcmpl-standin-{self.provider}-{n:04d}"
        created = 1764201600 + n
        text = answer_for(req.get("messages", []))
        if not req.get("stream"):
            return self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": len(text.split()), "total_tokens": 12 + len(text.split())}})
        # OpenAI-style SSE, chunked: a role delta, a few content deltas, the finish, [DONE].
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta, finish=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        words = text.split(" ")
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(words)]
        events.append(chunk({}, "stop"))
        payloads = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
        payloads.append(b"data: [DONE]\n\n")
        for p in payloads:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            self.wfile.flush()
            time.sleep(0.04)  # a model streams tokens over time; replay keeps these gaps
        self.wfile.write(b"0\r\n\r\n")


class CommanderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin-redis-commander"
    sys_version = ""
    PAGE = (b"<!DOCTYPE html><html><head><title>Redis Commander (faultline stand-in)</title></head>"
            b"<body><h1>Redis Commander</h1><p>stand-in page recorded by profiles/journals/make.py</p></body></html>\n")

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path != "/":
            body = b"Not Found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        else:
            body = self.PAGE
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(kind):
    """Starts a stand-in on 127.0.0.1 and a free port; returns (server, "127.0.0.1:PORT")."""
    if kind == "redis-commander":
        handler = CommanderHandler
    else:
        handler = type(f"{kind}Handler", (ProviderHandler,), {"provider": kind})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.count = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"
