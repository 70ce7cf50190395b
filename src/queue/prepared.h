/*
 * prepared: queue files made ahead of need, so that committing a message
 * costs one journal commit instead of two, and reused once their message
 * is done, so that it costs no block or inode allocation either.
 *
 * A queue file's name must be durable before its message is acknowledged.
 * Created at the start of a transaction, it needs a directory fsync after
 * the file's own fsync: on a journaled file system that is a second
 * journal commit, in sequence with the first, whenever other files were
 * created meanwhile (almost always, under load). A prepared file is a
 * file in active/ without the committed mark (mode 0600) whose name was
 * made durable, by a directory fsync shared by its batch, before the batch
 * was handed to the loop; a transaction that takes one writes its message
 * into it from offset 0, and the file's fsync alone makes the message
 * durable.
 *
 * A prepared file is either new (empty) or recycled: the file of a
 * finished message, renamed to a fresh id at once (on the loop, where an
 * unlink would have been: the message leaves the queue there and then, a
 * kill -9 cannot bring it back), then unmarked by a worker; its old
 * octets stay in place (a message written over them reuses their blocks;
 * the commit truncates what the new message does not cover). Neither is
 * ever a message: an empty file is not, and a recycled file's I record
 * names its old id, never its name (queue.h, start-up). Start-up removes
 * any left by a crash, and closing the pool removes the unused ones.
 *
 * Loop thread only, except the batch job, which runs on the queue's
 * workpool and touches only its own job record.
 */
#ifndef FULMAR_QUEUE_PREPARED_H
#define FULMAR_QUEUE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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
/* Starts a batch when the pool is at most half full (or recycled files
 * wait) and none runs. */
void prepared_refill(struct prepared *p);
/* Takes a prepared file: its id, an fd open for writing, positioned at
 * 0, and *old_size, the length of what the file holds (0 when new; the
 * commit truncates the file to its message). False when none is ready
 * (the caller creates its own file). */
bool prepared_take(struct prepared *p, char id[QUEUE_ID_LEN + 1], int *fd,
		   off_t *old_size);
/* The largest file recycled: the pool holds at most max times this much
 * disk space in old octets. */
#define PREPARED_RECYCLE_MAX (256 * 1024)

/* Gives the pool the file dir/id, of length size, of a finished message
 * (every recipient final, no journal): renamed to a fresh id here, then
 * unmarked by a worker, within RECYCLE_WAIT_MS, with a batch whose
 * directory fsync makes the names durable. False when the pool has no
 * room or the rename fails: the caller removes the file. */
bool prepared_recycle(struct prepared *p, const char *id, off_t size);
/* Waits for a batch in flight, then removes the unused files and those
 * waiting to be recycled. */
void prepared_free(struct prepared *p);

#endif
