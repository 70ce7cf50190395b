/*
 * dns_cache: a TTL cache of raw DNS answers (dns_cache.h).
 */
#include "lib/dns_cache.h"

#include <ares.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

#define BUCKETS 1024

struct entry {
	struct entry *next;
	int type;
	char *name;       /* lower case */
	int status;
	unsigned char *buf;
	int len;
	double expires;
	double stored;
};

struct dns_cache {
	struct entry *buckets[BUCKETS];
	size_t n, max;
};

struct dns_cache *dns_cache_new(size_t max_entries)
{
	struct dns_cache *c = xcalloc(1, sizeof(*c));
	c->max = max_entries ? max_entries : 1;
	return c;
}

static void entry_free(struct entry *e)
{
	free(e->name);
	free(e->buf);
	free(e);
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct entry *e = c->buckets[b], *next; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	free(c);
}

size_t dns_cache_count(const struct dns_cache *c)
{
	return c->n;
}

static unsigned bucket_of(int type, const char *name)
{
	unsigned h = 2166136261u ^ (unsigned)type;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
	return h % BUCKETS;
}

static struct entry **find(struct dns_cache *c, int type, const char *name)
{
	for (struct entry **pp = &c->buckets[bucket_of(type, name)]; *pp; pp = &(*pp)->next)
		if ((*pp)->type == type && strcasecmp((*pp)->name, name) == 0)
			return pp;
	return NULL;
}

bool dns_cache_get(struct dns_cache *c, int type, const char *name, double now, int *status,
		   unsigned char **buf, int *len)
{
	struct entry **pp = find(c, type, name);
	if (pp == NULL)
		return false;
	struct entry *e = *pp;
	if (e->expires <= now) {
		*pp = e->next;
		entry_free(e);
		c->n--;
		return false;
	}
	*buf = NULL;
	if (e->buf) {
		if ((*buf = mem_alloc((size_t)e->len)) == NULL)
			return false; /* no copy: a miss */
		memcpy(*buf, e->buf, (size_t)e->len);
	}
	*status = e->status;
	*len = e->len;
	return true;
}

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The smallest TTL of the answer section, -1 when the answer does not
 * parse, -2 when it has no answers. */
static long min_ttl(const unsigned char *buf, int len)
{
	if (buf == NULL || len < 12)
		return -1;
	unsigned qd = get16(buf + 4), an = get16(buf + 6);
	const unsigned char *p = buf + 12;
	for (unsigned i = 0; i < qd; i++) {
		char *name;
		long n;
		if (ares_expand_name(p, buf, len, &name, &n) != ARES_SUCCESS)
			return -1;
		ares_free_string(name);
		p += n + 4;
		if (p > buf + len)
			return -1;
	}
	if (an == 0)
		return -2;
	long best = -1;
	for (unsigned i = 0; i < an; i++) {
		char *name;
		long n;
		if (ares_expand_name(p, buf, len, &name, &n) != ARES_SUCCESS)
			return -1;
		ares_free_string(name);
		p += n;
		if (p + 10 > buf + len)
			return -1;
		long ttl = (long)((unsigned long)p[4] << 24 | (unsigned long)p[5] << 16 |
				  (unsigned long)p[6] << 8 | p[7]);
		unsigned rdlen = get16(p + 8);
		p += 10 + rdlen;
		if (p > buf + len)
			return -1;
		if (best < 0 || ttl < best)
			best = ttl;
	}
	return best;
}

/* Past the bound: drop every entry stored before the median time. */
static void shrink(struct dns_cache *c)
{
	double oldest = 0, newest = 0;
	bool first = true;
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct entry *e = c->buckets[b]; e; e = e->next) {
			if (first || e->stored < oldest)
				oldest = e->stored;
			if (first || e->stored > newest)
				newest = e->stored;
			first = false;
		}
	double cut = (oldest + newest) / 2;
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct entry **pp = &c->buckets[b]; *pp;) {
			struct entry *e = *pp;
			if (e->stored <= cut) {
				*pp = e->next;
				entry_free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
}

/* A new entry, not yet linked; NULL when out of memory. */
static struct entry *entry_new(int type, const char *name, int status,
			       const unsigned char *buf, int len)
{
	struct entry *e = mem_calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->type = type;
	e->name = mem_strdup(name);
	e->status = status;
	bool with_buf = buf && len > 0;
	if (with_buf)
		e->buf = mem_alloc((size_t)len);
	if (e->name == NULL || (with_buf && e->buf == NULL)) {
		entry_free(e);
		return NULL;
	}
	if (with_buf) {
		memcpy(e->buf, buf, (size_t)len);
		e->len = len;
	}
	return e;
}

void dns_cache_put(struct dns_cache *c, int type, const char *name, int status,
		   const unsigned char *buf, int len, double now)
{
	double ttl;
	if (status == ARES_SUCCESS) {
		long t = min_ttl(buf, len);
		if (t <= 0)
			return;
		ttl = (double)t < DNS_CACHE_TTL_MAX ? (double)t : DNS_CACHE_TTL_MAX;
	} else if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
		ttl = DNS_CACHE_NEGATIVE_TTL;
	} else {
		return;
	}
	/* The new entry first: without memory for it, an older answer for
	 * the name stays (it is still good for its own TTL). */
	struct entry *e = entry_new(type, name, status, buf, len);
	if (e == NULL)
		return;
	e->stored = now;
	e->expires = now + ttl;
	struct entry **pp = find(c, type, name);
	if (pp) { /* in the old one's place */
		struct entry *old = *pp;
		e->next = old->next;
		*pp = e;
		entry_free(old);
		return;
	}
	if (c->n >= c->max)
		shrink(c);
	unsigned b = bucket_of(type, name);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	c->n++;
}
