/* common.c - what every medgemini command shares in saying what happened:
 * the exit statuses, writing to stdout with its failure noticed, Ctrl-C
 * while a context works, and the meaning of a generating call's status. */
#include "medgemini.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* ------------------------------------------------------------------ stdout */

static int out_errno;   /* the first failure writing stdout (0: none) */
static int out_told;    /* whether it has been reported */

int cli_out(const void *p, size_t n) {
    if (out_errno) return -1;
    errno = 0;
    if ((n && fwrite(p, 1, n, stdout) != n) || fflush(stdout) != 0) {
        out_errno = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

int cli_stdout_failed(const char *cmd) {
    if (!out_errno) {
        errno = 0;
        if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
        out_errno = errno ? errno : EIO;
    }
    if (!out_told)
        fprintf(stderr, "medgemini %s: cannot write the output: %s\n", cmd, strerror(out_errno));
    out_told = 1;
    return 1;
}

int cli_finish(const char *cmd, int rc) {
    if (cli_stdout_failed(cmd) && (rc == CLI_EXIT_OK || rc == CLI_EXIT_PARTIAL))
        rc = CLI_EXIT_ERROR;
    return rc;
}

int cli_known_option(const char *a, const char *list) {
    size_t n = strlen(a);
    for (const char *p = strstr(list, a); p; p = strstr(p + 1, a))
        if (p > list && p[-1] == ' ' && p[n] == ' ') return 1;
    return 0;
}

int cli_worse(int a, int b) {
    /* interrupted over error over bad usage over cut short over done */
    static const int order[] = {CLI_EXIT_OK, CLI_EXIT_PARTIAL, CLI_EXIT_USAGE, CLI_EXIT_ERROR,
                                CLI_EXIT_INTERRUPTED};
    int ra = 0, rb = 0;
    for (int i = 0; i < 5; i++) {
        if (order[i] == a) ra = i;
        if (order[i] == b) rb = i;
    }
    return ra >= rb ? a : b;
}

/* ------------------------------------------------------------------ Ctrl-C */

static mg_context *volatile watched;
static volatile sig_atomic_t got_sigint;
static int sigint_told; /* whether the stop has been said */
static int sigint_ignored = -1; /* SIGINT ignored when we started (e.g. a background job) */

static void on_sigint(int sig) {
    (void)sig;
    got_sigint = 1;
    mg_context *c = watched;
    if (c) mg_context_interrupt(c); /* async-signal-safe */
}

void cli_sigint_begin(mg_context *ctx) {
    struct sigaction sa, old;
    if (sigint_ignored < 0) {
        sigint_ignored = sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler == SIG_IGN;
    }
    if (sigint_ignored) return;
    watched = ctx;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* a second Ctrl-C ends the program at once */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

void cli_sigint_end(void) {
    if (sigint_ignored == 1) return;
    signal(SIGINT, SIG_DFL);
    watched = NULL;
}

int cli_interrupted(void) { return got_sigint != 0; }

int cli_should_stop(const char *cmd) {
    if (cli_stdout_failed(cmd)) return CLI_EXIT_ERROR;
    if (!got_sigint) return CLI_EXIT_OK;
    if (!sigint_told)
        fprintf(stderr, "medgemini %s: stopped: %s\n", cmd, mg_status_str(MG_E_INTERRUPTED));
    sigint_told = 1;
    return CLI_EXIT_INTERRUPTED;
}

/* ------------------------------------------------------------- generation */

static size_t streamed; /* bytes of the current answer streamed */

int32_t cli_stream(const char *piece, size_t len) {
    streamed += len;
    return cli_out(piece, len) || got_sigint ? 1 : 0;
}

void cli_stream_end(const char *text) {
    if (text) {
        /* an answer that stopped early may hold bytes that were not streamed
         * (an incomplete UTF-8 sequence ended as U+FFFD): print them too */
        size_t n = strlen(text);
        if (n > streamed) cli_out(text + streamed, n - streamed);
        cli_out("\n", 1);
    }
    streamed = 0;
}

int cli_gen_result(const char *cmd, const char *item, mg_status st, int had_text,
                   const mg_context *ctx) {
    const char *sep = item && *item ? ": " : "";
    if (!item) item = "";
    if (st == MG_OK) return CLI_EXIT_OK;
    if (st == MG_E_INTERRUPTED && cli_stdout_failed(cmd)) return CLI_EXIT_ERROR;
    if (st == MG_E_INTERRUPTED && got_sigint) {
        fprintf(stderr, "medgemini %s: %s%sstopped: %s%s\n", cmd, item, sep, mg_status_str(st),
                had_text ? " (the answer so far is above)" : "");
        sigint_told = 1;
        return CLI_EXIT_INTERRUPTED;
    }
    if (st == MG_E_CONTEXT_FULL && had_text) {
        /* the answer so far is on stdout; say why it stops there */
        fprintf(stderr, "medgemini %s: %s%sanswer cut short: %s (a larger --ctx holds more)\n",
                cmd, item, sep, mg_context_errmsg(ctx));
        return CLI_EXIT_PARTIAL;
    }
    const char *msg = mg_context_errmsg(ctx);
    fprintf(stderr, "medgemini %s: %s%s%s\n", cmd, item, sep,
            msg && *msg ? msg : mg_status_str(st));
    return CLI_EXIT_ERROR;
}

int cli_context_new(const char *cmd, const char *what, mg_context **ctx, mg_model *m,
                    const mg_context_params *cp) {
    mg_status st = mg_context_new(ctx, m, cp);
    if (st == MG_OK) return 0;
    const char *why = mg_last_error();
    if (why && *why)
        fprintf(stderr, "medgemini %s: cannot create a context%s: %s (%s)\n", cmd,
                what ? what : "", why, mg_status_str(st));
    else
        fprintf(stderr, "medgemini %s: cannot create a context%s: %s\n", cmd, what ? what : "",
                mg_status_str(st));
    return 1;
}
