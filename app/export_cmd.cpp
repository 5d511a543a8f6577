#include "app/export_cmd.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <cxxopts.hpp>

#include "recorder/export.hpp"

namespace faultline {

namespace {

constexpr const char* kName = "faultline export";

bool color_wanted(const std::string& mode, bool to_stdout) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  // auto: only a terminal gets escape codes; NO_COLOR (no-color.org) and TERM=dumb opt out.
  if (!to_stdout || !::isatty(STDOUT_FILENO)) return false;
  if (const char* nc = std::getenv("NO_COLOR"); nc && *nc) return false;
  const char* term = std::getenv("TERM");
  return !(term && std::string(term) == "dumb");
}

std::string summary_line(rec::Format format, const rec::ExportSummary& s, const std::string& out) {
  std::string line = "wrote ";
  switch (format) {
    case rec::Format::har: line += std::to_string(s.exported) + " HAR entries"; break;
    case rec::Format::pcapng: line += std::to_string(s.exported) + " packets"; break;
    case rec::Format::text: line += std::to_string(s.exported) + " lines"; break;
  }
  line += " from " + std::to_string(s.connections) + " connection" + (s.connections == 1 ? "" : "s") + " to " + out;
  if (s.skipped) line += " (" + std::to_string(s.skipped) + " skipped: not HTTP)";
  return line;
}

}  // namespace

int run_export(int argc, char** argv) {
  cxxopts::Options options(kName, "Export a recording (a directory or one journal) as HAR, pcapng or a text timeline.");
  options.positional_help("FORMAT RECORDING").show_positional_help();
  // clang-format off
  options.add_options()
    ("format", "har (HTTP exchanges, HAR 1.2), pcapng (synthetic TCP/IP for Wireshark) or text (a timeline)", cxxopts::value<std::string>())
    ("recording", "a recording directory (holding index.json) or one journal-NNNNNN.jsonl", cxxopts::value<std::string>())
    ("o,output", "where to write; '-' or none: stdout (pcapng only when stdout is not a terminal)", cxxopts::value<std::string>())
    ("connection", "only this connection (the journal's conn number)", cxxopts::value<std::uint64_t>())
    ("color", "text: auto (when stdout is a terminal), always or never", cxxopts::value<std::string>()->default_value("auto"))
    ("help", "show this help");
  // clang-format on
  options.parse_positional({"format", "recording"});
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << kName << ": " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (!r.unmatched().empty()) {
    std::cerr << kName << ": unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  if (!r.count("format") || !r.count("recording")) {
    std::cerr << kName << ": give a FORMAT (har, pcapng, text) and a RECORDING\n" << options.help();
    return 2;
  }
  const std::string format_text = r["format"].as<std::string>();
  const auto format = rec::parse_format(format_text);
  if (!format) {
    std::cerr << kName << ": unknown format \"" << format_text << "\" (har, pcapng or text)\n";
    return 2;
  }
  const std::string color = r["color"].as<std::string>();
  if (color != "auto" && color != "always" && color != "never") {
    std::cerr << kName << ": --color takes auto, always or never\n";
    return 2;
  }
  const std::string input = r["recording"].as<std::string>();
  const std::string output = r.count("output") ? r["output"].as<std::string>() : "-";
  const bool to_stdout = output == "-";
  if (to_stdout && *format == rec::Format::pcapng && ::isatty(STDOUT_FILENO)) {
    std::cerr << kName << ": pcapng is binary; give -o FILE.pcapng or pipe it (for example into `tshark -r -`)\n";
    return 2;
  }

  rec::ExportSummary summary;
  rec::ExportOptions eo;
  if (r.count("connection")) eo.connection = r["connection"].as<std::uint64_t>();
  eo.color = *format == rec::Format::text && color_wanted(color, to_stdout);
  eo.creator_version = FAULTLINE_VERSION;
  eo.summary = &summary;
  eo.warn = [](const std::string& message) { std::cerr << kName << ": warning: " << message << "\n"; };

  std::string error;
  bool ok = false;
  std::string tmp;
  if (to_stdout) {
    ok = rec::export_recording(*format, input, std::cout, eo, error);
  } else {
    // Written aside and renamed: a failed export never leaves a half-written file under
    // the name asked for (nor clobbers what was there).
    tmp = output + ".tmp." + std::to_string(::getpid());
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << kName << ": cannot write " << tmp << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    ok = rec::export_recording(*format, input, file, eo, error);
    file.close();
    if (ok && !file) {
      ok = false;
      error = "writing " + tmp + " failed";
      summary.failure = rec::ExportFailure::output;
    }
    std::error_code ec;
    if (ok) {
      std::filesystem::rename(tmp, output, ec);
      if (ec) {
        ok = false;
        error = "cannot rename " + tmp + " to " + output + ": " + ec.message();
        summary.failure = rec::ExportFailure::output;
      }
    }
    if (!ok) std::filesystem::remove(tmp, ec);
  }
  if (!ok) {
    std::cerr << kName << ": " << error << "\n";
    // A newer faultline's recording is a usage problem (upgrade), like a bad argument.
    return summary.failure == rec::ExportFailure::version ? 2 : 1;
  }
  if (!to_stdout) std::cerr << kName << ": " << summary_line(*format, summary, output) << "\n";
  return 0;
}

}  // namespace faultline
