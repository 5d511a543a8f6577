#include "replay/replay_model.hpp"

#include "base/ascii.hpp"

#include "base/suggest.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "protocols/http.hpp"
#include "protocols/resp.hpp"
#include "protocols/sse.hpp"
#include "recorder/journal.hpp"

namespace faultline::replay {

std::string Exchange::response_bytes() const {
  std::string out;
  for (const auto& s : response) out += s.bytes;
  return out;
}

std::string diff_around(std::string_view live, std::string_view recorded) {
  std::size_t at = 0;
  while (at < live.size() && at < recorded.size() && live[at] == recorded[at]) ++at;
  constexpr std::size_t before = 24, after = 48;
  const std::size_t from = at > before ? at - before : 0;
  auto piece = [&](std::string_view text) {
    if (from >= text.size()) return std::string(at >= text.size() ? "(ends here)" : "");
    return std::string(from > 0 ? "..." : "") + printable(text.substr(from, at - from + after), before + after);
  };
  return "at byte " + std::to_string(at) + ": \"" + piece(live) + "\", recorded \"" + piece(recorded) + "\"";
}

std::string printable(std::string_view bytes, std::size_t max) {
  std::string out;
  for (unsigned char c : bytes) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// ---- canonical JSON -------------------------------------------------------------------------
namespace {

std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto dot = p.find('.', start);
    if (dot == std::string_view::npos) dot = p.size();
    out.emplace_back(p.substr(start, dot - start));
    start = dot + 1;
  }
  return out;
}

bool ignored(const std::vector<std::string>& path, const std::vector<std::vector<std::string>>& ignore) {
  for (const auto& rule : ignore) {
    if (rule.size() != path.size()) continue;
    bool ok = true;
    for (std::size_t i = 0; i < rule.size() && ok; ++i) ok = rule[i] == "*" || rule[i] == path[i];
    if (ok) return true;
  }
  return false;
}

void scalar(const rapidjson::Value& v, std::string& out) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  out.append(sb.GetString(), sb.GetSize());
}

void canon(const rapidjson::Value& v, std::vector<std::string>& path, const std::vector<std::vector<std::string>>& ignore,
           std::string& out) {
  if (v.IsObject()) {
    std::vector<const rapidjson::Value::Member*> members;
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) members.push_back(&*it);
    std::sort(members.begin(), members.end(), [](auto* a, auto* b) {
      return std::string_view(a->name.GetString(), a->name.GetStringLength()) <
             std::string_view(b->name.GetString(), b->name.GetStringLength());
    });
    out += '{';
    bool first = true;
    for (auto* m : members) {
      path.emplace_back(m->name.GetString(), m->name.GetStringLength());
      if (!ignored(path, ignore)) {
        if (!first) out += ',';
        first = false;
        scalar(m->name, out);
        out += ':';
        canon(m->value, path, ignore, out);
      }
      path.pop_back();
    }
    out += '}';
  } else if (v.IsArray()) {
    out += '[';
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      path.push_back(std::to_string(i));
      if (!ignored(path, ignore)) {
        if (out.back() != '[') out += ',';
        canon(v[i], path, ignore, out);
      }
      path.pop_back();
    }
    out += ']';
  } else {
    scalar(v, out);
  }
}

bool parse_json(std::string_view text, rapidjson::Document& doc) {
  doc.Parse(text.data(), text.size());
  return !doc.HasParseError();
}

std::string canon_value(const rapidjson::Value& v) {
  std::string out;
  std::vector<std::string> path;
  canon(v, path, {}, out);
  return out;
}


// Decodes a chunked body; `map` gets (decoded offset, raw offset) at each chunk's data start.
bool dechunk(std::string_view raw, std::string& body, std::vector<std::pair<std::size_t, std::size_t>>* map) {
  std::size_t pos = 0;
  while (pos < raw.size()) {
    auto eol = raw.find("\r\n", pos);
    if (eol == std::string_view::npos) return false;
    std::size_t size = 0;
    std::size_t i = pos;
    for (; i < eol && std::isxdigit(static_cast<unsigned char>(raw[i])); ++i)
      size = size * 16 + static_cast<std::size_t>(std::isdigit(static_cast<unsigned char>(raw[i]))
                                                       ? raw[i] - '0'
                                                       : std::tolower(static_cast<unsigned char>(raw[i])) - 'a' + 10);
    if (i == pos) return false;
    pos = eol + 2;
    if (size == 0) return true;
    if (map) map->emplace_back(body.size(), pos);
    if (pos + size > raw.size()) {
      body.append(raw.substr(pos));
      return false;
    }
    body.append(raw.substr(pos, size));
    pos += size + 2;
  }
  return false;
}

std::optional<std::string> header_value(std::string_view head, std::string_view name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos || end == start) break;
    const std::string_view line = head.substr(start, end - start);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && http::iequals(line.substr(0, colon), name)) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
    pos = end;
  }
  return std::nullopt;
}

std::string set_content_length(std::string_view head, std::size_t n) {
  std::string out;
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    const auto colon = line.find(':');
    if (pos != 0 && colon != std::string_view::npos && http::iequals(line.substr(0, colon), "content-length"))
      out += std::string(line.substr(0, colon)) + ": " + std::to_string(n);
    else
      out += line;
    if (end < head.size()) out += "\r\n";
    pos = end + 2;
  }
  return out;
}

// Replaces a top-level "id" equal to `recorded_id`; false when the text is not such JSON.
bool rewrite_id(std::string_view json, std::string_view recorded_id, std::string_view live_id, std::string& out) {
  rapidjson::Document doc;
  if (!parse_json(json, doc) || !doc.IsObject()) return false;
  auto it = doc.FindMember("id");
  if (it == doc.MemberEnd() || canon_value(it->value) != recorded_id) return false;
  rapidjson::Document live;
  if (!parse_json(live_id, live)) return false;
  it->value.CopyFrom(live, doc.GetAllocator());
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  doc.Accept(w);
  out.assign(sb.GetString(), sb.GetSize());
  return true;
}

// Rewrites data lines of one SSE event.
std::string rewrite_sse_event(std::string_view event, std::string_view recorded_id, std::string_view live_id) {
  std::string out;
  std::size_t pos = 0;
  while (pos < event.size()) {
    auto end = event.find('\n', pos);
    end = end == std::string_view::npos ? event.size() : end + 1;
    std::string_view line = event.substr(pos, end - pos);
    std::string_view content = line;
    std::string_view eol;
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.remove_suffix(1);
    eol = line.substr(content.size());
    std::string replaced;
    if (content.substr(0, 5) == "data:") {
      std::string_view payload = content.substr(5);
      const bool space = !payload.empty() && payload.front() == ' ';
      if (space) payload.remove_prefix(1);
      if (rewrite_id(payload, recorded_id, live_id, replaced)) {
        out += space ? "data: " : "data:";
        out += replaced;
        out += eol;
        pos = end;
        continue;
      }
    }
    out += line;
    pos = end;
  }
  return out;
}

std::int64_t t_at(const std::vector<Segment>& segs, std::size_t raw_off) {
  std::size_t at = 0;
  for (const auto& s : segs) {
    if (raw_off < at + s.bytes.size()) return s.t;
    at += s.bytes.size();
  }
  return segs.empty() ? 0 : segs.back().t;
}

}  // namespace

std::optional<std::string> canonical_json(std::string_view text, const std::vector<std::string>& ignore) {
  rapidjson::Document doc;
  if (!parse_json(text, doc)) return std::nullopt;
  std::vector<std::vector<std::string>> rules;
  for (const auto& r : ignore) rules.push_back(split_path(r));
  std::string out;
  std::vector<std::string> path;
  canon(doc, path, rules, out);
  return out;
}

bool split_http(std::string_view bytes, std::string& head, std::string& body, bool& chunked) {
  const auto end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return false;
  head.assign(bytes.substr(0, end + 4));
  const std::string_view rest = bytes.substr(end + 4);
  const auto te = header_value(head, "transfer-encoding");
  chunked = te && ascii_lower(*te).find("chunked") != std::string::npos;
  body.clear();
  if (chunked) dechunk(rest, body, nullptr);
  else body.assign(rest);
  return true;
}

int http_status(std::string_view head) {
  // "HTTP/1.1 200 OK"
  const auto sp = head.find(' ');
  if (sp == std::string_view::npos || sp + 4 > head.size()) return 0;
  int s = 0;
  for (std::size_t i = sp + 1; i < sp + 4; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(head[i]))) return 0;
    s = s * 10 + (head[i] - '0');
  }
  return s;
}

bool is_event_stream(std::string_view response_bytes) {
  const auto end = response_bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return false;
  const auto ct = header_value(response_bytes.substr(0, end + 4), "content-type");
  return ct && ascii_lower(*ct).find("text/event-stream") != std::string::npos;
}

RequestInfo describe_http_request(std::string_view bytes, const std::vector<std::string>& ignore) {
  RequestInfo info;
  std::string head, body;
  bool chunked = false;
  if (!split_http(bytes, head, body, chunked)) {
    info.key = "raw " + std::string(bytes);
    info.label = printable(bytes, 60);
    return info;
  }
  const auto line_end = head.find("\r\n");
  const std::string_view line = std::string_view(head).substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 == std::string_view::npos ? line.size() : sp1 + 1);
  info.method = std::string(line.substr(0, sp1));
  const std::string target =
      sp1 == std::string_view::npos ? std::string() : std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  info.key = info.method + " " + target;
  info.label = info.key;
  if (body.empty()) return info;
  rapidjson::Document doc;
  if (parse_json(body, doc)) {
    if (doc.IsObject() && doc.HasMember("jsonrpc") && doc.HasMember("method") && doc["method"].IsString()) {
      const std::string method(doc["method"].GetString(), doc["method"].GetStringLength());
      std::string params = "null";
      if (doc.HasMember("params")) {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        doc["params"].Accept(w);
        params = canonical_json(std::string_view(sb.GetString(), sb.GetSize()), ignore).value_or("null");
      }
      if (doc.HasMember("id")) info.jsonrpc_id = canon_value(doc["id"]);
      info.key += " jsonrpc " + method + " " + params;
      info.label += " jsonrpc " + method + " " + printable(params, 80);
      return info;
    }
    const auto c = canonical_json(body, ignore).value_or(body);
    info.key += " " + c;
    info.label += " " + printable(c, 80);
    return info;
  }
  info.key += " " + body;
  info.label += " " + printable(body, 60);
  return info;
}

namespace {


// The argument positions holding a password: a recording keeps only a token in their place
// (see recorder/redaction.hpp), so they are left out of matching and of labels.
std::vector<bool> password_args(const std::vector<std::string>& args) {
  std::vector<bool> secret(args.size(), false);
  if (args.empty()) return secret;
  const std::string name = ascii_upper(args[0]);
  if (name == "AUTH") {
    if (args.size() == 2) secret[1] = true;  // AUTH password
    else if (args.size() >= 3) secret[2] = true;  // AUTH username password
  } else if (name == "HELLO") {
    for (std::size_t i = 2; i < args.size(); ++i) {
      if (ascii_upper(args[i]) == "AUTH" && i + 2 < args.size()) {
        secret[i + 2] = true;  // HELLO protover AUTH username password
        i += 2;
      }
    }
  }
  return secret;
}

}  // namespace

RequestInfo describe_resp_command(const std::vector<std::string>& args) {
  RequestInfo info;
  const std::vector<bool> secret = password_args(args);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = secret[i] ? std::string("(password)") : args[i];
    if (i == 0) a = ascii_upper(std::move(a));
    if (i) {
      info.key += '\x1f';
      info.label += ' ';
    }
    info.key += a;
    info.label += printable(a, 40);
    if (info.label.size() > 160) {
      info.label += " ...";
      break;
    }
  }
  return info;
}

RequestInfo describe_tcp(std::string_view bytes) {
  RequestInfo info;
  info.key = std::string(bytes);
  info.label = printable(bytes, 60);
  return info;
}

// ---- the model ------------------------------------------------------------------------------
namespace {

struct Stream {
  std::string bytes;
  std::vector<std::pair<std::size_t, std::int64_t>> chunks;  // (start offset, t)
};

struct Span {
  std::size_t begin = 0, end = 0;
};

std::vector<Segment> slice(const Stream& s, Span span) {
  std::vector<Segment> out;
  for (std::size_t i = 0; i < s.chunks.size(); ++i) {
    const std::size_t cb = s.chunks[i].first;
    const std::size_t ce = i + 1 < s.chunks.size() ? s.chunks[i + 1].first : s.bytes.size();
    const std::size_t b = std::max(cb, span.begin), e = std::min(ce, span.end);
    if (b < e) out.push_back({s.bytes.substr(b, e - b), s.chunks[i].second});
  }
  return out;
}

std::int64_t t_of(const Stream& s, std::size_t end) {
  std::int64_t t = 0;
  for (const auto& c : s.chunks) {
    if (c.first >= end) break;
    t = c.second;
  }
  return t;
}

std::vector<Span> frame_http(const std::string& s, bool request, const std::vector<std::string>& methods) {
  http::Framer f(request);
  std::vector<Span> out;
  std::size_t pos = 0, start = 0;
  if (!request && !methods.empty()) f.answering(methods[0]);
  for (;;) {
    const auto st = f.step(std::string_view(s).substr(pos));
    pos += st.consumed;
    if (st.event == FrameEvent::error) break;
    if (st.event == FrameEvent::end) {
      const int status = f.head().status;
      if (!request && status >= 100 && status < 200 && status != 101) continue;  // informational
      out.push_back({start, pos});
      start = pos;
      if (!request && out.size() < methods.size()) f.answering(methods[out.size()]);
      if (f.upgraded()) break;
      continue;
    }
    if (st.consumed == 0 && st.event == FrameEvent::none) break;
  }
  if (f.in_message() && f.finish()) out.push_back({start, s.size()});
  return out;
}

void build_http(Connection& c, const Stream& up, const Stream& down, const ModelOptions& o) {
  const auto reqs = frame_http(up.bytes, true, {});
  std::vector<RequestInfo> infos;
  std::vector<std::string> methods;
  for (const auto& r : reqs) {
    infos.push_back(describe_http_request(std::string_view(up.bytes).substr(r.begin, r.end - r.begin), o.ignore));
    methods.push_back(infos.back().method);
  }
  const auto resps = frame_http(down.bytes, false, methods);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    Exchange e;
    e.conn = c.conn;
    e.index = i;
    e.request = up.bytes.substr(reqs[i].begin, reqs[i].end - reqs[i].begin);
    e.request_t = t_of(up, reqs[i].end);
    e.key = infos[i].key;
    e.label = infos[i].label;
    e.method = infos[i].method;
    e.jsonrpc_id = infos[i].jsonrpc_id;
    if (i < resps.size()) {
      e.response = slice(down, resps[i]);
      e.has_response = true;
    }
    c.exchanges.push_back(std::move(e));
  }
}

void build_resp(Connection& c, const Stream& up, const Stream& down) {
  resp::CommandFramer cf;
  std::vector<Span> cmds;
  std::vector<std::vector<std::string>> args;
  std::size_t pos = 0, start = 0;
  for (;;) {
    const auto st = cf.step(std::string_view(up.bytes).substr(pos));
    pos += st.consumed;
    if (st.event == FrameEvent::error) break;
    if (st.event == FrameEvent::end) {
      cmds.push_back({start, pos});
      args.push_back(cf.args());
      start = pos;
      continue;
    }
    if (st.consumed == 0 && st.event == FrameEvent::none) break;
  }
  resp::ReplyFramer rf;
  std::vector<Span> replies;
  pos = start = 0;
  for (;;) {
    const auto st = rf.step(std::string_view(down.bytes).substr(pos));
    pos += st.consumed;
    if (st.event == FrameEvent::error) break;
    if (st.event == FrameEvent::end) {
      if (!rf.is_push()) replies.push_back({start, pos});
      start = pos;
      continue;
    }
    if (st.consumed == 0 && st.event == FrameEvent::none) break;
  }
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    Exchange e;
    e.conn = c.conn;
    e.index = i;
    e.request = up.bytes.substr(cmds[i].begin, cmds[i].end - cmds[i].begin);
    e.request_t = t_of(up, cmds[i].end);
    auto info = describe_resp_command(args[i]);
    e.key = std::move(info.key);
    e.label = std::move(info.label);
    if (i < replies.size()) {
      e.response = slice(down, replies[i]);
      e.has_response = true;
    }
    c.exchanges.push_back(std::move(e));
  }
}

struct TimedChunk {
  std::int64_t t;
  bool up;
  std::string bytes;
};

void build_tcp(Connection& c, std::vector<TimedChunk> chunks) {
  std::stable_sort(chunks.begin(), chunks.end(), [](const auto& a, const auto& b) { return a.t < b.t; });
  Exchange cur;
  bool in_response = false;
  auto flush = [&] {
    if (cur.request.empty() && cur.response.empty()) return;
    cur.conn = c.conn;
    cur.index = c.exchanges.size();
    auto info = describe_tcp(cur.request);
    cur.key = std::move(info.key);
    cur.label = std::move(info.label);
    cur.has_response = !cur.response.empty();
    c.exchanges.push_back(std::move(cur));
    cur = Exchange{};
  };
  for (auto& ch : chunks) {
    if (ch.up) {
      if (in_response) flush();
      in_response = false;
      cur.request += ch.bytes;
      cur.request_t = ch.t;
    } else {
      in_response = true;
      cur.response.push_back({std::move(ch.bytes), ch.t});
    }
  }
  flush();
}

}  // namespace

bool build_model(const std::string& journal, const ModelOptions& options, Model& out, std::string& error) {
  rec::JournalReader reader;
  if (!reader.open(journal, error)) return false;
  struct Pending {
    Connection conn;
    Stream up, down;
    std::vector<TimedChunk> chunks;
  };
  std::map<std::uint64_t, Pending> conns;
  std::vector<std::uint64_t> order;
  rec::JournalEvent ev;
  while (reader.next(ev)) {
    if (ev.type == rec::EventType::open) {
      if (!conns.count(ev.conn)) order.push_back(ev.conn);
      auto& p = conns[ev.conn];
      p.conn.conn = ev.conn;
      p.conn.open_t = ev.t;
      p.conn.proxy = ev.proxy;
      if (!ev.proxy.empty() && std::find(out.proxies.begin(), out.proxies.end(), ev.proxy) == out.proxies.end())
        out.proxies.push_back(ev.proxy);
      p.conn.protocol = options.protocol.value_or(parse_protocol(ev.protocol).value_or(Protocol::tcp));
    } else if (ev.type == rec::EventType::data) {
      if (!conns.count(ev.conn)) {
        order.push_back(ev.conn);
        auto& p = conns[ev.conn];
        p.conn.conn = ev.conn;
        p.conn.open_t = ev.t;
        p.conn.protocol = options.protocol.value_or(Protocol::tcp);
      }
      auto& p = conns[ev.conn];
      if (ev.blob_missing) out.warnings.push_back(ev.file + ":" + std::to_string(ev.line) + ": blob missing");
      Stream& s = ev.dir == faultline::Stream::upstream ? p.up : p.down;
      s.chunks.emplace_back(s.bytes.size(), ev.t);
      s.bytes += ev.bytes;
      p.chunks.push_back({ev.t, ev.dir == faultline::Stream::upstream, ev.bytes});
    }
  }
  if (!reader.error().empty()) {
    error = reader.error();
    return false;
  }
  for (const auto& tr : reader.truncations())
    out.warnings.push_back(tr.file + ":" + std::to_string(tr.line) + ": " + tr.reason + " (ignored)");
  for (auto id : order) {
    auto& p = conns[id];
    switch (p.conn.protocol) {
      case Protocol::http:
      case Protocol::mcp: build_http(p.conn, p.up, p.down, options); break;
      case Protocol::resp: build_resp(p.conn, p.up, p.down); break;
      case Protocol::tcp: build_tcp(p.conn, std::move(p.chunks)); break;
    }
    out.exchanges += p.conn.exchanges.size();
    out.connections.push_back(std::move(p.conn));
  }
  return true;
}

// ---- matcher ----------------------------------------------------------------------------
Matcher::Matcher(const Model& model) {
  for (const auto& c : model.connections)
    for (const auto& e : c.exchanges) all_.push_back(&e);
  std::stable_sort(all_.begin(), all_.end(), [](auto* a, auto* b) { return a->request_t < b->request_t; });
  for (auto* e : all_)
    if (e->has_response) queues_[e->key].push_back(e);
}

const Exchange* Matcher::take(const std::string& key) {
  auto it = queues_.find(key);
  if (it == queues_.end()) return nullptr;
  auto& cur = cursor_[key];
  const Exchange* e = it->second[std::min(cur, it->second.size() - 1)];
  if (cur < it->second.size()) ++cur;
  return e;
}

namespace {
std::size_t distance(std::string_view a, std::string_view b) { return edit_distance(a.substr(0, 256), b.substr(0, 256)); }
std::string_view first_word(std::string_view k) {
  const auto e = k.find_first_of(" \x1f");
  return k.substr(0, e);
}
}  // namespace

const Exchange* Matcher::closest(const std::string& key) const {
  // Over distinct keys only; candidates with the same command/method first. Edit distance on
  // the first 256 bytes, and at most kMaxCandidates keys, so a miss stays cheap on big journals.
  constexpr std::size_t kMaxCandidates = 4096;
  const std::string_view word = first_word(key);
  const Exchange* best = nullptr;
  std::size_t best_score = 0, seen = 0;
  for (int pass = 0; pass < 2 && !best; ++pass) {
    for (const auto& [k, q] : queues_) {
      if (pass == 0 && first_word(k) != word) continue;
      if (++seen > kMaxCandidates) break;
      const std::size_t score = distance(key, k);
      if (!best || score < best_score) {
        best = q.front();
        best_score = score;
      }
    }
  }
  if (!best && !all_.empty()) best = all_.front();
  return best;
}

// ---- rewriting ------------------------------------------------------------------------------
std::vector<Segment> rewrite_http_response(const std::vector<Segment>& recorded, std::string_view recorded_id,
                                           std::string_view live_id) {
  if (recorded_id == live_id || recorded.empty()) return recorded;
  std::string all;
  for (const auto& s : recorded) all += s.bytes;
  const auto head_end = all.find("\r\n\r\n");
  if (head_end == std::string::npos) return recorded;
  std::string head = all.substr(0, head_end + 4);
  const std::string_view rest = std::string_view(all).substr(head_end + 4);
  const auto te = header_value(head, "transfer-encoding");
  const bool chunked = te && ascii_lower(*te).find("chunked") != std::string::npos;
  std::string body;
  std::vector<std::pair<std::size_t, std::size_t>> map;  // decoded -> raw (relative to rest)
  if (chunked) dechunk(rest, body, &map);
  else body.assign(rest);
  auto raw_of = [&](std::size_t decoded) -> std::size_t {
    if (!chunked) return head.size() + decoded;
    std::size_t raw = 0;
    for (const auto& [d, r] : map) {
      if (d > decoded) break;
      raw = r + (decoded - d);
    }
    return head.size() + raw;
  };
  std::vector<Segment> out;
  auto frame = [&](std::string_view piece) {
    if (!chunked) return std::string(piece);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%zx\r\n", piece.size());
    return std::string(buf) + std::string(piece) + "\r\n";
  };
  if (is_event_stream(all)) {
    sse::Splitter splitter;
    std::vector<std::size_t> ends;
    std::vector<sse::Event> events;
    splitter.feed(body, ends, events);
    std::vector<Segment> pieces;
    std::size_t prev = 0, total = 0;
    for (auto end : ends) {
      std::string ev = rewrite_sse_event(std::string_view(body).substr(prev, end - prev), recorded_id, live_id);
      total += ev.size();
      pieces.push_back({std::move(ev), t_at(recorded, raw_of(end - 1))});
      prev = end;
    }
    if (prev < body.size()) {
      total += body.size() - prev;
      pieces.push_back({body.substr(prev), recorded.back().t});
    }
    if (!chunked && header_value(head, "content-length")) head = set_content_length(head, total);
    out.push_back({head, recorded.front().t});
    for (auto& p : pieces) out.push_back({frame(p.bytes), p.t});
    if (chunked) out.push_back({"0\r\n\r\n", recorded.back().t});
    return out;
  }
  std::string replaced;
  if (!rewrite_id(body, recorded_id, live_id, replaced)) return recorded;
  if (chunked) {
    out.push_back({head + frame(replaced) + "0\r\n\r\n", recorded.back().t});
  } else {
    out.push_back({set_content_length(head, replaced.size()) + replaced, recorded.back().t});
  }
  return out;
}

// ---- live MCP sessions, comparing ---------------------------------------------------------
namespace {
// The head through its last header line's CRLF (the whole text when the blank line is missing).
std::string_view head_of(std::string_view message) {
  const auto end = message.find("\r\n\r\n");
  return end == std::string_view::npos ? message : message.substr(0, end + 2);
}
}  // namespace

std::vector<std::string> sse_data(std::string_view body) {
  std::vector<std::string> out;
  std::string data;
  bool has_data = false;
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = end + 1;
    if (line.empty()) {  // the blank line that ends an event
      if (has_data) out.push_back(std::move(data));
      data.clear();
      has_data = false;
    } else if (line.substr(0, 5) == "data:") {
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      if (has_data) data += '\n';
      data.append(line);
      has_data = true;
    }
  }
  if (has_data) out.push_back(std::move(data));  // a stream cut before its blank line
  return out;
}

std::optional<std::string> mcp_session_id(std::string_view message) {
  return header_value(head_of(message), "mcp-session-id");
}

std::string with_mcp_session_id(std::string_view request, std::string_view live) {
  if (!mcp_session_id(request)) return std::string(request);
  return with_header(request, "Mcp-Session-Id", live);
}

std::string with_header(std::string_view request, std::string_view name, std::string_view value) {
  const std::string_view head = head_of(request);
  std::string out;
  out.reserve(request.size() + name.size() + value.size() + 4);
  std::size_t pos = 0;
  bool set = false;
  while (pos < head.size()) {
    const auto end = head.find("\r\n", pos);
    if (end == std::string_view::npos) break;
    const std::string_view line = head.substr(pos, end - pos);
    const auto colon = line.find(':');
    if (pos != 0 && colon != std::string_view::npos && http::iequals(line.substr(0, colon), name)) {
      if (!set) out.append(line.substr(0, colon)).append(": ").append(value).append("\r\n");
      set = true;  // a repeated one goes: the request carries the value once
    } else {
      out.append(line).append("\r\n");
    }
    pos = end + 2;
  }
  if (!set) out.append(name).append(": ").append(value).append("\r\n");  // the blank line follows
  out.append(request.substr(pos));
  return out;
}

std::optional<std::string> header_problem(std::string_view name, std::string_view value) {
  if (name.empty()) return std::string("the header name is empty");
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f || std::string_view("()<>@,;:\\\"/[]?={}").find(static_cast<char>(c)) != std::string_view::npos)
      return "\"" + std::string(name) + "\" is not a header name";
  }
  if (value.find_first_of("\r\n") != std::string_view::npos) return std::string("a header value cannot hold a line break");
  return std::nullopt;
}

std::string with_redis_password(std::string_view command, std::string_view password) {
  resp::CommandFramer framer;
  std::size_t pos = 0;
  for (int guard = 0; guard < 1024; ++guard) {
    const auto step = framer.step(command.substr(pos));
    pos += step.consumed;
    if (step.event == FrameEvent::end) break;
    if (step.event == FrameEvent::error || (step.consumed == 0 && step.event == FrameEvent::none))
      return std::string(command);
  }
  const auto& args = framer.args();
  const std::vector<bool> secret = password_args(args);
  if (std::find(secret.begin(), secret.end(), true) == secret.end() || args.size() != framer.arity())
    return std::string(command);
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = secret[i] ? password : std::string_view(args[i]);
    out += "$" + std::to_string(a.size()) + "\r\n";
    out.append(a).append("\r\n");
  }
  return out + std::string(command.substr(pos));
}

Verdict compare_http(std::string_view recorded, std::string_view live, const std::vector<std::string>& ignore) {
  Verdict v;
  std::string rh, rb, lh, lb;
  bool rc = false, lc = false;
  if (!split_http(recorded, rh, rb, rc)) return v;  // nothing recorded to compare with
  if (!split_http(live, lh, lb, lc)) return {false, "live response has no complete head"};
  const int rs = http_status(rh), ls = http_status(lh);
  if (rs != ls) return {false, "status " + std::to_string(ls) + ", recorded " + std::to_string(rs)};
  if (is_event_stream(recorded)) {
    if (!is_event_stream(live)) return {false, "not an event stream: " + printable(lb, 60)};
    const auto re = sse_data(rb), le = sse_data(lb);
    for (std::size_t i = 0; i < std::min(re.size(), le.size()); ++i) {
      const auto rj = canonical_json(re[i], ignore);
      const auto lj = canonical_json(le[i], ignore);
      if (rj && lj ? *rj != *lj : re[i] != le[i])
        return {false, "SSE event " + std::to_string(i + 1) + " data differs " + diff_around(lj ? *lj : le[i], rj ? *rj : re[i])};
    }
    if (re.size() != le.size())
      return {false, std::to_string(le.size()) + " SSE data events, recorded " + std::to_string(re.size())};
    return v;
  }
  const auto rj = canonical_json(rb, ignore);
  const auto lj = canonical_json(lb, ignore);
  if (rj && lj && *rj != *lj) return {false, "JSON body differs " + diff_around(*lj, *rj)};
  if (rj && !lj) return {false, "body is not JSON: " + printable(lb, 60)};
  return v;
}

Verdict compare_resp(std::string_view recorded, std::string_view live) {
  if (recorded == live) return {};
  if (recorded.empty() || live.empty() || recorded[0] != live[0])
    return {false, "reply type " + printable(live.substr(0, 1)) + ", recorded " + printable(recorded.substr(0, 1)) +
                       " (" + printable(live, 60) + " vs " + printable(recorded, 60) + ")"};
  return {false, "reply differs " + diff_around(live, recorded)};
}

Verdict compare_bytes(std::string_view recorded, std::string_view live) {
  if (recorded == live) return {};
  return {false, "bytes differ " + diff_around(live, recorded)};
}

}  // namespace faultline::replay
