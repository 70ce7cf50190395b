/*
 * xalloc: allocation wrappers that abort the process on failure (with a
 * message), for the memory whose loss is fatal anyway: start-up and
 * configuration, the queue's commit pipeline and the delivery engine.
 * Memory taken for one client (an SMTP session and its transaction) comes
 * from lib/mem.h instead, whose failures fail only that session. xfatal()
 * is for start-up errors and broken invariants.
 */
#ifndef FULMAR_XALLOC_H
#define FULMAR_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
_Noreturn void xfatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* strerror that is safe from any thread. */
const char *strerror_safe(int err);

/* Bounded copy that always NUL-terminates (dst of size dstsize > 0);
 * returns the length of src (truncation when >= dstsize). */
size_t strlcpy_safe(char *dst, const char *src, size_t dstsize);

#endif
