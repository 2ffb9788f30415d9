/* core/fault.c: see fault.h. */
#include "core/fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
    if (atomic_fetch_add(&hits, 1) + 1 == n)
        raise(SIGKILL);
}
