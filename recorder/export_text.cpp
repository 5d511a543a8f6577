// Text export: one line per journal event, in time order, for reading in a terminal.
// Data lines carry what the recorder's decoders said about them (the msg lines whose
// message starts in that chunk: "GET /v1/models", "SET k (3 args)", "+OK"), or a short
// printable preview of the bytes when nothing was decoded.
#include <rapidjson/document.h>

#include <algorithm>
#include <cstdio>

#include "recorder/export_internal.hpp"

namespace faultline::rec::xp {

namespace {

struct Style {
  bool on = false;
  std::string operator()(std::string_view code, std::string_view text) const {
    if (!on) return std::string(text);
    return "\x1b[" + std::string(code) + "m" + std::string(text) + "\x1b[0m";
  }
};

constexpr std::string_view kDim = "2", kUp = "36", kDown = "35", kFault = "1;31", kWarn = "33", kConn = "32";

std::string when(std::int64_t t) {
  char buf[48];
  const char* sign = t < 0 ? "-" : "+";
  const std::uint64_t a = t < 0 ? static_cast<std::uint64_t>(-(t + 1)) + 1 : static_cast<std::uint64_t>(t);
  std::snprintf(buf, sizeof buf, "%s%llu.%06llus", sign, static_cast<unsigned long long>(a / 1'000'000'000),
                static_cast<unsigned long long>(a % 1'000'000'000 / 1000));
  return buf;
}

// A few bytes as printable text: escapes for line ends and tabs, '.' for other bytes.
std::string preview(std::string_view bytes) {
  constexpr std::size_t kMax = 48;
  std::string out = "\"";
  std::size_t shown = 0;
  for (const char ch : bytes) {
    if (shown >= kMax) break;
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '"' || c == '\\') (out += '\\') += static_cast<char>(c);
    else if (c >= 0x20 && c < 0x7F) out += static_cast<char>(c);
    else out += '.';
    ++shown;
  }
  out += '"';
  if (bytes.size() > kMax) out += "…";
  return out;
}

std::string str(const rapidjson::Value& doc, const char* name) {
  const auto it = doc.FindMember(name);
  if (it == doc.MemberEnd()) return {};
  if (it->value.IsString()) return std::string(it->value.GetString(), it->value.GetStringLength());
  if (it->value.IsUint64()) return std::to_string(it->value.GetUint64());
  if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
  return {};
}

// What a msg line says, in a few words ("" for lines that add nothing to a data line).
std::string describe(const JournalEvent& m) {
  rapidjson::Document doc;
  doc.Parse(m.raw.data(), m.raw.size());
  if (doc.HasParseError() || !doc.IsObject()) return m.kind;
  const std::string& k = m.kind;
  if (k == "http_request") return str(doc, "method") + " " + str(doc, "target");
  if (k == "http_response") {
    const std::string reason = str(doc, "reason");
    return str(doc, "status") + (reason.empty() ? "" : " " + reason);
  }
  if (k == "http_end") return {};
  if (k == "sse_event") {
    std::string out = "sse " + (str(doc, "event").empty() ? std::string("message") : str(doc, "event"));
    if (const std::string id = str(doc, "id"); !id.empty()) out += " id " + id;
    return out + " (" + str(doc, "data_len") + " B data)";
  }
  if (k == "jsonrpc") {
    std::string out = "jsonrpc";
    if (const std::string method = str(doc, "method"); !method.empty()) out += " " + method;
    if (const auto it = doc.FindMember("id"); it != doc.MemberEnd()) {
      if (it->value.IsString()) out += " id \"" + std::string(it->value.GetString()) + "\"";
      else if (it->value.IsInt64()) out += " id " + std::to_string(it->value.GetInt64());
    }
    if (const std::string tool = str(doc, "tool"); !tool.empty()) out += " tool " + tool;
    if (doc.HasMember("error")) out += " (error)";
    else if (doc.HasMember("response")) out += " (result)";
    return out;
  }
  if (k == "resp_command") {
    std::string out = str(doc, "command");
    if (const std::string key = str(doc, "key"); !key.empty()) out += " " + key;
    return out + " (" + str(doc, "argc") + " args)";
  }
  if (k == "resp_reply") {
    const std::string type = str(doc, "reply_type");
    if (type == "+" || type == "-") return type + str(doc, "line");
    static const std::map<std::string, std::string> names = {
        {":", "integer"}, {"$", "bulk string"}, {"*", "array"},   {"_", "null"},      {",", "double"},
        {"#", "boolean"}, {"!", "bulk error"},  {"=", "verbatim"}, {"(", "big number"}, {"%", "map"},
        {"~", "set"},     {">", "push"},        {"|", "attribute"}};
    const auto it = names.find(type);
    return (it == names.end() ? type : it->second) + " reply";
  }
  return k;
}

std::string joined_summary(const std::vector<std::string>& parts) {
  constexpr std::size_t kShown = 3;
  std::string out;
  std::size_t n = 0;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (n == kShown) {
      std::size_t rest = 0;
      for (const auto& q : parts) rest += q.empty() ? 0 : 1;
      out += ", +" + std::to_string(rest - kShown) + " more";
      break;
    }
    if (n) out += ", ";
    out += p;
    ++n;
  }
  return out;
}

}  // namespace

bool write_text(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
                std::string& /*error*/) {
  const Style s{options.color};
  std::uint64_t lines = 0;
  auto emit = [&](const std::string& text) {
    out << text << '\n';
    ++lines;
  };
  {
    std::string head = "recording " + (model.recording.empty() ? std::string("?") : model.recording);
    if (!model.started_wall.empty()) head += " started " + model.started_wall;
    head += " (journal version " + std::to_string(model.version) + (model.redacted ? ", redacted" : ", NOT redacted") +
            ")";
    if (options.connection) head += ", connection " + std::to_string(*options.connection) + " only";
    emit(s(kDim, head));
  }

  std::size_t conn_width = 1;
  for (const auto& [id, c] : model.conns) conn_width = std::max(conn_width, std::to_string(id).size());
  std::size_t size_width = 1;
  for (const JournalEvent& e : model.events)
    if (e.type == EventType::data) size_width = std::max(size_width, std::to_string(e.len).size());

  // Each data line's summary: the msg lines of its connection and direction that start in it.
  auto summary_of = [&](const JournalEvent& d) {
    const auto it = model.conns.find(d.conn);
    if (it == model.conns.end()) return std::string();
    std::vector<std::string> parts;
    const auto& msgs = it->second.msgs[dir_index(d.dir)];
    auto m = std::lower_bound(msgs.begin(), msgs.end(), d.off,
                              [](const JournalEvent* e, std::uint64_t off) { return e->off < off; });
    for (; m != msgs.end() && (*m)->off < d.off + d.len; ++m) {
      if ((*m)->kind != "undecodable") parts.push_back(describe(**m));
    }
    return joined_summary(parts);
  };

  std::vector<const JournalEvent*> order;
  for (const JournalEvent& e : model.events) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const JournalEvent* a, const JournalEvent* b) { return a->t < b->t; });

  for (const JournalEvent* ep : order) {
    const JournalEvent& e = *ep;
    std::string conn_id = std::to_string(e.conn);
    conn_id.resize(conn_width, ' ');
    const std::string prefix = s(kDim, when(e.t)) + " conn " + conn_id + " ";
    const bool up = e.dir == Stream::upstream;
    const std::string arrow = up ? s(kUp, "▶ up  ") : s(kDown, "◀ down");
    switch (e.type) {
      case EventType::open:
        emit(prefix + s(kConn, "● open") + "  " + e.proxy + " (" + e.protocol + ") " + e.client + " → " +
             e.upstream);
        break;
      case EventType::data: {
        std::string size = std::to_string(e.len);
        size.insert(0, size_width > size.size() ? size_width - size.size() : 0, ' ');
        std::string what = e.blob_missing ? std::string("(blob ") + e.blob + " missing)" : summary_of(e);
        if (what.empty()) what = preview(e.bytes);
        emit(prefix + arrow + " " + size + " B  " + what);
        break;
      }
      case EventType::msg:
        if (e.kind == "undecodable") {
          rapidjson::Document doc;
          doc.Parse(e.raw.data(), e.raw.size());
          const std::string reason = doc.IsObject() ? str(doc, "reason") : std::string();
          emit(prefix + arrow + " " + s(kWarn, "not decoded from byte " + std::to_string(e.off) + ": " + reason));
        }
        break;
      case EventType::redaction:
        emit(prefix + arrow + " " +
             s(kWarn, "redacted " + e.rule + " (bytes " + std::to_string(e.off) + ".." +
                          std::to_string(e.off + e.len) + ")"));
        break;
      case EventType::end:
        emit(prefix + arrow + " " +
             (e.how == EndKind::reset ? s(kFault, "■ reset")
                                      : s(kConn, "■ end (" + std::string(end_name(e.how)) + ")")));
        break;
      case EventType::fault:
        emit(prefix + s(kFault, "⚡ fault " + e.fault + " " + e.toxic + ": " + e.what));
        break;
      case EventType::close:
        emit(prefix + s(kConn, "■ close"));
        break;
      case EventType::gap:
        emit(s(kDim, when(e.t)) + " " +
             s(kWarn, "⚠ gap: the recorder fell behind; " + std::to_string(e.gap_events) + " events (" +
                          std::to_string(e.gap_bytes) + " B) not recorded"));
        break;
      case EventType::unknown:
        emit(s(kDim, when(e.t)) + " ? " + e.type_name);
        break;
      default:
        break;
    }
  }
  summary.exported = lines;
  return static_cast<bool>(out);
}

}  // namespace faultline::rec::xp
