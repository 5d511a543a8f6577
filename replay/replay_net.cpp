// The network half of replay (see replay_run.hpp): the stand-in server (on a thread of its
// own, one io_context: the matcher's queues need no lock) and the client replayer, as Asio
// coroutines. Asio only through proxy/asio.hpp (plus Beast's tcp_stream for read deadlines).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <boost/beast/core/tcp_stream.hpp>
#include <spdlog/spdlog.h>

#include "base/ascii.hpp"
#include "protocols/http.hpp"
#include "protocols/resp.hpp"
#include "proxy/address.hpp"
#include "proxy/asio.hpp"
#include "recorder/journal.hpp"
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
  const std::string lower = ascii_lower(head);
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

// ---- reading one answer (client replayer and forward policy) ------------------------------

// Reads one response into `out`; false on error/timeout (why set). `method` is the HTTP
// request's (HEAD changes what follows the head); `want` the byte count of a tcp answer.
awaitable<bool> read_response(boost::beast::tcp_stream& stream, Protocol p, std::string_view method, std::size_t want,
                              std::string& in, std::string& out, std::string& why) {
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
    f.answering(method);
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
    while (in.size() < want)
      if (!co_await more()) break;
    pos = std::min(in.size(), want);
  }
  out = in.substr(0, pos);
  in.erase(0, pos);
  co_return true;
}

// ---- server -------------------------------------------------------------------------------
constexpr auto kForwardConnectTimeout = std::chrono::seconds(5);
// An upstream behind a replay is often a slow API (an LLM): a reply may take a while to start,
// and a streamed one as long as it keeps sending. The bound is on silence, not on the whole.
constexpr auto kForwardReplyTimeout = std::chrono::seconds(60);

// Whether the connection ends with this answer: it says so, or only its end delimits its body.
bool answer_closes(const http::Head& h, std::string_view method) {
  if (auto c = h.field("connection")) {
    if (ascii_lower(*c).find("close") != std::string::npos) return true;
  }
  if (h.status < 200 || h.status == 204 || h.status == 304 || method == "HEAD") return false;
  return !h.field("transfer-encoding") && !h.field("content-length");
}

struct ServerState {
  ServerOptions options;
  Model model;
  std::unique_ptr<Matcher> matcher;
  Protocol protocol = Protocol::tcp;
  std::vector<const Connection*> tcp_conns;
  std::uint64_t live_conns = 0;
  std::string forward_host, forward_port;
  std::set<tcp::socket*> open;  // live client sockets, closed by stop() (server thread only)
  std::atomic<std::uint64_t> requests{0}, matched{0}, unmatched{0}, forwarded{0}, failed{0};
};

// Registers a live socket for stop() while in scope.
struct OpenSocket {
  ServerState& st;
  tcp::socket* sock;
  OpenSocket(ServerState& s, tcp::socket& k) : st(s), sock(&k) { st.open.insert(sock); }
  ~OpenSocket() { st.open.erase(sock); }
  OpenSocket(const OpenSocket&) = delete;
  OpenSocket& operator=(const OpenSocket&) = delete;
};

// One live connection's link to the forward upstream: opened on the first forwarded request
// and reused by the next ones (requests on one live connection are in order, so one link is
// enough). Never opened unless a request meets the forward policy.
class Forwarder {
 public:
  explicit Forwarder(ServerState& st) : st_(st) {}
  ~Forwarder() { close(); }

  // RESP: sends `command` and reads one reply into `reply`; false + why when the upstream fails.
  awaitable<bool> exchange(std::string_view command, std::string& reply, std::string& why) {
    bool closes = false, relayed = false;
    co_return co_await round_trip(command, "", nullptr, reply, closes, relayed, why);
  }

  // RESP: a command that sets the live connection's state (AUTH, HELLO, SELECT) is the forward
  // link's business too, even when the recording answered it: forwarded commands must run as
  // the client's would, authenticated and in its database. The last of each kind is kept to
  // start a link with, and sent at once on a link already open (unless `on_link_already`:
  // it was itself forwarded).
  awaitable<void> follow_state(std::string_view name, std::string_view command, bool on_link_already) {
    const int slot = state_slot(name);
    if (slot < 0) co_return;
    state_[slot] = std::string(command);
    if (on_link_already || !stream_) co_return;
    std::string why;
    stream_->expires_after(kForwardReplyTimeout);
    if (!co_await send_state(slot, why)) {
      spdlog::warn("replay: forward link to {}: {}", st_.options.forward, why);
      close();  // the next forwarded command opens a fresh link and tries again
    }
  }

  // HTTP: sends `request` and relays the answer to `client` as it arrives, so an event stream
  // or a long body reaches the client event by event, not once complete. False + why when the
  // upstream fails; `relayed` then says whether the client already has part of the answer
  // (only closing is honest then). `closes`: the client connection ends with this answer.
  awaitable<bool> relay_http(std::string_view request, std::string_view method, tcp::socket& client, bool& closes,
                             bool& relayed, std::string& why) {
    std::string unused;
    co_return co_await round_trip(request, method, &client, unused, closes, relayed, why);
  }

  void close() {
    if (!stream_) return;
    boost::system::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->socket().close(ignored);
    stream_.reset();
    in_.clear();
  }

 private:
  awaitable<bool> round_trip(std::string_view request, std::string_view method, tcp::socket* relay_to,
                             std::string& reply, bool& closes, bool& relayed, std::string& why) {
    relayed = false;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = stream_ != nullptr;
      if (!stream_ && !co_await connect(why)) co_return false;
      stream_->expires_after(kForwardReplyTimeout);
      auto [wec, wn] = co_await net::async_write(*stream_, net::buffer(request.data(), request.size()), use_nothrow);
      (void)wn;
      bool ok = !wec;
      if (!ok) why = "write: " + wec.message();
      if (ok && relay_to) ok = co_await relay_answer(method, *relay_to, closes, relayed, why);
      else if (ok) ok = co_await read_response(*stream_, st_.protocol, method, 0, in_, reply, why);
      if (ok) {
        if (closes) close();
        co_return true;
      }
      close();
      // A kept link the upstream closed while idle fails at once: try one fresh connection
      // (never once the client has part of an answer).
      if (!reused || relayed) break;
    }
    co_return false;
  }

  awaitable<bool> relay_answer(std::string_view method, tcp::socket& client, bool& closes, bool& relayed,
                               std::string& why) {
    http::Framer f(false);
    f.answering(method);
    std::size_t framed = 0;  // in_[0, framed) is part of the answer, not yet relayed
    auto flush = [&]() -> awaitable<bool> {
      if (framed == 0) co_return true;
      relayed = true;  // from here the client may have part of it: no retry, no error answer
      if (!co_await write_all(client, std::string_view(in_).substr(0, framed))) {
        why = "the client went away";
        co_return false;
      }
      in_.erase(0, framed);
      framed = 0;
      co_return true;
    };
    char buf[16384];
    for (;;) {
      const auto step = f.step(std::string_view(in_).substr(framed));
      framed += step.consumed;
      if (step.event == FrameEvent::error) {
        why = "not HTTP: " + std::string(f.error());
        co_return false;
      }
      if (step.event == FrameEvent::head) closes = answer_closes(f.head(), method);
      if (step.event == FrameEvent::end) {
        const int status = f.head().status;
        if (status >= 100 && status < 200 && status != 101) continue;  // the real answer follows
        co_return co_await flush();
      }
      if (step.consumed != 0 || step.event != FrameEvent::none) continue;
      if (!co_await flush()) co_return false;
      stream_->expires_after(kForwardReplyTimeout);
      auto [ec, n] = co_await stream_->async_read_some(net::buffer(buf), use_nothrow);
      if (ec || n == 0) {
        if (f.in_message() && f.finish()) {  // a body delimited by the upstream's close
          framed = in_.size();
          closes = true;
          co_return co_await flush();
        }
        why = ec ? ec.message() : std::string("connection closed");
        co_return false;
      }
      in_.append(buf, n);
    }
  }

  awaitable<bool> connect(std::string& why) {
    auto ex = co_await net::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [rec, results] = co_await resolver.async_resolve(st_.forward_host, st_.forward_port, use_nothrow);
    if (rec) {
      why = "resolve " + st_.options.forward + ": " + rec.message();
      co_return false;
    }
    auto stream = std::make_unique<boost::beast::tcp_stream>(ex);
    stream->expires_after(kForwardConnectTimeout);
    auto [cec, ep] = co_await stream->async_connect(results, use_nothrow);
    (void)ep;
    if (cec) {
      why = "connect " + st_.options.forward + ": " + cec.message();
      co_return false;
    }
    spdlog::debug("replay: forward link to {} open", st_.options.forward);
    stream_ = std::move(stream);
    for (int slot = 0; slot < 3; ++slot) {
      if (state_[slot].empty()) continue;
      stream_->expires_after(kForwardReplyTimeout);
      if (!co_await send_state(slot, why)) {
        close();
        co_return false;
      }
    }
    co_return true;
  }

  // AUTH before HELLO (which may itself authenticate and pick the protocol) before SELECT.
  static int state_slot(std::string_view name) {
    for (int slot = 0; slot < 3; ++slot) {
      if (http::iequals(name, kStateCommands[slot])) return slot;
    }
    return -1;
  }

  // Sends a state command on the link; an error reply fails it, naming the command.
  awaitable<bool> send_state(int slot, std::string& why) {
    const std::string& command = state_[slot];
    auto [wec, wn] = co_await net::async_write(*stream_, net::buffer(command), use_nothrow);
    (void)wn;
    std::string reply;
    if (wec) {
      why = "write: " + wec.message();
      co_return false;
    }
    if (!co_await read_response(*stream_, Protocol::resp, "", 0, in_, reply, why)) co_return false;
    if (!reply.empty() && (reply[0] == '-' || reply[0] == '!')) {
      why = std::string(kStateCommands[slot]) + " on the forward link: " + one_line(reply.substr(1, reply.find('\r') - 1));
      co_return false;
    }
    co_return true;
  }

  ServerState& st_;
  std::unique_ptr<boost::beast::tcp_stream> stream_;
  std::string in_;
  static constexpr const char* kStateCommands[] = {"AUTH", "HELLO", "SELECT"};
  std::string state_[3];  // RESP: the live connection's last of each kStateCommands (see state_slot)
};

// Decides what to do with a request the recording does not cover and logs it with the
// closest recorded request.
Unmatched unmatched_policy(ServerState& st, const RequestSubject& subject, const RequestInfo& info,
                           const Exchange* closest) {
  ++st.unmatched;
  const Rule* rule = nullptr;
  const Unmatched policy = policy_for(st.options.rules, st.options.unmatched, subject, &rule);
  spdlog::info("replay: no recorded response for {}; closest: {}; policy {}{}", info.label,
               closest ? closest->label : "(none)", to_string(policy),
               rule ? " (rule '" + rule->text + "')" : std::string());
  if (policy == Unmatched::fail) ++st.failed;
  return policy;
}

std::string http_error(int status, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

awaitable<void> serve_http(ServerState& st, tcp::socket sock) {
  OpenSocket registered(st, sock);
  Forwarder forwarder(st);
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
    ++st.requests;
    const RequestInfo info = describe_http_request(request, st.options.ignore);
    const Exchange* e = st.matcher->take(info.key);
    std::vector<Segment> reply;
    if (e) {
      ++st.matched;
      spdlog::debug("replay: matched {} (recorded conn {} #{})", info.label, e->conn, e->index);
      reply = e->response;
      if (info.jsonrpc_id && e->jsonrpc_id) reply = rewrite_http_response(reply, *e->jsonrpc_id, *info.jsonrpc_id);
    } else {
      const Exchange* c = st.matcher->closest(info.key);
      const Unmatched policy = unmatched_policy(st, http_subject(request), info, c);
      if (policy == Unmatched::closest && c && c->has_response) {
        reply = c->response;
        if (info.jsonrpc_id && c->jsonrpc_id) reply = rewrite_http_response(reply, *c->jsonrpc_id, *info.jsonrpc_id);
      } else if (policy == Unmatched::fail) {
        co_return;
      } else if (policy == Unmatched::forward) {
        std::string why;
        bool closes = false, relayed = false;
        if (co_await forwarder.relay_http(request, info.method, sock, closes, relayed, why)) {
          ++st.forwarded;
          if (!closes) continue;
          boost::system::error_code ignored;
          sock.shutdown(tcp::socket::shutdown_send, ignored);
          co_return;
        } else {
          spdlog::warn("replay: forwarding {} to {} failed: {}", info.label, st.options.forward, why);
          if (relayed) co_return;  // the client has part of an answer: a cut is what it saw
          const std::string body = "{\"error\":" + json_quote("faultline replay: forward to " + st.options.forward +
                                                              " failed: " + why) +
                                   ",\"request\":" + json_quote(info.label) + "}";
          reply.push_back({http_error(502, "Bad Gateway", body), 0});
        }
      } else {
        const std::string body = "{\"error\":\"faultline replay: no recorded response\",\"request\":" +
                                 json_quote(info.label) +
                                 ",\"closest\":" + (c ? json_quote(c->label) : std::string("null")) + "}";
        reply.push_back({http_error(502, "Bad Gateway", body), 0});
      }
    }
    std::string all;
    for (const auto& s : reply) all += s.bytes;
    const bool close = closes_after(all);
    if (!co_await send_segments(sock, reply, is_event_stream(all))) co_return;
    if (close) {
      boost::system::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

awaitable<void> serve_resp(ServerState& st, tcp::socket sock) {
  OpenSocket registered(st, sock);
  Forwarder forwarder(st);
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
      const std::string command = in.substr(0, pos);  // the command's bytes as sent, for forwarding
      in.erase(0, pos);
      pos = 0;
      ++st.requests;
      const RequestInfo info = describe_resp_command(f.args());
      const Exchange* e = st.matcher->take(info.key);
      std::string reply;
      bool forwarded = false;
      if (e) {
        ++st.matched;
        spdlog::debug("replay: matched {} (recorded conn {} #{})", info.label, e->conn, e->index);
        reply = e->response_bytes();
      } else {
        const Exchange* c = st.matcher->closest(info.key);
        const Unmatched policy = unmatched_policy(st, resp_subject(f.args()), info, c);
        if (policy == Unmatched::closest && c && c->has_response) {
          reply = c->response_bytes();
        } else if (policy == Unmatched::fail) {
          co_return;
        } else if (policy == Unmatched::forward) {
          std::string why;
          forwarded = true;
          if (co_await forwarder.exchange(command, reply, why)) {
            ++st.forwarded;
          } else {
            spdlog::warn("replay: forwarding {} to {} failed: {}", info.label, st.options.forward, why);
            reply = resp::error_reply("ERR faultline replay: forward to " + st.options.forward + " failed: " + one_line(why));
          }
        } else {
          reply = resp::error_reply("ERR faultline replay: no recorded reply for " + one_line(info.label) +
                                    "; closest: " + (c ? one_line(c->label) : std::string("(none)")));
        }
      }
      if (!st.forward_host.empty() && !f.args().empty()) co_await forwarder.follow_state(f.args()[0], command, forwarded);
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
  OpenSocket registered(st, sock);
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
    ++st.requests;
    const bool same = std::string_view(in).substr(0, e.request.size()) == e.request;
    if (same) {
      ++st.matched;
      spdlog::debug("replay: matched turn {} of recorded conn {}", e.index, c.conn);
    } else {
      ++st.unmatched;
      const Rule* rule = nullptr;
      const Unmatched policy = policy_for(st.options.rules, st.options.unmatched, RequestSubject{}, &rule);
      spdlog::info("replay: bytes differ from turn {} of recorded conn {}: {}; policy {}", e.index, c.conn,
                   printable(in, 60), to_string(policy));
      if (policy == Unmatched::fail) ++st.failed;
      if (policy != Unmatched::closest) co_return;
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

bool parse_port(const std::string& text, unsigned short& out) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long port = std::stoul(text);
  if (port > 65535) return false;
  out = static_cast<unsigned short>(port);
  return true;
}

}  // namespace

// Member order matters: the io_context goes before the state it serves (its pending
// coroutines refer to the state), the acceptor before the io_context.
struct ReplayServer::Impl {
  ServerState st;
  net::io_context io{1};
  tcp::acceptor acceptor{io};
  std::string address;
  std::thread thread;
  bool stopped = false;
};

ReplayServer::ReplayServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReplayServer::~ReplayServer() { stop(); }
const std::string& ReplayServer::address() const { return impl_->address; }
Protocol ReplayServer::protocol() const { return impl_->st.protocol; }
std::size_t ReplayServer::exchanges() const { return impl_->st.model.exchanges; }

ServerCounters ReplayServer::counters() const {
  const ServerState& st = impl_->st;
  ServerCounters c;
  c.requests = st.requests.load();
  c.matched = st.matched.load();
  c.unmatched = st.unmatched.load();
  c.forwarded = st.forwarded.load();
  c.failed = st.failed.load();
  return c;
}

void ReplayServer::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  Impl* impl = impl_.get();
  // Closing on the server's own thread: the socket set is only touched there.
  net::post(impl->io, [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
    for (tcp::socket* s : impl->st.open) s->close(ignored);
    impl->io.stop();
  });
  if (impl->thread.joinable()) impl->thread.join();
}

std::unique_ptr<ReplayServer> ReplayServer::start(const ServerOptions& options, std::string& error) {
  auto impl = std::make_unique<Impl>();
  ServerState& st = impl->st;
  st.options = options;
  if (auto e = check_server_options(options)) {
    error = *e;
    return nullptr;
  }
  ModelOptions mo;
  mo.protocol = options.protocol;
  mo.ignore = options.ignore;
  if (!build_model(options.journal, mo, st.model, error)) return nullptr;
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
      spdlog::warn("replay: the journal mixes protocols; serving {} (choose with --protocol)", protocol_name(st.protocol));
  }
  if (!options.forward.empty()) {
    // Checked here again, not only by check_server_options: a drill's ${replay.NAME.address}
    // is let through there, and an API caller could send one that nothing fills in.
    const auto fhp = split_host_port(options.forward);
    if (!fhp || fhp->host.empty() || fhp->port.empty() ||
        fhp->port.find_first_not_of("0123456789") != std::string::npos) {
      error = "forward: expected HOST:PORT, got \"" + options.forward + "\"";
      return nullptr;
    }
    st.forward_host = fhp->host;
    st.forward_port = fhp->port;
    if (st.protocol == Protocol::tcp) {
      error = "unmatched: forward needs protocol http, mcp or resp; this journal is served as tcp";
      return nullptr;
    }
  }
  for (const auto& c : st.model.connections)
    if (c.protocol == Protocol::tcp) st.tcp_conns.push_back(&c);
  st.matcher = std::make_unique<Matcher>(st.model);

  const auto hp = split_host_port(options.listen);
  if (!hp) {
    error = "listen: expected HOST:PORT, got \"" + options.listen + "\"";
    return nullptr;
  }
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) {
    error = "listen: bad address \"" + hp->host + "\": " + ec.message();
    return nullptr;
  }
  unsigned short port = 0;
  if (!parse_port(hp->port, port)) {
    error = "listen: bad port \"" + hp->port + "\"";
    return nullptr;
  }
  tcp::acceptor& acceptor = impl->acceptor;
  const tcp::endpoint ep(addr, port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    error = "listen: cannot listen on " + options.listen + ": " + ec.message();
    return nullptr;
  }
  const auto bound = acceptor.local_endpoint(ec);
  impl->address = join_host_port(bound.address().to_string(), bound.port());
  net::co_spawn(impl->io, accept_loop(st, acceptor), net::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { run_catching(raw->io, "replay server"); });
  spdlog::info("replay server: {} recorded exchanges ({}) on {}", st.model.exchanges, protocol_name(st.protocol),
               impl->address);
  return std::unique_ptr<ReplayServer>(new ReplayServer(std::move(impl)));
}

int run_server(const ServerOptions& options) {
  std::string error;
  auto server = ReplayServer::start(options, error);
  if (!server) {
    std::cerr << "faultline replay server: " << error << "\n";
    return 2;
  }
  if (!options.port_file.empty()) {
    if (!rec::write_file_replacing(options.port_file, server->address() + "\n", error))
      std::cerr << "faultline replay server: cannot write the port file: " << error << "\n";
  }
  net::io_context io(1);
  net::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  io.run();
  server->stop();
  const ServerCounters c = server->counters();
  std::cout << "replay server: served " << c.matched << ", unmatched " << c.unmatched << ", forwarded " << c.forwarded
            << "\n"
            << std::flush;
  return c.failed > 0 ? 1 : 0;
}

// ---- client -------------------------------------------------------------------------------
namespace {

struct ClientState {
  ClientOptions options;
  bool quiet = false;
  Model model;
  struct Target {
    std::string text, host, port;
  };
  std::map<std::string, Target> targets;  // by recorded proxy; "" = every other connection
  std::int64_t t0 = 0;
  Clock::time_point start;
  std::uint64_t total = 0, done = 0, matches = 0, mismatches = 0, errors = 0;
  std::uint64_t running = 0;
  bool progress_shown = false;  // a progress line is on the terminal: clear it before other output
  std::vector<std::string> divergences;
  // MCP (Streamable HTTP): a fresh server issues its own Mcp-Session-Id; recorded id -> live
  // id, learned from the replies, so later requests carry the id this server knows.
  std::map<std::string, std::string> mcp_sessions;
  std::set<std::string> issued_sessions;  // recorded ids some recorded response issued
};

// A request carrying a recorded session id whose issuing response (maybe on another
// connection) has not come back yet waits for it, up to the reply timeout.
awaitable<void> await_session(ClientState& st, Protocol p, const Exchange& e, net::steady_timer& timer,
                              const bool* stop = nullptr) {
  if (p != Protocol::http && p != Protocol::mcp) co_return;
  const auto recorded = mcp_session_id(e.request);
  if (!recorded || !st.issued_sessions.count(*recorded)) co_return;
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<long>(st.options.timeout * 1000));
  while (!st.mcp_sessions.count(*recorded) && Clock::now() < deadline && !(stop && *stop)) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(use_nothrow);
  }
}

// The request as it goes out now: with the live MCP session id in place of the recorded one.
// Also with the credentials the options put back in place of the recording's tokens.
std::string live_request(const ClientState& st, Protocol p, const Exchange& e) {
  if (p == Protocol::resp && st.options.redis_password) return with_redis_password(e.request, *st.options.redis_password);
  if (p != Protocol::http && p != Protocol::mcp) return e.request;
  std::string request = e.request;
  if (const auto recorded = mcp_session_id(request)) {
    const auto it = st.mcp_sessions.find(*recorded);
    if (it != st.mcp_sessions.end() && it->second != *recorded) request = with_mcp_session_id(request, it->second);
  }
  for (const auto& [name, value] : st.options.headers) request = with_header(request, name, value);
  return request;
}

void learn_session(ClientState& st, Protocol p, const std::string& recorded_reply, const std::string& live_reply) {
  if (p != Protocol::http && p != Protocol::mcp) return;
  const auto recorded = mcp_session_id(recorded_reply);
  const auto live = mcp_session_id(live_reply);
  if (recorded && live) st.mcp_sessions[*recorded] = *live;
}

void report_divergence(ClientState& st, const Connection& c, const Exchange& e, const std::string& what) {
  if (st.divergences.size() >= 20) return;
  std::string line = "conn " + std::to_string(c.conn) + " #" + std::to_string(e.index) + " " + e.label + ": " + what;
  if (!st.quiet) std::cerr << (st.progress_shown ? "\r\x1b[K" : "") << "replay: " << line << "\n";
  st.divergences.push_back(std::move(line));
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

std::chrono::milliseconds reply_timeout(const ClientState& st) {
  return std::chrono::milliseconds(static_cast<long>(st.options.timeout * 1000));
}

Verdict compare(const ClientState& st, Protocol p, const std::string& recorded, const std::string& live) {
  switch (p) {
    case Protocol::http:
    case Protocol::mcp: return compare_http(recorded, live, st.options.ignore);
    case Protocol::resp: return compare_resp(recorded, live);
    case Protocol::tcp: return compare_bytes(recorded, live);
  }
  return {};
}

// Open loop: the requests go out on the recorded schedule whatever the replies do; the
// reader (drive) pairs replies with requests in order. `sent` and `failed` are the writer's
// word to the reader, `wake` rings on each change.
struct OpenLoopWriter {
  explicit OpenLoopWriter(net::any_io_executor ex) : wake(ex), schedule(ex) {}
  std::size_t sent = 0;
  bool failed = false, finished = false, stop = false;
  std::string why;
  net::steady_timer wake;      // the reader waits on it
  net::steady_timer schedule;  // the writer waits on it (cancelled to stop it)
};

awaitable<void> write_open_loop(ClientState& st, const Connection& c, boost::beast::tcp_stream& stream,
                                std::shared_ptr<OpenLoopWriter> w) {
  for (const auto& e : c.exchanges) {
    co_await wait_until(w->schedule, st, e.request_t);
    if (!w->stop) co_await await_session(st, c.protocol, e, w->schedule, &w->stop);
    if (w->stop) break;
    if (!e.request.empty()) {
      const std::string request = live_request(st, c.protocol, e);
      stream.expires_after(reply_timeout(st));  // only the write's timer: a pending read keeps its own
      auto [wec, wn] = co_await net::async_write(stream, net::buffer(request), use_nothrow);
      (void)wn;
      if (wec) {
        w->failed = true;
        w->why = "write failed: " + wec.message();
        break;
      }
    }
    ++w->sent;
    w->wake.cancel();
  }
  w->finished = true;
  w->wake.cancel();
}

awaitable<void> drive(ClientState& st, const Connection& c) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  const std::uint64_t n = c.exchanges.size();
  co_await wait_until(timer, st, c.open_t);
  boost::beast::tcp_stream stream(ex);
  tcp::resolver resolver(ex);
  auto t = st.targets.find(c.proxy);
  if (t == st.targets.end()) t = st.targets.find("");
  const ClientState::Target target = t->second;  // replay_client made sure there is one
  auto [rec, results] = co_await resolver.async_resolve(target.host, target.port, use_nothrow);
  bool connected = false;
  std::string why;
  if (rec) {
    why = "cannot resolve " + target.text + ": " + rec.message();
  } else {
    stream.expires_after(reply_timeout(st));
    auto [cec, ep] = co_await stream.async_connect(results, use_nothrow);
    (void)ep;
    connected = !cec;
    if (cec) why = "cannot connect to " + target.text + ": " + cec.message();
  }
  if (!connected) {
    // As a divergence, so a drill's report (quiet) says why too.
    if (n > 0) report_divergence(st, c, c.exchanges.front(), why);
    st.errors += n;
    st.done += n;
    --st.running;
    co_return;
  }
  std::shared_ptr<OpenLoopWriter> writer;
  if (st.options.open_loop) {
    writer = std::make_shared<OpenLoopWriter>(ex);
    net::co_spawn(ex, write_open_loop(st, c, stream, writer), net::detached);
  }
  std::string in;
  for (std::size_t i = 0; i < c.exchanges.size(); ++i) {
    const Exchange& e = c.exchanges[i];
    if (writer) {
      while (writer->sent <= i && !writer->failed && !writer->finished) {
        writer->wake.expires_at(net::steady_timer::time_point::max());
        co_await writer->wake.async_wait(use_nothrow);
      }
      if (writer->sent <= i) {
        report_divergence(st, c, e, writer->why.empty() ? std::string("not sent") : writer->why);
        st.errors += n - i;
        st.done += n - i;
        break;
      }
    } else {
      co_await wait_until(timer, st, e.request_t);
      co_await await_session(st, c.protocol, e, timer);
      stream.expires_after(reply_timeout(st));
      if (!e.request.empty()) {
        const std::string request = live_request(st, c.protocol, e);
        auto [wec, wn] = co_await net::async_write(stream, net::buffer(request), use_nothrow);
        (void)wn;
        if (wec) {
          report_divergence(st, c, e, "write failed: " + wec.message());
          st.errors += n - i;
          st.done += n - i;
          break;
        }
      }
    }
    if (!e.has_response) {
      ++st.matches;
      ++st.done;
      continue;
    }
    if (writer) stream.expires_after(reply_timeout(st));  // the read's timer counts from its request
    std::string live, why;
    if (!co_await read_response(stream, c.protocol, e.method, e.response_bytes().size(), in, live, why)) {
      report_divergence(st, c, e, "no reply: " + why);
      st.errors += n - i;
      st.done += n - i;
      break;
    }
    learn_session(st, c.protocol, e.response_bytes(), live);
    const Verdict v = compare(st, c.protocol, e.response_bytes(), live);
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
  if (writer && !writer->finished) {
    // The reader gave up early: stop the writer before the stream it uses goes away.
    writer->stop = true;
    writer->schedule.cancel();
    stream.socket().cancel(ignored);
    while (!writer->finished) {
      writer->wake.expires_at(net::steady_timer::time_point::max());
      co_await writer->wake.async_wait(use_nothrow);
    }
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  --st.running;
}

awaitable<void> progress(ClientState& st) {
  net::steady_timer timer(co_await net::this_coro::executor);
  while (st.running > 0) {
    timer.expires_after(std::chrono::milliseconds(250));
    co_await timer.async_wait(use_nothrow);
    const double secs = std::chrono::duration<double>(Clock::now() - st.start).count();
    const double rate = secs > 0 ? static_cast<double>(st.done) / secs : 0.0;
    char eta[32] = "--";
    if (rate > 0 && st.total >= st.done) std::snprintf(eta, sizeof eta, "%.0f s", static_cast<double>(st.total - st.done) / rate);
    std::fprintf(stderr, "\rreplay: %llu/%llu  %.0f/s  eta %s  mismatches %llu  errors %llu\x1b[K",
                 static_cast<unsigned long long>(st.done), static_cast<unsigned long long>(st.total), rate, eta,
                 static_cast<unsigned long long>(st.mismatches), static_cast<unsigned long long>(st.errors));
    st.progress_shown = true;
  }
  if (st.progress_shown) std::fprintf(stderr, "\r\x1b[K");  // cleared: the summary follows on a clean line
}

}  // namespace

bool replay_client(const ClientOptions& options, ClientResult& result, std::string& error, bool quiet) {
  ClientState st;
  st.options = options;
  st.quiet = quiet;
  ModelOptions mo;
  mo.protocol = options.protocol;
  mo.ignore = options.ignore;
  if (!build_model(options.journal, mo, st.model, error)) return false;
  for (const auto& w : st.model.warnings) spdlog::warn("replay: {}", w);
  auto proxy_list = [&] {
    std::string list;
    for (const auto& p : st.model.proxies) list += (list.empty() ? "" : ", ") + p;
    return list;
  };
  if (!options.proxy.empty()) {
    auto& conns = st.model.connections;
    conns.erase(std::remove_if(conns.begin(), conns.end(), [&](const Connection& c) { return c.proxy != options.proxy; }),
                conns.end());
    if (conns.empty()) {
      error = "proxy: the journal has no connection of proxy \"" + options.proxy + "\" (it holds: " + proxy_list() + ")";
      return false;
    }
  }
  auto add_target = [&](const std::string& proxy, const std::string& text) {
    const auto hp = split_host_port(text);
    if (!hp || hp->port.empty()) {
      error = "target: expected HOST:PORT" + std::string(proxy.empty() ? "" : " for " + proxy) + ", got \"" + text + "\"";
      return false;
    }
    st.targets[proxy] = {text, hp->host.empty() ? "127.0.0.1" : hp->host, hp->port};
    return true;
  };
  if (!options.target.empty() && !add_target("", options.target)) return false;
  for (const auto& [proxy, text] : options.proxy_targets) {
    if (std::find(st.model.proxies.begin(), st.model.proxies.end(), proxy) == st.model.proxies.end()) {
      error = "target: the journal has no proxy \"" + proxy + "\" (it holds: " + proxy_list() + ")";
      return false;
    }
    if (!add_target(proxy, text)) return false;
  }
  std::set<std::string> untargeted;
  for (const auto& c : st.model.connections)
    if (!st.targets.count(c.proxy)) untargeted.insert(c.proxy);
  if (!untargeted.empty() && !st.targets.count("")) {
    error = "target: no --target for proxy \"" + *untargeted.begin() + "\" (give HOST:PORT for all, or " +
            *untargeted.begin() + "=HOST:PORT)";
    return false;
  }
  if (options.proxy.empty() && untargeted.size() > 1) {
    // Several proxies' traffic to one server: half of it will not match. Say so.
    std::string list;
    for (const auto& p : untargeted) list += (list.empty() ? "" : ", ") + p;
    const std::string warning = "the journal holds connections of " + std::to_string(untargeted.size()) + " proxies (" + list +
                                "); all of them go to " + options.target + ": choose one with --proxy NAME, or give each its "
                                "server with --target NAME=HOST:PORT";
    if (!quiet) std::cerr << "replay: warning: " << warning << "\n";
    result.warnings.push_back(warning);
  }
  const unsigned k = std::max(1u, options.concurrency_scale);
  bool first = true;
  for (const auto& c : st.model.connections) {
    if (first || c.open_t < st.t0) st.t0 = c.open_t;
    first = false;
    st.total += c.exchanges.size() * k;
  }
  for (const auto& c : st.model.connections) {
    if (c.protocol != Protocol::http && c.protocol != Protocol::mcp) continue;
    for (const auto& e : c.exchanges)
      if (auto id = mcp_session_id(e.response_bytes())) st.issued_sessions.insert(*id);
  }
  net::io_context io(1);
  st.start = Clock::now();
  for (const auto& c : st.model.connections)
    for (unsigned i = 0; i < k; ++i) {
      ++st.running;
      net::co_spawn(io, drive(st, c), net::detached);
    }
  const bool show = !quiet && (options.progress < 0 ? ::isatty(STDERR_FILENO) != 0 : options.progress > 0);
  if (show && st.running > 0) net::co_spawn(io, progress(st), net::detached);
  bool cancelled = false;
  if (options.cancel && st.running > 0) {
    net::co_spawn(io, [&]() -> awaitable<void> {
      net::steady_timer tick(co_await net::this_coro::executor);
      while (st.running > 0) {
        if (options.cancel->load(std::memory_order_relaxed)) {
          cancelled = true;
          io.stop();  // the connections' frames go with `io`, before `st`
          co_return;
        }
        tick.expires_after(std::chrono::milliseconds(50));
        co_await tick.async_wait(use_nothrow);
      }
    }, net::detached);
  }
  io.run();
  if (cancelled) {
    error = "cancelled after " + std::to_string(st.done) + " of " + std::to_string(st.total) + " exchanges";
    return false;
  }
  result.exchanges = st.total;
  result.matched = st.matches;
  result.mismatched = st.mismatches;
  result.errors = st.errors;
  result.divergences = std::move(st.divergences);
  return true;
}

int run_client(const ClientOptions& options) {
  ClientResult r;
  std::string error;
  if (!replay_client(options, r, error)) {
    std::cerr << "faultline replay client: " << error << "\n";
    return 2;
  }
  std::cout << "replay client: " << r.exchanges << " exchanges, " << r.matched << " matched, " << r.mismatched
            << " mismatched, " << r.errors << " errors\n"
            << std::flush;
  return r.ratio() > options.threshold ? 1 : 0;
}

}  // namespace faultline::replay
