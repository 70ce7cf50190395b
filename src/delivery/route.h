/*
 * route: where mail for a domain goes. A static route (routes in the
 * configuration) names the host; otherwise the domain's MX records, in
 * preference order with equal preferences shuffled, or the domain itself
 * when it has no MX (RFC 5321 §5.1). A Null MX (RFC 7505) and a missing
 * domain fail at once; DNS trouble is temporary. Addresses that are
 * Fulmar itself (one of its listeners), or loopback when MX routing found
 * them and outbound.allow_loopback is off, are a mail loop.
 *
 * Ownership: a struct route_lookup lives until its callback has run or
 * route_cancel; the result passed to the callback is valid during the call.
 */
#ifndef FULMAR_ROUTE_H
#define FULMAR_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

struct dns;
struct route_lookup;

#define ROUTE_HOPS_MAX 20 /* addresses tried per connection, at most */

struct route_hop {
	char host[256];               /* the name, for logs, SNI and Remote-MTA */
	struct sockaddr_storage addr; /* with the port set */
	socklen_t addrlen;
};

enum route_status { ROUTE_OK = 0, ROUTE_TEMPFAIL, ROUTE_PERMFAIL };

struct route_result {
	enum route_status status;
	char dsn[16];    /* "5.1.10" on failure */
	char why[300];   /* on failure */
	struct route_hop hops[ROUTE_HOPS_MAX];
	size_t n;
};

typedef void (*route_fn)(void *arg, const struct route_result *res);

/* Resolve the hops for domain (lower case) under cfg. fn runs once, from
 * the loop (never inside this call), unless route_cancel comes first. */
struct event_base;
struct route_lookup *route_resolve(struct event_base *base, struct dns *dns,
				   const struct config *cfg, const char *domain, route_fn fn,
				   void *arg);
void route_cancel(struct route_lookup *rl);

/* The destination key that limits apply to: "[host]:port" for a static
 * route, else the domain. Writes into buf. */
void route_destination(const struct config *cfg, const char *domain, char *buf,
		       size_t len);

#endif
