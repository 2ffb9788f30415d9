/* core/fault.h: fault injection for the crash-safety tests.
 *
 * dsq__fault_point marks a place where a crash must leave the output in a
 * recoverable state. It does nothing unless the environment variable
 * DSQ_FAULT is set:
 *
 *   DSQ_FAULT=POINT:N          SIGKILL the process at the N-th hit of POINT
 *   DSQ_FAULT=POINT@NAME:N     the same, counting only hits for file NAME
 *   DSQ_FAULT=POINT@NAME:N:SIG the signal SIG instead: INT or TERM (an
 *                              interrupt arriving there), STOP (the test then
 *                              sends its own signals and SIGCONT)
 *
 * Points: "write" (core/file.c, before each write to an output file) and
 * "commit" (before an output file is renamed into place); NAME is the output
 * file name without its directory. SIGKILL, not abort(): no handler, no
 * atexit, no flushing runs, exactly like the OOM killer or a power cut. */
#ifndef DSQ_FAULT_H
#define DSQ_FAULT_H

/* `name` may be NULL (a point not tied to a file). Thread-safe. */
void dsq__fault_point(const char *where, const char *name);

#endif
