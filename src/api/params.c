/* params.c - defaults for the options structs. */
#include "core/core.h"

#include <string.h>

MG_API void mg_model_params_init(mg_model_params *p) {
    if (!p) return;
    mg_model_params d = MG_MODEL_PARAMS_INIT;
    *p = d;
}

MG_API void mg_context_params_init(mg_context_params *p) {
    if (!p) return;
    mg_context_params d = MG_CONTEXT_PARAMS_INIT;
    *p = d;
}

MG_API void mg_gen_params_init(mg_gen_params *p) {
    if (!p) return;
    mg_gen_params d = MG_GEN_PARAMS_INIT;
    *p = d;
}
