/*
 * queue: the durable message queue. It owns the queue directories under
 * state_dir/queue and every message in them:
 *
 *   active/ID     created here (or taken from the prepared pool,
 *                 prepared.h) with mode QUEUE_MODE_WRITING while it is
 *                 received; committed: fsynced, then given the mode
 *                 QUEUE_MODE_COMMITTED, the directory fsynced (unless
 *                 prepared), and only then acknowledged with 250 (see
 *                 docs/queue.md); once finished, unlinked or recycled
 *   journal/ID    per-recipient state changes of active/ID, appended
 *   corrupt/ID    files that failed validation, moved aside, never read
 *   incoming/     where earlier versions received; emptied at start-up
 *
 * At start-up a file with the committed mode must read back whole, or it
 * goes to corrupt/ (the mark is set only after the fsync). A file without
 * it that reads back whole, CRC and all, is kept (a commit that crashed
 * after its fsync, or a file of an earlier version, which had no mark);
 * one that does not was never acknowledged and is removed, silently when
 * it is an unused prepared file (prepared.h: empty). A file whose I
 * record names another id is a recycled prepared file, marked or not:
 * removed, silently.
 *
 * Commit is asynchronous and grouped: the file fsyncs run on worker
 * threads, and one directory fsync covers every file committed since the
 * previous one (group commit). The caller's callback runs on the loop
 * thread once the message is durable (or failed).
 *
 * Ownership: struct queue and every struct qmsg belong to the queue; the
 * delivery engine borrows a qmsg between queue handing it over
 * (on_ready) and queue_msg_release(). Loop thread only, except the
 * functions documented as safe for workers.
 */
#ifndef FULMAR_QUEUE_H
#define FULMAR_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue/envelope.h"
#include "queue/qfile.h"

struct event_base;
struct queue;

/* A committed message, in memory. */
struct qmsg {
	struct envelope env;
	off_t content_off;      /* where the content records start */
	off_t file_size;        /* the queue file's length */
	bool recovered;         /* loaded from disk at start-up */
	unsigned busy;          /* delivery attempts (or a bounce) running */
	struct event *retry;    /* the delivery engine's timer, or NULL */
	void *engine;           /* the delivery engine that schedules it */
	void *out_jobs;         /* the outbound scheduler's jobs of it */
	bool deleting;          /* operator: remove once nothing runs */
	bool bouncing;          /* operator: bounce once nothing runs */
	bool corrupt;           /* the file failed to read back: quarantine */
	char corrupt_why[160];
	bool has_journal;       /* journal/ID exists */
	unsigned char *jbuf;    /* journal records not yet written */
	size_t jlen;
	char *content;          /* what a delivery sends, kept from the commit
				 * for the first round (queue_msg_take_content) */
	size_t content_len;
	struct qmsg *prev, *next;
};

/* A message being received. */
struct queue_txn;

/* The delivery engine's hook: a message is ready to be scheduled. */
typedef void (*queue_ready_fn)(void *arg, struct qmsg *msg);
/* Commit result: err is 0 when the message is durable, else an errno. */
typedef void (*queue_commit_fn)(void *arg, int err, const char *id);

struct queue *queue_open(struct event_base *base, const char *state_dir,
			 char *err, size_t errlen);
void queue_set_ready_hook(struct queue *q, queue_ready_fn fn, void *arg);
#define QUEUE_MODE_WRITING 0600
#define QUEUE_MODE_COMMITTED 0700 /* the owner's x bit: "whole" */

/* Load every message of active/ (at start-up); corrupt ones go aside,
 * ones never committed are removed. */
void queue_recover(struct queue *q);
/* Keep up to n queue files made ahead of need (prepared.h), so that a
 * commit needs no directory fsync; after queue_recover. 0: none. */
void queue_prepare_files(struct queue *q, size_t n);
/* Wait for commits in flight, then free everything (unused prepared
 * files are removed). */
void queue_close(struct queue *q);

/* The message's content as committed, when the queue kept it in memory
 * for its first delivery round (small messages, within a total cap):
 * the caller owns it (free()) and need not read the file back. NULL
 * otherwise; the queue drops what is not taken when the round ends. */
char *queue_msg_take_content(struct queue *q, struct qmsg *m, size_t *len);

/* Path of the active file of a message (for the delivery workers). */
void queue_msg_path(const struct queue *q, const char *id, char *buf, size_t len);

/*
 * Start a message. Takes over the transaction part of env (sender,
 * parameters, recipients; env is reset and reusable afterwards), assigns
 * the queue id and arrival time, creates active/ID and writes the
 * envelope. NULL with err filled and errno set on failure (nothing left
 * behind).
 */
struct queue_txn *queue_txn_begin(struct queue *q, struct envelope *env,
				  char *err, size_t errlen);
const char *queue_txn_id(const struct queue_txn *t);
/* A fresh queue id, for a message that bypasses the queue files (it is
 * delivered at receipt; see delivery/local_txn.h). */
void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1], int64_t *now_us);
/* Message content octets, in order. */
void queue_txn_write(struct queue_txn *t, const char *data, size_t len);
/*
 * Octets to put in front of the content, made once the whole content is
 * written (a DKIM signature): fn runs on the commit worker thread just
 * before the end record and returns 0 with *out a heap buffer (or NULL:
 * nothing) of *len octets, or an errno (ENOMEM: no memory to make them)
 * that fails the commit: the file is removed and the commit callback gets
 * that errno. free_fn(arg) runs when the transaction is done with arg
 * (loop thread). See qfile.h's F record.
 */
typedef int (*queue_prefix_fn)(void *arg, char **out, size_t *len);
typedef void (*queue_prefix_free_fn)(void *arg);
void queue_txn_set_prefix(struct queue_txn *t, queue_prefix_fn fn,
			  queue_prefix_free_fn free_fn, void *arg);
/* Make the message durable; fn runs later (loop thread), always once.
 * The txn is consumed. */
void queue_txn_commit(struct queue_txn *t, queue_commit_fn fn, void *arg);
/* Drop the message (error before commit). The txn is consumed. */
void queue_txn_abort(struct queue_txn *t);

/*
 * Record a recipient's new state in memory and in the journal. error may
 * be NULL. next_attempt is unix seconds (RCPT_DEFERRED only). Journal
 * records are written by queue_msg_release, all at once, and not at all
 * when the message leaves the queue there (nothing would read them).
 */
void queue_rcpt_update(struct queue *q, struct qmsg *msg, size_t idx,
		       enum rcpt_state state, int64_t next_attempt,
		       const char *error);
/* The delivery engine is done with msg for now: when every recipient is
 * final, the message leaves the queue and msg is freed. */
void queue_msg_release(struct queue *q, struct qmsg *msg);

/* Hold (no delivery attempts) or release a message; journaled at once,
 * so a hold survives a restart. */
void queue_msg_set_held(struct queue *q, struct qmsg *msg, bool held);
/* Remove a message whatever its recipients' state (operator delete). */
void queue_msg_remove(struct queue *q, struct qmsg *msg);
/* Lookup by id; iteration over every committed message. */
struct qmsg *queue_find(const struct queue *q, const char *id);
struct qmsg *queue_first(const struct queue *q);

/* The message's file failed validation: move it to corrupt/, log why,
 * and free msg. */
void queue_msg_quarantine(struct queue *q, struct qmsg *msg, const char *why);

/* Counts, for logs and tests. */
size_t queue_count(const struct queue *q);
unsigned queue_commits_in_flight(const struct queue *q);

/*
 * Offline reading, for the CLI: list the messages of state_dir's queue.
 * fn is called once per message with its envelope (journal applied) and
 * may not keep it. Returns the number of messages, or -1 (err filled).
 */
typedef void (*queue_list_fn)(void *arg, const struct envelope *env);
long queue_list_dir(const char *state_dir, queue_list_fn fn, void *arg,
		    char *err, size_t errlen);

#endif
