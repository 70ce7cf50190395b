/*
 * auth_throttle: see auth_throttle.h. Keys are "i:ADDRESS" and "u:NAME" in
 * one chained hash table.
 */
#include "smtp/auth_throttle.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

#define BUCKETS 4096
#define MAX_DELAY 5 /* seconds before a 535 */

struct entry {
	struct entry *next;
	unsigned failures;
	int64_t last;          /* time of the last failure */
	int64_t blocked_until;
	char key[];
};

struct auth_throttle {
	struct entry *buckets[BUCKETS];
	size_t count;
};

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)(h % BUCKETS);
}

struct auth_throttle *auth_throttle_new(void)
{
	return xcalloc(1, sizeof(struct auth_throttle));
}

void auth_throttle_free(struct auth_throttle *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++)
		for (struct entry *e = t->buckets[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	free(t);
}

/* Drop entries whose failures are older than the window (and, when the
 * table is full, the oldest ones). */
static void expire(struct auth_throttle *t, int64_t now, bool full)
{
	int64_t oldest = now;
	for (size_t i = 0; i < BUCKETS; i++) {
		struct entry **pp = &t->buckets[i];
		while (*pp) {
			struct entry *e = *pp;
			if (e->last + AUTH_THROTTLE_WINDOW < now && e->blocked_until < now) {
				*pp = e->next;
				free(e);
				t->count--;
				continue;
			}
			if (e->last < oldest)
				oldest = e->last;
			pp = &e->next;
		}
	}
	if (full && t->count >= AUTH_THROTTLE_MAX_KEYS)
		for (size_t i = 0; i < BUCKETS; i++) {
			struct entry **pp = &t->buckets[i];
			while (*pp) {
				struct entry *e = *pp;
				if (e->last <= oldest) {
					*pp = e->next;
					free(e);
					t->count--;
				} else {
					pp = &e->next;
				}
			}
		}
}

static struct entry *find(struct auth_throttle *t, const char *key, bool create, int64_t now)
{
	struct entry **head = &t->buckets[hash(key)];
	for (struct entry *e = *head; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	if (!create)
		return NULL;
	if (t->count >= AUTH_THROTTLE_MAX_KEYS) {
		expire(t, now, true);
		head = &t->buckets[hash(key)];
	}
	size_t n = strlen(key);
	struct entry *e = mem_calloc(1, sizeof(*e) + n + 1);
	if (e == NULL)
		return NULL; /* entries are the sessions' memory: fallible */
	memcpy(e->key, key, n + 1);
	e->next = *head;
	*head = e;
	t->count++;
	return e;
}

static void make_key(char *buf, size_t len, char kind, const char *v)
{
	snprintf(buf, len, "%c:%s", kind, v ? v : "");
}

int64_t auth_throttle_wait(struct auth_throttle *t, const char *ip, const char *user,
			   int64_t now)
{
	char key[320];
	int64_t wait = 0;
	for (int k = 0; k < 2; k++) {
		if (k == 1 && (user == NULL || user[0] == '\0'))
			break;
		make_key(key, sizeof(key), k == 0 ? 'i' : 'u', k == 0 ? ip : user);
		struct entry *e = find(t, key, false, now);
		if (e && e->blocked_until > now && e->blocked_until - now > wait)
			wait = e->blocked_until - now;
	}
	return wait;
}

int auth_throttle_failed(struct auth_throttle *t, const char *ip, const char *user,
			 int64_t now)
{
	char key[320];
	unsigned worst = 0;
	for (int k = 0; k < 2; k++) {
		if (k == 1 && (user == NULL || user[0] == '\0'))
			break;
		make_key(key, sizeof(key), k == 0 ? 'i' : 'u', k == 0 ? ip : user);
		struct entry *e = find(t, key, true, now);
		if (e == NULL) {
			/* Out of memory: the failure cannot be counted, so it
			 * gets the longest delay (fail closed). */
			worst = MAX_DELAY;
			continue;
		}
		if (e->last + AUTH_THROTTLE_WINDOW < now)
			e->failures = 0;
		e->failures++;
		e->last = now;
		if (e->failures > AUTH_THROTTLE_FREE_TRIES) {
			/* 30 s, 60 s, 120 s ... at most an hour */
			unsigned extra = e->failures - AUTH_THROTTLE_FREE_TRIES - 1;
			int64_t block = 30;
			while (extra-- > 0 && block < 3600)
				block *= 2;
			e->blocked_until = now + (block < 3600 ? block : 3600);
		}
		if (e->failures > worst)
			worst = e->failures;
	}
	/* 1, 2, 3 ... 5 s before the 535 */
	return worst < MAX_DELAY ? (int)worst : MAX_DELAY;
}

void auth_throttle_succeeded(struct auth_throttle *t, const char *ip, const char *user)
{
	char key[320];
	for (int k = 0; k < 2; k++) {
		make_key(key, sizeof(key), k == 0 ? 'i' : 'u', k == 0 ? ip : user);
		struct entry *e = find(t, key, false, 0);
		if (e) {
			e->failures = 0;
			e->blocked_until = 0;
		}
	}
}
