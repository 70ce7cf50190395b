/*
 * mem: fallible allocation, for memory taken on behalf of one client: an
 * SMTP session, its transaction, its checks. A failure returns NULL with
 * errno ENOMEM and the caller fails that client only (a 451 or 421 reply,
 * see docs/robustness.md), while every other session goes on. Memory
 * whose loss is fatal anyway (start-up, configuration, the queue's commit
 * pipeline, the delivery engine) comes from xalloc.h, which aborts.
 *
 * Fault injection (lib/fault.h): FULMAR_FAULT="alloc:N:ENOMEM[:COUNT]"
 * makes the Nth call of any mem_* function fail (counted together,
 * process-wide, from every thread; an xalloc.h call is never counted),
 * and every later one, or COUNT of them. errno is ENOMEM whatever the
 * spec's ERRNO. `tests/smtp/test_oom.py` sweeps N over a whole session.
 *
 * Ownership: what these return is freed with free(), like malloc's.
 */
#ifndef FULMAR_MEM_H
#define FULMAR_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t n);
/* On failure p is left as it was (still the caller's to free). */
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
/* The first n octets of s (no NUL needed among them), NUL-ended. */
char *mem_strndup(const char *s, size_t n);

#endif
