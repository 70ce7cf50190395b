/*
 * delivery: scheduling of local deliveries and retries (delivery.h).
 */
#include "delivery/delivery.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "delivery/maildir.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "queue/queue.h"

#define DELIVERY_THREADS 4
#define BATCH_MAX 32       /* messages per worker job */

struct delivery {
	struct event_base *base;
	struct queue *q;
	struct config *cfg;
	struct workpool *pool;
	char host[256]; /* our host name, for Maildir names */
	unsigned in_flight;         /* attempts submitted, not yet done */
	unsigned batches;           /* worker jobs running */
	struct attempt *wait_head;  /* attempts waiting for a worker */
	struct attempt *wait_tail;
};

struct attempt {
	struct attempt *next;
	struct delivery *d;
	struct qmsg *msg;
	char qpath[PATH_MAX];
	size_t n;
	size_t *idx;                     /* recipient index per target */
	struct maildir_target *targets;
	char **names;                    /* owned strings of the targets */
	char **maildirs;
	int rc;
	char err[160];
};

struct delivery *delivery_new(struct event_base *base, struct queue *q,
			      struct config *cfg)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->q = q;
	d->cfg = config_ref(cfg);
	d->pool = workpool_new(base, DELIVERY_THREADS);
	strlcpy_safe(d->host, cfg->hostname, sizeof(d->host));
	return d;
}

void delivery_set_config(struct delivery *d, struct config *cfg)
{
	config_unref(d->cfg);
	d->cfg = config_ref(cfg);
}

unsigned delivery_in_flight(const struct delivery *d)
{
	return d->in_flight;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static void attempt_free(struct attempt *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->names[i]);
		free(a->maildirs[i]);
	}
	free(a->names);
	free(a->maildirs);
	free(a->targets);
	free(a->idx);
	free(a);
}

/* Worker: one message's local deliveries, without the directory fsync. */
static void attempt_run(struct attempt *a)
{
	int fd = open(a->qpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		a->rc = -1;
		snprintf(a->err, sizeof(a->err), "cannot open queue file: %s",
			 strerror_safe(errno));
		for (size_t i = 0; i < a->n; i++)
			a->targets[i].err = errno;
		return;
	}
	a->rc = maildir_deliver(fd, a->msg->content_off, a->msg->env.sender,
				a->targets, a->n, a->msg->recovered, false, a->err,
				sizeof(a->err));
	close(fd);
}

/* A worker job: several messages, then one fsync per Maildir new/. */
struct batch {
	struct delivery *d;
	struct attempt *head;
};

static void batch_work(void *arg)
{
	struct batch *b = arg;
	size_t total = 0;
	for (struct attempt *a = b->head; a; a = a->next) {
		attempt_run(a);
		total += a->n;
	}
	struct maildir_target **all = xcalloc(total ? total : 1, sizeof(*all));
	size_t k = 0;
	for (struct attempt *a = b->head; a; a = a->next)
		for (size_t i = 0; i < a->n; i++)
			all[k++] = &a->targets[i];
	maildir_sync_new(all, k);
	free(all);
}

static void attempt_done(struct attempt *a);
static void pump(struct delivery *d);

static void batch_done(void *arg)
{
	struct batch *b = arg;
	struct delivery *d = b->d;
	d->batches--;
	for (struct attempt *a = b->head, *next; a; a = next) {
		next = a->next;
		attempt_done(a);
	}
	free(b);
	pump(d);
}

/* Hand waiting attempts to idle workers, up to BATCH_MAX per job. */
static void pump(struct delivery *d)
{
	while (d->wait_head && d->batches < DELIVERY_THREADS) {
		struct batch *b = xcalloc(1, sizeof(*b));
		b->d = d;
		struct attempt **tail = &b->head;
		for (int n = 0; n < BATCH_MAX && d->wait_head; n++) {
			struct attempt *a = d->wait_head;
			d->wait_head = a->next;
			a->next = NULL;
			*tail = a;
			tail = &a->next;
		}
		if (d->wait_head == NULL)
			d->wait_tail = NULL;
		d->batches++;
		workpool_submit(d->pool, batch_work, batch_done, b);
	}
}

static void start_attempt(struct delivery *d, struct qmsg *m);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct qmsg *m = arg;
	start_attempt(m->engine, m);
}

static void arm_retry(struct delivery *d, struct qmsg *m)
{
	int64_t next = 0;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		const struct env_rcpt *r = &m->env.rcpts[i];
		if (r->state == RCPT_DEFERRED && (next == 0 || r->next_attempt < next))
			next = r->next_attempt;
	}
	if (next == 0)
		return;
	int64_t wait = next - now_s();
	struct timeval tv = { wait > 0 ? (time_t)wait : 0, 0 };
	if (m->retry == NULL)
		m->retry = evtimer_new(d->base, retry_cb, m);
	evtimer_add(m->retry, &tv);
}

/* queue.retry_first, doubling with each attempt, at most queue.retry_max. */
static int64_t backoff(const struct config *cfg, unsigned attempts)
{
	double s = cfg->queue.retry_first;
	for (unsigned i = 1; i < attempts && s < cfg->queue.retry_max; i++)
		s *= 2;
	if (s > cfg->queue.retry_max)
		s = cfg->queue.retry_max;
	return s < 1 ? 1 : (int64_t)s;
}

static void log_outcome(const struct qmsg *m, size_t idx, const char *status,
			const char *dsn, const char *detail)
{
	const struct env_rcpt *r = &m->env.rcpts[idx];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	double delay = ((double)tv.tv_sec * 1e6 + (double)tv.tv_usec -
			(double)m->env.arrival_us) / 1e6;
	struct log_line l;
	log_begin(&l, strcmp(status, "sent") == 0 ? LOG_INFO : LOG_WARNING, "delivery");
	log_str(&l, "id", m->env.id);
	log_str(&l, "to", r->addr);
	if (strcmp(r->orig, r->addr) != 0)
		log_str(&l, "orig_to", r->orig);
	log_str(&l, "relay", "local");
	log_fmt(&l, "delay", "%.3f", delay < 0 ? 0.0 : delay);
	log_str(&l, "dsn", dsn);
	log_str(&l, "status", status);
	if (detail)
		log_str(&l, "detail", detail);
	log_end(&l);
}

static void attempt_done(struct attempt *a)
{
	struct delivery *d = a->d;
	struct qmsg *m = a->msg;
	d->in_flight--;
	m->busy = false;
	if (a->rc < 0 && a->err[0] && strstr(a->err, "cannot open") == NULL) {
		/* The queue file itself is bad: nothing was delivered from it. */
		queue_msg_quarantine(d->q, m, a->err);
		attempt_free(a);
		return;
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct maildir_target *t = &a->targets[i];
		size_t idx = a->idx[i];
		if (t->err == 0) {
			queue_rcpt_update(d->q, m, idx, RCPT_DELIVERED, 0, NULL);
			log_outcome(m, idx, "sent", "2.0.0",
				    t->duplicate ? "already in maildir" : "delivered to maildir");
		} else {
			char why[200];
			snprintf(why, sizeof(why), "maildir %s: %s", t->maildir,
				 strerror_safe(t->err));
			unsigned attempts = m->env.rcpts[idx].attempts + 1;
			queue_rcpt_update(d->q, m, idx, RCPT_DEFERRED,
					  now_s() + backoff(d->cfg, attempts), why);
			log_outcome(m, idx, "deferred", "4.3.0", why);
		}
	}
	attempt_free(a);
	arm_retry(d, m);
	queue_msg_release(d->q, m);
}

static void start_attempt(struct delivery *d, struct qmsg *m)
{
	if (m->busy)
		return;
	int64_t now = now_s();
	struct attempt *a = xcalloc(1, sizeof(*a));
	a->d = d;
	a->msg = m;
	size_t cap = m->env.nrcpts;
	a->idx = xcalloc(cap, sizeof(size_t));
	a->targets = xcalloc(cap, sizeof(struct maildir_target));
	a->names = xcalloc(cap, sizeof(char *));
	a->maildirs = xcalloc(cap, sizeof(char *));
	bool remote_waiting = false;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		struct env_rcpt *r = &m->env.rcpts[i];
		if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED)
			continue;
		if (r->state == RCPT_DEFERRED && r->next_attempt > now)
			continue;
		const struct cfg_mailbox *mb = config_find_mailbox(d->cfg, r->addr);
		if (mb == NULL) {
			remote_waiting = true;
			continue;
		}
		char name[512];
		maildir_name(name, sizeof(name), (long long)(m->env.arrival_us / 1000000),
			     m->env.id, i, d->host);
		size_t k = a->n++;
		a->idx[k] = i;
		a->names[k] = xstrdup(name);
		a->maildirs[k] = xstrdup(mb->maildir);
		a->targets[k].maildir = a->maildirs[k];
		a->targets[k].name = a->names[k];
		a->targets[k].delivered_to = r->addr;
	}
	if (remote_waiting && !m->waiting_logged) {
		m->waiting_logged = true;
		struct log_line l;
		log_begin(&l, LOG_INFO, "waiting");
		log_str(&l, "id", m->env.id);
		log_str(&l, "reason", "recipients outside the local domains wait for the outbound engine");
		log_end(&l);
	}
	if (a->n == 0) {
		attempt_free(a);
		arm_retry(d, m);
		queue_msg_release(d->q, m);
		return;
	}
	queue_msg_path(d->q, m->env.id, a->qpath, sizeof(a->qpath));
	m->busy = true;
	d->in_flight++;
	if (d->wait_tail)
		d->wait_tail->next = a;
	else
		d->wait_head = a;
	d->wait_tail = a;
	pump(d);
}

void delivery_schedule(void *arg, struct qmsg *msg)
{
	struct delivery *d = arg;
	msg->engine = d;
	start_attempt(d, msg);
}

void delivery_free(struct delivery *d)
{
	if (d == NULL)
		return;
	while (d->in_flight > 0)
		event_base_loop(d->base, EVLOOP_ONCE);
	workpool_free(d->pool);
	config_unref(d->cfg);
	free(d);
}
