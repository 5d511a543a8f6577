// StreamAnnotator: decoding, redaction in place and message annotations for HTTP, MCP,
// SSE, RESP and plain TCP streams, fed in pieces the way a recording feeds it.
#include <catch2/catch.hpp>

#include <initializer_list>

#include "protocols/jsonrpc.hpp"
#include "tests/recorder/support.hpp"

using namespace faultline;
using namespace faultline::test;

namespace {

constexpr auto npos = std::string::npos;
const std::string kBearer = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-abcdef123";

std::string cmd(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::string hex(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}

// `body` as a chunked body of `piece`-byte chunks, last chunk included.
std::string chunked(const std::string& body, std::size_t piece) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); i += piece) {
    const std::string part = body.substr(i, piece);
    out += hex(part.size()) + "\r\n" + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

// The payload of a chunked body (no extensions, no trailers).
std::string dechunk(std::string_view s) {
  std::string out;
  std::size_t p = 0;
  for (;;) {
    const std::size_t eol = s.find("\r\n", p);
    const std::size_t n = std::stoul(std::string(s.substr(p, eol - p)), nullptr, 16);
    if (n == 0) return out;
    out.append(s.substr(eol + 2, n));
    p = eol + 2 + n + 2;
  }
}

std::string post(const std::string& target, const std::string& type, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: h\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string body_of(const std::string& message) { return message.substr(message.find("\r\n\r\n") + 4); }

}  // namespace

// ---- HTTP headers ------------------------------------------------------------------------------

TEST_CASE("annotator: Authorization split at every byte keeps the scheme and loses the credential") {
  const std::string req = "GET /v1/models HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer " + kBearer +
                          "\r\nAccept: */*\r\n\r\n";
  for (std::size_t i = 0; i <= req.size(); ++i) {
    INFO("split at " << i);
    auto r = redactor();
    const auto out = annotate(Protocol::http, Stream::upstream, r, split(req, i));
    REQUIRE(out.written.size() == req.size());
    CHECK(out.written.find(kBearer) == npos);
    CHECK(out.written.find("Authorization: Bearer " + r->token(kBearer) + "\r\n") != npos);
    // A head split across chunks is held until complete: nothing of it is final early.
    if (i < req.size()) CHECK(out.finals[0] == 0);
    const auto heads = out.messages("http_request");
    REQUIRE(heads.size() == 1);
    CHECK(field(*heads[0], "method") == quoted("GET"));
    CHECK(field(*heads[0], "target") == quoted("/v1/models"));
    CHECK(field(*heads[0], "headers.1.1") == quoted("Bearer " + r->token(kBearer)));
    CHECK(heads[0]->offset == 0);
    CHECK(heads[0]->length == req.size());
    const auto reds = out.redactions();
    REQUIRE(reds.size() == 1);
    CHECK(field(*reds[0], "rule") == quoted("header:authorization"));
    CHECK(reds[0]->offset == req.find(kBearer));
    CHECK(reds[0]->length == kBearer.size());
  }
}

TEST_CASE("annotator: Proxy-Authorization, x-api-key, api-key and user headers are redacted whole or after the scheme") {
  rec::RedactionRules rules;
  rules.headers = {"X-Tenant-Secret"};
  auto r = redactor("k", rules);
  const std::string req =
      "GET / HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNzd29yZA==\r\nx-api-key: xak-1234567890\r\n"
      "API-Key:   ak-0987654321  \r\nX-Tenant-Secret: tenant-secret-1\r\nAuthorization: opaque-token-only\r\n"
      "X-Other: keep-me\r\n\r\n";
  const auto out = annotate(Protocol::http, Stream::upstream, r, {req});
  REQUIRE(out.written.size() == req.size());
  for (const char* secret : {"dXNlcjpwYXNzd29yZA==", "xak-1234567890", "ak-0987654321", "tenant-secret-1",
                             "opaque-token-only"}) {
    INFO(secret);
    CHECK(out.written.find(secret) == npos);
    CHECK(out.written.find(r->token(secret)) != npos);
  }
  CHECK(out.written.find("Proxy-Authorization: Basic ") != npos);
  CHECK(out.written.find("API-Key:   " + r->token("ak-0987654321") + "  \r\n") != npos);
  CHECK(out.written.find("X-Other: keep-me") != npos);
  CHECK(out.redactions().size() == 5);
}

TEST_CASE("annotator: Cookie values go and names stay, Set-Cookie keeps its attributes") {
  auto r = redactor();
  const std::string req = "GET / HTTP/1.1\r\nCookie: sid=abc123def456; theme=dark;quoted=\"q-value-1\"\r\n\r\n";
  const auto up = annotate(Protocol::http, Stream::upstream, r, {req});
  CHECK(up.written.find("Cookie: sid=" + r->token("abc123def456") + "; theme=" + r->token("dark") + ";quoted=\"" +
                        r->token("q-value-1") + "\"\r\n") != npos);
  const std::string resp =
      "HTTP/1.1 200 OK\r\nSet-Cookie: session=s3ss10n-value; Path=/; HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n"
      "Content-Length: 0\r\n\r\n";
  const auto down = annotate(Protocol::http, Stream::downstream, r, {resp});
  CHECK(down.written.find("Set-Cookie: session=" + r->token("s3ss10n-value") +
                          "; Path=/; HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n") != npos);
  CHECK(down.redactions().size() == 1);
  const auto heads = down.messages("http_response");
  REQUIRE(heads.size() == 1);
  CHECK(field(*heads[0], "status") == "200");
}

TEST_CASE("annotator: secret query parameters in the request target are redacted") {
  auto r = redactor();
  const std::string req = "GET /v1/search?q=cats&api_key=AKIA1234567890&token=t0k3n#frag HTTP/1.1\r\nHost: h\r\n\r\n";
  const auto out = annotate(Protocol::http, Stream::upstream, r, {req});
  CHECK(out.written.find("?q=cats&api_key=" + r->token("AKIA1234567890") + "&token=" + r->token("t0k3n") + "#frag") !=
        npos);
  const auto heads = out.messages("http_request");
  REQUIRE(heads.size() == 1);
  CHECK(field(*heads[0], "target")->find("AKIA1234567890") == npos);
}

// ---- JSON and form bodies ----------------------------------------------------------------------

TEST_CASE("annotator: JSON string values under secret keys are redacted at any depth, split at every byte") {
  const std::string body =
      R"({"user":"bob","auth":{"Password":"p4ss\"w0rd!","nested":[{"api_key":"sk-abcdefghij"}]},)"
      R"("token":12345,"secret":{"x":"y"},"note":"password","ACCESS_TOKEN" : "at-0123456789"})";
  const std::string req = post("/login", "application/json; charset=utf-8", body);
  for (std::size_t i = 0; i <= req.size(); i += (i < 120 ? 1 : 7)) {
    INFO("split at " << i);
    auto r = redactor();
    const auto out = annotate(Protocol::http, Stream::upstream, r, split(req, i));
    REQUIRE(out.written.size() == req.size());
    const std::string got = body_of(out.written);
    CHECK(jsonrpc::value_at(got, "user") == quoted("bob"));
    CHECK(jsonrpc::value_at(got, "auth.Password") == quoted(r->token("p4ss\"w0rd!", 11)));
    CHECK(jsonrpc::value_at(got, "auth.nested.0.api_key") == quoted(r->token("sk-abcdefghij")));
    CHECK(jsonrpc::value_at(got, "ACCESS_TOKEN") == quoted(r->token("at-0123456789")));
    CHECK(jsonrpc::value_at(got, "token") == "12345");  // only string values are redacted
    CHECK(jsonrpc::value_at(got, "secret") == R"({"x":"y"})");
    CHECK(jsonrpc::value_at(got, "note") == quoted("password"));  // a value, not a key
    CHECK(out.redactions().size() == 3);
  }
}

TEST_CASE("annotator: a chunked JSON body is redacted across its chunk framing") {
  auto r = redactor();
  const std::string body = R"({"model":"glm-4","api_key":"sk-0123456789abcdefghij","messages":[]})";
  for (std::size_t piece : {1u, 3u, 7u, 16u, 1000u}) {
    INFO("chunks of " << piece);
    const std::string req =
        "POST /v1/chat HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
        chunked(body, piece);
    std::vector<std::string> pieces;
    for (std::size_t i = 0; i < req.size(); i += 11) pieces.push_back(req.substr(i, 11));
    const auto out = annotate(Protocol::http, Stream::upstream, r, pieces);
    REQUIRE(out.written.size() == req.size());
    const std::string got = dechunk(body_of(out.written));
    CHECK(jsonrpc::value_at(got, "api_key") == quoted(r->token("sk-0123456789abcdefghij")));
    CHECK(jsonrpc::value_at(got, "model") == quoted("glm-4"));
  }
}

TEST_CASE("annotator: JSON bodies over 1 MiB are scanned as they stream") {
  auto r = redactor();
  const std::string filler(1200 * 1024, 'x');
  const std::string body = R"({"password":"first-secret-1","data":")" + filler + R"(","nested":{"token":"last-secret-2"}})";
  SECTION("with a Content-Length") {
    const std::string req = post("/upload", "application/json", body);
    std::vector<std::string> pieces;
    for (std::size_t i = 0; i < req.size(); i += 65536) pieces.push_back(req.substr(i, 65536));
    Feeder f(Protocol::http, Stream::upstream, r);
    std::size_t most_pending = 0;
    for (const auto& p : pieces) {
      f.feed(p);
      most_pending = std::max(most_pending, f.pending());
    }
    f.finish();
    CHECK(most_pending < 100 * 1024);  // streamed, not held
    CHECK(f.result.written.size() == req.size());
    CHECK(f.result.written.find("first-secret-1") == npos);
    CHECK(f.result.written.find("last-secret-2") == npos);
  }
  SECTION("chunked: held up to 1 MiB, then scanned") {
    const std::string req =
        "POST /upload HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
        chunked(body, 100000);
    std::vector<std::string> pieces;
    for (std::size_t i = 0; i < req.size(); i += 65536) pieces.push_back(req.substr(i, 65536));
    Feeder f(Protocol::http, Stream::upstream, r);
    std::size_t most_pending = 0;
    for (const auto& p : pieces) {
      f.feed(p);
      most_pending = std::max(most_pending, f.pending());
    }
    f.finish();
    CHECK(most_pending <= rec::StreamAnnotator::kMaxHeld);
    CHECK(f.result.written.size() == req.size());
    CHECK(f.result.written.find("first-secret-1") == npos);
    CHECK(f.result.written.find("last-secret-2") == npos);
  }
}

TEST_CASE("annotator: form bodies lose their secret parameters") {
  auto r = redactor();
  const std::string body = "grant_type=password&username=bob&password=hunter2hunter2&client_secret=cs-123456";
  const auto out = annotate(Protocol::http, Stream::upstream, r,
                            split(post("/oauth/token", "application/x-www-form-urlencoded", body), 70));
  CHECK(body_of(out.written) == "grant_type=password&username=bob&password=" + r->token("hunter2hunter2") +
                                    "&client_secret=" + r->token("cs-123456"));
}

TEST_CASE("annotator: an invalid JSON body still loses its key-value secrets") {
  auto r = redactor();
  const std::string body = R"({"password": "not-closed-secret", oops)";
  const auto out = annotate(Protocol::http, Stream::upstream, r, {post("/x", "application/json", body)});
  CHECK(out.written.find("not-closed-secret") == npos);
}

// ---- echo scan ---------------------------------------------------------------------------------

TEST_CASE("annotator: a redacted secret echoed later in the other direction is redacted there too") {
  auto r = redactor();
  const std::string req = post("/login", "application/json", R"({"password":"hunter2hunter2","pin":"12345","token":"abc12"})");
  const auto up = annotate(Protocol::http, Stream::upstream, r, {req});
  CHECK(up.written.find("hunter2hunter2") == npos);
  CHECK(up.written.find("abc12") == npos);  // redacted by its key…
  const std::string resp_body = "welcome! your password hunter2hunter2 was accepted; token abc12 kept";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(resp_body.size()) + "\r\n\r\n" + resp_body;
  const auto down = annotate(Protocol::http, Stream::downstream, r, split(resp, 50));
  CHECK(down.written.find("hunter2hunter2") == npos);
  CHECK(down.written.find(r->token("hunter2hunter2")) != npos);
  CHECK(down.written.find("token abc12 kept") != npos);  // …but under 6 bytes it is not scanned for
  const auto reds = down.redactions();
  REQUIRE(reds.size() == 1);
  CHECK(field(*reds[0], "rule") == quoted("echo"));
}

TEST_CASE("annotator: a remembered secret split across TCP chunks is redacted, at most 2 leading bytes escape") {
  const std::string secret = "sk-supersecret-42";
  const std::string stream = "hello " + secret + " and again " + secret + " bye";
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    INFO("split at " << i);
    auto r = redactor();
    r->remember(secret);
    const auto out = annotate(Protocol::tcp, Stream::downstream, r, split(stream, i));
    CHECK(out.written.find(secret) == npos);
    std::string expected = "hello " + r->token(secret) + " and again " + r->token(secret) + " bye";
    // A chunk that ends after only 1 or 2 bytes of a secret is not held back (that would
    // hold ordinary text all the time): those bytes are written, the rest is redacted.
    for (std::size_t at : {std::size_t{6}, stream.rfind(secret)}) {
      if (i > at && i < at + 3) expected.replace(at, i - at, stream.substr(at, i - at));
    }
    CHECK(out.written == expected);
  }
}

TEST_CASE("annotator: user regexes apply to any payload") {
  rec::RedactionRules rules;
  rules.regexes = {"ghp_[A-Za-z0-9]{10}"};
  auto r = redactor("k", rules);
  const auto out = annotate(Protocol::tcp, Stream::upstream, r, {"token ghp_ABCDEFGHIJ here"});
  CHECK(out.written == "token " + r->token("ghp_ABCDEFGHIJ") + " here");
  REQUIRE(out.redactions().size() == 1);
  CHECK(field(*out.redactions()[0], "rule") == quoted("regex:ghp_[A-Za-z0-9]{10}"));
}

// ---- RESP ---------------------------------------------------------------------------------------

TEST_CASE("annotator: Redis AUTH and HELLO AUTH passwords are redacted, split at every byte") {
  const std::string pass = "s3cr3t-pass";
  const std::string stream = cmd({"AUTH", pass}) + cmd({"AUTH", "alice", pass}) +
                             cmd({"HELLO", "3", "AUTH", "alice", pass, "SETNAME", "conn1"}) + "AUTH " + pass +
                             "\r\n" + cmd({"GET", "user:1"});
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    INFO("split at " << i);
    auto r = redactor();
    const auto out = annotate(Protocol::resp, Stream::upstream, r, split(stream, i));
    REQUIRE(out.written.size() == stream.size());
    CHECK(out.written.find(pass) == npos);
    const std::string tok = r->token(pass);
    CHECK(out.written.find(cmd({"AUTH", tok})) == 0);
    CHECK(out.written.find(cmd({"AUTH", "alice", tok})) != npos);  // the username is kept
    CHECK(out.written.find(cmd({"HELLO", "3", "AUTH", "alice", tok, "SETNAME", "conn1"})) != npos);
    CHECK(out.written.find("AUTH " + tok + "\r\n") != npos);
    const auto reds = out.redactions();
    REQUIRE(reds.size() == 4);
    CHECK(field(*reds[0], "rule") == quoted("resp:auth"));
    CHECK(field(*reds[2], "rule") == quoted("resp:hello_auth"));
    const auto cmds = out.messages("resp_command");
    REQUIRE(cmds.size() == 5);
    CHECK(field(*cmds[0], "command") == quoted("AUTH"));
    CHECK(field(*cmds[0], "key") == quoted(tok));
    CHECK(field(*cmds[0], "argc") == "2");
    CHECK(field(*cmds[4], "command") == quoted("GET"));
    CHECK(field(*cmds[4], "key") == quoted("user:1"));
    CHECK(cmds[4]->offset == stream.size() - cmd({"GET", "user:1"}).size());
    CHECK(cmds[4]->length == cmd({"GET", "user:1"}).size());
  }
}

TEST_CASE("annotator: an AUTH cut off by the end of the stream is masked") {
  auto r = redactor();
  const auto out = annotate(Protocol::resp, Stream::upstream, r, {"*2\r\n$4\r\nAUTH\r\n$11\r\ns3cr3t"});
  CHECK(out.written.find("s3cr3t") == npos);
  CHECK(out.written.rfind("*2\r\n$4\r\nAUTH", 0) == 0);
}

TEST_CASE("annotator: an AUTH the RESP decoder cannot parse is masked before going raw") {
  auto r = redactor();
  const auto out = annotate(Protocol::resp, Stream::upstream, r, {"AUTH \"unbalanced-s3cret\r\nPING\r\n"});
  CHECK(out.written.find("unbalanced-s3cret") == npos);
  CHECK(out.messages("undecodable").size() == 1);
}

TEST_CASE("annotator: CONFIG SET requirepass and ACL SETUSER passwords are redacted") {
  auto r = redactor();
  const std::string stream = cmd({"CONFIG", "SET", "requirepass", "new-pass-123", "maxmemory", "1gb"}) +
                             cmd({"ACL", "SETUSER", "bob", "on", ">bobs-pass-1", "~*"});
  const auto out = annotate(Protocol::resp, Stream::upstream, r, {stream});
  CHECK(out.written.find("new-pass-123") == npos);
  CHECK(out.written.find("bobs-pass-1") == npos);
  CHECK(out.written.find(">" + r->token("bobs-pass-1")) != npos);
  CHECK(out.written.find("maxmemory") != npos);
}

TEST_CASE("annotator: RESP replies are annotated with their type and simple lines") {
  const std::string replies = "+OK\r\n-ERR wrong number\r\n:42\r\n$5\r\nhello\r\n*2\r\n$1\r\na\r\n$-1\r\n";
  for (std::size_t i = 0; i <= replies.size(); ++i) {
    INFO("split at " << i);
    const auto out = annotate(Protocol::resp, Stream::downstream, redactor(), split(replies, i));
    CHECK(out.written == replies);
    const auto msgs = out.messages("resp_reply");
    REQUIRE(msgs.size() == 5);
    CHECK(field(*msgs[0], "reply_type") == quoted("+"));
    CHECK(field(*msgs[0], "line") == quoted("OK"));
    CHECK(field(*msgs[1], "line") == quoted("ERR wrong number"));
    CHECK(field(*msgs[2], "reply_type") == quoted(":"));
    CHECK(field(*msgs[3], "reply_type") == quoted("$"));
    CHECK(msgs[3]->offset == 29);
    CHECK(msgs[3]->length == 11);
    CHECK(field(*msgs[4], "reply_type") == quoted("*"));
  }
}

// ---- SSE and JSON-RPC ---------------------------------------------------------------------------

TEST_CASE("annotator: SSE events in a chunked event-stream response are annotated") {
  const std::string e1 = "event: delta\nid: 1\ndata: {\"x\":1}\n\n";
  const std::string e2 = "data: hello\ndata: world\n\n";
  const std::string e3 = ": keep-alive\n\n";
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string resp = head + hex(e1.size()) + "\r\n" + e1 + "\r\n" + hex(e2.size() + e3.size()) + "\r\n" + e2 + e3 +
                           "\r\n0\r\n\r\n";
  for (std::size_t i = 0; i <= resp.size(); i += 3) {
    INFO("split at " << i);
    const auto out = annotate(Protocol::http, Stream::downstream, redactor(), split(resp, i));
    CHECK(out.written == resp);
    const auto events = out.messages("sse_event");
    REQUIRE(events.size() == 3);
    CHECK(field(*events[0], "event") == quoted("delta"));
    CHECK(field(*events[0], "id") == quoted("1"));
    CHECK(field(*events[0], "data_len") == "7");
    CHECK(events[0]->offset == resp.find("event: delta"));
    CHECK(events[0]->length == e1.size());
    CHECK(field(*events[1], "data_len") == "11");
    CHECK(events[1]->offset == resp.find("data: hello"));
    CHECK(events[2]->offset == resp.find(": keep-alive"));
    CHECK(out.messages("http_end").size() == 1);
  }
}

TEST_CASE("annotator: secrets inside SSE data lines are redacted") {
  auto r = redactor();
  const std::string events = "data: {\"access_token\":\"at-streamed-secret\"}\n\n";
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + events;
  const auto out = annotate(Protocol::http, Stream::downstream, r, split(resp, resp.size() - 10));
  CHECK(out.written.find("at-streamed-secret") == npos);
  CHECK(out.written.find(r->token("at-streamed-secret")) != npos);
}

TEST_CASE("annotator: MCP requests and SSE answers are described as JSON-RPC") {
  auto r = redactor();
  const std::string body =
      R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"token":"tok-123456789"}}})";
  const auto up = annotate(Protocol::mcp, Stream::upstream, r, split(post("/mcp", "application/json", body), 40));
  const auto rpc = up.messages("jsonrpc");
  REQUIRE(rpc.size() == 1);
  CHECK(field(*rpc[0], "method") == quoted("tools/call"));
  CHECK(field(*rpc[0], "id") == "7");
  CHECK(field(*rpc[0], "tool") == quoted("get_weather"));
  CHECK(rpc[0]->length == body.size());
  CHECK(up.written.find("tok-123456789") == npos);

  const std::string answer = R"({"jsonrpc":"2.0","id":7,"result":{"content":[]}})";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: message\ndata: " + answer +
                           "\n\n";
  const auto down = annotate(Protocol::mcp, Stream::downstream, r, {resp});
  const auto rpc2 = down.messages("jsonrpc");
  REQUIRE(rpc2.size() == 1);
  CHECK(field(*rpc2[0], "id") == "7");
  CHECK(field(*rpc2[0], "response") == "true");
}

// ---- HTTP exchanges ----------------------------------------------------------------------------

TEST_CASE("annotator: paired directions know a HEAD response has no body") {
  auto r = redactor();
  rec::StreamAnnotator requests(Protocol::http, Stream::upstream, r);
  rec::StreamAnnotator responses(Protocol::http, Stream::downstream, r);
  rec::StreamAnnotator::pair(requests, responses);
  std::vector<rec::Annotation> up, down;
  std::string req = "HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  CHECK(requests.process(req, 0, up) == req.size());
  CHECK(responses.process(resp, 0, down) == resp.size());
  std::size_t heads = 0, ends = 0, undecodable = 0;
  for (const auto& a : down) {
    if (a.fields.find("\"http_response\"") != npos) ++heads;
    if (a.fields.find("\"http_end\"") != npos) ++ends;
    if (a.fields.find("\"undecodable\"") != npos) ++undecodable;
  }
  CHECK(heads == 2);
  CHECK(ends == 2);
  CHECK(undecodable == 0);
}

TEST_CASE("annotator: a request and its response give head and end messages with their spans") {
  const std::string req = post("/v1/chat/completions", "application/json", R"({"model":"kimi"})");
  const auto out = annotate(Protocol::http, Stream::upstream, redactor(), {req});
  const auto ends = out.messages("http_end");
  REQUIRE(ends.size() == 1);
  CHECK(ends[0]->offset == 0);
  CHECK(ends[0]->length == req.size());
  CHECK(field(*ends[0], "body_len") == "16");
  CHECK(field(*ends[0], "request") == "true");
  const auto heads = out.messages("http_request");
  REQUIRE(heads.size() == 1);
  CHECK(field(*heads[0], "head_len") == std::to_string(req.size() - 16));
}

TEST_CASE("annotator: bytes that are not HTTP are recorded as they are, with an undecodable note") {
  const std::string junk = "\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n";
  const auto out = annotate(Protocol::http, Stream::upstream, redactor(), split(junk, 3));
  CHECK(out.written == junk);
  CHECK(out.messages("undecodable").size() == 1);
}

TEST_CASE("annotator: after HTTP decoding gives up, header lines are still redacted") {
  auto r = redactor();
  const std::string bad = "BAD\x01REQUEST / HTTP/1.1\r\nAuthorization: Bearer abcdefghijkl\r\n\r\n";
  for (std::size_t i = 0; i <= bad.size(); ++i) {
    INFO("split at " << i);
    const auto out = annotate(Protocol::http, Stream::upstream, r, split(bad, i));
    CHECK(out.written.size() == bad.size());
    CHECK(out.written.find("abcdefghijkl") == npos);
  }
}

TEST_CASE("annotator: a head cut off by the end of the stream is still redacted") {
  auto r = redactor();
  const auto out = annotate(Protocol::http, Stream::upstream, r,
                            {"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer cut-off-credential"});
  CHECK(out.written.find("cut-off-credential") == npos);
  CHECK(out.written.find("Authorization: Bearer ") != npos);
}

TEST_CASE("annotator: without a redactor bytes are untouched and messages still described") {
  const std::string req = "GET / HTTP/1.1\r\nAuthorization: Bearer visible-secret\r\n\r\n";
  const auto out = annotate(Protocol::http, Stream::upstream, nullptr, split(req, 20));
  CHECK(out.written == req);
  CHECK(out.redactions().empty());
  CHECK(out.messages("http_request").size() == 1);
}

TEST_CASE("annotator: tcp streams are final at once") {
  Feeder f(Protocol::tcp, Stream::upstream, redactor());
  f.feed("hello");
  f.feed(" world");
  CHECK(f.result.finals == std::vector<std::size_t>{5, 6});
  CHECK(f.result.notes.empty());
}
