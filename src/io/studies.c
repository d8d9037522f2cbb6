/* studies.c - mg_studies: DICOM files (folders, DICOMDIR) grouped into
 * studies and series, as a PACS export is organised.
 *
 * Every regular file under the given folders (recursively; hidden entries
 * and links to folders skipped) and every file a DICOMDIR references is
 * read once; files that are not DICOM, cannot be parsed or lack a Study or
 * Series Instance UID are counted in the study set's warnings, not fatal.
 * Records are sorted by patient, study date and time, study UID, series
 * number, series UID, instance number and path, then grouped. For each
 * study: its kind ("volume" when a CT, MR or PT series has two or more
 * files or frames, "radiograph" when a series is CR, DX or an X-ray
 * secondary capture, else "other"), the chest views (frontal and lateral
 * from View Position, else from the series or protocol description), and
 * the prior: the latest earlier study of the same Patient ID. */
#include "core/core.h"
#include "io/dicom.h"
#include "io/image.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 32u
#define MG__STUDIES_MAX_FILES (1u << 22)

typedef struct rec {
    char *path;
    char study[68], series[68], sop[68];
    char pid[68], pname[132], date[20], time[20], acc[36], sdesc[132];
    char modality[20], desc[132], proto[132], body[36], vpos[20];
    int32_t series_no, inst_no, frames;
} rec;

typedef struct st_series {
    size_t first, n;   /* records [first, first + n) */
    char number[16], view[12];
    char *files;       /* newline-separated paths */
} st_series;

typedef struct st_study {
    size_t first, n;   /* records */
    st_series *se;
    size_t n_se;
    const char *kind;
    const char *frontal, *lateral; /* paths inside recs */
    char prior[24];
} st_study;

struct mg_studies {
    uint32_t tag;
    rec *r;
    size_t n_r, cap_r;
    st_study *st;
    size_t n_st;
    char *warnings;
    size_t n_warn, warn_len, warn_cap;
    uint32_t max_files;
    size_t seen;
};

MG_API void mg_studies_params_init(mg_studies_params *p) {
    if (!p) return;
    mg_studies_params d = MG_STUDIES_PARAMS_INIT;
    *p = d;
}

MG_API void mg_studies_free(mg_studies *s) {
    if (!s || s->tag != MG__TAG_STUDIES) return;
    s->tag = MG__TAG_DEAD;
    for (size_t i = 0; i < s->n_r; i++) mg__free(s->r[i].path);
    for (size_t i = 0; i < s->n_st; i++) {
        for (size_t k = 0; k < s->st[i].n_se; k++) mg__free(s->st[i].se[k].files);
        mg__free(s->st[i].se);
    }
    mg__free(s->st);
    mg__free(s->r);
    mg__free(s->warnings);
    mg__free(s);
}

static mg_status append_line(mg_studies *s, const char *path, const char *why) {
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: %s\n", path, why);
    if (n < 0) return MG_OK;
    size_t l = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (s->warn_len + l + 1 > s->warn_cap) {
        size_t cap = s->warn_cap ? s->warn_cap * 2 : 4096;
        while (cap < s->warn_len + l + 1) cap *= 2;
        char *q = mg__realloc(s->warnings, cap);
        if (!q) return MG_E_NOMEM;
        s->warnings = q;
        s->warn_cap = cap;
    }
    memcpy(s->warnings + s->warn_len, line, l);
    s->warn_len += l;
    s->warnings[s->warn_len] = '\0';
    return MG_OK;
}

/* One line of warnings (the first 100 are kept, then a count). */
static mg_status warn(mg_studies *s, const char *path, const char *why) {
    return ++s->n_warn > 100 ? MG_OK : append_line(s, path, why);
}

static void text(const mg__dcm_dataset *ds, uint32_t tag, char *out, size_t n) {
    mg__dcm_text(ds, mg__dcm_find(ds, -1, 0, tag), out, n);
}

static int32_t num(const mg__dcm_dataset *ds, uint32_t tag, int32_t dflt) {
    double v;
    if (mg__dcm_num(ds, mg__dcm_find(ds, -1, 0, tag), 0, &v) != 1 || !(v > -2e9 && v < 2e9))
        return dflt;
    return (int32_t)v;
}

static mg_status add_file(mg_studies *s, const char *path, unsigned depth, char *err,
                          size_t errlen);

/* A DICOMDIR: the files its records reference, relative to its folder. */
static mg_status add_dicomdir(mg_studies *s, const mg__dcm_dataset *ds, const char *path,
                              unsigned depth, char *err, size_t errlen) {
    int32_t sq = mg__dcm_find(ds, -1, 0, 0x00041220u);
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    mg_status st = MG_OK;
    for (uint32_t it = 0; it < mg__dcm_items(ds, sq) && st == MG_OK; it++) {
        char id[512], full[4096];
        int32_t e = mg__dcm_find(ds, sq, it, 0x00041500u);
        if (e < 0 || !mg__dcm_text(ds, e, id, sizeof id) || !id[0]) continue;
        for (char *c = id; *c; c++) if (*c == '\\') *c = '/';
        if (id[0] == '/' || strstr(id, "..")) { /* stays under the DICOMDIR's folder */
            st = warn(s, path, "a record references a path outside its folder");
            continue;
        }
        if ((size_t)snprintf(full, sizeof full, "%.*s%s", (int)dl, path, id) >= sizeof full) {
            st = warn(s, path, "a referenced path is too long");
            continue;
        }
        st = add_file(s, full, depth + 1, err, errlen);
    }
    return st;
}

static mg_status add_file(mg_studies *s, const char *path, unsigned depth, char *err,
                          size_t errlen) {
    if (++s->seen > s->max_files)
        return mg__err(err, errlen, MG_E_LIMIT, "more than %u files (max_files)", s->max_files);
    unsigned char *data = NULL;
    size_t size = 0;
    char why[512];
    mg_status st = mg__read_file(&data, &size, path, (uint64_t)1 << 32, why, sizeof why);
    if (st == MG_E_NOMEM) return mg__err(err, errlen, st, "out of memory reading '%s'", path);
    if (st != MG_OK) return warn(s, path, why);
    if (!mg__image_is_dicom(data, size)) {
        mg__free(data);
        return warn(s, path, "not DICOM");
    }
    mg_image_params ip;
    mg__dcm_dataset ds;
    st = mg__image_params_get(&ip, NULL, why, sizeof why);
    if (st == MG_OK) st = mg__dcm_parse(&ds, data, size, &ip, why, sizeof why);
    if (st != MG_OK) {
        mg__free(data);
        return st == MG_E_NOMEM ? mg__err(err, errlen, st, "out of memory reading '%s'", path)
                                : warn(s, path, why);
    }
    if (mg__dcm_find(&ds, -1, 0, 0x00041220u) >= 0) { /* a DICOMDIR */
        st = depth < MAX_DEPTH ? add_dicomdir(s, &ds, path, depth, err, errlen)
                               : warn(s, path, "DICOMDIRs nested too deep");
        mg__dcm_free(&ds);
        mg__free(data);
        return st;
    }
    rec r;
    memset(&r, 0, sizeof r);
    text(&ds, 0x0020000Du, r.study, sizeof r.study);
    text(&ds, 0x0020000Eu, r.series, sizeof r.series);
    text(&ds, 0x00080018u, r.sop, sizeof r.sop);
    text(&ds, 0x00100020u, r.pid, sizeof r.pid);
    text(&ds, 0x00100010u, r.pname, sizeof r.pname);
    text(&ds, 0x00080020u, r.date, sizeof r.date);
    text(&ds, 0x00080030u, r.time, sizeof r.time);
    text(&ds, 0x00080050u, r.acc, sizeof r.acc);
    text(&ds, 0x00081030u, r.sdesc, sizeof r.sdesc);
    text(&ds, 0x00080060u, r.modality, sizeof r.modality);
    text(&ds, 0x0008103Eu, r.desc, sizeof r.desc);
    text(&ds, 0x00181030u, r.proto, sizeof r.proto);
    text(&ds, 0x00180015u, r.body, sizeof r.body);
    text(&ds, 0x00185101u, r.vpos, sizeof r.vpos);
    r.series_no = num(&ds, 0x00200011u, INT32_MAX);
    r.inst_no = num(&ds, 0x00200013u, INT32_MAX);
    r.frames = num(&ds, 0x00280008u, 1);
    mg__dcm_free(&ds);
    mg__free(data);
    if (!r.study[0] || !r.series[0]) return warn(s, path, "no Study or Series Instance UID");
    if (s->n_r == s->cap_r) {
        size_t cap = s->cap_r ? s->cap_r * 2 : 64;
        rec *q = mg__realloc(s->r, cap * sizeof *q);
        if (!q) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        s->r = q;
        s->cap_r = cap;
    }
    size_t pl = strlen(path) + 1;
    if (!(r.path = mg__malloc(pl))) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    memcpy(r.path, path, pl);
    s->r[s->n_r++] = r;
    return MG_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static mg_status add_dir(mg_studies *s, const char *dir, unsigned depth, char *err,
                         size_t errlen) {
    if (depth > MAX_DEPTH) return warn(s, dir, "folders nested too deep");
    DIR *d = opendir(dir);
    if (!d) {
        char eb[128];
        return mg__err(err, errlen, MG_E_IO, "cannot open folder '%s': %s", dir,
                       strerror_r(errno, eb, sizeof eb));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    mg_status st = MG_OK;
    struct dirent *e;
    while (st == MG_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **q = n > s->max_files ? NULL : mg__realloc(names, nc * sizeof *q);
            if (!q) {
                st = n > s->max_files ? mg__err(err, errlen, MG_E_LIMIT,
                                                "folder '%s' has more than %u entries", dir,
                                                s->max_files)
                                      : mg__err(err, errlen, MG_E_NOMEM, "out of memory");
                break;
            }
            names = q;
            cap = nc;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = mg__malloc(l))) {
            st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
            break;
        }
        snprintf(names[n++], l, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
    }
    closedir(d);
    if (st == MG_OK && n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == MG_OK; i++) {
        struct stat sb, lb;
        if (stat(names[i], &sb) != 0) st = warn(s, names[i], "cannot be read");
        else if (S_ISDIR(sb.st_mode)) {
            if (lstat(names[i], &lb) == 0 && !S_ISLNK(lb.st_mode))
                st = add_dir(s, names[i], depth + 1, err, errlen);
        } else if (S_ISREG(sb.st_mode)) {
            st = add_file(s, names[i], depth, err, errlen);
        }
    }
    for (size_t i = 0; i < n; i++) mg__free(names[i]);
    mg__free(names);
    return st;
}

static int cmp_int(int32_t a, int32_t b) { return (a > b) - (a < b); }

static int cmp_rec(const void *x, const void *y) {
    const rec *a = x, *b = y;
    int c;
    if ((c = strcmp(a->pid, b->pid)) || (c = strcmp(a->date, b->date)) ||
        (c = strcmp(a->time, b->time)) || (c = strcmp(a->study, b->study)) ||
        (c = cmp_int(a->series_no, b->series_no)) || (c = strcmp(a->series, b->series)) ||
        (c = cmp_int(a->inst_no, b->inst_no)))
        return c;
    return strcmp(a->path, b->path);
}

/* Whole words of s (upper-cased) include w. */
static int has_word(const char *s, const char *w) {
    size_t n = strlen(w);
    for (const char *p = s; *p; p++) {
        if (p != s && isalnum((unsigned char)p[-1])) continue;
        size_t k = 0;
        while (k < n && p[k] && toupper((unsigned char)p[k]) == w[k]) k++;
        if (k == n && !isalnum((unsigned char)p[n])) return 1;
    }
    return 0;
}

/* "frontal", "lateral" or "" for a radiograph record. */
static const char *view_of(const rec *r) {
    static const char *const lat[] = {"LL", "RL", "LAT", "LATERAL"};
    static const char *const fro[] = {"PA", "AP", "FRONTAL"};
    const char *srcs[3] = {r->vpos, r->desc, r->proto};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof lat / sizeof *lat; i++)
            if (has_word(srcs[k], lat[i])) return "lateral";
        for (size_t i = 0; i < sizeof fro / sizeof *fro; i++)
            if (has_word(srcs[k], fro[i])) return "frontal";
    }
    return "";
}

static int is_volume_modality(const char *m) {
    return !strcmp(m, "CT") || !strcmp(m, "MR") || !strcmp(m, "PT");
}
static int is_radiograph(const char *m) {
    return !strcmp(m, "CR") || !strcmp(m, "DX") || !strcmp(m, "RG") || !strcmp(m, "PX");
}

static mg_status group(mg_studies *s, char *err, size_t errlen) {
    if (s->n_r) qsort(s->r, s->n_r, sizeof *s->r, cmp_rec);
    /* duplicates of one instance (the same file reached twice) count once */
    size_t w = 0;
    for (size_t i = 0; i < s->n_r; i++) {
        if (w && s->r[i].sop[0] && !strcmp(s->r[i].sop, s->r[w - 1].sop) &&
            !strcmp(s->r[i].series, s->r[w - 1].series) &&
            !strcmp(s->r[i].study, s->r[w - 1].study)) {
            mg_status st = warn(s, s->r[i].path, "the same instance as an earlier file");
            mg__free(s->r[i].path);
            if (st) return mg__err(err, errlen, st, "out of memory");
            continue;
        }
        s->r[w++] = s->r[i];
    }
    s->n_r = w;
    size_t n_st = 0;
    for (size_t i = 0; i < s->n_r; i++)
        n_st += !i || strcmp(s->r[i].study, s->r[i - 1].study);
    if (n_st && !(s->st = mg__calloc(n_st, sizeof *s->st)))
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_r;) {
        st_study *t = &s->st[s->n_st++];
        size_t j = i;
        while (j < s->n_r && !strcmp(s->r[j].study, s->r[i].study)) j++;
        t->first = i;
        t->n = j - i;
        size_t ns = 0;
        for (size_t k = i; k < j; k++) ns += k == i || strcmp(s->r[k].series, s->r[k - 1].series);
        if (!(t->se = mg__calloc(ns, sizeof *t->se)))
            return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        int vol = 0, radio = 0;
        for (size_t k = i; k < j;) {
            st_series *se = &t->se[t->n_se++];
            size_t m = k, bytes = 1;
            while (m < j && !strcmp(s->r[m].series, s->r[k].series)) bytes += strlen(s->r[m++].path) + 1;
            se->first = k;
            se->n = m - k;
            if (s->r[k].series_no != INT32_MAX)
                snprintf(se->number, sizeof se->number, "%d", (int)s->r[k].series_no);
            if (!(se->files = mg__malloc(bytes)))
                return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
            size_t o = 0;
            for (size_t q = k; q < m; q++) {
                size_t l = strlen(s->r[q].path);
                memcpy(se->files + o, s->r[q].path, l);
                o += l;
                se->files[o++] = '\n';
            }
            se->files[o ? o - 1 : 0] = '\0';
            const rec *r0 = &s->r[k];
            if (is_volume_modality(r0->modality) && (se->n > 1 || r0->frames > 1)) vol = 1;
            if (is_radiograph(r0->modality)) {
                radio = 1;
                snprintf(se->view, sizeof se->view, "%s", view_of(r0));
                for (size_t q = k; q < m; q++) { /* the first of each view */
                    const char *v = view_of(&s->r[q]);
                    if (!strcmp(v, "frontal") && !t->frontal) t->frontal = s->r[q].path;
                    if (!strcmp(v, "lateral") && !t->lateral) t->lateral = s->r[q].path;
                }
            }
            k = m;
        }
        t->kind = vol ? "volume" : radio ? "radiograph" : "other";
        if (radio && !t->frontal && !t->lateral) /* no view information: the first image */
            for (size_t q = i; q < j && !t->frontal; q++)
                if (is_radiograph(s->r[q].modality)) t->frontal = s->r[q].path;
        i = j;
    }
    /* priors: studies are sorted by patient, then date and time */
    for (size_t k = 1; k < s->n_st; k++) {
        const rec *a = &s->r[s->st[k].first], *b = &s->r[s->st[k - 1].first];
        if (a->pid[0] && !strcmp(a->pid, b->pid) && b->date[0] && strcmp(b->date, a->date) < 0)
            snprintf(s->st[k].prior, sizeof s->st[k].prior, "%zu", k - 1);
        else if (a->pid[0] && !strcmp(a->pid, b->pid) && s->st[k - 1].prior[0] &&
                 !strcmp(a->date, b->date))
            memcpy(s->st[k].prior, s->st[k - 1].prior, sizeof s->st[k].prior);
    }
    return MG_OK;
}

MG_API mg_status mg_studies_scan(mg_studies **out, const char *const *paths, size_t n_paths,
                                 const mg_studies_params *params, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!paths || !n_paths) return mg__err(err, errlen, MG_E_INVALID_ARG, "no paths");
    mg_studies_params p = MG_STUDIES_PARAMS_INIT;
    mg_status st = mg__params_copy(&p, sizeof p, params);
    if (st != MG_OK)
        return mg__err(err, errlen, st == MG_E_UNSUPPORTED ? st : MG_E_INVALID_ARG,
                       "bad mg_studies_params");
    if (p.flags || p.max_files > MG__STUDIES_MAX_FILES)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "bad mg_studies_params (flags, max_files)");
    mg_studies *s = mg__calloc(1, sizeof *s);
    if (!s) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    s->tag = MG__TAG_STUDIES;
    s->max_files = p.max_files ? p.max_files : 100000;
    for (size_t i = 0; i < n_paths && st == MG_OK; i++) {
        struct stat sb;
        if (!paths[i]) st = mg__err(err, errlen, MG_E_INVALID_ARG, "path %zu is NULL", i);
        else if (stat(paths[i], &sb) != 0)
            st = mg__err(err, errlen, MG_E_IO, "'%s': %s", paths[i], strerror(errno));
        else if (S_ISDIR(sb.st_mode)) st = add_dir(s, paths[i], 0, err, errlen);
        else st = add_file(s, paths[i], 0, err, errlen);
    }
    if (st == MG_OK) st = group(s, err, errlen);
    if (st == MG_OK && !s->n_st)
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT, "no DICOM study found (%zu files looked at)",
                     s->seen);
    if (st != MG_OK) {
        mg_studies_free(s);
        return st;
    }
    if (s->n_warn > 100) {
        char more[64];
        snprintf(more, sizeof more, "%zu more", s->n_warn - 100);
        if (append_line(s, "(warnings)", more) != MG_OK) {
            mg_studies_free(s);
            return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        }
    }
    *out = s;
    return MG_OK;
}

MG_API size_t mg_studies_count(const mg_studies *s) {
    return s && s->tag == MG__TAG_STUDIES ? s->n_st : 0;
}

MG_API size_t mg_studies_series_count(const mg_studies *s, size_t study) {
    if (!s || s->tag != MG__TAG_STUDIES || study >= s->n_st) return 0;
    return s->st[study].n_se;
}

MG_API const char *mg_studies_get(const mg_studies *s, size_t study, int64_t series,
                                  const char *key) {
    if (!s || s->tag != MG__TAG_STUDIES || !key) return NULL;
    if (study == SIZE_MAX && series < 0)
        return !strcmp(key, "warnings") ? (s->warnings ? s->warnings : "") : NULL;
    if (study >= s->n_st) return NULL;
    const st_study *t = &s->st[study];
    const rec *r = &s->r[t->first];
    if (series < 0) {
        const char *v = !strcmp(key, "study_uid")      ? r->study
                        : !strcmp(key, "patient_id")   ? r->pid
                        : !strcmp(key, "patient_name") ? r->pname
                        : !strcmp(key, "date")         ? r->date
                        : !strcmp(key, "time")         ? r->time
                        : !strcmp(key, "accession")    ? r->acc
                        : !strcmp(key, "description")  ? r->sdesc
                        : !strcmp(key, "kind")         ? t->kind
                        : !strcmp(key, "frontal")      ? t->frontal
                        : !strcmp(key, "lateral")      ? t->lateral
                        : !strcmp(key, "prior")        ? (t->prior[0] ? t->prior : NULL)
                                                       : NULL;
        return v && (v == t->frontal || v == t->lateral || v == t->prior || v[0]) ? v : NULL;
    }
    if ((uint64_t)series >= t->n_se) return NULL;
    const st_series *se = &t->se[series];
    const rec *f = &s->r[se->first];
    const char *v = !strcmp(key, "series_uid")    ? f->series
                    : !strcmp(key, "modality")    ? f->modality
                    : !strcmp(key, "description") ? f->desc
                    : !strcmp(key, "number")      ? se->number
                    : !strcmp(key, "body_part")   ? f->body
                    : !strcmp(key, "view")        ? se->view
                    : !strcmp(key, "files")       ? se->files
                                                  : NULL;
    return v && v[0] ? v : NULL;
}
