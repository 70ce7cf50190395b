/*
 * signing: DKIM for submitted mail. Picks the keys for the envelope
 * sender's domain (the dkim list of the configuration), feeds the signer
 * with the message as the session writes it into the queue, and makes
 * the DKIM-Signature fields on the queue's commit worker, where they are
 * stored as the queue file's F record: every delivery attempt then sends
 * the same signed bytes, and nothing changes the message after signing.
 *
 * Ownership: signing_start allocates; the queue transaction takes it
 * (queue_txn_set_prefix with signing_finish and signing_free), or the
 * session frees it with signing_free when the transaction is dropped.
 */
#ifndef FULMAR_SIGNING_H
#define FULMAR_SIGNING_H

#include <stddef.h>

struct config;
struct signing;

/* NULL when no key signs mail of sender's domain. */
struct signing *signing_start(const struct config *cfg, const char *sender,
			      const char *queue_id);
void signing_feed(struct signing *sg, const char *data, size_t len);
/* queue_prefix_fn: the DKIM-Signature fields, or NULL (logged) when the
 * message cannot be signed (it then goes unsigned). */
char *signing_finish(void *sg, size_t *len);
/* queue_prefix_free_fn; also for a dropped transaction. NULL is fine. */
void signing_free(void *sg);

#endif
