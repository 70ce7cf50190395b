/*
 * delivery: the delivery engine. It receives committed messages from the
 * queue, decides per recipient what to do now, runs the attempts on worker
 * threads, records each outcome in the queue's journal, and retries
 * deferred recipients with an exponential backoff.
 *
 * Local mailboxes get a Maildir copy (maildir.h); other recipients go to
 * the outbound scheduler (outbound.h); failures and notices owed become
 * delivery status notifications (bounce.h).
 *
 * Ownership: struct delivery borrows the queue and holds a reference to the
 * current config. Loop thread only.
 */
#ifndef FULMAR_DELIVERY_H
#define FULMAR_DELIVERY_H

#include <stdbool.h>

#include "queue/envelope.h"

struct event_base;
struct queue;
struct config;
struct qmsg;
struct delivery;

struct dns;
/* dns: the resolver of outbound routing (may be NULL: remote recipients
 * are deferred). */
struct delivery *delivery_new(struct event_base *base, struct queue *q, struct dns *dns,
			      struct config *cfg);
/* Use this configuration for the next attempts (reload). */
void delivery_set_config(struct delivery *d, struct config *cfg);
/* queue_ready_fn: schedule a message. */
void delivery_schedule(void *d, struct qmsg *msg);
/* Attempts running on worker threads. */
unsigned delivery_in_flight(const struct delivery *d);
/* Wait for attempts in flight, then free. */
void delivery_free(struct delivery *d);

/*
 * Operator controls (the control socket, `fulmar queue ...`). Loop thread.
 * Each returns 0, or -1 when no message has that id (or, for release,
 * when it is not held). id NULL in flush means every message.
 *   flush:   every deferred recipient is due now
 *   hold:    no new attempt until release (kept across restarts)
 *   delete:  the message leaves the queue, no bounce
 *   bounce:  every recipient not yet final fails now, with a bounce
 */
int delivery_flush(struct delivery *d, const char *id);
int delivery_hold(struct delivery *d, const char *id);
int delivery_release(struct delivery *d, const char *id);
int delivery_delete(struct delivery *d, const char *id);
int delivery_bounce(struct delivery *d, const char *id);

/* One message as the engine sees it now. why[i] says what recipient i
 * waits for: "delivered", "failed", "in delivery", "held", "backoff",
 * "rate limit", "concurrency limit", "dns", "connecting", "due". */
struct delivery_view {
	const struct envelope *env;
	bool held;
	const char *const *why;
};
typedef void (*delivery_view_fn)(void *arg, const struct delivery_view *v);
/* Calls fn for every message in the queue (id NULL) or for one; returns
 * how many. */
long delivery_list(struct delivery *d, const char *id, delivery_view_fn fn, void *arg);

#endif
