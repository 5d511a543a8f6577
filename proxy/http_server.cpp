#include "proxy/http_server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <random>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "proxy/control_plane.hpp"
#include "proxy/json_io.hpp"
#include "proxy/log_limit.hpp"

namespace faultline {
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::size_t kBodyLimit = 1024 * 1024;
constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);  // as the proxies' listeners

// A short answer on a socket we will not serve (over the connection cap, or accepted on the
// reserved descriptor), written without waiting: what the client has sent is read first, so
// closing sends a FIN, not a reset that could take the answer with it.
std::string raw_503(std::string_view message) {
  const std::string body = error_json(503, message);
  return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
         "X-Faultline-Version: " FAULTLINE_VERSION "\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// What the accept loop and its connections share. Control thread only: no locks.
struct ApiState {
  explicit ApiState(ApiServerLimits limits)
      : limits(limits),
        busy_answer(raw_503("too many control API connections open (limit " + std::to_string(limits.max_connections) +
                            "); retry when one closes")) {
    reserve();
  }
  ~ApiState() {
    if (reserve_fd >= 0) ::close(reserve_fd);
  }
  ApiState(const ApiState&) = delete;
  ApiState& operator=(const ApiState&) = delete;

  // A descriptor held back, so that when the process runs out of them the API can still
  // accept one waiting client (closing this one first) and tell it why, instead of leaving
  // it in the backlog.
  void reserve() {
    if (reserve_fd < 0) reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  ApiServerLimits limits;
  std::string busy_answer;  // the 503 beyond max_connections
  std::size_t active = 0;   // connections being served
  int reserve_fd = -1;
  LogLimiter accept_log;
  LogLimiter busy_log;
};

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

http::response<http::string_body> error_reply(unsigned status, std::string_view message) {
  http::response<http::string_body> res;
  res.result(status);
  res.set(http::field::content_type, "application/json");
  res.body() = error_json(static_cast<int>(status), message);
  return res;
}

std::string seconds_text(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + " s" : std::to_string(d.count()) + " ms";
}

bool is_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() && ec != http::error::partial_message &&
         ec != http::error::end_of_stream;
}

// After an answer to a request that was not read in full (413, 431, 408, 503), closing at
// once would reset the connection while the client is still sending, and a reset can take
// the answer with it: stop sending, read what still comes for a moment, then close.
awaitable<void> linger_close(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(std::chrono::seconds(1));
  char sink[16384];
  std::size_t drained = 0;
  while (drained < (4u << 20)) {
    auto [ec, n] = co_await stream.async_read_some(net::buffer(sink), use_nothrow);
    if (ec) break;
    drained += n;
  }
  stream.socket().close(ignored);
}

awaitable<void> serve_connection(tcp::socket socket, ControlPlane& control_plane, std::shared_ptr<ApiState> state) {
  struct Slot {
    ApiState& state;
    ~Slot() { --state.active; }
  } slot{*state};  // the accept loop counted us in
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    if (buffer.size() == 0) {
      // Between requests: an idle keep-alive connection may wait this long.
      stream.expires_after(state->limits.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
      if (ec) co_return;
      buffer.commit(n);
    }
    // From the first byte on, the whole request must arrive in time: a half-sent one
    // (slowloris) holds a descriptor for this long, not for the idle timeout. Our own timer
    // cancels the read (the stream's own expiry would close the socket before the 408).
    struct Deadline {
      bool over = false;   // the read has finished: the timer must not touch the socket
      bool fired = false;  // the timer cancelled the read
    };
    auto deadline = std::make_shared<Deadline>();
    net::steady_timer timer(stream.get_executor());
    timer.expires_after(state->limits.request_timeout);
    timer.async_wait([deadline, &socket = stream.socket()](const boost::system::error_code& tec) {
      if (tec || deadline->over) return;
      deadline->fired = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
    stream.expires_never();
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(kHeaderLimit);
    auto [read_ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    deadline->over = true;
    timer.cancel();
    const boost::system::error_code ec = deadline->fired && read_ec ? beast::error::timeout : read_ec;
    http::response<http::string_body> res;
    bool keep_alive = false;
    bool read_in_full = false;
    if (ec == http::error::body_limit) {
      res = error_reply(413, "request body too large (limit 1 MiB)");
    } else if (ec == http::error::header_limit) {
      res = error_reply(431, "request head (request line and headers) too large (limit 64 KiB)");
    } else if (ec == beast::error::timeout) {
      res = error_reply(408, "request not received in full within " + seconds_text(state->limits.request_timeout));
    } else if (ec && is_parse_error(ec)) {
      res = error_reply(400, "malformed HTTP request: " + ec.message());
    } else if (ec) {
      co_return;  // closed mid-request: nobody to answer
    } else {
      read_in_full = true;
      const auto& req = parser.get();
      res.version(req.version());
      if (req.count(http::field::host) > 1) {
        // Which one would the Host check read, and which one a proxy in front of us?
        res = error_reply(400, "request has " + std::to_string(req.count(http::field::host)) +
                                   " Host headers; send exactly one");
        res.version(req.version());
      } else {
        ApiRequest request;
        request.method = std::string(req.method_string());
        request.target = std::string(req.target());
        request.host = std::string(req[http::field::host]);
        request.user_agent = std::string(req[http::field::user_agent]);
        request.authorization = std::string(req[http::field::authorization]);
        request.origin = std::string(req[http::field::origin]);
        request.body = req.body();
        ApiResponse response = control_plane.handle(request);
        spdlog::debug("control API: {} {} -> {}", request.method, request.target, response.status);
        res.result(static_cast<unsigned>(response.status));
        if (!response.content_type.empty()) res.set(http::field::content_type, response.content_type);
        res.body() = std::move(response.body);
        if (auto origin = control_plane.cross_origin_allowed(request)) {
          // Allowed with --allow-origin: tell the browser it may read the answer.
          res.set(http::field::access_control_allow_origin, *origin);
          res.set(http::field::vary, "Origin");
          if (request.method == "OPTIONS") {
            res.set(http::field::access_control_allow_methods, "GET, POST, PATCH, DELETE");
            res.set(http::field::access_control_allow_headers, "Content-Type, Authorization");
            res.set(http::field::access_control_max_age, "600");
          }
        }
        keep_alive = req.keep_alive();
      }
    }
    res.set("X-Faultline-Version", FAULTLINE_VERSION);
    res.set("X-Toxiproxy-Request-Id", request_id());
    res.keep_alive(keep_alive);
    res.prepare_payload();
    stream.expires_after(state->limits.request_timeout);  // a client that does not read is cut too
    auto [wec, written] = co_await http::async_write(stream, res, use_nothrow);
    if (wec) co_return;
    if (!keep_alive) {
      if (read_in_full) {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      } else {
        co_await linger_close(stream);
      }
      co_return;
    }
  }
}

void answer_and_close(int fd, const std::string& answer) {
  char sink[4096];
  while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  [[maybe_unused]] const auto sent = ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
}

// Out of descriptors: each client waiting in the backlog is accepted on the reserved
// descriptor, told 503 and closed, so it does not hang (and the backlog does not fill).
void answer_from_reserve(tcp::acceptor& acceptor, ApiState& state) {
  static const std::string answer = raw_503("faultline is out of file descriptors (see ulimit -n); retry later");
  for (int i = 0; i < 16; ++i) {
    state.reserve();
    if (state.reserve_fd < 0) return;  // a worker took the descriptor: next time
    ::close(state.reserve_fd);
    state.reserve_fd = -1;
    const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      answer_and_close(fd, answer);
      ::close(fd);
    }
    state.reserve();
    if (fd < 0) return;  // nobody else waiting (or still out of descriptors)
  }
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, ControlPlane& control_plane, std::shared_ptr<ApiState> state) {
  net::steady_timer backoff(acceptor.get_executor());
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors (or memory): retrying at once would spin on the same error.
      const bool out_of_descriptors =
          ec == net::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system;
      if (out_of_descriptors) answer_from_reserve(acceptor, *state);
      if (const auto times = state->accept_log.admit()) {
        spdlog::warn("control API: accept failed: {}{}; retrying every {} ms", ec.message(),
                     times > 1 ? " (" + std::to_string(times) + " times since the last report)" : std::string(),
                     kAcceptBackoff.count());
      }
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(use_nothrow);
      continue;
    }
    if (state->active >= state->limits.max_connections) {
      if (const auto times = state->busy_log.admit()) {
        spdlog::warn("control API: refused {} with 503: {} connections are open, the limit (--max-api-connections)",
                     times > 1 ? std::to_string(times) + " connections since the last report" : std::string("a connection"),
                     state->limits.max_connections);
      }
      answer_and_close(socket.native_handle(), state->busy_answer);
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++state->active;
    net::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), control_plane, state),
                  [](std::exception_ptr e) {
                    if (!e) return;
                    try {
                      std::rethrow_exception(e);
                    } catch (const boost::system::system_error& ex) {
                      spdlog::error("control API connection failed: {}", ex.code().message());
                    } catch (const std::exception& ex) {
                      spdlog::error("control API connection failed: {}", ex.what());
                    }
                  });
  }
}

}  // namespace

void start_http_server(tcp::acceptor& acceptor, ControlPlane& control_plane, ApiServerLimits limits) {
  if (limits.max_connections == 0) limits.max_connections = 1;
  boost::system::error_code ignored;
  acceptor.native_non_blocking(true, ignored);  // answer_from_reserve's accept4 must not block
  net::co_spawn(acceptor.get_executor(), accept_loop(acceptor, control_plane, std::make_shared<ApiState>(limits)),
                net::detached);
}

}  // namespace faultline
