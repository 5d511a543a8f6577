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
        out.push_back({c.start, c.start + c.latency_ms / 1000.0, c.ok, c.latency_ms, c.status});
      continue;
    }
    for (const auto* p : record.probe_runs(name)) out.push_back({p->start, p->end, p->ok, p->latency_ms, p->http_status});
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
    r.failures.push_back("success rate " + pct(ratio) + " is below " + pct(spec.threshold));
}

// The value of `metric{labels, proxy}` in one poll of a faultline's /metrics.
std::optional<double> counter(const MetricPoll& poll, const std::string& metric, Labels labels, const std::string& proxy) {
  labels["proxy"] = proxy;
  return sum_matching(poll.samples, metric, labels);
}

const std::vector<MetricPoll>* polls_of(const RunRecord& record, const std::string& url, VerdictResult& r) {
  auto it = record.metrics.find(url);
  if (it == record.metrics.end() || it->second.empty()) {
    auto e = record.metric_errors.find(url);
    r.failures.push_back("no /metrics samples from " + url + (e != record.metric_errors.end() ? ": " + e->second : ""));
    return nullptr;
  }
  return &it->second;
}

void error_recovery(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  const auto samples = series(record, spec.sources);
  const auto failures = std::count_if(samples.begin(), samples.end(), [](const Sample& s) { return !s.ok; });
  r.measured.push_back({"samples", static_cast<double>(samples.size())});
  r.measured.push_back({"failures", static_cast<double>(failures)});
  const auto t_ref = record.event(spec.after);
  if (!t_ref) {
    r.failures.push_back(label(spec.after) + " never happened (the method stopped before it?)");
    r.summary = "no recovery measured";
    return;
  }
  if (spec.require_failure && failures == 0)
    r.failures.push_back("no call of " + source_text(spec.sources) + " failed: the fault never bit, so recovery is unproven");
  const Sample* first_ok = nullptr;
  for (const auto& s : samples) {
    if (s.start >= *t_ref && s.ok) {
      first_ok = &s;
      break;
    }
  }
  if (!first_ok) {
    const auto after = std::count_if(samples.begin(), samples.end(), [&](const Sample& s) { return s.start >= *t_ref; });
    r.failures.push_back(after == 0 ? "no call of " + source_text(spec.sources) + " after " + label(spec.after)
                                    : "none of the " + std::to_string(after) + " calls after " + label(spec.after) + " succeeded");
    r.summary = "did not recover after " + label(spec.after);
  } else {
    const double took = first_ok->end - *t_ref;
    std::vector<Sample> later;
    for (const auto& s : samples)
      if (s.start >= first_ok->start) later.push_back(s);
    const double later_ratio = success_ratio(later);
    r.measured.push_back({"time_to_first_success_s", took});
    r.measured.push_back({"later_success_rate", later_ratio});
    r.measured.push_back({"later_samples", static_cast<double>(later.size())});
    r.summary = "first success " + fmt(took, 3) + " s after " + label(spec.after) + " (bound " + fmt(spec.within, 3) + " s), then " +
                pct(later_ratio) + " of " + std::to_string(later.size()) + " calls ok";
    if (took > spec.within)
      r.failures.push_back("first success came " + fmt(took, 3) + " s after " + label(spec.after) + ", more than " + fmt(spec.within, 3) + " s");
    if (later_ratio < spec.later_success_rate)
      r.failures.push_back("after recovering, only " + pct(later_ratio) + " of the later calls succeeded (need " +
                           pct(spec.later_success_rate) + ")");
  }
  if (spec.retries) {
    // Retries are what faultline saw beyond the calls the drill made: a client library that
    // retries internally sends more requests than it was asked to.
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
    const auto calls = std::count_if(samples.begin(), samples.end(), [&](const Sample& s) { return s.start >= t0 && s.start <= t1; });
    const double retries = std::max(0.0, seen - static_cast<double>(calls));
    r.measured.push_back({"requests_seen", seen});
    r.measured.push_back({"calls_made", static_cast<double>(calls)});
    r.measured.push_back({"retries", retries});
    r.summary += "; " + fmt(retries, 0) + " retries (budget " + fmt(rt.max, 0) + ")";
    if (retries > rt.max)
      r.failures.push_back(fmt(retries, 0) + " retries (" + fmt(seen, 0) + " requests seen by " + rt.proxy.proxy + " for " +
                           std::to_string(calls) + " calls), more than the budget of " + fmt(rt.max, 0));
  }
}

void latency(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  Window w;
  if (!window(spec, record, w, r)) return;
  std::vector<double> ms;
  for (const auto& s : in_window(series(record, spec.sources), w))
    if (!spec.ok_only || s.ok) ms.push_back(s.latency_ms);
  const LatencyStats st = latency_stats(ms);
  r.measured = {{"samples", static_cast<double>(st.count)}, {"avg_ms", st.avg}, {"p50_ms", st.p50},
                {"p95_ms", st.p95},                          {"p99_ms", st.p99}, {"max_ms", st.max}};
  r.summary = std::to_string(st.count) + (spec.ok_only ? " ok" : "") + " calls of " + source_text(spec.sources) +
              ": avg " + fmt(st.avg) + " ms, p50 " + fmt(st.p50) + ", p95 " + fmt(st.p95) + ", p99 " + fmt(st.p99) +
              ", max " + fmt(st.max);
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

void failover(const VerdictSpec& spec, const RunRecord& record, VerdictResult& r) {
  const auto t0 = record.event(spec.after);
  if (!t0) {
    r.failures.push_back(label(spec.after) + " never happened (the method stopped before it?)");
    r.summary = "no failover measured";
    return;
  }
  const auto* backup_polls = polls_of(record, spec.backup.faultline, r);
  const auto* primary_polls = polls_of(record, spec.primary.faultline, r);
  std::string series_b = spec.metric + "{proxy=\"" + spec.backup.proxy + "\"}";
  if (backup_polls) {
    // The backup's counter just before the failure is the baseline; traffic has moved once
    // it grows by min_delta.
    std::optional<double> base;
    for (const auto& p : *backup_polls) {
      if (p.t > *t0 && base) break;
      if (auto v = counter(p, spec.metric, spec.labels, spec.backup.proxy)) base = v;
    }
    if (!base) {
      r.failures.push_back("no series " + series_b + " on " + spec.backup.faultline);
    } else {
      const MetricPoll* moved = nullptr;
      double last_b = *base;
      for (const auto& p : *backup_polls) {
        if (p.t <= *t0) continue;
        const auto v = counter(p, spec.metric, spec.labels, spec.backup.proxy);
        if (v) last_b = *v;
        if (v && *v - *base >= spec.min_delta) {
          moved = &p;
          break;
        }
      }
      r.measured.push_back({"backup_delta", last_b - *base});
      if (!moved) {
        r.failures.push_back("no traffic reached " + spec.backup.proxy + " after " + label(spec.after) + " (" + series_b +
                             " grew by " + fmt(last_b - *base, 0) + ", need " + fmt(spec.min_delta, 0) + ")");
        r.summary = "traffic did not move to " + spec.backup.proxy;
      } else {
        const double took = moved->t - *t0;
        r.measured.push_back({"failover_s", took});
        r.summary = "traffic reached " + spec.backup.proxy + " " + fmt(took, 3) + " s after " + label(spec.after) + " (bound " +
                    fmt(spec.within, 3) + " s)";
        if (took > spec.within)
          r.failures.push_back("traffic reached " + spec.backup.proxy + " after " + fmt(took, 3) + " s, more than " + fmt(spec.within, 3) + " s");
        if (primary_polls) {
          // "Moved from" the primary: once the backup carries traffic, the primary stops.
          const MetricPoll* at = nullptr;
          for (const auto& p : *primary_polls)
            if (p.t <= moved->t) at = &p;
          const auto a0 = at ? counter(*at, spec.metric, spec.labels, spec.primary.proxy) : std::nullopt;
          const auto a1 = counter(primary_polls->back(), spec.metric, spec.labels, spec.primary.proxy);
          if (a0 && a1) {
            const double grew = *a1 - *a0;
            r.measured.push_back({"primary_delta_after", grew});
            if (grew > spec.primary_max_delta)
              r.failures.push_back(spec.primary.proxy + " still carried traffic after the failover (" + spec.metric + " grew by " +
                                   fmt(grew, 0) + ", at most " + fmt(spec.primary_max_delta, 0) + " allowed)");
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
  for (const auto& s : series(record, spec.no_5xx))
    if (s.status >= 500) ++server_errors;
  const std::uint64_t total = critical + server_errors;
  r.measured = {{"critical_probe_failures", static_cast<double>(critical)}, {"http_5xx", static_cast<double>(server_errors)}};
  r.summary = std::to_string(critical) + " critical probe failures, " + std::to_string(server_errors) + " 5xx answers (at most " +
              std::to_string(spec.max_errors) + " allowed)";
  if (total > spec.max_errors) {
    std::string detail;
    for (const auto& e : examples) detail += (detail.empty() ? "" : "; ") + e;
    r.failures.push_back(std::to_string(total) + " critical errors" + (detail.empty() ? "" : ": " + detail));
  }
}

}  // namespace

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
