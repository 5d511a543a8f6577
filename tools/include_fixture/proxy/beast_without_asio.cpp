#include <boost/beast/core.hpp>
