/* hello.c - the smallest program using libmedgemini: prints the library's
 * version and build, and, given a model file, its name and size.
 *
 *   cc hello.c $(pkg-config --cflags --libs medgemini) -o hello
 *   ./hello [MODEL.mgm]
 */
#include <inttypes.h>
#include <stdio.h>

#include <medgemini.h>

int main(int argc, char **argv) {
    if (mg_version_number() != MG_VERSION_NUMBER)
        fprintf(stderr, "note: built against %s, running %s\n", MG_VERSION_STRING,
                mg_version_string());
    printf("libmedgemini %s\n%s\n", mg_version_string(), mg_build_info());
    if (argc < 2) return 0;

    char err[256];
    mg_model *model = NULL;
    mg_status st = mg_model_load(&model, argv[1], NULL, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    mg_model_info info = {.struct_size = sizeof info};
    mg_model_info_get(&info, model);
    printf("model %s: %" PRIu64 " tensors, %" PRIu64 " parameters\n", info.name,
           info.n_tensors, info.n_params);

    /* Polygenic prediction needs a model with a genomics encoder
     * (docs/POLYGENIC.md); with another model it says so. */
    mg_context *ctx = NULL;
    if (mg_context_new(&ctx, model, NULL) == MG_OK) {
        char *text = NULL;
        double score = 0.1;
        const char *name = "PGS000001";
        st = mg_prs_predict(&text, NULL, ctx, &score, &name, 1, "risk?", NULL);
        printf("mg_prs_predict: %s (%s)\n", mg_status_str(st), mg_context_errmsg(ctx));
        mg_string_free(text);
        mg_context_free(ctx);
    }
    mg_model_free(model);
    return 0;
}
