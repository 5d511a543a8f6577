#include "app/ctl.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "base/json_writer.hpp"
#include "proxy/control_client.hpp"
#include "proxy/json_io.hpp"
#include "replay/replay_model.hpp"

namespace faultline {
namespace {

const char* kUsage = R"(usage: faultline ctl [--host URL] COMMAND [flags] [PROXY]

Commands (as toxiproxy-cli):
  list                                   list proxies
  inspect PROXY                          show a proxy and its toxics
  create -l LISTEN -u UPSTREAM PROXY     create a proxy
  toggle PROXY                           enable or disable a proxy
  delete PROXY                           delete a proxy
  toxic add -t TYPE [-n NAME] [--tox F] [-a KEY=VALUE]... [-u|-d] PROXY
  toxic update -n NAME [--tox F] [-a KEY=VALUE]... PROXY
  toxic remove -n NAME PROXY

--host/-h defaults to $TOXIPROXY_URL or http://localhost:8474.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;
  bool has(const std::string& f) const { return flags.count(f) > 0; }
  std::string get(const std::string& f, const std::string& fallback = "") const {
    auto it = flags.find(f);
    return it == flags.end() || it->second.empty() ? fallback : it->second.back();
  }
};

// Flags with a value, by every spelling toxiproxy-cli accepts.
const std::map<std::string, std::string> kValueFlags = {
    {"-l", "listen"}, {"--listen", "listen"}, {"-u", "upstream"}, {"--upstream", "upstream"},
    {"-t", "type"}, {"--type", "type"}, {"-n", "name"}, {"--toxicName", "name"}, {"--tox", "toxicity"},
    {"--toxicity", "toxicity"}, {"-a", "attribute"}, {"--attribute", "attribute"}};

std::string fail(const std::string& message) {
  std::cerr << "faultline ctl: " << message << "\n";
  return message;
}

int report(const HttpResult& r) {
  if (!r.error.empty()) {
    fail(r.error);
    return 1;
  }
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  std::string message = "HTTP " + std::to_string(r.status);
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("error") && doc["error"].IsString()) {
    message = doc["error"].GetString();
  } else if (!r.body.empty()) {
    message += ": " + r.body;
  }
  fail(message);
  return 1;
}

bool ok(const HttpResult& r) { return r.error.empty() && r.status >= 200 && r.status < 300; }

// Is a faultline (or Toxiproxy) API there? GET /version answers {"version": "..."}. Anything
// else (another HTTP API, a web page, Redis) is said plainly, instead of a crash or an empty
// success on a reply of the wrong shape.
std::optional<std::string> not_an_api(const std::string& host) {
  const auto r = http_call(host, "GET", "/version", std::nullopt);
  if (!r.error.empty()) return r.error;  // unreachable, or not HTTP (http_call says which)
  rapidjson::Document doc;
  doc.Parse(r.body.c_str(), r.body.size());
  if (r.status == 200 && !doc.HasParseError() && doc.IsObject() && doc.HasMember("version") && doc["version"].IsString())
    return std::nullopt;
  return "no faultline/Toxiproxy API at " + host + ": GET /version answered " + std::to_string(r.status) +
         (r.body.empty() ? "" : " \"" + replay::printable(r.body, 80) + "\"");
}

// toxiproxy-cli's form: "[\tjitter=0\tlatency=100\t]", keys sorted.
std::string attributes_text(const rapidjson::Value& toxic) {
  std::map<std::string, std::string> sorted;
  if (toxic.HasMember("attributes") && toxic["attributes"].IsObject()) {
    for (auto it = toxic["attributes"].MemberBegin(); it != toxic["attributes"].MemberEnd(); ++it) {
      std::string value;
      if (it->value.IsNumber()) value = format_number(it->value.GetDouble());
      else if (it->value.IsString()) value = it->value.GetString();
      sorted[it->name.GetString()] = value;
    }
  }
  std::string out = "[\t";
  for (const auto& [k, v] : sorted) out += k + "=" + v + "\t";
  return out + "]";
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (std::size_t i = 0; i < rows[r].size(); ++i) {
      line += rows[r][i];
      if (i + 1 < rows[r].size()) line += std::string(width[i] - rows[r][i].size() + 3, ' ');
    }
    std::cout << line << "\n";
    if (r == 0) {
      std::size_t total = 0;
      for (auto w : width) total += w + 3;
      std::cout << std::string(total > 3 ? total - 3 : total, '=') << "\n";
    }
  }
}

std::string proxy_path(const std::string& name) {
  // Names are path segments; escape only what would break the path.
  std::string out;
  for (unsigned char c : name) {
    if (c == '/' || c == '%' || c == '?' || c == '#' || c == ' ' || c < 0x20) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return "/proxies/" + out;
}

// Whether text is one JSON number as it stands (what strtod takes also includes "inf",
// "0x10" and " 5", which are not JSON).
bool json_number(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  return !doc.HasParseError() && doc.IsNumber();
}

// A value given on the command line: as a JSON number when it is one, else as a string
// (for the server to refuse with its own message, naming the field).
void number_or_string(JsonWriter& w, const std::string& value) {
  if (json_number(value)) w.raw(value);
  else w.string(value);
}

// Toxiproxy-cli parses attribute values as floats; anything else goes as a string.
std::string attribute_json(const std::vector<std::string>& attrs, std::string& error) {
  JsonWriter w;
  w.begin_object();
  for (const auto& kv : attrs) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      error = "attribute \"" + kv + "\" must be KEY=VALUE";
      return "";
    }
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    number_or_string(w.key(key), value);
  }
  w.end_object();
  return w.take();
}

}  // namespace

int run_ctl(int argc, char** argv) {
  std::string host;
  if (const char* env = std::getenv("TOXIPROXY_URL")) host = env;
  if (host.empty()) host = "http://localhost:8474";
  Args args;
  bool upstream_stream = false, downstream_stream = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      inline_value = true;
    }
    if (a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "-h" || a == "--host") {
      if (!inline_value) {
        if (i + 1 >= argc) return fail("--host needs a URL"), 2;
        value = argv[++i];
      }
      host = value;
      continue;
    }
    if (a == "--downstream" || a == "-d") {
      downstream_stream = true;
      continue;
    }
    // "-u" is upstream *address* for create, the upstream *stream* for toxic add.
    if ((a == "--upstream" || a == "-u") && !args.positional.empty() && args.positional[0] == "toxic") {
      upstream_stream = true;
      continue;
    }
    if (auto it = kValueFlags.find(a); it != kValueFlags.end()) {
      if (!inline_value) {
        if (i + 1 >= argc) return fail(a + " needs a value"), 2;
        value = argv[++i];
      }
      args.flags[it->second].push_back(value);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') return fail("unknown flag " + a + "\n" + kUsage), 2;
    args.positional.push_back(a);
  }
  if (args.positional.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const bool tty = isatty(STDOUT_FILENO);
  const std::string command = args.positional[0];
  if (auto e = not_an_api(host)) {
    fail(*e);
    return 1;
  }
  auto need_proxy = [&](std::size_t at) -> std::optional<std::string> {
    if (args.positional.size() <= at) {
      fail("command " + command + " needs a proxy name");
      return std::nullopt;
    }
    return args.positional[at];
  };

  if (command == "list" || command == "l" || command == "li" || command == "ls") {
    auto r = http_call(host, "GET", "/proxies", std::nullopt);
    if (!ok(r)) return report(r);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    std::vector<std::vector<std::string>> rows{{"Name", "Listen", "Upstream", "Enabled", "Toxics"}};
    for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
      const auto& p = it->value;
      rows.push_back({p["name"].GetString(), p["listen"].GetString(), p["upstream"].GetString(),
                      p["enabled"].GetBool() ? "enabled" : "disabled", std::to_string(p["toxics"].Size())});
    }
    if (tty) {
      if (rows.size() == 1) std::cout << "no proxies\n";
      else print_table(rows);
    } else {
      for (std::size_t i = 1; i < rows.size(); ++i) {
        std::cout << rows[i][0] << "\t" << rows[i][1] << "\t" << rows[i][2] << "\t" << rows[i][3] << "\t" << rows[i][4]
                  << "\n";
      }
    }
    return 0;
  }
  if (command == "inspect" || command == "i" || command == "ins") {
    auto name = need_proxy(1);
    if (!name) return 2;
    auto r = http_call(host, "GET", proxy_path(*name), std::nullopt);
    if (!ok(r)) return report(r);
    rapidjson::Document p;
    p.Parse(r.body.c_str());
    if (tty) {
      std::cout << "Name: " << p["name"].GetString() << "\nListen: " << p["listen"].GetString()
                << "\nUpstream: " << p["upstream"].GetString()
                << "\nEnabled: " << (p["enabled"].GetBool() ? "enabled" : "disabled") << "\nToxics:\n";
    }
    // Upstream toxics come first in the API's list already; print them as toxiproxy-cli does.
    for (const auto& t : p["toxics"].GetArray()) {
      char toxicity[32];
      std::snprintf(toxicity, sizeof toxicity, "%.2f", t["toxicity"].GetDouble());
      std::cout << (tty ? "  " : "") << t["name"].GetString() << "\ttype=" << t["type"].GetString()
                << "\tstream=" << t["stream"].GetString() << "\ttoxicity=" << toxicity
                << "\tattributes=" << attributes_text(t) << "\n";
    }
    if (tty && p["toxics"].Empty()) std::cout << "  (none)\n";
    return 0;
  }
  if (command == "create" || command == "c" || command == "new") {
    auto name = need_proxy(1);
    if (!name) return 2;
    if (!args.has("listen") || !args.has("upstream")) return fail("create needs --listen/-l and --upstream/-u"), 2;
    JsonWriter w;
    w.begin_object();
    w.key("name").string(*name);
    w.key("listen").string(args.get("listen"));
    w.key("upstream").string(args.get("upstream"));
    w.key("enabled").boolean(true);
    w.end_object();
    const std::string body = w.take();
    auto r = http_call(host, "POST", "/proxies", body);
    if (!ok(r)) return report(r);
    std::cout << "Created new proxy " << *name << "\n";
    return 0;
  }
  if (command == "toggle" || command == "tog" || command == "delete" || command == "d") {
    auto name = need_proxy(1);
    if (!name) return 2;
    auto r = http_call(host, "GET", proxy_path(*name), std::nullopt);
    if (!ok(r)) return report(r);
    if (command == "delete" || command == "d") {
      auto del = http_call(host, "DELETE", proxy_path(*name), std::nullopt);
      if (!ok(del)) return report(del);
      std::cout << "Deleted proxy " << *name << "\n";
      return 0;
    }
    rapidjson::Document p;
    p.Parse(r.body.c_str());
    const bool enable = !p["enabled"].GetBool();
    auto upd = http_call(host, "PATCH", proxy_path(*name), enable ? R"({"enabled":true})" : R"({"enabled":false})");
    if (!ok(upd)) return report(upd);
    std::cout << "Proxy " << *name << " is now " << (enable ? "enabled" : "disabled") << "\n";
    return 0;
  }
  if (command == "toxic" || command == "t") {
    if (args.positional.size() < 2) return fail("toxic needs a subcommand: add, update or remove"), 2;
    const std::string sub = args.positional[1];
    auto name = need_proxy(2);
    if (!name) return 2;
    std::string error;
    const std::string attrs = args.has("attribute") ? attribute_json(args.flags["attribute"], error) : "";
    if (!error.empty()) return fail(error), 2;
    if (sub == "add" || sub == "a") {
      if (!args.has("type")) return fail("toxic add needs --type/-t"), 2;
      if (upstream_stream && downstream_stream) return fail("only one of --upstream and --downstream may be given"), 2;
      const std::string stream = upstream_stream ? "upstream" : "downstream";
      JsonWriter w;
      w.begin_object();
      w.key("name").string(args.get("name"));
      w.key("type").string(args.get("type"));
      w.key("stream").string(stream);
      number_or_string(w.key("toxicity"), args.get("toxicity", "1"));
      if (!attrs.empty()) w.key("attributes").raw(attrs);
      w.end_object();
      const std::string body = w.take();
      auto r = http_call(host, "POST", proxy_path(*name) + "/toxics", body);
      if (!ok(r)) return report(r);
      rapidjson::Document t;
      t.Parse(r.body.c_str());
      std::cout << "Added " << stream << " " << args.get("type") << " toxic '" << t["name"].GetString()
                << "' on proxy '" << *name << "'\n";
      return 0;
    }
    if (!args.has("name")) return fail("toxic " + sub + " needs --toxicName/-n"), 2;
    const std::string toxic_path = proxy_path(*name) + "/toxics/" + args.get("name");
    if (sub == "update" || sub == "u") {
      JsonWriter w;
      w.begin_object();
      if (args.has("toxicity")) number_or_string(w.key("toxicity"), args.get("toxicity"));
      if (!attrs.empty()) w.key("attributes").raw(attrs);
      w.end_object();
      auto r = http_call(host, "PATCH", toxic_path, w.take());
      if (!ok(r)) return report(r);
      std::cout << "Updated toxic '" << args.get("name") << "' on proxy '" << *name << "'\n";
      return 0;
    }
    if (sub == "remove" || sub == "r" || sub == "delete" || sub == "d") {
      auto r = http_call(host, "DELETE", toxic_path, std::nullopt);
      if (!ok(r)) return report(r);
      std::cout << "Removed toxic '" << args.get("name") << "' on proxy '" << *name << "'\n";
      return 0;
    }
    return fail("unknown toxic subcommand " + sub), 2;
  }
  fail("unknown command " + command + "\n" + kUsage);
  return 2;
}

}  // namespace faultline
