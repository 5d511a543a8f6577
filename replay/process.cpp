#include "replay/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <vector>

extern char** environ;

namespace faultline::drill {

namespace {
constexpr std::size_t kCap = 1024 * 1024;

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}
}  // namespace

ProcessResult run_process(const CommandSpec& spec, const std::atomic<bool>& cancel) {
  using clock = std::chrono::steady_clock;
  ProcessResult r;
  const auto t0 = clock::now();
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    close_fd(out_pipe[0]);
    close_fd(out_pipe[1]);
    return r;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, reset;
  sigemptyset(&none);
  sigemptyset(&reset);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) sigaddset(&reset, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &reset);  // an ignored SIGPIPE must not leak into the child

  std::vector<std::string> argv_s{spec.path};
  argv_s.insert(argv_s.end(), spec.arguments.begin(), spec.arguments.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : spec.env) env_map[k] = v;
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env_map) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, spec.path.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close_fd(out_pipe[1]);
  close_fd(err_pipe[1]);
  if (rc != 0) {
    r.error = "cannot run " + spec.path + ": " + std::strerror(rc);
    close_fd(out_pipe[0]);
    close_fd(err_pipe[0]);
    return r;
  }
  r.started = true;
  const auto deadline = t0 + std::chrono::duration<double>(spec.timeout);
  std::optional<clock::time_point> kill_at;  // SIGKILL after a SIGTERM that was ignored
  auto stop = [&](bool hard) {
    ::kill(-pid, hard ? SIGKILL : SIGTERM);
    if (!hard && !kill_at) kill_at = clock::now() + std::chrono::seconds(2);
  };
  int status = 0;
  bool exited = false;
  char buf[65536];
  while (out_pipe[0] >= 0 || err_pipe[0] >= 0 || !exited) {
    pollfd fds[2];
    nfds_t n = 0;
    for (int* fd : {&out_pipe[0], &err_pipe[0]})
      if (*fd >= 0) fds[n++] = {*fd, POLLIN, 0};
    if (n > 0) {
      const int ready = ::poll(fds, n, 50);
      if (ready < 0 && errno != EINTR) break;
      for (nfds_t i = 0; i < n && ready > 0; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        int* fd = fds[i].fd == out_pipe[0] ? &out_pipe[0] : &err_pipe[0];
        std::string& sink = fd == &out_pipe[0] ? r.out : r.err;
        if (got > 0) {
          if (sink.size() < kCap) sink.append(buf, std::min<std::size_t>(static_cast<std::size_t>(got), kCap - sink.size()));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          close_fd(*fd);
        }
      }
    } else {
      ::usleep(20000);
    }
    if (!exited) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) exited = true;
    }
    const auto now = clock::now();
    if (!exited) {
      if (!r.timed_out && now >= deadline) {
        r.timed_out = true;
        stop(true);
      }
      if (!r.cancelled && cancel.load()) {
        r.cancelled = true;
        stop(false);
      }
      if (kill_at && now >= *kill_at) stop(true);
    } else if (out_pipe[0] >= 0 || err_pipe[0] >= 0) {
      // The command exited but something it started still holds the pipes: give it until
      // the deadline, then stop reading (a background daemon must not hang the drill).
      if (now >= deadline || cancel.load()) {
        close_fd(out_pipe[0]);
        close_fd(err_pipe[0]);
      }
    }
  }
  close_fd(out_pipe[0]);
  close_fd(err_pipe[0]);
  if (!exited) ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  if (r.timed_out) r.error = "timed out after " + Scalar::of(spec.timeout).display() + " s";
  else if (r.cancelled) r.error = "cancelled";
  return r;
}

}  // namespace faultline::drill
