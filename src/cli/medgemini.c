/* medgemini - command-line front end of libmedgemini. It uses only the
 * public API (medgemini.h), so it doubles as an example of it. */
#include "medgemini.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: medgemini <command> [options]\n"
        "\n"
        "commands:\n"
        "  info MODEL.mgm [--verify] [--all]   print format version, metadata and tensors\n"
        "  mkmodel -o OUT.mgm [options]        write a random-weight model (tests, benchmarks)\n"
        "  tokenize (-m MODEL.mgm | --tokenizer tokenizer.json) [--bos] [--special] [--decode]\n"
        "                                      token ids of stdin lines (or text of ids)\n"
        "  generate -m MODEL.mgm [PROMPT]      generate text (see generate --help)\n"
        "  convert SRC -o OUT.mgm [--type T] [--mmproj F] [--tokenizer F] [--compress] [--eval F]\n"
        "                                      convert a Hugging Face folder or GGUF file\n"
        "  report IMAGE... -m MODEL.mgm        write a report for one study (images, or a\n"
        "                                      CT/MR volume: a series folder or NIfTI file)\n"
        "  vqa IMAGE... -q QUESTION -m MODEL   answer a question about images (or a volume)\n"
        "  chat [IMAGE...] -m MODEL            a conversation about images: one message per\n"
        "                                      stdin line, answers streamed\n"
        "  prs score --bfile P --score F --out O   polygenic scores (plink2 --score compatible)\n"
        "  image FILE (-o OUT.pgm|.ppm | --info) [--frame N] [--raw] [--window C,W]\n"
        "                                      decode a JPEG/PNG/DICOM image (see image --help)\n"
        "  volume SRC... (--info | -o OUT.nii.gz | --slices-dir DIR) [--series UID]\n"
        "                                      a DICOM series or NIfTI file as a volume\n"
        "                                      (see volume --help)\n"
        "  study PATH... [--files] [--warnings]  DICOM folders or DICOMDIR grouped into studies\n"
        "                                      and series: views, prior, kind\n"
        "  version                             print version and build information\n"
        "\n"
        "mkmodel options:\n"
        "  --shape NAME      tiny (default), gemma3-1b, medgemma-4b, gemma3-12b, gemma3-27b\n"
        "  --dtype T         f32 (default), f16, bf16, q8_0, q4_0 for matrices\n"
        "  --compress        store tensors zstd-compressed\n"
        "  --seed N          random seed (default 1)\n"
        "  --layers N        override the text decoder's layer count\n"
        "  --vision-layers N override the image encoder's layer count\n"
        "  --image-size N --patch N --image-tokens N   image encoder geometry\n"
        "  --no-vision       text decoder only\n"
        "  --genome T,C      a genomics encoder over the image encoder: T traits x C\n"
        "                    thresholds (docs/POLYGENIC.md)\n"
        "  --hidden N, --heads N, --kv-heads N, --head-dim N, --ffn N, --vocab N, --context N\n"
        "                    override one dimension of the text decoder's shape\n"
        "  --window N, --pattern N   sliding window and global-layer period\n"
        "  --attn-softcap X, --final-softcap X   logit soft-capping (0 = off)\n"
        "  --list-shapes     print the named shapes\n"
        "\n"
        "Every command says on stderr what went wrong (also output it could not write)\n"
        CLI_EXIT_TEXT);
}

static int cmd_version(void) {
    printf("medgemini %s\n%s\n", mg_version_string(), mg_build_info());
    return 0;
}

static void print_meta_value(const mg_model *m, const char *key, int32_t type,
                             int32_t et, uint64_t n, int all) {
    if (type == MG_META_INT) {
        int64_t v = 0;
        mg_model_meta_int(&v, m, key);
        printf("%" PRId64, v);
    } else if (type == MG_META_FLOAT) {
        double v = 0;
        mg_model_meta_float(&v, m, key);
        printf("%.9g", v);
    } else if (type == MG_META_STRING) {
        const char *s = "";
        mg_model_meta_string(&s, m, key);
        cli_print_quoted(stdout, s, all ? SIZE_MAX : 120);
    } else if (type == MG_META_ARRAY) {
        uint64_t show = all ? n : (n < 8 ? n : 8);
        printf("[");
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            if (et == MG_META_INT) {
                int64_t v = 0;
                mg_model_meta_array_int(&v, m, key, i);
                printf("%" PRId64, v);
            } else if (et == MG_META_FLOAT) {
                double v = 0;
                mg_model_meta_array_float(&v, m, key, i);
                printf("%.9g", v);
            } else {
                const char *s = "";
                mg_model_meta_array_string(&s, m, key, i);
                cli_print_quoted(stdout, s, 40);
            }
        }
        if (show < n) printf(", ... (%" PRIu64 " elements)", n);
        printf("]");
    }
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int verify = 0, all = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--verify")) verify = 1;
        else if (!strcmp(argv[i], "--all")) all = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "medgemini info: unknown option %s\n", argv[i]);
            return 2;
        } else if (!path) path = argv[i];
        else { fprintf(stderr, "medgemini info: one model at a time\n"); return 2; }
    }
    if (!path) { fprintf(stderr, "usage: medgemini info MODEL.mgm [--verify] [--all]\n"); return 2; }

    mg_model_params mp;
    mg_model_params_init(&mp);
    mp.flags = MG_LOAD_MMAP; /* info reads the tables, not every weight */
    if (verify) mp.flags |= MG_LOAD_VERIFY_CHECKSUMS;
    char err[512];
    mg_model *m = NULL;
    mg_status st = mg_model_load(&m, path, &mp, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini info: %s: %s (%s)\n", path, err, mg_status_str(st));
        return 1;
    }
    mg_model_info mi = {.struct_size = sizeof mi};
    mg_model_info_get(&mi, m);
    printf("file: %s\n", path);
    printf("format version: %u\n", mi.format_version);
    printf("name: %s\narchitecture: %s\n", mi.name, mi.architecture);
    printf("text decoder: %s\nimage encoder: %s\n", mi.has_text ? "yes" : "no",
           mi.has_vision ? "yes" : "no");
    printf("parameters: %" PRIu64 "\ntensor bytes: %" PRIu64 "\n", mi.n_params, mi.n_bytes);
    if (verify) printf("checksums: verified\n");

    printf("\nmetadata (%" PRIu64 " keys):\n", mi.n_metadata);
    int rc = 0;
    for (uint64_t i = 0; i < mi.n_metadata; i++) {
        const char *key; int32_t type, et; uint64_t n;
        if ((st = mg_model_meta_entry(&key, &type, &et, &n, m, i)) != MG_OK) {
            fprintf(stderr, "medgemini info: metadata entry %" PRIu64 ": %s\n", i, mg_status_str(st));
            rc = 1;
            continue;
        }
        printf("  %s = ", key);
        print_meta_value(m, key, type, et, n, all);
        printf("\n");
    }

    printf("\ntensors (%" PRIu64 "):\n", mi.n_tensors);
    printf("  %-40s %-5s %-24s %12s %12s %8s %s\n", "name", "dtype", "shape",
           "offset", "stored", "crc32c", "zstd");
    for (uint64_t i = 0; i < mi.n_tensors; i++) {
        mg_tensor_info t = {.struct_size = sizeof t};
        if ((st = mg_model_tensor_at(&t, m, i)) != MG_OK) {
            fprintf(stderr, "medgemini info: tensor %" PRIu64 ": %s\n", i, mg_status_str(st));
            rc = 1;
            continue;
        }
        char shape[96];
        int w = 0;
        for (uint32_t d = 0; d < t.n_dims && w < (int)sizeof shape - 24; d++)
            w += snprintf(shape + w, sizeof shape - (size_t)w, d ? " x %" PRIu64 : "%" PRIu64, t.dims[d]);
        printf("  %-40s %-5s %-24s %12" PRIu64 " %12" PRIu64 " %08x %s\n", t.name,
               mg_dtype_name(t.dtype), shape, t.file_offset, t.stored_bytes,
               t.crc32c, t.compressed ? "yes" : "no");
    }
    mg_model_free(m);
    return rc;
}

static int dispatch(const char *cmd, int argc, char **argv) {
    if (!strcmp(cmd, "info")) return cmd_info(argc, argv);
    if (!strcmp(cmd, "mkmodel")) return cli_mkmodel(argc, argv);
    if (!strcmp(cmd, "tokenize")) return cli_tokenize(argc, argv);
    if (!strcmp(cmd, "prs")) return cli_prs(argc, argv);
    if (!strcmp(cmd, "generate")) return cli_generate(argc, argv);
    if (!strcmp(cmd, "image")) return cli_image(argc, argv);
    if (!strcmp(cmd, "volume")) return cli_volume(argc, argv);
    if (!strcmp(cmd, "study")) return cli_study(argc, argv);
    if (!strcmp(cmd, "convert")) return cli_convert(argc, argv);
    if (!strcmp(cmd, "report")) return cli_report(argc, argv);
    if (!strcmp(cmd, "vqa")) return cli_vqa(argc, argv);
    if (!strcmp(cmd, "chat")) return cli_chat(argc, argv);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "medgemini: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    /* every command's output is checked once more here: a failed write
     * (a full disk, an I/O error) is an error, not a quiet success; a
     * reader that went away (SIGPIPE) ends the program as usual */
    int rc = dispatch(argv[1], argc - 2, argv + 2);
    const char *name = argv[1]; /* "--version" as "version", "-h" as "help" */
    while (*name == '-') name++;
    return cli_finish(!strcmp(name, "h") ? "help" : name, rc);
}
