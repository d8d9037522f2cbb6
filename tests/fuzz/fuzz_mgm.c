/* fuzz_mgm.c - model files: mg_model_load on arbitrary bytes (container,
 * tensor table, zstd frames, decoder/encoder/tokenizer builders), with and
 * without checksum verification; a model that loads is queried and its
 * tokenizer, if any, run once. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write(".mgm", data, size);
    if (!p) return 0;
    for (int verify = 0; verify < 2; verify++) {
        mg_model_params mp = MG_MODEL_PARAMS_INIT;
        mp.flags = verify ? MG_LOAD_VERIFY_CHECKSUMS : 0;
        mp.max_memory = 64u << 20;
        mg_model *m = NULL;
        char err[256];
        if (mg_model_load(&m, p, &mp, err, sizeof err) != MG_OK) continue;
        mg_model_info mi = {.struct_size = sizeof mi};
        mg_model_info_get(&mi, m);
        for (uint64_t i = 0; i < mg_model_tensor_count(m); i++) {
            mg_tensor_info ti = {.struct_size = sizeof ti};
            mg_model_tensor_at(&ti, m, i);
        }
        const mg_tokenizer *tok = mg_model_tokenizer(m);
        if (tok) {
            int32_t ids[64];
            size_t n = 0;
            mg_tokenize(ids, 64, &n, tok, "Heart size is normal. <start_of_turn>", 37,
                        MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL);
        }
        mg_model_free(m);
    }
    return 0;
}
