#include "trace/trace-hw_misc_ivsh.h"
