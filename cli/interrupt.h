/* cli/interrupt.h: what Ctrl-C (SIGINT) and SIGTERM do to a writing command.
 *
 * A signal handler may only do async-signal-safe work, and the only way for
 * one to reach the library is a global flag: the library keeps no global
 * mutable state. So no handler: the signals are blocked in every thread and
 * one thread waits for them with sigwait(2). It is an ordinary thread, so it
 * may set a flag that lives in this struct (which the command hands to the
 * library: stream/'s engine polls it per buffer, stops, removes its
 * temporaries and returns DSQ_CANCELLED), or, for a command that cannot stop
 * cleanly, remove this process's temporaries itself (dsq_remove_own_temps)
 * and _exit. The exit status is 128 + the signal, as a shell reports a
 * process killed by it: 130 for SIGINT, 143 for SIGTERM. */
#ifndef DSQ_CLI_INTERRUPT_H
#define DSQ_CLI_INTERRUPT_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct dsq_cli_interrupt {
    atomic_int cancel; /* for the library: nonzero once a signal arrived */
    atomic_int signo;
    int graceful;
    pthread_t thread;
} dsq_cli_interrupt;

/* Call before any other thread exists (threads inherit the signal mask).
 * graceful: the first signal sets cancel and the command finishes on its
 * own; otherwise, and for a second signal, the temporaries this process has
 * open are removed and the process exits at once. Returns 0, or -1 when the
 * thread cannot be started (signals then keep their default action). */
int dsq_cli_interrupt_start(dsq_cli_interrupt *w, int graceful);
/* 128 + the signal that arrived, or 0. */
int dsq_cli_interrupt_exit_code(dsq_cli_interrupt *w);

#endif
