// `faultline replay server` (a stand-in upstream serving recorded responses) and
// `faultline replay client` (re-drives a server with the recorded client side). The
// network parts live in replay_server.cpp / replay_client.cpp (Asio through proxy/asio.hpp);
// this header stays Asio-free. Errors are return values, never exceptions.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "replay/replay_model.hpp"

namespace faultline::replay {

enum class Unmatched : std::uint8_t { error, closest, fail };

struct ServerOptions {
  std::string journal;
  std::string listen = "127.0.0.1:0";
  std::optional<Protocol> protocol;     // nullopt = auto (from the journal)
  Unmatched unmatched = Unmatched::error;
  std::vector<std::string> ignore;      // JSON paths left out of body matching
  std::string port_file;                // write the bound HOST:PORT here once listening
};

// Runs until SIGINT/SIGTERM, then prints the summary. Returns the exit code: 0; 1 when a
// request went unmatched under Unmatched::fail (its connection was closed at once); 2 when
// it could not start. Never opens an upstream connection.
int run_server(const ServerOptions& options);

struct ClientOptions {
  std::string journal;
  std::string target;
  std::optional<Protocol> protocol;
  double speed = 1.0;                   // 0 = as fast as possible
  unsigned concurrency_scale = 1;       // each recorded connection run K times
  double threshold = 0.0;               // mismatch ratio above which the run fails
  std::vector<std::string> ignore;
  double timeout = 10.0;                // seconds per reply
  int progress = -1;                    // -1 = when stderr is a TTY
};

int run_client(const ClientOptions& options);

}  // namespace faultline::replay
