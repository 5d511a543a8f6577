#include "replay/x.hpp"
#include "app/main.hpp"
