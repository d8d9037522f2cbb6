/* tasks.c - the task entry points: report generation, visual question
 * answering and polygenic-risk prediction. Argument checks are complete; the
 * model paths land with the decoder, vision and genomics modules, and until
 * then each returns MG_E_UNSUPPORTED with a message saying so. */
#include "api/api.h"

#include "io/image.h"

static mg_status check_images(mg_context *ctx, const mg_image *const *images,
                              size_t n_images) {
    if (!images || n_images == 0)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "at least one image is required");
    if (n_images > 64)
        return mg__ctx_leave(ctx, MG_E_LIMIT, "%zu images in one call (limit 64)", n_images);
    for (size_t i = 0; i < n_images; i++)
        if (!images[i] || images[i]->tag != MG__TAG_IMAGE)
            return mg__ctx_leave(ctx, MG_E_MISUSE, "images[%zu] is not a valid image handle", i);
    return MG_OK;
}

static mg_status check_gen(mg_context *ctx, const mg_gen_params *params) {
    mg_gen_params p = MG_GEN_PARAMS_INIT;
    if (mg__params_copy(&p, sizeof p, params) != MG_OK)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "mg_gen_params.struct_size is invalid");
    if (!(p.temperature >= 0.0f) || !(p.top_p > 0.0f && p.top_p <= 1.0f) ||
        p.top_k < 0 || !(p.repetition_penalty > 0.0f) || (p.n_stop && !p.stop))
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "generation parameters out of range");
    return MG_OK;
}

MG_API mg_status mg_generate_report(char **out, mg_context *ctx,
                                    const mg_image *const *images,
                                    size_t n_images,
                                    const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out) return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out is NULL");
    if ((st = check_images(ctx, images, n_images))) return st;
    if ((st = check_gen(ctx, params))) return st;
    return mg__ctx_leave(ctx, MG_E_UNSUPPORTED,
                         "report generation is not available in libmedgemini %s "
                         "(the image encoder and text decoder are not built yet)",
                         MG_VERSION_STRING);
}

MG_API mg_status mg_vqa(char **out, mg_context *ctx,
                        const mg_image *const *images, size_t n_images,
                        const char *question, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out || !question)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out or question is NULL");
    if ((st = check_images(ctx, images, n_images))) return st;
    if ((st = check_gen(ctx, params))) return st;
    return mg__ctx_leave(ctx, MG_E_UNSUPPORTED,
                         "visual question answering is not available in libmedgemini %s "
                         "(the image encoder and text decoder are not built yet)",
                         MG_VERSION_STRING);
}

MG_API mg_status mg_prs_predict(char **out, mg_context *ctx,
                                const double *scores, const char *const *names,
                                size_t n_scores, const char *question,
                                const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out || !question || (n_scores && (!scores || !names)))
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out, question, scores or names is NULL");
    if ((st = check_gen(ctx, params))) return st;
    return mg__ctx_leave(ctx, MG_E_UNSUPPORTED,
                         "polygenic risk prediction is not available in libmedgemini %s "
                         "(the genomics encoder is not built yet)",
                         MG_VERSION_STRING);
}
