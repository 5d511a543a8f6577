#include "proxy/control_client.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "proxy/address.hpp"
#include "proxy/asio.hpp"

namespace faultline {
namespace beast = boost::beast;
namespace http = beast::http;

HttpResult http_call(const std::string& base_url, const std::string& method, const std::string& path,
                     const std::optional<std::string>& body) {
  HttpResult result;
  std::string rest = base_url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  else if (rest.rfind("https://", 0) == 0) {
    result.error = "https:// API URLs are not supported yet; use http://";
    return result;
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  auto hp = split_host_port(rest);
  if (!hp) hp = HostPort{rest, "8474"};
  try {
    net::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(resolver.resolve(hp->host, hp->port));
    http::request<http::string_body> req{http::string_to_verb(method), path, 11};
    req.set(http::field::host, hp->host.find(':') != std::string::npos ? "[" + hp->host + "]:" + hp->port
                                                                       : hp->host + ":" + hp->port);
    req.set(http::field::user_agent, "faultline-ctl/" FAULTLINE_VERSION);
    if (const char* token = std::getenv("FAULTLINE_TOKEN")) req.set(http::field::authorization, std::string("Bearer ") + token);
    if (body) {
      req.set(http::field::content_type, "application/json");
      req.body() = *body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    result.status = static_cast<int>(res.result_int());
    result.body = res.body();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } catch (const boost::system::system_error& e) {
    // code().message(), not what(): what() appends Boost's source location
    // ("[system:111 at .../reactive_socket_service.hpp:587:5 in function ...]").
    if (e.code().category() == make_error_code(http::error::bad_version).category()) {
      // Something answered, in another protocol (Redis, a raw TCP service).
      result.error = "no faultline/Toxiproxy API at " + base_url + ": the reply is not HTTP (" + e.code().message() + ")";
    } else {
      result.error = "cannot reach the faultline API at " + base_url + ": " + e.code().message();
    }
  } catch (const std::exception& e) {
    result.error = "cannot reach the faultline API at " + base_url + ": " + e.what();
  }
  return result;
}

}  // namespace faultline
