// The one assertion every fuzz target makes its promises with: a broken one traps, so
// libFuzzer keeps the input as a crash (and the corpus replay in ./dev test fails on it).
#pragma once

namespace faultline::fuzz {

inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace faultline::fuzz
