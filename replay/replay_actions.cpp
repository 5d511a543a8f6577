#include "replay/replay_actions.hpp"

#include <cstdio>

#include "replay/replay_run.hpp"

namespace faultline::drill {

ReplayActions::ReplayActions(std::string base_dir) : base_dir_(std::move(base_dir)) {}
ReplayActions::~ReplayActions() { stop_all(); }

ReplayActionResult ReplayActions::start(const ReplaySpec& spec) {
  ReplayActionResult r;
  if (servers_.count(spec.name)) {
    r.error = "replay server " + spec.name + " is already running (stop it first with replay.stop)";
    return r;
  }
  replay::ServerOptions options;
  if (auto e = replay::server_options_from_json(spec.raw, base_dir_, {"type", "name"}, options)) {
    r.error = *e;
    return r;
  }
  std::string error;
  auto server = replay::ReplayServer::start(options, error);
  if (!server) {
    r.error = "replay server " + spec.name + ": " + error;
    return r;
  }
  r.ok = true;
  r.output = "replay server " + spec.name + " on " + server->address() + ": " + std::to_string(server->exchanges()) +
             " recorded exchanges (" + std::string(protocol_name(server->protocol())) + ")";
  servers_[spec.name] = std::move(server);
  return r;
}

ReplayActionResult ReplayActions::stop(const ReplaySpec& spec) {
  ReplayActionResult r;
  auto it = servers_.find(spec.name);
  if (it == servers_.end()) {
    r.error = "no replay server named " + spec.name + " is running";
    return r;
  }
  it->second->stop();
  const auto c = it->second->counters();
  servers_.erase(it);
  r.ok = true;
  r.output = "stopped replay server " + spec.name + ": " + std::to_string(c.requests) + " requests, " +
             std::to_string(c.matched) + " matched, " + std::to_string(c.unmatched) + " unmatched, " +
             std::to_string(c.forwarded) + " forwarded";
  return r;
}

ReplayActionResult ReplayActions::client(const ReplaySpec& spec, const std::atomic<bool>* cancel) const {
  ReplayActionResult r;
  replay::ClientOptions o;
  o.journal = replay::resolve_journal(base_dir_, spec.journal);
  o.target = spec.target;
  if (!spec.protocol.empty() && spec.protocol != "auto") o.protocol = parse_protocol(spec.protocol);
  o.speed = spec.speed;
  o.open_loop = spec.open_loop;
  o.concurrency_scale = spec.concurrency_scale;
  o.threshold = spec.threshold;
  o.ignore = spec.ignore;
  o.headers = spec.headers;
  o.redis_password = spec.redis_password;
  o.timeout = spec.timeout;
  o.progress = 0;
  o.cancel = cancel;
  replay::ClientResult result;
  std::string error;
  if (!replay::replay_client(o, result, error, true)) {
    r.error = "replay client: " + error;
    return r;
  }
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.3f", result.ratio());
  r.output = std::to_string(result.exchanges) + " exchanges, " + std::to_string(result.matched) + " matched, " +
             std::to_string(result.mismatched) + " mismatched, " + std::to_string(result.errors) + " errors";
  if (!result.divergences.empty()) r.output += "; first: " + result.divergences.front();
  r.ok = result.ratio() <= spec.threshold;
  if (!r.ok) r.error = "divergence " + std::string(ratio) + " above the threshold: " + r.output;
  return r;
}

std::optional<std::string> ReplayActions::address(const std::string& name) const {
  auto it = servers_.find(name);
  if (it == servers_.end()) return std::nullopt;
  return it->second->address();
}

void ReplayActions::stop_all() {
  for (auto& [name, server] : servers_) server->stop();
  servers_.clear();
}

}  // namespace faultline::drill
