/*
 * delivery_engine: what delivery.c lends delivery_control.c (private to
 * src/delivery): the queue and the outbound scheduler it drives, and the
 * start and the end of a message's round (see delivery.c).
 */
#ifndef FULMAR_DELIVERY_ENGINE_H
#define FULMAR_DELIVERY_ENGINE_H

struct delivery;
struct queue;
struct outbound;
struct qmsg;

struct queue *delivery_queue(const struct delivery *d);
struct outbound *delivery_outbound(const struct delivery *d);
/* A round now (no-op while one runs); the end of a round (reports,
 * retry timer, release). */
void delivery_start_round(struct delivery *d, struct qmsg *m);
void delivery_end_round(struct delivery *d, struct qmsg *m);

#endif
