/*
 * countmap: see countmap.h.
 */
#include "lib/countmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

struct entry {
	struct entry *next;
	long count;
	char key[];
};

struct countmap {
	size_t nbuckets;
	struct entry **buckets;
};

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

struct countmap *countmap_new(size_t buckets)
{
	struct countmap *m = xcalloc(1, sizeof(*m));
	m->nbuckets = buckets ? buckets : 1;
	m->buckets = xcalloc(m->nbuckets, sizeof(struct entry *));
	return m;
}

void countmap_free(struct countmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct entry *e = m->buckets[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	free(m->buckets);
	free(m);
}

long countmap_get(const struct countmap *m, const char *key)
{
	for (struct entry *e = m->buckets[hash(key) % m->nbuckets]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->count;
	return 0;
}

long countmap_add(struct countmap *m, const char *key, long delta)
{
	struct entry **pp = &m->buckets[hash(key) % m->nbuckets];
	for (struct entry *e = *pp; e; pp = &e->next, e = e->next) {
		if (strcmp(e->key, key) != 0)
			continue;
		e->count += delta;
		long c = e->count;
		if (c <= 0) {
			*pp = e->next;
			free(e);
		}
		return c;
	}
	if (delta <= 0)
		return 0;
	size_t n = strlen(key);
	struct entry *e = mem_alloc(sizeof(*e) + n + 1);
	if (e == NULL)
		return -1;
	memcpy(e->key, key, n + 1);
	e->count = delta;
	e->next = *pp;
	*pp = e;
	return delta;
}
