#pragma once
#include "proxy/asio.hpp"
