/* cli.h - shared pieces of the medgemini command-line tool. */
#ifndef MG_CLI_H
#define MG_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "medgemini.h"

/* Exit statuses: 0 done, 1 an error (message on stderr), 2 bad usage, 3 an
 * answer cut short because the context filled (the text so far is on
 * stdout, the reason on stderr). */
#define CLI_EXIT_PARTIAL 3

/* Prints s in double quotes with C-style escapes, at most max bytes. */
void cli_print_quoted(FILE *f, const char *s, size_t max);
int cli_mkmodel(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_prs(int argc, char **argv);
int cli_prs_predict(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_image(int argc, char **argv);
int cli_volume(int argc, char **argv);
int cli_study(int argc, char **argv);
int cli_convert(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_vqa(int argc, char **argv);
int cli_chat(int argc, char **argv);

/* --draft-model: loads the draft model at path and a context on it with
 * cp's settings into *m and *c; 0, or 1 with a message on stderr. */
int cli_draft_open(const char *cmd, const char *path, const mg_context_params *cp,
                   mg_model **m, mg_context **c);
/* Parses --draft-max N (1 to 16) into *n; -1 on a bad value. */
int cli_draft_max(const char *v, unsigned *n);

#endif
