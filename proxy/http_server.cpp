#include "proxy/http_server.hpp"

#include <random>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "proxy/control_plane.hpp"
#include "proxy/json_io.hpp"

namespace faultline {
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::size_t kBodyLimit = 1024 * 1024;

// A unique id per response, in the shape of the xid Toxiproxy sends (20 base32 chars).
std::string request_id() {
  static std::uint64_t counter = std::random_device{}();
  static const std::uint64_t boot = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  const std::uint64_t parts[2] = {boot, ++counter};
  std::string id;
  for (std::uint64_t part : parts) {
    for (int i = 0; i < 10; ++i) {
      id += "0123456789abcdefghijklmnopqrstuv"[part & 31];
      part >>= 5;
    }
  }
  return id;
}

awaitable<void> serve_connection(tcp::socket socket, ControlPlane& control_plane) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(60));  // Toxiproxy's idle timeout
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    http::response<http::string_body> res;
    bool keep_alive = false;
    if (ec == http::error::body_limit) {
      res.result(413);
      res.set(http::field::content_type, "application/json");
      res.body() = error_json(413, "request body too large (limit 1 MiB)");
    } else if (ec) {
      co_return;  // closed, timed out, or not HTTP: nothing sensible to answer
    } else {
      const auto& req = parser.get();
      ApiRequest request;
      request.method = std::string(req.method_string());
      request.target = std::string(req.target());
      request.host = std::string(req[http::field::host]);
      request.user_agent = std::string(req[http::field::user_agent]);
      request.authorization = std::string(req[http::field::authorization]);
      request.body = req.body();
      ApiResponse response = control_plane.handle(request);
      spdlog::debug("control API: {} {} -> {}", request.method, request.target, response.status);
      res.result(static_cast<unsigned>(response.status));
      res.version(req.version());
      if (!response.content_type.empty()) res.set(http::field::content_type, response.content_type);
      res.body() = std::move(response.body);
      keep_alive = req.keep_alive();
    }
    res.set("X-Faultline-Version", FAULTLINE_VERSION);
    res.set("X-Toxiproxy-Request-Id", request_id());
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto [wec, written] = co_await http::async_write(stream, res, use_nothrow);
    if (wec || !keep_alive) {
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, ControlPlane& control_plane) {
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    net::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), control_plane),
                  [](std::exception_ptr e) {
                    if (!e) return;
                    try {
                      std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                      spdlog::error("control API connection failed: {}", ex.what());
                    }
                  });
  }
}

}  // namespace

void start_http_server(tcp::acceptor& acceptor, ControlPlane& control_plane) {
  net::co_spawn(acceptor.get_executor(), accept_loop(acceptor, control_plane), net::detached);
}

}  // namespace faultline
