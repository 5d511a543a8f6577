// HAR 1.2 export: each connection's recorded byte streams are framed again with the
// proxy's own HTTP framer (requests on "up", responses on "down", paired in order), so
// what the HAR shows is what crossed the proxy, chunk times included. faultline's extras
// follow HAR's rule for custom fields (a leading underscore): `_sse_events`, `_faults`,
// `_redactions`, `_error`, `_proxy`.
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <map>

#include "base/ascii.hpp"
#include "base/json_writer.hpp"
#include "protocols/http.hpp"
#include "protocols/sse.hpp"
#include "recorder/export_internal.hpp"

namespace faultline::rec::xp {

namespace {

struct SseEvent {
  std::size_t end = 0;  // index into the direction's joined bytes, just past the event
  sse::Event event;
};

// One HTTP message as framed from a joined direction.
struct Message {
  http::Head head;
  std::size_t start = 0;     // first byte of the head (index into Joined::bytes)
  std::size_t head_end = 0;  // first byte after the head
  std::size_t end = 0;       // first byte after the message (so far, when incomplete)
  std::string body;          // payload with chunked framing removed
  bool complete = false;
  std::vector<SseEvent> sse;
  // Responses: the index of the request this answers, or -1 when no recorded request can
  // be its (faultline answered a request itself, which then never reached the upstream).
  long answers = -1;
};

struct Framed {
  std::vector<Message> messages;  // responses: final ones only (1xx interim are dropped)
  std::string stopped;            // why framing stopped before the end ("" = it did not)
  std::size_t stopped_at = 0;
};

bool is_sse(const http::Head& h) {
  const auto ct = h.field("content-type");
  if (!ct) return false;
  const std::string v = ascii_lower(*ct);
  return v.find("text/event-stream") != std::string::npos;
}

// Frames every message of one direction. For responses, `methods` and `starts` are the
// requests' methods and start times in order: a response is paired with the next request
// unless that request started after the response's first byte (then the response answers
// a request the journal does not hold, see Message::answers), and the request's method
// tells the framer whether a body follows (not after HEAD). `ended`: the direction was
// closed by its peer (not cut by a hole), so a body running until close ends there.
Framed frame(const Joined& joined, bool request, const std::vector<std::string>& methods,
             const std::vector<std::int64_t>& starts, bool ended) {
  Framed out;
  http::Framer framer(request);
  const std::string_view all = joined.bytes;
  std::size_t pos = 0;
  std::size_t next = 0;    // the request the next final response answers, if it is one of ours
  long answering = -1;     // what the response under way answers
  std::optional<Message> cur;
  sse::Splitter splitter;
  bool sse_body = false;
  std::vector<std::size_t> ends;
  std::vector<sse::Event> events;
  // Bounded by the bytes: every step consumes something or reports an event, and an end
  // is followed by a step that consumes. The guard only protects against a framer bug.
  for (std::size_t guard = 0; guard < 4 * all.size() + 16; ++guard) {
    if (!request && !framer.in_message()) {
      std::size_t first = pos;  // the next response's first byte (blank lines are skipped)
      while (first < all.size() && (all[first] == '\r' || all[first] == '\n')) ++first;
      const bool ours = next < methods.size() && starts[next] <= joined.time_at(first);
      answering = ours ? static_cast<long>(next) : -1;
      framer.answering(ours ? methods[next] : "GET");
    }
    const std::string_view rest = all.substr(pos);
    const FrameStep s = framer.step(rest);
    if (s.event == FrameEvent::error) {
      out.stopped = std::string(framer.error());
      out.stopped_at = pos;
      cur.reset();
      return out;
    }
    const std::size_t at = pos;
    pos += s.consumed;
    if (s.event == FrameEvent::head) {
      cur.emplace();
      cur->head = framer.head();
      cur->start = at;
      cur->head_end = pos;
      cur->end = pos;
      cur->answers = answering;
      sse_body = !request && is_sse(cur->head);
      splitter = sse::Splitter{};
    } else if (s.event == FrameEvent::body && cur) {
      cur->body.append(s.payload);
      cur->end = pos;
      if (sse_body) {
        ends.clear();
        events.clear();
        splitter.feed(s.payload, ends, events);
        const auto base = static_cast<std::size_t>(s.payload.data() - all.data());
        for (std::size_t i = 0; i < ends.size(); ++i) cur->sse.push_back({base + ends[i], std::move(events[i])});
      }
    } else if (s.event == FrameEvent::end && cur) {
      cur->end = pos;
      cur->complete = true;
      const bool interim = !request && cur->head.status / 100 == 1 && cur->head.status != 101;
      if (!interim) {
        if (cur->answers >= 0) ++next;
        out.messages.push_back(std::move(*cur));
      }
      cur.reset();
      if (framer.upgraded()) {
        // A 101 or a CONNECT tunnel: what follows is not HTTP any more.
        if (pos < all.size()) {
          out.stopped = "the connection switched protocols";
          out.stopped_at = pos;
        }
        return out;
      }
    } else if (s.consumed == 0) {
      break;  // needs more bytes than were recorded
    }
  }
  if (cur) {
    cur->end = all.size();
    if (ended && framer.finish()) cur->complete = true;
    out.messages.push_back(std::move(*cur));
  }
  return out;
}

struct Upstream {
  std::string scheme = "http";
  std::string authority;  // host[:port] as configured
  std::string host;       // without brackets or port
};

Upstream parse_upstream(std::string_view u) {
  Upstream out;
  if (u.rfind("https://", 0) == 0) {
    out.scheme = "https";
    u.remove_prefix(8);
  } else if (u.rfind("http://", 0) == 0) {
    u.remove_prefix(7);
  }
  out.authority = std::string(u.substr(0, u.find('/')));
  std::string_view a = out.authority;
  if (!a.empty() && a.front() == '[') {
    out.host = std::string(a.substr(1, a.find(']') == std::string_view::npos ? a.npos : a.find(']') - 1));
  } else {
    out.host = std::string(a.substr(0, a.find(':')));
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool hex_digit(char c) { return hex_value(c) >= 0; }

// A request target made into a valid URI reference: bytes a URI cannot hold (spaces,
// quotes, non-ASCII, a '%' that starts no escape) are percent-encoded. HAR readers parse
// `url`, and har-validator checks it against RFC 3986.
std::string uri_escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       std::string_view("-._~!$&'()*+,;=:@/?").find(static_cast<char>(c)) != std::string_view::npos;
    const bool escape = c == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) && hex_digit(s[i + 2]);
    if (plain || escape) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string url_of(const Upstream& up, std::string_view target, std::string_view method) {
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) return uri_escape(target);
  if (method == "CONNECT") return "https://" + uri_escape(target) + "/";
  std::string path(target);
  if (path.empty() || path.front() != '/') path = "/" + (path == "*" ? std::string() : path);
  return up.scheme + "://" + uri_escape(up.authority) + uri_escape(path);
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) && hex_digit(s[i + 2])) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void write_query(JsonWriter& w, std::string_view target) {
  w.key("queryString");
  w.begin_array();
  const std::size_t q = target.find('?');
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    rest = rest.substr(0, rest.find('#'));
    while (!rest.empty()) {
      const std::size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      if (pair.empty()) continue;
      const std::size_t eq = pair.find('=');
      w.begin_object();
      w.field("name", percent_decode(pair.substr(0, eq)));
      w.field("value", eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1)));
      w.end_object();
    }
  }
  w.end_array();
}

void write_headers(JsonWriter& w, const http::Head& h) {
  w.key("headers");
  w.begin_array();
  for (const auto& f : h.fields) {
    w.begin_object();
    w.field("name", f.name);
    w.field("value", f.value);
    w.end_object();
  }
  w.end_array();
}

std::string version_text(const http::Head& h) {
  return "HTTP/" + std::to_string(h.version / 10) + "." + std::to_string(h.version % 10);
}

bool content_encoded(const http::Head& h) {
  const auto ce = h.field("content-encoding");
  return ce && !ce->empty() && !http::iequals(*ce, "identity");
}

// HAR times are ms; three decimals (µs) are kept. Rounded to whole µs first so `time`,
// computed from the same rounded parts, is exactly the sum of its timings.
double ms(std::int64_t ns) {
  const std::int64_t us = ns >= 0 ? (ns + 500) / 1000 : -((-ns + 500) / 1000);
  return static_cast<double>(us) / 1000.0;
}

// Text fields hold the body when it is UTF-8; otherwise base64, which HAR allows for
// response content (`encoding`) and faultline marks with `_encoding` for request bodies.
void write_body_text(JsonWriter& w, const std::string& body, bool encoded, bool response) {
  if (!encoded && valid_utf8(body)) {
    w.field("text", body);
    return;
  }
  w.field("text", base64_encode(body));
  w.field(response ? "encoding" : "_encoding", "base64");
  if (encoded) w.field("comment", "the body as sent: its Content-Encoding is not decoded");
}

struct Entry {
  std::int64_t start = 0;  // recording time of the request's first byte
  std::uint64_t conn = 0;
  std::size_t index = 0;
  std::string json;        // the entry object, written at indentation level 2
};

// How a direction of a connection stopped, in words, for `_error`.
std::string ending(const Conn& c, std::size_t dir, bool hole) {
  for (const JournalEvent* e : c.all) {
    if (e->type == EventType::end && e->how == EndKind::reset) return "the connection was reset";
  }
  if (hole) return "bytes were not recorded (a gap)";
  if (!c.ends[dir].empty()) {
    return c.ends[dir].front()->how == EndKind::half_close ? "the sender closed its side"
                                                            : "the connection was closed";
  }
  if (c.close) return "the connection was closed";
  return "the recording ended first";
}

void conn_entries(const Model& model, const Conn& c, std::vector<Entry>& entries, const ExportOptions& options,
                  bool& not_http) {
  const Joined up = join(c.data[0]);
  const Joined down = join(c.data[1]);
  // A direction ended by its peer can end a body that runs until close; a hole cannot.
  const bool up_ended = !up.hole && (!c.ends[0].empty() || c.close);
  const bool down_ended = !down.hole && (!c.ends[1].empty() || c.close);
  Framed requests = frame(up, true, {}, {}, up_ended);
  std::vector<std::string> methods;
  std::vector<std::int64_t> starts;
  for (const auto& m : requests.messages) {
    methods.push_back(m.head.method);
    starts.push_back(up.time_at(m.start));
  }
  Framed responses = frame(down, false, methods, starts, down_ended);
  if (requests.messages.empty() && responses.messages.empty()) {
    not_http = !requests.stopped.empty() || c.protocol() == "tcp" || c.protocol().empty();
    return;
  }
  const std::string cid = "conn " + std::to_string(c.id);
  if (!requests.stopped.empty())
    warn(options, cid + ": the requests stop being HTTP at byte " + std::to_string(up.base + requests.stopped_at) +
                      " (" + requests.stopped + "); the exchanges before it are exported");
  if (!responses.stopped.empty() && responses.stopped != "the connection switched protocols")
    warn(options, cid + ": the responses stop being HTTP at byte " + std::to_string(down.base + responses.stopped_at) +
                      " (" + responses.stopped + "); the exchanges before it are exported");
  if (up.hole || down.hole)
    warn(options, cid + ": bytes of this connection were not recorded (a gap); exchanges after them are missing");

  const Upstream upstream = parse_upstream(c.open ? c.open->upstream : "");
  unsigned char addr[16];
  const bool literal = !upstream.host.empty() && (inet_pton(AF_INET, upstream.host.c_str(), addr) == 1 ||
                                                  inet_pton(AF_INET6, upstream.host.c_str(), addr) == 1);
  std::int64_t last_t = c.first_t;
  for (const JournalEvent* e : c.all) last_t = std::max(last_t, e->t);

  // The exchanges: each request with the response answering it (if any), and responses
  // to requests faultline answered itself (an abort fault), which never reached the
  // upstream and so are not in the journal.
  struct Exchange {
    const Message* rq = nullptr;
    const Message* rs = nullptr;
    std::int64_t start = 0;  // the request's first byte (or the response's, without one)
    std::int64_t end = 0;    // the response's last byte (or the connection's end, without one)
    std::vector<const JournalEvent*> faults;
  };
  std::vector<Exchange> xs;
  std::vector<const Message*> answer(requests.messages.size(), nullptr);
  for (const auto& m : responses.messages) {
    if (m.answers >= 0) answer[static_cast<std::size_t>(m.answers)] = &m;
  }
  for (std::size_t i = 0; i < requests.messages.size(); ++i) xs.push_back({&requests.messages[i], answer[i], starts[i], 0, {}});
  for (const auto& m : responses.messages) {
    if (m.answers < 0) xs.push_back({nullptr, &m, down.time_at(m.start), 0, {}});
  }
  for (Exchange& x : xs) x.end = x.rs ? down.time_at(x.rs->end == 0 ? 0 : x.rs->end - 1) : last_t;
  std::stable_sort(xs.begin(), xs.end(), [](const Exchange& a, const Exchange& b) { return a.start < b.start; });
  // A fault belongs to the first exchange not yet over when it happened: request-phase
  // faults are journaled when the request arrives, before its bytes go upstream (and are
  // journaled), so "under way since its first byte" would hand them to the exchange before.
  // Faults after the last exchange go to the last one.
  {
    std::size_t j = 0;
    for (const JournalEvent* f : c.faults) {
      while (j < xs.size() && xs[j].end < f->t) ++j;
      xs[std::min(j, xs.size() - 1)].faults.push_back(f);
    }
  }

  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Exchange& x = xs[i];
    const Message* rq = x.rq;
    const Message* rs = x.rs;
    // Without a recorded request, the fault that answered it names it ("answered 429 to
    // GET /v1/x", as the HTTP engine words it) and says when it was decided.
    std::string method, target;
    std::int64_t t0 = x.start;
    if (!rq) {
      for (const JournalEvent* f : x.faults) {
        const std::string& what = f->what;
        const std::size_t to = what.find(" to ");
        if (what.rfind("answered ", 0) != 0 || to == std::string::npos) continue;
        const std::string line = what.substr(to + 4);
        const std::size_t sp = line.find(' ');
        if (sp == std::string::npos) continue;
        method = line.substr(0, sp);
        target = line.substr(sp + 1);
        t0 = std::min(t0, f->t);
        break;
      }
    }
    const std::int64_t sent = rq ? up.time_at(rq->end == 0 ? 0 : rq->end - 1) : t0;
    std::int64_t first = sent, last = sent;
    if (rs) {
      first = down.time_at(rs->start);
      last = down.time_at(rs->end == 0 ? 0 : rs->end - 1);
    } else {
      first = last = std::max(sent, last_t);
    }
    const std::int64_t send = std::max<std::int64_t>(0, sent - t0);
    const std::int64_t wait = std::max<std::int64_t>(0, first - sent);
    const std::int64_t receive = std::max<std::int64_t>(0, last - std::max(first, sent));

    std::string json;
    JsonWriter w(json);
    w.begin_object();
    w.field("startedDateTime", iso_ms(model.wall_ns + t0));
    w.key("time");
    w.number(ms(send) + ms(wait) + ms(receive));
    // request
    w.key("request");
    w.begin_object();
    if (rq) {
      w.field("method", rq->head.method);
      w.field("url", url_of(upstream, rq->head.target, rq->head.method));
      w.field("httpVersion", version_text(rq->head));
    } else {
      w.field("method", method);
      w.field("url", url_of(upstream, target, method));
      w.field("httpVersion", "");
    }
    w.key("cookies");
    w.begin_array();
    w.end_array();
    if (rq) {
      write_headers(w, rq->head);
      write_query(w, rq->head.target);
      if (!rq->body.empty()) {
        w.key("postData");
        w.begin_object();
        w.field("mimeType", std::string(rq->head.field("content-type").value_or("application/octet-stream")));
        write_body_text(w, rq->body, content_encoded(rq->head), false);
        w.end_object();
      }
      w.field_int("headersSize", static_cast<std::int64_t>(rq->head_end - rq->start));
      w.field_int("bodySize", static_cast<std::int64_t>(rq->end - rq->head_end));
    } else {
      w.key("headers");
      w.begin_array();
      w.end_array();
      write_query(w, target);
      w.field_int("headersSize", -1);
      w.field_int("bodySize", -1);
    }
    w.end_object();
    // response
    w.key("response");
    w.begin_object();
    if (rs) {
      w.field_int("status", rs->head.status);
      w.field("statusText", rs->head.reason);
      w.field("httpVersion", version_text(rs->head));
      w.key("cookies");
      w.begin_array();
      w.end_array();
      write_headers(w, rs->head);
      w.key("content");
      w.begin_object();
      w.field_int("size", static_cast<std::int64_t>(rs->body.size()));
      w.field("mimeType", std::string(rs->head.field("content-type").value_or("x-unknown")));
      if (!rs->body.empty()) write_body_text(w, rs->body, content_encoded(rs->head), true);
      w.end_object();
      w.field("redirectURL", std::string(rs->head.field("location").value_or("")));
      w.field_int("headersSize", static_cast<std::int64_t>(rs->head_end - rs->start));
      w.field_int("bodySize", static_cast<std::int64_t>(rs->end - rs->head_end));
      if (!rs->sse.empty()) {
        w.key("_sse_events");
        w.begin_array();
        for (const SseEvent& ev : rs->sse) {
          const sse::Event& e = ev.event;
          if (e.event.empty() && e.data.empty() && e.id.empty()) continue;  // a comment (keep-alive)
          w.begin_object();
          w.key("t_ms");
          w.number(ms(down.time_at(ev.end == 0 ? 0 : ev.end - 1) - first));
          w.field("event", e.event.empty() ? "message" : e.event);
          w.field("id", e.id);
          w.field("data", e.data);
          w.end_object();
        }
        w.end_array();
      }
    } else {
      // No response came: browsers write status 0 for a request that got none.
      w.field_int("status", 0);
      w.field("statusText", "");
      w.field("httpVersion", "");
      w.key("cookies");
      w.begin_array();
      w.end_array();
      w.key("headers");
      w.begin_array();
      w.end_array();
      w.key("content");
      w.begin_object();
      w.field_int("size", 0);
      w.field("mimeType", "x-unknown");
      w.end_object();
      w.field("redirectURL", "");
      w.field_int("headersSize", -1);
      w.field_int("bodySize", -1);
    }
    w.end_object();
    w.key("cache");
    w.begin_object();
    w.end_object();
    w.key("timings");
    w.begin_object();
    w.field_int("blocked", -1);
    w.field_int("dns", -1);
    w.field_int("connect", -1);
    w.field_int("ssl", -1);
    w.key("send");
    w.number(ms(send));
    w.key("wait");
    w.number(ms(wait));
    w.key("receive");
    w.number(ms(receive));
    w.end_object();
    if (literal) w.field("serverIPAddress", upstream.host);
    w.field("connection", std::to_string(c.id));
    if (c.open) w.field("_proxy", c.open->proxy);
    // What went wrong, in words.
    std::string problem;
    if (!rq)
      problem = std::string("faultline answered this request itself (a fault); it never reached the upstream, ") +
                (method.empty() ? "and the recording does not hold it" : "so its request line comes from the fault");
    else if (!rq->complete) problem = "the request is incomplete: " + ending(c, 0, up.hole);
    else if (!rs) problem = "no response: " + ending(c, 1, down.hole);
    else if (!rs->complete) problem = "the response is incomplete: " + ending(c, 1, down.hole);
    if (!problem.empty()) w.field("_error", problem);
    if (!x.faults.empty()) {
      w.key("_faults");
      w.begin_array();
      for (const JournalEvent* f : x.faults) {
        w.begin_object();
        w.key("t_ms");
        w.number(ms(f->t - t0));
        w.field("toxic", f->toxic);
        w.field("fault", f->fault);
        w.field("what", f->what);
        w.end_object();
      }
      w.end_array();
    }
    // Redactions inside this exchange's bytes.
    bool any = false;
    for (std::size_t d = 0; d < 2; ++d) {
      const Message* m = d == 0 ? rq : rs;
      const Joined& j = d == 0 ? up : down;
      if (!m) continue;
      const auto& list = c.redactions[d];
      auto r = std::lower_bound(list.begin(), list.end(), j.base + m->start,
                                [](const JournalEvent* e, std::uint64_t off) { return e->off < off; });
      for (; r != list.end() && (*r)->off < j.base + m->end; ++r) {
        if (!any) {
          w.key("_redactions");
          w.begin_array();
          any = true;
        }
        w.begin_object();
        w.field("in", d == 0 ? "request" : "response");
        w.field("rule", (*r)->rule);
        w.field_int("length", static_cast<std::int64_t>((*r)->len));
        w.end_object();
      }
    }
    if (any) w.end_array();
    w.end_object();
    entries.push_back({t0, c.id, i, std::move(json)});
  }
}

// Re-indents an entry written at level 0 to sit inside log.entries (level 2).
std::string indent(const std::string& json, std::size_t spaces) {
  std::string out;
  out.reserve(json.size() + json.size() / 16);
  const std::string pad(spaces, ' ');
  out += pad;
  for (char ch : json) {
    out += ch;
    if (ch == '\n') out += pad;
  }
  return out;
}

}  // namespace

bool write_har(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
               std::string& /*error*/) {
  std::vector<Entry> entries;
  std::map<std::string, std::uint64_t> skipped;  // protocol -> connections
  for (const auto& [id, c] : model.conns) {
    const std::string_view protocol = c.protocol();
    if (protocol == "resp") {
      ++skipped["resp"];
      continue;
    }
    bool not_http = false;
    const std::size_t before = entries.size();
    conn_entries(model, c, entries, options, not_http);
    if (entries.size() == before && (not_http || (c.data[0].empty() && c.data[1].empty()))) {
      // A tcp proxy's connection may carry HTTP or anything else; only HTTP is a HAR.
      ++skipped[protocol.empty() ? std::string("unknown") : std::string(protocol)];
    }
  }
  std::uint64_t total = 0;
  std::string detail;
  for (const auto& [protocol, n] : skipped) {
    total += n;
    if (!detail.empty()) detail += ", ";
    detail += protocol + ": " + std::to_string(n);
  }
  if (total)
    warn(options, "har: skipped " + std::to_string(total) + " connection" + (total == 1 ? "" : "s") +
                      " without HTTP exchanges (" + detail + ")");
  summary.skipped = total;
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.start != b.start) return a.start < b.start;
    if (a.conn != b.conn) return a.conn < b.conn;
    return a.index < b.index;
  });
  summary.exported = entries.size();

  std::string head;
  JsonWriter w(head);
  w.begin_object();
  w.key("log");
  w.begin_object();
  w.field("version", "1.2");
  w.key("creator");
  w.begin_object();
  w.field("name", "faultline");
  w.field("version", options.creator_version);
  w.end_object();
  std::string comment = "exported by faultline from recording " + model.recording;
  if (!model.started_wall.empty()) comment += " (started " + model.started_wall + ")";
  if (model.redacted) comment += "; secrets were redacted at record time";
  w.field("comment", comment);
  out << head << ",\n    \"entries\": [";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    out << (i ? ",\n" : "\n") << indent(entries[i].json, 6);
  }
  out << (entries.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n");
  return static_cast<bool>(out);
}

}  // namespace faultline::rec::xp
