#include "proxy/api_checks.hpp"

#include "base/ascii.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace faultline {
namespace fs = std::filesystem;

namespace {


const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

// A path inside `root` (both absolute and normal), and not the root itself.
bool strictly_inside(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing separator of the root
    if (p == path.end() || *p != *r) return false;
  }
  for (; p != path.end(); ++p) {
    if (!p->empty()) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> unaddressable_name(std::string_view what, std::string_view name) {
  const std::string quoted = "\"" + std::string(name) + "\"";
  if (name.empty()) return std::string(what) + " name must not be empty";
  if (name.find('/') != std::string_view::npos) {
    return std::string(what) + " name " + quoted + " cannot be used: a name with \"/\" cannot be addressed by the API's " +
           "routes (/proxies/{proxy}/toxics/{toxic})";
  }
  if (name == "." || name == "..") {
    return std::string(what) + " name " + quoted + " cannot be used: HTTP clients take \".\" and \"..\" as path steps, " +
           "so no route could address it";
  }
  return std::nullopt;
}

std::optional<std::string> check_upstream(std::string_view text) {
  std::string_view rest = text;
  bool url = false;
  if (const auto sep = rest.find("://"); sep != std::string_view::npos) {
    const std::string_view scheme = rest.substr(0, sep);
    if (scheme != "http" && scheme != "https") {
      return "scheme " + std::string(scheme) + ":// is not supported (use host:port for TCP, or http:// or https://)";
    }
    url = true;
    rest.remove_prefix(sep + 3);
    if (const auto end = rest.find_first_of("/?#"); end != std::string_view::npos) rest = rest.substr(0, end);
    if (rest.find('@') != std::string_view::npos) return std::string("credentials in the URL are not supported");
    if (rest.empty()) return std::string("the URL has no host");
  }
  std::string_view host = rest, port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return std::string("\"[\" without \"]\" around an IPv6 address");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::string("expected \":PORT\" after \"]\"");
      port = after.substr(1);
      has_port = true;
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET6, std::string(host).c_str(), buf) != 1) {
      return "\"" + std::string(host) + "\" is not an IPv6 address";
    }
  } else {
    const auto colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      if (rest.find(':') != colon) return std::string("an IPv6 address needs brackets, e.g. [::1]:6379");
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      has_port = true;
    }
    if (host.empty() && url) return std::string("the URL has no host");
    if (!std::all_of(host.begin(), host.end(), is_host_char)) {
      return "host \"" + std::string(host) + "\" is not a host name or an IP address";
    }
  }
  if (!has_port) {
    if (url) return std::nullopt;  // 80 or 443
    return std::string("missing port (expected host:port, e.g. 127.0.0.1:6379)");
  }
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "port \"" + std::string(port) + "\" is not a number from 1 to 65535";
  }
  const unsigned long n = std::stoul(std::string(port));
  if (n < 1 || n > 65535) return "port " + std::string(port) + " is out of range (1 to 65535)";
  return std::nullopt;
}

bool origin_allowed(std::string_view origin, std::string_view host, const std::vector<std::string>& allowed) {
  if (origin.empty()) return true;
  const std::string o = ascii_lower(origin);
  for (const auto& a : allowed) {
    if (a == "*" || ascii_lower(a) == o) return true;
  }
  if (o.rfind("http://", 0) != 0) return false;  // "null", https:// pages, other schemes
  std::string authority = o.substr(7);
  if (!authority.empty() && authority.back() == '/') authority.pop_back();
  std::string h = ascii_lower(host);
  auto drop_default_port = [](std::string& s) {
    if (s.size() > 3 && s.compare(s.size() - 3, 3, ":80") == 0) s.resize(s.size() - 3);
  };
  drop_default_port(authority);
  drop_default_port(h);
  return !h.empty() && authority == h;
}

std::string human_bytes(std::uint64_t bytes) {
  static const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<std::uint64_t>(v))) std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

bool read_bounded_file(const std::string& path, std::uint64_t limit, std::string& out, std::string& error) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return false;
  }
  const auto too_big = [&](std::uint64_t size) {
    return "the file is " + human_bytes(size) + ", over the limit of " + human_bytes(limit);
  };
  if (!S_ISREG(st.st_mode)) {
    error = std::string("not a regular file (it is ") + kind_of(st.st_mode) + ")";
    ::close(fd);
    return false;
  }
  if (static_cast<std::uint64_t>(st.st_size) > limit) {
    error = too_big(static_cast<std::uint64_t>(st.st_size));
    ::close(fd);
    return false;
  }
  out.clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > limit) {  // it grew while we read
      error = too_big(out.size()) + " (and growing)";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

std::optional<std::string> check_bounded_tree(const std::string& path, std::uint64_t limit, std::uint64_t entries_limit) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;  // missing: the loader says so in its own words
  const std::string over = ", over the limit of " + human_bytes(limit);
  if (S_ISREG(st.st_mode)) {
    if (static_cast<std::uint64_t>(st.st_size) > limit) {
      return "'" + path + "' is " + human_bytes(static_cast<std::uint64_t>(st.st_size)) + over;
    }
    return std::nullopt;
  }
  if (!S_ISDIR(st.st_mode)) {
    return "'" + path + "' is " + kind_of(st.st_mode) + ", not a journal file or a recording folder";
  }
  std::uint64_t total = 0, entries = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(path, fs::directory_options::follow_directory_symlink, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (++entries > entries_limit) {
      return "'" + path + "' holds more than " + std::to_string(entries_limit) + " files";
    }
    if (it.depth() > 8) {  // a symlink loop, or not a recording
      it.disable_recursion_pending();
      continue;
    }
    struct stat est {};
    const std::string entry = it->path().string();
    if (::stat(entry.c_str(), &est) != 0) continue;  // a dangling link: not read
    if (S_ISDIR(est.st_mode)) continue;
    if (!S_ISREG(est.st_mode)) return "'" + entry + "' is " + kind_of(est.st_mode) + ", not a file a recording holds";
    total += static_cast<std::uint64_t>(est.st_size);
    if (total > limit) return "the files in '" + path + "' add up to more than the limit of " + human_bytes(limit);
  }
  if (ec) return "'" + path + "': " + ec.message();
  return std::nullopt;
}

RecordingDir resolve_recording_dir(std::string_view dir, const std::string& root) {
  RecordingDir out;
  if (dir.find('\0') != std::string_view::npos) {
    out.error = "must not contain a NUL byte";
    return out;
  }
  const fs::path given{std::string(dir)};
  for (const auto& part : given) {
    if (part == "..") {
      out.error = "\"" + std::string(dir) + "\": must not contain \"..\" (recordings stay inside the recordings root)";
      return out;
    }
  }
  std::error_code ec;
  const fs::path root_abs = fs::absolute(root, ec).lexically_normal();
  if (ec) {
    out.error = "the recordings root '" + root + "': " + ec.message();
    return out;
  }
  const fs::path candidate = (given.is_absolute() ? given : root_abs / given).lexically_normal();
  const std::string where = " (the recordings root is " + root_abs.string() +
                            "; relative paths go under it; serve --recordings-root changes it)";
  if (!strictly_inside(candidate, root_abs)) {
    out.error = candidate.string() + ": outside the recordings root" + where;
    return out;
  }
  // A symlink inside the root must not lead out of it.
  const fs::path real_root = fs::weakly_canonical(root_abs, ec);
  const fs::path real = ec ? fs::path() : fs::weakly_canonical(candidate, ec);
  if (ec || !strictly_inside(real, real_root)) {
    out.error = candidate.string() + ": leads outside the recordings root through a symlink" + where;
    return out;
  }
  out.path = candidate.string();
  return out;
}

std::optional<std::string> non_empty_dir(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return std::nullopt;
  std::vector<std::string> names;
  std::size_t count = 0;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    ++count;
    if (names.size() < 3) names.push_back(it->path().filename().string());
  }
  if (count == 0) return std::nullopt;
  if (fs::exists(fs::path(path) / "index.json", ec)) return path + ": already holds a recording (index.json)";
  std::sort(names.begin(), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  if (count > names.size()) list += ", ...";
  return path + ": is not empty (holds " + list + "); give \"append\": true to record into it anyway";
}

}  // namespace faultline
