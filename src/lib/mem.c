/*
 * mem: fallible allocation with its fault switch (mem.h).
 */
#include "lib/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fault.h"

/* True when this allocation is to fail as if memory had run out. */
static int injected(void)
{
	if (!fault_inject(FAULT_ALLOC))
		return 0;
	errno = ENOMEM;
	return 1;
}

void *mem_alloc(size_t n)
{
	return injected() ? NULL : malloc(n ? n : 1);
}

void *mem_calloc(size_t count, size_t n)
{
	return injected() ? NULL : calloc(count ? count : 1, n ? n : 1);
}

void *mem_realloc(void *p, size_t n)
{
	return injected() ? NULL : realloc(p, n ? n : 1);
}

char *mem_strndup(const char *s, size_t n)
{
	char *p = mem_alloc(n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *mem_strdup(const char *s)
{
	return mem_strndup(s, strlen(s));
}
