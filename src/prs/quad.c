/* quad.c - portable variant of the quad kernel and the dispatcher. */
#include "core/core.h"
#include "medgemini.h"

#define QUAD_FN mg__quad_run_scalar
#include "prs/quad_impl.h"

void mg__quad_run(const mg__quad_step *q) {
    int32_t lvl = mg_simd_level();
#if defined(MG_X86_AVX512)
    if (lvl >= MG_SIMD_AVX512) {
        mg__quad_run_avx512(q);
        return;
    }
#endif
#if defined(MG_X86_AVX2)
    if (lvl >= MG_SIMD_AVX2) {
        mg__quad_run_avx2(q);
        return;
    }
#endif
    (void)lvl;
    mg__quad_run_scalar(q);
}
