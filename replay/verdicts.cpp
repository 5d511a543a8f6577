#include "replay/verdicts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "replay/stats.hpp"

namespace faultline::drill {

const char* to_string(Status s) {
  switch (s) {
    case Status::completed: return "completed";
    case Status::failed: return "failed";
    case Status::aborted: return "aborted";
    case Status::interrupted: return "interrupted";
  }
  return "?";
}

int exit_code(const Outcome& outcome, const std::vector<VerdictResult>& verdicts) {
  if (outcome.preflight_failed || outcome.status == Status::aborted || outcome.status == Status::interrupted) return 2;
  if (outcome.status == Status::failed || outcome.deviated) return 1;
  for (const auto& v : verdicts)
    if (!v.passed) return 1;
  return 0;
}

const char* result_word(int code) {
  switch (code) {
    case 0: return "pass";
    case 1: return "fail";
    default: return "error";
  }
}

namespace {

// One call or probe run, whatever produced it.
struct Sample {
  double start = 0, end = 0;
  bool ok = false;
  double latency_ms = 0;
  int status = 0;
  bool sent = true;    // a load call whose time came but that was never sent
  std::string detail;  // why it failed
};

std::string fmt(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::string pct(double ratio) { return fmt(ratio * 100, 1) + "%"; }

// "heal.end" reads as "heal" (an activity's event is its end unless said otherwise).
std::string label(const std::string& event) {
  constexpr std::string_view end = ".end";
  if (event.size() > end.size() && event.compare(event.size() - end.size(), end.size(), end) == 0 &&
      event.rfind("method", 0) != 0)
    return event.substr(0, event.size() - end.size());
  return event;
}

std::vector<Sample> series(const RunRecord& record, const std::vector<std::string>& names) {
  std::vector<Sample> out;
  for (const auto& name : names) {
    if (auto it = record.loads.find(name); it != record.loads.end()) {
      for (const auto& c : it->second.calls)
        out.push_back({c.start, c.start + c.latency_ms / 1000.0, c.ok, c.latency_ms, c.status, c.sent, c.detail});
      continue;
    }
    for (const auto* p : record.probe_runs(name))
      out.push_back({p->start, p->end, p->ok, p->latency_ms, p->http_status, true, p->ok ? "" : p->why});
  }
  std::stable_sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) { return a.start < b.start; });
  return out;
}

struct Window {
  double from = -HUGE_VAL, until = HUGE_VAL;
};

// Resolves from/until; a named event that never happened fails the verdict.
bool window(const VerdictSpec& spec, const RunRecord& record, Window& w, VerdictResult& r) {
  for (const auto* key : {&spec.from, &spec.until}) {
    if (key->empty()) continue;
    auto t = record.event(*key);
    if (!t) {
      r.failures.push_back(label(*key) + " never happened (the method stopped before it?)");
      return false;
    }
    (key == &spec.from ? w.from : w.until) = *t;
  }
  return true;
}

std::vector<Sample> in_window(const std::vector<Sample>& all, const Window& w) {
  std::vector<Sample> out;
  for (const auto& s : all)
    if (s.start >= w.from && s.start < w.until) out.push_back(s);
  return out;
}

std::string source_text(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

double success_ratio(const std::vector<Sample>& samples) {
  if (samples.empty()) return 0;
  const auto ok = std::count_if(samples.begin(), samples.end(), [](const Sample& s) { return s.ok; });
  return static_cast<double>(ok) / static_cast<double>(samples.size());
}

// Where in time a series' failures sit, for a reason a user can act on: "18 of 20 failed
// steps started 0-1.9 s after overloaded". The reference is the latest activity (not a load)
// that started at or before the first failure.
std::string locate_failures(const std::vector<Sample>& samples, const RunRecord& record) {
  std::vector<const Sample*> failed;
  for (const auto& s : samples)
    if (!s.ok) failed.push_back(&s);
  if (failed.empty()) return "";
  const double first = failed.front()->start, last = failed.back()->start;
  const ActivityRecord* ref = nullptr;
  for (const auto* list : {&record.method, &record.rollbacks})
    for (const auto& a : *list) {
      if (a.skipped || a.provider == Provider::load || a.provider == Provider::wait) continue;
      if (a.start <= first + 1e-9 && (!ref || a.start >= ref->start)) ref = &a;
    }
  const std::string n = std::to_string(failed.size()) + " of " + std::to_string(samples.size()) + " steps";
  if (!ref) return n + " failed, from " + fmt(first, 2) + " s to " + fmt(last, 2) + " s into the run";
  const double window = last - ref->start;
  std::size_t within2 = 0;
  for (const auto* f : failed) within2 += f->start - ref->start <= 2.0;
  std::string out = n + " failed, " + fmt(first - ref->start, 2) + "-" + fmt(window, 2) + " s after " + ref->name + " started";
  if (within2 != failed.size()) out += " (" + std::to_string(within2) + " within 2 s of it)";
  return out;
}

// The first few distinct reasons the failed samples give (a failed call keeps the start of
// its answer: RateLimitError, Premature close...).
std::string failure_examples(const std::vector<Sample>& samples) {
  std::vector<std::string> seen;
  for (const auto& s : samples) {
    if (s.ok || s.detail.empty()) continue;
    if (std::find(seen.begin(), seen.end(), s.detail) == seen.end()) seen.push_back(s.detail);
    if (seen.size() == 2) break;
  }
  std::string out;
  for (const auto& d : seen) out += (out.empty() ? "" : "; ") + d;
  return out.empty() ? "" : " — e.g. " + out;
}

void success_rate(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  Window w;
  if (!window(spec, record, w, r)) return;
  const auto samples = in_window(series(record, spec.sources), w);
  const double ratio = success_ratio(samples);
  r.measured = {{"samples", static_cast<double>(samples.size())}, {"success_rate", ratio}, {"threshold", spec.threshold}};
  r.summary = pct(ratio) + " of " + std::to_string(samples.size()) + " calls of " + source_text(spec.sources) +
              " succeeded (threshold " + pct(spec.threshold) + ")";
  if (samples.size() < spec.min_samples)
    r.failures.push_back("only " + std::to_string(samples.size()) + " samples, at least " + std::to_string(spec.min_samples) + " needed");
  else if (ratio < spec.threshold)
    r.failures.push_back("success rate " + pct(ratio) + " is below " + pct(spec.threshold) + ": " + locate_failures(samples, record) +
                         failure_examples(samples));
}

// The value of `metric{labels, proxy}` in one poll of a faultline's /metrics.
std::optional<double> counter(const MetricPoll& poll, const std::string& metric, Labels labels, const std::string& proxy) {
  labels["proxy"] = proxy;
  return sum_matching(poll.samples, metric, labels);
}

// The polls of one faultline API; null with `why` when there are none.
const std::vector<MetricPoll>* metric_polls(const RunRecord& record, const std::string& url, std::string& why) {
  auto it = record.metrics.find(url);
  if (it == record.metrics.end() || it->second.empty()) {
    auto e = record.metric_errors.find(url);
    why = "no /metrics samples from " + url + (e != record.metric_errors.end() ? ": " + e->second : "");
    return nullptr;
  }
  return &it->second;
}

const std::vector<MetricPoll>* polls_of(const RunRecord& record, const std::string& url, VerdictResult& r) {
  std::string why;
  const auto* polls = metric_polls(record, url, why);
  if (!polls) r.failures.push_back(why);
  return polls;
}

// The protocol a proxy was read with at preflight ("tcp" when unknown).
std::string protocol_of(const RunRecord& record, const ProxyRef& ref) {
  auto it = record.proxy_protocols.find(RunRecord::proxy_key(ref.faultline, ref.proxy));
  return it == record.proxy_protocols.end() ? "tcp" : it->second;
}

// What faultline's own counters say a fault did during the run (first poll to last).
struct FaultEffect {
  double messages = 0, resets = 0, bytes_dropped = 0, bytes_delayed = 0;
  std::uint64_t steps_while_down = 0;  // proxy.disable
  double total() const { return messages + resets + bytes_dropped + bytes_delayed + static_cast<double>(steps_while_down); }
};


std::optional<std::string> fault_effect(const FaultRef& f, const RunRecord& record, const std::vector<Sample>& samples,
                                        FaultEffect& e) {
  if (f.provider == Provider::proxy_disable) {
    const auto down = record.event(f.activity + ".end");
    if (!down) return f.activity + " never ran";
    double up = HUGE_VAL;
    for (const auto& name : f.enables)
      if (auto t = record.event(name + ".end"); t && *t >= *down) up = std::min(up, *t);
    for (const auto& s : samples) e.steps_while_down += s.start >= *down && s.start < up;
    return std::nullopt;
  }
  std::string why;
  const auto* polls = metric_polls(record, f.proxy.faultline, why);
  if (!polls) return why;
  const Labels labels{{"proxy", f.proxy.proxy}, {"toxic", f.toxic}};
  double* out[4] = {&e.messages, &e.resets, &e.bytes_dropped, &e.bytes_delayed};
  for (int k = 0; k < 4; ++k) {
    // The highest value any poll saw, over the first: a faultline.reset later in the run
    // clears the counters, and must not make a fault that acted look as if it never did.
    const auto a = sum_matching(polls->front().samples, kToxicMetrics[k], labels).value_or(0);
    double b = a;
    for (const auto& poll : *polls) b = std::max(b, sum_matching(poll.samples, kToxicMetrics[k], labels).value_or(0));
    *out[k] += std::max(0.0, b - a);
  }
  return std::nullopt;
}

std::string effect_text(const FaultEffect& e) {
  std::vector<std::string> parts;
  if (e.messages > 0) parts.push_back(fmt(e.messages, 0) + " messages acted on");
  if (e.resets > 0) parts.push_back(fmt(e.resets, 0) + " connections reset");
  if (e.bytes_dropped > 0) parts.push_back(fmt(e.bytes_dropped, 0) + " bytes dropped");
  if (e.bytes_delayed > 0) parts.push_back(fmt(e.bytes_delayed, 0) + " bytes delayed");
  if (e.steps_while_down > 0) parts.push_back(std::to_string(e.steps_while_down) + " steps while the proxy was down");
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "nothing" : out;
}

void error_recovery(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  Window w;
  if (!window(spec, record, w, r)) return;
  const auto samples = in_window(series(record, spec.sources), w);
  const auto failures = std::count_if(samples.begin(), samples.end(), [](const Sample& s) { return !s.ok; });
  const double ratio = success_ratio(samples);
  r.measured.push_back({"samples", static_cast<double>(samples.size())});
  r.measured.push_back({"failures", static_cast<double>(failures)});
  r.measured.push_back({"success_rate", ratio});
  const auto t_ref = record.event(spec.after);
  if (!t_ref) {
    r.failures.push_back(label(spec.after) + " never happened (the method stopped before it?)");
    r.summary = "no recovery measured";
    return;
  }
  if (samples.empty()) {
    r.failures.push_back("no step of " + source_text(spec.sources) + " to judge recovery by");
    r.summary = "no steps";
    return;
  }

  // Did the fault act? faultline counted what it injected; the client's view is not asked.
  FaultEffect effect;
  std::string fault_names;
  for (const auto& f : spec.faults) {
    fault_names += (fault_names.empty() ? "" : ", ") + f.activity;
    if (auto e = fault_effect(f, record, samples, effect)) r.failures.push_back("cannot tell whether " + f.activity + " acted: " + *e);
  }
  if (!spec.faults.empty()) {
    r.measured.push_back({"fault_messages", effect.messages});
    r.measured.push_back({"fault_resets", effect.resets});
    r.measured.push_back({"fault_bytes_dropped", effect.bytes_dropped});
    r.measured.push_back({"fault_bytes_delayed", effect.bytes_delayed});
    if (effect.steps_while_down > 0) r.measured.push_back({"fault_steps_while_down", static_cast<double>(effect.steps_while_down)});
  }
  if (spec.require_failure && !spec.faults.empty() && effect.total() == 0 && r.failures.empty())
    r.failures.push_back("the fault never acted: faultline's counters for " + fault_names +
                         " show nothing injected, so recovery is unproven (did the traffic match the fault?)");

  // Every step counts, those made during the fault included.
  if (ratio < spec.success_rate)
    r.failures.push_back(locate_failures(samples, record) + ": " + pct(ratio) + " of steps succeeded, need " + pct(spec.success_rate) +
                         failure_examples(samples));

  // The longest recovery: from a step that failed to the end of the next one that succeeded.
  double longest = 0;
  bool unrecovered = false;
  for (std::size_t i = 0; i < samples.size();) {
    if (samples[i].ok) {
      ++i;
      continue;
    }
    const double began = samples[i].start;
    std::size_t j = i;
    while (j < samples.size() && !samples[j].ok) ++j;
    if (j == samples.size()) {
      unrecovered = true;
      longest = std::max(longest, samples.back().end - began);
    } else {
      longest = std::max(longest, samples[j].end - began);
    }
    i = j;
  }
  r.measured.push_back({"longest_recovery_s", longest});
  if (spec.max_recovery && longest > *spec.max_recovery)
    r.failures.push_back("the longest recovery took " + fmt(longest, 3) + " s" + (unrecovered ? " (and had not ended)" : "") +
                         ", more than " + fmt(*spec.max_recovery, 3) + " s");

  const Sample* first_ok = nullptr;
  for (const auto& s : samples) {
    if (s.start >= *t_ref && s.ok) {
      first_ok = &s;
      break;
    }
  }
  std::string summary = pct(ratio) + " of " + std::to_string(samples.size()) + " steps ok";
  if (!spec.faults.empty()) summary += "; faultline injected " + effect_text(effect);
  if (!first_ok) {
    const auto after = std::count_if(samples.begin(), samples.end(), [&](const Sample& s) { return s.start >= *t_ref; });
    r.failures.push_back(after == 0 ? "no step of " + source_text(spec.sources) + " after " + label(spec.after)
                                    : "none of the " + std::to_string(after) + " steps after " + label(spec.after) + " succeeded");
    r.summary = summary + "; did not recover after " + label(spec.after);
  } else {
    const double took = std::max(0.0, first_ok->end - *t_ref);
    std::vector<Sample> later;
    for (const auto& s : samples)
      if (s.start >= first_ok->start) later.push_back(s);
    const double later_ratio = success_ratio(later);
    r.measured.push_back({"time_to_first_success_s", took});
    r.measured.push_back({"later_success_rate", later_ratio});
    r.measured.push_back({"later_samples", static_cast<double>(later.size())});
    r.summary = summary + "; first success " + fmt(took, 3) + " s after " + label(spec.after) + " (bound " + fmt(spec.within, 3) +
                " s), then " + pct(later_ratio) + " of " + std::to_string(later.size()) + " ok; longest recovery " +
                fmt(longest, 3) + " s";
    if (took > spec.within)
      r.failures.push_back("first success came " + fmt(took, 3) + " s after " + label(spec.after) + ", more than " + fmt(spec.within, 3) + " s");
    if (later_ratio < spec.later_success_rate)
      r.failures.push_back("after recovering, only " + pct(later_ratio) + " of the later steps succeeded (need " +
                           pct(spec.later_success_rate) + ")" + failure_examples(later));
  }
  if (spec.retries) {
    // Retries are what faultline saw beyond the steps the drill made: a client library that
    // retries sends more requests than it was asked to.
    const auto& rt = *spec.retries;
    const auto* polls = polls_of(record, rt.proxy.faultline, r);
    if (!polls) return;
    const auto first = counter(polls->front(), rt.metric, {}, rt.proxy.proxy);
    const auto last = counter(polls->back(), rt.metric, {}, rt.proxy.proxy);
    if (!first || !last) {
      r.failures.push_back("no series " + rt.metric + "{proxy=\"" + rt.proxy.proxy + "\"} on " + rt.proxy.faultline);
      return;
    }
    const double seen = *last - *first;
    const double t0 = polls->front().t, t1 = polls->back().t;
    // Every step the drill made while faultline counted, not only those in the verdict's
    // window: the request counter spans the whole method.
    const auto all_steps = series(record, spec.sources);
    const auto calls = std::count_if(all_steps.begin(), all_steps.end(), [&](const Sample& s) { return s.sent && s.start >= t0 && s.start <= t1; });
    const double retries = std::max(0.0, seen - static_cast<double>(calls));
    r.measured.push_back({"requests_seen", seen});
    r.measured.push_back({"calls_made", static_cast<double>(calls)});
    r.measured.push_back({"retries", retries});
    r.summary += "; " + fmt(retries, 0) + " retries seen by faultline";
    if (rt.max && retries > *rt.max)
      r.failures.push_back(fmt(retries, 0) + " retries (" + fmt(seen, 0) + " requests seen by " + rt.proxy.proxy + " for " +
                           std::to_string(calls) + " steps), more than the budget of " + fmt(*rt.max, 0));
    if (rt.min && retries < *rt.min)
      r.failures.push_back("only " + fmt(retries, 0) + " retries (" + fmt(seen, 0) + " requests seen by " + rt.proxy.proxy + " for " +
                           std::to_string(calls) + " steps), at least " + fmt(*rt.min, 0) + " needed as proof that the client retried");
  }
}

void latency(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  Window w;
  if (!window(spec, record, w, r)) return;
  std::vector<double> ms;
  std::size_t not_sent = 0;
  for (const auto& s : in_window(series(record, spec.sources), w)) {
    not_sent += !s.sent;
    if (!spec.ok_only || s.ok) ms.push_back(s.latency_ms);
  }
  const LatencyStats st = latency_stats(ms);
  r.measured = {{"samples", static_cast<double>(st.count)}, {"avg_ms", st.avg}, {"p50_ms", st.p50},
                {"p95_ms", st.p95},                          {"p99_ms", st.p99}, {"max_ms", st.max}};
  r.summary = std::to_string(st.count) + (spec.ok_only ? " ok" : "") + " calls of " + source_text(spec.sources) +
              ": avg " + fmt(st.avg) + " ms, p50 " + fmt(st.p50) + ", p95 " + fmt(st.p95) + ", p99 " + fmt(st.p99) +
              ", max " + fmt(st.max) + " (from each call's intended start)";
  if (not_sent > 0) {
    r.measured.push_back({"not_sent", static_cast<double>(not_sent)});
    r.summary += "; " + std::to_string(not_sent) + " calls never sent (every worker busy), counted with their wait until the load ended";
  }
  if (st.count < spec.min_samples) {
    r.failures.push_back("only " + std::to_string(st.count) + " samples, at least " + std::to_string(spec.min_samples) + " needed");
    return;
  }
  auto bound = [&](const char* what, const std::optional<double>& limit, double value) {
    if (limit && value > *limit)
      r.failures.push_back(std::string(what) + " " + fmt(value) + " ms exceeds " + fmt(*limit) + " ms");
  };
  bound("avg", spec.avg, st.avg);
  bound("p50", spec.p50, st.p50);
  bound("p95", spec.p95, st.p95);
  bound("p99", spec.p99, st.p99);
  bound("max", spec.max, st.max);
}

// Application traffic on one proxy as of one poll: requests minus health checks on a message
// proxy, connections that carried data on a tcp one, or the custom metric.
struct Traffic {
  std::optional<double> app;
  double excluded = 0;  // health-check requests left out
};

Traffic traffic_at(const VerdictSpec& spec, const MetricPoll& p, const ProxyRef& ref, const RunRecord& record) {
  Traffic t;
  if (spec.custom_metric) {
    t.app = counter(p, spec.metric, spec.labels, ref.proxy);
    return t;
  }
  if (protocol_of(record, ref) == "tcp") {
    t.app = counter(p, "faultline_proxy_data_connections_total", {}, ref.proxy);
    return t;
  }
  const auto requests = counter(p, "faultline_proxy_requests_total", {}, ref.proxy);
  if (!requests) return t;
  for (std::size_t k = 0; k < spec.traffic_exclude.size(); ++k)
    t.excluded += sum_matching(p.samples, "faultline_toxic_messages_total", {{"proxy", ref.proxy}, {"toxic", traffic_counter_name(spec, k)}})
                      .value_or(0);
  t.app = *requests - t.excluded;
  return t;
}

std::string traffic_unit(const VerdictSpec& spec, const RunRecord& record, const ProxyRef& ref) {
  if (spec.custom_metric) return spec.metric;
  return protocol_of(record, ref) == "tcp" ? "connections carrying data" : "application requests";
}

void failover(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  const auto t0 = record.event(spec.after);
  if (!t0) {
    r.failures.push_back(label(spec.after) + " never happened (the method stopped before it?)");
    r.summary = "no failover measured";
    return;
  }
  double t_end = HUGE_VAL;
  if (!spec.until.empty()) {
    const auto u = record.event(spec.until);
    if (!u) {
      r.failures.push_back(label(spec.until) + " never happened (the method stopped before it?)");
      return;
    }
    t_end = *u;
  }
  const auto* backup_polls = polls_of(record, spec.backup.faultline, r);
  const auto* primary_polls = polls_of(record, spec.primary.faultline, r);
  const std::string unit = traffic_unit(spec, record, spec.backup);
  if (backup_polls) {
    // The backup's traffic just before the failure is the baseline; traffic has moved once
    // it grows by min_requests inside the window.
    std::optional<double> base;
    double base_excluded = 0;
    for (const auto& p : *backup_polls) {
      if (p.t > *t0 && base) break;
      if (auto v = traffic_at(spec, p, spec.backup, record); v.app) {
        base = v.app;
        base_excluded = v.excluded;
      }
    }
    if (!base) {
      r.failures.push_back("no traffic counters for " + spec.backup.proxy + " on " + spec.backup.faultline);
    } else {
      const MetricPoll* moved = nullptr;
      const MetricPoll* last_in_window = nullptr;
      double last_b = *base, last_excluded = base_excluded;
      for (const auto& p : *backup_polls) {
        if (p.t <= *t0) continue;
        if (p.t > t_end) break;
        const auto v = traffic_at(spec, p, spec.backup, record);
        if (!v.app) continue;
        last_in_window = &p;
        last_b = *v.app;
        last_excluded = v.excluded;
        if (!moved && *v.app - *base >= spec.min_requests) moved = &p;
      }
      r.measured.push_back({"backup_traffic", last_b - *base});
      r.measured.push_back({"backup_excluded", last_excluded - base_excluded});
      const std::string window_text = spec.until.empty() ? "after " + label(spec.after)
                                                          : "between " + label(spec.after) + " and " + label(spec.until);
      if (!moved) {
        std::string why = "no " + unit + " reached " + spec.backup.proxy + " " + window_text + " (" + fmt(last_b - *base, 0) +
                          ", need " + fmt(spec.min_requests, 0) + ")";
        if (last_excluded - base_excluded > 0)
          why += "; its " + fmt(last_excluded - base_excluded, 0) + " other requests were health checks, which do not count";
        r.failures.push_back(why);
        r.summary = "traffic did not move to " + spec.backup.proxy;
      } else {
        const double took = moved->t - *t0;
        r.measured.push_back({"failover_s", took});
        r.summary = unit + " reached " + spec.backup.proxy + " " + fmt(took, 3) + " s after " + label(spec.after) + " (bound " +
                    fmt(spec.within, 3) + " s)";
        if (last_excluded - base_excluded > 0)
          r.summary += ", " + fmt(last_excluded - base_excluded, 0) + " health checks left out";
        if (took > spec.within)
          r.failures.push_back(unit + " reached " + spec.backup.proxy + " after " + fmt(took, 3) + " s, more than " + fmt(spec.within, 3) + " s");
        const double span = last_in_window && last_in_window->t > moved->t ? last_in_window->t - moved->t : 0;
        const double backup_after = last_in_window ? last_b - traffic_at(spec, *moved, spec.backup, record).app.value_or(last_b) : 0;
        if (span > 0) r.measured.push_back({"backup_rate_per_s", backup_after / span});
        if (primary_polls) {
          // "Moved from" the primary: once the backup carries traffic, the primary's share of it
          // is near zero (a rate, so it does not grow with the drill's length).
          const MetricPoll* at = nullptr;
          const MetricPoll* end = nullptr;
          for (const auto& p : *primary_polls) {
            if (p.t <= moved->t) at = &p;
            if (p.t <= t_end) end = &p;
          }
          // Plain doubles and a flag: GCC 12 misreads two optionals here (-Wmaybe-uninitialized).
          const Traffic p0 = at ? traffic_at(spec, *at, spec.primary, record) : Traffic{};
          const Traffic p1 = end ? traffic_at(spec, *end, spec.primary, record) : Traffic{};
          if (p0.app.has_value() && p1.app.has_value()) {
            const double grew = std::max(0.0, p1.app.value_or(0) - p0.app.value_or(0));
            const double total = grew + std::max(0.0, backup_after);
            const double share = total > 0 ? grew / total : 0;
            r.measured.push_back({"primary_traffic_after", grew});
            r.measured.push_back({"primary_share_after", share});
            if (span > 0) r.measured.push_back({"primary_rate_per_s", grew / span});
            if (share > spec.primary_max_share)
              r.failures.push_back(spec.primary.proxy + " still carried " + pct(share) + " of the " + unit + " after the failover (" +
                                   fmt(grew, 0) + " of " + fmt(total, 0) + "; at most " + pct(spec.primary_max_share) + " allowed)");
          }
        }
      }
    }
  }
  if (spec.health) {
    const auto samples = series(record, spec.health->sources);
    const double ratio = success_ratio(samples);
    r.measured.push_back({"health_ratio", ratio});
    r.summary += "; healthy " + pct(ratio) + " of " + std::to_string(samples.size()) + " calls (min " + pct(spec.health->min) + ")";
    if (samples.empty()) r.failures.push_back("no calls of " + source_text(spec.health->sources) + " to judge health by");
    else if (ratio < spec.health->min)
      r.failures.push_back("healthy " + pct(ratio) + " of calls, below " + pct(spec.health->min));
  }
  if (!spec.writes.empty()) {
    auto it = record.loads.find(spec.writes);
    const WriteCheck* w = it != record.loads.end() && it->second.writes ? &*it->second.writes : nullptr;
    if (!w || !w->ran) {
      r.failures.push_back("the writes of " + spec.writes + " were not read back" + (w && !w->error.empty() ? ": " + w->error : ""));
    } else {
      r.measured.push_back({"writes_acknowledged", static_cast<double>(w->acknowledged)});
      r.measured.push_back({"writes_lost", static_cast<double>(w->lost)});
      r.summary += "; " + std::to_string(w->lost) + " of " + std::to_string(w->acknowledged) + " acknowledged writes lost";
      if (!w->error.empty()) r.failures.push_back("reading the writes back failed: " + w->error);
      if (w->lost > 0) {
        std::string examples;
        for (const auto& e : w->examples) examples += (examples.empty() ? "" : ", ") + e;
        r.failures.push_back(std::to_string(w->lost) + " acknowledged writes lost (" + examples + ")");
      }
      if (w->acknowledged == 0) r.failures.push_back("no write was acknowledged");
    }
  }
}

void no_critical_errors(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  std::uint64_t critical = 0, server_errors = 0;
  std::vector<std::string> examples;
  auto scan = [&](const ActivityRecord& a) {
    if (a.critical && !a.ok && !a.skipped) {
      ++critical;
      if (examples.size() < 3) examples.push_back(a.name + " (" + std::string(to_string(a.phase)) + "): " + a.why);
    }
  };
  for (const auto& h : record.hypothesis)
    for (const auto& p : h.probes) scan(p);
  for (const auto& a : record.method) scan(a);
  for (const auto& a : record.rollbacks) scan(a);
  std::string first_5xx;
  for (const auto& s : series(record, spec.no_5xx))
    if (s.status >= 500) {
      if (++server_errors == 1) first_5xx = "first at " + fmt(s.start, 2) + " s: " + (s.detail.empty() ? std::to_string(s.status) : s.detail);
    }
  const std::uint64_t total = critical + server_errors;
  r.measured = {{"critical_probe_failures", static_cast<double>(critical)}, {"http_5xx", static_cast<double>(server_errors)}};
  r.summary = std::to_string(critical) + " critical probe failures, " + std::to_string(server_errors) + " 5xx answers (at most " +
              std::to_string(spec.max_errors) + " allowed)";
  if (total > spec.max_errors) {
    // Said apart: a failed critical probe and a 5xx answer call for different fixes.
    std::string detail;
    for (const auto& e : examples) detail += (detail.empty() ? "" : "; ") + e;
    std::string why = std::to_string(total) + " critical errors (at most " + std::to_string(spec.max_errors) + "):";
    if (critical > 0) why += " " + std::to_string(critical) + " critical probe failures (" + detail + ")";
    if (server_errors > 0)
      why += std::string(critical > 0 ? ";" : "") + " " + std::to_string(server_errors) + " 5xx answers in " + source_text(spec.no_5xx) +
             " (" + first_5xx + ")";
    r.failures.push_back(why);
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> series_read(const VerdictSpec& v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (v.type == VerdictType::failover) {
    for (const auto* ref : {&v.primary, &v.backup}) {
      if (v.custom_metric) {
        out.push_back({ref->faultline, v.metric});
        continue;
      }
      out.push_back({ref->faultline, "faultline_proxy_requests_total"});
      out.push_back({ref->faultline, "faultline_proxy_data_connections_total"});
      if (!v.traffic_exclude.empty()) out.push_back({ref->faultline, "faultline_toxic_messages_total"});
    }
  }
  if (v.retries) out.push_back({v.retries->proxy.faultline, v.retries->metric});
  for (const auto& f : v.faults)
    if (f.provider == Provider::toxic_add)
      for (const char* m : kToxicMetrics) out.push_back({f.proxy.faultline, m});
  return out;
}

std::string traffic_counter_name(const VerdictSpec& spec, std::size_t k) {
  return "drill-count-" + spec.name + "-" + std::to_string(k);
}

std::vector<VerdictResult> evaluate_verdicts(const std::vector<VerdictSpec>& specs, const RunRecord& record) {
  std::vector<VerdictResult> out;
  for (const auto& spec : specs) {
    VerdictResult r;
    r.name = spec.name;
    r.type = spec.type;
    r.criterion = spec.criterion;
    switch (spec.type) {
      case VerdictType::success_rate: success_rate(spec, record, r); break;
      case VerdictType::error_recovery: error_recovery(spec, record, r); break;
      case VerdictType::latency: latency(spec, record, r); break;
      case VerdictType::failover: failover(spec, record, r); break;
      case VerdictType::no_critical_errors: no_critical_errors(spec, record, r); break;
      case VerdictType::aggregate: break;  // below, once the others are known
    }
    r.passed = spec.type != VerdictType::aggregate && r.failures.empty();
    out.push_back(std::move(r));
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    if (spec.type != VerdictType::aggregate) continue;
    auto& r = out[i];
    std::size_t total = 0, passed = 0;
    std::vector<std::string> failed;
    for (std::size_t j = 0; j < specs.size(); ++j) {
      if (specs[j].type == VerdictType::aggregate) continue;
      if (!spec.of.empty() && std::find(spec.of.begin(), spec.of.end(), specs[j].name) == spec.of.end()) continue;
      ++total;
      if (out[j].passed) ++passed;
      else failed.push_back(specs[j].name);
    }
    const double ratio = total ? static_cast<double>(passed) / static_cast<double>(total) : 0;
    r.measured = {{"verdicts", static_cast<double>(total)}, {"passed", static_cast<double>(passed)}, {"ratio", ratio}};
    r.summary = std::to_string(passed) + " of " + std::to_string(total) + " verdicts passed (need " + pct(spec.min_ratio) + ")";
    if (total == 0) r.failures.push_back("nothing to aggregate");
    else if (ratio < spec.min_ratio) {
      std::string list;
      for (const auto& f : failed) list += (list.empty() ? "" : ", ") + f;
      r.failures.push_back("failed: " + list);
    }
    r.passed = r.failures.empty();
  }
  return out;
}

}  // namespace faultline::drill
