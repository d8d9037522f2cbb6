/* quad_avx512.c - the quad kernel compiled for AVX-512 (see quad_impl.h). */
#define QUAD_FN mg__quad_run_avx512
#define QUAD_AVX512 1
#include "prs/quad_impl.h"
