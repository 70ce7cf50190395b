/*
 * spf: the Sender Policy Framework check_host() of RFC 7208 as a
 * resumable state machine that never does I/O. The caller (spf_async on
 * the event loop, or a test with a table of answers) asks spf_step what to
 * look up, looks it up, and hands the answer to spf_answer, until
 * spf_step says done; spf_result then gives the result.
 *
 * Everything of RFC 7208 but the DNS: record selection, the mechanisms
 * all, include, a, mx, ptr, ip4, ip6, exists (with dual CIDR lengths),
 * redirect= and exp= (the explanation is fetched and expanded on fail),
 * macros (section 7), the limits of section 4.6.4 (10 terms that query
 * the DNS, 10 MX names per mx, 10 PTR names, 2 void lookups), HELO and
 * MAIL FROM identities. Every input is bounded: see the SPF_*_MAX below.
 *
 * Ownership: spf_new* allocate a struct spf, the caller frees it with
 * spf_free. Strings returned point into it and live as long as it does.
 * Anyone may call this module; it keeps no global state.
 *
 * Memory: the check's memory is the session's (lib/mem.h): spf_new*
 * return NULL when it cannot be had, and a failure later on (a record,
 * an include's frame, the explanation), or a lookup answered DNS_NOMEM,
 * ends the check with temperror
 * "out of memory" and out_of_memory set.
 */
#ifndef FULMAR_SPF_H
#define FULMAR_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/dns.h" /* enum dns_status only: this module does no I/O */

#define SPF_NAME_MAX 253        /* a domain name in a query */
#define SPF_RECORD_MAX 4096     /* octets of one SPF record (DNS_TXT_LEN_MAX) */
#define SPF_TERMS_MAX 128       /* terms in one record */
#define SPF_DEPTH_MAX 11        /* nested include levels (the 10-lookup limit bounds them) */
#define SPF_LOOKUPS_MAX 10      /* terms that cause DNS queries (RFC 7208 4.6.4) */
#define SPF_VOID_MAX 2          /* lookups with no answer; the third is a permerror */
#define SPF_MX_MAX 10           /* MX names per mx; more is a permerror */
#define SPF_PTR_MAX 10          /* PTR names looked at; the rest ignored */
#define SPF_QUERIES_MAX 200     /* DNS queries in all, a last safety net */
#define SPF_EXPLAIN_MAX 512     /* octets of an expanded explanation */
#define SPF_REASON_MAX 256

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

/* "none", "neutral", "pass", ... as in Received-SPF and RFC 8601. */
const char *spf_result_name(enum spf_result r);
/* The inverse (any case); false when the name is none of them. */
bool spf_result_parse(const char *name, enum spf_result *out);

enum spf_qtype {
	SPF_Q_TXT,
	SPF_Q_A,
	SPF_Q_AAAA,
	SPF_Q_MX,
	SPF_Q_PTR, /* name is the reverse name, "4.3.2.1.in-addr.arpa" */
};

/* "TXT", "A", ... */
const char *spf_qtype_name(enum spf_qtype t);

/* What spf_step asks for: records of type at name (no final dot). */
struct spf_query {
	enum spf_qtype type;
	char name[SPF_NAME_MAX + 1];
};

/* One record of an answer. TXT: the record's strings joined (text, len);
 * MX: the exchange's name in text ("" or "." for a Null MX, pref
 * unused); PTR: a name in text; A: addr[0..4); AAAA: addr[0..16). */
struct spf_rr {
	const char *text;
	size_t len;
	unsigned char addr[16];
};

/* What spf_result gives. Strings are never NULL ("" when empty). */
struct spf_outcome {
	enum spf_result result;
	const char *domain;      /* the <domain> checked (MAIL FROM's or HELO's) */
	const char *mechanism;   /* the top-level term that matched, as written
				  * ("-all", "include:_spf.example.com"); "" for
				  * the default neutral, none and errors */
	const char *reason;      /* one line for logs and Authentication-Results */
	const char *explanation; /* fail with exp=: the sender's explanation */
	unsigned lookups;        /* DNS-querying terms evaluated */
	unsigned void_lookups;
	bool out_of_memory;      /* temperror because memory ran out, not
				  * because of the sender's DNS */
};

struct spf;

/*
 * The check of one identity. client: the SMTP client's address (AF_INET,
 * AF_INET6; IPv4-mapped IPv6 is treated as IPv4). domain: <domain>.
 * sender: "local@domain" (<sender>; a missing local part becomes
 * "postmaster"). helo: the HELO/EHLO name, for %{h} ("" if none). A
 * malformed domain gives none without a query (RFC 7208 4.3). NULL
 * (errno ENOMEM) when out of memory, as the two below.
 */
struct spf *spf_new(const struct sockaddr *client, const char *domain, const char *sender,
		    const char *helo);
/* The MAIL FROM identity (RFC 7208 2.4): mailfrom is the reverse-path
 * without angle brackets; "" (the null path) checks postmaster@helo. */
struct spf *spf_new_mailfrom(const struct sockaddr *client, const char *mailfrom,
			     const char *helo);
/* The HELO identity (RFC 7208 2.3): <domain> = helo, sender postmaster@helo. */
struct spf *spf_new_helo(const struct sockaddr *client, const char *helo);
void spf_free(struct spf *c);

/* Optional, before the first spf_step: the receiving host's name for
 * %{r} (default "unknown") and the time for %{t} (default time(NULL)). */
void spf_set_receiver(struct spf *c, const char *name);
void spf_set_time(struct spf *c, time_t now);

/* Parses an IPv4 or IPv6 address in text into *out (port 0). */
bool spf_parse_ip(const char *text, struct sockaddr_storage *out);

/*
 * Advances the check. true: *q is filled, the caller looks it up and
 * calls spf_answer before the next spf_step. false: done, spf_result.
 */
bool spf_step(struct spf *c, struct spf_query *q);

/* The answer to the last query. st: DNS_OK with n records (n may be 0),
 * DNS_NODATA, DNS_NXDOMAIN, or DNS_TEMPFAIL (SERVFAIL, timeout); why: a
 * reason for logs on failure (may be NULL). rr is read during the call
 * only. */
void spf_answer(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n,
		const char *why);

/* Ends the check at once with temperror (the caller's overall timeout). */
void spf_abort(struct spf *c, const char *why);

/* The outcome; valid once spf_step returned false. */
const struct spf_outcome *spf_result(const struct spf *c);

/*
 * The record-level pieces, exposed for the fuzz target and the tests.
 * spf_record_check: is text an SPF record whose syntax is valid (0), not
 * an SPF record (1), or an SPF record with a syntax error (-1, err
 * filled)? spf_macro_expand: expands macro-string s (for a domain when
 * is_domain, else an explanation) against the check's values into out;
 * the length, or -1 on a syntax error. %{p} expands to "unknown" here.
 */
int spf_record_check(const char *text, size_t len, char *err, size_t errlen);
int spf_macro_expand(struct spf *c, const char *s, size_t len, bool is_domain, char *out,
		     size_t outlen);

#endif
