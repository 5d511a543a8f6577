#include "replay/clients.hpp"

#include <chrono>
#include <cstdlib>

#include <boost/beast/http.hpp>
#include <rapidjson/document.h>

#include "protocols/resp.hpp"
#include "replay/wire.hpp"

namespace faultline::drill {

namespace beast = boost::beast;
namespace http = beast::http;
using clock = std::chrono::steady_clock;

namespace {

std::chrono::milliseconds ms_of(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

double elapsed_ms(clock::time_point t0) { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); }

std::string describe(const beast::error_code& ec, double timeout) {
  if (ec == beast::error::timeout) return "timed out after " + Scalar::of(timeout).display() + " s";
  if (ec == net::error::connection_refused) return "connection refused";
  if (ec == net::error::connection_reset) return "connection reset";
  if (ec == net::error::eof || ec == http::error::end_of_stream) return "connection closed";
  return ec.message();
}

// Splits host:port; the parser has checked the shape.
std::pair<std::string, std::string> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, address.substr(colon + 1)};
}

// Resolves and connects `stream` within `timeout`; empty string on success, else why not.
awaitable<std::string> connect(beast::tcp_stream& stream, const std::string& host, const std::string& port, double timeout) {
  tcp::resolver resolver(stream.get_executor());
  auto [rec, results] = co_await resolver.async_resolve(host, port, use_nothrow);
  if (rec) co_return "cannot resolve " + host + ": " + rec.message();
  stream.expires_after(ms_of(timeout));
  auto [cec, ep] = co_await stream.async_connect(results, use_nothrow);
  if (cec) co_return describe(cec, timeout);
  beast::error_code ignored;
  stream.socket().set_option(tcp::no_delay(true), ignored);
  co_return std::string();
}

// True when a kept-alive connection can no longer carry a request: the peer closed or reset
// it while it was idle, or sent bytes nobody asked for. Checked before reuse (a peek that
// would block means "open and quiet"), so a request that is then lost counts as a failure
// instead of being retried behind the drill's back.
bool stale(beast::tcp_stream& stream) {
  auto& socket = stream.socket();
  beast::error_code ec;
  socket.non_blocking(true, ec);
  if (ec) return true;
  char byte;
  socket.receive(net::buffer(&byte, 1), tcp::socket::message_peek, ec);
  return ec != net::error::would_block;
}

}  // namespace

void HttpClient::close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  buffer_.clear();
  open_ = false;
}

awaitable<Observation> HttpClient::request(const HttpSpec& spec) {
  Observation o;
  o.kind = ProbeKind::http;
  const auto t0 = clock::now();
  const auto url = parse_http_url(spec.url);
  if (!url) {
    o.error = "not an http:// URL: " + spec.url;
    co_return o;
  }
  if (open_ && (host_ != url->host || port_ != url->port || stale(stream_))) close();
  if (!open_) {
    if (auto err = co_await connect(stream_, url->host, url->port, spec.connect_timeout); !err.empty()) {
      o.error = err;
      o.latency_ms = elapsed_ms(t0);
      co_return o;
    }
    open_ = true;
    host_ = url->host;
    port_ = url->port;
  }
  http::request<http::string_body> req{http::string_to_verb(spec.method), url->target, 11};
  if (req.method() == http::verb::unknown) req.method_string(spec.method);
  req.set(http::field::host, url->host_header);
  req.set(http::field::user_agent, "faultline-drill/" FAULTLINE_VERSION);
  for (const auto& [k, v] : spec.headers) req.set(k, v);
  if (spec.body) req.body() = *spec.body;
  req.prepare_payload();
  const double left = spec.timeout - elapsed_ms(t0) / 1000.0;
  stream_.expires_after(ms_of(left > 0.001 ? left : 0.001));
  auto [wec, wn] = co_await http::async_write(stream_, req, use_nothrow);
  (void)wn;
  if (wec) {
    close();
    o.error = describe(wec, spec.timeout);
    o.latency_ms = elapsed_ms(t0);
    co_return o;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(8 * 1024 * 1024);
  if (req.method() == http::verb::head) parser.skip(true);
  auto [rec, rn] = co_await http::async_read(stream_, buffer_, parser, use_nothrow);
  (void)rn;
  if (rec) {
    close();
    o.error = describe(rec, spec.timeout);
    o.latency_ms = elapsed_ms(t0);
    co_return o;
  }
  auto& res = parser.get();
  o.answered = true;
  o.status = static_cast<int>(res.result_int());
  for (const auto& f : res) o.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  o.body = std::move(res.body());
  o.latency_ms = elapsed_ms(t0);
  if (!res.keep_alive()) close();
  co_return o;
}

void RespClient::close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  in_.clear();
  open_ = false;
}

awaitable<Observation> RespClient::call(const std::string& address, const std::vector<std::string>& command, double timeout) {
  Observation o;
  o.kind = ProbeKind::resp;
  const auto t0 = clock::now();
  if (open_ && (address_ != address || stale(stream_))) close();
  if (!open_) {
    const auto [host, port] = split_address(address);
    if (auto err = co_await connect(stream_, host, port, timeout); !err.empty()) {
      o.error = err;
      o.latency_ms = elapsed_ms(t0);
      co_return o;
    }
    open_ = true;
    address_ = address;
    in_.clear();
  }
  auto fail = [&](std::string why) {
    close();
    o.answered = false;
    o.error = std::move(why);
    o.latency_ms = elapsed_ms(t0);
    return o;
  };
  const double left = timeout - elapsed_ms(t0) / 1000.0;
  stream_.expires_after(ms_of(left > 0.001 ? left : 0.001));
  const std::string wire = encode_command(command);
  auto [wec, wn] = co_await net::async_write(stream_, net::buffer(wire), use_nothrow);
  (void)wn;
  if (wec) co_return fail(describe(wec, timeout));
  resp::ReplyFramer framer;
  std::size_t pos = 0, reply_start = 0;
  char chunk[16384];
  for (;;) {
    while (pos < in_.size()) {
      const auto step = framer.step(std::string_view(in_).substr(pos));
      if (step.event == FrameEvent::error) co_return fail("not a RESP reply: " + std::string(framer.error()));
      if (step.consumed == 0 && step.event == FrameEvent::none) break;
      pos += step.consumed;
      if (step.event != FrameEvent::end) continue;
      if (framer.is_push()) {  // RESP3 out-of-band data answers no command
        reply_start = pos;
        continue;
      }
      auto reply = parse_reply(std::string_view(in_).substr(reply_start, pos - reply_start));
      in_.erase(0, pos);
      if (!reply) co_return fail("could not decode the reply");
      o.answered = true;
      o.reply = std::move(*reply);
      o.latency_ms = elapsed_ms(t0);
      co_return o;
    }
    auto [rec, n] = co_await stream_.async_read_some(net::buffer(chunk), use_nothrow);
    if (rec) co_return fail(describe(rec, timeout));
    in_.append(chunk, n);
  }
}

awaitable<Observation> tcp_exchange(const TcpSpec& spec) {
  Observation o;
  o.kind = ProbeKind::tcp;
  o.answered = true;  // a refused connection is this probe's observation, not a missing one
  const auto t0 = clock::now();
  beast::tcp_stream stream(co_await net::this_coro::executor);
  const auto [host, port] = split_address(spec.address);
  if (auto err = co_await connect(stream, host, port, spec.timeout); !err.empty()) {
    o.error = err;
    o.latency_ms = elapsed_ms(t0);
    co_return o;
  }
  o.connected = true;
  if (!spec.send.empty()) {
    auto [wec, wn] = co_await net::async_write(stream, net::buffer(spec.send), use_nothrow);
    (void)wn;
    if (wec) {
      o.connected = false;
      o.error = "connected, but sending failed: " + describe(wec, spec.timeout);
    }
  }
  if (o.connected && !spec.expect.empty()) {
    char chunk[16384];
    while (o.body.find(spec.expect) == std::string::npos && o.body.size() < 1024 * 1024) {
      auto [rec, n] = co_await stream.async_read_some(net::buffer(chunk), use_nothrow);
      if (rec) {
        o.connected = false;
        o.error = "connected, but \"" + spec.expect + "\" did not come back: " + describe(rec, spec.timeout) + " (" +
                  std::to_string(o.body.size()) + " bytes received)";
        break;
      }
      o.body.append(chunk, n);
    }
  }
  o.latency_ms = elapsed_ms(t0);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.close();
  co_return o;
}

awaitable<ApiReply> api_call(const std::string& base_url, const std::string& method, const std::string& path,
                             const std::string& body, double timeout) {
  ApiReply r;
  HttpClient client(co_await net::this_coro::executor);
  HttpSpec spec;
  spec.url = base_url + path;
  spec.method = method;
  spec.timeout = timeout;
  spec.connect_timeout = timeout;
  if (!body.empty()) {
    spec.body = body;
    spec.headers.emplace_back("Content-Type", "application/json");
  }
  if (const char* token = std::getenv("FAULTLINE_TOKEN"); token && *token)
    spec.headers.emplace_back("Authorization", std::string("Bearer ") + token);
  const Observation o = co_await client.request(spec);
  client.close();
  if (!o.answered) {
    r.error = "cannot reach the faultline API at " + base_url + ": " + o.error;
    co_return r;
  }
  r.status = o.status;
  r.body = o.body;
  if (r.status >= 400) {
    rapidjson::Document doc;
    doc.Parse(o.body.c_str(), o.body.size());
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("error") && doc["error"].IsString())
      r.error = doc["error"].GetString();
    else
      r.error = o.body.substr(0, 200);
    r.error = "HTTP " + std::to_string(r.status) + ": " + r.error;
  }
  co_return r;
}

}  // namespace faultline::drill
