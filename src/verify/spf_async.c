/*
 * spf_async: the loop of spf_step / a lookup / spf_answer (spf_async.h),
 * each lookup through lib/dns. An answer may come at once (dns returns
 * NULL after calling back): drive() then goes on in its own loop rather
 * than recursing. The outcome is delivered from a timer event when the
 * check ends inside spf_async_start, so the caller never sees the callback
 * before start returns.
 */
#include "verify/spf_async.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns.h"
#include "lib/mem.h"

struct spf_async {
	struct spf *c;
	struct dns *d;
	struct dns_query *q;   /* the lookup in flight, if any */
	struct event *timeout; /* the overall limit */
	struct event *deliver; /* the outcome, when the check ended at start */
	spf_async_fn fn;
	void *arg;
	bool in_drive;  /* drive() is on the stack */
	bool answered;  /* the lookup drive() started has been answered */
};

static void async_free(struct spf_async *a)
{
	if (a->q)
		dns_cancel(a->q);
	if (a->timeout)
		event_free(a->timeout);
	if (a->deliver)
		event_free(a->deliver);
	spf_free(a->c);
	free(a);
}

static void done(struct spf_async *a)
{
	spf_async_fn fn = a->fn;
	void *arg = a->arg;
	struct spf *c = a->c;
	a->c = NULL;
	async_free(a);
	fn(arg, spf_result(c));
	spf_free(c);
}

static void answered(struct spf_async *a);

static void on_txt(void *arg, enum dns_status st, const struct dns_txt *txt, size_t n,
		   const char *why)
{
	struct spf_async *a = arg;
	struct spf_rr rr[DNS_TXT_MAX];
	memset(rr, 0, sizeof(rr));
	for (size_t i = 0; i < n && i < DNS_TXT_MAX; i++) {
		rr[i].text = txt[i].text;
		rr[i].len = txt[i].len;
	}
	spf_answer(a->c, st, rr, n < DNS_TXT_MAX ? n : DNS_TXT_MAX, why);
	answered(a);
}

static void on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n,
		  const char *why)
{
	struct spf_async *a = arg;
	struct spf_rr rr[DNS_MX_MAX];
	memset(rr, 0, sizeof(rr));
	for (size_t i = 0; i < n && i < DNS_MX_MAX; i++) {
		rr[i].text = mx[i].host;
		rr[i].len = strlen(mx[i].host);
	}
	spf_answer(a->c, st, rr, n < DNS_MX_MAX ? n : DNS_MX_MAX, why);
	answered(a);
}

static void on_addrs(void *arg, enum dns_status st, const struct sockaddr_storage *addrs,
		     size_t n, const char *why)
{
	struct spf_async *a = arg;
	struct spf_rr rr[DNS_ADDRS_MAX];
	size_t k = 0;
	memset(rr, 0, sizeof(rr));
	for (size_t i = 0; i < n && k < DNS_ADDRS_MAX; i++) {
		if (addrs[i].ss_family == AF_INET) {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)&addrs[i];
			memcpy(rr[k++].addr, &s4->sin_addr, 4);
		} else if (addrs[i].ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 =
				(const struct sockaddr_in6 *)(const void *)&addrs[i];
			memcpy(rr[k++].addr, &s6->sin6_addr, 16);
		}
	}
	spf_answer(a->c, st, rr, k, why);
	answered(a);
}

static void on_ptr(void *arg, enum dns_status st, const char *const *names, size_t n,
		   const char *why)
{
	struct spf_async *a = arg;
	struct spf_rr rr[DNS_PTR_MAX];
	memset(rr, 0, sizeof(rr));
	for (size_t i = 0; i < n && i < DNS_PTR_MAX; i++) {
		rr[i].text = names[i];
		rr[i].len = strlen(names[i]);
	}
	spf_answer(a->c, st, rr, n < DNS_PTR_MAX ? n : DNS_PTR_MAX, why);
	answered(a);
}

/* Starts lookups until one is in flight or the check is over. false:
 * over (the caller delivers). */
static bool drive(struct spf_async *a)
{
	struct spf_query q;
	a->in_drive = true;
	while (spf_step(a->c, &q)) {
		a->answered = false;
		struct dns_query *h = NULL;
		switch (q.type) {
		case SPF_Q_TXT:
			h = dns_lookup_txt(a->d, q.name, on_txt, a);
			break;
		case SPF_Q_MX:
			h = dns_lookup_mx(a->d, q.name, on_mx, a);
			break;
		case SPF_Q_A:
			h = dns_lookup_family(a->d, q.name, AF_INET, on_addrs, a);
			break;
		case SPF_Q_AAAA:
			h = dns_lookup_family(a->d, q.name, AF_INET6, on_addrs, a);
			break;
		case SPF_Q_PTR:
			h = dns_lookup_ptr(a->d, q.name, on_ptr, a);
			break;
		}
		if (h == NULL && a->answered)
			continue; /* answered at once */
		if (h == NULL) {
			spf_abort(a->c, "DNS query could not be started");
			continue;
		}
		a->q = h;
		a->in_drive = false;
		return true;
	}
	a->in_drive = false;
	return false;
}

static void answered(struct spf_async *a)
{
	a->q = NULL;
	a->answered = true;
	if (a->in_drive)
		return; /* drive() goes on by itself */
	if (!drive(a))
		done(a);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct spf_async *a = arg;
	if (a->q) {
		dns_cancel(a->q);
		a->q = NULL;
	}
	spf_abort(a->c, "SPF check timed out");
	done(a);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	done(arg);
}

struct spf_async *spf_async_start(struct event_base *base, struct dns *d, struct spf *c,
				  double timeout, spf_async_fn fn, void *arg)
{
	struct spf_async *a = mem_calloc(1, sizeof(*a));
	if (a == NULL) {
		spf_free(c);
		errno = ENOMEM;
		return NULL;
	}
	a->c = c;
	a->d = d;
	a->fn = fn;
	a->arg = arg;
	a->timeout = evtimer_new(base, on_timeout, a);
	a->deliver = evtimer_new(base, on_deliver, a);
	if (a->timeout == NULL || a->deliver == NULL) {
		async_free(a); /* c with it */
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

void spf_async_cancel(struct spf_async *a)
{
	if (a)
		async_free(a);
}
