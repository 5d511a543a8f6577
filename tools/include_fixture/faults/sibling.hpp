#pragma once
#include "protocols/fine.hpp"
#include "recorder/sibling.hpp"
