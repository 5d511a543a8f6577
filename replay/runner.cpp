#include "replay/runner.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <deque>
#include <set>
#include <thread>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "proxy/asio.hpp"
#include "recorder/journal.hpp"
#include "replay/clients.hpp"
#include "replay/process.hpp"
#include "replay/record.hpp"
#include "replay/replay_actions.hpp"
#include "replay/replay_model.hpp"
#include "replay/report.hpp"
#include "replay/verdicts.hpp"
#include "replay/wire.hpp"

namespace faultline::drill {
namespace {

using clock = std::chrono::steady_clock;

std::chrono::nanoseconds span(double seconds) {
  return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

std::string fmt(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// A failed call's reason with the start of what it got back: the real cause is often there
// (a provider's RateLimitError, "Premature close", an HTML error page).
std::string with_body_start(const std::string& why, const Observation& o) {
  if (o.kind != ProbeKind::http || !o.answered || o.body.empty()) return why;
  return why + " (body: " + replay::printable(o.body, 160) + ")";
}

// Coroutines started together and awaited together: background activities, a load's
// workers, the continuous hypothesis, the metrics poller. Single-threaded, so a counter and
// a timer used as a wake-up signal are enough.
class TaskGroup {
 public:
  explicit TaskGroup(net::any_io_executor ex) : ex_(ex), done_(ex) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  void spawn(awaitable<void> task) {
    ++pending_;
    net::co_spawn(ex_, std::move(task), [this](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::cerr << "faultline drill: internal error in a background task: " << x.what() << "\n";
        }
      }
      if (--pending_ == 0) done_.cancel();
    });
  }

  awaitable<void> wait() {
    while (pending_ > 0) {
      done_.expires_at(net::steady_timer::time_point::max());
      co_await done_.async_wait(use_nothrow);
    }
  }

 private:
  net::any_io_executor ex_;
  net::steady_timer done_;
  std::size_t pending_ = 0;
};

// Blocking work (a command in waitpid and poll, a replay client on its own io_context) runs
// on a helper thread; the coroutine waits on `timer`, which the thread cancels through the
// io_context when the work is done. `cancel` asks the work to stop early.
template <typename Result>
struct HelperJob {
  explicit HelperJob(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  Result result{};
  bool done = false;
  std::atomic<bool> cancel{false};
};

class Runner {
 public:
  Runner(net::io_context& ioc, const Drill& drill, const RunOptions& options)
      : ioc_(ioc), d_(drill), opts_(options), t0_(clock::now()), replays_(directory_of(drill.file)) {
    for (const auto& v : d_.verdicts)
      for (const auto& [url, name] : series_read(v)) want_metric(url, name);
  }

  ~Runner() {
    for (auto& c : cancels_) *c = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  RunRecord record;
  Outcome outcome;

  awaitable<void> run() {
    signals_ = std::make_unique<net::signal_set>(ioc_, SIGINT, SIGTERM);
    arm_signals();
    if (!co_await preflight() || !co_await add_traffic_counters()) {
      co_await remove_traffic_counters();
      outcome.preflight_failed = true;
      outcome.status = Status::aborted;
      outcome.reason = reason_;
      signals_->cancel();
      co_return;
    }
    const auto hs = d_.runtime.hypothesis;
    const bool has_hypothesis = !d_.hypothesis.empty();
    bool method_ran = false;
    if (has_hypothesis && (hs == HypothesisStrategy::default_ || hs == HypothesisStrategy::before_method_only ||
                           hs == HypothesisStrategy::continuously)) {
      auto run = co_await hypothesis(Phase::before);
      if (!run.met) {
        failed_ = true;
        reason_ = "the steady state did not hold before the method (" + first_failure(run) + "), so the method did not run";
      }
      record.hypothesis.push_back(std::move(run));
    }
    if (!failed_ && !interrupted_) {
      method_ran = true;
      co_await method();
    } else {
      for (const auto& a : d_.method) record.method.push_back(skipped(a, Phase::method));
    }
    const bool method_completed = method_ran && !stop_method_ && !interrupted_;
    if (method_completed && has_hypothesis &&
        (hs == HypothesisStrategy::default_ || hs == HypothesisStrategy::after_method_only ||
         hs == HypothesisStrategy::continuously)) {
      auto run = co_await hypothesis(Phase::after);
      if (!run.met) {
        deviated_ = true;
        if (reason_.empty()) reason_ = "the steady state did not hold after the method (" + first_failure(run) + ")";
      }
      record.hypothesis.push_back(std::move(run));
    }
    bool roll_back = false;
    switch (d_.runtime.rollbacks) {
      // faultline's default rolls back whenever the method started, also after a failure or
      // an interrupt: a fault left behind by a half-run drill is the worst outcome.
      case RollbackStrategy::default_: roll_back = method_ran; break;
      case RollbackStrategy::always: roll_back = true; break;
      case RollbackStrategy::never: roll_back = false; break;
      case RollbackStrategy::deviated: roll_back = deviated_; break;
    }
    if (roll_back) {
      co_await rollbacks();
    } else {
      for (const auto& a : d_.rollbacks) record.rollbacks.push_back(skipped(a, Phase::rollback));
    }
    co_await remove_traffic_counters();  // the method never ran, or was cut short
    replays_.stop_all();  // a replay server never outlives its drill
    outcome.status = interrupted_ ? Status::interrupted : aborted_ ? Status::aborted : failed_ ? Status::failed : Status::completed;
    outcome.deviated = deviated_;
    outcome.reason = reason_;
    signals_->cancel();
  }

 private:
  double now() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

  void want_metric(const std::string& url, const std::string& name) {
    auto& names = metric_names_[url];
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }

  // ---- stopping ------------------------------------------------------------------------

  bool method_stopping() const { return interrupted_ || stop_method_; }

  // When a sleep (or a command) in this phase must end early: the method stops on an
  // interrupt, fail-fast or an abort; rollbacks only on a second interrupt.
  std::function<bool()> stop_for(Phase phase) const {
    switch (phase) {
      case Phase::method: return [this] { return method_stopping(); };
      case Phase::during: return [this] { return method_done_ || method_stopping(); };
      case Phase::rollback: return [this] { return hard_stop_; };
      default: return [this] { return interrupted_; };
    }
  }

  void wake_all() {
    for (auto* t : sleepers_) t->cancel();
  }

  awaitable<void> sleep_until(double t, std::function<bool()> stop) {
    net::steady_timer timer(co_await net::this_coro::executor);
    sleepers_.insert(&timer);
    // Any wake-up re-checks: a wake_all() meant for someone else just re-arms the timer.
    while (now() < t && !(stop && stop())) {
      timer.expires_after(span(t - now()));
      co_await timer.async_wait(use_nothrow);
    }
    sleepers_.erase(&timer);
  }

  awaitable<void> sleep_for(double seconds, Phase phase) { co_await sleep_until(now() + seconds, stop_for(phase)); }

  void abort_method(const std::string& why) {
    if (!aborted_ && !interrupted_) {
      aborted_ = true;
      reason_ = why;
    }
    stop_method_ = true;
    wake_all();
  }

  void arm_signals() {
    signals_->async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (!interrupted_) {
        interrupted_ = true;
        reason_ = "interrupted";
        std::cerr << "faultline drill: interrupted: stopping the method and running the rollbacks "
                     "(interrupt again to skip them)\n";
        for (auto& c : cancels_) *c = true;  // method commands and replays; rollbacks start fresh ones
      } else {
        hard_stop_ = true;
        std::cerr << "faultline drill: interrupted again: skipping what is left\n";
        for (auto& c : cancels_) *c = true;
      }
      wake_all();
      arm_signals();
    });
  }

  // ---- records -----------------------------------------------------------------------

  static ActivityRecord blank(const Activity& a, Phase phase) {
    ActivityRecord r;
    r.name = a.name;
    r.provider = a.provider;
    r.probe = a.probe;
    r.background = a.background;
    r.critical = a.critical;
    r.phase = phase;
    return r;
  }

  static ActivityRecord skipped(const Activity& a, Phase phase) {
    ActivityRecord r = blank(a, phase);
    r.skipped = true;
    return r;
  }

  static std::string first_failure(const HypothesisRun& run) {
    for (const auto& p : run.probes)
      if (!p.ok) return p.name + ": " + p.why;
    return "?";
  }

  void finished(const ActivityRecord& r) {
    if (r.phase == Phase::method || r.phase == Phase::rollback) {
      // The first run of an activity names the event; later runs of a ref keep it stable.
      record.events.emplace(r.name + ".start", r.start);
      record.events.emplace(r.name + ".end", r.end);
    }
    if (opts_.progress) std::cout << progress_line(r) << std::endl;
  }

  // ---- preflight -----------------------------------------------------------------------

  awaitable<bool> preflight() {
    for (const auto& url : d_.faultline_urls()) {
      const auto r = co_await api_call(url, "GET", "/version", {}, 5);
      if (r.status == 0) {
        reason_ = r.error;
        co_return false;
      }
      if (r.status != 200) {
        reason_ = "the faultline API at " + url + " answered GET /version with " + r.error;
        co_return false;
      }
    }
    std::vector<std::pair<std::string, ProxyRef>> proxies = d_.proxies_used();
    for (const auto& v : d_.verdicts) {
      if (v.type == VerdictType::failover) {
        proxies.push_back({v.path + ".primary", v.primary});
        proxies.push_back({v.path + ".backup", v.backup});
      }
      if (v.retries) proxies.push_back({v.path + ".retries.proxy", v.retries->proxy});
    }
    std::set<std::pair<std::string, std::string>> checked;
    for (const auto& [path, ref] : proxies) {
      if (!checked.insert({ref.faultline, ref.proxy}).second) continue;
      const auto r = co_await api_call(ref.faultline, "GET", "/proxies/" + escape_segment(ref.proxy), {}, 5);
      if (r.status == 404) {
        reason_ = path + ": no proxy \"" + ref.proxy + "\" on " + ref.faultline;
        co_return false;
      }
      if (r.status != 200) {
        reason_ = path + ": " + (r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error);
        co_return false;
      }
      rapidjson::Document doc;
      doc.Parse(r.body.c_str(), r.body.size());
      std::string protocol = "tcp";
      if (!doc.HasParseError() && doc.IsObject())
        if (auto it = doc.FindMember("protocol"); it != doc.MemberEnd() && it->value.IsString()) protocol = it->value.GetString();
      record.proxy_protocols[RunRecord::proxy_key(ref.faultline, ref.proxy)] = protocol;
    }
    // A failover verdict that leaves health checks out counts them on both proxies.
    for (const auto& v : d_.verdicts) {
      if (v.type != VerdictType::failover || v.traffic_exclude.empty()) continue;
      for (const auto* ref : {&v.primary, &v.backup}) {
        if (protocol_of(*ref) == "tcp") {
          reason_ = v.path + ".traffic.exclude: " + ref->proxy + " is a tcp proxy, whose requests faultline does not decode; " +
                    "its traffic is the connections that carry data (leave exclude out)";
          co_return false;
        }
      }
    }
    co_return true;
  }

  // ---- traffic counters (failover verdicts' health-check exclusion) -------------------

  std::string protocol_of(const ProxyRef& ref) const {
    auto it = record.proxy_protocols.find(RunRecord::proxy_key(ref.faultline, ref.proxy));
    return it == record.proxy_protocols.end() ? "tcp" : it->second;
  }

  // A zero-delay toxic named `name` that only counts the requests `match_json` matches.
  static std::string counting_toxic(const std::string& name, const std::string& protocol, const std::string& match_json) {
    rapidjson::Document doc;
    doc.SetObject();
    auto& a = doc.GetAllocator();
    rapidjson::Document match(&a);
    match.Parse(match_json.c_str(), match_json.size());  // the parser wrote it: an object
    rapidjson::Value attributes(rapidjson::kObjectType);
    attributes.AddMember("delay", 0, a).AddMember("jitter", 0, a).AddMember("match", rapidjson::Value(match, a), a);
    doc.AddMember("name", rapidjson::Value(name.c_str(), a), a)
        .AddMember("type", rapidjson::StringRef(protocol == "resp" ? "resp_delay" : "http_delay"), a)
        .AddMember("stream", "upstream", a)
        .AddMember("attributes", attributes, a);
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    doc.Accept(w);
    return std::string(buf.GetString(), buf.GetSize());
  }

  awaitable<bool> add_traffic_counters() {
    for (const auto& v : d_.verdicts) {
      if (v.type != VerdictType::failover) continue;
      for (std::size_t k = 0; k < v.traffic_exclude.size(); ++k) {
        for (const auto* ref : {&v.primary, &v.backup}) {
          const std::string name = traffic_counter_name(v, k);
          const std::string body = counting_toxic(name, protocol_of(*ref), v.traffic_exclude[k]);
          const auto path = "/proxies/" + escape_segment(ref->proxy) + "/toxics";
          co_await api_call(ref->faultline, "DELETE", path + "/" + escape_segment(name));  // left by an interrupted run
          const auto r = co_await api_call(ref->faultline, "POST", path, body);
          if (r.status != 200) {
            reason_ = v.path + ".traffic.exclude[" + std::to_string(k) + "]: cannot count these requests on " + ref->proxy + ": " +
                      (r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error);
            co_return false;
          }
          counters_.push_back({*ref, name});
        }
      }
    }
    co_return true;
  }

  awaitable<void> remove_traffic_counters() {
    for (const auto& [ref, name] : counters_)
      co_await api_call(ref.faultline, "DELETE", "/proxies/" + escape_segment(ref.proxy) + "/toxics/" + escape_segment(name));
    counters_.clear();
  }

  // ---- metrics -----------------------------------------------------------------------

  awaitable<void> poll_once() {
    for (const auto& [url, names] : metric_names_) {
      const auto r = co_await api_call(url, "GET", "/metrics", {}, 2);
      if (r.status == 200) {
        record.metrics[url].push_back({now(), parse_prometheus(r.body, names)});
      } else {
        record.metric_errors[url] = r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
      }
    }
  }

  awaitable<void> poll_loop() {
    const auto stop = [this] { return poll_stop_; };
    while (!poll_stop_) {
      co_await sleep_until(now() + d_.runtime.metrics_interval, stop);
      if (poll_stop_) break;
      co_await poll_once();
    }
  }

  awaitable<Observation> metric(const MetricSpec& spec, Phase phase) {
    Observation o;
    o.kind = ProbeKind::metric;
    const double t = now();
    auto read = [&](const ApiReply& r) -> std::optional<double> {
      return sum_matching(parse_prometheus(r.body, {spec.name}), spec.name, spec.labels);
    };
    const auto r1 = co_await api_call(spec.faultline, "GET", "/metrics", {}, 5);
    if (r1.status != 200) {
      o.error = r1.error.empty() ? "HTTP " + std::to_string(r1.status) : r1.error;
      co_return o;
    }
    o.answered = true;
    o.value = read(r1);
    if (spec.window > 0) {
      co_await sleep_for(spec.window, phase);
      const auto r2 = co_await api_call(spec.faultline, "GET", "/metrics", {}, 5);
      if (r2.status != 200) {
        o.answered = false;
        o.error = r2.error.empty() ? "HTTP " + std::to_string(r2.status) : r2.error;
        co_return o;
      }
      const auto v2 = read(r2);
      o.value = o.value && v2 ? std::optional<double>(*v2 - *o.value) : std::nullopt;
    }
    o.latency_ms = (now() - t) * 1000;
    co_return o;
  }

  // ---- commands ------------------------------------------------------------------------

  // Runs `work(cancel)` on a helper thread and waits for its result. The work is cancelled
  // when the phase stops (interrupt, fail-fast, abort) and on every interrupt.
  template <typename Result, typename Work>
  awaitable<Result> on_helper_thread(Work work, Phase phase) {
    auto st = std::make_shared<HelperJob<Result>>(co_await net::this_coro::executor);
    cancels_.emplace_back(st, &st->cancel);
    threads_.emplace_back([st, work = std::move(work)] {
      st->result = work(st->cancel);
      net::post(st->timer.get_executor(), [st] {
        st->done = true;
        st->timer.cancel();
      });
    });
    sleepers_.insert(&st->timer);
    const auto stop = stop_for(phase);
    while (!st->done) {
      st->timer.expires_at(net::steady_timer::time_point::max());
      co_await st->timer.async_wait(use_nothrow);
      if (!st->done && stop()) st->cancel = true;
    }
    sleepers_.erase(&st->timer);
    co_return std::move(st->result);
  }

  awaitable<Observation> command(const CommandSpec& spec, Phase phase) {
    // Named, not a temporary in the co_await expression: GCC 12 destroys such temporaries
    // twice when they own memory.
    auto job = [spec](const std::atomic<bool>& cancel) { return run_process(spec, cancel); };
    const ProcessResult r = co_await on_helper_thread<ProcessResult>(std::move(job), phase);
    Observation o;
    o.kind = ProbeKind::command;
    o.answered = r.started && !r.timed_out && !r.cancelled;
    o.error = r.error;
    o.status = r.exit_code;
    o.body = r.out;
    o.stderr_text = r.err;
    o.latency_ms = r.ms;
    co_return o;
  }

  // ---- activities ----------------------------------------------------------------------

  awaitable<Observation> observe(const Activity& a, Phase phase) {
    auto ex = co_await net::this_coro::executor;
    switch (a.provider) {
      case Provider::http: {
        HttpClient client(ex);
        auto o = co_await client.request(std::get<HttpSpec>(a.spec));
        client.close();
        co_return o;
      }
      case Provider::resp: {
        const auto& s = std::get<RespSpec>(a.spec);
        RespClient client(ex);
        auto o = co_await client.call(s.address, s.command, s.timeout);
        client.close();
        co_return o;
      }
      case Provider::tcp: co_return co_await tcp_exchange(std::get<TcpSpec>(a.spec));
      case Provider::metric: co_return co_await metric(std::get<MetricSpec>(a.spec), phase);
      default: co_return co_await command(std::get<CommandSpec>(a.spec), phase);
    }
  }

  static std::string directory_of(const std::string& file) {
    const auto slash = file.rfind('/');
    return slash == std::string::npos ? "" : slash == 0 ? "/" : file.substr(0, slash);
  }

  awaitable<ActivityRecord> execute(const Activity& declared, Phase phase, TaskGroup* group) {
    ActivityRecord r = blank(declared, phase);
    r.start = now();
    // ${replay.NAME.address} becomes the running server's address now; the resolved copy
    // stays alive for whatever the activity leaves running (remove_later keeps a reference).
    Activity copy = declared;
    if (auto e = resolve_replay_refs(copy, [this](const std::string& name) { return replays_.address(name); })) {
      r.ok = false;
      r.why = *e;
      r.observed = *e;
      r.end = now();
      finished(r);
      co_return r;
    }
    // A probe is done with its copy when it returns (the frame keeps it until then); only
    // actions go to resolved_, so probes run continuously do not grow it without bound.
    if (!is_probe_provider(copy.provider)) resolved_.push_back(std::move(copy));
    const Activity& a = is_probe_provider(declared.provider) ? copy : resolved_.back();
    if (is_probe_provider(a.provider)) {
      const Observation o = co_await observe(a, phase);
      const CheckResult c = check(a.tolerance, o);
      r.ok = c.ok;
      r.why = c.ok ? c.why : with_body_start(c.why, o);
      r.observed = o.summary();
      if (a.provider == Provider::command && std::get<CommandSpec>(a.spec).steps) add_steps(a.name, o, r);
      r.latency_ms = o.latency_ms;
      if (a.provider == Provider::http && o.answered) r.http_status = o.status;
    } else {
      co_await act(a, phase, r, group);
    }
    r.end = now();
    finished(r);
    co_return r;
  }

  // A workflow command's own steps become the activity's series, as a load's calls are.
  void add_steps(const std::string& name, const Observation& o, ActivityRecord& r) {
    LoadRecord& out = record.loads[name];
    out.name = name;
    out.target = ProbeKind::command;
    const StepLines steps = parse_steps(o.body, std::chrono::duration<double>(wall0_.time_since_epoch()).count());
    std::size_t ok = 0;
    for (const auto& c : steps.calls) ok += c.ok;
    out.calls.insert(out.calls.end(), steps.calls.begin(), steps.calls.end());
    std::stable_sort(out.calls.begin(), out.calls.end(), [](const LoadCall& x, const LoadCall& y) { return x.start < y.start; });
    r.observed += "; " + std::to_string(steps.calls.size()) + " steps reported, " + std::to_string(ok) + " ok" +
                  (steps.malformed ? ", " + std::to_string(steps.malformed) + " step lines without start, end and ok" : "");
  }

  static std::string toxic_path(const ToxicSpec& t) { return "/proxies/" + escape_segment(t.proxy) + "/toxics"; }

  awaitable<void> act(const Activity& a, Phase phase, ActivityRecord& r, TaskGroup* group) {
    auto api_result = [&](const ApiReply& reply, int want, const std::string& done) {
      r.ok = reply.status == want;
      if (r.ok) r.observed = done;
      else r.why = reply.error.empty() ? "HTTP " + std::to_string(reply.status) : reply.error;
      if (!r.ok) r.observed = r.why;
    };
    switch (a.provider) {
      case Provider::toxic_add: {
        const auto& t = std::get<ToxicSpec>(a.spec);
        const auto reply = co_await api_call(t.faultline, "POST", toxic_path(t), t.body);
        api_result(reply, 200, "added toxic " + t.toxic + " to " + t.proxy +
                                   (t.duration > 0 ? " for " + fmt(t.duration, 3) + " s" : ""));
        if (r.ok && t.duration > 0 && group) group->spawn(remove_later(a, phase));
        break;
      }
      case Provider::toxic_update: {
        const auto& t = std::get<ToxicSpec>(a.spec);
        const auto reply = co_await api_call(t.faultline, "POST", toxic_path(t) + "/" + escape_segment(t.toxic), t.body);
        api_result(reply, 200, "updated toxic " + t.toxic + " on " + t.proxy);
        break;
      }
      case Provider::toxic_remove: {
        const auto& t = std::get<ToxicSpec>(a.spec);
        const auto reply = co_await api_call(t.faultline, "DELETE", toxic_path(t) + "/" + escape_segment(t.toxic));
        if (reply.status == 404 && t.missing_ok && reply.error.find("proxy not found") == std::string::npos) {
          r.ok = true;
          r.observed = "toxic " + t.toxic + " was already gone from " + t.proxy;
        } else {
          api_result(reply, 204, "removed toxic " + t.toxic + " from " + t.proxy);
        }
        break;
      }
      case Provider::proxy_disable:
      case Provider::proxy_enable: {
        const auto& p = std::get<ProxySpec>(a.spec);
        const bool enable = a.provider == Provider::proxy_enable;
        const auto reply = co_await api_call(p.faultline, "POST", "/proxies/" + escape_segment(p.proxy),
                                             enable ? R"({"enabled":true})" : R"({"enabled":false})");
        api_result(reply, 200, std::string(enable ? "enabled " : "disabled ") + p.proxy);
        break;
      }
      case Provider::faultline_reset: {
        const auto& p = std::get<ProxySpec>(a.spec);
        const auto reply = co_await api_call(p.faultline, "POST", "/reset");
        api_result(reply, 204, "reset " + p.faultline);
        break;
      }
      case Provider::wait: {
        const double seconds = std::get<WaitSpec>(a.spec).seconds;
        const double t = now();
        co_await sleep_for(seconds, phase);
        r.ok = true;
        r.observed = "waited " + fmt(now() - t, 3) + " s" + (now() - t + 0.001 < seconds ? " (cut short)" : "");
        break;
      }
      case Provider::load: co_await load(a, phase, r); break;
      case Provider::replay_start:
      case Provider::replay_stop: {
        const auto& spec = std::get<ReplaySpec>(a.spec);
        const auto res = a.provider == Provider::replay_start ? replays_.start(spec) : replays_.stop(spec);
        r.ok = res.ok;
        r.observed = res.ok ? res.output : res.error;
        r.why = res.error;
        break;
      }
      case Provider::replay_client: {
        const auto res = co_await replay_client(std::get<ReplaySpec>(a.spec), phase);
        r.ok = res.ok;
        r.observed = res.ok ? res.output : res.error;
        r.why = res.error;
        break;
      }
      default: break;  // probe providers are handled by execute()
    }
  }

  // replay.client blocks (its own io_context), so it runs on a helper thread like a command.
  awaitable<ReplayActionResult> replay_client(const ReplaySpec& spec, Phase phase) {
    auto job = [spec, this](const std::atomic<bool>& cancel) { return replays_.client(spec, &cancel); };
    co_return co_await on_helper_thread<ReplayActionResult>(std::move(job), phase);
  }

  // toxic.add with a duration: the fault comes out again by itself, and the moment it does
  // is the event NAME.removed (what error_recovery measures recovery from).
  awaitable<void> remove_later(const Activity& a, Phase phase) {
    const auto& t = std::get<ToxicSpec>(a.spec);
    co_await sleep_for(t.duration, phase);  // cut short when the method stops: the fault must not outlive it
    ActivityRecord r = blank(a, phase);
    r.name = a.name + ".removed";
    r.provider = Provider::toxic_remove;
    r.background = true;
    r.start = now();
    const auto reply = co_await api_call(t.faultline, "DELETE", toxic_path(t) + "/" + escape_segment(t.toxic));
    r.end = now();
    r.ok = reply.status == 204 || reply.status == 404;
    r.observed = r.ok ? "removed toxic " + t.toxic + " from " + t.proxy + " after its duration" : reply.error;
    if (!r.ok) r.why = reply.error;
    record.events.emplace(a.name + ".removed", r.end);
    if (opts_.progress) std::cout << progress_line(r) << std::endl;
    (phase == Phase::rollback ? record.rollbacks : record.method).push_back(std::move(r));
  }

  // ---- loads ---------------------------------------------------------------------------

  struct LoadState {
    std::uint64_t next = 0;
    double start = 0, deadline = 0;
    std::vector<std::uint64_t> acknowledged;
    bool cut_short = false;
  };

  awaitable<void> load_worker(const LoadSpec& spec, LoadState& st, LoadRecord& out, Phase phase) {
    auto ex = co_await net::this_coro::executor;
    HttpClient http(ex);
    RespClient resp(ex);
    const auto stop = stop_for(phase);
    for (;;) {
      if (stop()) {
        st.cut_short = true;
        break;
      }
      const std::uint64_t i = st.next;
      if (spec.requests && i >= *spec.requests) break;
      LoadCall call;
      if (spec.rate > 0) {
        // Open-loop pacing: call i is due at start + i/rate, on whichever worker is free. A
        // call is never sent after the load's end: one whose time came while every worker was
        // busy is recorded as not sent, not silently made late (the wall time stays bounded).
        const double due = st.start + static_cast<double>(i) / spec.rate;
        if (due >= st.deadline) break;
        ++st.next;
        co_await sleep_until(due, stop);
        if (stop()) {
          st.cut_short = true;
          break;
        }
        call.start = due;
        if (now() >= st.deadline) {
          call.sent = false;
          call.latency_ms = (st.deadline - due) * 1000;  // a lower bound: it waited at least this long
          call.detail = "not sent: every worker was busy until the load's end";
          out.calls.push_back(std::move(call));
          continue;
        }
        call.late_ms = std::max(0.0, (now() - due) * 1000);
      } else {
        if (now() >= st.deadline) break;
        ++st.next;
        call.start = now();
      }
      Observation o;
      switch (spec.target) {
        case ProbeKind::http: {
          HttpSpec h = spec.http;
          h.url = expand_index(h.url, i);
          if (h.body) h.body = expand_index(*h.body, i);
          o = co_await http.request(h);
          break;
        }
        case ProbeKind::resp: {
          std::vector<std::string> cmd;
          for (const auto& arg : spec.resp.command) cmd.push_back(expand_index(arg, i));
          o = co_await resp.call(spec.resp.address, cmd, spec.resp.timeout);
          break;
        }
        default: {
          TcpSpec t = spec.tcp;
          t.send = expand_index(t.send, i);
          o = co_await tcp_exchange(t);
          break;
        }
      }
      const CheckResult c = check(spec.success, o);
      call.latency_ms = o.latency_ms + call.late_ms;  // from the intended start (coordinated omission)
      call.ok = c.ok;
      call.status = o.kind == ProbeKind::http && o.answered ? o.status : 0;
      if (!c.ok) call.detail = with_body_start(c.why, o);
      out.calls.push_back(std::move(call));
      if (c.ok && spec.verify) st.acknowledged.push_back(i);
    }
    http.close();
    resp.close();
  }

  awaitable<void> load(const Activity& a, Phase phase, ActivityRecord& r) {
    const auto& spec = std::get<LoadSpec>(a.spec);
    LoadRecord& out = record.loads[a.name];
    out.name = a.name;
    out.target = spec.target;
    const std::size_t before = out.calls.size();
    LoadState st;
    st.start = now();
    st.deadline = spec.duration > 0 ? st.start + spec.duration : HUGE_VAL;
    {
      TaskGroup workers(co_await net::this_coro::executor);
      for (unsigned w = 0; w < spec.concurrency; ++w) workers.spawn(load_worker(spec, st, out, phase));
      co_await workers.wait();
    }
    // Workers finish out of order; verdicts read calls by start time.
    std::stable_sort(out.calls.begin(), out.calls.end(), [](const LoadCall& x, const LoadCall& y) { return x.start < y.start; });
    const std::size_t n = out.calls.size() - before;
    std::size_t ok = 0, not_sent = 0;
    double total_ms = 0, max_late = 0;
    for (std::size_t k = before; k < out.calls.size(); ++k) {
      ok += out.calls[k].ok;
      not_sent += !out.calls[k].sent;
      total_ms += out.calls[k].latency_ms;
      max_late = std::max(max_late, out.calls[k].late_ms);
    }
    r.ok = true;  // a load records; verdicts judge
    r.observed = std::to_string(n) + " calls, " + std::to_string(ok) + " ok" +
                 (n ? " (" + fmt(100.0 * static_cast<double>(ok) / static_cast<double>(n), 1) + "%), avg " +
                          fmt(total_ms / static_cast<double>(n), 2) + " ms"
                    : "") +
                 (not_sent ? ", " + std::to_string(not_sent) + " not sent (every worker busy)" : "") +
                 (max_late >= 10 ? ", sent up to " + fmt(max_late, 0) + " ms late" : "") + (st.cut_short ? ", stopped early" : "");
    if (spec.verify) co_await verify(spec, st, out);
  }

  // Reads back every acknowledged write: "no acknowledged write lost" (V.5).
  awaitable<void> verify(const LoadSpec& spec, LoadState& st, LoadRecord& out) {
    WriteCheck w = out.writes.value_or(WriteCheck{});
    w.ran = true;
    w.acknowledged += st.acknowledged.size();
    std::sort(st.acknowledged.begin(), st.acknowledged.end());
    RespClient client(co_await net::this_coro::executor);
    for (const auto i : st.acknowledged) {
      std::vector<std::string> cmd;
      for (const auto& arg : spec.verify->command) cmd.push_back(expand_index(arg, i));
      auto o = co_await client.call(spec.verify->address, cmd, spec.resp.timeout);
      if (!o.answered) o = co_await client.call(spec.verify->address, cmd, spec.resp.timeout);  // once more, fresh connection
      if (!o.answered) {
        w.error = "cannot read the writes back from " + spec.verify->address + ": " + o.error;
        break;
      }
      if (o.reply.render() == Scalar::of(expand_index(spec.verify->expect, i))) {
        ++w.verified;
      } else {
        ++w.lost;
        if (w.examples.size() < 5) w.examples.push_back((cmd.size() > 1 ? cmd[1] : cmd[0]) + " = " + o.reply.render().display());
      }
    }
    client.close();
    out.writes = w;
  }

  // ---- phases ---------------------------------------------------------------------------

  awaitable<void> step(const Activity& a, Phase phase, std::vector<ActivityRecord>& list, TaskGroup& group) {
    if (a.background) {
      ActivityRecord placeholder = blank(a, phase);
      placeholder.start = now();
      placeholder.observed = "(still running)";
      list.push_back(placeholder);
      group.spawn(background(a, phase, &list, list.size() - 1, &group));
      co_return;
    }
    if (a.pause_before > 0) co_await sleep_for(a.pause_before, phase);
    auto r = co_await execute(a, phase, &group);
    const bool failed = !r.ok;
    const std::string why = r.why;
    list.push_back(std::move(r));
    if (failed && a.abort_on_failure && phase == Phase::method) abort_method(a.name + " failed: " + why);
    if (a.pause_after > 0) co_await sleep_for(a.pause_after, phase);
  }

  awaitable<void> background(const Activity& a, Phase phase, std::vector<ActivityRecord>* list, std::size_t index,
                             TaskGroup* group) {
    if (a.pause_before > 0) co_await sleep_for(a.pause_before, phase);
    auto r = co_await execute(a, phase, group);
    const bool failed = !r.ok;
    const std::string why = r.why;
    (*list)[index] = std::move(r);
    if (failed && a.abort_on_failure && phase == Phase::method) abort_method(a.name + " failed: " + why);
    if (a.pause_after > 0) co_await sleep_for(a.pause_after, phase);
  }

  awaitable<HypothesisRun> hypothesis(Phase phase) {
    HypothesisRun run;
    run.phase = phase;
    run.start = now();
    run.met = true;
    // Every probe runs (Chaos Toolkit stops at the first failure), so the report and the
    // JUnit file show the state of each one.
    for (const auto& p : d_.hypothesis) {
      if (p.pause_before > 0) co_await sleep_for(p.pause_before, phase);
      auto r = co_await execute(p, phase, nullptr);
      run.met = run.met && r.ok;
      run.probes.push_back(std::move(r));
      if (p.pause_after > 0) co_await sleep_for(p.pause_after, phase);
    }
    co_return run;
  }

  awaitable<void> continuous() {
    const double frequency = d_.runtime.frequency;
    double next = now() + (d_.runtime.hypothesis == HypothesisStrategy::during_method_only ? 0 : frequency);
    const auto stop = stop_for(Phase::during);
    for (;;) {
      co_await sleep_until(next, stop);
      if (stop()) break;
      auto run = co_await hypothesis(Phase::during);
      const bool met = run.met;
      const std::string why = first_failure(run);
      record.hypothesis.push_back(std::move(run));
      if (!met) {
        deviated_ = true;
        if (reason_.empty()) reason_ = "the steady state did not hold during the method (" + why + ")";
        if (d_.runtime.fail_fast) {
          failed_ = true;
          reason_ = "the steady state did not hold during the method (" + why + "); fail_fast stopped the method";
          stop_method_ = true;
          wake_all();
          break;
        }
      }
      next = std::max(next + frequency, now());
    }
  }

  awaitable<void> method() {
    auto ex = co_await net::this_coro::executor;
    TaskGroup group(ex), during(ex), poller(ex);
    record.events["method.start"] = now();
    const bool polling = !metric_names_.empty();
    if (polling) {
      co_await poll_once();  // the baseline before anything is injected
      poller.spawn(poll_loop());
    }
    const auto hs = d_.runtime.hypothesis;
    if (!d_.hypothesis.empty() && (hs == HypothesisStrategy::continuously || hs == HypothesisStrategy::during_method_only))
      during.spawn(continuous());
    for (const auto& a : d_.method) {
      if (method_stopping()) {
        record.method.push_back(skipped(a, Phase::method));
        continue;
      }
      co_await step(a, Phase::method, record.method, group);
    }
    co_await group.wait();  // background activities end with the method (Chaos Toolkit)
    method_done_ = true;
    wake_all();
    co_await during.wait();
    record.events["method.end"] = now();
    if (polling) {
      poll_stop_ = true;
      wake_all();
      co_await poller.wait();
      co_await poll_once();
    }
    co_await remove_traffic_counters();  // after the last poll has read them
  }

  awaitable<void> rollbacks() {
    TaskGroup group(co_await net::this_coro::executor);
    for (const auto& a : d_.rollbacks) {
      // One failed rollback does not stop the others (Chaos Toolkit); only a second
      // interrupt does.
      if (hard_stop_) {
        record.rollbacks.push_back(skipped(a, Phase::rollback));
        continue;
      }
      co_await step(a, Phase::rollback, record.rollbacks, group);
    }
    co_await group.wait();
  }

  net::io_context& ioc_;
  const Drill& d_;
  const RunOptions& opts_;
  clock::time_point t0_;
  std::unique_ptr<net::signal_set> signals_;
  std::set<net::steady_timer*> sleepers_;
  std::map<std::string, std::vector<std::string>> metric_names_;  // faultline URL -> series names to keep
  std::vector<std::pair<ProxyRef, std::string>> counters_;        // traffic-counting toxics added
  std::chrono::system_clock::time_point wall0_ = std::chrono::system_clock::now();  // the run's start, for command steps
  std::vector<std::shared_ptr<std::atomic<bool>>> cancels_;  // of every helper-thread job
  std::vector<std::thread> threads_;
  ReplayActions replays_;
  std::deque<Activity> resolved_;  // actions as run (replay addresses filled in); outlive them
  bool interrupted_ = false, hard_stop_ = false, stop_method_ = false, method_done_ = false, poll_stop_ = false;
  bool aborted_ = false, failed_ = false, deviated_ = false;
  std::string reason_;
};

std::string iso_now(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::system_clock::to_time_t(t);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int GCC can imagine in each field (-Wformat-truncation)
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

bool write_file(const std::string& path, const std::string& text) {
  std::string error;
  if (rec::write_file_replacing(path, text, error)) return true;
  std::cerr << "faultline drill: cannot write " << error << "\n";
  return false;
}

}  // namespace

int run_drill(const RunOptions& options) {
  Drill drill;
  ParseOptions parse = options.parse;
  parse.placeholders = options.check_only;  // CI lints drills without the stack's environment
  if (auto error = load_drill(options.drill_path, parse, drill)) {
    std::cerr << "faultline drill: " << *error << "\n";
    return 2;
  }
  if (options.check_only) {
    for (const auto& note : drill.notes) std::cout << options.drill_path << ": note: " << note << "\n";
    std::cout << options.drill_path << ": ok (" << drill.hypothesis.size() << " hypothesis probes, " << drill.method.size()
              << " method steps, " << drill.rollbacks.size() << " rollbacks, " << drill.verdicts.size() << " verdicts)\n";
    return 0;
  }
  RunReport report;
  report.drill = &drill;
  report.version = FAULTLINE_VERSION;
  const auto wall = std::chrono::system_clock::now();
  const auto start = clock::now();
  report.started_at = iso_now(wall);
  {
    net::io_context ioc;
    Runner runner(ioc, drill, options);
    std::string crash;
    net::co_spawn(ioc, runner.run(), [&](std::exception_ptr e) {
      // Everything the run started is awaited by then; after an unexpected exception the
      // signal wait (and whatever else) would keep the loop alive, so end it here.
      ioc.stop();
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        crash = x.what();
      }
    });
    ioc.run();
    report.record = std::move(runner.record);
    report.outcome = runner.outcome;
    if (!crash.empty()) {
      report.outcome.status = Status::aborted;
      report.outcome.reason = "internal error: " + crash;
    }
  }
  report.duration = std::chrono::duration<double>(clock::now() - start).count();
  if (!report.outcome.preflight_failed) report.verdicts = evaluate_verdicts(drill.verdicts, report.record);
  report.exit_code = exit_code(report.outcome, report.verdicts);

  bool written = true;
  if (!options.report_json.empty()) written = write_file(options.report_json, report_json(report)) && written;
  if (!options.junit.empty()) written = write_file(options.junit, report_junit(report)) && written;
  if (report.outcome.preflight_failed) {
    std::cerr << "faultline drill: could not run " << options.drill_path << ": " << report.outcome.reason << "\n";
  } else if (!options.quiet) {
    std::cout << report_table(report) << std::flush;
  }
  return written ? report.exit_code : 2;
}

}  // namespace faultline::drill
