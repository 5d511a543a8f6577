// The network half of replay (see replay_run.hpp): the stand-in server and the client
// replayer as Asio coroutines on one io_context (single-threaded: the matcher's queues need
// no lock). Asio only through proxy/asio.hpp (plus Beast's tcp_stream for read deadlines).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include <boost/beast/core/tcp_stream.hpp>
#include <spdlog/spdlog.h>

#include "protocols/http.hpp"
#include "protocols/resp.hpp"
#include "proxy/address.hpp"
#include "proxy/asio.hpp"
#include "replay/replay_run.hpp"

namespace faultline::replay {
namespace {

using Clock = std::chrono::steady_clock;

std::string one_line(std::string_view s) { return printable(s, 200); }

awaitable<bool> write_all(tcp::socket& sock, std::string_view bytes) {
  auto [ec, n] = co_await net::async_write(sock, net::buffer(bytes.data(), bytes.size()), use_nothrow);
  (void)n;
  co_return !ec;
}

// Sends the segments; with `timed`, waits the recorded gaps between them.
awaitable<bool> send_segments(tcp::socket& sock, const std::vector<Segment>& segs, bool timed) {
  if (!timed) {
    std::string all;
    for (const auto& s : segs) all += s.bytes;
    co_return co_await write_all(sock, all);
  }
  net::steady_timer timer(sock.get_executor());
  for (std::size_t i = 0; i < segs.size(); ++i) {
    if (i > 0 && segs[i].t > segs[i - 1].t) {
      timer.expires_after(std::chrono::nanoseconds(segs[i].t - segs[i - 1].t));
      auto [ec] = co_await timer.async_wait(use_nothrow);
      (void)ec;
    }
    if (!co_await write_all(sock, segs[i].bytes)) co_return false;
  }
  co_return true;
}

// True when the response's end is the connection's end (no length, not chunked) or it says
// Connection: close.
bool closes_after(std::string_view response) {
  std::string head, body;
  bool chunked = false;
  if (!split_http(response, head, body, chunked)) return true;
  std::string lower(head);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("\r\nconnection: close") != std::string::npos) return true;
  const int status = http_status(head);
  if (chunked || status == 204 || status == 304 || (status >= 100 && status < 200)) return false;
  return lower.find("\r\ncontent-length:") == std::string::npos;
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// ---- server -------------------------------------------------------------------------------
struct ServerState {
  ServerOptions options;
  Model model;
  std::unique_ptr<Matcher> matcher;
  Protocol protocol = Protocol::tcp;
  std::vector<const Connection*> tcp_conns;
  std::uint64_t served = 0, unmatched = 0, live_conns = 0;
};

awaitable<void> serve_http(ServerState& st, tcp::socket sock) {
  std::string in;
  char buf[16384];
  for (;;) {
    http::Framer f(true);
    std::size_t pos = 0;
    bool done = false, eof = false;
    while (!done) {
      const auto step = f.step(std::string_view(in).substr(pos));
      pos += step.consumed;
      if (step.event == FrameEvent::error) co_return;
      if (step.event == FrameEvent::end) {
        done = true;
        break;
      }
      if (step.consumed == 0 && step.event == FrameEvent::none) {
        auto [ec, n] = co_await sock.async_read_some(net::buffer(buf), use_nothrow);
        if (ec || n == 0) {
          eof = true;
          break;
        }
        in.append(buf, n);
      }
    }
    if (eof) co_return;
    const std::string request = in.substr(0, pos);
    in.erase(0, pos);
    const RequestInfo info = describe_http_request(request, st.options.ignore);
    const Exchange* e = st.matcher->take(info.key);
    std::vector<Segment> reply;
    bool close = false;
    if (e) {
      ++st.served;
      spdlog::debug("replay: matched {} (recorded conn {} #{})", info.label, e->conn, e->index);
      reply = e->response;
      if (info.jsonrpc_id && e->jsonrpc_id) reply = rewrite_http_response(reply, *e->jsonrpc_id, *info.jsonrpc_id);
    } else {
      ++st.unmatched;
      const Exchange* c = st.matcher->closest(info.key);
      spdlog::debug("replay: no recorded response for {}; closest: {}", info.label, c ? c->label : "(none)");
      if (st.options.unmatched == Unmatched::closest && c && c->has_response) {
        reply = c->response;
        if (info.jsonrpc_id && c->jsonrpc_id) reply = rewrite_http_response(reply, *c->jsonrpc_id, *info.jsonrpc_id);
      } else if (st.options.unmatched == Unmatched::fail) {
        co_return;
      } else {
        const std::string body = "{\"error\":\"faultline replay: no recorded response\",\"request\":" +
                                 json_quote(info.label) +
                                 ",\"closest\":" + (c ? json_quote(c->label) : std::string("null")) + "}";
        reply.push_back({"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body,
                         0});
      }
    }
    std::string all;
    for (const auto& s : reply) all += s.bytes;
    close = closes_after(all);
    if (!co_await send_segments(sock, reply, is_event_stream(all))) co_return;
    if (close) {
      boost::system::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

awaitable<void> serve_resp(ServerState& st, tcp::socket sock) {
  std::string in;
  char buf[16384];
  resp::CommandFramer f;
  std::size_t pos = 0;
  for (;;) {
    const auto step = f.step(std::string_view(in).substr(pos));
    pos += step.consumed;
    if (step.event == FrameEvent::error) {
      co_await write_all(sock, resp::error_reply("ERR faultline replay: protocol error"));
      co_return;
    }
    if (step.event == FrameEvent::end) {
      in.erase(0, pos);
      pos = 0;
      const RequestInfo info = describe_resp_command(f.args());
      const Exchange* e = st.matcher->take(info.key);
      std::string reply;
      if (e) {
        ++st.served;
        spdlog::debug("replay: matched {} (recorded conn {} #{})", info.label, e->conn, e->index);
        reply = e->response_bytes();
      } else {
        ++st.unmatched;
        const Exchange* c = st.matcher->closest(info.key);
        spdlog::debug("replay: no recorded reply for {}; closest: {}", info.label, c ? c->label : "(none)");
        if (st.options.unmatched == Unmatched::closest && c && c->has_response) {
          reply = c->response_bytes();
        } else if (st.options.unmatched == Unmatched::fail) {
          co_return;
        } else {
          reply = resp::error_reply("ERR faultline replay: no recorded reply for " + one_line(info.label) +
                                    "; closest: " + (c ? one_line(c->label) : std::string("(none)")));
        }
      }
      if (!co_await write_all(sock, reply)) co_return;
      continue;
    }
    if (step.consumed == 0 && step.event == FrameEvent::none) {
      auto [ec, n] = co_await sock.async_read_some(net::buffer(buf), use_nothrow);
      if (ec || n == 0) co_return;
      in.append(buf, n);
    }
  }
}

// tcp: the live connection follows one recorded connection's turns in order.
awaitable<void> serve_tcp(ServerState& st, tcp::socket sock, std::uint64_t index) {
  if (st.tcp_conns.empty()) co_return;
  const Connection& c = *st.tcp_conns[index % st.tcp_conns.size()];
  std::string in;
  char buf[16384];
  for (const auto& e : c.exchanges) {
    while (in.size() < e.request.size()) {
      auto [ec, n] = co_await sock.async_read_some(net::buffer(buf), use_nothrow);
      if (ec || n == 0) co_return;
      in.append(buf, n);
    }
    const bool same = std::string_view(in).substr(0, e.request.size()) == e.request;
    if (same) {
      ++st.served;
      spdlog::debug("replay: matched turn {} of recorded conn {}", e.index, c.conn);
    } else {
      ++st.unmatched;
      spdlog::debug("replay: bytes differ from turn {} of recorded conn {}: {}", e.index, c.conn,
                    printable(in, 60));
      if (st.options.unmatched != Unmatched::closest) co_return;
    }
    in.erase(0, e.request.size());
    if (!co_await send_segments(sock, e.response, true)) co_return;
  }
  // The recording ends here: drain until the client closes.
  for (;;) {
    auto [ec, n] = co_await sock.async_read_some(net::buffer(buf), use_nothrow);
    if (ec || n == 0) co_return;
  }
}

awaitable<void> accept_loop(ServerState& st, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(use_nothrow);
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;
    }
    const std::uint64_t index = st.live_conns++;
    auto ex = acceptor.get_executor();
    switch (st.protocol) {
      case Protocol::http:
      case Protocol::mcp: net::co_spawn(ex, serve_http(st, std::move(sock)), net::detached); break;
      case Protocol::resp: net::co_spawn(ex, serve_resp(st, std::move(sock)), net::detached); break;
      case Protocol::tcp: net::co_spawn(ex, serve_tcp(st, std::move(sock), index), net::detached); break;
    }
  }
}

}  // namespace

int run_server(const ServerOptions& options) {
  ServerState st;
  st.options = options;
  std::string error;
  ModelOptions mo;
  mo.protocol = options.protocol;
  mo.ignore = options.ignore;
  if (!build_model(options.journal, mo, st.model, error)) {
    std::cerr << "faultline replay server: " << error << "\n";
    return 2;
  }
  for (const auto& w : st.model.warnings) spdlog::warn("replay: {}", w);
  if (options.protocol) {
    st.protocol = *options.protocol;
  } else {
    std::map<Protocol, std::size_t> counts;
    for (const auto& c : st.model.connections) ++counts[c.protocol];
    std::size_t best = 0;
    for (auto [p, n] : counts)
      if (n > best) {
        best = n;
        st.protocol = p;
      }
    if (counts.size() > 1)
      spdlog::warn("replay: the journal mixes protocols; serving {} (choose with --protocol)", to_string(st.protocol));
  }
  for (const auto& c : st.model.connections)
    if (c.protocol == Protocol::tcp) st.tcp_conns.push_back(&c);
  st.matcher = std::make_unique<Matcher>(st.model);

  const auto hp = split_host_port(options.listen);
  if (!hp) {
    std::cerr << "faultline replay server: --listen wants HOST:PORT, got \"" << options.listen << "\"\n";
    return 2;
  }
  net::io_context io(1);
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) {
    std::cerr << "faultline replay server: bad listen address \"" << hp->host << "\": " << ec.message() << "\n";
    return 2;
  }
  unsigned long port = 0;
  for (char c : hp->port) {
    if (c < '0' || c > '9' || port > 65535) {
      port = 65536;
      break;
    }
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port > 65535) {
    std::cerr << "faultline replay server: bad listen port \"" << hp->port << "\"\n";
    return 2;
  }
  tcp::acceptor acceptor(io);
  const tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "faultline replay server: cannot listen on " << options.listen << ": " << ec.message() << "\n";
    return 2;
  }
  const auto bound = acceptor.local_endpoint(ec);
  const std::string bound_text = join_host_port(bound.address().to_string(), bound.port());
  if (!options.port_file.empty()) {
    const std::string tmp = options.port_file + ".tmp";
    {
      std::ofstream f(tmp);
      f << bound_text << "\n";
    }
    std::rename(tmp.c_str(), options.port_file.c_str());
  }
  spdlog::info("replay server: {} recorded exchanges ({}) on {}", st.model.exchanges, to_string(st.protocol),
               bound_text);
  net::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    io.stop();
  });
  net::co_spawn(io, accept_loop(st, acceptor), net::detached);
  io.run();
  std::cout << "replay server: served " << st.served << ", unmatched " << st.unmatched << "\n" << std::flush;
  return options.unmatched == Unmatched::fail && st.unmatched > 0 ? 1 : 0;
}

// ---- client -------------------------------------------------------------------------------
namespace {

struct ClientState {
  ClientOptions options;
  Model model;
  std::string host, port;
  std::int64_t t0 = 0;
  Clock::time_point start;
  std::uint64_t total = 0, done = 0, matches = 0, mismatches = 0, errors = 0;
  std::uint64_t running = 0;
  std::uint64_t reported = 0;
};

void report_divergence(ClientState& st, const Connection& c, const Exchange& e, const std::string& what) {
  if (++st.reported <= 20) std::cerr << "replay: conn " << c.conn << " #" << e.index << " " << e.label << ": " << what << "\n";
}

// Reads one response into `out`; false on error/timeout (why set).
awaitable<bool> read_response(boost::beast::tcp_stream& stream, Protocol p, const Exchange& e, std::string& in,
                              std::string& out, std::string& why) {
  char buf[16384];
  std::size_t pos = 0;
  auto more = [&]() -> awaitable<bool> {
    auto [ec, n] = co_await stream.async_read_some(net::buffer(buf), use_nothrow);
    if (ec || n == 0) {
      why = ec ? ec.message() : std::string("connection closed");
      co_return false;
    }
    in.append(buf, n);
    co_return true;
  };
  if (p == Protocol::http || p == Protocol::mcp) {
    http::Framer f(false);
    f.answering(e.method);
    for (;;) {
      const auto step = f.step(std::string_view(in).substr(pos));
      pos += step.consumed;
      if (step.event == FrameEvent::error) {
        why = "not HTTP: " + std::string(f.error());
        co_return false;
      }
      if (step.event == FrameEvent::end) {
        const int s = f.head().status;
        if (s >= 100 && s < 200 && s != 101) continue;
        break;
      }
      if (step.consumed == 0 && step.event == FrameEvent::none) {
        if (!co_await more()) {
          if (f.in_message() && f.finish()) {
            pos = in.size();
            break;
          }
          co_return false;
        }
      }
    }
  } else if (p == Protocol::resp) {
    resp::ReplyFramer f;
    std::size_t start = 0;
    for (;;) {
      const auto step = f.step(std::string_view(in).substr(pos));
      pos += step.consumed;
      if (step.event == FrameEvent::error) {
        why = "not RESP: " + std::string(f.error());
        co_return false;
      }
      if (step.event == FrameEvent::end) {
        if (f.is_push()) {
          start = pos;
          continue;
        }
        break;
      }
      if (step.consumed == 0 && step.event == FrameEvent::none && !co_await more()) co_return false;
    }
    out = in.substr(start, pos - start);
    in.erase(0, pos);
    co_return true;
  } else {
    const std::size_t want = e.response_bytes().size();
    while (in.size() < want)
      if (!co_await more()) break;
    pos = std::min(in.size(), want);
  }
  out = in.substr(0, pos);
  in.erase(0, pos);
  co_return true;
}

awaitable<void> wait_until(net::steady_timer& timer, ClientState& st, std::int64_t t) {
  if (st.options.speed <= 0) co_return;
  const auto at = st.start + std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(t - st.t0) /
                                                                                st.options.speed));
  if (at <= Clock::now()) co_return;
  timer.expires_at(at);
  auto [ec] = co_await timer.async_wait(use_nothrow);
  (void)ec;
}

awaitable<void> drive(ClientState& st, const Connection& c) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  const std::uint64_t n = c.exchanges.size();
  co_await wait_until(timer, st, c.open_t);
  boost::beast::tcp_stream stream(ex);
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(st.host, st.port, use_nothrow);
  bool connected = false;
  if (!rec) {
    stream.expires_after(std::chrono::milliseconds(static_cast<long>(st.options.timeout * 1000)));
    auto [cec, ep] = co_await stream.async_connect(results, use_nothrow);
    (void)ep;
    connected = !cec;
    if (cec) std::cerr << "replay: conn " << c.conn << ": cannot connect to " << st.options.target << ": "
                       << cec.message() << "\n";
  }
  if (!connected) {
    st.errors += n;
    st.done += n;
    --st.running;
    co_return;
  }
  std::string in;
  for (std::size_t i = 0; i < c.exchanges.size(); ++i) {
    const Exchange& e = c.exchanges[i];
    co_await wait_until(timer, st, e.request_t);
    stream.expires_after(std::chrono::milliseconds(static_cast<long>(st.options.timeout * 1000)));
    if (!e.request.empty()) {
      auto [wec, wn] = co_await net::async_write(stream, net::buffer(e.request), use_nothrow);
      (void)wn;
      if (wec) {
        report_divergence(st, c, e, "write failed: " + wec.message());
        st.errors += n - i;
        st.done += n - i;
        break;
      }
    }
    if (!e.has_response) {
      ++st.matches;
      ++st.done;
      continue;
    }
    std::string live, why;
    if (!co_await read_response(stream, c.protocol, e, in, live, why)) {
      report_divergence(st, c, e, "no reply: " + why);
      st.errors += n - i;
      st.done += n - i;
      break;
    }
    const std::string recorded = e.response_bytes();
    Verdict v;
    switch (c.protocol) {
      case Protocol::http:
      case Protocol::mcp: v = compare_http(recorded, live, st.options.ignore); break;
      case Protocol::resp: v = compare_resp(recorded, live); break;
      case Protocol::tcp: v = compare_bytes(recorded, live); break;
    }
    ++st.done;
    if (v.match) {
      ++st.matches;
      spdlog::debug("replay: conn {} #{} {}: match", c.conn, e.index, e.label);
    } else {
      ++st.mismatches;
      report_divergence(st, c, e, v.why);
    }
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  --st.running;
}

awaitable<void> progress(ClientState& st) {
  net::steady_timer timer(co_await net::this_coro::executor);
  while (st.running > 0) {
    timer.expires_after(std::chrono::milliseconds(250));
    co_await timer.async_wait(use_nothrow);
    const double secs = std::chrono::duration<double>(Clock::now() - st.start).count();
    std::fprintf(stderr, "\rreplay: %llu/%llu  %.0f/s  mismatches %llu  errors %llu   ",
                 static_cast<unsigned long long>(st.done), static_cast<unsigned long long>(st.total),
                 secs > 0 ? static_cast<double>(st.done) / secs : 0.0,
                 static_cast<unsigned long long>(st.mismatches), static_cast<unsigned long long>(st.errors));
  }
  std::fprintf(stderr, "\n");
}

}  // namespace

int run_client(const ClientOptions& options) {
  ClientState st;
  st.options = options;
  std::string error;
  ModelOptions mo;
  mo.protocol = options.protocol;
  mo.ignore = options.ignore;
  if (!build_model(options.journal, mo, st.model, error)) {
    std::cerr << "faultline replay client: " << error << "\n";
    return 2;
  }
  for (const auto& w : st.model.warnings) spdlog::warn("replay: {}", w);
  const auto hp = split_host_port(options.target);
  if (!hp || hp->port.empty()) {
    std::cerr << "faultline replay client: --target wants HOST:PORT, got \"" << options.target << "\"\n";
    return 2;
  }
  st.host = hp->host.empty() ? "127.0.0.1" : hp->host;
  st.port = hp->port;
  const unsigned k = std::max(1u, options.concurrency_scale);
  bool first = true;
  for (const auto& c : st.model.connections) {
    if (first || c.open_t < st.t0) st.t0 = c.open_t;
    first = false;
    st.total += c.exchanges.size() * k;
  }
  net::io_context io(1);
  st.start = Clock::now();
  for (const auto& c : st.model.connections)
    for (unsigned i = 0; i < k; ++i) {
      ++st.running;
      net::co_spawn(io, drive(st, c), net::detached);
    }
  const bool show = options.progress < 0 ? ::isatty(STDERR_FILENO) != 0 : options.progress > 0;
  if (show && st.running > 0) net::co_spawn(io, progress(st), net::detached);
  io.run();
  const double divergent = static_cast<double>(st.mismatches + st.errors);
  const double ratio = st.total ? divergent / static_cast<double>(st.total) : 0.0;
  std::cout << "replay client: " << st.total << " exchanges, " << st.matches << " matched, " << st.mismatches
            << " mismatched, " << st.errors << " errors\n"
            << std::flush;
  return ratio > options.threshold ? 1 : 0;
}

}  // namespace faultline::replay
