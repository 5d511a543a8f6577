#include "proxy/server.hpp"

#include "proxy/tls.hpp"

#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "proxy/address.hpp"
#include "proxy/control_plane.hpp"
#include "proxy/http_server.hpp"
#include "proxy/profile.hpp"
#include "proxy/server_context.hpp"
#include "recorder/journal.hpp"
#include "recorder/recording.hpp"

namespace faultline {
namespace {

std::optional<std::string> read_token(const std::string& path, std::string& token) {
  std::ifstream in(path);
  if (!in) return "--token-file " + path + ": cannot open the file";
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (token.empty()) return "--token-file " + path + ": the first line is empty; put the token there";
  return std::nullopt;
}

// Waits for open connections to finish, up to the deadline, then closes what is left.
awaitable<void> drain_and_stop(ControlPlane& control_plane, net::io_context& control, Duration timeout) {
  net::steady_timer timer(control);
  const auto deadline = Clock::now() + timeout;
  while (control_plane.active_connections() > 0 && Clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(use_nothrow);
  }
  const auto left = control_plane.active_connections();
  if (left > 0) spdlog::warn("shutdown: closing {} connection(s) still open at the deadline", left);
  control_plane.stop_all();
  // Give the workers a moment to run the close requests, then stop.
  timer.expires_after(std::chrono::milliseconds(left > 0 ? 100 : 0));
  co_await timer.async_wait(use_nothrow);
  control.stop();
}

// Each connection costs two descriptors: raise the soft limit to the hard one, as
// haproxy does, so 1,000 clients are not refused by a default soft limit of 1024.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0) spdlog::debug("descriptor limit raised to {}", limit.rlim_cur);
}

}  // namespace

int run_server(const ServeOptions& options) {
  // splice(2) into a socket whose peer has gone raises SIGPIPE (it has no MSG_NOSIGNAL);
  // the error code is what we want, not the signal's default of killing the process.
  std::signal(SIGPIPE, SIG_IGN);
  // A recording that reaches RLIMIT_FSIZE must fail (write(2) returns EFBIG), not kill faultline.
  std::signal(SIGXFSZ, SIG_IGN);
  raise_descriptor_limit();
  ApiSecurity security;
  if (options.token_file) {
    std::string token;
    if (auto e = read_token(*options.token_file, token)) {
      spdlog::error("{}", *e);
      return 2;
    }
    security.token = token;
  }
  security.allowed_hosts = options.allowed_hosts;
  security.allowed_origins = options.allowed_origins;
  // On a loopback API, refuse other Host names (DNS rebinding, Toxiproxy #219). On a
  // public bind (docker: -host=0.0.0.0) clients use service names, so allow any unless told.
  security.enforce_host = is_loopback_name(options.host);

  Profile profile;
  if (options.config_path) {
    if (auto e = load_profile(*options.config_path, profile)) {
      spdlog::error("config: {}", *e);
      return 2;
    }
  }
  std::uint64_t seed = options.seed.value_or(profile.seed.value_or(std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32)));

  net::io_context control(1);
  const std::size_t worker_count = options.workers ? options.workers : std::max(1u, std::thread::hardware_concurrency());
  WorkerPool workers(worker_count);
  ServerContext context(control, workers);
  context.connect_timeout = std::chrono::milliseconds(options.connect_timeout_ms);
  context.max_connections = options.max_connections;
  context.max_queued_bytes = options.max_queued_bytes;
  context.budget = std::make_shared<BufferBudget>(options.max_buffered_bytes);
  context.seed = seed;
  context.splice = options.splice;
  context.ca_dir = options.ca_dir.empty() ? tls::default_ca_dir() : options.ca_dir;
  context.recordings_root = options.recordings_root.empty() ? "recordings" : options.recordings_root;
  context.start_replay = options.start_replay;
  workers.start();

  int exit_code = 0;
  {
    ControlPlane control_plane(context, security);
    if (profile.proxies) {
      const std::string base = profile.document.IsArray() ? "$" : "$.proxies";
      // A proxy's relative replay journal is relative to the profile file, not the working directory.
      const auto slash = options.config_path->rfind('/');
      const std::string config_dir = slash == std::string::npos ? "." : slash == 0 ? "/" : options.config_path->substr(0, slash);
      auto result = control_plane.populate(*profile.proxies, &base, config_dir);
      if (result.error) {
        spdlog::error("config: {}: {}", *options.config_path, result.error->message);
        control_plane.stop_all();
        workers.stop();
        return 2;
      }
      spdlog::info("config: {} proxies from {}", result.proxies.size(), *options.config_path);
    }
    if (options.record_dir || !profile.recorded_proxies.empty()) {
      rec::RecordingOptions recording;
      if (profile.recording) {
        if (auto e = parse_recording_options(*profile.recording, recording)) {
          spdlog::error("config: {}: $.recording: {}", *options.config_path, *e);
          control_plane.stop_all();
          workers.stop();
          return 2;
        }
      }
      if (options.record_dir) {
        recording.dir = *options.record_dir;
        recording.proxies.clear();  // --record: every proxy, including ones created later
      } else {
        recording.proxies = profile.recorded_proxies;
      }
      if (options.no_redact) recording.redact = false;
      if (auto e = control_plane.start_recording("serve", std::move(recording))) {
        spdlog::error("{}: {}", options.record_dir ? "--record" : "config", e->message);
        control_plane.stop_all();
        workers.stop();
        return 2;
      }
    }

    tcp::acceptor api(control);
    boost::system::error_code ec;
    auto address = net::ip::make_address(options.host == "localhost" ? "127.0.0.1" : options.host, ec);
    if (ec) {
      tcp::resolver resolver(control);
      auto results = resolver.resolve(options.host, std::to_string(options.port), ec);
      if (ec || results.empty()) {
        spdlog::error("--host {}: cannot resolve: {}", options.host, ec.message());
        control_plane.stop_all();
        workers.stop();
        return 2;
      }
      address = results.begin()->endpoint().address();
    }
    tcp::endpoint endpoint(address, options.port);
    api.open(endpoint.protocol(), ec);
    if (!ec) api.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) api.bind(endpoint, ec);
    if (!ec) api.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::error("control API: cannot listen on {}: {}", join_host_port(address.to_string(), options.port), ec.message());
      control_plane.stop_all();
      workers.stop();
      return 2;
    }
    const auto bound = api.local_endpoint();
    const std::string bound_text = join_host_port(bound.address().to_string(), bound.port());
    ApiServerLimits limits;
    limits.max_connections = std::max<std::size_t>(1, options.max_api_connections);
    // API connections never take more than a quarter of the descriptors: the proxies'
    // connections (two each) need the rest.
    if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
      const auto quarter = std::max<std::size_t>(4, static_cast<std::size_t>(nofile.rlim_cur / 4));
      if (quarter < limits.max_connections) {
        spdlog::info("control API: at most {} connections at once (a quarter of the descriptor limit, {})", quarter,
                     nofile.rlim_cur);
        limits.max_connections = quarter;
      }
    }
    limits.request_timeout = std::chrono::milliseconds(std::max<std::uint64_t>(100, options.api_request_timeout_ms));
    start_http_server(api, control_plane, limits);
    spdlog::info("faultline {} control API on http://{} ({} workers, seed {})", FAULTLINE_VERSION, bound_text,
                 worker_count, seed);
    if (options.port_file) {
      // Readers never see half a file; nothing is written through a planted symlink.
      if (std::string error; !rec::write_file_replacing(*options.port_file, bound_text + "\n", error))
        spdlog::error("cannot write the port file: {}", error);
    }

    net::signal_set signals(control, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& sec, int signal) {
      if (sec) return;
      spdlog::info("signal {}: stopping; open connections get up to {} ms to finish", signal,
                   options.shutdown_timeout_ms);
      boost::system::error_code ignored;
      api.close(ignored);
      control_plane.stop_accepting();
      net::co_spawn(control,
                    drain_and_stop(control_plane, control, std::chrono::milliseconds(options.shutdown_timeout_ms)),
                    net::detached);
    });

    if (run_catching(control, "control loop") > 0) exit_code = 1;
    control_plane.stop_all();
  }
  workers.stop();
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace faultline
