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

#define RETRY_AFTER 1.0 /* seconds between refills after one failed */

struct slot {
	char id[QUEUE_ID_LEN + 1];
	int fd;
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
	bool refilling;
	double retry_at;     /* monotonic: no refill before, after a failure */
};

/* A refill: the ids minted on the loop, the files made on a worker. */
struct refill {
	struct prepared *p;
	size_t n;
	int err;             /* the first failure, or 0 */
	struct slot slots[]; /* n; fd -1 when not made */
};

static void slot_path(const struct prepared *p, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", p->dir, id);
}

static void slot_discard(const struct prepared *p, struct slot *s)
{
	char path[PATH_MAX];
	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	slot_path(p, s->id, path, sizeof(path));
	unlink(path);
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
	return p;
}

/* Worker: create the files, then one fsync of the directory makes every
 * name durable; on any failure after a file was made, nothing is kept. */
static void refill_work(void *arg)
{
	struct refill *r = arg;
	char path[PATH_MAX];
	size_t made = 0;
	for (size_t i = 0; i < r->n; i++) {
		slot_path(r->p, r->slots[i].id, path, sizeof(path));
		r->slots[i].fd = fsio_open(path, O_WRONLY | O_CREAT | O_EXCL,
					   QUEUE_MODE_WRITING);
		if (r->slots[i].fd >= 0)
			made++;
		else if (r->err == 0)
			r->err = errno;
	}
	if (made > 0 && fsio_fsync_dir(r->p->dir) < 0) {
		r->err = errno;
		for (size_t i = 0; i < r->n; i++)
			slot_discard(r->p, &r->slots[i]);
	}
}

/* Loop: the made files join the pool. */
static void refill_done(void *arg)
{
	struct refill *r = arg;
	struct prepared *p = r->p;
	p->refilling = false;
	for (size_t i = 0; i < r->n; i++)
		if (r->slots[i].fd >= 0)
			p->ready[p->nready++] = r->slots[i];
	if (r->err) {
		p->retry_at = monotime() + RETRY_AFTER;
		log_msg(LOG_WARNING, "queue_prepare_failed",
			"cannot prepare queue files in %s: %s; messages create their own",
			p->dir, strerror_safe(r->err));
	}
	free(r);
}

void prepared_refill(struct prepared *p)
{
	if (p->max == 0 || p->refilling || p->nready > p->max / 2)
		return;
	if (p->retry_at > 0 && monotime() < p->retry_at)
		return;
	size_t n = p->max - p->nready;
	struct refill *r = xcalloc(1, sizeof(*r) + n * sizeof(r->slots[0]));
	r->p = p;
	r->n = n;
	for (size_t i = 0; i < n; i++) {
		p->mint(p->mint_arg, r->slots[i].id);
		r->slots[i].fd = -1;
	}
	p->refilling = true;
	workpool_submit(p->pool, refill_work, refill_done, r);
}

bool prepared_take(struct prepared *p, char id[QUEUE_ID_LEN + 1], int *fd)
{
	bool got = false;
	if (p->nready > 0) {
		struct slot *s = &p->ready[--p->nready];
		memcpy(id, s->id, QUEUE_ID_LEN + 1);
		*fd = s->fd;
		got = true;
	}
	prepared_refill(p);
	return got;
}

void prepared_free(struct prepared *p)
{
	if (p == NULL)
		return;
	while (p->refilling)
		event_base_loop(p->base, EVLOOP_ONCE);
	for (size_t i = 0; i < p->nready; i++)
		slot_discard(p, &p->ready[i]);
	free(p->ready);
	free(p);
}
