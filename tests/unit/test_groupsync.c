/*
 * Unit tests for lib/groupsync.h, the group commit among worker threads:
 * from many threads joining at once, every item is in exactly one batch,
 * the step never runs in two threads at once, and items that joined while
 * a step ran are taken by a later step (none is left waiting).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "lib/groupsync.h"

#define THREADS 8
#define PER_THREAD 2000

struct item {
	struct groupsync_item link; /* first */
	int seen;                   /* batches that held this item */
};

struct tally {
	atomic_int running;   /* steps running now */
	atomic_int overlaps;  /* times a step found another running */
	atomic_long items;    /* items passed to steps */
	atomic_long batches;
};

static void count_step(struct groupsync_item *batch, void *arg)
{
	struct tally *t = arg;
	if (atomic_fetch_add(&t->running, 1) != 0)
		atomic_fetch_add(&t->overlaps, 1);
	long n = 0;
	for (struct groupsync_item *i = batch; i; i = i->next, n++)
		((struct item *)i)->seen++;
	usleep(50); /* a slow step, as an fsync is: others gather meanwhile */
	atomic_fetch_add(&t->items, n);
	atomic_fetch_add(&t->batches, 1);
	atomic_fetch_sub(&t->running, 1);
}

struct worker {
	struct groupsync *g;
	struct item *items;
};

static void *join_all(void *p)
{
	struct worker *w = p;
	for (int i = 0; i < PER_THREAD; i++)
		groupsync_join(w->g, &w->items[i].link);
	return NULL;
}

static void test_every_item_once_never_concurrent(void **state)
{
	(void)state;
	static struct item items[THREADS][PER_THREAD];
	struct tally t = { 0 };
	struct groupsync g;
	groupsync_init(&g, count_step, &t);
	pthread_t th[THREADS];
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ &g, items[i] };
		assert_int_equal(pthread_create(&th[i], NULL, join_all, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	groupsync_destroy(&g);

	assert_int_equal(atomic_load(&t.overlaps), 0);
	assert_int_equal(atomic_load(&t.items), THREADS * PER_THREAD);
	for (int i = 0; i < THREADS; i++)
		for (int k = 0; k < PER_THREAD; k++)
			assert_int_equal(items[i][k].seen, 1);
	/* Group commit did group: fewer steps than items. */
	assert_true(atomic_load(&t.batches) < THREADS * PER_THREAD);
	assert_null(g.wait);
	assert_false(g.busy);
}

static void test_single_join_runs_step_at_once(void **state)
{
	(void)state;
	struct tally t = { 0 };
	struct groupsync g;
	struct item one = { 0 };
	groupsync_init(&g, count_step, &t);
	groupsync_join(&g, &one.link);
	assert_int_equal(one.seen, 1);
	assert_int_equal(atomic_load(&t.batches), 1);
	groupsync_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_join_runs_step_at_once),
		cmocka_unit_test(test_every_item_once_never_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
