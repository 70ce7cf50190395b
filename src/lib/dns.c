/*
 * dns: c-ares driven by libevent (dns.h). c-ares tells which sockets it
 * wants watched (sock_state_cb); one libevent event per socket feeds
 * ares_process_fd, and one timer drives c-ares's own timeouts.
 */
#include "lib/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

#define DNS_MAX_SOCKETS 16

struct watch {
	ares_socket_t fd;
	struct event *ev;
};

struct dns {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;
	struct watch watches[DNS_MAX_SOCKETS];
	bool freeing;
};

struct dns_query {
	struct dns *d;
	dns_name_fn fn;
	void *arg;
	bool cancelled;
	bool done;      /* callback delivered (or cancelled): free when c-ares lets go */
	int pending;    /* c-ares callbacks still to come */
	int family;
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
	char *name;
};

static void arm_timer(struct dns *d)
{
	struct timeval tv, *t = ares_timeout(d->channel, NULL, &tv);
	if (t)
		evtimer_add(d->timer, t);
	else
		evtimer_del(d->timer);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	arm_timer(d);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dns *d = arg;
	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer(d);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct watch *w = NULL, *free_slot = NULL;
	for (int i = 0; i < DNS_MAX_SOCKETS; i++) {
		if (d->watches[i].ev && d->watches[i].fd == fd)
			w = &d->watches[i];
		else if (d->watches[i].ev == NULL && free_slot == NULL)
			free_slot = &d->watches[i];
	}
	if (w) {
		event_free(w->ev);
		w->ev = NULL;
	}
	if (!readable && !writable)
		return;
	if (w == NULL)
		w = free_slot;
	if (w == NULL)
		return; /* more sockets than servers we would ever use */
	w->fd = fd;
	w->ev = event_new(d->base, fd,
			  (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0)),
			  on_io, d);
	event_add(w->ev, NULL);
}

struct dns *dns_new(struct event_base *base, const char *servers, double timeout,
		    char *err, size_t errlen)
{
	static bool library_ready;
	if (!library_ready) {
		if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
			snprintf(err, errlen, "c-ares initialisation failed");
			return NULL;
		}
		library_ready = true;
	}
	struct dns *d = xcalloc(1, sizeof(*d));
	d->base = base;
	struct ares_options o = { 0 };
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	o.timeout = (int)(timeout * 1000);
	o.tries = 2;
	char lookups[] = "b";
	if (servers) {
		/* Exactly these servers: no hosts file, no resolv.conf search. */
		o.lookups = lookups;
		mask |= ARES_OPT_LOOKUPS;
	}
	int rc = ares_init_options(&d->channel, &o, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		free(d);
		return NULL;
	}
	if (servers && (rc = ares_set_servers_ports_csv(d->channel, servers)) != ARES_SUCCESS) {
		snprintf(err, errlen, "DNS resolvers \"%s\": %s", servers, ares_strerror(rc));
		ares_destroy(d->channel);
		free(d);
		return NULL;
	}
	d->timer = evtimer_new(base, on_timer, d);
	return d;
}

void dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	d->freeing = true;
	ares_destroy(d->channel); /* runs every pending callback (ARES_EDESTRUCTION) */
	for (int i = 0; i < DNS_MAX_SOCKETS; i++)
		if (d->watches[i].ev)
			event_free(d->watches[i].ev);
	event_free(d->timer);
	free(d);
}

static void query_release(struct dns_query *q)
{
	if (q->pending > 0 || !q->done)
		return;
	free(q->name);
	free(q);
}

static void deliver(struct dns_query *q, const char *name)
{
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn(q->arg, name);
	q->done = true;
}

static void on_forward(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	bool match = false;
	if (status == ARES_SUCCESS && h && h->h_addrtype == q->family) {
		size_t len = q->family == AF_INET ? sizeof(q->addr.v4) : sizeof(q->addr.v6);
		for (char **a = h->h_addr_list; a && *a && !match; a++)
			match = memcmp(*a, &q->addr, len) == 0;
	}
	deliver(q, match ? q->name : NULL);
	query_release(q);
}

static bool plausible_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 253)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
			return false;
	return true;
}

static void on_reverse(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	if (status != ARES_SUCCESS || h == NULL || h->h_name == NULL ||
	    !plausible_name(h->h_name) || q->cancelled || q->d->freeing) {
		deliver(q, NULL);
		query_release(q);
		return;
	}
	q->name = xstrdup(h->h_name);
	q->pending++;
	ares_gethostbyname(q->d->channel, q->name, q->family, on_forward, q);
	if (!q->d->freeing)
		arm_timer(q->d);
}

struct dns_query *dns_reverse_verified(struct dns *d, const struct sockaddr *sa,
				       dns_name_fn fn, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	q->d = d;
	q->fn = fn;
	q->arg = arg;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			q->family = AF_INET;
			memcpy(&q->addr.v4, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			q->family = AF_INET6;
			q->addr.v6 = s6->sin6_addr;
		}
	} else {
		q->family = AF_INET;
		q->addr.v4 = ((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	}
	/* One extra hold while we are inside c-ares: it may answer from the
	 * hosts file before ares_gethostbyaddr returns. */
	q->pending = 2;
	ares_gethostbyaddr(d->channel, &q->addr,
			   q->family == AF_INET ? sizeof(q->addr.v4) : sizeof(q->addr.v6),
			   q->family, on_reverse, q);
	arm_timer(d);
	q->pending--;
	if (q->done) {
		query_release(q);
		return NULL; /* answered already */
	}
	return q;
}

void dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	q->cancelled = true;
	q->done = true;
	query_release(q);
}
