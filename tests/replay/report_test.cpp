#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include "replay/report.hpp"
#include "support.hpp"

using namespace faultline::drill;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A finished run: hypothesis held before and failed after (deviated), one verdict passes and
// one fails.
struct Fixture {
  Drill drill;
  RunReport report;
  Fixture() {
    const auto error = drill_test::parse(R"({"title": "LOADING <storm> & recovery",
      "steady-state-hypothesis": {"probes": [
        {"name": "ping", "provider": {"type": "resp", "address": "h:1", "command": ["PING"]}, "tolerance": "+PONG"},
        {"name": "health", "provider": {"type": "http", "url": "http://h:2/"}, "tolerance": 200}]},
      "method": [
        {"type": "action", "name": "gets", "provider": {"type": "load", "requests": 3, "target": {"type": "resp", "address": "h:1", "command": ["GET", "k"]}}},
        {"type": "action", "name": "heal", "provider": {"type": "toxic.remove", "proxy": "redis", "toxic": "t"}}],
      "verdicts": [
        {"type": "success_rate", "name": "half", "criterion": "V.1", "source": "gets", "threshold": 0.5},
        {"type": "success_rate", "name": "all", "criterion": "V.3", "source": "gets", "threshold": 0.99}]})",
                                         drill, drill_test::options());
    REQUIRE(error.empty());
    drill.file = "d.json";
    drill.seed = 42;
    auto probe = [](const char* name, Provider p, Phase phase, bool ok, const char* why) {
      ActivityRecord a;
      a.name = name;
      a.provider = p;
      a.probe = true;
      a.phase = phase;
      a.ok = ok;
      a.why = why;
      a.observed = ok ? "+PONG" : "error: connection refused";
      a.end = 0.001;
      return a;
    };
    HypothesisRun before, after;
    before.phase = Phase::before;
    before.met = true;
    before.probes = {probe("ping", Provider::resp, Phase::before, true, ""), probe("health", Provider::http, Phase::before, true, "")};
    after.phase = Phase::after;
    after.start = 3;
    after.probes = {probe("ping", Provider::resp, Phase::after, true, ""),
                    probe("health", Provider::http, Phase::after, false, "status 503, expected 200 <&>")};
    report.record.hypothesis = {before, after};
    ActivityRecord load;
    load.name = "gets";
    load.provider = Provider::load;
    load.ok = true;
    load.observed = "3 calls, 2 ok";
    report.record.method.push_back(load);
    LoadRecord calls;
    calls.name = "gets";
    calls.target = ProbeKind::resp;
    calls.calls = {{0.1, 1.5, true, 0, ""}, {0.2, 2.5, false, 0, "reply \"-LOADING\""}, {0.3, 0.5, true, 0, ""}};
    calls.calls[2].late_ms = 0.4;  // sent 0.4 ms after its intended start
    report.record.loads["gets"] = calls;
    report.record.events = {{"gets.start", 0.1}, {"gets.end", 0.4}};
    report.drill = &drill;
    report.outcome.deviated = true;
    report.outcome.reason = "the steady state did not hold after the method (health: status 503)";
    report.verdicts = evaluate_verdicts(drill.verdicts, report.record);
    report.exit_code = exit_code(report.outcome, report.verdicts);
    report.started_at = "2024-01-01T00:00:00.000Z";
    report.duration = 3.25;
    report.version = "0.1.0";
  }
};

}  // namespace

TEST_CASE("the JSON report has Chaos Toolkit's journal fields plus loads, events and verdicts") {
  Fixture f;
  const std::string text = report_json(f.report);
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(std::string(doc["status"].GetString()) == "completed");
  CHECK(doc["deviated"].GetBool());
  CHECK(std::string(doc["result"].GetString()) == "fail");
  CHECK(doc["exit_code"].GetInt() == 1);
  CHECK(doc["seed"].GetUint64() == 42);
  CHECK(std::string(doc["drill"]["file"].GetString()) == "d.json");
  CHECK(doc["steady_states"]["before"]["steady_state_met"].GetBool());
  CHECK_FALSE(doc["steady_states"]["after"]["steady_state_met"].GetBool());
  CHECK(doc["steady_states"]["during"].IsArray());
  const auto& failed = doc["steady_states"]["after"]["probes"][1];
  CHECK(std::string(failed["status"].GetString()) == "failed");
  CHECK(std::string(failed["error"].GetString()) == "status 503, expected 200 <&>");
  CHECK(doc["run"].Size() == 1);
  CHECK(std::string(doc["run"][0]["provider"].GetString()) == "load");
  const auto& load = doc["loads"]["gets"];
  CHECK(load["calls"].GetInt() == 3);
  CHECK(load["ok"].GetInt() == 2);
  CHECK(load["latency_ms"]["max"].GetDouble() == 2.5);
  CHECK(load["not_sent"].GetInt() == 0);
  CHECK(load["late_ms"]["max"].GetDouble() == 0.4);
  REQUIRE(load["timeline"].Size() == 3);
  CHECK(load["timeline"][1][2].IsFalse());
  CHECK(std::string(load["timeline"][1][4].GetString()) == "reply \"-LOADING\"");
  CHECK(doc["events"]["gets.end"].GetDouble() == 0.4);
  REQUIRE(doc["verdicts"].Size() == 2);
  CHECK(doc["verdicts"][0]["passed"].GetBool());
  CHECK_FALSE(doc["verdicts"][1]["passed"].GetBool());
  CHECK(std::string(doc["verdicts"][1]["criterion"].GetString()) == "V.3");
  CHECK(doc["verdicts"][1]["failures"].Size() == 1);
  CHECK(doc["verdicts"][1]["measured"]["success_rate"].GetDouble() == Approx(2.0 / 3).epsilon(1e-5));
}

TEST_CASE("the JUnit report: a testcase per verdict and per hypothesis probe and phase") {
  Fixture f;
  const std::string xml = report_junit(f.report);
  CHECK(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"faultline drill\" tests=\"7\" failures=\"3\" errors=\"0\" skipped=\"0\" time=\"3.250\">", 0) == 0);
  CHECK(count(xml, "<testsuite ") == 1);
  CHECK(xml.find("<testsuite name=\"LOADING &lt;storm&gt; &amp; recovery\"") != std::string::npos);
  CHECK(count(xml, "<testcase ") == 7);  // run + 2 probes x (before, after) + 2 verdicts
  CHECK(xml.find("<testcase classname=\"drill.steady-state.before\" name=\"ping\"") != std::string::npos);
  CHECK(xml.find("<testcase classname=\"drill.steady-state.after\" name=\"health\" time=\"0.001\">\n"
                 "      <failure message=\"status 503, expected 200 &lt;&amp;&gt;\">") != std::string::npos);
  CHECK(xml.find("<testcase classname=\"drill.verdicts\" name=\"all (V.3)\"") != std::string::npos);
  CHECK(xml.find("<failure message=\"success rate 66.7% is below 99%: 1 of 3 steps failed") != std::string::npos);
  CHECK(xml.find("<testcase classname=\"drill\" name=\"run\" time=\"3.250\">\n      <failure message=\"status completed, deviated\">") !=
        std::string::npos);
  CHECK(xml.find("<property name=\"seed\" value=\"42\"/>") != std::string::npos);
  CHECK(count(xml, "<failure ") == 3);
  CHECK(xml.find("</testsuites>\n") == xml.size() - 14);
}

TEST_CASE("JUnit: a drill that could not run is an error, a phase that did not run is skipped") {
  Fixture f;
  f.report.record.hypothesis.resize(1);  // only "before" ran
  f.report.outcome = Outcome{};
  f.report.outcome.status = Status::aborted;
  f.report.outcome.reason = "heal failed: HTTP 404: proxy not found";
  f.report.exit_code = exit_code(f.report.outcome, f.report.verdicts);
  const std::string xml = report_junit(f.report);
  CHECK(f.report.exit_code == 2);
  CHECK(xml.find("<error message=\"status aborted\">heal failed: HTTP 404: proxy not found</error>") != std::string::npos);
  CHECK(count(xml, "<skipped message=\"not run\"/>") == 2);
  CHECK(xml.find("errors=\"1\"") != std::string::npos);
}

TEST_CASE("the terminal table lists steps in order and each verdict with its reasons") {
  Fixture f;
  const std::string table = report_table(f.report);
  CHECK(table.rfind("drill: LOADING <storm> & recovery  (seed 42)\n", 0) == 0);
  CHECK(table.find("  before    ok   ping (resp): +PONG") < table.find("  method    ok   gets (load)"));
  CHECK(table.find("  method    ok   gets (load)") < table.find("  after     FAIL health (http)"));
  CHECK(table.find("  PASS  half [V.1]: 66.7% of 3 calls of gets succeeded (threshold 50%)") != std::string::npos);
  CHECK(table.find("  FAIL  all [V.3]: ") != std::string::npos);
  CHECK(table.find("          - success rate 66.7% is below 99%") != std::string::npos);
  CHECK(table.find("result: FAILED (status completed, deviated) in 3.25 s") != std::string::npos);
}

TEST_CASE("XML escaping keeps the file well formed") {
  CHECK(xml_escape("a<b>&\"c'\x01") == "a&lt;b&gt;&amp;&quot;c&apos;?");
}
