/* cli.h - shared pieces of the medgemini command-line tool. */
#ifndef MG_CLI_H
#define MG_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "medgemini.h"

/* Exit statuses, the same for every command: 0 done, 1 an error (message
 * on stderr; also a failure writing the output), 2 bad usage, 3 an answer
 * cut short because the context filled (the text so far is on stdout, the
 * reason on stderr), 130 stopped by Ctrl-C (SIGINT) while the model worked.
 * When a run of several items (studies, questions) has several outcomes,
 * the worst counts: 130, then 1, 2, 3. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_PARTIAL 3
#define CLI_EXIT_INTERRUPTED 130
/* The line that usage texts end with. */
#define CLI_EXIT_TEXT                                                                      \
    "exit status: 0 done, 1 error, 2 bad usage, 3 answer cut short by a full context,\n" \
    "  130 stopped by Ctrl-C\n"

/* Whether option a is one of list's (" -m --ctx ... ": each between
 * spaces). */
int cli_known_option(const char *a, const char *list);

/* The worse of two exit statuses (the order above). */
int cli_worse(int a, int b);

/* Writes n bytes to stdout and flushes them; -1 once writing has failed
 * (the failure is kept for cli_stdout_failed). */
int cli_out(const void *p, size_t n);
/* Whether writing stdout has failed (it is flushed first); the first time
 * it says so on stderr: "medgemini CMD: cannot write the output: REASON". */
int cli_stdout_failed(const char *cmd);
/* main's last step: an output failure turns 0 or 3 into 1. */
int cli_finish(const char *cmd, int rc);

/* Ctrl-C while a call works: between begin and end, SIGINT asks ctx (may
 * be NULL) to stop (mg_context_interrupt) and is remembered; a second one
 * ends the program. Nothing changes when SIGINT was ignored at start. */
void cli_sigint_begin(mg_context *ctx);
void cli_sigint_end(void);
int cli_interrupted(void);
/* Between the items of a run: 1 when the output failed, 130 after Ctrl-C
 * (said once on stderr), else 0. */
int cli_should_stop(const char *cmd);

/* The body of a streaming callback: writes the piece; non-zero (stop) when
 * the output failed or Ctrl-C came. */
int32_t cli_stream(const char *piece, size_t len);
/* After a generating call: the end of text (the answer returned) that was
 * not streamed, and a newline when there is an answer; the next call's
 * count starts afresh. */
void cli_stream_end(const char *text);
/* Says on stderr what a generating call's status means and returns the
 * exit status: 0; 3 for an answer cut short by a full context; 130 after
 * Ctrl-C; 1 for an output failure or any other error (the context's
 * message). item (may be NULL) names what failed ("question 2"). */
int cli_gen_result(const char *cmd, const char *item, mg_status st, int had_text,
                   const mg_context *ctx);
/* mg_context_new with its failure said on stderr (mg_last_error); 0 or 1.
 * what (may be NULL) follows "cannot create a context". */
int cli_context_new(const char *cmd, const char *what, mg_context **ctx, mg_model *m,
                    const mg_context_params *cp);

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
