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
 *
 * Memory: the signer is the session's (lib/mem.h). It keeps the header
 * section (dkim_sign's copy, until signing_finish); the session feeds it
 * from the one it holds to complete the header, and frees that one at
 * once, so a transaction never keeps two. Mail that has a key is never
 * let go unsigned for want of memory: signing_start fails (the session
 * answers DATA 451), or signing_finish does on the commit worker (the
 * commit fails, the end of data gets 451). The keys themselves are the
 * configuration's, loaded at start-up.
 */
#ifndef FULMAR_SIGNING_H
#define FULMAR_SIGNING_H

#include <stddef.h>

struct config;
struct signing;

/* 0 with *out the message's signer, or NULL when no key signs mail of
 * sender's domain (or its key is refused: logged, the mail goes
 * unsigned); -1 (errno ENOMEM, *out NULL) when out of memory. */
int signing_start(const struct config *cfg, const char *sender, const char *queue_id,
		  struct signing **out);
void signing_feed(struct signing *sg, const char *data, size_t len);
/* queue_prefix_fn: 0 with the DKIM-Signature fields in *out, or with
 * *out NULL (logged) when the message cannot be signed (it then goes
 * unsigned); ENOMEM when memory ran out, which fails the commit. */
int signing_finish(void *sg, char **out, size_t *len);
/* queue_prefix_free_fn; also for a dropped transaction. NULL is fine. */
void signing_free(void *sg);

#endif
