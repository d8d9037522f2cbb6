/* vcf.c - VCF/BCF genotypes (plain or bgzipped) through htslib. Records are
 * read one at a time; each becomes a .bim-like variant (A1 = ALT, A2 = REF,
 * as plink2 --vcf) and one SNP-major .bed row of GT hard calls written to an
 * unlinked temporary file, which score.c reads in blocks like a PLINK 1 .bed;
 * a record with FORMAT/DS also writes a row of 16-bit dosages (1/16384, as
 * plink2 dosage=DS) to a second one, scored instead of its hard calls.
 * Memory is bounded by the variant table and one record. */
#include "prs/prs_internal.h"

#include <htslib/hts.h>
#include <htslib/vcf.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>



static int write_all(int fd, const unsigned char *b, size_t n) {
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Temporary file for the converted genotypes, unlinked at once. */
static int make_tmp(void) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t n = strlen(dir) + 32;
    char *t = mg__malloc(n);
    if (!t) return -1;
    snprintf(t, n, "%s/mgprs-vcf-XXXXXX", dir);
    int fd = mkstemp(t);
    if (fd >= 0) unlink(t);
    mg__free(t);
    return fd;
}

mg_status mg__prs_load_vcf(mg_prs *p, const char *path) {
    mg_status st = MG_OK;
    size_t vcap = 0, scap = 0;
    uint64_t varcap = 0;
    int32_t *gt = NULL;
    int ngt = 0, nds = 0;
    float *ds = NULL;
    uint16_t *dsrow = NULL;
    unsigned char *row = NULL;
    kstring_t alt = {0, 0, NULL};
    bcf1_t *rec = NULL;
    bcf_hdr_t *hdr = NULL;
    htsFile *fp = NULL;
    p->bed_path = mg__malloc(strlen(path) + 1);
    if (!p->bed_path) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    memcpy(p->bed_path, path, strlen(path) + 1);

    errno = 0;
    fp = hts_open(path, "r");
    if (!fp) {
        st = mg__prs_set(p, MG_E_IO, "cannot open %s: %s", path, errno ? strerror(errno) : "unknown error");
        goto done;
    }
    const htsFormat *fmt = hts_get_format(fp);
    if (fmt->format != vcf && fmt->format != bcf) {
        st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: not a VCF or BCF file", path);
        goto done;
    }
    hdr = bcf_hdr_read(fp);
    if (!hdr) { st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: bad or missing VCF header", path); goto done; }
    int ns = bcf_hdr_nsamples(hdr);
    if (ns <= 0) { st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no samples", path); goto done; }
    uint64_t N = (uint64_t)ns;
    p->fid = mg__malloc(N * sizeof *p->fid);
    p->iid = mg__malloc(N * sizeof *p->iid);
    p->male = mg__calloc(N, 1);     /* sex unknown: plink2 --vcf without sex info */
    p->founder = mg__malloc(N);     /* no parents known: every sample a founder */
    if (!p->fid || !p->iid || !p->male || !p->founder) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    memset(p->founder, 1, N);
    /* plink2 --vcf without --double-id/--id-delim: FID "0", IID the sample */
    uint64_t fid0 = mg__prs_arena_add(&p->sstr, &p->sstr_len, &scap, "0");
    if (fid0 == UINT64_MAX) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t s = 0; s < N; s++) {
        uint64_t o = mg__prs_arena_add(&p->sstr, &p->sstr_len, &scap, hdr->samples[s]);
        if (o == UINT64_MAX) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        p->fid[s] = fid0;
        p->iid[s] = o;
    }
    p->n_samples = N;
    p->bytes_per_var = (N + 3) / 4;
    row = mg__malloc((size_t)p->bytes_per_var);
    rec = bcf_init();
    if (!row || !rec) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    p->bed_fd = make_tmp();
    if (p->bed_fd < 0) { st = mg__prs_set(p, MG_E_IO, "cannot create a temporary file: %s", strerror(errno)); goto done; }
    static const unsigned char hdrb[3] = {0x6c, 0x1b, 0x01};
    if (write_all(p->bed_fd, hdrb, 3)) { st = mg__prs_set(p, MG_E_IO, "temporary file: %s", strerror(errno)); goto done; }

    static const char *const dfield[] = {"DS", "GP", "HDS"};
    const uint32_t dmode = p->params.vcf_dosage;
    const char *dname = dmode < MG_PRS_DOSAGE_NONE ? dfield[dmode] : NULL;
    int dsid = dname ? bcf_hdr_id2int(hdr, BCF_DT_ID, dname) : -1;
    int has_ds = dsid >= 0 && bcf_hdr_idinfo_exists(hdr, BCF_HL_FMT, dsid);
    if (has_ds) {
        dsrow = mg__malloc((size_t)N * sizeof *dsrow);
        if (!dsrow) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        p->ds_fd = make_tmp();
        if (p->ds_fd < 0) { st = mg__prs_set(p, MG_E_IO, "cannot create a temporary file: %s", strerror(errno)); goto done; }
    }
    uint64_t n = 0, dsfill = 0, dscap = 0;
    uint32_t n_ds = 0;
    int r;
    while ((r = bcf_read(fp, hdr, rec)) == 0) {
        unsigned long long ln = (unsigned long long)n + 1;
        if (rec->errcode || bcf_unpack(rec, BCF_UN_STR | BCF_UN_FMT) != 0 || rec->errcode) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: malformed record %llu", path, ln);
            goto done;
        }
        if (rec->pos < 0) { /* htslib leaves a non-numeric POS at -1 */
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: bad position", path, ln);
            goto done;
        }
        if (rec->n_allele < 1 || !mg__allele_ok(rec->d.allele[0])) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: bad REF allele", path, ln);
            goto done;
        }
        alt.l = 0;
        if (rec->n_allele == 1) kputs(".", &alt);
        for (int a = 1; a < rec->n_allele; a++) {
            if (!mg__allele_ok(rec->d.allele[a])) {
                st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: bad ALT allele", path, ln);
                goto done;
            }
            if (a > 1) kputc(',', &alt);
            kputs(rec->d.allele[a], &alt);
        }
        if (!alt.s) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        if (n >= UINT32_MAX / 2 - 1) { st = mg__prs_set(p, MG_E_LIMIT, "%s: too many variants", path); goto done; }
        if (mg__prs_grow((void **)&p->var, &varcap, n + 1, sizeof *p->var)) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        mg__prs_variant *v = &p->var[n];
        v->id = mg__prs_arena_add(&p->vstr, &p->vstr_len, &vcap, rec->d.id ? rec->d.id : ".");
        v->a1 = mg__prs_arena_add(&p->vstr, &p->vstr_len, &vcap, alt.s);
        v->a2 = mg__prs_arena_add(&p->vstr, &p->vstr_len, &vcap, rec->d.allele[0]);
        if (v->id == UINT64_MAX || v->a1 == UINT64_MAX || v->a2 == UINT64_MAX) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
            goto done;
        }
        v->pos = (int64_t)rec->pos + 1;
        v->chr = (int16_t)mg__chr_code(bcf_seqname_safe(hdr, rec));
        v->cls = (uint8_t)mg__chr_class(v->chr);
        v->multi = 0;

        /* GT -> 2-bit codes: 00 hom A1 (ALT), 01 missing, 10 het, 11 hom A2
         * (REF). A multiallelic record counts REF against all ALTs (such
         * variants are excluded from matching unless KEEP_MULTIALLELIC). A
         * haploid call counts as homozygous, as plink2 imports it. */
        memset(row, 0x55, (size_t)p->bytes_per_var); /* all missing */
        int got = bcf_get_genotypes(hdr, rec, &gt, &ngt);
        if (got == -4) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        if (got > 0) {
            if (got % ns) {
                st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: bad GT field", path, ln);
                goto done;
            }
            int ploid = got / ns;
            for (uint64_t s = 0; s < N; s++) {
                const int32_t *g = gt + s * (uint64_t)ploid;
                int nal = 0, nref = 0, miss = 0;
                for (int k = 0; k < ploid; k++) {
                    if (g[k] == bcf_int32_vector_end) break;
                    if (bcf_gt_is_missing(g[k])) { miss = 1; break; }
                    int ai = bcf_gt_allele(g[k]);
                    if (ai < 0 || ai >= rec->n_allele) {
                        st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: GT allele out of range", path, ln);
                        goto done;
                    }
                    nal++;
                    nref += ai == 0;
                }
                if (miss || nal == 0 || nal > 2) continue; /* missing (or polyploid) */
                unsigned code;
                if (nal == 1) code = nref ? 3u : 0u;
                else code = nref == 2 ? 3u : nref == 1 ? 2u : 0u;
                unsigned sh = (unsigned)(s & 3) * 2;
                row[s >> 2] = (unsigned char)((row[s >> 2] & ~(3u << sh)) | (code << sh));
            }
        }
        /* The dosage field, read like plink2 --vcf dosage=FIELD and
         * quantised to 1/16384; a record without it keeps its GT calls.
         * DS: ALT dosage, one value per ALT, summed. HDS: ALT dosage per
         * haplotype, summed. GP: probabilities of the genotypes in VCF
         * order; dosage = sum P(g) x (ALT alleles in g) / sum P(g). */
        int gotds = has_ds ? bcf_get_format_float(hdr, rec, dname, &ds, &nds) : -3;
        if (gotds == -4) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        if (gotds > 0 && rec->n_allele >= 2) {
            int per = gotds / ns;
            if (gotds % ns || per < 1) {
                st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: bad %s field", path, ln, dname);
                goto done;
            }
            for (uint64_t s = 0; s < N; s++) {
                const float *x = ds + s * (uint64_t)per;
                int nv = 0, miss = 0;
                for (; nv < per; nv++) {
                    if (bcf_float_is_vector_end(x[nv])) break;
                    if (bcf_float_is_missing(x[nv])) { miss = 1; break; }
                }
                if (miss || nv == 0) { dsrow[s] = MG__DS_MISSING; continue; }
                double t = 0;
                if (dmode == MG_PRS_DOSAGE_GP) {
                    /* diploid genotype (j, k), j <= k, sits at k(k+1)/2 + j;
                     * haploid genotype k at k (counted as homozygous) */
                    int A = rec->n_allele;
                    double psum = 0, acc = 0;
                    int ok;
                    if (nv == A) {
                        ok = 1;
                        for (int k = 0; k < A; k++) {
                            psum += (double)x[k];
                            acc += (double)x[k] * (k > 0 ? 2.0 : 0.0);
                        }
                    } else {
                        ok = nv == A * (A + 1) / 2;
                        for (int k = 0; ok && k < A; k++)
                            for (int j = 0; j <= k; j++) {
                                double pr = (double)x[k * (k + 1) / 2 + j];
                                psum += pr;
                                acc += pr * (double)((j > 0) + (k > 0));
                            }
                    }
                    if (!ok) {
                        st = mg__prs_set(p, MG_E_DATA_FORMAT,
                                         "%s: record %llu: GP has %d values for %d alleles", path, ln, nv, A);
                        goto done;
                    }
                    for (int k = 0; k < nv; k++)
                        if (!(x[k] >= 0.0f && x[k] <= 1.0f + 1e-3f)) {
                            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: GP value %g outside [0, 1]",
                                             path, ln, (double)x[k]);
                            goto done;
                        }
                    if (!(psum > 0)) { dsrow[s] = MG__DS_MISSING; continue; }
                    t = acc / psum;
                } else {
                    for (int k = 0; k < nv; k++) t += (double)x[k];
                    if (dmode == MG_PRS_DOSAGE_HDS && nv == 1) t *= 2; /* haploid: homozygous */
                }
                if (!(t >= 0.0 && t <= 2.0)) {
                    st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: record %llu: %s dosage %g outside [0, 2]",
                                     path, ln, dname, t);
                    goto done;
                }
                dsrow[s] = (uint16_t)llround(t * MG__DS_ONE);
            }
            if (mg__prs_grow((void **)&p->ds_row, &dscap, n + 1, sizeof *p->ds_row)) {
                st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
                goto done;
            }
            for (uint64_t k = dsfill; k < n; k++) p->ds_row[k] = UINT32_MAX;
            p->ds_row[n] = n_ds++;
            dsfill = n + 1;
            if (write_all(p->ds_fd, (const unsigned char *)dsrow, (size_t)N * sizeof *dsrow)) {
                st = mg__prs_set(p, MG_E_IO, "temporary file: %s", strerror(errno));
                goto done;
            }
        }
        if ((N & 3) != 0) row[N >> 2] &= (unsigned char)((1u << ((N & 3) * 2)) - 1); /* pad 0 */
        if (write_all(p->bed_fd, row, (size_t)p->bytes_per_var)) {
            st = mg__prs_set(p, MG_E_IO, "temporary file: %s", strerror(errno));
            goto done;
        }
        n++;
    }
    if (r < -1) { st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: malformed or truncated after record %llu", path, (unsigned long long)n); goto done; }
    if (n == 0) { st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no variants", path); goto done; }
    p->n_variants = n;
    if (p->ds_row) {
        if (mg__prs_grow((void **)&p->ds_row, &dscap, n, sizeof *p->ds_row)) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        for (uint64_t k = dsfill; k < n; k++) p->ds_row[k] = UINT32_MAX;
    }
    st = mg__prs_index(p);
done:
    free(alt.s);
    free(gt);
    free(ds);
    mg__free(dsrow);
    mg__free(row);
    if (rec) bcf_destroy(rec);
    if (hdr) bcf_hdr_destroy(hdr);
    if (fp) hts_close(fp);
    return st;
}
