/* cli/interrupt.c: see interrupt.h. */
#include "cli/interrupt.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "core/file.h"

static void *watch(void *arg) {
    dsq_cli_interrupt *w = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        const int first = atomic_exchange(&w->signo, sig) == 0;
        if (first && w->graceful) {
            atomic_store(&w->cancel, 1);
            continue;
        }
        /* no clean stop available, or the user insists */
        atomic_store(&w->cancel, 1);
        dsq_remove_own_temps();
        fprintf(stderr, "dsq: interrupted; temporary files removed\n");
        _exit(128 + sig);
    }
    return NULL;
}

int dsq_cli_interrupt_start(dsq_cli_interrupt *w, int graceful) {
    sigset_t set, old;
    atomic_init(&w->cancel, 0);
    atomic_init(&w->signo, 0);
    w->graceful = graceful;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, &old) != 0)
        return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    const int rc = pthread_create(&w->thread, &attr, watch, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    return 0;
}

int dsq_cli_interrupt_exit_code(dsq_cli_interrupt *w) {
    const int sig = atomic_load(&w->signo);
    return sig != 0 ? 128 + sig : 0;
}
