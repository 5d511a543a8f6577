// Random bytes as a short session of control-API requests (method, target, headers, body)
// handed to ControlPlane::handle, the transport-free entry point the HTTP server calls: any
// request must get an HTTP status back, never crash the server.
//
// Each input gets a fresh control plane over a fresh ServerContext whose event loops never
// run, so a created proxy binds its listeners but accepts nothing and no upstream is ever
// dialled. Every "listen" address in a JSON body becomes 127.0.0.1:0 before the request is
// handled: the fuzzer binds loopback ports the kernel picks, never a fixed or public one.
// Recordings are written under a private directory emptied after each input; "replay"
// upstreams are refused (no ReplayStarter), as in a server built without replay.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include "fuzz/scratch_dir.hpp"
#include "proxy/control_plane.hpp"
#include "proxy/server_context.hpp"
#include "proxy/workers.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::ApiRequest;

using faultline::fuzz::check;

const faultline::fuzz::ScratchDir& scratch() {
  static const faultline::fuzz::ScratchDir dir("api");
  spdlog::set_level(spdlog::level::off);  // refused requests log a warning each
  return dir;
}

void pin_listen(rapidjson::Value& v, rapidjson::Document::AllocatorType& alloc) {
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (it->name.IsString() && std::string_view(it->name.GetString()) == "listen" && it->value.IsString()) {
        it->value.SetString("127.0.0.1:0", alloc);
      } else {
        pin_listen(it->value, alloc);
      }
    }
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray()) pin_listen(e, alloc);
  }
}

// A body that parses as JSON is written back with every "listen" pinned to loopback port 0;
// any other body is passed as it is (it cannot create a listener).
std::string pinned_body(std::string body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) return body;
  pin_listen(doc, doc.GetAllocator());
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  doc.Accept(writer);
  return {out.GetString(), out.GetSize()};
}

// One request: "METHOD TARGET\n", header lines "Name: value\n" (Host, User-Agent,
// Authorization, Origin), an empty line, then the body up to the next NUL byte.
ApiRequest parse_request(std::string_view text) {
  ApiRequest request;
  request.host = "127.0.0.1:8474";
  auto line = [&] {
    const auto nl = text.find('\n');
    std::string_view l = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    return l;
  };
  const std::string_view first = line();
  const auto space = first.find(' ');
  request.method = std::string(first.substr(0, space));
  if (space != std::string_view::npos) request.target = std::string(first.substr(space + 1));
  while (!text.empty()) {
    const std::string_view header = line();
    if (header.empty()) break;
    const auto colon = header.find(": ");
    if (colon == std::string_view::npos) continue;
    const std::string_view name = header.substr(0, colon);
    std::string value(header.substr(colon + 2));
    if (name == "Host") request.host = std::move(value);
    else if (name == "User-Agent") request.user_agent = std::move(value);
    else if (name == "Authorization") request.authorization = std::move(value);
    else if (name == "Origin") request.origin = std::move(value);
  }
  request.body = pinned_body(std::string(text));
  return request;
}

}  // namespace

// Input: byte 0 chooses the security settings (bit 0: a bearer token, bit 1: an allowed
// origin, bit 2: no Host check); the rest is up to 16 requests separated by NUL bytes.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const faultline::fuzz::ScratchDir& scratch_dir = scratch();
  const std::filesystem::path& dir = scratch_dir.path();
  static const bool trace = std::getenv("FAULTLINE_FUZZ_TRACE") != nullptr;  // to check a seed does what it says
  faultline::ApiSecurity security;
  if (data[0] & 1) security.token = "fuzz-token";
  if (data[0] & 2) security.allowed_origins = {"http://localhost:3000"};
  if (data[0] & 4) security.enforce_host = false;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  {
    faultline::net::io_context control(1);
    faultline::WorkerPool workers(1);
    faultline::ServerContext context(control, workers);
    context.recordings_root = (dir / "recordings").string();
    context.ca_dir = (dir / "ca").string();  // absent: tls.listen.mint is refused
    {
      faultline::ControlPlane plane(context, security);
      for (int n = 0; n < 16 && !rest.empty(); ++n) {
        const auto end = rest.find('\0');
        const ApiRequest request = parse_request(rest.substr(0, end));
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        const faultline::ApiResponse response = plane.handle(request);
        check(response.status >= 100 && response.status <= 599);
        if (trace) std::fprintf(stderr, "%s %s -> %d %.200s\n", request.method.c_str(), request.target.c_str(), response.status, response.body.c_str());
      }
    }
    // Let the posted closes of listeners run before the loops go.
    control.poll();
    workers.at(0).ioc.poll();
    control.poll();
  }
  scratch_dir.empty();
  return 0;
}
