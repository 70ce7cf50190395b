/*
 * groupsync: the leader-runs-the-batch group commit (groupsync.h).
 */
#include "lib/groupsync.h"

#include <stddef.h>

void groupsync_init(struct groupsync *g, groupsync_fn step, void *arg)
{
	pthread_mutex_init(&g->lock, NULL);
	g->wait = NULL;
	g->busy = false;
	g->step = step;
	g->arg = arg;
}

void groupsync_destroy(struct groupsync *g)
{
	pthread_mutex_destroy(&g->lock);
}

void groupsync_join(struct groupsync *g, struct groupsync_item *item)
{
	pthread_mutex_lock(&g->lock);
	item->next = g->wait;
	g->wait = item;
	if (g->busy) {
		pthread_mutex_unlock(&g->lock);
		return;
	}
	g->busy = true;
	while (g->wait) {
		struct groupsync_item *batch = g->wait;
		g->wait = NULL;
		pthread_mutex_unlock(&g->lock);
		g->step(batch, g->arg);
		pthread_mutex_lock(&g->lock);
	}
	g->busy = false;
	pthread_mutex_unlock(&g->lock);
}
