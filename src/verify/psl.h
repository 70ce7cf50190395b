/*
 * psl: the Public Suffix List (publicsuffix.org), to find a domain's
 * Organizational Domain for DMARC (RFC 7489 3.2). The list is read from
 * the file Debian's publicsuffix package ships, once, into a hash set of
 * rules (plain, wildcard "*.ck", exception "!www.ck"); the ICANN and the
 * private sections alike. A rule in Unicode is also stored in its A-label
 * form ("xn--..."), since domains arrive from the DNS and headers that way.
 *
 * Ownership: psl_load/psl_parse allocate, psl_free frees. psl_default
 * keeps one list for the process: call it first at start-up, before
 * threads, then from anywhere. Lookups are pure, allocate nothing and are
 * thread-safe.
 *
 * Memory: loading is start-up work and aborts on a failed allocation
 * (lib/xalloc.h); what runs per message (psl_default_loaded and the
 * lookups) allocates nothing.
 */
#ifndef FULMAR_PSL_H
#define FULMAR_PSL_H

#include <stdbool.h>
#include <stddef.h>

#define PSL_DEFAULT_PATH "/usr/share/publicsuffix/public_suffix_list.dat"
#define PSL_FILE_MAX (8u * 1024 * 1024) /* a larger file is refused */
#define PSL_NAME_MAX 253

struct psl;

/* NULL with err filled when the file cannot be read or holds no rule. */
struct psl *psl_load(const char *path, char *err, size_t errlen);
/* The rules in text[0..len) (the file's format); never NULL. */
struct psl *psl_parse(const char *text, size_t len);
void psl_free(struct psl *p);
/* How many rules were stored (A-label copies included). */
size_t psl_count(const struct psl *p);

/* The list of PSL_DEFAULT_PATH, loaded on the first call; NULL with err
 * filled when it cannot be loaded (the next call tries again). */
const struct psl *psl_default(char *err, size_t errlen);
/* The list psl_default has loaded, or NULL; never reads the file (for the
 * event loop: the server loads it at start-up and at a reload). */
const struct psl *psl_default_loaded(void);

/*
 * The public suffix of domain (any case, a final dot allowed), in lower
 * case, into out: the longest matching rule, an exception rule first, and
 * the implicit rule "*" (the last label) when none matches. false when
 * domain is not a name (empty label, too long) or out is too small.
 */
bool psl_public_suffix(const struct psl *p, const char *domain, char *out, size_t outlen);
/* The Organizational Domain: the public suffix and one label more; a
 * domain that is itself a public suffix is its own. Same failures. */
bool psl_org_domain(const struct psl *p, const char *domain, char *out, size_t outlen);

#endif
