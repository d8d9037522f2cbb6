/* registry.c - the static table of built-in encoders and the per-model
 * encoder sets (see encoder.h). */
#include "encoders/encoder.h"

#include <string.h>

const mg__encoder_vtable *const mg__builtin_encoders[] = {
    &mg__encoder_image2d,
    &mg__encoder_volume3d,
    &mg__encoder_genome,
    NULL,
};

static int vt_valid(const mg__encoder_vtable *vt) {
    return vt && vt->abi_version == MG__ENCODER_ABI &&
           vt->struct_size >= sizeof(mg__encoder_vtable) && vt->name &&
           vt->probe && vt->build && vt->destroy && vt->geometry && vt->bid &&
           vt->n_blocks && vt->block_label &&
           vt->state_new && vt->state_free && vt->encode && vt->input_kind > 0;
}

static mg_status build_one(mg__encoder *e, const mg__encoder_vtable *vt,
                           const mg__mgm *f, uint32_t text_hidden, char *err,
                           size_t errlen) {
    void *impl = NULL;
    mg_status st = vt->build(&impl, f, text_hidden, err, errlen);
    if (st != MG_OK) return st;
    e->vt = vt;
    e->impl = impl;
    memset(&e->geo, 0, sizeof e->geo);
    vt->geometry(impl, &e->geo);
    if (!e->geo.n_tokens || !e->geo.width) {
        vt->destroy(impl);
        e->vt = NULL;
        e->impl = NULL;
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "encoder %s: produces no tokens", vt->name);
    }
    return MG_OK;
}

/* Slot of the encoder serving kind, or -1. */
static int find_kind(const mg__encoders *set, int32_t kind) {
    for (uint32_t i = 0; i < set->n; i++)
        if (set->e[i].vt->input_kind == kind) return (int)i;
    return -1;
}

mg_status mg__encoders_build(mg__encoders *set, const mg__mgm *f,
                             uint32_t text_hidden, char *err, size_t errlen) {
    if (!set || !f)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "encoders: NULL argument");
    memset(set, 0, sizeof *set);
    /* Per input kind, the highest model bid among the built-ins. */
    const mg__encoder_vtable *best[MG__MAX_ENCODERS];
    int32_t bid[MG__MAX_ENCODERS];
    uint32_t nb = 0;
    for (size_t i = 0; mg__builtin_encoders[i]; i++) {
        const mg__encoder_vtable *vt = mg__builtin_encoders[i];
        int32_t b = vt->probe(f);
        if (b <= 0) continue;
        uint32_t k = 0;
        while (k < nb && best[k]->input_kind != vt->input_kind) k++;
        if (k == nb) {
            if (nb == MG__MAX_ENCODERS) break;
            best[nb] = vt;
            bid[nb++] = b;
        } else if (b > bid[k]) {
            best[k] = vt;
            bid[k] = b;
        }
    }
    for (uint32_t k = 0; k < nb; k++) {
        mg_status st = build_one(&set->e[set->n], best[k], f, text_hidden, err, errlen);
        if (st != MG_OK) {
            mg__encoders_free(set);
            return st;
        }
        set->n++;
    }
    return MG_OK;
}

mg_status mg__encoders_add(mg__encoders *set, const mg__encoder_vtable *vt,
                           const mg__mgm *f, uint32_t text_hidden, char *err,
                           size_t errlen) {
    if (!set || !f)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "encoders: NULL argument");
    if (!vt_valid(vt))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "encoder vtable is NULL, of another ABI version (want %u) "
                       "or lacks a function", MG__ENCODER_ABI);
    int32_t b = vt->probe(f);
    if (b <= 0)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "encoder %s: the model has nothing it can run", vt->name);
    int slot = find_kind(set, vt->input_kind);
    if (slot >= 0 && set->e[slot].vt->probe(f) >= b)
        slot = -1; /* the present one bids at least as high: add beside it */
    if (slot < 0 && set->n == MG__MAX_ENCODERS)
        return mg__err(err, errlen, MG_E_LIMIT, "a model holds at most %u encoders",
                       MG__MAX_ENCODERS);
    mg__encoder e;
    mg_status st = build_one(&e, vt, f, text_hidden, err, errlen);
    if (st != MG_OK) return st;
    if (slot >= 0) {
        set->e[slot].vt->destroy(set->e[slot].impl);
        set->e[slot] = e;
    } else {
        set->e[set->n++] = e;
    }
    return MG_OK;
}

void mg__encoders_free(mg__encoders *set) {
    if (!set) return;
    for (uint32_t i = 0; i < set->n; i++)
        if (set->e[i].vt) set->e[i].vt->destroy(set->e[i].impl);
    memset(set, 0, sizeof *set);
}

int mg__encoders_pick(const mg__encoders *set, const mg__enc_input *in) {
    if (!set || !in) return -1;
    int best = -1;
    int32_t bb = 0;
    for (uint32_t i = 0; i < set->n; i++) {
        int32_t b = set->e[i].vt->bid(set->e[i].impl, in);
        if (b > bb) {
            bb = b;
            best = (int)i;
        }
    }
    return best;
}
