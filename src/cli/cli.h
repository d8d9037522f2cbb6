/* cli.h - shared pieces of the medgemini command-line tool. */
#ifndef MG_CLI_H
#define MG_CLI_H

#include <stddef.h>
#include <stdio.h>

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

#endif
