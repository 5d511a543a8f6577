// The /recordings routes: start a recording of some or all proxies, list recordings,
// read one's status, stop (finalize) one. A recording reaches live connections through
// the proxies' snapshots, so connections already open are recorded from then on.
#include <chrono>
#include <csignal>
#include <ctime>

#include <spdlog/spdlog.h>

#include "base/json_writer.hpp"
#include "base/regex.hpp"
#include "proxy/api_checks.hpp"
#include "proxy/control_plane.hpp"
#include "proxy/json_io.hpp"
#include "proxy/proxy.hpp"
#include "proxy/server_context.hpp"
#include "recorder/recording.hpp"

namespace faultline {
namespace {

ApiResponse json_reply(int status, std::string body) { return ApiResponse{status, "application/json", std::move(body)}; }
ApiResponse error_reply(int status, std::string_view message) {
  return ApiResponse{status, "application/json", error_json(status, message)};
}

// Steady-clock instants shown as wall-clock RFC 3339 times.
std::string wall_text(TimePoint t) {
  const auto wall = std::chrono::system_clock::now() -
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - t);
  const std::time_t seconds = std::chrono::system_clock::to_time_t(wall);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string_view state_name(rec::RecordingState s) {
  switch (s) {
    case rec::RecordingState::recording: return "recording";
    case rec::RecordingState::stopped: return "stopped";
    case rec::RecordingState::failed: return "failed";
  }
  return "failed";
}

std::optional<std::string> string_list(const rapidjson::Value& v, const std::string& field, std::vector<std::string>& out) {
  if (!v.IsArray()) return "field " + field + " must be an array of strings";
  for (const auto& item : v.GetArray()) {
    if (!item.IsString()) return "field " + field + " must be an array of strings";
    out.emplace_back(item.GetString(), item.GetStringLength());
  }
  return std::nullopt;
}

// Compiled here only to be refused early, with the pattern's place (the recorder compiles
// them again for itself).
std::optional<std::string> regex_list(const rapidjson::Value& v, std::vector<std::string>& out) {
  const std::size_t first = out.size();
  if (auto e = string_list(v, "redact_rules.regexes", out)) return e;
  for (std::size_t i = first; i < out.size(); ++i) {
    std::string why;
    if (!Regex::compile(out[i], why)) {
      return "field redact_rules.regexes[" + std::to_string(i - first) + "] is not a valid regular expression: " + why;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> parse_recording_options(const rapidjson::Value& v, rec::RecordingOptions& o, bool* append) {
  if (!v.IsObject()) return std::string("expected a JSON object like {\"proxies\":[\"redis\"],\"dir\":\"recordings/x\"}");
  for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
    const std::string key(it->name.GetString(), it->name.GetStringLength());
    const rapidjson::Value& f = it->value;
    auto whole = [&](std::uint64_t& slot, std::uint64_t min) -> std::optional<std::string> {
      if (!f.IsUint64() || f.GetUint64() < min) {
        return "field " + key + " must be a whole number of at least " + std::to_string(min);
      }
      slot = f.GetUint64();
      return std::nullopt;
    };
    std::optional<std::string> e;
    if (key == "proxies") {
      e = string_list(f, key, o.proxies);
    } else if (key == "dir") {
      if (!f.IsString() || f.GetStringLength() == 0) e = "field dir must be a non-empty string (a directory path)";
      else o.dir.assign(f.GetString(), f.GetStringLength());
      // A NUL would cut the path short when it reaches the file system.
      if (!e && o.dir.find('\0') != std::string::npos) e = "field dir must not contain a NUL byte";
    } else if (key == "append" && append) {
      if (!f.IsBool()) e = "field append must be true or false";
      else *append = f.GetBool();
    } else if (key == "redact") {
      if (!f.IsBool()) e = "field redact must be true or false";
      else o.redact = f.GetBool();
    } else if (key == "redact_rules") {
      if (!f.IsObject()) {
        e = "field redact_rules must be an object like {\"headers\":[],\"json_keys\":[],\"regexes\":[]}";
      } else {
        for (auto r = f.MemberBegin(); r != f.MemberEnd() && !e; ++r) {
          const std::string rule(r->name.GetString(), r->name.GetStringLength());
          if (rule == "headers") e = string_list(r->value, "redact_rules.headers", o.rules.headers);
          else if (rule == "json_keys") e = string_list(r->value, "redact_rules.json_keys", o.rules.json_keys);
          else if (rule == "regexes") e = regex_list(r->value, o.rules.regexes);
          else e = "field redact_rules." + rule + " is unknown (expected headers, json_keys, regexes)";
        }
      }
    } else if (key == "rotate_bytes") {
      e = whole(o.rotate_bytes, 4096);
    } else if (key == "rotate_seconds") {
      std::uint64_t s = 0;
      e = whole(s, 1);
      o.rotate_every = std::chrono::seconds(s);
    } else if (key == "max_queue_bytes") {
      e = whole(o.max_queue_bytes, 65536);
    } else if (key == "overflow") {
      const std::string value = f.IsString() ? f.GetString() : "";
      if (value != "gap" && value != "backpressure") e = "field overflow must be \"gap\" (the default) or \"backpressure\"";
      else o.backpressure = value == "backpressure";
    } else if (key == "blob_threshold") {
      e = whole(o.blob_threshold, 1024);
    } else if (key != "id") {
      e = "field " + key + " is unknown (expected proxies, dir, " + std::string(append ? "append, " : "") +
          "redact, redact_rules, rotate_bytes, rotate_seconds, max_queue_bytes, overflow, blob_threshold)";
    }
    if (e) return e;
  }
  return std::nullopt;
}

std::string ControlPlane::recording_json(const rec::Recording& r) const {
  const rec::RecordingStatus s = r.status();
  JsonWriter w;
  w.begin_object();
  w.key("id").string(s.id);
  w.key("dir").string(s.dir);
  w.key("state").string(state_name(s.state));
  if (!s.error.empty()) w.key("error").string(s.error);
  w.key("proxies");
  if (r.options().proxies.empty()) {
    w.string("all");
  } else {
    w.begin_array();
    for (const auto& proxy : r.options().proxies) w.string(proxy);
    w.end_array();
  }
  w.key("redacted").boolean(r.options().redact);
  w.key("connections").number(s.connections);
  w.key("events").number(s.events);
  w.key("bytes").number(s.bytes);
  w.key("journal_bytes").number(s.journal_bytes);
  w.key("gaps").begin_object();
  w.key("markers").number(s.gaps);
  w.key("events").number(s.gap_events);
  w.key("bytes").number(s.gap_bytes);
  w.end_object();
  w.key("lost_events").number(s.lost_events);
  w.key("lost_bytes").number(s.lost_bytes);
  w.key("journals").begin_array();
  for (const auto& journal : s.journals) w.string(journal);
  w.end_array();
  w.key("started").string(wall_text(s.started));
  if (s.stopped) w.key("stopped").string(wall_text(*s.stopped));
  w.end_object();
  return w.take();
}

void ControlPlane::publish_all() {
  for (auto& [name, proxy] : proxies_) proxy->publish();
}

std::optional<ApiError> ControlPlane::start_recording(std::string id, rec::RecordingOptions options) {
  for (const auto& name : options.proxies) {
    if (!proxies_.count(name)) return ApiError{400, "proxy " + name + " not found (field proxies)"};
  }
  if (recordings_.count(id)) return ApiError{409, "recording " + id + " already exists"};
  if (options.dir.empty()) {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    options.dir = context_.recordings_root + "/" + id + "-" + stamp;
  }
  // Without redaction, Recording::start warns (once) that secrets are written as sent.
  // A file size limit (RLIMIT_FSIZE, ulimit -f) reached by a journal must fail the recording
  // (write(2) returns EFBIG), not kill the process with SIGXFSZ's default action.
  std::signal(SIGXFSZ, SIG_IGN);
  std::string error;
  auto recording = rec::Recording::start(id, std::move(options), error);
  if (!recording) return ApiError{400, "cannot record: " + error};
  spdlog::info("recording {}: started into {}", id, recording->options().dir);
  recordings_[id] = recording;
  context_.recordings.push_back(recording);
  publish_all();
  return std::nullopt;
}

void ControlPlane::stop_recordings() {
  context_.recordings.clear();
  publish_all();
  for (auto& [id, r] : recordings_) r->stop();
}

ApiResponse ControlPlane::recordings_route(const ApiRequest& req, const std::vector<std::string>& seg) {
  const std::string& m = req.method;
  if (seg.size() == 1) {
    if (m == "GET") {
      std::string out = "[";
      bool first = true;
      for (const auto& [id, r] : recordings_) {
        out += (first ? "" : ",") + recording_json(*r);
        first = false;
      }
      return json_reply(200, out + "]");
    }
    if (m != "POST") return ApiResponse{405, "", ""};
    rapidjson::Document doc;
    std::string body = req.body;
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) body = "{}";
    if (auto e = parse_body(body, doc)) return error_reply(400, *e);
    rec::RecordingOptions options;
    bool append = false;
    if (auto e = parse_recording_options(doc, options, &append)) return error_reply(400, "bad request body: " + *e);
    std::string id;
    if (doc.IsObject() && doc.HasMember("id")) {
      if (!doc["id"].IsString() || doc["id"].GetStringLength() == 0) return error_reply(400, "bad request body: field id must be a non-empty string");
      id.assign(doc["id"].GetString(), doc["id"].GetStringLength());
      if (id.find_first_of(std::string_view("/\\ \t\0", 5)) != std::string::npos)
        return error_reply(400, "bad request body: field id must not contain slashes, spaces or NUL bytes");
    } else {
      do {
        id = "rec-" + std::to_string(++recording_counter_);
      } while (recordings_.count(id));
    }
    // An API caller writes only under the recordings root (serve --recordings-root), and
    // not into a folder that holds something already unless it asks to.
    if (!options.dir.empty()) {
      auto where = resolve_recording_dir(options.dir, context_.recordings_root);
      if (!where.error.empty()) return error_reply(400, "bad request body: field dir: " + where.error);
      options.dir = where.path;
      if (!append) {
        if (auto e = non_empty_dir(options.dir)) return error_reply(400, "bad request body: field dir: " + *e);
      }
    }
    if (auto e = start_recording(id, std::move(options))) return error_reply(e->status, e->message);
    return json_reply(201, recording_json(*recordings_[id]));
  }
  if (seg.size() != 2 || seg[1].empty()) return ApiResponse{404, "text/plain; charset=utf-8", "404 page not found\n"};
  auto it = recordings_.find(seg[1]);
  if (it == recordings_.end()) return error_reply(404, "recording not found");
  if (m == "GET") return json_reply(200, recording_json(*it->second));
  if (m != "DELETE") return ApiResponse{405, "", ""};
  auto recording = it->second;
  std::erase(context_.recordings, recording);
  publish_all();  // connections stop tapping it at their next chunk
  recording->stop();
  spdlog::info("recording {}: stopped", recording->id());
  return json_reply(200, recording_json(*recording));
}

}  // namespace faultline
