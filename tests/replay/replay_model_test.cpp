#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include "recorder/journal.hpp"
#include "replay/replay_model.hpp"

using namespace faultline::replay;

TEST_CASE("canonical JSON sorts keys and drops ignored paths") {
  CHECK(canonical_json(R"({"b": 1, "a": [1, {"y":2,"x":1}]})", {}) == R"({"a":[1,{"x":1,"y":2}],"b":1})");
  CHECK(canonical_json(R"({"id":7,"q":"x","m":[{"ts":1,"v":2}]})", {"id", "m.*.ts"}) == R"({"m":[{"v":2}],"q":"x"})");
  CHECK(!canonical_json("not json", {}));
}

TEST_CASE("HTTP requests: JSON-RPC keys leave the id out") {
  const std::string a = "POST /rpc HTTP/1.1\r\nContent-Length: 46\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}     ";
  const std::string b = "POST /rpc HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"id\":\"x\",\"method\":\"ping\",\"jsonrpc\":\"2.0\"}";
  const auto ia = describe_http_request(a, {});
  const auto ib = describe_http_request(b, {});
  CHECK(ia.key == ib.key);
  CHECK(ia.method == "POST");
  CHECK(ia.jsonrpc_id == "1");
  CHECK(ib.jsonrpc_id == "\"x\"");
}

TEST_CASE("RESP keys upper-case the command name") {
  CHECK(describe_resp_command({"get", "k"}).key == describe_resp_command({"GET", "k"}).key);
  CHECK(describe_resp_command({"get", "k"}).label == "GET k");
}

TEST_CASE("a recorded AUTH (its password redacted to a token) matches the live one, which is never shown") {
  // The recorder keeps a same-length token in place of the password (recorder/redaction.hpp).
  CHECK(describe_resp_command({"AUTH", "9f2c41"}).key == describe_resp_command({"auth", "secret"}).key);
  CHECK(describe_resp_command({"AUTH", "ada", "REDACTED-77a1c0"}).key == describe_resp_command({"AUTH", "ada", "hunter2hunter"}).key);
  CHECK(describe_resp_command({"AUTH", "ada", "x"}).key != describe_resp_command({"AUTH", "bob", "x"}).key);
  CHECK(describe_resp_command({"HELLO", "3", "AUTH", "ada", "tok"}).key ==
        describe_resp_command({"hello", "3", "AUTH", "ada", "pw"}).key);
  CHECK(describe_resp_command({"HELLO", "3", "AUTH", "ada", "pw", "SETNAME", "a"}).key !=
        describe_resp_command({"HELLO", "3", "AUTH", "ada", "pw", "SETNAME", "b"}).key);
  CHECK(describe_resp_command({"AUTH", "ada", "hunter2"}).label == "AUTH ada (password)");
  CHECK(describe_resp_command({"HELLO", "3", "AUTH", "ada", "hunter2"}).label == "HELLO 3 AUTH ada (password)");
}

TEST_CASE("the recorded reply gets the live JSON-RPC id, Content-Length fixed") {
  const std::string body = R"({"jsonrpc":"2.0","id":1,"result":{"ok":true}})";
  std::vector<Segment> rec = {{"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 5}};
  CHECK(rewrite_http_response(rec, "1", "1")[0].bytes == rec[0].bytes);
  const auto out = rewrite_http_response(rec, "1", "\"abc\"");
  REQUIRE(out.size() == 1);
  const std::string want = R"({"jsonrpc":"2.0","id":"abc","result":{"ok":true}})";
  CHECK(out[0].bytes == "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(want.size()) + "\r\n\r\n" + want);
}

TEST_CASE("SSE replies: ids rewritten in data lines, chunks re-framed, timing kept") {
  std::vector<Segment> rec = {
      {"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", 10},
      {"21\r\ndata: {\"id\":3,\"result\":{\"n\":1}}\n\n\r\n", 20},
      {"8\r\n: ping\n\n\r\n0\r\n\r\n", 90}};
  const auto out = rewrite_http_response(rec, "3", "9");
  std::string all;
  for (const auto& s : out) all += s.bytes;
  CHECK(all.find("data: {\"id\":9,\"result\":{\"n\":1}}\n\n") != std::string::npos);
  CHECK(all.find("21\r\n") != std::string::npos);
  CHECK(out.size() == 4);
  CHECK(out[1].t == 20);
  CHECK(out[2].t == 90);
}

TEST_CASE("a journal becomes RESP exchanges, and queues answer in order, then reuse the last") {
  const std::string path = "replay_model_test.jsonl";
  {
    std::string j;
    using namespace faultline;
    rec::line::header(j, "r", 0, "2026-01-01T00:00:00.000000000Z", 0, true);
    rec::line::open(j, 1, 1, "cache", "resp", "127.0.0.1:1", "127.0.0.1:2");
    const std::string up = "*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n";
    rec::line::data(j, 2, 1, Stream::upstream, 0, up.size(), up, "");
    rec::line::data(j, 3, 1, Stream::downstream, 0, 4, ":1\r\n", "");
    rec::line::data(j, 4, 1, Stream::downstream, 4, 4, ":2\r\n", "");
    std::ofstream(path) << j;
  }
  Model m;
  std::string error;
  REQUIRE(build_model(path, {}, m, error));
  std::remove(path.c_str());
  REQUIRE(m.connections.size() == 1);
  REQUIRE(m.connections[0].exchanges.size() == 2);
  CHECK(m.connections[0].exchanges[1].response_bytes() == ":2\r\n");
  Matcher matcher(m);
  const auto key = describe_resp_command({"INCR", "c"}).key;
  CHECK(matcher.take(key)->response_bytes() == ":1\r\n");
  CHECK(matcher.take(key)->response_bytes() == ":2\r\n");
  CHECK(matcher.take(key)->response_bytes() == ":2\r\n");
  CHECK(!matcher.take(describe_resp_command({"GET", "c"}).key));
  CHECK(matcher.closest(describe_resp_command({"INCR", "d"}).key)->label == "INCR c");
}

TEST_CASE("comparisons follow the protocol") {
  CHECK(compare_resp(":1\r\n", ":1\r\n").match);
  CHECK(!compare_resp(":1\r\n", "+1\r\n").match);
  const std::string a = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"a\":1,\"b\":2}";
  const std::string b = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"b\":2, \"a\":1}";
  const std::string c = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"a\":1,\"b\":3}";
  CHECK(compare_http(a, b, {}).match);
  CHECK(!compare_http(a, c, {}).match);
  CHECK(compare_http(a, c, {"b"}).match);
  CHECK(!compare_http(a, "HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n", {}).match);
}

TEST_CASE("MCP session ids: read from either message, replaced in the request head only") {
  const std::string response = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: live-42\r\n\r\n{}";
  CHECK(mcp_session_id(response) == "live-42");
  CHECK(!mcp_session_id("HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"));
  const std::string body = R"({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"Mcp-Session-Id":"rec-1"}})";
  const std::string request = "POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id:  rec-1 \r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  CHECK(mcp_session_id(request) == "rec-1");
  const std::string live = with_mcp_session_id(request, "a-much-longer-live-session-id");
  CHECK(live == "POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: a-much-longer-live-session-id\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body);
  const std::string plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(with_mcp_session_id(plain, "z") == plain);
}

TEST_CASE("credentials put back into replayed requests: a header set or replaced, a Redis password re-encoded") {
  const std::string body = R"({"model":"m"})";
  const std::string request = "POST /v1/chat HTTP/1.1\r\nHost: x\r\nauthorization: Bearer REDACTED-0c1\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  CHECK(with_header(request, "Authorization", "Bearer sk-live-key") ==
        "POST /v1/chat HTTP/1.1\r\nHost: x\r\nauthorization: Bearer sk-live-key\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
  CHECK(with_header("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "X-Api-Key", "k") == "GET / HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\n\r\n");
  CHECK(with_header("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n", "a", "9") == "GET / HTTP/1.1\r\nA: 9\r\nB: 2\r\n\r\n");
  CHECK(!header_problem("Authorization", "Bearer x"));
  CHECK(header_problem("", "x") == "the header name is empty");
  CHECK(header_problem("Bad Name", "x") == "\"Bad Name\" is not a header name");
  CHECK(header_problem("X", "a\r\nInjected: 1") == "a header value cannot hold a line break");

  CHECK(with_redis_password("*2\r\n$4\r\nAUTH\r\n$6\r\n9f2c41\r\n", "a-longer-secret") ==
        "*2\r\n$4\r\nAUTH\r\n$15\r\na-longer-secret\r\n");
  CHECK(with_redis_password("*3\r\n$4\r\nauth\r\n$3\r\nada\r\n$2\r\nab\r\n", "pw") == "*3\r\n$4\r\nauth\r\n$3\r\nada\r\n$2\r\npw\r\n");
  CHECK(with_redis_password("AUTH tok\r\n", "pw") == "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");  // inline: re-encoded
  CHECK(with_redis_password("*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\nada\r\n$3\r\ntok\r\n", "pw") ==
        "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\nada\r\n$2\r\npw\r\n");
  const std::string get = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  CHECK(with_redis_password(get, "pw") == get);
}

TEST_CASE("SSE replies compare by the data of each event, JSON canonically") {
  CHECK(sse_data(": keep-alive\n\nevent: message\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\ndata: cut") ==
        std::vector<std::string>{"{\"a\":1}", "x\ny", "cut"});
  const std::string head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
  const std::string rec = head + "event: message\ndata: {\"id\":1,\"result\":{\"a\":1,\"b\":2}}\n\n";
  CHECK(compare_http(rec, head + "id: 9\ndata: {\"result\":{\"b\":2,\"a\":1},\"id\":1}\n\n", {}).match);
  const auto other = compare_http(rec, head + "data: {\"id\":1,\"result\":{\"a\":1,\"b\":3}}\n\n", {});
  CHECK(!other.match);
  CHECK(other.why.find("SSE event 1") != std::string::npos);
  CHECK(compare_http(rec, head + "data: {\"id\":1,\"result\":{\"a\":1,\"b\":3}}\n\n", {"result.b"}).match);
  CHECK(!compare_http(rec, head, {}).match);  // an event missing
  CHECK(!compare_http(rec, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{}", {}).match);
}
