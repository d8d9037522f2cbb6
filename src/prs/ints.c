/* ints.c - whether the AMX integer kernel (ints.h) may run here. */
#include "core/core.h"
#include "prs/ints.h"

int mg__ints_available(void) { return mg__cpu_amx_enable(); }
