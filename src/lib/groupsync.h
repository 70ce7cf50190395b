/*
 * groupsync: group commit among worker threads. Each worker, once its own
 * part is done (a file written, fsynced and renamed), joins the items
 * waiting for the shared step (the directory fsync). The first to find no
 * one doing that step becomes the syncer: it takes every waiting item as
 * one batch, runs the step for the batch without the lock, and goes on
 * while more items have gathered meanwhile; the others return at once.
 * So one step serves every item that joined before it started, and no
 * thread waits for another. No mail knowledge.
 *
 * Ownership: items stay the caller's; a batch is handed to the step
 * function, which owns it from then on (typically posting it to the loop).
 */
#ifndef FULMAR_GROUPSYNC_H
#define FULMAR_GROUPSYNC_H

#include <pthread.h>
#include <stdbool.h>

struct groupsync_item {
	struct groupsync_item *next;
};

/* Runs in the syncer's thread, without the lock, for a non-empty batch
 * (newest first). */
typedef void (*groupsync_fn)(struct groupsync_item *batch, void *arg);

struct groupsync {
	pthread_mutex_t lock;
	struct groupsync_item *wait;
	bool busy;
	groupsync_fn step;
	void *arg;
};

void groupsync_init(struct groupsync *g, groupsync_fn step, void *arg);
void groupsync_destroy(struct groupsync *g);
/* From any thread: adds item, and runs the step for every waiting batch
 * when no other thread is running it. */
void groupsync_join(struct groupsync *g, struct groupsync_item *item);

#endif
