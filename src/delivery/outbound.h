/*
 * outbound: the scheduler of remote deliveries. The delivery engine hands
 * it jobs (recipients of one message that share a destination); it keeps
 * one FIFO of jobs per destination, opens connections within the limits
 * (in total, per destination), reuses idle connections for the next
 * message, spaces messages by the destination's rate limit, and reports
 * one outcome per recipient.
 *
 * A destination is the recipient domain (MX routing) or the static
 * route's [host]:port (route.h): recipients of one message for one
 * destination go in one transaction.
 *
 * Ownership: struct outbound borrows the queue, the resolver and the
 * messages (between outbound_submit and the done callback, which runs
 * exactly once per job, from the loop). Loop thread only.
 */
#ifndef FULMAR_OUTBOUND_H
#define FULMAR_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct queue;
struct qmsg;
struct config;
struct dns;
struct outbound;

enum outbound_status { OUT_SENT = 0, OUT_DEFERRED, OUT_BOUNCED };

struct outbound_result {
	size_t idx;                  /* recipient index in the message */
	enum outbound_status status;
	char dsn[16];                /* "2.0.0", "4.4.1", "5.1.1" */
	char relay[320];             /* "host[ip]:port", or "none" */
	char remote_mta[256];        /* the server's name, "" when none answered */
	char detail[512];            /* the server's reply, or what went wrong */
	bool remote_dsn;             /* the server took our DSN parameters */
};

/* results[n]: one per recipient of the job. corrupt: the queue file did
 * not read back (nothing was sent from it). */
typedef void (*outbound_done_fn)(void *arg, struct qmsg *msg,
				 const struct outbound_result *results, size_t n,
				 bool corrupt);

struct outbound *outbound_new(struct event_base *base, struct queue *q, struct dns *dns,
			      struct config *cfg, outbound_done_fn done, void *arg);
void outbound_set_config(struct outbound *o, struct config *cfg);

/* The destination key of a recipient domain (see route_destination). */
void outbound_destination(const struct outbound *o, const char *domain, char *buf,
			  size_t len);
/* Deliver recipients idx[0..n) of msg, all for the destination of domain. */
void outbound_submit(struct outbound *o, struct qmsg *msg, const size_t *idx, size_t n,
		     const char *domain);
/* Withdraw msg's jobs that have not started (their done callbacks will
 * not come); returns how many were withdrawn. */
size_t outbound_withdraw(struct outbound *o, struct qmsg *msg);
/* What recipient idx of msg waits for ("rate limit", "concurrency limit",
 * "connecting", "in delivery"), or NULL when it has no job here. */
const char *outbound_why(const struct outbound *o, const struct qmsg *msg, size_t idx);
/* Jobs waiting or running. */
size_t outbound_jobs(const struct outbound *o);
/* Close every connection; the jobs still waiting are reported deferred. */
void outbound_free(struct outbound *o);

#endif
