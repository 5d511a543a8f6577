#pragma once
#include "base/ok.hpp"
#include "proxy/up.hpp"
