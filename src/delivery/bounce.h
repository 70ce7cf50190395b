/*
 * bounce: queues the delivery status notifications a message owes its
 * sender (dsn.h builds the text): from the null sender, to the envelope
 * sender (resolved like any recipient when it is local), with the
 * original message or its headers attached.
 *
 * Ownership: bounce_queue reads what it needs from msg during the call;
 * fn runs later on the loop thread (queue_txn_commit's rules).
 */
#ifndef FULMAR_BOUNCE_H
#define FULMAR_BOUNCE_H

#include <stddef.h>

#include "delivery/dsn.h"
#include "queue/queue.h"

struct config;

#define BOUNCE_FULL_MAX (256u * 1024) /* larger originals: headers only */

/*
 * One DSN for recipients idx[0..n) of msg, each with its report fields
 * (env_rcpt.report, report_status, report_remote, last_error). Returns 0
 * and the DSN's queue id in bounce_id, or -1 with err (nothing queued;
 * fn will not run).
 */
int bounce_queue(struct queue *q, const struct config *cfg, const struct qmsg *msg,
		 const size_t *idx, size_t n, queue_commit_fn fn, void *arg,
		 char bounce_id[QUEUE_ID_LEN + 1], char *err, size_t errlen);

#endif
