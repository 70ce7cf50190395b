/*
 * dns: asynchronous DNS on the event loop, through c-ares. No mail
 * knowledge. The resolver never blocks the loop; every query has a
 * timeout; a query can be cancelled (its callback is then never called).
 *
 * Ownership: struct dns owns the c-ares channel and its events. A struct
 * dns_query belongs to dns until its callback has run or it is cancelled.
 */
#ifndef FULMAR_DNS_H
#define FULMAR_DNS_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_query;

/*
 * servers: NULL for the system's resolver configuration (/etc/resolv.conf
 * and /etc/hosts), or "ip[:port],ip[:port]" ("[::1]:53" for IPv6) to ask
 * exactly those servers and nothing else (no hosts file). timeout in
 * seconds per try. NULL with err filled on failure.
 */
struct dns *dns_new(struct event_base *base, const char *servers, double timeout,
		    char *err, size_t errlen);
/* Cancels every query in flight (their callbacks are not called). */
void dns_free(struct dns *d);

/* name: the verified name, or NULL when there is none (no PTR, the PTR
 * name does not resolve back to the address, or an error/timeout). */
typedef void (*dns_name_fn)(void *arg, const char *name);

/* Forward-confirmed reverse DNS of an IPv4 or IPv6 address. Returns NULL
 * when the answer came at once (fn has already run), else a handle valid
 * until fn runs or dns_cancel. */
struct dns_query *dns_reverse_verified(struct dns *d, const struct sockaddr *sa,
				       dns_name_fn fn, void *arg);
void dns_cancel(struct dns_query *q);

#endif
