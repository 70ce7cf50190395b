/*
 * dns: asynchronous DNS on the event loop, through c-ares. No mail
 * knowledge. The resolver never blocks the loop; every query has a
 * timeout; a query can be cancelled (its callback is then never called).
 *
 * Ownership: struct dns owns the c-ares channel and its events. A struct
 * dns_query belongs to dns until its callback has run or it is cancelled.
 *
 * Memory: a query's own memory (the handle, the names and TXT texts of
 * its answer) is fallible (lib/mem.h): when it cannot be had, the lookup
 * fails with DNS_NOMEM, no records and why dns_nomem_text() (the reverse
 * lookup: with no name). Without memory for the handle, every lookup
 * function fails the same way: the callback runs before it returns, and
 * it returns NULL. Callers treat DNS_NOMEM as any SERVFAIL: a deferral, a
 * temperror. The answer cache keeps nothing it has no memory for. dns_new
 * and the cache itself (start-up) abort on failure.
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

/* Outcome of a forward lookup. */
enum dns_status {
	DNS_OK = 0,
	DNS_NODATA,   /* the name exists, without records of that type */
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_TEMPFAIL, /* SERVFAIL, timeout, refused, network error */
	DNS_NOMEM,    /* out of memory (ours or c-ares's): temporary too, but
		       * nothing to do with the name's DNS */
};

/* The why that goes with DNS_NOMEM ("Out of memory", as c-ares says). */
const char *dns_nomem_text(void);

#define DNS_MX_MAX 32    /* MX records kept per answer */
#define DNS_ADDRS_MAX 16 /* addresses kept per host */

struct dns_mx {
	unsigned pref;
	char host[256]; /* "" for the Null MX's "." (RFC 7505) */
};

/* why: c-ares's text for the failure, "" on DNS_OK. Arrays are valid
 * during the call only. */
typedef void (*dns_mx_fn)(void *arg, enum dns_status st, const struct dns_mx *mx,
			  size_t n, const char *why);
typedef void (*dns_addrs_fn)(void *arg, enum dns_status st,
			     const struct sockaddr_storage *addrs, size_t n,
			     const char *why);

#define DNS_TXT_MAX 16        /* TXT records kept per answer */
#define DNS_TXT_LEN_MAX 4096  /* octets of one record (its strings joined) */

/* TXT records: each record's character-strings joined, NUL-ended
 * (records over DNS_TXT_LEN_MAX are cut, marked by len). */
struct dns_txt {
	char *text;
	size_t len;
};
typedef void (*dns_txt_fn)(void *arg, enum dns_status st, const struct dns_txt *txt,
			   size_t n, const char *why);
struct dns_query *dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn fn,
				 void *arg);

/* MX records of domain, in the order of the answer. Same handle rules as
 * dns_reverse_verified: NULL when fn has already run. */
struct dns_query *dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn fn,
				void *arg);
/* IPv6 and IPv4 addresses of host (CNAMEs followed), IPv6 first; port 0.
 * DNS_OK when either family has addresses. */
struct dns_query *dns_lookup_addrs(struct dns *d, const char *host, dns_addrs_fn fn,
				   void *arg);

/* Addresses of one family of name: AF_INET asks for A records only,
 * AF_INET6 for AAAA only (CNAMEs in the answer followed); for SPF, which
 * needs the two apart. Same handle rules as dns_lookup_mx. */
struct dns_query *dns_lookup_family(struct dns *d, const char *name, int family,
				    dns_addrs_fn fn, void *arg);

/*
 * The parsing of raw answers behind dns_lookup_mx and dns_lookup_txt, pure
 * (no I/O), for those and for the fuzz target. abuf[0..alen) is an answer
 * c-ares returned with ARES_SUCCESS. MX: at most DNS_MX_MAX records, in
 * the order of the answer, names without their final dot, names too long
 * for struct dns_mx skipped. TXT: at most DNS_TXT_MAX records, each's
 * strings joined (cut at DNS_TXT_LEN_MAX), each text malloc'd: the caller
 * frees txt[0..*n).text. Returns DNS_OK (*n > 0, *status left alone),
 * DNS_NODATA (*status ARES_ENODATA), DNS_NOMEM when c-ares or we run out
 * of memory (a TXT text that cannot be allocated; *n 0, *status
 * ARES_ENOMEM), or DNS_TEMPFAIL when the answer does not parse (*status
 * the c-ares code).
 */
enum dns_status dns_parse_mx_answer(const unsigned char *abuf, int alen,
				    struct dns_mx mx[DNS_MX_MAX], size_t *n, int *status);
enum dns_status dns_parse_txt_answer(const unsigned char *abuf, int alen,
				     struct dns_txt txt[DNS_TXT_MAX], size_t *n, int *status);

#define DNS_PTR_MAX 16 /* PTR names kept per answer */

/* names: the PTR records' names, without the final dot. */
typedef void (*dns_ptr_fn)(void *arg, enum dns_status st, const char *const *names,
			   size_t n, const char *why);
/* PTR records of a reverse name ("4.3.2.1.in-addr.arpa"), unverified:
 * what SPF's ptr mechanism and %{p} macro start from. Same handle rules
 * as dns_lookup_mx. */
struct dns_query *dns_lookup_ptr(struct dns *d, const char *name, dns_ptr_fn fn,
				 void *arg);

#endif
