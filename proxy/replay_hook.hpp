// A proxy whose upstream is a journal (`"replay": {...}` instead of `"upstream"`): proxy/
// cannot start a replay server (replay/ sits above it), so app/ installs this hook and the
// control plane calls it when a proxy entry carries `replay`.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace faultline {

// Gets the `replay` object as compact JSON and the directory a relative journal path resolves
// against ("" = the working directory). Sets the address the proxy dials and an owner that
// stops the server when the last copy is released. Returns why it cannot, naming the field
// inside the object ("unmatched: must be one of error, closest, fail, forward").
using ReplayStarter = std::function<std::optional<std::string>(const std::string& replay_json, const std::string& base_dir,
                                                               std::string& upstream, std::shared_ptr<void>& owner)>;

}  // namespace faultline
