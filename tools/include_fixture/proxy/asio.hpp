#pragma once
#include <boost/asio/ip/tcp.hpp>
