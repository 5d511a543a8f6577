// The one Asio include point. Everything in proxy/ that needs Asio includes this file
// and nothing else from Boost.Asio; it is kept out of public, widely included headers.
// Asio and Beast are compiled once, in asio_impl.cpp (separate compilation).
#pragma once
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace faultline {
namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace ssl = boost::asio::ssl;
using net::awaitable;
inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

// Runs `io` until it runs out of work or is stopped. An exception that escapes a handler
// is a bug: it is logged as escaping `loop` (the spawn boundary) and the loop goes on
// serving everything else. Returns how many escaped. (Defined in workers.cpp.)
std::size_t run_catching(net::io_context& io, const char* loop);
}  // namespace faultline
