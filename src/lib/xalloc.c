/*
 * xalloc: see xalloc.h.
 */
#include "lib/xalloc.h"

#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void xfatal(const char *fmt, ...)
{
	log_flush(); /* the lines leading here, if this is the loop's thread */
	va_list ap;
	va_start(ap, fmt);
	fputs("fulmar: fatal: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		xfatal("out of memory (%zu octets)", n);
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (p == NULL)
		xfatal("out of memory (%zu x %zu octets)", count, n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		xfatal("out of memory (%zu octets)", n);
	return q;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

const char *strerror_safe(int err)
{
	static _Thread_local char buf[128];
	return strerror_r(err, buf, sizeof(buf));
}

size_t strlcpy_safe(char *dst, const char *src, size_t dstsize)
{
	size_t n = strlen(src);
	size_t c = n < dstsize - 1 ? n : dstsize - 1;
	memcpy(dst, src, c);
	dst[c] = '\0';
	return n;
}
