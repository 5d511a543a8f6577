// The control plane: the registry of proxies and every route of the control API
// (Toxiproxy's, exactly, plus faultline's). Transport-free: the HTTP server hands it a
// parsed request and writes back the response. Runs on the control thread only and
// never waits on the data plane.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "proxy/proxy.hpp"
#include "recorder/recording.hpp"

namespace faultline {

struct ProxyFields;

struct ApiRequest {
  std::string method;
  std::string target;  // raw request target (path + query)
  std::string host;    // Host header
  std::string user_agent;
  std::string authorization;
  std::string origin;  // Origin header (sent by browsers)
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

struct ApiSecurity {
  std::optional<std::string> token;   // bearer token; nullopt = no auth
  std::vector<std::string> allowed_hosts;
  bool enforce_host = true;           // refuse non-loopback Host headers (Toxiproxy #219)
  bool block_browsers = true;         // Toxiproxy's "Mozilla/" user-agent block
  // Origins (e.g. "http://localhost:3000", or "*") whose pages may call the API; a request
  // from any other page (an Origin that is not the API itself) gets 403.
  std::vector<std::string> allowed_origins;
};

// An error with an HTTP status, in Toxiproxy's vocabulary.
struct ApiError {
  int status;
  std::string message;
};

// Reads a POST /recordings body (also a profile's "recording" object) into options.
// `append` (the API's "append": record into a folder that is not empty) is taken only
// when given; a profile has no such key.
std::optional<std::string> parse_recording_options(const rapidjson::Value& body, rec::RecordingOptions& options,
                                                   bool* append = nullptr);

class ControlPlane {
 public:
  ControlPlane(ServerContext& context, ApiSecurity security);
  ~ControlPlane();

  ApiResponse handle(const ApiRequest& request);
  // The Origin to echo in Access-Control-Allow-Origin: set when the request comes from
  // another origin that --allow-origin lets in.
  std::optional<std::string> cross_origin_allowed(const ApiRequest& request) const;

  // Creates or replaces proxies from a JSON array (the /populate body and the config
  // file). `where` prefixes error messages with a JSON path (e.g. "$.proxies").
  // Validation covers every entry before anything changes.
  struct PopulateResult {
    std::optional<ApiError> error;
    std::vector<const Proxy*> proxies;  // the ones processed, in input order
  };
  // A relative `replay.journal` resolves against `relative_to` ("" = the working directory).
  PopulateResult populate(const rapidjson::Value& entries, const std::string* json_base,
                          const std::string& relative_to = "");

  std::string metrics_text(bool runtime_metrics) const;
  // Graceful shutdown: close every listener, keep connections.
  void stop_accepting();
  // Close everything.
  void stop_all();
  std::uint64_t active_connections() const;

  // Recordings (proxy/recordings_api.cpp). `start_recording` is also how `serve --record`
  // and profiles start theirs; `stop_recordings` finalizes every one (shutdown).
  std::optional<ApiError> start_recording(std::string id, rec::RecordingOptions options);
  void stop_recordings();

 private:
  ApiResponse route(const ApiRequest& request, const std::vector<std::string>& segments);
  ApiResponse list_proxies();
  ApiResponse create_proxy(const std::string& body);
  // An entry with "replay": starts (or keeps, when unchanged) its replay server and sets
  // `f.upstream` to it. The error names the field relative to the entry ("replay.unmatched: ...").
  std::optional<std::string> start_replay(ProxyFields& f, const std::string& base_dir, std::string& replay_json,
                                          std::shared_ptr<void>& owner);
  ApiResponse populate_route(const std::string& body);
  ApiResponse update_proxy(Proxy& proxy, const std::string& body);
  ApiResponse delete_proxy(const std::string& name);
  ApiResponse list_toxics(const Proxy& proxy);
  ApiResponse list_connections(const Proxy& proxy);
  ApiResponse create_toxic(Proxy& proxy, const std::string& body);
  ApiResponse update_toxic_route(Proxy& proxy, const std::string& toxic, const std::string& body);
  ApiResponse delete_toxic(Proxy& proxy, const std::string& toxic);
  ApiResponse reset();

  ApiResponse recordings_route(const ApiRequest& request, const std::vector<std::string>& segments);
  std::string recording_json(const rec::Recording& recording) const;
  void publish_all();
  std::optional<ApiError> build_toxics(const rapidjson::Value& list, const std::string& where,
                                       std::vector<std::shared_ptr<const ToxicConfig>>& out);

  ServerContext& context_;
  ApiSecurity security_;
  std::map<std::string, std::unique_ptr<Proxy>> proxies_;
  std::uint64_t toxic_revision_ = 0;
  std::map<std::string, std::shared_ptr<rec::Recording>> recordings_;  // started ones, stopped ones too
  std::uint64_t recording_counter_ = 0;
};

}  // namespace faultline
