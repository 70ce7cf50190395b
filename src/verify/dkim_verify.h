/*
 * dkim_verify: checks the DKIM signatures of one message (RFC 6376 §6,
 * Ed25519-SHA256 of RFC 8463, the algorithms and key sizes of RFC 8301).
 * Pure: message octets and DNS answers in, one result per signature out;
 * the key lookups are the caller's (dkim_verify_async drives them through
 * lib/dns). Canonicalization and the header section parser are
 * dkim_canon's.
 *
 * The stream: feed the message as received (header section, the empty
 * line, the body; CRLF line ends; chunks of any size). The header section
 * is kept while it streams (at most DKIM_HDRS_MAX_BYTES octets and
 * DKIM_HDRS_MAX_FIELDS fields, as the signer); when the empty line is
 * seen, every DKIM-Signature field is parsed (the first
 * DKIM_VERIFY_MAX_SIGS from the top; later ones are ignored), the header
 * hash of each is computed, and the section is freed. The body is then
 * canonicalized and hashed as it streams (one hash per distinct c= body
 * algorithm and l=), never kept.
 *
 *   v = dkim_verify_new(time(NULL));
 *   while (more) dkim_verify_feed(v, chunk, n);
 *   n = dkim_verify_end(v);                 // -1: not examined (caps)
 *   for (i = 0; i < dkim_verify_key_count(v); i++)
 *           look up dkim_verify_key_name(v, i) (TXT), then
 *           dkim_verify_key_answer(v, name, status, txt, ntxt, why);
 *   for (i = 0; i < n; i++) dkim_verify_result(v, i, &res);
 *
 * The key names are known as soon as the header section has ended
 * (dkim_verify_headers_done), so lookups may start while the body still
 * streams; answers may come before or after dkim_verify_end.
 *
 * Results (RFC 8601 §2.7.1 names):
 *   pass       the signature verified
 *   fail       "body hash did not verify", "signature did not verify",
 *              "l= is longer than the body"
 *   permerror  the signature field is unusable: tag syntax, v=, an
 *              unknown or insecure (rsa-sha1, RFC 8301) algorithm, h=
 *              without From, i= outside d=, x= not after t=, "signature
 *              expired" (x= in the past; RFC 6376 §6.1.1 lets a verifier
 *              treat it as PERMFAIL); or its key is: "no key" (NXDOMAIN,
 *              NODATA), "key revoked" (empty p=), key syntax, k= not the
 *              algorithm's, h= of the key without sha256, s= of the key
 *              without email, t=s with an i= domain other than d=, an RSA
 *              key under 1024 bits
 *   temperror  the key lookup failed for now (SERVFAIL, timeout), or no
 *              answer was given for the key before the result was asked
 *   neutral, policy: never given here; they are the caller's to give
 *              (e.g. policy for a signature with l= that leaves part of
 *              the body unsigned, see body_unsigned).
 *
 * Ownership: dkim_verify_new allocates, dkim_verify_free frees (at any
 * point of the stream). Strings returned (key names, the texts of a
 * result) belong to the verifier and live until dkim_verify_free. The
 * caller's buffers (chunks, TXT answers) are copied or consumed during
 * the call. Single-threaded; one verifier per message.
 *
 * Memory: the verifier's memory is the session's (lib/mem.h).
 * dkim_verify_new returns NULL when it cannot be had; later, no memory
 * for the header section makes the message one that could not be
 * examined (dkim_verify_end -1, "out of memory"), no memory for what a
 * signature needs settles it temperror "out of memory", and a key lookup
 * answered DNS_NOMEM gives its
 * signatures temperror: in every case dkim_verify_out_of_memory says so,
 * for callers that must not take it for the sender's doing.
 */
#ifndef FULMAR_DKIM_VERIFY_H
#define FULMAR_DKIM_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/dns.h"

#define DKIM_VERIFY_MAX_SIGS 8     /* signatures examined per message */
#define DKIM_VERIFY_MAX_HNAMES 128 /* names in one h= */
#define DKIM_VERIFY_RSA_MAX_BITS 8192

enum dkim_verify_status {
	DKIM_VERIFY_PASS = 0,
	DKIM_VERIFY_FAIL,
	DKIM_VERIFY_NEUTRAL,
	DKIM_VERIFY_POLICY,
	DKIM_VERIFY_TEMPERROR,
	DKIM_VERIFY_PERMERROR,
};

/* "pass", "fail", "neutral", "policy", "temperror", "permerror". */
const char *dkim_verify_status_name(enum dkim_verify_status s);

/* The result of one signature. Every string is NUL-terminated, "" when
 * the signature did not say (or said something unusable), and lives until
 * dkim_verify_free. */
struct dkim_verify_result {
	enum dkim_verify_status status;
	const char *reason;   /* "" on pass, else why (see above) */
	const char *domain;   /* d=, lower case: header.d */
	const char *selector; /* s= */
	const char *alg;      /* a= as written: header.a */
	const char *header_b; /* the first 8 characters of b=: header.b */
	const char *identity; /* i=, or "@" d= when absent: header.i */
	bool testing;         /* the key has t=y */
	bool has_l;           /* the signature has l= */
	uint64_t body_unsigned; /* with l=: canonical body octets after the
				 * l= count, which anyone may have added */
};

struct dkim_verify;

/* now: the time x= is compared with (seconds since the epoch). NULL
 * (errno ENOMEM) when out of memory. */
struct dkim_verify *dkim_verify_new(int64_t now);
void dkim_verify_free(struct dkim_verify *v);

/* The next octets of the message, any chunk size. 0, or -1 once the
 * message cannot be examined (the header section over its caps); the
 * reason is dkim_verify_error's. Feeding after dkim_verify_end is a bug
 * (abort). */
int dkim_verify_feed(struct dkim_verify *v, const void *data, size_t len);

/* Has the header section ended (the signatures are parsed, the key names
 * known)? */
bool dkim_verify_headers_done(const struct dkim_verify *v);

/* End of the message. The number of DKIM-Signature fields examined (0 to
 * DKIM_VERIFY_MAX_SIGS), or -1 when the message could not be examined
 * (header section over its caps: dkim_verify_error says so). Call once. */
int dkim_verify_end(struct dkim_verify *v);

/* Why the message could not be examined; "" when it could. */
const char *dkim_verify_error(const struct dkim_verify *v);

/* Has an allocation failed, ours or the resolver's for a key (see
 * Memory above)? The results are then not the message's own. */
bool dkim_verify_out_of_memory(const struct dkim_verify *v);

/* The distinct key names to look up ("selector._domainkey.domain", lower
 * case, no trailing dot), once the header section has ended (0 before).
 * A signature already refused (syntax, algorithm, expired) needs none. */
size_t dkim_verify_key_count(const struct dkim_verify *v);
const char *dkim_verify_key_name(const struct dkim_verify *v, size_t i);
bool dkim_verify_key_answered(const struct dkim_verify *v, size_t i);

/* The answer to the TXT lookup of name (ASCII case-insensitive; a
 * trailing dot is ignored): st and, on DNS_OK, the n records (each its
 * strings joined, as lib/dns gives them); why: the resolver's text for a
 * failure (may be NULL). The first record that parses as a DKIM key
 * record is used. 0, or -1 when name is not one of the key names (or was
 * answered already). */
int dkim_verify_key_answer(struct dkim_verify *v, const char *name, enum dns_status st,
			   const struct dns_txt *txt, size_t n, const char *why);

/* The result of signature i (0 .. dkim_verify_end()-1, in the order of
 * the fields from the top). 0, or -1 when i is out of range or the
 * message has not ended. */
int dkim_verify_result(struct dkim_verify *v, size_t i, struct dkim_verify_result *res);

/* ---- the tag=value list (RFC 6376 §3.2), for tests and the fuzzer --- */

/* One tag. name/value point into the parsed text; value is the value
 * without the whitespace around it (FWS inside stays); raw is everything
 * between the '=' and the ';' (or the end), whitespace included. */
struct dkim_verify_tag {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	const char *raw;
	size_t raw_len;
};

#define DKIM_VERIFY_MAX_TAGS 32

/* Parses s[0..len) strictly: tag names ALPHA *(ALPHA / DIGIT / "_"),
 * values of printable ASCII but ';', whitespace SP / HTAB / CRLF followed
 * by SP or HTAB, a ';' between tags and at most one at the end, no tag
 * twice. 0 with *n tags in tags[0..max), or -1 (syntax error, more than
 * max tags). */
int dkim_verify_tags_parse(const char *s, size_t len, struct dkim_verify_tag *tags,
			   size_t max, size_t *n);

#endif
