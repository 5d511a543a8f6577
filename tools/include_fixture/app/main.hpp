#pragma once
#include "replay/x.hpp"
