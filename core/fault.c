/* core/fault.c: see fault.h. */
#include "core/fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* hits of the configured point so far; the writer thread and the main thread
 * both pass through core/file.c */
static atomic_ulong hits;

void dsq__fault_point(const char *where, const char *name) {
    const char *spec = getenv("DSQ_FAULT");
    if (spec == NULL || spec[0] == '\0')
        return;
    const char *colon = strrchr(spec, ':');
    if (colon == NULL)
        return;
    /* an optional trailing ":SIG" */
    int sig = SIGKILL;
    const char *signame = NULL;
    if (colon[1] >= 'A' && colon[1] <= 'Z') {
        signame = colon + 1;
        const char *prev = colon;
        while (prev > spec && prev[-1] != ':')
            prev--;
        if (prev == spec)
            return;
        colon = prev - 1;
        sig = strcmp(signame, "INT") == 0    ? SIGINT
              : strcmp(signame, "TERM") == 0 ? SIGTERM
              : strcmp(signame, "STOP") == 0 ? SIGSTOP
                                             : SIGKILL;
    }
    const char *at = memchr(spec, '@', (size_t)(colon - spec));
    const char *point_end = at != NULL ? at : colon;
    const size_t wlen = strlen(where);
    if ((size_t)(point_end - spec) != wlen || memcmp(spec, where, wlen) != 0)
        return;
    if (at != NULL) {
        const size_t nlen = (size_t)(colon - at - 1);
        if (name == NULL || strlen(name) != nlen || memcmp(at + 1, name, nlen) != 0)
            return;
    }
    const unsigned long n = strtoul(colon + 1, NULL, 10);
    /* to the process, not this thread: a command that waits for SIGINT in a
     * thread of its own (cli/interrupt.h) must see it as it would a Ctrl-C */
    if (atomic_fetch_add(&hits, 1) + 1 == n)
        kill(getpid(), sig);
}
