#pragma once
#include "faults/sibling.hpp"
