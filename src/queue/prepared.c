/*
 * prepared: the pool of queue files made ahead of need (prepared.h).
 */
#include "queue/prepared.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/fsio.h"
#include "lib/log.h"
#include "lib/monotime.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "queue/queue.h"

#define RETRY_AFTER 1.0 /* seconds between new files after a batch failed */
/* The longest a recycled file waits for its batch. */
#define RECYCLE_WAIT_MS 500

struct slot {
	char id[QUEUE_ID_LEN + 1];
	bool recycled; /* a finished message's file, renamed to id */
	int fd;
	off_t size;    /* what the file holds */
};

struct prepared {
	struct event_base *base;
	struct workpool *pool;
	char dir[PATH_MAX];
	size_t max;
	prepared_id_fn mint;
	void *mint_arg;
	struct slot *ready;  /* a stack of nready files */
	size_t nready;
	struct slot *waiting; /* recycled files for the next batch (id, size) */
	size_t nwaiting;
	struct event *wait_timer; /* armed while files wait: RECYCLE_WAIT_MS */
	bool overdue;             /* it fired: they go in the next batch */
	size_t in_batch;     /* files of the batch in flight (0: none runs) */
	double retry_at;     /* monotonic: no new files before, after a failure */
	bool closing;        /* prepared_free: no more batches */
};

/* A batch: the ids minted on the loop, the files made on a worker. */
struct batch {
	struct prepared *p;
	size_t n;
	int err;             /* the first failure, or 0 */
	struct slot slots[]; /* n; fd -1 when not made */
};

static void slot_path(const struct prepared *p, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", p->dir, id);
}

static void remove_file(const struct prepared *p, const char *id)
{
	char path[PATH_MAX];
	slot_path(p, id, path, sizeof(path));
	unlink(path);
}

static void slot_discard(const struct prepared *p, struct slot *s)
{
	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	remove_file(p, s->id);
}

static void start_batch(struct prepared *p);

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
	struct prepared *p = arg;
	(void)fd;
	(void)what;
	p->overdue = true;
	start_batch(p);
}

struct prepared *prepared_new(struct event_base *base, struct workpool *pool,
			      const char *dir, size_t max, prepared_id_fn mint,
			      void *mint_arg)
{
	struct prepared *p = xcalloc(1, sizeof(*p));
	p->base = base;
	p->pool = pool;
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	p->max = max;
	p->mint = mint;
	p->mint_arg = mint_arg;
	p->ready = xcalloc(max ? max : 1, sizeof(*p->ready));
	p->waiting = xcalloc(max ? max : 1, sizeof(*p->waiting));
	p->wait_timer = evtimer_new(base, on_wait, p);
	if (p->wait_timer == NULL)
		xfatal("out of memory");
	return p;
}

/* Worker: a new empty file. -1 (errno) when it cannot be made. */
static int make_new(struct batch *b, struct slot *s)
{
	char path[PATH_MAX];
	slot_path(b->p, s->id, path, sizeof(path));
	s->fd = fsio_open(path, O_WRONLY | O_CREAT | O_EXCL, QUEUE_MODE_WRITING);
	s->size = 0;
	return s->fd < 0 ? -1 : 0;
}

/* Worker: a recycled file, opened and unmarked. One that cannot be is
 * removed: its message is done. */
static int make_recycled(struct batch *b, struct slot *s)
{
	char path[PATH_MAX];
	slot_path(b->p, s->id, path, sizeof(path));
	s->fd = fsio_open(path, O_WRONLY, 0);
	if (s->fd >= 0 && fsio_fchmod(s->fd, QUEUE_MODE_WRITING) == 0)
		return 0;
	int saved = errno;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	unlink(path);
	errno = saved;
	return -1;
}

/* Worker: make the files, then one fsync of the directory makes every
 * name durable; when it fails, nothing is kept. */
static void batch_work(void *arg)
{
	struct batch *b = arg;
	size_t made = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct slot *s = &b->slots[i];
		if ((s->recycled ? make_recycled(b, s) : make_new(b, s)) == 0)
			made++;
		else if (b->err == 0)
			b->err = errno;
	}
	if (made > 0 && fsio_fsync_dir(b->p->dir) < 0) {
		b->err = errno;
		for (size_t i = 0; i < b->n; i++)
			slot_discard(b->p, &b->slots[i]);
	}
}

/* Loop: the made files join the pool. */
static void batch_done(void *arg)
{
	struct batch *b = arg;
	struct prepared *p = b->p;
	p->in_batch = 0;
	for (size_t i = 0; i < b->n; i++)
		if (b->slots[i].fd >= 0)
			p->ready[p->nready++] = b->slots[i];
	if (b->err) {
		p->retry_at = monotime() + RETRY_AFTER;
		log_msg(LOG_WARNING, "queue_prepare_failed",
			"cannot prepare queue files in %s: %s; messages create their own",
			p->dir, strerror_safe(b->err));
	}
	free(b);
	start_batch(p);
}

static size_t recycle_batch(const struct prepared *p)
{
	return p->max / 4 > 0 ? p->max / 4 : 1;
}

/* The finished messages waiting, and new files when the pool is at most
 * half full (unless a batch failed less than RETRY_AFTER ago). */
static void start_batch(struct prepared *p)
{
	if (p->max == 0 || p->in_batch > 0 || p->closing)
		return;
	size_t have = p->nready + p->nwaiting, fresh = 0;
	if (have <= p->max / 2 && !(p->retry_at > 0 && monotime() < p->retry_at))
		fresh = p->max - have;
	/* Finished messages wait for more (one directory fsync, one journal
	 * commit, for a quarter of the pool) unless new files are due. */
	size_t recycled = fresh > 0 || p->overdue || p->nwaiting >= recycle_batch(p)
				  ? p->nwaiting : 0;
	size_t n = recycled + fresh;
	if (n == 0)
		return;
	if (recycled > 0) {
		p->overdue = false;
		evtimer_del(p->wait_timer);
	}
	struct batch *b = xcalloc(1, sizeof(*b) + n * sizeof(b->slots[0]));
	b->p = p;
	b->n = n;
	for (size_t i = 0; i < n; i++) {
		struct slot *s = &b->slots[i];
		if (i < recycled)
			*s = p->waiting[i];
		else
			p->mint(p->mint_arg, s->id);
		s->fd = -1;
	}
	p->nwaiting -= recycled; /* all of them or none (above) */
	p->in_batch = n;
	workpool_submit(p->pool, batch_work, batch_done, b);
}

void prepared_refill(struct prepared *p)
{
	start_batch(p);
}

bool prepared_take(struct prepared *p, char id[QUEUE_ID_LEN + 1], int *fd,
		   off_t *old_size)
{
	bool got = false;
	if (p->nready > 0) {
		struct slot *s = &p->ready[--p->nready];
		memcpy(id, s->id, QUEUE_ID_LEN + 1);
		*fd = s->fd;
		*old_size = s->size;
		got = true;
	}
	start_batch(p);
	return got;
}

bool prepared_recycle(struct prepared *p, const char *id, off_t size)
{
	char from[PATH_MAX], to[PATH_MAX];
	if (p->closing || p->nready + p->in_batch + p->nwaiting >= p->max)
		return false;
	struct slot *s = &p->waiting[p->nwaiting];
	p->mint(p->mint_arg, s->id);
	slot_path(p, id, from, sizeof(from));
	slot_path(p, s->id, to, sizeof(to));
	/* Never over a file of the same name: ids come from the clock, which
	 * can step back. */
	if (fsio_rename_noreplace(from, to) < 0)
		return false;
	s->recycled = true;
	s->size = size;
	p->nwaiting++;
	start_batch(p);
	if (p->nwaiting > 0 && !evtimer_pending(p->wait_timer, NULL)) {
		struct timeval wait = { 0, RECYCLE_WAIT_MS * 1000 };
		evtimer_add(p->wait_timer, &wait);
	}
	return true;
}

void prepared_free(struct prepared *p)
{
	if (p == NULL)
		return;
	p->closing = true;
	while (p->in_batch > 0)
		event_base_loop(p->base, EVLOOP_ONCE);
	for (size_t i = 0; i < p->nready; i++)
		slot_discard(p, &p->ready[i]);
	for (size_t i = 0; i < p->nwaiting; i++)
		remove_file(p, p->waiting[i].id);
	event_free(p->wait_timer);
	free(p->ready);
	free(p->waiting);
	free(p);
}
