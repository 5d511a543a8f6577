// "Did you mean": the known name closest to a misspelt one. A chaos tool that accepts a typo
// runs an experiment that does nothing, so every place that refuses an unknown name (toxic
// types and attributes, drill and profile keys) says which name was probably meant.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace faultline {

// Levenshtein distance.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `name`, when it is close enough to be what was meant (a few
// edits, relative to the name's length); empty otherwise.
std::string closest_name(std::string_view name, const std::vector<std::string_view>& candidates);

// " (did you mean \"latency\"?)" or "".
std::string did_you_mean(std::string_view name, const std::vector<std::string_view>& candidates);

// What a strict reader says of a key it does not know: `unknown field (did you mean
// "within"?) (expected one of: type, name, within)`.
std::string unknown_field(std::string_view key, const std::vector<std::string_view>& known);

}  // namespace faultline
