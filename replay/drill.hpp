// A drill file, parsed and checked: Chaos Toolkit's experiment vocabulary (title,
// description, configuration, steady-state-hypothesis, method, rollbacks, runtime) with
// faultline's providers (toxics, proxies, loads, RESP/TCP/metric probes) and `verdicts`
// for the V.1-V.8 criteria. Everything a run needs is resolved here — `${var}`
// substitution, env overrides, defaults, references between activities — so the runner
// never meets an invalid drill. Errors carry the JSON path: `$.method[2].provider.url:
// expected a string`. Pure: no I/O except reading the file in load_drill().
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "replay/observation.hpp"
#include "replay/tolerance.hpp"

namespace faultline::drill {

using Labels = std::map<std::string, std::string>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// ---- providers: what an activity does ----------------------------------------------------

struct HttpSpec {
  std::string url;  // http://host[:port]/path (https is not supported yet)
  std::string method = "GET";
  Headers headers;
  std::optional<std::string> body;
  double connect_timeout = 5;  // seconds
  double timeout = 5;          // seconds, the whole exchange
};

struct RespSpec {
  std::string address;               // host:port
  std::vector<std::string> command;  // ["GET", "key"]
  double timeout = 5;
};

struct TcpSpec {
  std::string address;
  double timeout = 5;
  std::string send;    // written after connecting (may be empty)
  std::string expect;  // when set: read until the received bytes contain it
};

struct MetricSpec {
  std::string faultline;  // API base URL
  std::string name;
  Labels labels;
  double window = 0;  // > 0: the value is the increase over this many seconds
};

struct CommandSpec {
  std::string path;
  std::vector<std::string> arguments;
  Headers env;  // added to the drill's environment
  double timeout = 60;
  // The command is a workflow that reports its own steps: each stdout line that is a JSON
  // object {"start", "end" (unix seconds), "ok", "status", "detail"} is one step of the
  // activity's series, as a load's calls are (verdicts read them the same way).
  bool steps = false;
};

// toxic.add / toxic.update / toxic.remove
struct ToxicSpec {
  std::string faultline;
  std::string proxy;
  std::string toxic;      // name (toxic.add: from the body, or "<type>_<stream>")
  std::string body;       // JSON sent as is (add: the toxic; update: the changes)
  bool missing_ok = true; // remove: a toxic that is already gone counts as removed
  double duration = 0;    // add: > 0 removes it again after this many seconds
};

// proxy.disable / proxy.enable / faultline.reset
struct ProxySpec {
  std::string faultline;
  std::string proxy;  // empty for faultline.reset
};

struct WaitSpec {
  double seconds = 0;
};

// Drives traffic and records every call. `{i}` in the request template is the call index.
struct LoadSpec {
  ProbeKind target = ProbeKind::http;  // http, resp or tcp
  HttpSpec http;
  RespSpec resp;
  TcpSpec tcp;
  std::optional<std::uint64_t> requests;  // stop after this many calls
  double duration = 0;                    // or after this many seconds (0: no limit)
  unsigned concurrency = 1;
  double rate = 0;  // calls per second over all workers, 0: as fast as answers come
  std::optional<Tolerance> success;  // per call; default as for a probe of the kind
  // resp only: after the load, read back every acknowledged write ("no acknowledged write lost").
  struct Verify {
    std::string address;               // default: the load's address
    std::vector<std::string> command;  // e.g. ["GET", "drill:{i}"]
    std::string expect;                // rendered reply, e.g. "v{i}"
  };
  std::optional<Verify> verify;
};

// replay.start / replay.stop / replay.client. replay.start's options (journal, listen,
// protocol, unmatched, forward, ignore, rules) are checked here and kept as written in `raw`
// for replay_actions.cpp; a server's address is ${replay.NAME.address} in later activities.
struct ReplaySpec {
  std::string raw;   // the provider as written (after ${var} substitution)
  std::string name;  // replay.start, replay.stop
  // replay.client
  std::string journal, target, protocol;
  double speed = 1;  // 0 = as fast as the target answers ("max")
  bool open_loop = false;
  unsigned concurrency_scale = 1;
  double threshold = 0;  // the action fails when (mismatches + errors) / exchanges is above it
  double timeout = 10;   // seconds per reply
  std::vector<std::string> ignore;
  std::vector<std::pair<std::string, std::string>> headers;  // set on every HTTP request
  std::optional<std::string> redis_password;                 // put into AUTH / HELLO … AUTH
};

enum class Provider {
  http, resp, tcp, metric, command,          // probe providers (also usable as actions)
  toxic_add, toxic_update, toxic_remove,
  proxy_disable, proxy_enable, faultline_reset,
  wait, load, replay_start, replay_stop, replay_client,  // action-only providers
};
const char* to_string(Provider p);
bool is_probe_provider(Provider p);
ProbeKind probe_kind(Provider p);  // for probe providers

using ProviderSpec = std::variant<HttpSpec, RespSpec, TcpSpec, MetricSpec, CommandSpec, ToxicSpec, ProxySpec, WaitSpec,
                                  LoadSpec, ReplaySpec>;

// ---- activities ----------------------------------------------------------------------------

struct Activity {
  std::string name;
  bool probe = false;  // "type": "probe" (else "action")
  Provider provider = Provider::wait;
  ProviderSpec spec;
  std::optional<Tolerance> tolerance;  // probes (and probe providers used as actions)
  double pause_before = 0, pause_after = 0;
  bool background = false;
  bool critical = false;  // no_critical_errors counts this probe's failures
  // What a failure does to the method: actions abort it by default (a fault that did not
  // go in makes every verdict meaningless), probes only record it.
  bool abort_on_failure = true;
  std::string path;  // where it is declared, e.g. "$.method[2]"
};

// ---- runtime --------------------------------------------------------------------------------

enum class HypothesisStrategy { default_, before_method_only, after_method_only, during_method_only, continuously };
enum class RollbackStrategy { default_, always, never, deviated };
const char* to_string(HypothesisStrategy s);
const char* to_string(RollbackStrategy s);

struct Runtime {
  HypothesisStrategy hypothesis = HypothesisStrategy::default_;
  double frequency = 1;    // seconds between continuous hypothesis runs
  bool fail_fast = false;  // a failed continuous hypothesis stops the method
  RollbackStrategy rollbacks = RollbackStrategy::default_;
  double metrics_interval = 0.1;  // seconds between /metrics polls (failover verdicts)
};

// ---- verdicts -------------------------------------------------------------------------------

enum class VerdictType { success_rate, error_recovery, latency, failover, no_critical_errors, aggregate };
const char* to_string(VerdictType t);

// A proxy on a faultline instance.
struct ProxyRef {
  std::string faultline;
  std::string proxy;
};

// An activity that injects a fault, as a verdict that needs the fault to have acted reads it:
// a toxic.add (faultline's per-toxic counters) or a proxy.disable (down from its end until a
// proxy.enable of the same proxy ends).
struct FaultRef {
  std::string activity;
  Provider provider = Provider::toxic_add;
  ProxyRef proxy;
  std::string toxic;                 // toxic.add
  std::vector<std::string> enables;  // proxy.disable: the proxy.enable activities of that proxy
};

struct VerdictSpec {
  VerdictType type = VerdictType::success_rate;
  std::string name;
  std::string criterion;  // free text, e.g. "V.2"
  std::string path;       // "$.verdicts[3]"

  // Series the verdict reads: names of load or probe activities (success_rate, latency,
  // error_recovery) and an optional time window (event keys, see RunRecord::events; an
  // event may carry an offset: "kill+2s", "storm.removed-500ms").
  std::vector<std::string> sources;
  std::string from, until;

  double threshold = 0.95;        // success_rate
  std::uint64_t min_samples = 1;  // success_rate, latency

  // error_recovery
  std::string after;            // event key: the fault's removal (or its injection)
  double within = 1;            // seconds to the first success after `after`
  double later_success_rate = 1;
  double success_rate = 1;      // share of every step in the window, those during the fault included
  std::optional<double> max_recovery;  // seconds: bound on the longest run from a failed step to success
  // The fault must have acted, by faultline's own count (never inferred from the client:
  // a good client hides failures).
  bool require_failure = true;
  std::vector<FaultRef> faults;  // what injected the fault (default: the activity of `after`)
  struct Retries {
    ProxyRef proxy;
    std::string metric = "faultline_proxy_requests_total";
    std::optional<double> min, max;
  };
  std::optional<Retries> retries;

  // latency (milliseconds)
  std::optional<double> avg, p50, p95, p99, max;
  bool ok_only = false;

  // failover: application traffic per proxy, counted by faultline. On a message proxy
  // (http, mcp, resp) the requests it decoded minus those matching `traffic_exclude` (health
  // checks, counted by zero-delay toxics the runner adds); on a tcp proxy the connections
  // that carried client data. `metric` (custom_metric) counts a counter of your choice.
  ProxyRef primary, backup;
  std::vector<std::string> traffic_exclude;  // protocol-fault `match` objects, as JSON text
  double min_requests = 1;                   // backup traffic after `after` that shows the move
  double primary_max_share = 0.05;           // share of traffic still on the primary after the move
  bool custom_metric = false;
  std::string metric;
  Labels labels;
  struct Health {
    std::vector<std::string> sources;
    double min = 0.75;
  };
  std::optional<Health> health;
  std::string writes;  // a resp load with `verify`

  // no_critical_errors
  std::vector<std::string> no_5xx;
  std::uint64_t max_errors = 0;

  // aggregate
  std::vector<std::string> of;  // empty: every other verdict
  double min_ratio = 1;
};

// ---- the drill --------------------------------------------------------------------------------

struct Drill {
  std::string file;
  std::string title, description;
  std::vector<std::pair<std::string, std::string>> configuration;  // name -> value as JSON text
  std::string faultline_url;  // default API for actions, metric probes and verdicts
  std::optional<std::uint64_t> seed;
  std::string hypothesis_title;
  std::vector<Activity> hypothesis, method, rollbacks;
  Runtime runtime;
  std::vector<VerdictSpec> verdicts;
  std::vector<std::string> notes;  // said by drill --check (placeholders used)

  // Every faultline API the drill talks to (checked before anything runs).
  std::vector<std::string> faultline_urls() const;
  // Every (faultline, proxy) an action names (checked to exist before anything runs).
  std::vector<std::pair<std::string, ProxyRef>> proxies_used() const;  // (json path, proxy)
};

struct ParseOptions {
  // drill --check: an env configuration variable with neither a value nor a default gets a
  // placeholder (and a note in Drill::notes) instead of failing the check.
  bool placeholders = false;
  // Looks up an environment variable; defaults to std::getenv.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::vector<std::pair<std::string, std::string>> vars;  // --var name=value overrides
  std::optional<std::uint64_t> seed;                      // --seed; also ${seed}
};

// Replaces ${replay.NAME.address} in every string of the activity's provider with
// `address(NAME)` (nullopt: no such server is running). Runs just before the activity, since
// a replay server's address exists only once replay.start has run. Returns the first failure.
std::optional<std::string> resolve_replay_refs(Activity& a,
                                               const std::function<std::optional<std::string>(const std::string&)>& address);

// On error returns "$.path: why" (load_drill prefixes the file name).
std::optional<std::string> parse_drill(std::string_view text, const ParseOptions& options, Drill& out);
std::optional<std::string> load_drill(const std::string& path, const ParseOptions& options, Drill& out);

}  // namespace faultline::drill
