// Reading a recording for the exporters, and what they share (see export_internal.hpp).
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <new>

#include "recorder/export_internal.hpp"

namespace faultline::rec {

namespace xp {

namespace {

// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm): timegm() would do,
// but it is not standard C++ and this cannot depend on the TZ environment.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t at, std::size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[at + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  return true;
}

bool has_conn(EventType type) {
  switch (type) {
    case EventType::open:
    case EventType::data:
    case EventType::msg:
    case EventType::redaction:
    case EventType::end:
    case EventType::fault:
    case EventType::close:
      return true;
    default:
      return false;
  }
}

std::string base_name(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  return name.empty() ? path : name;
}

}  // namespace

bool parse_wall(std::string_view s, std::int64_t& ns) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, h) ||
      s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, se))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  std::size_t i = 19;
  std::int64_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n < 9) {
        frac = frac * 10 + (s[i] - '0');
        ++n;
      }
      ++i;
    }
    if (n == 0) return false;
    for (; n < 9; ++n) frac *= 10;
  }
  std::int64_t offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh = 0, om = 0;
    if (!digits(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(s, i + 4, 2, om)) return false;
    offset_s = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return false;
  }
  if (i != s.size()) return false;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
  ns = secs * 1'000'000'000 + frac;
  return true;
}

std::string iso_ms(std::int64_t epoch_ns) { return utc_text(epoch_ns, 3); }

std::int64_t Joined::time_at(std::size_t pos) const {
  if (pieces.empty()) return 0;
  if (pos >= bytes.size()) return pieces.back().t;
  auto it = std::upper_bound(pieces.begin(), pieces.end(), pos,
                             [](std::size_t p, const Piece& piece) { return p < piece.pos; });
  if (it == pieces.begin()) return pieces.front().t;
  return std::prev(it)->t;
}

Joined join(const std::vector<const JournalEvent*>& data) {
  Joined j;
  bool first = true;
  std::uint64_t next = 0;
  for (const JournalEvent* e : data) {
    if (first) {
      j.base = e->off;
      next = e->off;
      first = false;
    }
    if (e->off > next || e->blob_missing) {
      j.hole = true;
      break;
    }
    if (e->off + e->len <= next) continue;  // bytes already joined (a repeated line)
    const auto skip = static_cast<std::size_t>(next - e->off);
    j.pieces.push_back({j.bytes.size(), e->t});
    j.bytes.append(e->bytes, skip, std::string::npos);
    next = e->off + e->len;
  }
  return j;
}

// ---- JsonWriter ----

void JsonWriter::newline() {
  out_ += '\n';
  out_.append(2 * levels_.size(), ' ');
}

void JsonWriter::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (levels_.empty()) return;
  if (levels_.back().any) out_ += ',';
  levels_.back().any = true;
  newline();
}

void JsonWriter::open(char c) {
  before_value();
  out_ += c;
  levels_.push_back({});
}

void JsonWriter::close(char c) {
  const bool any = levels_.back().any;
  levels_.pop_back();
  if (any) newline();
  out_ += c;
}

void JsonWriter::key(std::string_view name) {
  before_value();
  append_json_string(out_, name);
  out_ += ": ";
  after_key_ = true;
}

void JsonWriter::string(std::string_view value) {
  before_value();
  append_json_string(out_, value);
}

void JsonWriter::integer(std::int64_t value) {
  before_value();
  out_ += std::to_string(value);
}

void JsonWriter::number(double value) {
  before_value();
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  std::string s = buf;
  // "12.500" -> "12.5", "3.000" -> "3": shorter, and the same number.
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  out_ += s;
}

void JsonWriter::boolean(bool value) {
  before_value();
  out_ += value ? "true" : "false";
}

}  // namespace xp

std::optional<Format> parse_format(std::string_view name) {
  if (name == "har") return Format::har;
  if (name == "pcapng") return Format::pcapng;
  if (name == "text") return Format::text;
  return std::nullopt;
}

std::string_view format_name(Format format) {
  switch (format) {
    case Format::har: return "har";
    case Format::pcapng: return "pcapng";
    default: return "text";
  }
}

namespace {

// The reader reports problems as text only; a version it does not know is the one the
// caller must tell apart (a newer faultline wrote it), and its message always says so.
ExportFailure classify(const std::string& error) {
  return error.find("is newer than this faultline understands") != std::string::npos ? ExportFailure::version
                                                                                      : ExportFailure::unreadable;
}

bool load(const std::string& input, const ExportOptions& options, xp::Model& model, ExportSummary& summary,
          std::string& error) {
  JournalReader reader;
  if (!reader.open(input, error)) {
    summary.failure = classify(error);
    return false;
  }
  JournalEvent event;
  bool header = false;
  while (reader.next(event)) {
    ++summary.events;
    if (event.type == EventType::header) {
      if (!header) {
        header = true;
        model.recording = event.recording;
        model.started_wall = event.started_wall;
        model.redacted = event.redacted;
        model.version = event.version;
      }
      continue;
    }
    if (options.connection && xp::has_conn(event.type) && event.conn != *options.connection) continue;
    if (event.type == EventType::data) {
      // The line as written repeats the payload in base64; nothing needs it any more.
      std::string().swap(event.raw);
    }
    if (event.type == EventType::gap) ++model.gaps;
    model.events.push_back(std::move(event));
  }
  if (!reader.error().empty()) {
    error = reader.error();
    summary.failure = classify(error);
    return false;
  }
  for (const Truncation& t : reader.truncations()) {
    ++summary.truncated;
    xp::warn(options, xp::base_name(t.file) + ": line " + std::to_string(t.line) +
                          " is incomplete (a crash?); exported everything before it");
  }
  // A file that is not a journal at all reads as one broken "last" line; say what it is.
  const bool no_journals = reader.index() && reader.index()->journals.empty();
  if (!header && !no_journals) {
    error = input + ": not a faultline journal (no journal header line)";
    summary.failure = ExportFailure::unreadable;
    return false;
  }
  if (!model.started_wall.empty() && !xp::parse_wall(model.started_wall, model.wall_ns)) {
    xp::warn(options, "the recording's start time \"" + model.started_wall +
                          "\" is not an RFC 3339 time; times are shown from 1970-01-01");
    model.wall_ns = 0;
  }

  for (const JournalEvent& e : model.events) {
    if (!xp::has_conn(e.type)) continue;
    xp::Conn& c = model.conns[e.conn];
    if (c.all.empty()) {
      c.id = e.conn;
      c.first_t = e.t;
    }
    c.first_t = std::min(c.first_t, e.t);
    c.all.push_back(&e);
    const std::size_t d = xp::dir_index(e.dir);
    switch (e.type) {
      case EventType::open:
        if (!c.open) c.open = &e;
        break;
      case EventType::data: c.data[d].push_back(&e); break;
      case EventType::msg: c.msgs[d].push_back(&e); break;
      case EventType::redaction: c.redactions[d].push_back(&e); break;
      case EventType::end: c.ends[d].push_back(&e); break;
      case EventType::fault: c.faults.push_back(&e); break;
      case EventType::close:
        if (!c.close) c.close = &e;
        break;
      default: break;
    }
  }
  // Sorted once so the exporters can look things up by offset or time instead of
  // scanning (a long keep-alive connection has many thousands of each).
  const auto by_off = [](const JournalEvent* a, const JournalEvent* b) { return a->off < b->off; };
  for (auto& [id, c] : model.conns) {
    for (std::size_t d = 0; d < 2; ++d) {
      std::stable_sort(c.data[d].begin(), c.data[d].end(), by_off);
      std::stable_sort(c.msgs[d].begin(), c.msgs[d].end(), by_off);
      std::stable_sort(c.redactions[d].begin(), c.redactions[d].end(), by_off);
    }
    std::stable_sort(c.faults.begin(), c.faults.end(),
                     [](const JournalEvent* a, const JournalEvent* b) { return a->t < b->t; });
  }
  summary.connections = model.conns.size();
  if (options.connection && model.conns.empty()) {
    xp::warn(options, "connection " + std::to_string(*options.connection) + " is not in this recording");
  }
  return true;
}

}  // namespace

bool export_recording(Format format, const std::string& input, std::ostream& out, const ExportOptions& options,
                      std::string& error) {
  ExportSummary local;
  ExportSummary& summary = options.summary ? *options.summary : local;
  summary = ExportSummary{};
  try {
    xp::Model model;
    if (!load(input, options, model, summary, error)) return false;
    bool ok = false;
    switch (format) {
      case Format::har: ok = xp::write_har(model, out, options, summary, error); break;
      case Format::pcapng: ok = xp::write_pcapng(model, out, options, summary, error); break;
      case Format::text: ok = xp::write_text(model, out, options, summary, error); break;
    }
    if (ok) out.flush();
    if (!ok || !out) {
      error = "writing the export failed";
      summary.failure = ExportFailure::output;
      return false;
    }
    return true;
  } catch (const std::bad_alloc&) {
    error = "out of memory (the exporters hold the whole recording in memory)";
  } catch (const std::exception& e) {
    error = std::string("unexpected error: ") + e.what();
  }
  summary.failure = ExportFailure::unreadable;
  return false;
}

}  // namespace faultline::rec
