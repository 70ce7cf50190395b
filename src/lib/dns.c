/*
 * dns: c-ares driven by libevent (dns.h). c-ares tells which sockets it
 * wants watched (sock_state_cb); one libevent event per socket feeds
 * ares_process_fd, and one timer drives c-ares's own timeouts.
 */
#include "lib/dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns_cache.h"
#include "lib/mem.h"
#include "lib/monotime.h"
#include "lib/xalloc.h"

#define DNS_MAX_SOCKETS 16

struct watch {
	ares_socket_t fd;
	struct event *ev;
};

#define DNS_CACHE_ENTRIES 10000

struct dns {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;
	struct watch watches[DNS_MAX_SOCKETS];
	bool freeing;
	struct dns_cache *cache;       /* MX and TXT answers */
	struct dns_query *from_cache;  /* queries answered from it, not yet delivered */
};

/* Whom a lookup answers: the one callback of its kind is set. */
struct answer_fn {
	dns_name_fn name;
	dns_mx_fn mx;
	dns_txt_fn txt;
	dns_addrs_fn addrs;
	dns_ptr_fn ptr;
};

struct dns_query {
	struct dns *d;
	struct answer_fn fn;
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
	/* dns_lookup_addrs: answers of both families, and their outcomes */
	struct sockaddr_storage v6[DNS_ADDRS_MAX], v4[DNS_ADDRS_MAX];
	size_t n6, n4;
	int status6, status4;
	/* cached queries (MX, TXT): what to keep, or the answer kept */
	ares_callback handler;
	int qtype;
	char *qname;
	struct event *cached_ev;
	int cached_status;
	unsigned char *cached_buf;
	int cached_len;
	struct dns_query *cache_next, *cache_prev;
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
	d->cache = dns_cache_new(DNS_CACHE_ENTRIES);
	return d;
}

void dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	d->freeing = true;
	ares_destroy(d->channel); /* runs every pending callback (ARES_EDESTRUCTION) */
	while (d->from_cache) {
		struct dns_query *q = d->from_cache;
		d->from_cache = q->cache_next;
		event_free(q->cached_ev);
		free(q->cached_buf);
		free(q->qname);
		free(q->name);
		free(q);
	}
	dns_cache_free(d->cache);
	for (int i = 0; i < DNS_MAX_SOCKETS; i++)
		if (d->watches[i].ev)
			event_free(d->watches[i].ev);
	event_free(d->timer);
	free(d);
}

const char *dns_nomem_text(void)
{
	return ares_strerror(ARES_ENOMEM);
}

/* A lookup without memory for its query fails at once (dns.h): fn runs
 * with DNS_NOMEM and no records (empty arrays, never NULL, as for any
 * failure); a reverse lookup finds no name. */
static void answer_nomem(const struct answer_fn *fn, void *arg)
{
	union {
		struct dns_mx mx[1];
		struct dns_txt txt[1];
		struct sockaddr_storage addrs[1];
		const char *names[1];
	} none;
	const char *why = dns_nomem_text();

	memset(&none, 0, sizeof(none));
	if (fn->name)
		fn->name(arg, NULL);
	else if (fn->mx)
		fn->mx(arg, DNS_NOMEM, none.mx, 0, why);
	else if (fn->txt)
		fn->txt(arg, DNS_NOMEM, none.txt, 0, why);
	else if (fn->addrs)
		fn->addrs(arg, DNS_NOMEM, none.addrs, 0, why);
	else
		fn->ptr(arg, DNS_NOMEM, none.names, 0, why);
}

/* Every lookup's query. NULL when out of memory: fn has run already
 * (answer_nomem), and the lookup function returns NULL at once. */
static struct dns_query *query_new(struct dns *d, struct answer_fn fn, void *arg)
{
	struct dns_query *q = mem_calloc(1, sizeof(*q));
	if (q == NULL) {
		answer_nomem(&fn, arg);
		return NULL;
	}
	q->d = d;
	q->fn = fn;
	q->arg = arg;
	return q;
}

static void query_release(struct dns_query *q)
{
	if (q->pending > 0 || !q->done)
		return;
	free(q->qname);
	free(q->name);
	free(q);
}

static void deliver(struct dns_query *q, const char *name)
{
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.name(q->arg, name);
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
	q->name = mem_strdup(h->h_name);
	if (q->name == NULL) {
		deliver(q, NULL); /* no name: as if there were none */
		query_release(q);
		return;
	}
	q->pending++;
	ares_gethostbyname(q->d->channel, q->name, q->family, on_forward, q);
	if (!q->d->freeing)
		arm_timer(q->d);
}

struct dns_query *dns_reverse_verified(struct dns *d, const struct sockaddr *sa,
				       dns_name_fn fn, void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .name = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: no name */
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

/* ---- forward lookups ---- */

static enum dns_status status_of(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return DNS_OK;
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ENOTFOUND:
		return DNS_NXDOMAIN;
	case ARES_ENOMEM:
		return DNS_NOMEM;
	default:
		return DNS_TEMPFAIL;
	}
}

/* After starting c-ares queries with one extra hold (pending + 1). */
static struct dns_query *query_started(struct dns_query *q)
{
	if (!q->d->freeing)
		arm_timer(q->d);
	q->pending--;
	if (q->done) {
		query_release(q);
		return NULL;
	}
	return q;
}

/* A c-ares answer for a cached query: keep it, then handle it. */
static void on_cacheable(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	if (!q->d->freeing && q->qname) /* no name copy: not kept */
		dns_cache_put(q->d->cache, q->qtype, q->qname, status, abuf, alen, monotime());
	q->handler(arg, status, timeouts, abuf, alen);
}

/* An answer from the cache, delivered from the loop like a real one. */
static void on_cached(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dns_query *q = arg;
	struct dns *d = q->d;
	if (q->cache_prev)
		q->cache_prev->cache_next = q->cache_next;
	else
		d->from_cache = q->cache_next;
	if (q->cache_next)
		q->cache_next->cache_prev = q->cache_prev;
	event_free(q->cached_ev);
	q->cached_ev = NULL;
	unsigned char *buf = q->cached_buf;
	q->cached_buf = NULL;
	q->handler(q, q->cached_status, 0, buf, q->cached_len);
	free(buf);
}

/* ares_query through the cache. q->pending counts this answer. Short of
 * memory, the cache is passed by: a copy it cannot make is a miss, a name
 * it cannot copy is not kept. */
static void cached_query(struct dns_query *q, const char *name, int type, ares_callback cb)
{
	struct dns *d = q->d;
	q->handler = cb;
	q->qtype = type;
	if (dns_cache_get(d->cache, type, name, monotime(), &q->cached_status, &q->cached_buf,
			  &q->cached_len) &&
	    (q->cached_ev = evtimer_new(d->base, on_cached, q)) == NULL) {
		free(q->cached_buf);
		q->cached_buf = NULL;
	}
	if (q->cached_ev) {
		q->cache_next = d->from_cache;
		if (d->from_cache)
			d->from_cache->cache_prev = q;
		d->from_cache = q;
		event_active(q->cached_ev, EV_TIMEOUT, 0);
		return;
	}
	q->qname = mem_strdup(name);
	ares_query(d->channel, name, ns_c_in, type, on_cacheable, q);
}

/* The outcome of an answer c-ares parsed with prc into n records;
 * *status becomes the c-ares code behind it. A parser out of memory
 * (c-ares's or ours, ARES_ENOMEM) is DNS_NOMEM, never a verdict. */
static enum dns_status parsed_status(int prc, size_t n, int *status)
{
	if (prc == ARES_ENODATA || (prc == ARES_SUCCESS && n == 0)) {
		*status = ARES_ENODATA;
		return DNS_NODATA;
	}
	if (prc != ARES_SUCCESS) {
		*status = prc;
		return prc == ARES_ENOMEM ? DNS_NOMEM : DNS_TEMPFAIL;
	}
	return DNS_OK;
}

enum dns_status dns_parse_mx_answer(const unsigned char *abuf, int alen,
				    struct dns_mx mx[DNS_MX_MAX], size_t *n, int *status)
{
	struct ares_mx_reply *head = NULL;
	int prc = ares_parse_mx_reply(abuf, alen, &head);
	*n = 0;
	for (struct ares_mx_reply *r = head; prc == ARES_SUCCESS && r && *n < DNS_MX_MAX;
	     r = r->next) {
		size_t len = strlen(r->host);
		if (len >= sizeof(mx[*n].host))
			continue;
		mx[*n].pref = r->priority;
		memcpy(mx[*n].host, r->host, len + 1);
		if (len > 0 && mx[*n].host[len - 1] == '.')
			mx[*n].host[len - 1] = '\0';
		(*n)++;
	}
	if (head)
		ares_free_data(head);
	return parsed_status(prc, *n, status);
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	struct dns_mx mx[DNS_MX_MAX];
	size_t n = 0;
	enum dns_status st = status_of(status);
	if (status == ARES_SUCCESS)
		st = dns_parse_mx_answer(abuf, alen, mx, &n, &status);
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.mx(q->arg, st, mx, n, st == DNS_OK ? "" : ares_strerror(status));
	q->done = true;
	query_release(q);
}

struct dns_query *dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn fn,
				void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .mx = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: DNS_NOMEM */
	q->pending = 2;
	cached_query(q, domain, ns_t_mx, on_mx);
	return query_started(q);
}

static void addrs_finish(struct dns_query *q)
{
	struct sockaddr_storage all[2 * DNS_ADDRS_MAX];
	size_t n = 0;
	for (size_t i = 0; i < q->n6; i++)
		all[n++] = q->v6[i];
	for (size_t i = 0; i < q->n4; i++)
		all[n++] = q->v4[i];
	enum dns_status s6 = status_of(q->status6), s4 = status_of(q->status4);
	enum dns_status st;
	int why = q->status4;
	if (n > 0)
		st = DNS_OK;
	else if (s6 == DNS_NOMEM || s4 == DNS_NOMEM)
		st = DNS_NOMEM, why = ARES_ENOMEM;
	else if (s6 == DNS_TEMPFAIL || s4 == DNS_TEMPFAIL)
		st = DNS_TEMPFAIL, why = s4 == DNS_TEMPFAIL ? q->status4 : q->status6;
	else if (s6 == DNS_NXDOMAIN && s4 == DNS_NXDOMAIN)
		st = DNS_NXDOMAIN;
	else
		st = DNS_NODATA, why = ARES_ENODATA;
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.addrs(q->arg, st, all, n, st == DNS_OK ? "" : ares_strerror(why));
	q->done = true;
}

static void on_addrs(struct dns_query *q, int status, const struct hostent *h,
		     int family)
{
	struct sockaddr_storage *out = family == AF_INET6 ? q->v6 : q->v4;
	size_t *n = family == AF_INET6 ? &q->n6 : &q->n4;
	if (family == AF_INET6)
		q->status6 = status;
	else
		q->status4 = status;
	if (status == ARES_SUCCESS && h && h->h_addrtype == family) {
		for (char **a = h->h_addr_list; a && *a && *n < DNS_ADDRS_MAX; a++) {
			struct sockaddr_storage ss;
			memset(&ss, 0, sizeof(ss));
			if (family == AF_INET6) {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss;
				s6->sin6_family = AF_INET6;
				memcpy(&s6->sin6_addr, *a, sizeof(s6->sin6_addr));
			} else {
				struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss;
				s4->sin_family = AF_INET;
				memcpy(&s4->sin_addr, *a, sizeof(s4->sin_addr));
			}
			out[(*n)++] = ss;
		}
	}
	/* Whoever drops the last hold (an answer, or dns_lookup_addrs's
	 * own) reports both answers. */
	if (--q->pending == 0)
		addrs_finish(q);
	query_release(q);
}

static void on_addrs6(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	on_addrs(arg, status, h, AF_INET6);
}

static void on_addrs4(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	on_addrs(arg, status, h, AF_INET);
}

struct dns_query *dns_lookup_addrs(struct dns *d, const char *host, dns_addrs_fn fn,
				   void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .addrs = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: DNS_NOMEM */
	q->pending = 3;
	ares_gethostbyname(d->channel, host, AF_INET6, on_addrs6, q);
	ares_gethostbyname(d->channel, host, AF_INET, on_addrs4, q);
	if (!d->freeing)
		arm_timer(d);
	if (--q->pending == 0)
		addrs_finish(q);
	if (q->done) {
		query_release(q);
		return NULL;
	}
	return q;
}

enum dns_status dns_parse_txt_answer(const unsigned char *abuf, int alen,
				     struct dns_txt txt[DNS_TXT_MAX], size_t *n, int *status)
{
	struct ares_txt_ext *head = NULL;
	int prc = ares_parse_txt_reply_ext(abuf, alen, &head);
	*n = 0;
	/* Join the character-strings of each record (record_start marks
	 * where a new record begins). */
	for (struct ares_txt_ext *r = head; prc == ARES_SUCCESS && r; r = r->next) {
		if (r->record_start || *n == 0) {
			if (*n == DNS_TXT_MAX)
				break;
			txt[*n].text = mem_alloc(DNS_TXT_LEN_MAX + 1);
			if (txt[*n].text == NULL) {
				while (*n > 0)
					free(txt[--*n].text);
				prc = ARES_ENOMEM;
				break;
			}
			txt[*n].len = 0;
			txt[*n].text[0] = '\0';
			(*n)++;
		}
		struct dns_txt *t = &txt[*n - 1];
		size_t take = r->length;
		if (t->len + take > DNS_TXT_LEN_MAX)
			take = DNS_TXT_LEN_MAX - t->len;
		memcpy(t->text + t->len, r->txt, take);
		t->len += take;
		t->text[t->len] = '\0';
	}
	if (head)
		ares_free_data(head);
	return parsed_status(prc, *n, status);
}

static void on_txt(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	struct dns_txt txt[DNS_TXT_MAX];
	size_t n = 0;
	enum dns_status st = status_of(status);
	if (status == ARES_SUCCESS)
		st = dns_parse_txt_answer(abuf, alen, txt, &n, &status);
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.txt(q->arg, st, txt, n, st == DNS_OK ? "" : ares_strerror(status));
	for (size_t i = 0; i < n; i++)
		free(txt[i].text);
	q->done = true;
	query_release(q);
}

struct dns_query *dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn fn,
				 void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .txt = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: DNS_NOMEM */
	q->pending = 2;
	cached_query(q, name, ns_t_txt, on_txt);
	return query_started(q);
}

/* ---- one address family; PTR names (SPF) ---- */

static void on_family(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	struct sockaddr_storage out[DNS_ADDRS_MAX];
	size_t n = 0;
	enum dns_status st = status_of(status);
	if (status == ARES_SUCCESS) {
		struct hostent *h = NULL;
		int prc = q->family == AF_INET6 ? ares_parse_aaaa_reply(abuf, alen, &h, NULL, NULL)
						: ares_parse_a_reply(abuf, alen, &h, NULL, NULL);
		if (prc == ARES_SUCCESS && h && h->h_addrtype == q->family) {
			for (char **a = h->h_addr_list; a && *a && n < DNS_ADDRS_MAX; a++, n++) {
				memset(&out[n], 0, sizeof(out[n]));
				out[n].ss_family = (sa_family_t)q->family;
				if (q->family == AF_INET6)
					memcpy(&((struct sockaddr_in6 *)(void *)&out[n])->sin6_addr, *a, 16);
				else
					memcpy(&((struct sockaddr_in *)(void *)&out[n])->sin_addr, *a, 4);
			}
		}
		if (h)
			ares_free_hostent(h);
		st = parsed_status(prc, n, &status);
	}
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.addrs(q->arg, st, out, n, st == DNS_OK ? "" : ares_strerror(status));
	q->done = true;
	query_release(q);
}

struct dns_query *dns_lookup_family(struct dns *d, const char *name, int family,
				    dns_addrs_fn fn, void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .addrs = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: DNS_NOMEM */
	q->family = family == AF_INET6 ? AF_INET6 : AF_INET;
	q->pending = 2;
	ares_query(d->channel, name, ns_c_in, q->family == AF_INET6 ? ns_t_aaaa : ns_t_a,
		   on_family, q);
	return query_started(q);
}

static void on_ptr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns_query *q = arg;
	q->pending--;
	const char *names[DNS_PTR_MAX];
	char *copies[DNS_PTR_MAX];
	size_t n = 0;
	enum dns_status st = status_of(status);
	if (status == ARES_SUCCESS) {
		struct hostent *h = NULL;
		unsigned char dummy[4] = { 0 };
		int prc = ares_parse_ptr_reply(abuf, alen, dummy, sizeof(dummy), AF_INET, &h);
		if (prc == ARES_SUCCESS && h && h->h_name) {
			const char *first = h->h_name;
			for (size_t i = 0; n < DNS_PTR_MAX; i++) {
				const char *nm = i == 0 ? first : h->h_aliases ? h->h_aliases[i - 1] : NULL;
				if (nm == NULL)
					break;
				size_t len = strlen(nm);
				if (len > 0 && nm[len - 1] == '.')
					len--;
				if (len == 0 || len > 253)
					continue;
				copies[n] = mem_strndup(nm, len);
				if (copies[n] == NULL) {
					prc = ARES_ENOMEM;
					break;
				}
				names[n] = copies[n];
				n++;
			}
		}
		if (h)
			ares_free_hostent(h);
		if (prc == ARES_ENOMEM)
			while (n > 0)
				free(copies[--n]);
		st = parsed_status(prc, n, &status);
	}
	if (!q->done && !q->cancelled && !q->d->freeing)
		q->fn.ptr(q->arg, st, names, n, st == DNS_OK ? "" : ares_strerror(status));
	for (size_t i = 0; i < n; i++)
		free(copies[i]);
	q->done = true;
	query_release(q);
}

struct dns_query *dns_lookup_ptr(struct dns *d, const char *name, dns_ptr_fn fn,
				 void *arg)
{
	struct dns_query *q = query_new(d, (struct answer_fn){ .ptr = fn }, arg);
	if (q == NULL)
		return NULL; /* fn has run: DNS_NOMEM */
	q->pending = 2;
	ares_query(d->channel, name, ns_c_in, ns_t_ptr, on_ptr, q);
	return query_started(q);
}
