/* quad_avx2.c - the quad kernel compiled for AVX2 (see quad_impl.h). */
#define QUAD_FN mg__quad_run_avx2
#include "prs/quad_impl.h"
