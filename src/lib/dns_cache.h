/*
 * dns_cache: answers to DNS queries kept for as long as their TTL says
 * (at most an hour; "no such name" and "no such record" answers for a
 * minute), so that SPF, DKIM and DMARC checks of many messages from one
 * sender, and MX lookups of one destination, do not ask again each time.
 * Raw answers are stored: whoever reads one parses it as if it had just
 * arrived. Temporary failures are never kept. Bounded: past max entries
 * the oldest half is dropped. No mail knowledge.
 *
 * Ownership: dns_cache_new allocates, dns_cache_free frees everything;
 * dns_cache_get returns a copy the caller frees. One thread.
 *
 * Memory: the table is made at start-up (xalloc: a failure aborts); the
 * entries and the copies are fallible (lib/mem.h) and a failure only
 * makes the cache forget: an answer it cannot keep is not kept, a copy it
 * cannot make is a miss (the caller asks the DNS instead).
 */
#ifndef FULMAR_DNS_CACHE_H
#define FULMAR_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#define DNS_CACHE_TTL_MAX 3600.0
#define DNS_CACHE_NEGATIVE_TTL 60.0

struct dns_cache;

struct dns_cache *dns_cache_new(size_t max_entries);
void dns_cache_free(struct dns_cache *c);

/* A fresh answer for (type, name): true with *status (a c-ares status:
 * success, ENODATA or ENOTFOUND) and a copy of the answer (*buf, *len;
 * may be NULL, 0). false when there is none, or no memory for the copy. */
bool dns_cache_get(struct dns_cache *c, int type, const char *name, double now, int *status,
		   unsigned char **buf, int *len);
/* Keep an answer (status as c-ares gave it with the buffer), in place of
 * an older one for the name. Anything but success, ENODATA and ENOTFOUND
 * is ignored, so is a TTL of 0; short of memory, the new answer is not
 * kept, and an older one stays until its own TTL runs out. */
void dns_cache_put(struct dns_cache *c, int type, const char *name, int status,
		   const unsigned char *buf, int len, double now);
size_t dns_cache_count(const struct dns_cache *c);

#endif
