/*
 * countmap: counts per string key (for example connections per client
 * address). Chained hash table; an entry disappears when its count drops
 * to zero, so memory follows the number of distinct live keys. No mail
 * knowledge; single-threaded.
 */
#ifndef FULMAR_COUNTMAP_H
#define FULMAR_COUNTMAP_H

#include <stddef.h>

struct countmap;

struct countmap *countmap_new(size_t buckets);
void countmap_free(struct countmap *m);
/* Add delta (+1 or -1) to key's count and return the new count; -1 when
 * a new key's entry cannot be allocated (lib/mem.h: the entries follow
 * the clients, so their memory is fallible; nothing is changed then). */
long countmap_add(struct countmap *m, const char *key, long delta);
long countmap_get(const struct countmap *m, const char *key);

#endif
