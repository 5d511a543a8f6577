#include "recorder/journal.hpp"

#include <fcntl.h>
#include <xxhash.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include "base/json_writer.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

namespace faultline::rec {

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// One writer per thread, restarted per line: a line costs no allocation of the writer's.
JsonWriter& line_writer(std::string& out) {
  thread_local JsonWriter writer;
  writer.restart(out);
  return writer;
}

// The members every event line starts with, in one order so lines are easy to grep.
JsonWriter& begin(std::string& out, std::string_view type, std::int64_t t) {
  JsonWriter& w = line_writer(out);
  w.begin_object();
  w.key("type").string(type);
  w.key("t").number(t);
  return w;
}

void finish(JsonWriter& w, std::string& out) {
  w.end_object();
  out += '\n';
}

// A line whose last members come pre-serialised (a decoder's description, a redaction
// rule: "k":v pairs without braces): they follow the members written so far, and the
// writer's object is closed by hand.
void finish_with_members(JsonWriter& w, std::string& out, std::string_view members) {
  w.text();  // hands what the writer holds to out before out is appended to directly
  if (!members.empty()) {
    out += ',';
    out += members;
  }
  out += "}\n";
}

void conn_dir_span(JsonWriter& w, std::uint64_t conn, Stream dir, std::uint64_t off, std::uint64_t len) {
  w.key("conn").number(conn);
  w.key("dir").string(dir_name(dir));
  w.key("off").number(off);
  w.key("len").number(len);
}

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string errno_text(int e) { return std::strerror(e); }

// ---- reading helpers ----

using Value = rapidjson::Value;

const Value* get(const Value& o, const char* name) {
  const auto it = o.FindMember(name);
  return it == o.MemberEnd() ? nullptr : &it->value;
}

bool get_string(const Value& o, const char* name, std::string& out) {
  const Value* v = get(o, name);
  if (!v || !v->IsString()) return false;
  out.assign(v->GetString(), v->GetStringLength());
  return true;
}

bool get_uint(const Value& o, const char* name, std::uint64_t& out) {
  const Value* v = get(o, name);
  if (!v || !v->IsUint64()) return false;
  out = v->GetUint64();
  return true;
}

bool get_int(const Value& o, const char* name, std::int64_t& out) {
  const Value* v = get(o, name);
  if (!v || !v->IsInt64()) return false;
  out = v->GetInt64();
  return true;
}

std::string version_message(std::string_view what, std::int64_t version, int known) {
  return std::string(what) + " version " + std::to_string(version) + " is newer than this faultline understands (" +
         std::to_string(known) + ")";
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

// ---- encoders ----

void append_json_string(std::string& out, std::string_view s) { append_json_quoted(out, s); }

std::string json_string(std::string_view s) { return json_quote(s); }

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.resize((bytes.size() + 2) / 3 * 4);
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  char* o = out.data();
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    *o++ = kB64[v >> 18];
    *o++ = kB64[(v >> 12) & 63];
    *o++ = kB64[(v >> 6) & 63];
    *o++ = kB64[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest) {
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (rest == 2) v |= std::uint32_t{in[i + 1]} << 8;
    *o++ = kB64[v >> 18];
    *o++ = kB64[(v >> 12) & 63];
    *o++ = rest == 2 ? kB64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  return out;
}

bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  if (text.size() % 4 != 0) return false;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + static_cast<std::size_t>(k)];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad) return false;  // data after padding
      v[k] = b64_value(c);
      if (v[k] < 0) return false;
    }
    const std::uint32_t w = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                            (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out += static_cast<char>(w >> 16);
    if (pad < 2) out += static_cast<char>((w >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(w & 0xFF);
  }
  return true;
}

std::string content_address(std::string_view bytes) {
  // XXH3-128, not a cryptographic hash: a blob's name only has to tell contents apart
  // (collisions between different chunks are out of reach at 2^64 chunks), and a hash
  // costing half the proxy's CPU would make recording halve bulk throughput.
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  std::string out;
  out.reserve(32);
  for (const std::uint64_t part : {h.high64, h.low64}) {
    for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(part >> shift) & 0xF];
  }
  return out;
}

std::string utc_text(std::int64_t epoch_ns, int fraction_digits) {
  std::int64_t secs = epoch_ns / 1'000'000'000;
  std::int64_t frac = epoch_ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  for (int d = fraction_digits; d < 9; ++d) frac /= 10;
  const auto tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%0*lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, fraction_digits, static_cast<long long>(frac));
  return buf;
}

std::string rfc3339_ns(std::chrono::system_clock::time_point at) {
  return utc_text(std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count(), 9);
}

std::string_view dir_name(Stream towards) { return towards == Stream::downstream ? "down" : "up"; }

std::string_view end_name(EndKind how) {
  switch (how) {
    case EndKind::half_close: return "half_close";
    case EndKind::reset: return "reset";
    default: return "close";
  }
}

std::string journal_file_name(std::uint64_t n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "journal-%06llu.jsonl", static_cast<unsigned long long>(n));
  return buf;
}

// ---- line builders ----

namespace line {

void header(std::string& out, std::string_view recording, std::uint64_t file, std::string_view started_wall,
            std::int64_t started_mono_ns, bool redacted) {
  JsonWriter& w = line_writer(out);
  w.begin_object();
  w.key("type").string("journal");
  w.key("version").number(kJournalVersion);
  w.key("recording").string(recording);
  w.key("file").number(file);
  w.key("started_wall").string(started_wall);
  w.key("started_mono_ns").number(started_mono_ns);
  w.key("redacted").boolean(redacted);
  finish(w, out);
}

void open(std::string& out, std::int64_t t, std::uint64_t conn, std::string_view proxy, std::string_view protocol,
          std::string_view client, std::string_view upstream) {
  JsonWriter& w = begin(out, "open", t);
  w.key("conn").number(conn);
  w.key("proxy").string(proxy);
  w.key("protocol").string(protocol);
  w.key("client").string(client);
  w.key("upstream").string(upstream);
  finish(w, out);
}

void data(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off, std::uint64_t len,
          std::string_view inline_bytes, std::string_view blob) {
  JsonWriter& w = begin(out, "data", t);
  conn_dir_span(w, conn, dir, off, len);
  if (!blob.empty()) {
    w.key("blob").string(blob);
  } else {
    w.key("b64").string(base64_encode(inline_bytes));
  }
  finish(w, out);
}

void msg(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off, std::uint64_t len,
         std::string_view fields) {
  JsonWriter& w = begin(out, "msg", t);
  conn_dir_span(w, conn, dir, off, len);
  finish_with_members(w, out, fields);
}

void redaction(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off,
               std::uint64_t len, std::string_view fields) {
  JsonWriter& w = begin(out, "redaction", t);
  conn_dir_span(w, conn, dir, off, len);
  finish_with_members(w, out, fields);
}

void end(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, EndKind how) {
  JsonWriter& w = begin(out, "end", t);
  w.key("conn").number(conn);
  w.key("dir").string(dir_name(dir));
  w.key("how").string(end_name(how));
  finish(w, out);
}

void fault(std::string& out, std::int64_t t, std::uint64_t conn, std::string_view toxic, std::string_view type,
           std::string_view what) {
  JsonWriter& w = begin(out, "fault", t);
  w.key("conn").number(conn);
  w.key("toxic").string(toxic);
  w.key("fault").string(type);
  w.key("what").string(what);
  finish(w, out);
}

void close(std::string& out, std::int64_t t, std::uint64_t conn) {
  JsonWriter& w = begin(out, "close", t);
  w.key("conn").number(conn);
  finish(w, out);
}

void gap(std::string& out, std::int64_t t, std::uint64_t events, std::uint64_t bytes, std::int64_t since,
         std::int64_t until) {
  JsonWriter& w = begin(out, "gap", t);
  w.key("events").number(events);
  w.key("bytes").number(bytes);
  w.key("since").number(since);
  w.key("until").number(until);
  finish(w, out);
}

}  // namespace line

// ---- index.json ----

std::string format_index(const IndexFile& index) {
  JsonWriter w;
  w.begin_object();
  w.key("version").number(index.version);
  w.key("id").string(index.id);
  w.key("journals").begin_array();
  for (const std::string& journal : index.journals) w.string(journal);
  w.end_array();
  w.key("state").string(index.state);
  w.key("started_wall").string(index.started_wall);
  if (index.stopped_wall) w.key("stopped_wall").string(*index.stopped_wall);
  w.key("redacted").boolean(index.redacted);
  if (!index.error.empty()) w.key("error").string(index.error);
  w.end_object();
  std::string out = w.take();
  out += '\n';
  return out;
}

int create_file_at(int dirfd, const std::string& name, int flags, bool replace) {
  const int all = flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(dirfd, name.c_str(), all, 0644);
  if (fd < 0 && errno == EEXIST && replace) {
    // unlinkat removes a symlink itself, never its target. Should something be planted
    // again in between, O_EXCL fails once more: the file is then not written.
    if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) fd = ::openat(dirfd, name.c_str(), all, 0644);
    else errno = EEXIST;
  }
  return fd;
}

bool write_file_at(int dirfd, const std::string& dir, const std::string& name, std::string_view text, std::string& error) {
  const std::string tmp_name = name + ".tmp";
  const std::string path = dir.empty() ? name : dir + "/" + name;
  const std::string tmp = path + ".tmp";
  const int fd = create_file_at(dirfd, tmp_name, O_WRONLY, true);
  if (fd < 0) {
    error = tmp + ": " + errno_text(errno);
    return false;
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = tmp + ": " + errno_text(n < 0 ? errno : EIO);
      ::close(fd);
      ::unlinkat(dirfd, tmp_name.c_str(), 0);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    error = tmp + ": " + errno_text(errno);
    ::unlinkat(dirfd, tmp_name.c_str(), 0);
    return false;
  }
  // rename(2) replaces whatever is under the final name (a symlink too) without following it.
  if (::renameat(dirfd, tmp_name.c_str(), dirfd, name.c_str()) != 0) {
    error = path + ": " + errno_text(errno);
    ::unlinkat(dirfd, tmp_name.c_str(), 0);
    return false;
  }
  return true;
}

bool write_file_replacing(const std::string& path, std::string_view text, std::string& error) {
  return write_file_at(AT_FDCWD, "", path, text, error);
}

bool write_index_at(int dirfd, const std::string& dir, const IndexFile& index, std::string& error) {
  return write_file_at(dirfd, dir, std::string(kIndexFile), format_index(index), error);
}

bool write_index(const std::string& dir, const IndexFile& index, std::string& error) {
  const int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    error = dir + ": " + errno_text(errno);
    return false;
  }
  const bool ok = write_index_at(dirfd, dir, index, error);
  ::close(dirfd);
  return ok;
}

bool read_index(const std::string& dir, IndexFile& out, std::string& error) {
  const std::string path = dir + "/" + std::string(kIndexFile);
  std::string text;
  if (!read_file(path, text)) {
    error = path + ": " + errno_text(errno ? errno : ENOENT);
    return false;
  }
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    error = path + ": not a recording index (not a JSON object)";
    return false;
  }
  std::int64_t version = 0;
  if (!get_int(doc, "version", version) || version < 1) {
    error = path + ": not a recording index (no version)";
    return false;
  }
  if (version > kIndexVersion) {
    error = path + ": " + version_message("recording index", version, kIndexVersion);
    return false;
  }
  out = IndexFile{};
  out.version = static_cast<int>(version);
  get_string(doc, "id", out.id);
  get_string(doc, "state", out.state);
  get_string(doc, "started_wall", out.started_wall);
  get_string(doc, "error", out.error);
  std::string stopped;
  if (get_string(doc, "stopped_wall", stopped)) out.stopped_wall = stopped;
  if (const Value* r = get(doc, "redacted"); r && r->IsBool()) out.redacted = r->GetBool();
  const Value* journals = get(doc, "journals");
  if (!journals || !journals->IsArray()) {
    error = path + ": no journals list";
    return false;
  }
  for (const auto& j : journals->GetArray()) {
    if (!j.IsString()) continue;
    std::string name(j.GetString(), j.GetStringLength());
    // Names only: an index must not point a reader outside its directory.
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      error = path + ": bad journal name " + json_string(name);
      return false;
    }
    out.journals.push_back(std::move(name));
  }
  return true;
}

// ---- reader ----

JournalReader::JournalReader() = default;
JournalReader::~JournalReader() = default;

bool JournalReader::open(const std::string& path, std::string& error) {
  // A reader may be reopened: forget everything about the previous journal.
  in_.close();
  in_.clear();
  in_open_ = false;
  dir_.clear();
  files_.clear();
  current_ = 0;
  line_no_ = 0;
  offset_ = 0;
  saw_header_ = false;
  error_.clear();
  truncations_.clear();
  index_.reset();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    IndexFile index;
    if (!read_index(path, index, error)) return false;
    dir_ = path;
    for (const auto& j : index.journals) files_.push_back(path + "/" + j);
    index_ = std::move(index);
  } else {
    if (!std::filesystem::exists(path, ec)) {
      error = path + ": " + errno_text(ENOENT);
      return false;
    }
    dir_ = std::filesystem::path(path).parent_path().string();
    if (dir_.empty()) dir_ = ".";
    files_.push_back(path);
  }
  if (!files_.empty() && !open_file(0)) {
    error = error_;
    return false;
  }
  return true;
}

bool JournalReader::open_file(std::size_t i) {
  current_ = i;
  in_.close();
  in_.clear();
  in_.open(files_[i], std::ios::binary);
  line_no_ = 0;
  offset_ = 0;
  saw_header_ = false;
  in_open_ = static_cast<bool>(in_);
  if (!in_open_) {
    error_ = files_[i] + ": " + errno_text(errno ? errno : ENOENT);
    return false;
  }
  return true;
}

bool JournalReader::next(JournalEvent& event) {
  if (!error_.empty()) return false;
  while (current_ < files_.size()) {
    if (!in_open_) {
      if (!open_file(current_)) return false;
    }
    std::string text;
    const std::uint64_t start = offset_;
    if (!std::getline(in_, text)) {
      // The end of this file: go on with the next one.
      in_open_ = false;
      in_.close();
      ++current_;
      continue;
    }
    ++line_no_;
    const bool newline = !in_.eof();
    offset_ += text.size() + (newline ? 1 : 0);
    const std::string& file = files_[current_];
    if (!newline) {
      truncations_.push_back({file, line_no_, start, "no trailing newline (a partial last line)"});
      in_open_ = false;
      in_.close();
      ++current_;
      continue;
    }
    std::string why;
    event = JournalEvent{};
    event.file = file;
    event.line = line_no_;
    if (!parse_line(text, event, why)) {
      if (!error_.empty()) return false;  // a version or header problem: stop
      // Broken but terminated: only forgivable as the file's last line (a batch cut off by
      // a full disk and never followed by anything).
      if (in_.peek() == std::char_traits<char>::eof()) {
        truncations_.push_back({file, line_no_, start, why});
        in_open_ = false;
        in_.close();
        ++current_;
        continue;
      }
      error_ = file + ":" + std::to_string(line_no_) + " (byte " + std::to_string(start) + "): " + why;
      return false;
    }
    return true;
  }
  return false;
}

bool JournalReader::parse_line(std::string_view text, JournalEvent& event, std::string& why) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    why = "not JSON";
    return false;
  }
  if (!get_string(doc, "type", event.type_name)) {
    why = "no \"type\"";
    return false;
  }
  event.raw.assign(text);
  const std::string& file = files_[current_];
  if (event.type_name == "journal") {
    event.type = EventType::header;
    std::int64_t version = 0;
    if (!get_int(doc, "version", version) || version < 1) {
      error_ = file + ": not a faultline journal (its header has no version)";
      return false;
    }
    if (version > kJournalVersion) {
      error_ = file + ": " + version_message("journal", version, kJournalVersion);
      return false;
    }
    event.version = static_cast<int>(version);
    get_string(doc, "recording", event.recording);
    get_uint(doc, "file", event.file_no);
    get_string(doc, "started_wall", event.started_wall);
    get_int(doc, "started_mono_ns", event.started_mono_ns);
    if (const Value* r = get(doc, "redacted"); r && r->IsBool()) event.redacted = r->GetBool();
    saw_header_ = true;
    return true;
  }
  if (!saw_header_) {
    error_ = file + ": not a faultline journal (the first line is not a journal header)";
    return false;
  }
  get_int(doc, "t", event.t);
  get_uint(doc, "conn", event.conn);
  std::string dir;
  if (get_string(doc, "dir", dir)) event.dir = dir == "down" ? Stream::downstream : Stream::upstream;
  get_uint(doc, "off", event.off);
  get_uint(doc, "len", event.len);
  const std::string& type = event.type_name;
  if (type == "open") {
    event.type = EventType::open;
    get_string(doc, "proxy", event.proxy);
    get_string(doc, "protocol", event.protocol);
    get_string(doc, "client", event.client);
    get_string(doc, "upstream", event.upstream);
  } else if (type == "data") {
    event.type = EventType::data;
    std::string b64;
    if (get_string(doc, "b64", b64)) {
      if (!base64_decode(b64, event.bytes)) {
        why = "bad base64";
        return false;
      }
    } else if (get_string(doc, "blob", event.blob)) {
      if ((event.blob.size() != 32 && event.blob.size() != 64) || event.blob.find_first_not_of(kHex) != std::string::npos) {
        why = "bad blob name";
        return false;
      }
      if (!read_file(dir_ + "/" + std::string(kBlobDir) + "/" + event.blob, event.bytes)) event.blob_missing = true;
    } else {
      why = "data without b64 or blob";
      return false;
    }
    if (!event.blob_missing && event.bytes.size() != event.len) {
      why = "data length " + std::to_string(event.bytes.size()) + " differs from len " + std::to_string(event.len);
      return false;
    }
  } else if (type == "msg") {
    event.type = EventType::msg;
    get_string(doc, "kind", event.kind);
  } else if (type == "redaction") {
    event.type = EventType::redaction;
    get_string(doc, "rule", event.rule);
  } else if (type == "end") {
    event.type = EventType::end;
    std::string how;
    get_string(doc, "how", how);
    event.how = how == "half_close" ? EndKind::half_close : how == "reset" ? EndKind::reset : EndKind::close;
  } else if (type == "fault") {
    event.type = EventType::fault;
    get_string(doc, "toxic", event.toxic);
    get_string(doc, "fault", event.fault);
    get_string(doc, "what", event.what);
  } else if (type == "close") {
    event.type = EventType::close;
  } else if (type == "gap") {
    event.type = EventType::gap;
    get_uint(doc, "events", event.gap_events);
    get_uint(doc, "bytes", event.gap_bytes);
  } else {
    event.type = EventType::unknown;  // a newer writer's line type: passed on, not understood
  }
  return true;
}

JournalContents read_journal(const std::string& path) {
  JournalContents out;
  JournalReader reader;
  if (!reader.open(path, out.error)) return out;
  JournalEvent event;
  while (reader.next(event)) out.events.push_back(std::move(event));
  out.error = reader.error();
  out.truncations = reader.truncations();
  return out;
}

}  // namespace faultline::rec
