// Checks the control API makes on what a caller names: proxy and toxic names the routes
// can address, upstream addresses, browser origins, files it is asked to read and the
// directories recordings may be written to. Pure or filesystem-only (no sockets), so
// they are unit-tested directly.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace faultline {

// The most a proxy's `replay.journal` (a journal file, or a recording folder with its blobs)
// may hold: it is read whole on the control thread when the proxy is created.
inline constexpr std::uint64_t kMaxReplayJournalBytes = 256ull << 20;

// Why `name` (of a proxy or a toxic: `what`) could not be reached through
// /proxies/{proxy}/toxics/{toxic}, or nullopt when it can: empty, ".", ".." and names with
// a "/" are refused (a client percent-encodes every other character).
std::optional<std::string> unaddressable_name(std::string_view what, std::string_view name);

// Checks an upstream as the API takes it: host:port (host may be empty, a name, an IPv4
// address or a bracketed IPv6 one; port 1 to 65535), or http://host[:port][/...] and
// https://host[:port][/...]. Returns what is wrong, without the field name.
std::optional<std::string> check_upstream(std::string_view upstream);

// A browser page's Origin against the API: allowed when it is absent, names the API's own
// `host` header (scheme http, default port 80 omitted or not), or is in `allowed` ("*" allows
// every origin). Case-insensitive.
bool origin_allowed(std::string_view origin, std::string_view host, const std::vector<std::string>& allowed);

// Reads a regular file of at most `limit` bytes. Refuses anything else (a FIFO, a device such
// as /dev/zero, a directory) before reading, and never reads more than `limit` + 1 bytes, so
// a file named by an API caller cannot grow memory or hang the thread. Errors name the path.
bool read_bounded_file(const std::string& path, std::uint64_t limit, std::string& out, std::string& error);

// A recording or journal folder (or a single file) that an API call names: every file under
// it (recursively, following symlinks) must be regular, and the total at most `limit` bytes.
// `entries_limit` bounds how many directory entries are looked at.
std::optional<std::string> check_bounded_tree(const std::string& path, std::uint64_t limit,
                                              std::uint64_t entries_limit = 100000);

// "1 MiB", "64 KiB", "1.5 GiB": a byte count as people read it.
std::string human_bytes(std::uint64_t bytes);

// Where a POST /recordings `dir` lands: relative ones under `root`, absolute ones must be
// inside it. Refuses a NUL, a ".." step, and (after resolving symlinks of the part that
// exists) anything outside the root. Returns the path to record into, or an error saying why.
struct RecordingDir {
  std::string path;
  std::string error;
};
RecordingDir resolve_recording_dir(std::string_view dir, const std::string& root);

// Why a recording cannot go into `path` without "append": true (it exists and is not
// empty), or nullopt. Names a few of the entries it holds.
std::optional<std::string> non_empty_dir(const std::string& path);

}  // namespace faultline
