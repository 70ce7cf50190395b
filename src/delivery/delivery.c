/*
 * delivery: the rounds of a queued message (delivery.h).
 *
 * A round starts when a message is committed, recovered, or its retry
 * timer fires: every due recipient goes to a local attempt (one worker
 * job per message) or to the outbound scheduler (one job per
 * destination). msg->busy counts what runs. When the last piece is back,
 * the round ends: the notifications owed are queued (a failed recipient
 * is journaled failed only once its bounce is durable), the retry timer
 * is armed, and the queue releases the message if every recipient is
 * final.
 */
#include "delivery/delivery.h"
#include "delivery/delivery_engine.h"

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
#include "delivery/bounce.h"
#include "delivery/maildir.h"
#include "delivery/outbound.h"
#include "lib/log.h"
#include "lib/monotime.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "proto/smtp_cmd.h"
#include "queue/queue.h"

#define DELIVERY_THREADS 4
#define BATCH_MAX 32       /* messages per worker job */

struct delivery {
	struct event_base *base;
	struct queue *q;
	struct config *cfg;
	struct outbound *out;
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

static void outbound_done(void *arg, struct qmsg *m, const struct outbound_result *res,
			  size_t n, bool corrupt);

struct delivery *delivery_new(struct event_base *base, struct queue *q, struct dns *dns,
			      struct config *cfg)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->q = q;
	d->cfg = config_ref(cfg);
	d->pool = workpool_new(base, DELIVERY_THREADS);
	d->out = outbound_new(base, q, dns, cfg, outbound_done, d);
	strlcpy_safe(d->host, cfg->hostname, sizeof(d->host));
	return d;
}

void delivery_set_config(struct delivery *d, struct config *cfg)
{
	config_unref(d->cfg);
	d->cfg = config_ref(cfg);
	outbound_set_config(d->out, cfg);
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

static void round_end(struct delivery *d, struct qmsg *m);
static void round_close(struct delivery *d, struct qmsg *m, bool reports_failed);
static void start_attempt(struct delivery *d, struct qmsg *m);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct qmsg *m = arg;
	start_attempt(m->engine, m);
}

static void arm_timer(struct delivery *d, struct qmsg *m, int64_t at)
{
	int64_t wait = at - now_s();
	struct timeval tv = { wait > 0 ? (time_t)wait : 0, 0 };
	if (m->retry == NULL)
		m->retry = evtimer_new(d->base, retry_cb, m);
	evtimer_add(m->retry, &tv);
}

static void arm_retry(struct delivery *d, struct qmsg *m)
{
	int64_t next = 0;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		const struct env_rcpt *r = &m->env.rcpts[i];
		if (r->state == RCPT_DEFERRED && (next == 0 || r->next_attempt < next))
			next = r->next_attempt;
	}
	if (next != 0 && !m->env.held)
		arm_timer(d, m, next);
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

static void log_outcome(const struct qmsg *m, size_t idx, const char *relay,
			const char *status, const char *dsn, const char *detail)
{
	const struct env_rcpt *r = &m->env.rcpts[idx];
	double delay = (double)(walltime_us() - m->env.arrival_us) / 1e6;
	struct log_line l;
	log_begin(&l, strcmp(status, "sent") == 0 ? LOG_INFO : LOG_WARNING, "delivery");
	log_str(&l, "id", m->env.id);
	log_str(&l, "to", r->addr);
	if (strcmp(r->orig, r->addr) != 0)
		log_str(&l, "orig_to", r->orig);
	log_str(&l, "relay", relay);
	log_seconds(&l, "delay", delay);
	log_str(&l, "dsn", dsn);
	log_str(&l, "status", status);
	if (detail)
		log_str(&l, "detail", detail);
	log_end(&l);
}

/* ---- outcomes of one recipient ---- */

static void owe_report(struct env_rcpt *r, enum rcpt_report what, const char *status,
		       const char *remote, const char *detail)
{
	r->report = what;
	snprintf(r->report_status, sizeof(r->report_status), "%s", status);
	envelope_xset(&r->report_remote, remote && remote[0] ? remote : NULL);
	r->report_time = now_s();
	if (detail)
		envelope_xset(&r->last_error, detail);
}

static void rcpt_sent(struct delivery *d, struct qmsg *m, size_t idx, const char *relay,
		      const char *dsn, const char *detail, enum rcpt_report notice,
		      const char *remote)
{
	struct env_rcpt *r = &m->env.rcpts[idx];
	queue_rcpt_update(d->q, m, idx, RCPT_DELIVERED, 0, NULL);
	log_outcome(m, idx, relay, "sent", dsn, detail);
	if (r->notify & SMTP_NOTIFY_SUCCESS)
		owe_report(r, notice, dsn, remote, detail);
}

/* A permanent failure: journaled once the bounce is queued (round_end). */
static void rcpt_failed(struct qmsg *m, size_t idx, const char *relay, const char *dsn,
			const char *detail, const char *remote)
{
	struct env_rcpt *r = &m->env.rcpts[idx];
	log_outcome(m, idx, relay, "bounced", dsn, detail);
	owe_report(r, REPORT_FAILED, dsn, remote, detail);
}

static void rcpt_deferred(struct delivery *d, struct qmsg *m, size_t idx, const char *relay,
			  const char *dsn, const char *detail, const char *remote)
{
	struct env_rcpt *r = &m->env.rcpts[idx];
	int64_t now = now_s();
	double age_exact = (double)(walltime_us() - m->env.arrival_us) / 1e6;
	int64_t age = (int64_t)age_exact;
	if (age_exact >= d->cfg->queue.max_lifetime) {
		char why[600];
		snprintf(why, sizeof(why), "message expired after %llds in the queue: %s",
			 (long long)age, detail);
		log_outcome(m, idx, relay, "bounced", "4.4.7", why);
		owe_report(r, REPORT_FAILED, "4.4.7", remote, why);
		return;
	}
	unsigned attempts = r->attempts + 1;
	queue_rcpt_update(d->q, m, idx, RCPT_DEFERRED, now + backoff(d->cfg, attempts),
			  detail);
	log_outcome(m, idx, relay, "deferred", dsn, detail);
	if (!r->delay_warned && d->cfg->queue.delay_warning > 0 &&
	    age_exact >= d->cfg->queue.delay_warning &&
	    (r->notify == 0 || (r->notify & SMTP_NOTIFY_DELAY))) {
		r->delay_warned = true;
		owe_report(r, REPORT_DELAYED, dsn, remote, detail);
	}
}

/* ---- local attempts ---- */

/* The queue file does not read back: stop everything, quarantine it at
 * the end of the round. */
static void mark_corrupt(struct delivery *d, struct qmsg *m, const char *why)
{
	if (m->corrupt)
		return;
	m->corrupt = true;
	snprintf(m->corrupt_why, sizeof(m->corrupt_why), "%s", why);
	m->busy -= (unsigned)outbound_withdraw(d->out, m);
}

static void attempt_done(struct attempt *a)
{
	struct delivery *d = a->d;
	struct qmsg *m = a->msg;
	d->in_flight--;
	m->busy--;
	if (a->rc < 0 && a->err[0] && strstr(a->err, "cannot open") == NULL) {
		/* The queue file itself is bad: nothing was delivered from it. */
		mark_corrupt(d, m, a->err);
		attempt_free(a);
		if (m->busy == 0)
			round_end(d, m);
		return;
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct maildir_target *t = &a->targets[i];
		size_t idx = a->idx[i];
		if (t->err == 0) {
			rcpt_sent(d, m, idx, "local", "2.0.0",
				  t->duplicate ? "already in maildir" : "delivered to maildir",
				  REPORT_DELIVERED, NULL);
		} else {
			char why[200];
			snprintf(why, sizeof(why), "maildir %s: %s", t->maildir,
				 strerror_safe(t->err));
			rcpt_deferred(d, m, idx, "local", "4.3.0", why, NULL);
		}
	}
	attempt_free(a);
	if (m->busy == 0)
		round_end(d, m);
}

/* ---- remote attempts ---- */

static void outbound_done(void *arg, struct qmsg *m, const struct outbound_result *res,
			  size_t n, bool corrupt)
{
	struct delivery *d = arg;
	m->busy--;
	if (corrupt) {
		mark_corrupt(d, m, res[0].detail);
		if (m->busy == 0)
			round_end(d, m);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct outbound_result *r = &res[i];
		switch (r->status) {
		case OUT_SENT:
			/* A server with DSN got NOTIFY and reports by itself. */
			if (r->remote_dsn)
				m->env.rcpts[r->idx].notify &= ~(unsigned)SMTP_NOTIFY_SUCCESS;
			rcpt_sent(d, m, r->idx, r->relay, r->dsn, r->detail, REPORT_RELAYED,
				  r->remote_mta);
			break;
		case OUT_BOUNCED:
			rcpt_failed(m, r->idx, r->relay, r->dsn, r->detail, r->remote_mta);
			break;
		case OUT_DEFERRED:
			rcpt_deferred(d, m, r->idx, r->relay, r->dsn, r->detail, r->remote_mta);
			break;
		}
	}
	if (m->busy == 0)
		round_end(d, m);
}

/* ---- the end of a round: notifications, timers, release ---- */

/* Does recipient r's NOTIFY ask for this report? */
static bool wants(const struct env_rcpt *r)
{
	if (r->notify & SMTP_NOTIFY_NEVER)
		return false;
	switch (r->report) {
	case REPORT_FAILED:
		return r->notify == 0 || (r->notify & SMTP_NOTIFY_FAILURE);
	case REPORT_DELAYED:
		return r->notify == 0 || (r->notify & SMTP_NOTIFY_DELAY);
	case REPORT_DELIVERED:
	case REPORT_RELAYED:
		return (r->notify & SMTP_NOTIFY_SUCCESS) != 0;
	default:
		return false;
	}
}

/* The report is settled (queued, or not wanted): make it final. */
static void settle(struct delivery *d, struct qmsg *m, size_t idx)
{
	struct env_rcpt *r = &m->env.rcpts[idx];
	if (r->report == REPORT_FAILED)
		queue_rcpt_update(d->q, m, idx, RCPT_FAILED, 0, r->last_error);
	r->report = REPORT_NONE;
}

struct bounce_job {
	struct delivery *d;
	struct qmsg *m;
	size_t *idx;
	size_t n;
	char id[QUEUE_ID_LEN + 1];
};

static void bounce_committed(void *arg, int err, const char *id)
{
	(void)id;
	struct bounce_job *b = arg;
	struct delivery *d = b->d;
	struct qmsg *m = b->m;
	m->busy--;
	d->in_flight--;
	for (size_t i = 0; i < b->n; i++) {
		struct env_rcpt *r = &m->env.rcpts[b->idx[i]];
		if (err == 0) {
			struct log_line l;
			static const char *const names[] = { "none", "failed", "delayed",
							     "delivered", "relayed" };
			log_begin(&l, LOG_INFO, "bounce");
			log_str(&l, "id", m->env.id);
			log_str(&l, "bounce_id", b->id);
			log_str(&l, "to", m->env.sender);
			log_str(&l, "rcpt", r->addr);
			log_str(&l, "action", names[r->report]);
			log_end(&l);
			settle(d, m, b->idx[i]);
		}
	}
	free(b->idx);
	free(b);
	if (err) {
		log_msg(LOG_WARNING, "bounce_failed", "id=%s: cannot queue the notification: %s",
			m->env.id, strerror_safe(err));
		if (m->busy == 0)
			round_close(d, m, true);
		return;
	}
	if (m->busy == 0)
		round_end(d, m);
}

/* Queue one DSN for the reports owed; returns whether one is on its way. */
static bool send_reports(struct delivery *d, struct qmsg *m)
{
	size_t *idx = xcalloc(m->env.nrcpts, sizeof(size_t));
	size_t n = 0;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		struct env_rcpt *r = &m->env.rcpts[i];
		if (r->report == REPORT_NONE)
			continue;
		if (m->env.sender[0] == '\0' || !wants(r)) {
			if (m->env.sender[0] == '\0' && r->report == REPORT_FAILED)
				log_msg(LOG_INFO, "bounce_suppressed",
					"id=%s: the sender is <>: no notification", m->env.id);
			settle(d, m, i);
			continue;
		}
		idx[n++] = i;
	}
	if (n == 0) {
		free(idx);
		return false;
	}
	struct bounce_job *b = xcalloc(1, sizeof(*b));
	b->d = d;
	b->m = m;
	b->idx = idx;
	b->n = n;
	char err[256];
	m->busy++;
	d->in_flight++;
	if (bounce_queue(d->q, d->cfg, m, idx, n, bounce_committed, b, b->id, err,
			 sizeof(err)) < 0) {
		m->busy--;
		d->in_flight--;
		log_msg(LOG_WARNING, "bounce_failed", "id=%s: %s", m->env.id, err);
		free(idx);
		free(b);
		round_close(d, m, true);
		return true; /* the reports wait for the next round */
	}
	return true;
}

/* Arm the next round and let the queue release the message. When a DSN
 * could not be queued, the next round (after queue.retry_first) tries
 * again. */
static void round_close(struct delivery *d, struct qmsg *m, bool reports_failed)
{
	arm_retry(d, m);
	if (reports_failed) {
		int64_t at = now_s() + (int64_t)d->cfg->queue.retry_first;
		if (m->retry == NULL || !evtimer_pending(m->retry, NULL))
			arm_timer(d, m, at);
	}
	queue_msg_release(d->q, m);
}

static void operator_bounce(struct delivery *d, struct qmsg *m)
{
	m->bouncing = false;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		struct env_rcpt *r = &m->env.rcpts[i];
		if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED ||
		    r->report == REPORT_FAILED)
			continue;
		rcpt_failed(m, i, "none", "5.0.0", "message bounced by the administrator",
			    NULL);
	}
	(void)d;
}

static void round_end(struct delivery *d, struct qmsg *m)
{
	if (m->corrupt) {
		queue_msg_quarantine(d->q, m, m->corrupt_why);
		return;
	}
	if (m->deleting) {
		struct log_line l;
		log_begin(&l, LOG_INFO, "deleted");
		log_str(&l, "id", m->env.id);
		log_end(&l);
		queue_msg_remove(d->q, m);
		return;
	}
	if (m->bouncing)
		operator_bounce(d, m);
	if (send_reports(d, m))
		return; /* round_end again once the DSN is queued */
	round_close(d, m, false);
}

/* ---- the start of a round ---- */

static void submit_local(struct delivery *d, struct qmsg *m, struct attempt *a)
{
	queue_msg_path(d->q, m->env.id, a->qpath, sizeof(a->qpath));
	m->busy++;
	d->in_flight++;
	if (d->wait_tail)
		d->wait_tail->next = a;
	else
		d->wait_head = a;
	d->wait_tail = a;
	pump(d);
}

/* The domain of an address (after the last '@'). */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

/* Remote recipients idx[0..n): one outbound job per destination. */
static void submit_remote(struct delivery *d, struct qmsg *m, size_t *idx, size_t n)
{
	char (*keys)[300] = xcalloc(n ? n : 1, sizeof(*keys));
	bool *taken = xcalloc(n ? n : 1, sizeof(bool));
	size_t *group = xcalloc(n ? n : 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		outbound_destination(d->out, domain_of(m->env.rcpts[idx[i]].addr), keys[i],
				     sizeof(keys[i]));
	for (size_t i = 0; i < n; i++) {
		if (taken[i])
			continue;
		size_t k = 0;
		for (size_t j = i; j < n; j++) {
			if (!taken[j] && strcmp(keys[i], keys[j]) == 0) {
				taken[j] = true;
				group[k++] = idx[j];
			}
		}
		m->busy++;
		outbound_submit(d->out, m, group, k, domain_of(m->env.rcpts[idx[i]].addr));
	}
	free(keys);
	free(taken);
	free(group);
}

static void start_attempt(struct delivery *d, struct qmsg *m)
{
	if (m->busy > 0)
		return;
	if (m->env.held || m->deleting || m->bouncing) {
		round_end(d, m);
		return;
	}
	int64_t now = now_s();
	struct attempt *a = xcalloc(1, sizeof(*a));
	a->d = d;
	a->msg = m;
	size_t cap = m->env.nrcpts;
	a->idx = xcalloc(cap, sizeof(size_t));
	a->targets = xcalloc(cap, sizeof(struct maildir_target));
	a->names = xcalloc(cap, sizeof(char *));
	a->maildirs = xcalloc(cap, sizeof(char *));
	size_t *remote = xcalloc(cap ? cap : 1, sizeof(size_t));
	size_t nremote = 0;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		struct env_rcpt *r = &m->env.rcpts[i];
		if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED ||
		    r->report == REPORT_FAILED)
			continue;
		if (r->state == RCPT_DEFERRED && r->next_attempt > now)
			continue;
		const struct cfg_mailbox *mb = config_find_mailbox(d->cfg, r->addr);
		if (mb == NULL) {
			remote[nremote++] = i;
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
	/* Count every piece before any can finish. */
	m->busy++;
	if (a->n > 0)
		submit_local(d, m, a);
	else
		attempt_free(a);
	if (nremote > 0)
		submit_remote(d, m, remote, nremote);
	free(remote);
	m->busy--;
	if (m->busy == 0)
		round_end(d, m);
}

void delivery_schedule(void *arg, struct qmsg *msg)
{
	struct delivery *d = arg;
	msg->engine = d;
	start_attempt(d, msg);
}

/* ---- for delivery_control.c (delivery_engine.h) ---- */

struct queue *delivery_queue(const struct delivery *d)
{
	return d->q;
}

struct outbound *delivery_outbound(const struct delivery *d)
{
	return d->out;
}

void delivery_start_round(struct delivery *d, struct qmsg *m)
{
	start_attempt(d, m);
}

void delivery_end_round(struct delivery *d, struct qmsg *m)
{
	round_end(d, m);
}

void delivery_free(struct delivery *d)
{
	if (d == NULL)
		return;
	while (d->in_flight > 0)
		event_base_loop(d->base, EVLOOP_ONCE);
	outbound_free(d->out);
	workpool_free(d->pool);
	config_unref(d->cfg);
	free(d);
}
