/*
 * dkim_sign: makes DKIM-Signature header fields (RFC 6376, RFC 8463) for
 * one message fed as a stream of octets: the header section first (CRLF
 * line ends), the empty line, then the body. The header section is kept
 * (at most DKIM_HDRS_MAX_BYTES octets, DKIM_HDRS_MAX_FIELDS fields); the
 * body is canonicalized and hashed as it streams and never kept. At the
 * end, dkim_sign_finish returns the complete header field text (folded,
 * CRLF-terminated) to put in front of the message, unchanged otherwise.
 *
 * One dkim_sign may carry several signatures (dual RSA + Ed25519, or two
 * selectors during a key rotation): they share the header parse, the
 * canonicalization and the body hash; each adds only its own signing.
 *
 * What is signed (docs/signer.md): the header fields named by the list
 * (dkim_sign_default_headers unless dkim_sign_set_headers replaced it),
 * each as many times as it occurs; From once more than it occurs and any
 * listed field absent from the message once (oversigning: a field added
 * later breaks the signature). c=relaxed/relaxed unless changed, t= the
 * time of signing, no l=, no x= unless set.
 *
 * Ownership: dkim_sign_new allocates; dkim_sign_free frees (any time, fed
 * or not). The signer takes its own reference on each EVP_PKEY
 * (EVP_PKEY_up_ref), so the caller may free its keys whenever it likes.
 * The header text of dkim_sign_finish is the caller's to free(). A signer
 * signs one message: make a new one for the next.
 *
 * Memory: everything a signer allocates (itself, the names, the header
 * section it keeps, the signature text) is fallible (lib/mem.h), since
 * it signs one client's message. A function that fails for want of
 * memory says so with errno ENOMEM (and err "out of memory"); its other
 * failures set errno EINVAL. The message could be signed with more
 * memory: a caller that must not let it go unsigned fails it instead.
 */
#ifndef FULMAR_DKIM_SIGN_H
#define FULMAR_DKIM_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "signer/dkim_canon.h"

typedef struct evp_pkey_st EVP_PKEY;

enum dkim_alg {
	DKIM_ALG_RSA_SHA256 = 0,  /* RSA PKCS#1 v1.5 over SHA-256 */
	DKIM_ALG_ED25519_SHA256,  /* Ed25519 over the SHA-256 hash (RFC 8463) */
};

#define DKIM_SIGN_MAX_SIGS 4      /* signatures in one dkim_sign */
#define DKIM_SIGN_MAX_NAMES 64    /* names in the list of fields to sign */
#define DKIM_RSA_MIN_BITS 1024    /* RFC 8301 §3.2 */

/* "rsa-sha256" / "ed25519-sha256". */
const char *dkim_alg_name(enum dkim_alg alg);

/* The default list of fields to sign, NULL-terminated. */
extern const char *const dkim_sign_default_headers[];

/* A domain for d= (LDH labels of 1..63 octets, 253 octets at most, no
 * trailing dot; IDNs as A-labels) and a selector for s= (the same, '_'
 * also allowed). Also what keeps them fit for a file name. */
bool dkim_domain_valid(const char *s);
bool dkim_selector_valid(const char *s);

struct dkim_sign;

/* A signer with one signature. The key must be of the algorithm's type
 * (RSA of DKIM_RSA_MIN_BITS or more, or Ed25519). NULL with err filled
 * when an argument is refused (errno EINVAL) or out of memory (ENOMEM). */
struct dkim_sign *dkim_sign_new(const char *domain, const char *selector, enum dkim_alg alg,
				EVP_PKEY *pkey, char *err, size_t errlen);
/* One more signature on the same message (before the first feed):
 * another algorithm, selector or domain. 0, or -1 with err filled (errno
 * EINVAL or ENOMEM). */
int dkim_sign_add(struct dkim_sign *s, const char *domain, const char *selector,
		  enum dkim_alg alg, EVP_PKEY *pkey, char *err, size_t errlen);

/* Settings, before the first feed. */
/* The fields to sign (names, case-insensitive; duplicates ignored); the
 * list must name From. 0, or -1 with err filled (errno EINVAL or ENOMEM). */
int dkim_sign_set_headers(struct dkim_sign *s, const char *const *names, size_t n,
			  char *err, size_t errlen);
/* Canonicalization (default relaxed/relaxed). */
void dkim_sign_set_canon(struct dkim_sign *s, enum dkim_canon_alg header,
			 enum dkim_canon_alg body);
/* t= (default: time(NULL) when the signer was made); for tests. */
void dkim_sign_set_time(struct dkim_sign *s, int64_t t);
/* x= t + seconds when seconds > 0 (default: no x=). */
void dkim_sign_set_expire(struct dkim_sign *s, int64_t seconds);

/* The next octets of the message, any chunk size. 0, or -1 once the
 * signing has failed (the header section is over its cap, or no memory
 * to keep it): the reason is given by dkim_sign_finish. */
int dkim_sign_feed(struct dkim_sign *s, const void *data, size_t len);

/*
 * End of the message: computes the signatures and returns, in
 * *header_out (NUL-terminated, *len octets without the NUL), one
 * "DKIM-Signature: ..." field per signature, in the order they were
 * added, each folded and ending in CRLF. 0, or -1 with err filled (the
 * header section over its caps, no From field, a signing error: errno
 * EINVAL; out of memory at any point since dkim_sign_new: ENOMEM);
 * nothing is allocated then. Call once.
 */
int dkim_sign_finish(struct dkim_sign *s, char **header_out, size_t *len, char *err,
		     size_t errlen);

void dkim_sign_free(struct dkim_sign *s);

#endif
