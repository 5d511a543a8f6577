#include "protocols/fine.hpp"
#include "base/ok.hpp"
#include <boost/asio/io_context.hpp>
