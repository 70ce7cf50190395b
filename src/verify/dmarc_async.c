/*
 * dmarc_async: dmarc_step / dns_lookup_txt / dmarc_answer on the event
 * loop (dmarc_async.h); the same shape as spf_async: an answer that comes
 * at once is taken in drive()'s own loop, and an outcome known at start
 * goes out from a timer.
 */
#include "verify/dmarc_async.h"

#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>

#include "lib/dns.h"
#include "lib/mem.h"

struct dmarc_async {
	struct dmarc *m;
	struct dns *d;
	struct dns_query *q;
	struct event *timeout, *deliver;
	dmarc_async_fn fn;
	void *arg;
	bool in_drive, answered;
};

static void async_free(struct dmarc_async *a)
{
	if (a->q)
		dns_cancel(a->q);
	if (a->timeout)
		event_free(a->timeout);
	if (a->deliver)
		event_free(a->deliver);
	free(a);
}

static void done(struct dmarc_async *a)
{
	dmarc_async_fn fn = a->fn;
	void *arg = a->arg;
	struct dmarc *m = a->m;
	async_free(a);
	fn(arg, m);
}

static bool drive(struct dmarc_async *a);

static void on_txt(void *arg, enum dns_status st, const struct dns_txt *txt, size_t n,
		   const char *why)
{
	struct dmarc_async *a = arg;
	struct dmarc_txt t[DNS_TXT_MAX];
	size_t k = n < DNS_TXT_MAX ? n : DNS_TXT_MAX;
	for (size_t i = 0; i < k; i++) {
		t[i].text = txt[i].text;
		t[i].len = txt[i].len;
	}
	dmarc_answer(a->m, st, t, k, why);
	a->q = NULL;
	a->answered = true;
	if (!a->in_drive && !drive(a))
		done(a);
}

/* Starts the next lookup; false when discovery is over. */
static bool drive(struct dmarc_async *a)
{
	char name[DMARC_NAME_MAX + 16];
	a->in_drive = true;
	while (dmarc_step(a->m, name, sizeof(name))) {
		a->answered = false;
		struct dns_query *h = dns_lookup_txt(a->d, name, on_txt, a);
		if (h == NULL && !a->answered)
			dmarc_abort(a->m, "DNS query could not be started");
		if (h == NULL)
			continue;
		a->q = h;
		a->in_drive = false;
		return true;
	}
	a->in_drive = false;
	return false;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dmarc_async *a = arg;
	if (a->q) {
		dns_cancel(a->q);
		a->q = NULL;
	}
	dmarc_abort(a->m, "DMARC record lookup timed out");
	done(a);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	done(arg);
}

struct dmarc_async *dmarc_async_start(struct event_base *base, struct dns *d,
				      struct dmarc *m, double timeout, dmarc_async_fn fn,
				      void *arg)
{
	struct dmarc_async *a = mem_calloc(1, sizeof(*a));
	if (a == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	a->m = m;
	a->d = d;
	a->fn = fn;
	a->arg = arg;
	a->timeout = evtimer_new(base, on_timeout, a);
	a->deliver = evtimer_new(base, on_deliver, a);
	if (a->timeout == NULL || a->deliver == NULL) {
		async_free(a);
		errno = ENOMEM;
		return NULL;
	}
	struct timeval tv;
	tv.tv_sec = (time_t)timeout;
	tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
	if (drive(a)) {
		evtimer_add(a->timeout, &tv);
	} else {
		struct timeval zero = { 0, 0 };
		evtimer_add(a->deliver, &zero);
	}
	return a;
}

void dmarc_async_cancel(struct dmarc_async *a)
{
	if (a)
		async_free(a);
}
