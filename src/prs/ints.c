/* ints.c - which integer kernel of ints.h runs here, and its plain C
 * reference. */
#include "core/core.h"
#include "kernels/kernels.h"
#include "medgemini.h"
#include "prs/ints.h"

int mg__ints_vnni_ok(void) {
    return mg_simd_level() >= MG_SIMD_AVX512 && mg__cpu_vnni() && mg__cpu_vbmi();
}

/* Planning asks what the CPU offers; the permission for AMX tiles is asked
 * for when the first tile kernel runs (a process that never computes scores
 * never asks), and where the OS refuses it the VNNI kernel, with the same
 * layout and sums, runs instead. */
int mg__ints_available(void) {
    if (mg__cpu_amx_present()) return MG__INTS_AMX;
    return mg__ints_vnni_ok() ? MG__INTS_VNNI : MG__INTS_NONE;
}

/* Only after mg__ints_available() named a kernel; the reference otherwise
 * (not reached: where no kernel is built, none is available). */
void mg__ints_run(const mg__ints_step *s) {
#if defined(MG_X86_AMX)
    if (mg__cpu_amx_present() && mg__cpu_amx_enable()) {
        mg__ints_run_amx(s);
        return;
    }
#endif
#if defined(MG_X86_AVX512)
    mg__ints_run_vnni(s);
#else
    mg__ints_run_ref(s);
#endif
}

/* Sample n's dosage of slot z in k-step k, as the B tiles hold it. */
static uint32_t ref_dosage(const mg__ints_step *s, uint32_t k, uint32_t z, uint64_t n) {
    const unsigned char *g = s->geno[(uint64_t)k * MG__INT_SLOTS + z];
    unsigned code = (g[n / 4] >> (2 * (n % 4))) & 3u;
    return s->lut[(uint64_t)k * 256 + z / 4 * 16 + (z % 4) * 4 + code];
}

/* Sums in uint32: the kernels' int32 sums wrap alike (and never do in use:
 * MG__INT_FLUSH_SLOTS). */
void mg__ints_run_ref(const mg__ints_step *s) {
    const uint32_t rows = s->nat * 16;
    for (uint64_t t = s->t0; t < s->t1; t++)
        for (uint32_t k = 0; k < s->nks; k++)
            for (uint32_t n = 0; n < 16; n++) {
                uint32_t d[MG__INT_SLOTS];
                for (uint32_t z = 0; z < MG__INT_SLOTS; z++) d[z] = ref_dosage(s, k, z, 16 * t + n);
                for (uint32_t m = 0; m < rows; m++) {
                    const int8_t *a = s->A + ((uint64_t)k * s->nat + m / 16) * 1024 + (m % 16) * 64;
                    uint32_t sum = 0;
                    for (uint32_t z = 0; z < MG__INT_SLOTS; z++) sum += (uint32_t)(int32_t)a[z] * d[z];
                    int32_t *c = s->acc + (t * s->nat + m / 16) * 256 + (m % 16) * 16 + n;
                    *c = (int32_t)((uint32_t)*c + sum);
                }
            }
}
