/*
 * prepared: queue files made ahead of need, so that committing a message
 * costs one journal commit instead of two.
 *
 * A queue file's name must be durable before its message is acknowledged.
 * Created at the start of a transaction, it needs a directory fsync after
 * the file's own fsync: on a journaled file system that is a second
 * journal commit, in sequence with the first, whenever other files were
 * created meanwhile (almost always, under load). A prepared file is an
 * empty file in active/, created (mode 0600, unmarked) by a worker in a
 * batch whose directory fsync is done before the batch is handed to the
 * loop; a transaction that takes one writes its message into it, and the
 * file's fsync alone makes the message durable.
 *
 * An empty unmarked file is never a message: start-up removes any left by
 * a crash (queue.h), and closing the pool removes the unused ones.
 *
 * Loop thread only, except the refill job, which runs on the queue's
 * workpool and touches only its own job record.
 */
#ifndef FULMAR_QUEUE_PREPARED_H
#define FULMAR_QUEUE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>

#include "queue/envelope.h"

struct event_base;
struct workpool;
struct prepared;

/* Mints a fresh queue id (the queue's own generator, loop thread). */
typedef void (*prepared_id_fn)(void *arg, char id[QUEUE_ID_LEN + 1]);

/* A pool of at most max files in dir (0: never prepares any). */
struct prepared *prepared_new(struct event_base *base, struct workpool *pool,
			      const char *dir, size_t max, prepared_id_fn mint,
			      void *mint_arg);
/* Starts a refill when the pool is at most half full and none runs. */
void prepared_refill(struct prepared *p);
/* Takes a prepared file: its id and an fd open for writing, positioned
 * at 0. False when none is ready (the caller creates its own file). */
bool prepared_take(struct prepared *p, char id[QUEUE_ID_LEN + 1], int *fd);
/* Waits for a refill in flight, then removes the unused files. */
void prepared_free(struct prepared *p);

#endif
