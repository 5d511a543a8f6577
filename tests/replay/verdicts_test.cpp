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
  CHECK(v.failures == std::vector<std::string>{"success rate 60% is below 99%"});
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

TEST_CASE("error_recovery: time to first success after the fault is removed, later steps, retries") {
  RunRecord r;
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return t >= 0.495 && t < 2.495; });
  r.events["heal.end"] = 2.495;
  auto s = spec(VerdictType::error_recovery);
  s.after = "heal.end";
  s.within = 1;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.rfind("first success 0.006 s after heal (bound 1 s), then 100% of 250 calls ok", 0) == 0);

  // The workflow stays broken for 1.5 s after the removal: too slow.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return t >= 0.495 && t < 3.995; });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("first success came 1.506 s after heal, more than 1 s", 0) == 0);

  // Recovers, then fails again: later steps do not all succeed.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double t) { return (t >= 0.495 && t < 2.495) || (t >= 3.995 && t < 4.195); });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("after recovering, only 92% of the later calls succeeded", 0) == 0);
  s.later_success_rate = 0.9;
  CHECK(only(evaluate_verdicts({s}, r)).passed);

  // A fault that never bit proves nothing.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double) { return false; });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().find("the fault never bit") != std::string::npos);
  s.require_failure = false;
  CHECK(only(evaluate_verdicts({s}, r)).passed);

  // Never recovers.
  r.loads["gets"] = load("gets", 0, 5, 0.01, [](double) { return true; });
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.failures.back() == "none of the 250 calls after heal succeeded");
}

TEST_CASE("error_recovery: retries are the requests faultline saw beyond the calls made") {
  RunRecord r;
  r.loads["gets"] = load("gets", 1, 2, 0.1, [](double t) { return t < 1.45; });  // 10 calls
  r.events["heal.end"] = 1.45;
  const std::string url = "http://127.0.0.1:8474";
  r.metrics[url] = {poll(0.5, 0, 0, 100), poll(2.5, 0, 0, 114)};
  auto s = spec(VerdictType::error_recovery);
  s.after = "heal.end";
  VerdictSpec::Retries budget;
  budget.proxy = {url, "primary"};
  budget.max = 5;
  s.retries = budget;
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary.find("; 4 retries (budget 5)") != std::string::npos);
  s.retries->max = 3;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.back() == "4 retries (14 requests seen by primary for 10 calls), more than the budget of 3");
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
  CHECK(v.summary == "100 calls of gets: avg 50.5 ms, p50 50, p95 95, p99 99, max 100");
  s.p95 = 90;
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures == std::vector<std::string>{"p95 95 ms exceeds 90 ms"});
  s.ok_only = true;  // the slow tail failed: only successful calls are judged
  CHECK(only(evaluate_verdicts({s}, r)).passed);
}

TEST_CASE("failover: traffic moves to the backup within T, the primary goes quiet, health and writes") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["kill.end"] = 1.0;
  // Primary carries traffic until 1.0; the backup picks it up from 1.4 on.
  r.metrics[url] = {poll(0.0, 0, 0), poll(0.5, 500, 0), poll(1.0, 1000, 0), poll(1.2, 1000, 0), poll(1.4, 1000, 80),
                    poll(2.0, 1000, 600)};
  LoadRecord traffic = load("traffic", 0, 2, 0.01, [](double t) { return t >= 0.995 && t < 1.295; });
  r.loads["traffic"] = traffic;
  VerdictSpec s = spec(VerdictType::failover, {});
  s.primary = {url, "primary"};
  s.backup = {url, "backup"};
  s.after = "kill.end";
  s.within = 3;
  s.health = VerdictSpec::Health{{"traffic"}, 0.75};
  auto v = only(evaluate_verdicts({s}, r));
  CHECK(v.passed);
  CHECK(v.summary == "traffic reached backup 0.4 s after kill (bound 3 s); healthy 85% of 200 calls (min 75%)");
  s.within = 0.3;
  CHECK(only(evaluate_verdicts({s}, r)).failures == std::vector<std::string>{"traffic reached backup after 0.4 s, more than 0.3 s"});
  s.within = 3;

  // The primary keeps carrying traffic after the backup took some: not a failover.
  r.metrics[url].push_back(poll(2.5, 1500, 700));
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.front().rfind("primary still carried traffic after the failover", 0) == 0);
  r.metrics[url].pop_back();

  // Both down: the backup never sees traffic.
  r.metrics[url] = {poll(0.0, 0, 0), poll(1.0, 1000, 0), poll(2.0, 1000, 0), poll(4.0, 1000, 0)};
  r.loads["traffic"] = load("traffic", 0, 4, 0.01, [](double t) { return t >= 0.995; });
  v = only(evaluate_verdicts({s}, r));
  CHECK_FALSE(v.passed);
  CHECK(v.failures.size() == 2);
  CHECK(v.failures[0] == "no traffic reached backup after kill (toxiproxy_proxy_received_bytes_total{proxy=\"backup\"} grew by 0, need 1)");
  CHECK(v.failures[1] == "healthy 25% of calls, below 75%");
}

TEST_CASE("failover: no acknowledged write lost") {
  const std::string url = "http://127.0.0.1:8474";
  RunRecord r;
  r.events["kill.end"] = 1.0;
  r.metrics[url] = {poll(0.0, 0, 0), poll(1.0, 10, 0), poll(1.5, 10, 5)};
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
  CHECK(v.failures.front() == "1 critical errors: health (method): status 503, expected 200");
  r.method = {ok};
  LoadRecord calls;
  calls.calls = {{0, 1, true, 200, ""}, {0.1, 1, false, 502, "status 502"}, {0.2, 1, false, 0, "refused"}};
  r.loads["api"] = calls;
  s.no_5xx = {"api"};
  v = only(evaluate_verdicts({s}, r));
  CHECK(v.summary == "0 critical probe failures, 1 5xx answers (at most 0 allowed)");
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
