// The Redis engine. Commands and replies are framed as they stream; each forwarded command
// expects one reply, in order (Redis answers a connection's commands in order), so a FIFO
// pairs them. An answer made here waits its turn behind the replies still due. Pub/sub,
// MONITOR and CLIENT REPLY break the one-reply-per-command rule: from there on the
// connection passes through untouched.
#include <algorithm>
#include <deque>
#include <utility>

#include "faults/engine_common.hpp"
#include "protocols/resp.hpp"

namespace faultline {
namespace {

class RespEngine final : public EngineBase {
 public:
  explicit RespEngine(Rng rng) : EngineBase(rng) {}

  void on_bytes(Stream from, std::string_view data, TimePoint now, EngineOutput& out) override {
    if (dead_) return;
    if (from == Stream::upstream) on_client_bytes(data, now, out);
    else on_server_bytes(data, now, out);
  }

  void on_eof(Stream from, TimePoint now, EngineOutput& out) override {
    if (from == Stream::upstream) {
      if (!dead_ && mode_ == Mode::forwarding) send(out, Stream::upstream, cmd_pending_, std::max(now, release_));
      cmd_pending_.clear();
      end(out, Stream::upstream, EndKind::half_close, now);
    } else {
      if (!dead_ && !replacing_) send(out, Stream::downstream, reply_pending_, now);
      reply_pending_.clear();
      end(out, Stream::downstream, EndKind::half_close, now);
    }
  }

 private:
  enum class Mode { idle, forwarding, swallowing };
  struct Exchange {
    bool local = false;
    std::string answer;              // local answers, and replies replaced after forwarding
    bool replace_reply = false;      // resp_error when=after: the real reply is discarded
    bool passthrough = false;        // SUBSCRIBE & co.: from its reply on, replies are bytes
    const ToxicConfig* replaced_by = nullptr;
  };

  void on_client_bytes(std::string_view data, TimePoint now, EngineOutput& out) {
    if (passthrough_) {
      send(out, Stream::upstream, data, now);
      return;
    }
    cmd_pending_.append(data);
    std::string_view view = cmd_pending_;
    std::size_t offset = 0;
    for (int guard = 0; guard < 1 << 20 && !dead_; ++guard) {
      const FrameStep s = commands_.step(view.substr(offset));
      if (s.event == FrameEvent::error) {
        ++counters_.undecodable;
        passthrough_ = true;
        send(out, Stream::upstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      const std::string_view chunk = view.substr(offset, s.consumed);
      offset += s.consumed;
      if (s.event == FrameEvent::none && mode_ == Mode::idle && !chunk.empty() && !idle_bytes(chunk)) {
        spilled_ = true;  // a name + key over 64 KiB: its start goes out before its head
      }
      if (s.event == FrameEvent::head) command_head(now, out);
      // Idle bytes (blank inline lines, `*0`) are Redis's to skip: they go through too.
      if (mode_ != Mode::swallowing) send(out, Stream::upstream, chunk, std::max(now, release_));
      if (s.event == FrameEvent::end) command_end(now, out);
      if (passthrough_) {
        send(out, Stream::upstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
    }
    if (dead_) offset = view.size();
    cmd_pending_.erase(0, offset);
  }

  // What the framer consumes between commands, alone: a blank inline line, or `*0`.
  static bool idle_bytes(std::string_view chunk) {
    if (chunk == "*0\r\n") return true;
    return std::all_of(chunk.begin(), chunk.end(), [](char c) {
      return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    });
  }

  bool matches(const MessageMatch& m) const {
    // Every field given must match, and a Redis command has no method, path, header, body,
    // JSON-RPC method, tool or session: a fault naming one never acts here (it is not a
    // catch-all).
    if (!m.method.empty() || !m.path.empty() || m.path_regex || !m.headers.empty() || !m.body.empty() ||
        !m.rpc_method.empty() || !m.tool.empty() || !m.session.empty()) {
      return false;
    }
    if (!m.command.empty() && m.command != commands_.name()) return false;
    if (!m.key.empty() && (commands_.arity() < 2 || !resp::glob_match(m.key, commands_.key()))) return false;
    return true;
  }

  void command_head(TimePoint now, EngineOutput& out) {
    ++counters_.requests;
    const std::string& name = commands_.name();
    const bool spilled = std::exchange(spilled_, false);
    Exchange x;
    Duration delay{};
    mode_ = Mode::forwarding;
    after_end_ = nullptr;
    for (const auto& config : faults_) {
      const ProtocolFault* f = config->compiled.get();
      if (!f || !config->active_at(now) || !matches(f->match)) continue;
      // Like Envoy's redis faults: with no command named, AUTH and PING are left alone.
      if (f->match.command.empty() && (name == "AUTH" || name == "PING" || name == "HELLO")) continue;
      // A command whose start already went out can no longer be answered or dropped
      // instead of being forwarded: Redis would wait for the rest of it.
      if (spilled && !f->after_forward && (config->type == "resp_error" || config->type == "resp_drop")) continue;
      if (!roll(*config)) continue;
      const std::string what = name + (commands_.arity() > 1 ? " " + commands_.key() : "");
      if (config->type == "resp_delay") {
        delay += draw_delay(*f);
        report(out, *config, "delayed " + what);
      } else if (config->type == "resp_error") {
        x.answer = resp::error_reply(f->error_line);
        if (f->after_forward) {
          x.replace_reply = true;
        } else {
          x.local = true;
          mode_ = Mode::swallowing;
        }
        report(out, *config, "answered -" + f->error_line.substr(0, f->error_line.find(' ')) + " to " + what +
                                 (f->after_forward ? " after forwarding it" : ""));
        break;
      } else if (config->type == "resp_drop") {
        report(out, *config, "closed the connection " + std::string(f->after_forward ? "after forwarding " : "before ") + what);
        if (f->after_forward) {
          after_end_ = config.get();
        } else {
          // Only the upstream side gets the end: it runs once the commands ahead of this one
          // have been written whole, and closing there closes both sides. An end towards the
          // client would close the session at once, cutting those commands mid-write.
          end(out, Stream::upstream, EndKind::close, std::max(now, release_));
          mode_ = Mode::swallowing;  // not even the bytes already here go out
          dead_ = true;
          return;
        }
        break;
      }
    }
    release_ = std::max(release_, now + delay);
    if (mode_ == Mode::forwarding &&
        (name == "SUBSCRIBE" || name == "PSUBSCRIBE" || name == "SSUBSCRIBE" || name == "MONITOR" ||
         (name == "CLIENT" && upper_ascii(commands_.key()) == "REPLY"))) {
      // After this command, replies no longer pair with commands: the commands after it
      // pass as bytes, and so do the replies once the replies before its own have gone.
      pending_passthrough_ = true;
      x.passthrough = true;
    }
    track_transaction(now, out, x);
    exchanges_.push_back(std::move(x));
    emit_ready(now, out);
  }

  // Inside MULTI, Redis flags the transaction when it refuses a command, and its EXEC then
  // answers EXECABORT without running anything. A command answered here in Redis' place is
  // such a refusal, so its transaction's EXEC becomes a DISCARD (nothing queued runs) whose
  // reply is replaced by that EXECABORT: otherwise the queued rest would run, and EXEC's
  // array would have fewer entries than the client queued commands.
  void track_transaction(TimePoint now, EngineOutput& out, Exchange& x) {
    const std::string& name = commands_.name();
    if (mode_ != Mode::forwarding) {
      if (in_multi_ && x.local) multi_failed_ = true;
      return;
    }
    if (name == "MULTI") {
      if (!in_multi_) multi_failed_ = false;
      in_multi_ = true;
    } else if (name == "DISCARD" || name == "RESET") {
      in_multi_ = multi_failed_ = false;
    } else if (name == "EXEC" && commands_.arity() == 1) {
      if (in_multi_ && multi_failed_) {
        mode_ = Mode::swallowing;  // the EXEC itself is not forwarded
        send(out, Stream::upstream, "*1\r\n$7\r\nDISCARD\r\n", std::max(now, release_));
        if (!x.replace_reply) x.answer = resp::error_reply("EXECABORT Transaction discarded because of previous errors.");
        x.replace_reply = true;
      }
      in_multi_ = multi_failed_ = false;
    }
  }

  static std::string upper_ascii(std::string_view s) {
    std::string u(s);
    for (char& c : u) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return u;
  }

  void command_end(TimePoint now, EngineOutput& out) {
    if (after_end_) {
      // The connection closes once the command went out whole (upstream's end waits for its
      // bytes; see resp_drop before), before its reply can come back.
      end(out, Stream::upstream, EndKind::close, std::max(now, release_));
      dead_ = true;
      after_end_ = nullptr;
    }
    mode_ = Mode::idle;
    if (pending_passthrough_) passthrough_ = true;
  }

  void emit_ready(TimePoint now, EngineOutput& out) {
    while (!exchanges_.empty() && exchanges_.front().local) {
      send(out, Stream::downstream, exchanges_.front().answer, now);
      exchanges_.pop_front();
    }
  }

  void on_server_bytes(std::string_view data, TimePoint now, EngineOutput& out) {
    if (replies_passthrough_) {
      send(out, Stream::downstream, data, now);
      return;
    }
    reply_pending_.append(data);
    std::string_view view = reply_pending_;
    std::size_t offset = 0;
    for (int guard = 0; guard < 1 << 20 && !dead_; ++guard) {
      if (!in_reply_) {
        if (!exchanges_.empty() && exchanges_.front().passthrough) {
          replies_passthrough_ = true;
          exchanges_.clear();
          send(out, Stream::downstream, view.substr(offset), now);
          offset = view.size();
          break;
        }
        // A RESP3 push ('>') answers no command: it is never the reply to replace.
        replacing_ = !exchanges_.empty() && exchanges_.front().replace_reply &&
                     offset < view.size() && view[offset] != '>';
      }
      const FrameStep s = replies_.step(view.substr(offset));
      if (s.event == FrameEvent::error) {
        ++counters_.undecodable;
        replies_passthrough_ = true;
        replacing_ = false;
        send(out, Stream::downstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      const std::string_view chunk = view.substr(offset, s.consumed);
      offset += s.consumed;
      in_reply_ = s.event != FrameEvent::end && (in_reply_ || s.consumed > 0);
      if (!replacing_) send(out, Stream::downstream, chunk, now);
      if (s.event == FrameEvent::end) reply_end(now, out);
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
    }
    if (dead_) offset = view.size();
    reply_pending_.erase(0, offset);
  }

  void reply_end(TimePoint now, EngineOutput& out) {
    in_reply_ = false;
    if (replies_.is_push()) return;  // RESP3 push: answers no command
    ++counters_.responses;
    if (exchanges_.empty()) return;  // a reply we did not see asked for (e.g. after passthrough)
    if (replacing_) send(out, Stream::downstream, exchanges_.front().answer, now);
    replacing_ = false;
    exchanges_.pop_front();
    emit_ready(now, out);
  }

  resp::CommandFramer commands_;
  resp::ReplyFramer replies_;
  std::string cmd_pending_, reply_pending_;
  Mode mode_ = Mode::idle;
  TimePoint release_{};
  std::deque<Exchange> exchanges_;
  const ToxicConfig* after_end_ = nullptr;
  bool in_reply_ = false;
  bool replacing_ = false;
  bool passthrough_ = false, replies_passthrough_ = false, pending_passthrough_ = false;
  bool in_multi_ = false, multi_failed_ = false;  // the server's MULTI state, as forwarded
  bool spilled_ = false;  // the command being framed went out in part before its head
  bool dead_ = false;
};

}  // namespace

std::unique_ptr<ProtocolEngine> make_resp_engine(Rng rng) { return std::make_unique<RespEngine>(rng); }
std::unique_ptr<ProtocolEngine> make_http_engine(Rng rng, bool mcp);

bool protocol_accepts(Protocol p, Layer layer) {
  switch (layer) {
    case Layer::bytes: return true;
    case Layer::http: return p == Protocol::http || p == Protocol::mcp;
    case Layer::resp: return p == Protocol::resp;
    case Layer::jsonrpc: return p == Protocol::mcp;
  }
  return false;
}

std::unique_ptr<ProtocolEngine> make_engine(Protocol protocol, Rng rng) {
  switch (protocol) {
    case Protocol::http: return make_http_engine(rng, false);
    case Protocol::mcp: return make_http_engine(rng, true);
    case Protocol::resp: return make_resp_engine(rng);
    default: return nullptr;
  }
}

}  // namespace faultline
