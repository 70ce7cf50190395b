/*
 * local_txn: a transaction whose recipients are all local mailboxes,
 * delivered straight into their Maildirs while it is received, instead of
 * going through a queue file first.
 *
 * The content is written (CR LF -> LF) into one tmp/ file per mailbox as
 * it arrives. At the end of data, on a worker thread, each copy is
 * fsynced and linked into new/; then one fsync per new/ directory covers
 * every transaction finished since the previous one (group commit, as in
 * the queue); only then does the callback report success and the session
 * say 250. If any step fails for any mailbox, every copy of that
 * transaction is taken back (unlinked) and the session says 451: the
 * client retries; nothing was half-delivered.
 *
 * This gives the same promise as the queue (a 250 means durable; a crash
 * before the 250 may leave the message delivered, exactly as a crash
 * between the queue's commit and its reply) with half the file operations.
 *
 * Ownership: the committer belongs to the daemon; each local_txn belongs to
 * its session until local_txn_commit or local_txn_abort consumes it.
 */
#ifndef FULMAR_LOCAL_TXN_H
#define FULMAR_LOCAL_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct local_committer;
struct local_txn;

#define LOCAL_TXN_MAX_TARGETS 16 /* more mailboxes: use the queue */

struct local_committer *local_committer_new(struct event_base *base);
/* Waits for commits in flight (their callbacks run), then frees. */
void local_committer_free(struct local_committer *lc);

struct local_target_spec {
	const char *maildir;
	const char *address;   /* Delivered-To: */
};

/*
 * Open a tmp/ file in each Maildir and write the Return-Path: and
 * Delivered-To: headers; file names come from maildir_name();
 * NULL with err filled on failure (nothing left behind). The transaction
 * itself is the session's memory (lib/mem.h: fallible, err says "out of
 * memory"); its commit job is the committer's (lib/xalloc.h: aborts).
 */
struct local_txn *local_txn_begin(struct local_committer *lc, const char *sender,
				  const struct local_target_spec *targets, size_t n,
				  long long arrival_s, const char *queue_id, const char *host,
				  char *err, size_t errlen);
/* Message octets as received (CR LF line ends). */
void local_txn_write(struct local_txn *t, const char *data, size_t len);
/* err: 0 when every copy is durable in new/, else an errno. */
typedef void (*local_commit_fn)(void *arg, int err);
void local_txn_commit(struct local_txn *t, local_commit_fn fn, void *arg);
void local_txn_abort(struct local_txn *t);

#endif
