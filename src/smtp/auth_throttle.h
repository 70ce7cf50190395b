/*
 * auth_throttle: slows down password guessing. Failures are counted per
 * client address and per user name over a window; each failure's reply is
 * delayed a little more, and past a few failures that key is refused for
 * a growing while (454 4.7.0). Memory is bounded: stale entries are
 * dropped, and past AUTH_THROTTLE_MAX_KEYS the oldest go first. Entries
 * are fallible memory (lib/mem.h): a failure that cannot be recorded
 * gets the longest delay instead.
 * Loop thread only; pure bookkeeping (time is passed in).
 */
#ifndef FULMAR_AUTH_THROTTLE_H
#define FULMAR_AUTH_THROTTLE_H

#include <stdint.h>

#define AUTH_THROTTLE_MAX_KEYS 65536
#define AUTH_THROTTLE_FREE_TRIES 3     /* failures before refusals start */
#define AUTH_THROTTLE_WINDOW 900       /* seconds a failure is remembered */

struct auth_throttle;

struct auth_throttle *auth_throttle_new(void);
void auth_throttle_free(struct auth_throttle *t);
/* 0 when an attempt may go ahead, else seconds until it may. */
int64_t auth_throttle_wait(struct auth_throttle *t, const char *ip, const char *user,
			   int64_t now);
/* Record a failure; returns the delay (seconds) to put before the 535. */
int auth_throttle_failed(struct auth_throttle *t, const char *ip, const char *user,
			 int64_t now);
void auth_throttle_succeeded(struct auth_throttle *t, const char *ip, const char *user);

#endif
