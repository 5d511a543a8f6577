// `faultline replay server` (a stand-in upstream serving recorded responses) and
// `faultline replay client` (re-drives a server with the recorded client side). The
// network parts live in replay_net.cpp (Asio through proxy/asio.hpp); this header stays
// Asio-free so app/, the drill runner and `serve` can embed a server without Asio.
// Errors are return values, never exceptions.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replay/replay_model.hpp"
#include "replay/replay_rules.hpp"

namespace faultline::replay {

struct ServerOptions {
  std::string journal;
  std::string listen = "127.0.0.1:0";
  std::optional<Protocol> protocol;     // nullopt = auto (from the journal)
  Unmatched unmatched = Unmatched::error;
  std::string forward;                  // HOST:PORT for the forward policy ("" = none)
  std::vector<Rule> rules;              // per-request overrides of `unmatched`, first match wins
  std::vector<std::string> ignore;      // JSON paths left out of body matching
  std::string port_file;                // write the bound HOST:PORT here once listening
};

// Checks what the flags cannot: a forward policy needs `forward`, tcp cannot forward.
std::optional<std::string> check_server_options(const ServerOptions& options);

// A journal path as written in a file in `base_dir` (a profile, a drill): relative ones
// resolve against that directory (when not empty), absolute ones are kept.
std::string resolve_journal(const std::string& base_dir, const std::string& journal);

// The JSON form (a profile's proxy "replay" object, a drill's replay.start provider):
// {"journal", "listen", "protocol", "unmatched", "forward", "ignore": [..], "rules": [..]}.
// A relative journal resolves against `base_dir` (when not empty). Keys in `extra_keys`
// are skipped. Errors name the field: `unmatched: must be one of error, closest, fail, forward`.
std::optional<std::string> server_options_from_json(const std::string& json, const std::string& base_dir,
                                                    const std::vector<std::string>& extra_keys, ServerOptions& out);

struct ServerCounters {
  std::uint64_t requests = 0;   // requests (tcp: turns) seen
  std::uint64_t matched = 0;    // answered from the recording
  std::uint64_t unmatched = 0;  // not covered by the recording (whatever the policy did)
  std::uint64_t forwarded = 0;  // unmatched and answered by the forward upstream
  std::uint64_t failed = 0;     // unmatched under the fail policy (the connection was closed)
};

// A stand-in server running in this process on a thread of its own (one io_context, so the
// recorded queues need no lock). Opens no upstream connection unless a request meets the
// forward policy. Stopping closes the listener and every live connection.
class ReplayServer {
 public:
  // Loads the journal and binds `options.listen`; nullptr and `error` when it cannot.
  static std::unique_ptr<ReplayServer> start(const ServerOptions& options, std::string& error);
  ~ReplayServer();
  ReplayServer(const ReplayServer&) = delete;
  ReplayServer& operator=(const ReplayServer&) = delete;

  const std::string& address() const;  // the bound HOST:PORT
  Protocol protocol() const;           // what it serves
  std::size_t exchanges() const;       // recorded exchanges loaded
  ServerCounters counters() const;
  void stop();  // idempotent; waits for the server's thread

  struct Impl;

 private:
  explicit ReplayServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The CLI: runs until SIGINT/SIGTERM, then prints the summary. Returns the exit code: 0; 1
// when a request went unmatched under the fail policy (its connection was closed at once);
// 2 when it could not start.
int run_server(const ServerOptions& options);

struct ClientOptions {
  std::string journal;
  std::string target;  // HOST:PORT every connection goes to (unless proxy_targets names its proxy)
  // A journal may hold the connections of several proxies: `proxy` replays only one of them,
  // `proxy_targets` sends each proxy's connections to a server of its own.
  std::string proxy;
  std::map<std::string, std::string> proxy_targets;  // recorded proxy -> HOST:PORT
  std::optional<Protocol> protocol;
  double speed = 1.0;                   // 0 = as fast as possible
  bool open_loop = false;               // send on the recorded schedule without waiting for replies
  unsigned concurrency_scale = 1;       // each recorded connection run K times
  double threshold = 0.0;               // mismatch ratio above which the run fails
  std::vector<std::string> ignore;
  // Credentials the recording holds only as tokens: HTTP headers set on every request
  // (Authorization, an API key), and the password put into AUTH / HELLO … AUTH.
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> redis_password;
  double timeout = 10.0;                // seconds per reply
  int progress = -1;                    // -1 = when stderr is a TTY
  // When set and it turns true, the replay stops within ~50 ms; replay_client then fails
  // with "cancelled" (a drill interrupted while its replay.client runs).
  const std::atomic<bool>* cancel = nullptr;
};

struct ClientResult {
  std::uint64_t exchanges = 0, matched = 0, mismatched = 0, errors = 0;
  std::vector<std::string> divergences;  // the first 20, "conn 1 #4 INCR counter: reply :4, recorded :3"
  std::vector<std::string> warnings;     // e.g. several proxies' connections sent to one target
  double ratio() const { return exchanges ? static_cast<double>(mismatched + errors) / static_cast<double>(exchanges) : 0.0; }
};

// Replays the client side; false + `error` when it could not run at all. `quiet` keeps
// divergences and the progress line off stderr (the caller reports them).
bool replay_client(const ClientOptions& options, ClientResult& result, std::string& error, bool quiet = false);

// The CLI: prints the summary; 0, 1 above the threshold, 2 when it could not run.
int run_client(const ClientOptions& options);

}  // namespace faultline::replay
