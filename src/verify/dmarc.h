/*
 * dmarc: RFC 7489 as pure functions: the policy record's parser, policy
 * discovery (_dmarc.<From domain>, then _dmarc.<Organizational Domain>)
 * as a resumable state machine that never does I/O (like spf.h:
 * dmarc_step says which TXT name to look up, dmarc_answer takes the
 * answer), identifier alignment of the SPF and DKIM results, and the
 * policy to apply. Also the From domain of a message's header (6.6.1).
 *
 * Ownership: dmarc_new allocates, dmarc_free frees; the psl given to it
 * must outlive it. Anyone may call this module; no global state.
 *
 * Memory: struct dmarc is the session's (lib/mem.h): dmarc_new returns
 * NULL when it cannot be had. Discovery itself allocates nothing (the PSL
 * is read-only); a lookup answered DNS_NOMEM ends it in temperror, and
 * dmarc_out_of_memory says so.
 */
#ifndef FULMAR_DMARC_H
#define FULMAR_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/dns.h" /* enum dns_status only */
#include "verify/psl.h"
#include "verify/spf.h"

#define DMARC_NAME_MAX 253
#define DMARC_RECORD_MAX 4096 /* a longer TXT record is not looked at */

enum dmarc_policy {
	DMARC_POLICY_NONE = 0,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};

enum dmarc_result {
	DMARC_NONE = 0,    /* no usable policy record */
	DMARC_PASS,        /* an aligned SPF or DKIM pass */
	DMARC_FAIL,
	DMARC_TEMPERROR,   /* a DNS error finding the record */
	DMARC_PERMERROR,   /* no single From domain (see dmarc_from_domain) */
};

const char *dmarc_policy_name(enum dmarc_policy p); /* "none", "quarantine", "reject" */
const char *dmarc_result_name(enum dmarc_result r); /* "none", "pass", ... */

/* A parsed record (RFC 7489 6.3). Tags absent or invalid have their
 * defaults: sp = p, np = sp, adkim = aspf = relaxed, pct = 100. */
struct dmarc_record {
	enum dmarc_policy p, sp, np;
	bool sp_set, np_set;
	bool adkim_strict, aspf_strict;
	unsigned pct;
	unsigned rua, ruf;  /* syntactically valid reporting URIs (unused) */
	bool p_invalid;     /* no valid p= or a bad sp=: taken as p=none since
			     * rua= is valid (6.6.3 step 6) */
};

enum dmarc_parse {
	DMARC_PARSE_OK = 0,
	DMARC_PARSE_NOT_DMARC, /* does not start with v=DMARC1: not a DMARC record */
	DMARC_PARSE_UNUSABLE,  /* no valid p= (or a bad sp=) and no valid rua= */
};

/* Parses text[0..len); on DMARC_PARSE_OK *r is filled. */
enum dmarc_parse dmarc_record_parse(const char *text, size_t len, struct dmarc_record *r);

/* One TXT record of an answer (its strings joined). */
struct dmarc_txt {
	const char *text;
	size_t len;
};

/* One DKIM signature's verification: pass or not, and its d=. */
struct dmarc_dkim {
	bool pass;
	const char *domain;
};

/* What DMARC evaluates: the SPF result of the MAIL FROM identity and its
 * domain (with a null MAIL FROM, the HELO identity's), every DKIM
 * signature, and a number 0..99 for pct= sampling (random per message;
 * the policy applies when roll < pct). */
struct dmarc_auth {
	enum spf_result spf;
	const char *spf_domain;
	const struct dmarc_dkim *dkim;
	size_t ndkim;
	unsigned roll;
};

struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy; /* published for this From domain: p=, or sp=
				   * for a subdomain under its organization's
				   * record; none without a record */
	enum dmarc_policy apply;  /* to do now: policy on fail (one step lower
				   * when sampled out by pct=), else none */
	bool sampled_out;
	bool subdomain_policy;    /* sp= was the policy */
	bool spf_aligned, dkim_aligned;
	bool has_record;
	struct dmarc_record record;
	char from_domain[DMARC_NAME_MAX + 1];
	char org_domain[DMARC_NAME_MAX + 1];
	char record_domain[DMARC_NAME_MAX + 1]; /* where the record was found */
	char dkim_domain[DMARC_NAME_MAX + 1];   /* the first aligned DKIM d= */
	char reason[200];
};

struct dmarc;

/* The check of one message's From domain (NULL or "" or invalid: the
 * outcome is permerror without a lookup). NULL (errno ENOMEM) when out
 * of memory. */
struct dmarc *dmarc_new(const struct psl *psl, const char *from_domain);
void dmarc_free(struct dmarc *m);

/* true: look up TXT records at name (filled, no final dot) and call
 * dmarc_answer. false: discovery is over, call dmarc_evaluate. */
bool dmarc_step(struct dmarc *m, char *name, size_t namelen);
void dmarc_answer(struct dmarc *m, enum dns_status st, const struct dmarc_txt *txt,
		  size_t n, const char *why);
/* Ends discovery with temperror (the caller's timeout). */
void dmarc_abort(struct dmarc *m, const char *why);
/* Did discovery end in temperror because memory ran out (not because of
 * the sender's DNS)? */
bool dmarc_out_of_memory(const struct dmarc *m);

/* The result for these authentication results. Pure; may be called
 * several times. */
void dmarc_evaluate(const struct dmarc *m, const struct dmarc_auth *a,
		    struct dmarc_outcome *out);

/* Are the two domains aligned (strict: equal; relaxed: same
 * Organizational Domain), any case? */
bool dmarc_aligned(const struct psl *psl, const char *a, const char *b, bool strict);

enum dmarc_from {
	DMARC_FROM_OK = 0,
	DMARC_FROM_MISSING,        /* no From field */
	DMARC_FROM_MULTIPLE_FIELDS,
	DMARC_FROM_NO_ADDRESS,     /* an empty list or a group without members */
	DMARC_FROM_MULTIPLE_ADDRESSES,
	DMARC_FROM_BAD,            /* not an address list, or no usable domain */
};

const char *dmarc_from_text(enum dmarc_from st);

/*
 * The domain of the From field in the header section hdr[0..len) (the
 * fields at the start of a message, see addr_list_header_len), in lower
 * case, into out. Anything but exactly one From with exactly one address
 * is an error (RFC 7489 6.6.1): the message gets dmarc=permerror.
 */
enum dmarc_from dmarc_from_domain(const char *hdr, size_t len, char *out, size_t outlen);

#endif
