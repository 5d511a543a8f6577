#include "replay/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "replay/stats.hpp"

namespace faultline::drill {
namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void str(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
void key(Writer& w, const char* k) { w.Key(k); }
void num(Writer& w, double v) {
  // Milliseconds and seconds to the microsecond: enough, and stable in diffs.
  if (!std::isfinite(v)) {
    w.Null();
    return;
  }
  const double r = std::round(v * 1e6) / 1e6;
  if (r == std::floor(r) && std::fabs(r) < 9e15) w.Int64(static_cast<std::int64_t>(r));
  else w.Double(r);
}

std::string fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

const char* status_word(const ActivityRecord& a) { return a.skipped ? "skipped" : a.ok ? "succeeded" : "failed"; }

void activity_json(Writer& w, const ActivityRecord& a) {
  w.StartObject();
  key(w, "name");
  str(w, a.name);
  key(w, "type");
  str(w, a.probe ? "probe" : "action");
  key(w, "provider");
  str(w, to_string(a.provider));
  key(w, "phase");
  str(w, to_string(a.phase));
  key(w, "status");
  str(w, status_word(a));
  if (!a.skipped) {
    key(w, "start");
    num(w, a.start);
    key(w, "end");
    num(w, a.end);
    key(w, "duration");
    num(w, a.end - a.start);
    key(w, "output");
    str(w, a.observed);
    if (a.http_status) {
      key(w, "http_status");
      w.Int(a.http_status);
    }
    if (!a.ok) {
      key(w, "error");
      str(w, a.why);
    }
  }
  if (a.background) {
    key(w, "background");
    w.Bool(true);
  }
  if (a.critical) {
    key(w, "critical");
    w.Bool(true);
  }
  w.EndObject();
}

void hypothesis_json(Writer& w, const HypothesisRun& h) {
  w.StartObject();
  key(w, "start");
  num(w, h.start);
  key(w, "steady_state_met");
  w.Bool(h.met);
  key(w, "probes");
  w.StartArray();
  for (const auto& p : h.probes) activity_json(w, p);
  w.EndArray();
  w.EndObject();
}

const HypothesisRun* find_run(const RunRecord& r, Phase phase) {
  for (const auto& h : r.hypothesis)
    if (h.phase == phase) return &h;
  return nullptr;
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even escaped; keep the text readable.
        if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') out += "?";
        else out += static_cast<char>(c);
    }
  }
  return out;
}

std::string report_json(const RunReport& report) {
  const Drill& d = *report.drill;
  const RunRecord& r = report.record;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.SetIndent(' ', 2);
  w.StartObject();
  key(w, "faultline");
  w.StartObject();
  key(w, "version");
  str(w, report.version);
  w.EndObject();
  key(w, "drill");
  w.StartObject();
  key(w, "title");
  str(w, d.title);
  key(w, "description");
  str(w, d.description);
  key(w, "file");
  str(w, d.file);
  w.EndObject();
  key(w, "seed");
  if (d.seed) w.Uint64(*d.seed);
  else w.Null();
  key(w, "configuration");
  w.StartObject();
  for (const auto& [name, value] : d.configuration) {
    key(w, name.c_str());
    w.RawValue(value.c_str(), value.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  key(w, "runtime");
  w.StartObject();
  key(w, "hypothesis");
  w.StartObject();
  key(w, "strategy");
  str(w, to_string(d.runtime.hypothesis));
  key(w, "frequency");
  num(w, d.runtime.frequency);
  key(w, "fail_fast");
  w.Bool(d.runtime.fail_fast);
  w.EndObject();
  key(w, "rollbacks");
  w.StartObject();
  key(w, "strategy");
  str(w, to_string(d.runtime.rollbacks));
  w.EndObject();
  w.EndObject();
  key(w, "start");
  str(w, report.started_at);
  key(w, "duration");
  num(w, report.duration);
  key(w, "status");
  str(w, to_string(report.outcome.status));
  key(w, "deviated");
  w.Bool(report.outcome.deviated);
  if (!report.outcome.reason.empty()) {
    key(w, "reason");
    str(w, report.outcome.reason);
  }
  key(w, "result");
  str(w, result_word(report.exit_code));
  key(w, "exit_code");
  w.Int(report.exit_code);

  key(w, "steady_states");
  w.StartObject();
  for (Phase p : {Phase::before, Phase::after}) {
    key(w, to_string(p));
    if (const auto* h = find_run(r, p)) hypothesis_json(w, *h);
    else w.Null();
  }
  key(w, "during");
  w.StartArray();
  for (const auto& h : r.hypothesis)
    if (h.phase == Phase::during) hypothesis_json(w, h);
  w.EndArray();
  w.EndObject();

  key(w, "run");
  w.StartArray();
  for (const auto& a : r.method) activity_json(w, a);
  w.EndArray();
  key(w, "rollbacks");
  w.StartArray();
  for (const auto& a : r.rollbacks) activity_json(w, a);
  w.EndArray();

  key(w, "loads");
  w.StartObject();
  for (const auto& [name, load] : r.loads) {
    key(w, name.c_str());
    w.StartObject();
    key(w, "target");
    str(w, to_string(load.target));
    std::size_t ok = 0;
    std::vector<double> ms;
    for (const auto& c : load.calls) {
      ok += c.ok;
      ms.push_back(c.latency_ms);
    }
    key(w, "calls");
    w.Uint64(load.calls.size());
    key(w, "ok");
    w.Uint64(ok);
    key(w, "success_rate");
    num(w, load.calls.empty() ? 0.0 : static_cast<double>(ok) / static_cast<double>(load.calls.size()));
    const auto st = latency_stats(ms);
    // Open-loop honesty: calls never sent, and how late the sent ones went out (latency_ms
    // already counts from each call's intended start).
    std::size_t not_sent = 0;
    double late_max = 0, late_sum = 0;
    for (const auto& c : load.calls) {
      not_sent += !c.sent;
      late_max = std::max(late_max, c.late_ms);
      late_sum += c.late_ms;
    }
    key(w, "not_sent");
    w.Uint64(not_sent);
    key(w, "late_ms");
    w.StartObject();
    key(w, "max");
    num(w, late_max);
    key(w, "avg");
    num(w, load.calls.size() > not_sent ? late_sum / static_cast<double>(load.calls.size() - not_sent) : 0.0);
    w.EndObject();
    key(w, "latency_ms");
    w.StartObject();
    key(w, "avg");
    num(w, st.avg);
    key(w, "p50");
    num(w, st.p50);
    key(w, "p95");
    num(w, st.p95);
    key(w, "p99");
    num(w, st.p99);
    key(w, "max");
    num(w, st.max);
    w.EndObject();
    if (load.writes) {
      key(w, "writes");
      w.StartObject();
      key(w, "verified");
      w.Bool(load.writes->ran);
      key(w, "acknowledged");
      w.Uint64(load.writes->acknowledged);
      key(w, "read_back");
      w.Uint64(load.writes->verified);
      key(w, "lost");
      w.Uint64(load.writes->lost);
      if (!load.writes->error.empty()) {
        key(w, "error");
        str(w, load.writes->error);
      }
      w.EndObject();
    }
    // Every call as [start s, latency ms, ok, status, detail]: what the verdicts were
    // computed from, so a verdict can be re-checked by hand. Capped to keep files sane.
    if (load.calls.size() <= 100000) {
      key(w, "timeline");
      w.StartArray();
      for (const auto& c : load.calls) {
        // Compact rows, one per line (RawValue keeps the pretty writer's line breaks).
        rapidjson::StringBuffer row;
        rapidjson::Writer<rapidjson::StringBuffer> rw(row);
        rw.StartArray();
        rw.Double(std::round(c.start * 1e6) / 1e6);
        rw.Double(std::round(c.latency_ms * 1e3) / 1e3);
        rw.Bool(c.ok);
        rw.Int(c.status);
        rw.String(c.detail.c_str(), static_cast<rapidjson::SizeType>(c.detail.size()));
        rw.EndArray();
        w.RawValue(row.GetString(), row.GetSize(), rapidjson::kArrayType);
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndObject();

  key(w, "metrics");
  w.StartObject();
  for (const auto& url : d.faultline_urls()) {
    auto it = r.metrics.find(url);
    auto err = r.metric_errors.find(url);
    if (it == r.metrics.end() && err == r.metric_errors.end()) continue;
    key(w, url.c_str());
    w.StartObject();
    key(w, "polls");
    w.Uint64(it == r.metrics.end() ? 0 : it->second.size());
    if (err != r.metric_errors.end()) {
      key(w, "error");
      str(w, err->second);
    }
    w.EndObject();
  }
  w.EndObject();

  key(w, "events");
  w.StartObject();
  for (const auto& [name, t] : r.events) {
    key(w, name.c_str());
    num(w, t);
  }
  w.EndObject();

  key(w, "verdicts");
  w.StartArray();
  for (const auto& v : report.verdicts) {
    w.StartObject();
    key(w, "name");
    str(w, v.name);
    key(w, "type");
    str(w, to_string(v.type));
    if (!v.criterion.empty()) {
      key(w, "criterion");
      str(w, v.criterion);
    }
    key(w, "passed");
    w.Bool(v.passed);
    key(w, "summary");
    str(w, v.summary);
    key(w, "failures");
    w.StartArray();
    for (const auto& f : v.failures) str(w, f);
    w.EndArray();
    key(w, "measured");
    w.StartObject();
    for (const auto& [k, value] : v.measured) {
      key(w, k.c_str());
      num(w, value);
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

std::string report_junit(const RunReport& report) {
  const Drill& d = *report.drill;
  const RunRecord& r = report.record;
  struct Case {
    Case(std::string cls, std::string n, double t = 0) : classname(std::move(cls)), name(std::move(n)), time(t) {}
    std::string classname, name;
    double time = 0;
    enum { pass, failure, error, skipped } kind = pass;
    std::string message, detail;
  };
  std::vector<Case> cases;
  const std::string base = "drill";

  // The run itself: a CI reader sees at once whether the drill could run at all.
  {
    Case c{base, "run", report.duration};
    if (report.outcome.status == Status::failed) c.kind = Case::failure;
    if (report.outcome.preflight_failed || report.outcome.status == Status::aborted || report.outcome.status == Status::interrupted)
      c.kind = Case::error;
    c.message = std::string("status ") + to_string(report.outcome.status) + (report.outcome.deviated ? ", deviated" : "");
    c.detail = report.outcome.reason;
    if (c.kind == Case::pass && report.outcome.deviated) {
      c.kind = Case::failure;
      c.detail = "the steady state did not hold after the method";
    }
    cases.push_back(c);
  }
  // One testcase per hypothesis probe and phase; continuous runs fold into "during".
  for (Phase phase : {Phase::before, Phase::during, Phase::after}) {
    for (const auto& probe : d.hypothesis) {
      Case c{base + ".steady-state." + to_string(phase), probe.name};
      std::size_t runs = 0, failed = 0;
      std::string first_failure;
      for (const auto& h : r.hypothesis) {
        if (h.phase != phase) continue;
        for (const auto& p : h.probes) {
          if (p.name != probe.name || p.skipped) continue;
          ++runs;
          c.time += p.end - p.start;
          if (!p.ok) {
            ++failed;
            if (first_failure.empty()) first_failure = p.why;
          }
        }
      }
      if (runs == 0) {
        if (phase == Phase::during) continue;  // no continuous hypothesis: nothing to report
        c.kind = Case::skipped;
        c.message = "not run";
      } else if (failed) {
        c.kind = Case::failure;
        c.message = runs == 1 ? first_failure : std::to_string(failed) + " of " + std::to_string(runs) + " runs failed: " + first_failure;
        c.detail = first_failure;
      }
      cases.push_back(c);
    }
  }
  for (const auto& v : report.verdicts) {
    Case c{base + ".verdicts", v.name + (v.criterion.empty() ? "" : " (" + v.criterion + ")")};
    if (!v.passed) {
      c.kind = Case::failure;
      for (const auto& f : v.failures) c.message += (c.message.empty() ? "" : "; ") + f;
    }
    c.detail = v.summary;
    cases.push_back(c);
  }

  std::size_t failures = 0, errors = 0, skipped = 0;
  for (const auto& c : cases) {
    failures += c.kind == Case::failure;
    errors += c.kind == Case::error;
    skipped += c.kind == Case::skipped;
  }
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  const std::string counts = " tests=\"" + std::to_string(cases.size()) + "\" failures=\"" + std::to_string(failures) +
                             "\" errors=\"" + std::to_string(errors) + "\" skipped=\"" + std::to_string(skipped) +
                             "\" time=\"" + fmt(report.duration, 3) + "\"";
  out += "<testsuites name=\"faultline drill\"" + counts + ">\n";
  out += "  <testsuite name=\"" + xml_escape(d.title) + "\"" + counts + " timestamp=\"" + xml_escape(report.started_at) + "\">\n";
  out += "    <properties>\n";
  auto prop = [&](const std::string& k, const std::string& v) {
    out += "      <property name=\"" + xml_escape(k) + "\" value=\"" + xml_escape(v) + "\"/>\n";
  };
  prop("file", d.file);
  prop("seed", d.seed ? std::to_string(*d.seed) : "");
  prop("status", to_string(report.outcome.status));
  prop("deviated", report.outcome.deviated ? "true" : "false");
  prop("result", result_word(report.exit_code));
  out += "    </properties>\n";
  for (const auto& c : cases) {
    out += "    <testcase classname=\"" + xml_escape(c.classname) + "\" name=\"" + xml_escape(c.name) + "\" time=\"" + fmt(c.time, 3) + "\"";
    if (c.kind == Case::pass && c.detail.empty()) {
      out += "/>\n";
      continue;
    }
    out += ">\n";
    switch (c.kind) {
      case Case::failure:
        out += "      <failure message=\"" + xml_escape(c.message) + "\">" + xml_escape(c.detail) + "</failure>\n";
        break;
      case Case::error:
        out += "      <error message=\"" + xml_escape(c.message) + "\">" + xml_escape(c.detail) + "</error>\n";
        break;
      case Case::skipped:
        out += "      <skipped message=\"" + xml_escape(c.message) + "\"/>\n";
        break;
      case Case::pass:
        out += "      <system-out>" + xml_escape(c.detail) + "</system-out>\n";
        break;
    }
    out += "    </testcase>\n";
  }
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

std::string progress_line(const ActivityRecord& a) {
  char head[48];
  std::snprintf(head, sizeof head, "[%7.2fs] %-8s ", a.end, to_string(a.phase));
  std::string line = head;
  line += a.skipped ? "skip" : a.ok ? " ok " : "FAIL";
  line += "  " + a.name + " (" + to_string(a.provider) + ")";
  if (!a.skipped) {
    line += "  " + a.observed;
    if (!a.ok && !a.why.empty() && a.why != a.observed) line += ": " + a.why;
  }
  return line;
}

std::string report_table(const RunReport& report) {
  const Drill& d = *report.drill;
  const RunRecord& r = report.record;
  std::string out;
  out += "drill: " + d.title + (d.seed ? "  (seed " + std::to_string(*d.seed) + ")" : "") + "\n";
  auto row = [&](const char* section, const ActivityRecord& a) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-9s %-4s ", section, a.skipped ? "skip" : a.ok ? "ok" : "FAIL");
    std::string line = buf + a.name + " (" + to_string(a.provider) + ")";
    if (!a.skipped) {
      line += ": " + a.observed;
      if (!a.ok && !a.why.empty() && a.why != a.observed) line += ": " + a.why;
    }
    out += line + "\n";
  };
  // In the order things happen: before, method (and what held during it), after.
  for (const auto& h : r.hypothesis)
    if (h.phase == Phase::before)
      for (const auto& p : h.probes) row("before", p);
  for (const auto& a : r.method) row("method", a);
  std::size_t during_runs = 0, during_failed = 0;
  for (const auto& h : r.hypothesis) {
    if (h.phase != Phase::during) continue;
    ++during_runs;
    during_failed += !h.met;
  }
  if (during_runs)
    out += "  during    " + std::string(during_failed ? "FAIL" : "ok  ") + " steady state held in " +
           std::to_string(during_runs - during_failed) + " of " + std::to_string(during_runs) + " runs\n";
  for (const auto& h : r.hypothesis)
    if (h.phase == Phase::after)
      for (const auto& p : h.probes) row("after", p);
  for (const auto& a : r.rollbacks) row("rollback", a);
  for (const auto& [name, load] : r.loads) {
    std::size_t ok = 0;
    std::vector<double> ms;
    for (const auto& c : load.calls) {
      ok += c.ok;
      ms.push_back(c.latency_ms);
    }
    const auto st = latency_stats(ms);
    const auto not_sent = std::count_if(load.calls.begin(), load.calls.end(), [](const LoadCall& c) { return !c.sent; });
    out += "  load      " + name + ": " + std::to_string(ok) + "/" + std::to_string(load.calls.size()) + " ok, avg " +
           fmt(st.avg, 2) + " ms, p95 " + fmt(st.p95, 2) + " ms, p99 " + fmt(st.p99, 2) + " ms" +
           (not_sent ? ", " + std::to_string(not_sent) + " not sent" : "") + "\n";
  }
  if (!report.verdicts.empty()) out += "verdicts:\n";
  for (const auto& v : report.verdicts) {
    out += std::string("  ") + (v.passed ? "PASS" : "FAIL") + "  " + v.name + (v.criterion.empty() ? "" : " [" + v.criterion + "]") +
           ": " + v.summary + "\n";
    for (const auto& f : v.failures) out += "          - " + f + "\n";
  }
  std::string result = report.exit_code == 0 ? "PASSED" : report.exit_code == 1 ? "FAILED" : "COULD NOT RUN";
  out += "result: " + result + " (status " + to_string(report.outcome.status) +
         (report.outcome.deviated ? ", deviated" : "") + ") in " + fmt(report.duration, 2) + " s";
  if (!report.outcome.reason.empty()) out += ": " + report.outcome.reason;
  out += "\n";
  return out;
}

}  // namespace faultline::drill
