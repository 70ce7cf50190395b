/*
 * delivery_control: the operator's controls of the delivery engine
 * (delivery.h: flush, hold, release, delete, bounce, list), on top of
 * the engine's rounds (delivery_engine.h). Loop thread only.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "delivery/delivery.h"
#include "delivery/delivery_engine.h"
#include "delivery/outbound.h"
#include "lib/xalloc.h"
#include "queue/queue.h"

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

int delivery_flush(struct delivery *d, const char *id)
{
	int found = id ? -1 : 0;
	int64_t now = now_s();
	for (struct qmsg *m = queue_first(delivery_queue(d)), *next; m; m = next) {
		next = m->next;
		if (id && strcmp(m->env.id, id) != 0)
			continue;
		found = 0;
		for (size_t i = 0; i < m->env.nrcpts; i++)
			if (m->env.rcpts[i].state == RCPT_DEFERRED)
				m->env.rcpts[i].next_attempt = now;
		if (m->busy == 0 && !m->env.held) {
			if (m->retry)
				evtimer_del(m->retry);
			delivery_start_round(d, m);
		}
	}
	return found;
}

int delivery_hold(struct delivery *d, const char *id)
{
	struct qmsg *m = queue_find(delivery_queue(d), id);
	if (m == NULL)
		return -1;
	if (!m->env.held) {
		queue_msg_set_held(delivery_queue(d), m, true);
		if (m->retry)
			evtimer_del(m->retry);
		size_t w = outbound_withdraw(delivery_outbound(d), m);
		if (w > 0) {
			m->busy -= (unsigned)w;
			if (m->busy == 0)
				delivery_end_round(d, m);
		}
	}
	return 0;
}

int delivery_release(struct delivery *d, const char *id)
{
	struct qmsg *m = queue_find(delivery_queue(d), id);
	if (m == NULL || !m->env.held)
		return -1;
	queue_msg_set_held(delivery_queue(d), m, false);
	if (m->busy == 0)
		delivery_start_round(d, m);
	return 0;
}

/* Withdraw what has not started; run fn now if nothing runs. */
static int operator_end(struct delivery *d, const char *id, bool del)
{
	struct qmsg *m = queue_find(delivery_queue(d), id);
	if (m == NULL)
		return -1;
	if (del)
		m->deleting = true;
	else
		m->bouncing = true;
	/* Withdrawn jobs will not report; running ones (and local attempts,
	 * on workers) will, and the round ends after them. */
	m->busy -= (unsigned)outbound_withdraw(delivery_outbound(d), m);
	if (m->retry)
		evtimer_del(m->retry);
	if (m->busy == 0)
		delivery_end_round(d, m);
	return 0;
}

int delivery_delete(struct delivery *d, const char *id)
{
	return operator_end(d, id, true);
}

int delivery_bounce(struct delivery *d, const char *id)
{
	return operator_end(d, id, false);
}

static const char *rcpt_why(const struct delivery *d, const struct qmsg *m, size_t i)
{
	const struct env_rcpt *r = &m->env.rcpts[i];
	if (r->state == RCPT_DELIVERED)
		return "delivered";
	if (r->state == RCPT_FAILED)
		return "failed";
	if (r->report == REPORT_FAILED)
		return "bouncing";
	if (m->env.held)
		return "held";
	const char *w = outbound_why(delivery_outbound(d), m, i);
	if (w)
		return w;
	if (m->busy > 0)
		return "in delivery";
	if (r->state == RCPT_DEFERRED && r->next_attempt > now_s())
		return "backoff";
	return "due";
}

long delivery_list(struct delivery *d, const char *id, delivery_view_fn fn, void *arg)
{
	long count = 0;
	for (struct qmsg *m = queue_first(delivery_queue(d)); m; m = m->next) {
		if (id && strcmp(m->env.id, id) != 0)
			continue;
		const char **why = xcalloc(m->env.nrcpts ? m->env.nrcpts : 1, sizeof(char *));
		for (size_t i = 0; i < m->env.nrcpts; i++)
			why[i] = rcpt_why(d, m, i);
		struct delivery_view v = { &m->env, m->env.held, why };
		fn(arg, &v);
		free(why);
		count++;
	}
	return count;
}

