#include <catch2/catch.hpp>

#include "replay/drill.hpp"
#include "replay/record.hpp"
#include "support.hpp"

using namespace faultline::drill;
using drill_test::error_of;
using drill_test::options;
using drill_test::parse;

namespace {

// A drill that uses most of the vocabulary; tests below break one thing at a time.
const char* kDrill = R"({
  "title": "Redis LOADING storm recovers",
  "description": "LOADING on GETs for 2 s; GETs must succeed again within 1 s",
  "configuration": {
    "redis": {"type": "env", "key": "REDIS_ADDR", "default": "127.0.0.1:6379"},
    "threshold": {"type": "env", "key": "THRESHOLD", "default": 0.5},
    "faultline_url": "http://127.0.0.1:9999/"
  },
  "steady-state-hypothesis": {
    "title": "redis answers",
    "probes": [
      {"type": "probe", "name": "ping", "provider": {"type": "resp", "address": "${redis}", "command": ["PING"]},
       "tolerance": "+PONG", "critical": true},
      {"type": "probe", "name": "health", "provider": {"type": "http", "url": "http://127.0.0.1:8080/health", "timeout": [1, 2]},
       "tolerance": [{"type": "range", "range": [200, 299]}, {"type": "jsonpath", "path": "$.status", "expect": "ok"}]}
    ]
  },
  "method": [
    {"type": "action", "name": "gets", "background": true,
     "provider": {"type": "load", "target": {"type": "resp", "address": "${redis}", "command": ["GET", "k{i}"]},
                  "duration": 4, "concurrency": 4, "rate": 100}},
    {"type": "action", "name": "inject", "pauses": {"before": 0.5},
     "provider": {"type": "toxic.add", "proxy": "redis",
                  "toxic": {"type": "resp_error", "attributes": {"error": "LOADING x", "match": {"command": "GET"}}},
                  "duration": 2}},
    {"type": "probe", "name": "count", "provider": {"type": "metric", "name": "faultline_proxy_requests_total", "labels": {"proxy": "redis"}}},
    {"type": "action", "name": "sleep", "provider": {"type": "wait", "seconds": 1}},
    {"ref": "ping"}
  ],
  "rollbacks": [
    {"type": "action", "name": "heal", "provider": {"type": "toxic.remove", "proxy": "redis", "toxic": "resp_error_downstream"}}
  ],
  "runtime": {"hypothesis": {"strategy": "continuously", "frequency": 0.5, "fail_fast": true}, "rollbacks": {"strategy": "always"}},
  "verdicts": [
    {"type": "error_recovery", "name": "recovers", "criterion": "V.2", "source": "gets", "after": "inject.removed", "within": 1,
     "retries": {"proxy": "redis", "max": 3}},
    {"type": "success_rate", "source": ["gets"], "threshold": "${threshold}", "from": "inject.start", "until": "method.end"},
    {"type": "latency", "source": "gets", "avg": 100, "p99": 250},
    {"type": "no_critical_errors"},
    {"type": "aggregate", "name": "V.8"}
  ]
})";

// The error kDrill gives with the first `from` in it (there must be one) replaced by `to`.
std::string with(const std::string& from, const std::string& to) {
  std::string text = kDrill;
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return error_of(text);
}

}  // namespace

TEST_CASE("a full drill parses with defaults, env, substitution and references resolved") {
  Drill d;
  REQUIRE(parse(kDrill, d, options({{"REDIS_ADDR", "10.0.0.1:7000"}})) == "");
  CHECK(d.title == "Redis LOADING storm recovers");
  CHECK(d.faultline_url == "http://127.0.0.1:9999");
  REQUIRE(d.hypothesis.size() == 2);
  const auto& ping = d.hypothesis[0];
  CHECK(ping.probe);
  CHECK(ping.critical);
  CHECK(ping.provider == Provider::resp);
  CHECK(std::get<RespSpec>(ping.spec).address == "10.0.0.1:7000");
  REQUIRE(ping.tolerance);
  CHECK(ping.tolerance->kind == Tolerance::Kind::equals);
  const auto& health = std::get<HttpSpec>(d.hypothesis[1].spec);
  CHECK(health.connect_timeout == 1);
  CHECK(health.timeout == 3);
  CHECK(d.hypothesis[1].tolerance->kind == Tolerance::Kind::all);

  REQUIRE(d.method.size() == 5);
  const auto& load = std::get<LoadSpec>(d.method[0].spec);
  CHECK(d.method[0].background);
  CHECK(load.target == ProbeKind::resp);
  CHECK(load.resp.command == std::vector<std::string>{"GET", "k{i}"});  // {i} is per call, not a variable
  CHECK(load.concurrency == 4);
  const auto& toxic = std::get<ToxicSpec>(d.method[1].spec);
  CHECK(toxic.faultline == "http://127.0.0.1:9999");
  CHECK(toxic.toxic == "resp_error_downstream");  // Toxiproxy's default name
  CHECK(toxic.duration == 2);
  CHECK(d.method[1].pause_before == 0.5);
  CHECK(d.method[1].abort_on_failure);   // actions abort by default
  CHECK_FALSE(d.method[2].abort_on_failure);  // probes only record
  CHECK(std::get<MetricSpec>(d.method[2].spec).labels.at("proxy") == "redis");
  CHECK(d.method[4].name == "ping");  // the ref
  CHECK(d.method[4].path == "$.method[4]");

  CHECK(d.runtime.hypothesis == HypothesisStrategy::continuously);
  CHECK(d.runtime.frequency == 0.5);
  CHECK(d.runtime.fail_fast);
  CHECK(d.runtime.rollbacks == RollbackStrategy::always);

  REQUIRE(d.verdicts.size() == 5);
  CHECK(d.verdicts[0].after == "inject.removed");
  CHECK(d.verdicts[0].retries->proxy.proxy == "redis");
  CHECK(d.verdicts[1].name == "success_rate");
  CHECK(d.verdicts[1].threshold == 0.5);  // "${threshold}" became the number
  CHECK(d.verdicts[1].from == "inject.start");
  CHECK(d.verdicts[1].until == "method.end");
  CHECK(d.verdicts[2].p99 == 250);
  CHECK(d.verdicts[4].type == VerdictType::aggregate);
  CHECK(d.faultline_urls() == std::vector<std::string>{"http://127.0.0.1:9999"});
  const auto used = d.proxies_used();
  REQUIRE(used.size() == 2);
  CHECK(used[0].first == "$.method[1].provider.proxy");
}

TEST_CASE("environment values take the default's type, and --var wins over both") {
  Drill d;
  REQUIRE(parse(kDrill, d, options({{"THRESHOLD", "0.99"}})) == "");
  CHECK(d.verdicts[1].threshold == 0.99);
  CHECK(error_of(kDrill, options({{"THRESHOLD", "high"}})) ==
        "$.configuration.threshold: environment variable THRESHOLD=\"high\" is not a number");
  auto o = options({{"THRESHOLD", "0.99"}});
  o.vars = {{"threshold", "0.75"}, {"extra", "x"}};
  REQUIRE(parse(kDrill, d, o) == "");
  CHECK(d.verdicts[1].threshold == 0.75);
  o.seed = 42;
  REQUIRE(parse(kDrill, d, o) == "");
  CHECK(d.seed == 42u);
  bool has_seed = false;
  for (const auto& [k, v] : d.configuration) has_seed = has_seed || (k == "seed" && v == "42");
  CHECK(has_seed);
}

TEST_CASE("the default faultline URL: configuration, then TOXIPROXY_URL, then 127.0.0.1:8474") {
  const std::string minimal = R"({"title": "t", "method": [{"type": "action", "name": "w", "provider": {"type": "wait", "seconds": 0}}]})";
  Drill d;
  REQUIRE(parse(minimal, d) == "");
  CHECK(d.faultline_url == "http://127.0.0.1:8474");
  REQUIRE(parse(minimal, d, options({{"TOXIPROXY_URL", "localhost:1234"}})) == "");
  CHECK(d.faultline_url == "http://localhost:1234");
}

TEST_CASE("errors name the JSON path and the reason") {
  CHECK(with(R"("url": "http://127.0.0.1:8080/health")", R"("url": 8080)") ==
        "$.steady-state-hypothesis.probes[1].provider.url: expected a string, got a number");
  CHECK(with(R"("seconds": 1)", R"("seconds": -1)") == "$.method[3].provider.seconds: must be at least 0, got -1");
  CHECK(with(R"("seconds": 1)", R"("secs": 1)") ==
        "$.method[3].provider.secs: unknown field (expected one of: type, seconds)");
  CHECK(with(R"("tolerance": "+PONG")", R"("tolerence": "+PONG")").rfind("$.steady-state-hypothesis.probes[0].tolerence: unknown field", 0) == 0);
  CHECK(with(R"({"ref": "ping"})", R"({"ref": "pong"})") ==
        "$.method[4].ref: no activity named \"pong\" is declared before this reference");
  CHECK(with(R"("name": "sleep")", R"("name": "gets")") ==
        "$.method[3].name: \"gets\" is already the name of $.method[0] (names must be unique)");
  CHECK(with(R"("after": "inject.removed")", R"("after": "nothing")") ==
        "$.verdicts[0].after: no method or rollback activity named \"nothing\" (or use method.start / method.end; an offset is "
        "written NAME+2s or NAME-500ms)");
  CHECK(with(R"("after": "inject.removed")", R"("after": "sleep.removed")") ==
        "$.verdicts[0].after: \"sleep\" is not a toxic.add with a duration, so it has no .removed");
  CHECK(with(R"("source": "gets", "avg")", R"("source": "ghost", "avg")") == "$.verdicts[2].source: no load or probe named \"ghost\"");
  CHECK(with(R"("threshold": "${threshold}")", R"("threshold": 2)") == "$.verdicts[1].threshold: must be between 0 and 1, got 2");
  CHECK(with(R"("address": "${redis}", "command": ["PING"])", R"("address": "${nope}", "command": ["PING"])") ==
        "$.steady-state-hypothesis.probes[0].provider.address: unknown configuration variable \"nope\" (define it under "
        "configuration or with --var)");
  CHECK(with(R"("address": "${redis}", "command": ["PING"])", R"("address": "redis", "command": ["PING"])") ==
        "$.steady-state-hypothesis.probes[0].provider.address: expected host:port, got \"redis\"");
  CHECK(with(R"("type": "toxic.add")", R"("type": "toxic.ad")").rfind("$.method[1].provider.type: unknown provider type \"toxic.ad\"", 0) == 0);
  CHECK(with(R"({"type": "metric", "name": "faultline_proxy_requests_total", "labels": {"proxy": "redis"}})",
             R"({"type": "wait", "seconds": 1})") ==
        "$.method[2].provider.type: \"wait\" is an action; declare it with \"type\": \"action\"");
  CHECK(with(R"("http://127.0.0.1:8080/health")", R"("https://example.com/health")") ==
        "$.steady-state-hypothesis.probes[1].provider.url: https URLs are not supported by drill probes yet");
  CHECK(with(R"("path": "$.status")", R"("path": "$..status")") ==
        "$.steady-state-hypothesis.probes[1].tolerance[1].path: recursive descent (..) is not supported");
  CHECK(with(R"({"type": "range", "range": [200, 299]})", R"({"type": "range", "range": [299, 200]})") ==
        "$.steady-state-hypothesis.probes[1].tolerance[0].range: low bound is above the high bound");
  CHECK(with(R"("duration": 4, "concurrency": 4)", R"("concurrency": 4)") ==
        "$.method[0].provider: give requests (a count) and/or duration (seconds)");
  CHECK(with(R"({"type": "aggregate", "name": "V.8"})", R"({"type": "aggregate", "name": "V.8", "of": ["recovers", "V.8"]})") ==
        "$.verdicts[4].of: an aggregate cannot include itself");
  CHECK(with(R"("strategy": "continuously")", R"("strategy": "sometimes")") ==
        "$.runtime.hypothesis.strategy: expected default, before-method-only, after-method-only, during-method-only or continuously");
  CHECK(with(R"("type": "success_rate")", R"("type": "succes_rate")").rfind("$.verdicts[1].type: unknown verdict type", 0) == 0);
  // A typo names the key it probably meant.
  CHECK(with(R"("within": 1,)", R"("withn": 1,)") ==
        "$.verdicts[0].withn: unknown field (did you mean \"within\"?) (expected one of: type, name, criterion, description, source, "
        "after, fault, within, later_success_rate, success_rate, max_recovery, require_failure, retries, from, until)");
  CHECK(with(R"("max": 3}},)", R"("max": 3}, "fault": "sleep"},)") ==
        "$.verdicts[0].fault: no toxic.add or proxy.disable activity named \"sleep\"");
  CHECK(with(R"("retries": {"proxy": "redis", "max": 3}})", R"("retries": {"proxy": "redis"}})") ==
        "$.verdicts[0].retries: give min (proof that retries happened) and/or max (a budget)");
  CHECK(with(R"("after": "inject.removed")", R"("after": "sleep")") ==
        "$.verdicts[0].after: which fault is recovered from? \"sleep.end\" is not a toxic.add or proxy.disable: name it in \"fault\" "
        "(its effect is read from faultline's counters), or set \"require_failure\": false");
}

TEST_CASE("a toxic with a misspelt type or attribute is refused when the drill is read, without a server") {
  CHECK(with(R"("type": "resp_error", "attributes")", R"("type": "resp_eror", "attributes")")
            .rfind("$.method[1].provider.toxic: invalid toxic type \"resp_eror\" (did you mean \"resp_error\"?) (valid types: ", 0) == 0);
  CHECK(with(R"("error": "LOADING x")", R"("eror": "LOADING x")")
            .rfind("$.method[1].provider.toxic: attribute eror is unknown to resp_error (did you mean \"error\"?)", 0) == 0);
  CHECK(with(R"({"type": "action", "name": "sleep", "provider": {"type": "wait", "seconds": 1}})",
             R"({"type": "action", "name": "sleep", "provider": {"type": "toxic.update", "proxy": "redis", "toxic": "resp_error_downstream", "attributes": {"eror": "x"}}})")
            .rfind("$.method[3].provider.attributes: attribute eror is unknown to resp_error", 0) == 0);
}

TEST_CASE("error_recovery's fault defaults to the activity `after` names, and offsets move events") {
  Drill d;
  REQUIRE(parse(kDrill, d) == "");
  REQUIRE(d.verdicts[0].faults.size() == 1);
  CHECK(d.verdicts[0].faults[0].activity == "inject");
  CHECK(d.verdicts[0].faults[0].provider == Provider::toxic_add);
  CHECK(d.verdicts[0].faults[0].proxy.proxy == "redis");
  CHECK(d.verdicts[0].faults[0].toxic == "resp_error_downstream");
  CHECK(d.verdicts[0].success_rate == 1);
  CHECK(d.verdicts[0].retries->max == 3);
  CHECK_FALSE(d.verdicts[0].retries->min);

  std::string text = kDrill;
  text.replace(text.find(R"("from": "inject.start")"), 22, R"("from": "inject+1.5s")");
  text.replace(text.find(R"("after": "inject.removed")"), 25, R"("after": "inject.removed-500ms")");
  REQUIRE(parse(text, d) == "");
  CHECK(d.verdicts[1].from == "inject.end+1.5s");
  CHECK(d.verdicts[0].after == "inject.removed-500ms");
  CHECK(d.verdicts[0].faults[0].activity == "inject");
  RunRecord r;
  r.events["inject.end"] = 2;
  r.events["inject.removed"] = 4;
  CHECK(r.event(d.verdicts[1].from) == 3.5);
  CHECK(r.event(d.verdicts[0].after) == 3.5);
  CHECK_FALSE(r.event("inject+2"));  // an offset needs its unit
  CHECK(split_offset("kill-primary") == std::nullopt);
  CHECK(split_offset("kill-primary-250ms")->second == -0.25);
}

TEST_CASE("a workflow command's step lines become load calls, and other output is left alone") {
  const auto steps = parse_steps("starting\n"
                                 "{\"start\": 1000.5, \"end\": 1000.75, \"ok\": true, \"status\": 200}\n"
                                 "{\"start\": 1001, \"end\": 1002, \"ok\": false, \"status\": 429, \"detail\": \"429: busy\"}\n"
                                 "{\"start\": 1003, \"ok\": true}\n"
                                 "{\"start\": 1005, \"end\": 1004, \"ok\": true}\n"
                                 "{not json\n"
                                 "done",
                                 1000);
  REQUIRE(steps.calls.size() == 2);
  CHECK(steps.malformed == 2);  // no end; ends before it starts
  CHECK(steps.calls[0].start == 0.5);
  CHECK(steps.calls[0].latency_ms == 250);
  CHECK(steps.calls[0].ok);
  CHECK(steps.calls[0].status == 200);
  CHECK(steps.calls[0].detail.empty());
  CHECK_FALSE(steps.calls[1].ok);
  CHECK(steps.calls[1].detail == "429: busy");
  CHECK(split_edge("kill.removed") == std::pair<std::string, std::string>{"kill", ".removed"});
  CHECK(split_edge("kill") == std::pair<std::string, std::string>{"kill", ""});
}

TEST_CASE("failover: health checks are left out by match, and a byte total for the primary is refused") {
  const std::string base = R"({"title": "t", "method": [
      {"type": "action", "name": "kill", "provider": {"type": "proxy.disable", "proxy": "a"}},
      {"type": "action", "name": "revive", "provider": {"type": "proxy.enable", "proxy": "a"}}],
    "verdicts": [{"type": "failover", "primary": "a", "backup": "b", "after": "kill", "until": "revive+1s", VERDICT}]})";
  auto with = [&](const std::string& v) {
    std::string text = base;
    text.replace(text.find("VERDICT"), 7, v);
    return text;
  };
  Drill d;
  REQUIRE(parse(with(R"("traffic": {"exclude": [{"path": "/health"}, {"method": "OPTIONS"}]}, "primary_max_share": 0.1)"), d) == "");
  CHECK(d.verdicts[0].traffic_exclude == std::vector<std::string>{R"({"path":"/health"})", R"({"method":"OPTIONS"})"});
  CHECK(d.verdicts[0].primary_max_share == 0.1);
  CHECK(d.verdicts[0].until == "revive.end+1s");
  CHECK_FALSE(d.verdicts[0].custom_metric);
  CHECK(error_of(with(R"("primary_max_delta": 0)")) ==
        "$.verdicts[0].primary_max_delta: replaced by primary_max_share: the share of application traffic still on the primary "
        "after the move (a byte total grows with the drill's length)");
  CHECK(error_of(with(R"("traffic": {"exclude": [{}]})")) ==
        "$.verdicts[0].traffic.exclude[0]: expected a match object, e.g. {\"path\": \"/health\"}");
  CHECK(error_of(with(R"("metric": "m", "traffic": {"exclude": [{"path": "/h"}]})")) ==
        "$.verdicts[0].traffic: traffic counts requests; with a custom metric there is nothing to exclude");
  REQUIRE(parse(with(R"("metric": "toxiproxy_proxy_received_bytes_total", "labels": {"direction": "upstream"}, "min_delta": 100)"), d) == "");
  CHECK(d.verdicts[0].custom_metric);
  CHECK(d.verdicts[0].min_requests == 100);
}

TEST_CASE("drill --check: an env variable with no value and no default gets a placeholder and a note") {
  const std::string text = R"({"title": "t", "configuration": {"target": {"type": "env", "key": "TARGET_ADDR"}},
    "method": [{"type": "action", "name": "l", "provider": {"type": "load", "requests": 1,
                "target": {"type": "resp", "address": "${target}", "command": ["PING"]}}}]})";
  CHECK(error_of(text) == "$.configuration.target: environment variable TARGET_ADDR is not set and there is no default");
  auto o = options({});
  o.placeholders = true;
  Drill d;
  REQUIRE(parse(text, d, o) == "");
  REQUIRE(d.notes.size() == 1);
  CHECK(d.notes[0] == "$.configuration.target: environment variable TARGET_ADDR is not set and there is no default; checked with "
                      "\"127.0.0.1:9\"");
  // A URL variable gets a URL (an http probe checks its form), a number one that fits bounds.
  const std::string urls = R"({"title": "t", "configuration": {"kimi_url": {"type": "env", "key": "KIMI_URL"},
      "threshold": {"type": "env", "key": "T", "env_var_type": "float"}},
    "method": [{"type": "probe", "name": "p", "provider": {"type": "http", "url": "${kimi_url}/chat/completions"}}],
    "verdicts": [{"type": "success_rate", "source": "p", "threshold": "${threshold}"}]})";
  REQUIRE(parse(urls, d, o) == "");
  CHECK(std::get<HttpSpec>(d.method[0].spec).url == "http://127.0.0.1:9/chat/completions");
  CHECK(d.notes.size() == 2);
}


TEST_CASE("structural errors: not JSON, missing method, wrong shapes") {
  CHECK(error_of("{\"title\": \"t\",\n  \"method\": [}") == "line 2, column 14: not valid JSON: Invalid value.");
  CHECK(error_of(R"({"title": "t"})") == "$.method: missing required field");
  CHECK(error_of(R"([1])") == "$: expected a drill object, got an array");
  CHECK(error_of(R"({"title": "t", "method": {}})") == "$.method: expected an array, got an object");
  CHECK(error_of(R"({"title": "t", "method": [{"name": "x", "provider": {"type": "wait", "seconds": 1}}]})") ==
        "$.method[0].type: missing required field (action or probe)");
  CHECK(error_of(R"({"title": "t", "method": [], "controls": []})") == "$.controls: controls are not supported by faultline drill");
  CHECK(error_of(R"({"title": "t", "method": [], "verdicts": [{"type": "no_critical_errors"}]})") ==
        "$.verdicts[0]: nothing to check: mark probes \"critical\": true and/or list http series in no_5xx");
  CHECK(error_of(R"({"title": "t", "method": [
      {"type": "action", "name": "l", "provider": {"type": "load", "requests": 1, "target": {"type": "tcp", "address": "a:1"}}}],
      "verdicts": [{"type": "failover", "primary": "a", "backup": "b", "after": "l", "writes": "l"}]})") ==
        "$.verdicts[0].writes: no resp load with verify named \"l\"");
}

TEST_CASE("Chaos Toolkit spellings: process providers, http arguments and expected_status, env_var_type") {
  Drill d;
  REQUIRE(parse(R"({"title": "t",
    "configuration": {"n": {"type": "env", "key": "N", "env_var_type": "int"}},
    "method": [
      {"type": "action", "name": "p", "provider": {"type": "process", "path": "echo", "arguments": "a 'b c' ${n}"}},
      {"type": "probe", "name": "h", "provider": {"type": "http", "url": "http://h:1/x", "method": "post",
        "arguments": {"q": 1}, "expected_status": 201}}
    ]})",
                d, options({{"N", "5"}})) == "");
  const auto& cmd = std::get<CommandSpec>(d.method[0].spec);
  CHECK(cmd.arguments == std::vector<std::string>{"a", "b c", "5"});
  const auto& http = std::get<HttpSpec>(d.method[1].spec);
  CHECK(http.method == "POST");
  CHECK(http.body == std::optional<std::string>(R"({"q":1})"));
  CHECK(http.headers.size() == 1);
  REQUIRE(d.method[1].tolerance);
  CHECK(d.method[1].tolerance->values.front() == Scalar::of(201.0));
}

TEST_CASE("replay actions parse with their options checked") {
  Drill d;
  REQUIRE(parse(R"({"title": "t", "method": [
      {"type": "action", "name": "r", "provider": {"type": "replay.start", "name": "api", "journal": "j.jsonl",
                                                   "unmatched": "forward", "forward": "127.0.0.1:9", "rules": ["GET=error"]}},
      {"type": "action", "name": "c", "provider": {"type": "replay.client", "journal": "j.jsonl",
                                                   "target": "${replay.api.address}", "speed": "max", "open_loop": true,
                                                   "threshold": 0.1, "headers": {"Authorization": "Bearer k"},
                                                   "redis_password": "pw"}},
      {"type": "action", "name": "s", "provider": {"type": "replay.stop", "name": "api"}}]})",
                d) == "");
  CHECK(d.method[0].provider == Provider::replay_start);
  CHECK(std::get<ReplaySpec>(d.method[0].spec).name == "api");
  CHECK(std::get<ReplaySpec>(d.method[0].spec).raw.find("j.jsonl") != std::string::npos);
  const auto& client = std::get<ReplaySpec>(d.method[1].spec);
  CHECK(d.method[1].provider == Provider::replay_client);
  CHECK(client.target == "${replay.api.address}");  // filled in when it runs
  CHECK(client.speed == 0);
  CHECK(client.open_loop);
  CHECK(client.threshold == 0.1);
  CHECK(client.headers == std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer k"}});
  CHECK(client.redis_password == "pw");
  CHECK(d.method[2].provider == Provider::replay_stop);

  auto with = [](const std::string& provider) {
    return error_of(R"({"title": "t", "method": [{"type": "action", "name": "r", "provider": )" + provider + "}]}");
  };
  CHECK(with(R"({"type": "replay.start", "journal": "j"})") == "$.method[0].provider.name: missing required field");
  CHECK(with(R"({"type": "replay.start", "name": "a", "journal": "j", "unmatched": "maybe"})")
            .rfind("$.method[0].provider.unmatched: must be one of error, closest, fail, forward", 0) == 0);
  CHECK(with(R"({"type": "replay.start", "name": "a", "journal": "j", "unmatched": "forward"})")
            .rfind("$.method[0].provider.forward: required", 0) == 0);
  CHECK(with(R"({"type": "replay.start", "name": "a", "journal": "j", "rules": ["x y z=error"]})")
            .rfind("$.method[0].provider.rules[0]: ", 0) == 0);
  CHECK(with(R"({"type": "replay.start", "name": "a b", "journal": "j"})").rfind("$.method[0].provider.name: use letters", 0) == 0);
  CHECK(with(R"({"type": "replay.stop", "name": "a", "journal": "j"})").rfind("$.method[0].provider.journal: unknown field", 0) == 0);
  CHECK(with(R"({"type": "replay.client", "journal": "j", "target": "nope"})") ==
        "$.method[0].provider.target: expected host:port, got \"nope\"");
  CHECK(with(R"({"type": "replay.client", "journal": "j", "target": "h:1", "headers": {"Bad Name": "x"}})") ==
        "$.method[0].provider.headers[\"Bad Name\"]: \"Bad Name\" is not a header name");
  CHECK(with(R"({"type": "replay.client", "journal": "j", "target": "h:1", "headers": {"X-Key": 7}})")
            .rfind("$.method[0].provider.headers.X-Key: expected a string", 0) == 0);
  CHECK(with(R"({"type": "tcp", "address": "${replay.a.port}"})").find("unknown reference ${replay.a.port}") != std::string::npos);
}

TEST_CASE("${replay.NAME.address} is filled in when the activity runs") {
  Drill d;
  REQUIRE(parse(R"({"title": "t", "method": [
      {"type": "probe", "name": "p", "provider": {"type": "http", "url": "http://${replay.api.address}/v1/models"}},
      {"type": "action", "name": "t", "provider": {"type": "toxic.add", "proxy": "front",
                                                   "toxic": {"type": "latency", "attributes": {"latency": 1}}}},
      {"type": "probe", "name": "r", "provider": {"type": "resp", "address": "${replay.cache.address}", "command": ["PING"]}}]})",
                d) == "");
  const auto lookup = [](const std::string& name) -> std::optional<std::string> {
    if (name == "api") return std::string("127.0.0.1:4242");
    return std::nullopt;
  };
  Activity probe = d.method[0];
  CHECK(!resolve_replay_refs(probe, lookup));
  CHECK(std::get<HttpSpec>(probe.spec).url == "http://127.0.0.1:4242/v1/models");
  Activity untouched = d.method[1];
  CHECK(!resolve_replay_refs(untouched, lookup));
  Activity missing = d.method[2];
  const auto e = resolve_replay_refs(missing, lookup);
  REQUIRE(e);
  CHECK(e->find("no replay server named cache is running") != std::string::npos);
}

TEST_CASE("literal ${ survives as $${, and ${var} inside a longer string is text") {
  Drill d;
  REQUIRE(parse(R"({"title": "t", "configuration": {"port": 6379},
    "method": [{"type": "action", "name": "c", "provider": {"type": "command", "path": "sh", "arguments": ["-c", "echo $${HOME} 127.0.0.1:${port}"]}}]})",
                d) == "");
  CHECK(std::get<CommandSpec>(d.method[0].spec).arguments[1] == "echo ${HOME} 127.0.0.1:6379");
}

TEST_CASE("a hypothesis probe run in the method by reference has times verdicts can use") {
  Drill d;
  const auto error = parse(R"({"title": "t",
    "steady-state-hypothesis": {"probes": [{"name": "ping", "provider": {"type": "tcp", "address": "h:1"}}]},
    "method": [{"ref": "ping"}],
    "verdicts": [{"type": "success_rate", "source": "ping", "from": "ping.start"}]})",
                           d);
  CHECK(error == "");
  CHECK(d.verdicts.at(0).from == "ping.start");
  CHECK(error_of(R"({"title": "t",
    "steady-state-hypothesis": {"probes": [{"name": "ping", "provider": {"type": "tcp", "address": "h:1"}}]},
    "method": [],
    "verdicts": [{"type": "success_rate", "source": "ping", "from": "ping"}]})") ==
        "$.verdicts[0].from: no method or rollback activity named \"ping\" (or use method.start / method.end; an offset is "
        "written NAME+2s or NAME-500ms)");
}
