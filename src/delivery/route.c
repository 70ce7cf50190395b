/*
 * route: static routes, MX and address lookups, loop checks (route.h).
 */
#include "delivery/route.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns.h"
#include "lib/xalloc.h"

#define MX_HOSTS_MAX 10 /* MX hosts whose addresses are looked up */
#define SELF_MAX 32     /* listeners compared against */

struct host_lookup {
	struct route_lookup *rl;
	struct dns_query *q;
	char name[256];
	bool done;
	enum dns_status st;
	struct sockaddr_storage addrs[2 * DNS_ADDRS_MAX];
	size_t n;
};

struct route_lookup {
	struct dns *dns;
	struct event *later;          /* delivers an answer known at once */
	struct route_result *result;  /* that answer */
	route_fn fn;
	void *arg;
	char domain[256];
	int port;
	bool explicit_route; /* a static route: loopback is no loop */
	bool allow_loopback;
	bool via_mx;
	struct sockaddr_storage self[SELF_MAX]; /* our listeners */
	size_t nself;
	struct dns_query *mxq;
	struct host_lookup hosts[MX_HOSTS_MAX];
	size_t nhosts, pending;
	bool in_start; /* still inside route_resolve */
	bool finished;
};

void route_destination(const struct config *cfg, const char *domain, char *buf,
		       size_t len)
{
	const struct cfg_route *r = config_find_route(cfg, domain);
	if (r && r->host)
		snprintf(buf, len, "[%s]:%d", r->host,
			 r->port ? r->port : (int)cfg->outbound.port);
	else
		snprintf(buf, len, "%s", domain);
}

static void deliver_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct route_lookup *rl = arg;
	rl->fn(rl->arg, rl->result);
	route_cancel(rl);
}

/* The callback never runs inside route_resolve: an answer known at once
 * (an address literal, a cached failure) goes out from the loop. */
static void finish(struct route_lookup *rl, struct route_result *res)
{
	rl->finished = true;
	if (rl->in_start) {
		rl->result = xmalloc(sizeof(*res));
		*rl->result = *res;
		event_active(rl->later, EV_TIMEOUT, 0);
		return;
	}
	rl->fn(rl->arg, res);
	route_cancel(rl);
}

static void fail(struct route_lookup *rl, enum route_status st, const char *dsn,
		 const char *why)
{
	struct route_result *res = xcalloc(1, sizeof(*res));
	res->status = st;
	snprintf(res->dsn, sizeof(res->dsn), "%s", dsn);
	snprintf(res->why, sizeof(res->why), "%s", why);
	finish(rl, res);
	free(res);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)ss;
		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)ss;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		return s6->sin6_addr.s6_addr[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
}

static bool is_unspecified(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr == 0;
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr);
}

static int port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr, 16) == 0;
}

/* Is this address and port one of our own listeners? */
static bool is_self(const struct route_lookup *rl, const struct sockaddr_storage *ss)
{
	for (size_t i = 0; i < rl->nself; i++) {
		const struct sockaddr_storage *l = &rl->self[i];
		if (port_of(l) != port_of(ss))
			continue;
		if (same_ip(l, ss) || (is_unspecified(l) && is_loopback(ss)))
			return true;
	}
	return false;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)(void *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons((uint16_t)port);
}

static bool parse_ip(const char *text, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
	} else {
		return false;
	}
	set_port(ss, port);
	return true;
}

/* Every host lookup is done: build the hop list in order. */
static void hosts_done(struct route_lookup *rl)
{
	struct route_result *res = xcalloc(1, sizeof(*res));
	bool tempfail = false, looped = false;
	for (size_t h = 0; h < rl->nhosts; h++) {
		struct host_lookup *hl = &rl->hosts[h];
		if (hl->st == DNS_TEMPFAIL || hl->st == DNS_NOMEM)
			tempfail = true;
		for (size_t i = 0; i < hl->n && res->n < ROUTE_HOPS_MAX; i++) {
			struct sockaddr_storage ss = hl->addrs[i];
			set_port(&ss, rl->port);
			if (is_self(rl, &ss) ||
			    (!rl->explicit_route && !rl->allow_loopback && is_loopback(&ss))) {
				looped = true;
				continue;
			}
			struct route_hop *hop = &res->hops[res->n++];
			snprintf(hop->host, sizeof(hop->host), "%s", hl->name);
			hop->addr = ss;
			hop->addrlen = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							       : sizeof(struct sockaddr_in6);
		}
	}
	if (res->n > 0) {
		res->status = ROUTE_OK;
	} else if (looped) {
		res->status = ROUTE_PERMFAIL;
		snprintf(res->dsn, sizeof(res->dsn), "5.4.6");
		snprintf(res->why, sizeof(res->why),
			 "mail for %s loops back to myself", rl->domain);
	} else if (tempfail) {
		res->status = ROUTE_TEMPFAIL;
		snprintf(res->dsn, sizeof(res->dsn), "4.4.3");
		snprintf(res->why, sizeof(res->why),
			 "dns: temporary failure looking up the address of %s",
			 rl->hosts[0].name);
	} else {
		res->status = ROUTE_PERMFAIL;
		snprintf(res->dsn, sizeof(res->dsn), rl->via_mx ? "5.4.4" : "5.1.2");
		snprintf(res->why, sizeof(res->why), "dns: no address for %s%s",
			 rl->via_mx ? "the MX hosts of " : "", rl->domain);
	}
	finish(rl, res);
	free(res);
}

static void on_host(void *arg, enum dns_status st, const struct sockaddr_storage *addrs,
		    size_t n, const char *why)
{
	(void)why;
	struct host_lookup *hl = arg;
	struct route_lookup *rl = hl->rl;
	hl->q = NULL;
	hl->done = true;
	hl->st = st;
	hl->n = n < 2 * DNS_ADDRS_MAX ? n : 2 * DNS_ADDRS_MAX;
	memcpy(hl->addrs, addrs, hl->n * sizeof(*addrs));
	if (--rl->pending == 0 && !rl->in_start)
		hosts_done(rl);
}

/* Look up every host of rl->hosts; literal addresses need no DNS. */
static void lookup_hosts(struct route_lookup *rl)
{
	rl->pending = rl->nhosts;
	bool was_start = rl->in_start;
	rl->in_start = true; /* hold hosts_done until every lookup is started */
	for (size_t h = 0; h < rl->nhosts; h++) {
		struct host_lookup *hl = &rl->hosts[h];
		hl->rl = rl;
		struct sockaddr_storage ss;
		if (parse_ip(hl->name, 0, &ss)) {
			hl->done = true;
			hl->st = DNS_OK;
			hl->addrs[0] = ss;
			hl->n = 1;
			rl->pending--;
			continue;
		}
		hl->q = dns_lookup_addrs(rl->dns, hl->name, on_host, hl);
	}
	rl->in_start = was_start;
	if (rl->pending == 0)
		hosts_done(rl);
}

static void add_host(struct route_lookup *rl, const char *name)
{
	if (rl->nhosts < MX_HOSTS_MAX)
		snprintf(rl->hosts[rl->nhosts++].name, sizeof(rl->hosts[0].name), "%s", name);
}

static void on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n,
		  const char *why)
{
	struct route_lookup *rl = arg;
	char text[300];
	rl->mxq = NULL;
	switch (st) {
	case DNS_TEMPFAIL:
	case DNS_NOMEM:
		snprintf(text, sizeof(text), "dns: MX lookup of %s failed: %s", rl->domain, why);
		fail(rl, ROUTE_TEMPFAIL, "4.4.3", text);
		return;
	case DNS_NXDOMAIN:
		snprintf(text, sizeof(text), "dns: domain %s does not exist", rl->domain);
		fail(rl, ROUTE_PERMFAIL, "5.1.2", text);
		return;
	case DNS_NODATA:
		rl->via_mx = false;
		add_host(rl, rl->domain); /* RFC 5321 §5.1: the implicit MX */
		lookup_hosts(rl);
		return;
	case DNS_OK:
		break;
	}
	for (size_t i = 0; i < n; i++) {
		if (mx[i].host[0] == '\0') {
			snprintf(text, sizeof(text), "domain %s does not accept mail (null MX)",
				 rl->domain);
			fail(rl, ROUTE_PERMFAIL, "5.1.10", text);
			return;
		}
	}
	/* Preference order; equal preferences in random order. */
	size_t order[DNS_MX_MAX];
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)random() % i;
		size_t t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && mx[order[k]].pref < mx[order[k - 1]].pref; k--) {
			size_t t = order[k];
			order[k] = order[k - 1];
			order[k - 1] = t;
		}
	rl->via_mx = true;
	for (size_t i = 0; i < n; i++)
		add_host(rl, mx[order[i]].host);
	lookup_hosts(rl);
}

static void collect_self(struct route_lookup *rl, const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisteners && rl->nself < SELF_MAX; i++)
		if (parse_ip(cfg->listeners[i].address, cfg->listeners[i].port,
			     &rl->self[rl->nself]))
			rl->nself++;
}

struct route_lookup *route_resolve(struct event_base *base, struct dns *dns,
				   const struct config *cfg, const char *domain, route_fn fn,
				   void *arg)
{
	struct route_lookup *rl = xcalloc(1, sizeof(*rl));
	rl->dns = dns;
	rl->later = evtimer_new(base, deliver_later, rl);
	rl->fn = fn;
	rl->arg = arg;
	rl->in_start = true;
	snprintf(rl->domain, sizeof(rl->domain), "%s", domain);
	rl->allow_loopback = cfg->outbound.allow_loopback;
	rl->port = (int)cfg->outbound.port;
	collect_self(rl, cfg);
	const struct cfg_route *r = config_find_route(cfg, domain);
	if (r && r->host) {
		rl->explicit_route = true;
		if (r->port)
			rl->port = r->port;
		add_host(rl, r->host);
		lookup_hosts(rl);
	} else if (dns == NULL) {
		fail(rl, ROUTE_TEMPFAIL, "4.4.3", "dns: no resolver");
	} else {
		rl->mxq = dns_lookup_mx(dns, domain, on_mx, rl);
	}
	rl->in_start = false;
	return rl;
}

void route_cancel(struct route_lookup *rl)
{
	if (rl == NULL)
		return;
	dns_cancel(rl->mxq);
	for (size_t h = 0; h < rl->nhosts; h++)
		dns_cancel(rl->hosts[h].q);
	event_free(rl->later);
	free(rl->result);
	free(rl);
}
