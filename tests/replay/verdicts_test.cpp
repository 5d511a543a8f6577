#include <catch2/catch.hpp>

#include "replay/verdicts.hpp"

using namespace faultline::drill;

namespace {

// A load whose calls fail while `fault(t)` holds: one call every `step` seconds.
LoadRecord load(const std::string& name, double from, double to, double step, const std::function<bool(double)>& fault,
                double ms = 1.0) {
  LoadRecord l;
  l.name = name;
  l.target = ProbeKind::resp;
  for (int i = 0;; ++i) {
    const double t = from + i * step;
    if (t >= to - 1e-9) break;
    LoadCall c;
    c.start = t;
    c.latency_ms = ms;
    c.ok = !fault(t);
    if (!c.ok) c.detail = "reply \"-LOADING\"";
    l.calls.push_back(c);
  }
  return l;
}

VerdictSpec spec(VerdictType type, std::vector<std::string> sources = {"gets"}) {
  VerdictSpec s;
  s.type = type;
  s.name = to_string(type);
  s.sources = std::move(sources);
  return s;
}

MetricPoll poll(double t, double a_bytes, double b_bytes, double a_requests = 0) {
  MetricPoll p;
  p.t = t;
  p.samples.push_back({"toxiproxy_proxy_received_bytes_total", {{"proxy", "primary"}, {"direction", "upstream"}}, a_bytes});
  p.samples.push_back({"toxiproxy_proxy_received_bytes_total", {{"proxy", "primary"}, {"direction", "downstream"}}, 999});
  p.samples.push_back({"toxiproxy_proxy_received_bytes_total", {{"proxy", "backup"}, {"direction", "upstream"}}, b_bytes});
  p.samples.push_back({"faultline_proxy_requests_total", {{"proxy", "primary"}}, a_requests});
  return p;
}

// faultline's own count of what toxic `toxic` on `proxy` did: `messages` acted on.
MetricPoll toxic_poll(double t, const std::string& proxy, const std::string& toxic, double messages, const char* state = "active") {
  MetricPoll p;
  p.t = t;
  p.samples.push_back({"faultline_toxic_messages_total", {{"proxy", proxy}, {"toxic", toxic}, {"state", state}}, messages});
  p.samples.push_back({"faultline_toxic_resets_total", {{"proxy", proxy}, {"toxic", toxic}, {"state", state}}, 0});
  return p;
}

// Application traffic per proxy as faultline counts it: decoded requests, and the requests
// the drill's health-check counter (toxic drill-count-failover-0) matched.
MetricPoll traffic_poll(double t, double a_requests, double b_requests, double b_health = 0, double a_health = 0) {
  MetricPoll p;
  p.t = t;
  p.samples.push_back({"faultline_proxy_requests_total", {{"proxy", "primary"}}, a_requests + a_health});
  p.samples.push_back({"faultline_proxy_requests_total", {{"proxy", "backup"}}, b_requests + b_health});
  p.samples.push_back({"faultline_toxic_messages_total", {{"proxy", "primary"}, {"toxic", "drill-count-failover-0"}, {"state", "active"}}, a_health});
  p.samples.push_back({"faultline_toxic_messages_total", {{"proxy", "backup"}, {"toxic", "drill-count-failover-0"}, {"state", "active"}}, b_health});
  return p;
}

FaultRef toxic_fault(const std::string& url, const std::string& name) {
  FaultRef f;
  f.activity = name;
  f.provider = Provider::toxic_add;
  f.proxy = {url, "redis"};
  f.toxic = name;
  return f;
}

const VerdictResult& only(const std::vector<VerdictResult>& v) {
  REQUIRE(v.size() == 1);
  return v[0];
}

}  // namespace

TEST_CASE("success_rate: ratio over a load, a window, and too few samples") {
  RunRecord r;
  // Fails between 1 s and 3 s of a 5 s load: 60 % succeed.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return t >= 0.995 && t < 2.995; });
  auto s = spec(VerdictType::success_rate);
  s.threshold = 0.5;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary == "60% of 500 calls of gets succeeded (threshold 50%)");
  s.threshold = 0.99;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  REQUIRE(v.failures.size() == 1);
  // Where the failures sit, and what they said.
  CHECK(v.failures[0] == "success rate 60% is below 99%: 200 of 500 steps failed, from 1 s to 2.99 s into the run — e.g. reply \"-LOADING\"");
  ActivityRecord storm;
  storm.name = "storm";
  storm.provider = Provider::toxic_add;
  storm.start = 0.99;
  r.method = {storm};
  CHECK(only(evaluate_verdicts({s}, r)).failures[0].rfind("success rate 60% is below 99%: 200 of 500 steps failed, 0.01-2 s after storm started", 0) ==
        0);
  r.method.clear();
  // Only after the heal: everything succeeded.
  r.events["heal.end"] = 2.995;
  s.from = "heal.end";
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  s.from = "never.end";
  CHECK(only(evaluate_verdicts({s}, r)).failures.front() == "never never happened (the method stopped before it?)");
  RunRecord empty;
  s.from.clear();
  CHECK(only(evaluate_verdicts({s}, empty)).failures.front() == "only 0 samples, at least 1 needed");
}

TEST_CASE("success_rate over probe runs in every phase") {
  RunRecord r;
  HypothesisRun before, after;
  before.phase = Phase::before;
  after.phase = Phase::after;
  ActivityRecord p;
  p.name = "ping";
  p.provider = Provider::resp;
  p.probe = true;
  p.ok = true;
  before.probes.push_back(p);
  p.ok = false;
  p.start = 5;
  after.probes.push_back(p);
  r.hypothesis = {before, after};
  auto s = spec(VerdictType::success_rate, {"ping"});
  s.threshold = 0.5;
  const auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.rfind("50% of 2 calls of ping", 0) == 0);
}

TEST_CASE("error_recovery: the fault's effect is faultline's count, and every step counts") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return t >= 0.495 && t < 2.495; });
  r.events["heal.end"] = 2.495;
  // faultline answered 200 GETs with the fault, and the toxic was then removed.
  r.metrics[url] = {toxic_poll(0, "redis", "heal", 0), toxic_poll(5, "redis", "heal", 200, "removed")};
  auto s = spec(VerdictType::error_recovery);
  s.after = "heal.end";
  s.faults = {toxic_fault(url, "heal")};
  // A client that lost 200 of 500 steps during the fault did not ride it out.
  auto v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  REQUIRE(v.failures.size() == 1);
  CHECK(v.failures[0].rfind("200 of 500 steps failed", 0) == 0);
  CHECK(v.failures[0].find("60% of steps succeeded, need 100%") != std::string::npos);
  // Asked for only "comes back afterwards", it passes.
  s.success_rate = 0.5;
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.rfind("60% of 500 steps ok; faultline injected 200 messages acted on; first success 0.006 s after heal (bound 1 s), "
                        "then 100% of 250 ok; longest recovery 2.001 s", 0) == 0);

  // The trap: a client that retries and loses nothing passes — the fault bit at faultline.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double) { return false; });
  s.success_rate = 1;
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.find("100% of 500 steps ok; faultline injected 200 messages acted on") == 0);

  // A faultline.reset later in the run clears the counters: what a poll saw still counts.
  r.metrics[url] = {toxic_poll(0, "redis", "heal", 0), toxic_poll(2.6, "redis", "heal", 200, "removed"), toxic_poll(5, "redis", "heal", 0)};
  CHECK(only(evaluate_verdicts({s}, r)).passed);

  // A fault that never acted (the traffic did not match it) proves nothing.
  r.metrics[url] = {toxic_poll(0, "redis", "heal", 0), toxic_poll(5, "redis", "heal", 0)};
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  REQUIRE(v.failures.size() == 1);
  CHECK(v.failures[0].rfind("the fault never acted: faultline's counters for heal show nothing injected", 0) == 0);
  s.require_failure = false;
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  s.require_failure = true;
  // No counters at all: the verdict cannot tell, and says why.
  r.metrics.clear();
  r.metric_errors[url] = "connection refused";
  CHECK(only(evaluate_verdicts({s}, r)).failures.front() == "cannot tell whether heal acted: no /metrics samples from " + url + ": connection refused");
}

TEST_CASE("error_recovery: time to first success, later steps, longest recovery") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["heal.end"] = 2.495;
  r.metrics[url] = {toxic_poll(0, "redis", "heal", 0), toxic_poll(5, "redis", "heal", 10)};
  auto s = spec(VerdictType::error_recovery);
  s.after = "heal.end";
  s.faults = {toxic_fault(url, "heal")};
  s.success_rate = 0;
  // The workflow stays broken for 1.5 s after the removal: too slow.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return t >= 0.495 && t < 3.995; });
  auto v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("first success came 1.506 s after heal, more than 1 s", 0) == 0);

  // Recovers, then fails again: later steps do not all succeed; the longest recovery is bounded.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return (t >= 0.495 && t < 2.495) || (t >= 3.995 && t < 4.195); });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("after recovering, only 92% of the later steps succeeded", 0) == 0);
  s.later_success_rate = 0.9;
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  s.max_recovery = 1.5;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front() == "the longest recovery took 2.001 s, more than 1.5 s");

  // Never recovers.
  s.max_recovery.reset();
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double) { return true; });
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.failures.back() == "none of the 250 steps after heal succeeded");
}

TEST_CASE("error_recovery: a proxy.disable fault acted when steps were made while the proxy was down") {
  RunRecord r;
  r.events["kill.end"] = 1.0;
  r.events["revive.end"] = 2.0;
  FaultRef f;
  f.activity = "kill";
  f.provider = Provider::proxy_disable;
  f.enables = {"revive"};
  auto s = spec(VerdictType::error_recovery);
  s.after = "revive.end";
  s.faults = {f};
  r.loads["gets"] = load("gets", 0, 3, 0.1, [](double) { return false; });
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.find("faultline injected 10 steps while the proxy was down") != std::string::npos);
  // No step while it was down: nothing was tested.
  r.loads["gets"] = load("gets", 2.5, 3, 0.1, [](double) { return false; });
  r.events["revive.end"] = 2.0;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("the fault never acted", 0) == 0);
}

TEST_CASE("error_recovery: retries are the requests faultline saw beyond the steps made") {
  RunRecord r;
  r.loads["gets"] = load("gets", 1, 2, 0.1, [](double t) { return t < 1.45; });  // 10 calls
  r.events["heal.end"] = 1.45;
  const std::string url = "http://127.0.0.1:8474";
  r.metrics[url] = {poll(0.5, 0, 0, 100), poll(2.5, 0, 0, 114)};
  auto s = spec(VerdictType::error_recovery);
  s.after = "heal.end";
  s.success_rate = 0;
  VerdictSpec::Retries budget;
  budget.proxy = {url, "primary"};
  budget.max = 5;
  s.retries = budget;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.find("; 4 retries seen by faultline") != std::string::npos);
  s.retries->max = 3;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.back() == "4 retries (14 requests seen by primary for 10 steps), more than the budget of 3");
  // Proof that the client retried at all.
  s.retries->max.reset();
  s.retries->min = 5;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.back() == "only 4 retries (14 requests seen by primary for 10 steps), at least 5 needed as proof that the client retried");
  s.retries->min = 4;
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  r.metrics.clear();
  r.metric_errors[url] = "connection refused";
  CHECK(only(evaluate_verdicts({s}, r)).failures.back() == "no /metrics samples from " + url + ": connection refused");
}

TEST_CASE("latency: average and percentiles against bounds, all calls or only successful ones") {
  RunRecord r;
  LoadRecord l;
  for (int i = 1; i <= 100; ++i) l.calls.push_back({i * 0.01, static_cast<double>(i), i <= 90, 0, ""});
  r.loads["gets"] = l;
  auto s = spec(VerdictType::latency);
  s.avg = 60;
  s.p99 = 100;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary == "100 calls of gets: avg 50.5 ms, p50 50, p95 95, p99 99, max 100 (from each call's intended start)");
  s.p95 = 90;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures == std::vector<std::string>{"p95 95 ms exceeds 90 ms"});
  s.ok_only = true;  // the slow tail failed: only successful calls are judged
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  // Calls never sent (every worker busy) count with their wait, and are said.
  s.ok_only = false;
  s.p95.reset();
  s.max = 500;
  LoadCall late;
  late.start = 1.5;
  late.latency_ms = 900;
  late.sent = false;
  r.loads["gets"].calls.push_back(late);
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.summary.find("; 1 calls never sent (every worker busy)") != std::string::npos);
}

TEST_CASE("failover: application requests move to the backup within T, the primary's share, health") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["kill.end"] = 1.0;
  r.proxy_protocols[RunRecord::proxy_key(url, "primary")] = "http";
  r.proxy_protocols[RunRecord::proxy_key(url, "backup")] = "http";
  // Primary carries requests until 1.0; the backup picks them up from 1.4 on. Both see health checks.
  r.metrics[url] = {traffic_poll(0.0, 0, 0, 0, 0), traffic_poll(0.5, 50, 0, 5, 5), traffic_poll(1.0, 100, 0, 10, 10),
                    traffic_poll(1.2, 100, 0, 12, 12), traffic_poll(1.4, 100, 8, 14, 14), traffic_poll(2.0, 100, 60, 20, 20)};
  LoadRecord traffic = load("traffic", 0, 2, 0.01, [](double t) { return t >= 0.995 && t < 1.295; });
  r.loads["traffic"] = traffic;
  VerdictSpec s = spec(VerdictType::failover, {});
  s.name = "failover";
  s.primary = {url, "primary"};
  s.backup = {url, "backup"};
  s.after = "kill.end";
  s.within = 3;
  s.traffic_exclude = {R"({"path":"/health"})"};
  s.health = VerdictSpec::Health{{"traffic"}, 0.75};
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary == "application requests reached backup 0.4 s after kill (bound 3 s), 10 health checks left out; "
                     "healthy 85% of 200 calls (min 75%)");
  s.within = 0.3;
  CHECK(only(evaluate_verdicts({s}, r)).failures ==
        std::vector<std::string>{"application requests reached backup after 0.4 s, more than 0.3 s"});
  s.within = 3;

  // The primary keeps carrying requests after the backup took some: not a failover.
  r.metrics[url].push_back(traffic_poll(2.5, 150, 70, 25, 25));
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front() == "primary still carried 44.6% of the application requests after the failover (50 of 112; at most 5% allowed)");
  // Unless the window ends first (failback from 2.0 on).
  r.events["revive.end"] = 2.0;
  s.until = "revive.end";
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  s.until.clear();
  r.metrics[url].pop_back();

  // The trap: the backup only answers health checks (the primary is never taken out of the
  // pool, so requests keep going to it and fail). Health checks are not traffic.
  r.metrics[url] = {traffic_poll(0.0, 0, 0), traffic_poll(1.0, 100, 0, 10, 10), traffic_poll(2.0, 100, 0, 20, 20),
                    traffic_poll(4.0, 100, 0, 40, 40)};
  r.loads["traffic"] = load("traffic", 0, 4, 0.01, [](double t) { return t >= 0.995; });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  REQUIRE(v.failures.size() == 2);
  CHECK(v.failures[0] == "no application requests reached backup after kill (0, need 1); its 30 other requests were health checks, "
                         "which do not count");
  CHECK(v.failures[1] == "healthy 25% of calls, below 75%");

  // A tcp proxy's traffic is the connections that carried data.
  r.proxy_protocols[RunRecord::proxy_key(url, "backup")] = "tcp";
  r.proxy_protocols[RunRecord::proxy_key(url, "primary")] = "tcp";
  s.traffic_exclude.clear();
  auto conns = [](double t, double a, double b) {
    MetricPoll p;
    p.t = t;
    p.samples.push_back({"faultline_proxy_data_connections_total", {{"proxy", "primary"}}, a});
    p.samples.push_back({"faultline_proxy_data_connections_total", {{"proxy", "backup"}}, b});
    return p;
  };
  r.metrics[url] = {conns(0, 0, 0), conns(1.0, 10, 0), conns(1.5, 10, 3)};
  r.loads["traffic"] = traffic;
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.rfind("connections carrying data reached backup 0.5 s after kill", 0) == 0);
}

TEST_CASE("failover: a custom metric counts what it names") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["kill.end"] = 1.0;
  r.metrics[url] = {poll(0.0, 0, 0), poll(1.0, 1000, 0), poll(1.4, 1000, 80)};
  VerdictSpec s = spec(VerdictType::failover, {});
  s.primary = {url, "primary"};
  s.backup = {url, "backup"};
  s.after = "kill.end";
  s.custom_metric = true;
  s.metric = "toxiproxy_proxy_received_bytes_total";
  s.labels = {{"direction", "upstream"}};
  s.min_requests = 100;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures[0] == "no toxiproxy_proxy_received_bytes_total reached backup after kill (80, need 100)");
  s.min_requests = 50;
  CHECK(only(evaluate_verdicts({s}, r)).passed);
}

TEST_CASE("failover: no acknowledged write lost") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["kill.end"] = 1.0;
  r.metrics[url] = {traffic_poll(0.0, 0, 0), traffic_poll(1.0, 10, 0), traffic_poll(1.5, 10, 5)};
  r.proxy_protocols[RunRecord::proxy_key(url, "primary")] = "resp";
  r.proxy_protocols[RunRecord::proxy_key(url, "backup")] = "resp";
  WriteCheck w;
  w.ran = true;
  w.acknowledged = 100;
  w.verified = 100;
  LoadRecord writes;
  writes.writes = w;
  r.loads["writes"] = writes;
  VerdictSpec s = spec(VerdictType::failover, {});
  s.primary = {url, "primary"};
  s.backup = {url, "backup"};
  s.after = "kill.end";
  s.writes = "writes";
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  r.loads["writes"].writes->lost = 2;
  r.loads["writes"].writes->examples = {"drill:7 = null", "drill:8 = null"};
  const auto v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures == std::vector<std::string>{"2 acknowledged writes lost (drill:7 = null, drill:8 = null)"});
}

TEST_CASE("no_critical_errors counts failed critical probes and 5xx answers") {
  RunRecord r;
  ActivityRecord ok, bad;
  ok.name = bad.name = "health";
  ok.provider = bad.provider = Provider::http;
  ok.probe = bad.probe = true;
  ok.critical = bad.critical = true;
  ok.ok = true;
  ok.http_status = 200;
  bad.http_status = 503;
  bad.why = "status 503, expected 200";
  bad.phase = Phase::method;
  r.method = {ok, ok};
  auto s = spec(VerdictType::no_critical_errors, {});
  CHECK(only(evaluate_verdicts({s}, r)).passed);
  r.method.push_back(bad);
  auto v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front() == "1 critical errors (at most 0): 1 critical probe failures (health (method): status 503, expected 200)");
  r.method = {ok};
  LoadRecord calls;
  calls.calls = {{0, 1, true, 200, ""}, {0.1, 1, false, 502, "status 502"}, {0.2, 1, false, 0, "refused"}};
  r.loads["api"] = calls;
  s.no_5xx = {"api"};
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.summary == "0 critical probe failures, 1 5xx answers (at most 0 allowed)");
  CHECK(v.failures.front() == "1 critical errors (at most 0): 1 5xx answers in api (first at 0.1 s: status 502)");
  s.max_errors = 1;
  CHECK(only(evaluate_verdicts({s}, r)).passed);
}

TEST_CASE("aggregate passes when the verdicts it covers pass (or enough of them)") {
  RunRecord r;
  r.loads["gets"] = load("gets", 0, 1, 0.1, [](double t) { return t > 0.75; });  // 80 % ok (0.8 and 0.9 fail)
  auto a = spec(VerdictType::success_rate);
  a.name = "loose";
  a.threshold = 0.5;
  auto b = a;
  b.name = "strict";
  b.threshold = 0.9;
  VerdictSpec all;
  all.type = VerdictType::aggregate;
  all.name = "V.8";
  auto v = evaluate_verdicts({a, b, all}, r);
  CHECK(v[0].passed);
  CHECK_FALSE(v[1].passed);
  CHECK_FALSE(v[2].passed);
  CHECK(v[2].failures == std::vector<std::string>{"failed: strict"});
  all.of = {"loose"};
  CHECK(evaluate_verdicts({a, b, all}, r)[2].passed);
  all.of.clear();
  all.min_ratio = 0.5;  // "more than half of the checks pass" (V.6's shape)
  CHECK(evaluate_verdicts({a, b, all}, r)[2].passed);
}

TEST_CASE("exit codes: 0 pass, 1 failed / deviated / a verdict failed, 2 could not run") {
  VerdictResult pass, fail;
  pass.passed = true;
  Outcome o;
  CHECK(exit_code(o, {pass}) == 0);
  CHECK(exit_code(o, {pass, fail}) == 1);
  o.deviated = true;
  CHECK(exit_code(o, {pass}) == 1);
  o.deviated = false;
  o.status = Status::failed;
  CHECK(exit_code(o, {}) == 1);
  o.status = Status::aborted;
  CHECK(exit_code(o, {pass}) == 2);
  o.status = Status::interrupted;
  CHECK(exit_code(o, {}) == 2);
  Outcome pre;
  pre.preflight_failed = true;
  CHECK(exit_code(pre, {}) == 2);
  CHECK(std::string(result_word(1)) == "fail");
}
