/*
 * delivery: the delivery engine. It receives committed messages from the
 * queue, decides per recipient what to do now, runs the attempts on worker
 * threads, records each outcome in the queue's journal, and retries
 * deferred recipients with an exponential backoff.
 *
 * This version delivers local mailboxes (Maildir). Recipients outside the
 * local domains wait in the queue (state pending) for the outbound engine.
 *
 * Ownership: struct delivery borrows the queue and holds a reference to the
 * current config. Loop thread only.
 */
#ifndef FULMAR_DELIVERY_H
#define FULMAR_DELIVERY_H

struct event_base;
struct queue;
struct config;
struct qmsg;
struct delivery;

struct delivery *delivery_new(struct event_base *base, struct queue *q,
			      struct config *cfg);
/* Use this configuration for the next attempts (reload). */
void delivery_set_config(struct delivery *d, struct config *cfg);
/* queue_ready_fn: schedule a message. */
void delivery_schedule(void *d, struct qmsg *msg);
/* Attempts running on worker threads. */
unsigned delivery_in_flight(const struct delivery *d);
/* Wait for attempts in flight, then free. */
void delivery_free(struct delivery *d);

#endif
