#include "proxy/uses_asio.hpp"
#include <boost/beast/http.hpp>
