/* prs.c - public polygenic-score API: argument and handle checks, the
 * handle's life cycle. The work is in plink.c, scorefile.c and score.c. */
#include "prs/prs_internal.h"
#include "core/core.h"
#include "prs/ints.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int prs_ok(const mg_prs *p) { return p && p->tag == MG__TAG_PRS; }

mg_status mg__prs_set(mg_prs *p, mg_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mg__verr(p->errmsg, sizeof p->errmsg, st, fmt, ap);
    va_end(ap);
    p->status = st;
    return st;
}

static mg_status enter(mg_prs *p) {
    if (!prs_ok(p)) return MG_E_MISUSE;
    p->status = MG_OK;
    p->errmsg[0] = '\0';
    return MG_OK;
}

MG_API void mg_prs_params_init(mg_prs_params *params) {
    if (!params) return;
    mg_prs_params d = MG_PRS_PARAMS_INIT;
    *params = d;
}

void mg__prs_set_tuning(mg_prs *p, const mg__prs_tuning *t) {
    if (!p) return;
    p->tune.wide_chunk = t && t->wide_chunk ? t->wide_chunk : MG__PRS_WIDE_CHUNK;
    p->tune.flush_slots = t && t->flush_slots ? t->flush_slots : MG__INT_FLUSH_SLOTS;
}

static mg_status open_any(mg_prs **out, const char *prefix, const mg_prs_params *params,
                          char *err, size_t errlen, int is_vcf) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!prefix || !*prefix) return mg__err(err, errlen, MG_E_INVALID_ARG, is_vcf ? "path is NULL or empty" : "prefix is NULL or empty");
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    if (params) {
        mg_status st = mg__params_copy(&pp, sizeof pp, params);
        if (st == MG_E_UNSUPPORTED)
            return mg__err(err, errlen, st, "mg_prs_params sets fields this version (%s) does "
                           "not know", MG_VERSION_STRING);
        if (st != MG_OK) return mg__err(err, errlen, st, "bad mg_prs_params.struct_size %u", params->struct_size);
        pp.struct_size = sizeof pp;
    }
    if (!(pp.min_overlap >= 0.0 && pp.min_overlap <= 1.0))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "min_overlap must be within [0, 1]");
    if ((pp.flags & MG_PRS_DOMINANT) && (pp.flags & MG_PRS_RECESSIVE))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "dominant and recessive exclude each other");
    if (pp.flags & ~0x3fu) return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown flags 0x%x", pp.flags);
    if (pp.vcf_dosage > MG_PRS_DOSAGE_NONE)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown vcf_dosage %u", pp.vcf_dosage);
    mg_prs *p = mg__calloc(1, sizeof *p);
    if (!p) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    p->tag = MG__TAG_PRS;
    p->bed_fd = -1;
    p->ds_fd = -1;
    p->params = pp;
    mg__prs_set_tuning(p, NULL);
    mg_status st = is_vcf ? mg__prs_load_vcf(p, prefix) : mg__prs_load_plink(p, prefix);
    if (st != MG_OK) {
        mg__err(err, errlen, st, "%s", p->errmsg);
        mg_prs_free(p);
        return st;
    }
    *out = p;
    return MG_OK;
}

MG_API mg_status mg_prs_open_plink(mg_prs **out, const char *prefix,
                                   const mg_prs_params *params,
                                   char *err, size_t errlen) {
    return open_any(out, prefix, params, err, errlen, 0);
}

MG_API mg_status mg_prs_open_vcf(mg_prs **out, const char *path,
                                 const mg_prs_params *params,
                                 char *err, size_t errlen) {
    return open_any(out, path, params, err, errlen, 1);
}

MG_API mg_status mg_prs_read_freq(mg_prs *prs, const char *path) {
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    if (!path) return mg__prs_set(prs, MG_E_INVALID_ARG, "path is NULL");
    return mg__prs_read_freq(prs, path);
}

MG_API mg_status mg_prs_add_scores(mg_prs *prs, uint32_t *n_added, const char *path) {
    if (n_added) *n_added = 0;
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    if (!path) return mg__prs_set(prs, MG_E_INVALID_ARG, "path is NULL");
    uint32_t n = 0;
    st = mg__prs_add_file(prs, path, &n);
    if (n_added) *n_added = n;
    return st;
}

MG_API mg_status mg_prs_compute(mg_prs *prs) {
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    atomic_store(&prs->interrupt, 0);
    return mg__prs_compute(prs);
}

MG_API mg_status mg_prs_set_progress(mg_prs *prs, mg_prs_progress fn, void *user_data) {
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    prs->progress = fn;
    prs->progress_user = user_data;
    return MG_OK;
}

MG_API mg_status mg_prs_interrupt(mg_prs *prs) {
    if (!prs_ok(prs)) return MG_E_MISUSE;
    atomic_store(&prs->interrupt, 1);
    return MG_OK;
}

MG_API uint64_t mg_prs_sample_count(const mg_prs *prs) { return prs_ok(prs) ? prs->n_samples : 0; }
MG_API uint64_t mg_prs_variant_count(const mg_prs *prs) { return prs_ok(prs) ? prs->n_variants : 0; }
MG_API uint32_t mg_prs_score_count(const mg_prs *prs) { return prs_ok(prs) ? prs->n_scores : 0; }

MG_API mg_status mg_prs_sample_id(const char **fid, const char **iid, const mg_prs *prs, uint64_t i) {
    if (!prs_ok(prs)) return MG_E_MISUSE;
    if (i >= prs->n_samples) return MG_E_INVALID_ARG;
    if (fid) *fid = prs->sstr + prs->fid[i];
    if (iid) *iid = prs->sstr + prs->iid[i];
    return MG_OK;
}

MG_API const char *mg_prs_score_name(const mg_prs *prs, uint32_t k) {
    if (!prs_ok(prs) || k >= prs->n_scores) return NULL;
    return prs->scores[k].name;
}

MG_API mg_status mg_prs_match_report_get(mg_prs_match_report *out, const mg_prs *prs, uint32_t k) {
    if (!prs_ok(prs)) return MG_E_MISUSE;
    if (!out || out->struct_size < sizeof out->struct_size || k >= prs->n_scores)
        return MG_E_INVALID_ARG;
    size_t n = out->struct_size < sizeof *out ? out->struct_size : sizeof *out;
    mg_prs_match_report r = prs->scores[k].rep;
    r.struct_size = (uint32_t)n;
    memcpy(out, &r, n);
    return MG_OK;
}

MG_API mg_status mg_prs_results(double *buf, size_t n, const mg_prs *prs, int32_t column,
                                uint32_t score) {
    if (!prs_ok(prs)) return MG_E_MISUSE;
    if (!prs->computed) return MG_E_MISUSE;
    if (!buf) return MG_E_INVALID_ARG;
    if (column < MG_PRS_COL_SUM || column > MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM) return MG_E_INVALID_ARG;
    if ((column == MG_PRS_COL_SUM || column == MG_PRS_COL_AVG) && score >= prs->n_scores)
        return MG_E_INVALID_ARG;
    if (n < prs->n_samples) return MG_E_BUFFER_TOO_SMALL;
    for (uint64_t s = 0; s < prs->n_samples; s++) {
        double v;
        switch (column) {
        case MG_PRS_COL_SUM: v = prs->r_sum[s * prs->n_scores + score]; break;
        case MG_PRS_COL_AVG: {
            double d = prs->r_den[s];
            v = d != 0 ? prs->r_sum[s * prs->n_scores + score] / d : NAN;
            break;
        }
        case MG_PRS_COL_ALLELE_CT: v = prs->r_act[s]; break;
        case MG_PRS_COL_DENOM: v = prs->r_den[s]; break;
        default: v = prs->r_named[s]; break;
        }
        buf[s] = v;
    }
    return MG_OK;
}

MG_API mg_status mg_prs_write_sscore(mg_prs *prs, const char *path) {
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    if (!path) return mg__prs_set(prs, MG_E_INVALID_ARG, "path is NULL");
    if (!prs->computed) return mg__prs_set(prs, MG_E_MISUSE, "no results: call mg_prs_compute first");
    return mg__prs_write_sscore(prs, path);
}

MG_API mg_status mg_prs_write_freq(mg_prs *prs, const char *path) {
    mg_status st = enter(prs);
    if (st != MG_OK) return st;
    if (!path) return mg__prs_set(prs, MG_E_INVALID_ARG, "path is NULL");
    return mg__prs_write_freq(prs, path);
}

MG_API const char *mg_prs_errmsg(const mg_prs *prs) {
    if (!prs_ok(prs)) return "not a valid polygenic score handle";
    return prs->errmsg;
}

MG_API void mg_prs_free(mg_prs *prs) {
    if (!prs_ok(prs)) return;
    if (prs->bed_fd >= 0) close(prs->bed_fd);
    if (prs->ds_fd >= 0) close(prs->ds_fd);
    mg__free(prs->ds_row);
    mg__free(prs->bed_path);
    mg__free(prs->sstr); mg__free(prs->fid); mg__free(prs->iid);
    mg__free(prs->male); mg__free(prs->founder);
    mg__free(prs->vstr); mg__free(prs->var);
    mg__free(prs->id_hash); mg__free(prs->by_pos); mg__free(prs->ext_freq);
    for (uint32_t k = 0; k < prs->n_scores; k++) mg__free(prs->scores[k].name);
    mg__free(prs->scores); mg__free(prs->rows); mg__free(prs->row_of); mg__free(prs->ent);
    for (uint32_t i = 0; i < prs->n_wide; i++) {
        mg__free(prs->wide[i].row);
        mg__free(prs->wide[i].w);
    }
    mg__free(prs->wide);
    mg__free(prs->r_act); mg__free(prs->r_den); mg__free(prs->r_named); mg__free(prs->r_sum);
    prs->tag = MG__TAG_DEAD;
    mg__free(prs);
}
