/*
 * workpool: job queue + threads + an eventfd that wakes the loop when
 * jobs finish (workpool.h).
 */
#include "lib/workpool.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/xalloc.h"

struct job {
	struct job *next;
	workpool_fn work;
	workpool_fn done;
	void *arg;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo_head, *todo_tail;
	struct job *done_head, *done_tail;
	bool stopping;
	int nthreads;
	pthread_t *threads;
	int efd;
	struct event *wake;
};

static void push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* Queue j for the loop, and wake the loop when the list was empty (one
 * wake-up covers everything queued before the loop drains it); the
 * eventfd write happens after unlocking, so workers do not wait on it. */
static void hand_back(struct workpool *pool, struct job *j)
{
	pthread_mutex_lock(&pool->lock);
	bool was_empty = pool->done_head == NULL;
	push(&pool->done_head, &pool->done_tail, j);
	pthread_mutex_unlock(&pool->lock);
	if (was_empty) {
		uint64_t one = 1;
		ssize_t w = write(pool->efd, &one, sizeof(one));
		(void)w; /* eventfd write only fails on overflow */
	}
}

static void *worker_main(void *p)
{
	struct workpool *pool = p;
	/* Batch scheduling: a worker woken by the loop does not preempt it
	 * (the loop has the sessions to serve; the worker mostly waits for
	 * the disk anyway). Linux applies this to the calling thread. */
	struct sched_param none = { 0 };
	(void)sched_setscheduler(0, SCHED_BATCH, &none);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->todo_head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		struct job *j = pool->todo_head;
		if (j == NULL)
			break; /* stopping and nothing left */
		pool->todo_head = j->next;
		if (pool->todo_head == NULL)
			pool->todo_tail = NULL;
		pthread_mutex_unlock(&pool->lock);

		j->work(j->arg);

		if (j->done)
			hand_back(pool, j);
		else
			free(j);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void run_done(struct workpool *pool)
{
	pthread_mutex_lock(&pool->lock);
	struct job *j = pool->done_head;
	pool->done_head = pool->done_tail = NULL;
	pthread_mutex_unlock(&pool->lock);
	while (j) {
		struct job *next = j->next;
		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof(n));
	(void)r;
	run_done(arg);
}

struct workpool *workpool_new(struct event_base *base, int nthreads)
{
	struct workpool *pool = xcalloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0)
		xfatal("eventfd: %s", strerror_safe(errno));
	pool->wake = event_new(base, pool->efd, EV_READ | EV_PERSIST, on_wake, pool);
	event_add(pool->wake, NULL);
	pool->nthreads = nthreads;
	pool->threads = xcalloc((size_t)nthreads, sizeof(pthread_t));
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
			xfatal("pthread_create failed");
	return pool;
}

void workpool_submit(struct workpool *pool, workpool_fn work, workpool_fn done,
		     void *arg)
{
	struct job *j = xmalloc(sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&pool->lock);
	push(&pool->todo_head, &pool->todo_tail, j);
	pthread_mutex_unlock(&pool->lock);
	pthread_cond_signal(&pool->cond);
}

void workpool_post(struct workpool *pool, workpool_fn done, void *arg)
{
	struct job *j = xmalloc(sizeof(*j));
	j->work = NULL;
	j->done = done;
	j->arg = arg;
	hand_back(pool, j);
}

void workpool_free(struct workpool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	run_done(pool);
	event_free(pool->wake);
	close(pool->efd);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}
