/*
 * dkim_verify: the DKIM verifier (see dkim_verify.h). It owns the
 * collection of the header section as the message streams in, the
 * tag=value parser, the checks of each DKIM-Signature field and of each
 * key record, the header and body hashes of every signature, and the
 * signature checks through OpenSSL 3 EVP. Canonicalization, the header
 * parser and the bottom-up selection of fields are dkim_canon's. Pure:
 * bytes in, results out; no I/O.
 */
#include "verify/dkim_verify.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"
#include "signer/dkim_canon.h"
#include "signer/dkim_sign.h"

/* The header section kept: the section and the CRLF of the empty line. */
#define HBUF_MAX (DKIM_HDRS_MAX_BYTES + 2)
#define SHA256_LEN 32
#define SIG_MAX_OCTETS (DKIM_VERIFY_RSA_MAX_BITS / 8)
#define KEY_MAX_OCTETS 4096
#define DOMAIN_MAX 253
#define IDENTITY_MAX 320
#define REASON_MAX 160

enum phase { PH_HEADERS, PH_BODY, PH_DONE };

/* One body hash: shared by the signatures of the same c= body algorithm
 * and l=. */
struct vbody {
	enum dkim_canon_alg alg;
	bool has_l;
	uint64_t l;
	uint64_t total; /* canonical octets seen */
	EVP_MD_CTX *md;
	bool md_failed;
	unsigned char digest[SHA256_LEN];
	struct dkim_body_canon canon;
};

/* One key name, shared by the signatures that name it. */
struct vkey {
	char name[DOMAIN_MAX + 1];
	bool answered;
	enum dkim_verify_status status; /* PASS: the key is usable */
	char reason[REASON_MAX];
	EVP_PKEY *pkey;
	bool ed25519;   /* k=ed25519 */
	bool sha256_ok; /* h= absent or naming sha256 */
	bool strict;    /* t=s */
	bool testing;   /* t=y */
};

struct vsig {
	bool settled;
	enum dkim_verify_status status;
	char reason[REASON_MAX];
	char domain[DOMAIN_MAX + 1];
	char selector[DOMAIN_MAX + 1];
	char alg_text[24];
	char header_b[9];
	char identity[IDENTITY_MAX + 1];
	size_t idomain; /* offset of the domain in identity */
	enum dkim_alg alg;
	enum dkim_canon_alg hcanon, bcanon;
	int key;  /* index in v->key, -1: none */
	int body; /* index in v->body, -1: none */
	bool has_l;
	uint64_t l;
	bool testing;
	uint64_t body_unsigned;
	unsigned char bh[SHA256_LEN];
	unsigned char hdigest[SHA256_LEN];
	unsigned char b[SIG_MAX_OCTETS];
	size_t blen;
};

struct dkim_verify {
	int64_t now;
	enum phase phase;
	bool failed;
	bool nomem;     /* an allocation failed (ours or the resolver's) */
	char error[128];
	/* the header section, with the empty line's CRLF once it is seen;
	 * freed when the section has ended */
	char *hbuf;
	size_t hlen, hcap;
	struct vsig sig[DKIM_VERIFY_MAX_SIGS];
	size_t nsig;
	struct vkey key[DKIM_VERIFY_MAX_SIGS];
	size_t nkey;
	struct vbody *body[DKIM_VERIFY_MAX_SIGS];
	size_t nbody;
};

const char *dkim_verify_status_name(enum dkim_verify_status s)
{
	switch (s) {
	case DKIM_VERIFY_PASS:
		return "pass";
	case DKIM_VERIFY_FAIL:
		return "fail";
	case DKIM_VERIFY_NEUTRAL:
		return "neutral";
	case DKIM_VERIFY_POLICY:
		return "policy";
	case DKIM_VERIFY_TEMPERROR:
		return "temperror";
	case DKIM_VERIFY_PERMERROR:
		break;
	}
	return "permerror";
}

/* ---- characters ---------------------------------------------------- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_fws_octet(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool same_ci(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

static bool is_str(const char *p, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(p, s, len) == 0;
}

/* ---- the tag=value list -------------------------------------------- */

/* Past the FWS at s[i]: SP, HTAB, and CRLF followed by SP or HTAB. */
static size_t skip_fws(const char *s, size_t len, size_t i)
{
	while (i < len) {
		if (is_wsp(s[i]))
			i++;
		else if (s[i] == '\r' && i + 2 < len && s[i + 1] == '\n' && is_wsp(s[i + 2]))
			i += 3;
		else
			break;
	}
	return i;
}

int dkim_verify_tags_parse(const char *s, size_t len, struct dkim_verify_tag *tags,
			   size_t max, size_t *n)
{
	size_t i = 0, count = 0;

	*n = 0;
	for (;;) {
		size_t start, j, vs, ve;

		i = skip_fws(s, len, i);
		if (i == len)
			break; /* the end, or a ';' ending the list */
		if (!is_alpha(s[i]))
			return -1;
		start = i;
		while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_'))
			i++;
		j = skip_fws(s, len, i);
		if (j == len || s[j] != '=')
			return -1;
		for (size_t k = 0; k < count; k++)
			if (tags[k].name_len == i - start &&
			    memcmp(tags[k].name, s + start, i - start) == 0)
				return -1; /* a tag twice */
		if (count == max)
			return -1;
		tags[count].name = s + start;
		tags[count].name_len = i - start;
		vs = ++j;
		while (j < len && s[j] != ';') {
			unsigned char c = (unsigned char)s[j];

			if (is_wsp(s[j]) || (c >= 0x21 && c <= 0x7e)) {
				j++;
				continue;
			}
			if (s[j] == '\r' && j + 2 < len && s[j + 1] == '\n' && is_wsp(s[j + 2])) {
				j += 3;
				continue;
			}
			return -1;
		}
		tags[count].raw = s + vs;
		tags[count].raw_len = j - vs;
		ve = j;
		while (vs < ve && is_fws_octet(s[vs]))
			vs++;
		while (ve > vs && is_fws_octet(s[ve - 1]))
			ve--;
		tags[count].value = s + vs;
		tags[count].value_len = ve - vs;
		count++;
		i = j;
		if (i == len)
			break;
		i++; /* the ';' */
	}
	*n = count;
	return 0;
}

static const struct dkim_verify_tag *tag_get(const struct dkim_verify_tag *tags, size_t n,
					     const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (is_str(tags[i].name, tags[i].name_len, name))
			return &tags[i];
	return NULL;
}

/* The next item of the colon-separated list p[0..len) from *pos, FWS
 * around it removed: p[*s..*e). false past the last item. */
static bool list_next(const char *p, size_t len, size_t *pos, size_t *s, size_t *e)
{
	size_t end = *pos;

	if (*pos > len)
		return false;
	while (end < len && p[end] != ':')
		end++;
	*s = *pos;
	*e = end;
	while (*s < *e && is_fws_octet(p[*s]))
		(*s)++;
	while (*e > *s && is_fws_octet(p[*e - 1]))
		(*e)--;
	*pos = end + 1;
	return true;
}

/* Does the colon-separated list p[0..len) hold item (case-insensitive)? */
static bool list_has(const char *p, size_t len, const char *item)
{
	size_t pos = 0, s, e;

	while (list_next(p, len, &pos, &s, &e))
		if (same_ci(p + s, e - s, item, strlen(item)))
			return true;
	return false;
}

/* A decimal number of 1 to 76 digits (RFC 6376 allows l= that long),
 * saturating at UINT64_MAX. */
static int parse_uint(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 76)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (!is_digit(p[i]))
			return -1;
		d = (unsigned)(p[i] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Base64 (RFC 4648) with FWS anywhere ignored, padded to a multiple of
 * four. 0 with *outlen octets in out[0..max), or -1. */
static int b64_decode(const char *s, size_t len, unsigned char *out, size_t max,
		      size_t *outlen)
{
	uint32_t acc = 0;
	size_t chars = 0, pad = 0, o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		unsigned v;

		if (is_fws_octet(c))
			continue;
		if (c == '=') {
			pad++;
			chars++;
			continue;
		}
		if (pad > 0)
			return -1;
		if (c >= 'A' && c <= 'Z')
			v = (unsigned)(c - 'A');
		else if (c >= 'a' && c <= 'z')
			v = (unsigned)(c - 'a') + 26;
		else if (is_digit(c))
			v = (unsigned)(c - '0') + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | v;
		chars++;
		if (chars % 4 == 0) {
			if (o + 3 > max)
				return -1;
			out[o++] = (unsigned char)(acc >> 16);
			out[o++] = (unsigned char)(acc >> 8);
			out[o++] = (unsigned char)acc;
			acc = 0;
		}
	}
	if (chars % 4 != 0 || pad > 2)
		return -1;
	if (pad > 0) {
		size_t keep = 3 - pad;

		acc <<= 6 * pad;
		if (o + keep > max)
			return -1;
		out[o++] = (unsigned char)(acc >> 16);
		if (keep == 2)
			out[o++] = (unsigned char)(acc >> 8);
	}
	*outlen = o;
	return 0;
}

/* ---- results ------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void settle(struct vsig *g, enum dkim_verify_status st, const char *fmt, ...)
{
	va_list ap;

	g->settled = true;
	g->status = st;
	va_start(ap, fmt);
	vsnprintf(g->reason, sizeof(g->reason), fmt, ap);
	va_end(ap);
}

/* No memory for what signature g needs: temperror, and the verifier
 * remembers it (dkim_verify_out_of_memory). */
static void sig_nomem(struct dkim_verify *v, struct vsig *g)
{
	v->nomem = true;
	settle(g, DKIM_VERIFY_TEMPERROR, "%s", "out of memory");
}

/* ---- one DKIM-Signature field -------------------------------------- */

static void hash_out(void *arg, const unsigned char *data, size_t len)
{
	/* A failure shows at EVP_DigestFinal_ex. */
	(void)EVP_DigestUpdate(arg, data, len);
}

static void body_out(void *arg, const unsigned char *data, size_t len)
{
	struct vbody *b = arg;
	size_t take = len;

	if (b->has_l) {
		uint64_t room = b->total < b->l ? b->l - b->total : 0;

		if (take > room)
			take = (size_t)room;
	}
	if (take > 0 && EVP_DigestUpdate(b->md, data, take) != 1)
		b->md_failed = true;
	b->total += len;
}

/* Copies p[0..len) lower-cased into out (of size cap); false when it
 * does not fit. */
static bool copy_lower(char *out, size_t cap, const char *p, size_t len)
{
	if (len >= cap)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = lower(p[i]);
	out[len] = '\0';
	return true;
}

/* The texts of the result taken from the tags (what can be shown even
 * when the signature is refused): d=, s=, a=, the start of b=, i=. */
static void sig_texts(struct vsig *g, const struct dkim_verify_tag *tags, size_t n)
{
	const struct dkim_verify_tag *t;

	if ((t = tag_get(tags, n, "d")) != NULL &&
	    copy_lower(g->domain, sizeof(g->domain), t->value, t->value_len) &&
	    !dkim_domain_valid(g->domain))
		g->domain[0] = '\0';
	if ((t = tag_get(tags, n, "s")) != NULL &&
	    copy_lower(g->selector, sizeof(g->selector), t->value, t->value_len) &&
	    !dkim_selector_valid(g->selector))
		g->selector[0] = '\0';
	if ((t = tag_get(tags, n, "a")) != NULL &&
	    copy_lower(g->alg_text, sizeof(g->alg_text), t->value, t->value_len)) {
		for (char *p = g->alg_text; *p; p++)
			if (!is_alpha(*p) && !is_digit(*p) && *p != '-')
				g->alg_text[0] = '\0';
	}
	if ((t = tag_get(tags, n, "b")) != NULL) {
		size_t k = 0;

		for (size_t i = 0; i < t->value_len && k < sizeof(g->header_b) - 1; i++)
			if (!is_fws_octet(t->value[i]))
				g->header_b[k++] = t->value[i];
		g->header_b[k] = '\0';
	}
	if ((t = tag_get(tags, n, "i")) != NULL) {
		size_t k = 0;

		for (size_t i = 0; i < t->value_len; i++) {
			if (is_fws_octet(t->value[i]))
				continue;
			if (k == sizeof(g->identity) - 1) {
				k = 0;
				break;
			}
			g->identity[k++] = t->value[i];
		}
		g->identity[k] = '\0';
	} else if (g->domain[0] != '\0') {
		/* "@" d= (written out: GCC cannot tell the two fields apart
		 * for snprintf's restrict check) */
		size_t dl = strlen(g->domain);
		if (dl > sizeof(g->identity) - 2)
			dl = sizeof(g->identity) - 2;
		g->identity[0] = '@';
		memcpy(g->identity + 1, g->domain, dl);
		g->identity[dl + 1] = '\0';
		g->idomain = 1;
	}
}

/* The h= names, NUL-terminated, in a new buffer (*names points into it);
 * NULL with g settled on an error. */
static char *parse_h(struct dkim_verify *v, struct vsig *g, const struct dkim_verify_tag *t,
		     const char **names, size_t *nnames)
{
	char *buf = mem_alloc(t->value_len + 1);
	size_t pos = 0, n = 0, s, e;
	bool from = false;

	if (buf == NULL) {
		sig_nomem(v, g);
		return NULL;
	}
	memcpy(buf, t->value, t->value_len);
	buf[t->value_len] = '\0';
	while (list_next(buf, t->value_len, &pos, &s, &e)) {
		if (s == e) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "h= syntax error");
			goto fail;
		}
		for (size_t k = s; k < e; k++) {
			unsigned char c = (unsigned char)buf[k];

			if (c < 33 || c > 126) {
				settle(g, DKIM_VERIFY_PERMERROR, "%s", "h= syntax error");
				goto fail;
			}
		}
		if (n == DKIM_VERIFY_MAX_HNAMES) {
			settle(g, DKIM_VERIFY_PERMERROR, "h= names more than %d fields",
			       DKIM_VERIFY_MAX_HNAMES);
			goto fail;
		}
		buf[e] = '\0';
		names[n++] = buf + s;
		from = from || same_ci(buf + s, e - s, "from", 4);
	}
	if (!from) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "h= does not include From");
		goto fail;
	}
	*nnames = n;
	return buf;
fail:
	free(buf);
	return NULL;
}

static int parse_canon(const struct dkim_verify_tag *t, enum dkim_canon_alg *h,
		       enum dkim_canon_alg *b)
{
	const char *p, *slash;
	size_t hl;

	*h = *b = DKIM_CANON_SIMPLE;
	if (t == NULL)
		return 0;
	p = t->value;
	slash = memchr(p, '/', t->value_len);
	hl = slash ? (size_t)(slash - p) : t->value_len;
	if (is_str(p, hl, "relaxed"))
		*h = DKIM_CANON_RELAXED;
	else if (!is_str(p, hl, "simple"))
		return -1;
	if (slash == NULL)
		return 0;
	p = slash + 1;
	hl = t->value_len - hl - 1;
	if (is_str(p, hl, "relaxed"))
		*b = DKIM_CANON_RELAXED;
	else if (!is_str(p, hl, "simple"))
		return -1;
	return 0;
}

/* i=: "[local-part]@domain", the domain d= or below it. */
static int check_identity(struct vsig *g)
{
	char *at = strrchr(g->identity, '@');
	size_t il, dl = strlen(g->domain);
	const char *idom;

	if (at == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "i= syntax error");
		return -1;
	}
	g->idomain = (size_t)(at + 1 - g->identity);
	idom = at + 1;
	il = strlen(idom);
	if (same_ci(idom, il, g->domain, dl))
		return 0;
	if (il > dl + 1 && idom[il - dl - 1] == '.' &&
	    same_ci(idom + il - dl, dl, g->domain, dl))
		return 0;
	settle(g, DKIM_VERIFY_PERMERROR, "%s", "i= is not within d=");
	return -1;
}

/* The index of the body hash for these settings, made if new; -1 when
 * there is no memory for it. */
static int find_body(struct dkim_verify *v, enum dkim_canon_alg alg, bool has_l, uint64_t l)
{
	struct vbody *b;

	for (size_t i = 0; i < v->nbody; i++) {
		b = v->body[i];
		if (b->alg == alg && b->has_l == has_l && (!has_l || b->l == l))
			return (int)i;
	}
	b = mem_calloc(1, sizeof(*b));
	if (b == NULL)
		return -1;
	b->alg = alg;
	b->has_l = has_l;
	b->l = l;
	if ((b->md = EVP_MD_CTX_new()) == NULL) { /* only for memory */
		free(b);
		return -1;
	}
	if (EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1)
		b->md_failed = true;
	dkim_body_canon_init(&b->canon, alg, body_out, b);
	v->body[v->nbody] = b;
	return (int)v->nbody++;
}

static int find_key(struct dkim_verify *v, const char *name)
{
	for (size_t i = 0; i < v->nkey; i++)
		if (strcmp(v->key[i].name, name) == 0)
			return (int)i;
	strlcpy_safe(v->key[v->nkey].name, name, sizeof(v->key[v->nkey].name));
	return (int)v->nkey++;
}

/* The hash of the signed header fields and of the signature field itself
 * with its b= value removed (RFC 6376 §3.7). 0, or -1 when OpenSSL
 * failed, or -1 with errno ENOMEM when memory ran out. */
static int header_hash(struct vsig *g, const struct dkim_hdrs *h, const struct dkim_hfield *f,
		       const struct dkim_verify_tag *btag, const char *const *names,
		       size_t nnames)
{
	long *idx = mem_calloc(nnames, sizeof(*idx));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t pre = (size_t)(btag->raw - f->raw), post = pre + btag->raw_len;
	char *copy = mem_alloc(f->raw_len - btag->raw_len + 1);
	unsigned int dlen = 0;
	int rc = -1;

	errno = 0;
	if (idx == NULL || copy == NULL || md == NULL) {
		errno = ENOMEM; /* EVP_MD_CTX_new fails only for memory */
		goto out;
	}
	dkim_hdrs_select(h, names, nnames, idx);
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (size_t i = 0; i < nnames; i++) {
		if (idx[i] >= 0) {
			const struct dkim_hfield *s = &h->f[idx[i]];

			dkim_canon_header(g->hcanon, s->raw, s->raw_len, true, hash_out, md);
		}
	}
	memcpy(copy, f->raw, pre);
	memcpy(copy + pre, f->raw + post, f->raw_len - post);
	dkim_canon_header(g->hcanon, copy, f->raw_len - btag->raw_len, false, hash_out, md);
	if (EVP_DigestFinal_ex(md, g->hdigest, &dlen) == 1 && dlen == SHA256_LEN)
		rc = 0;
out:
	free(copy);
	free(idx);
	EVP_MD_CTX_free(md);
	return rc;
}

/* Parses the signature field f and, when it is usable, computes its
 * header hash and ties it to a body hash and a key name. Otherwise the
 * signature is settled (permerror). */
static void sig_parse(struct dkim_verify *v, const struct dkim_hdrs *h,
		      const struct dkim_hfield *f)
{
	struct vsig *g = &v->sig[v->nsig++];
	struct dkim_verify_tag tags[DKIM_VERIFY_MAX_TAGS];
	const struct dkim_verify_tag *t, *btag;
	const char *val = f->raw + f->colon + 1;
	size_t vlen = f->raw_len - f->colon - 1, n, nnames = 0;
	const char *names[DKIM_VERIFY_MAX_HNAMES];
	char keyname[2 * DOMAIN_MAX + 16];
	char *hbuf = NULL;
	uint64_t ts = 0, xs = 0;
	bool has_t = false;

	memset(g, 0, sizeof(*g));
	g->key = g->body = -1;
	if (vlen >= 2 && val[vlen - 2] == '\r' && val[vlen - 1] == '\n')
		vlen -= 2;
	if (dkim_verify_tags_parse(val, vlen, tags, DKIM_VERIFY_MAX_TAGS, &n) < 0) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "signature tag syntax error");
		return;
	}
	sig_texts(g, tags, n);

	if ((t = tag_get(tags, n, "v")) == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "missing v=");
		return;
	}
	if (!is_str(t->value, t->value_len, "1")) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "v= is not 1");
		return;
	}
	if ((t = tag_get(tags, n, "a")) == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "missing a=");
		return;
	}
	if (is_str(t->value, t->value_len, "rsa-sha256")) {
		g->alg = DKIM_ALG_RSA_SHA256;
	} else if (is_str(t->value, t->value_len, "ed25519-sha256")) {
		g->alg = DKIM_ALG_ED25519_SHA256;
	} else if (is_str(t->value, t->value_len, "rsa-sha1")) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "insecure algorithm rsa-sha1 (RFC 8301)");
		return;
	} else {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "unknown algorithm");
		return;
	}
	if ((btag = tag_get(tags, n, "b")) == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "missing b=");
		return;
	}
	if (b64_decode(btag->value, btag->value_len, g->b, sizeof(g->b), &g->blen) < 0 ||
	    g->blen == 0) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "b= is not base64");
		return;
	}
	if ((t = tag_get(tags, n, "bh")) == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "missing bh=");
		return;
	}
	{
		unsigned char bh[SHA256_LEN + 3];
		size_t bl = 0;

		if (b64_decode(t->value, t->value_len, bh, sizeof(bh), &bl) < 0 ||
		    bl != SHA256_LEN) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s",
			       "bh= is not a base64 SHA-256 hash");
			return;
		}
		memcpy(g->bh, bh, SHA256_LEN);
	}
	if (tag_get(tags, n, "d") == NULL || tag_get(tags, n, "s") == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "missing %s=",
		       tag_get(tags, n, "d") == NULL ? "d" : "s");
		return;
	}
	if (g->domain[0] == '\0') {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "d= is not a domain name");
		return;
	}
	if (g->selector[0] == '\0') {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "s= is not a selector");
		return;
	}
	if ((t = tag_get(tags, n, "h")) == NULL) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "missing h=");
		return;
	}
	if ((hbuf = parse_h(v, g, t, names, &nnames)) == NULL)
		return;
	if (parse_canon(tag_get(tags, n, "c"), &g->hcanon, &g->bcanon) < 0) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "c= is not a known canonicalization");
		goto out;
	}
	if ((t = tag_get(tags, n, "i")) != NULL) {
		if (g->identity[0] == '\0') {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "i= syntax error");
			goto out;
		}
		if (check_identity(g) < 0)
			goto out;
	}
	if ((t = tag_get(tags, n, "l")) != NULL) {
		if (parse_uint(t->value, t->value_len, &g->l) < 0) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "l= is not a number");
			goto out;
		}
		g->has_l = true;
	}
	if ((t = tag_get(tags, n, "q")) != NULL && !list_has(t->value, t->value_len, "dns/txt")) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "q= has no dns/txt");
		goto out;
	}
	if ((t = tag_get(tags, n, "t")) != NULL) {
		if (parse_uint(t->value, t->value_len, &ts) < 0) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "t= is not a number");
			goto out;
		}
		has_t = true;
	}
	if ((t = tag_get(tags, n, "x")) != NULL) {
		if (parse_uint(t->value, t->value_len, &xs) < 0) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "x= is not a number");
			goto out;
		}
		if (has_t && xs <= ts) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "x= is not after t=");
			goto out;
		}
		if (v->now >= 0 && xs < (uint64_t)v->now) {
			settle(g, DKIM_VERIFY_PERMERROR, "%s", "signature expired");
			goto out;
		}
	}
	if ((size_t)snprintf(keyname, sizeof(keyname), "%s._domainkey.%s", g->selector,
			     g->domain) > DOMAIN_MAX) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "key name too long");
		goto out;
	}
	if (header_hash(g, h, f, btag, names, nnames) < 0) {
		ERR_clear_error();
		if (errno == ENOMEM)
			sig_nomem(v, g);
		else
			settle(g, DKIM_VERIFY_TEMPERROR, "%s", "SHA-256 failed");
		goto out;
	}
	if ((g->body = find_body(v, g->bcanon, g->has_l, g->l)) < 0) {
		sig_nomem(v, g);
		goto out;
	}
	g->key = find_key(v, keyname);
out:
	free(hbuf);
}

/* ---- the stream ---------------------------------------------------- */

struct dkim_verify *dkim_verify_new(int64_t now)
{
	struct dkim_verify *v = mem_calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->now = now;
	return v;
}

void dkim_verify_free(struct dkim_verify *v)
{
	if (v == NULL)
		return;
	free(v->hbuf);
	for (size_t i = 0; i < v->nbody; i++) {
		EVP_MD_CTX_free(v->body[i]->md);
		free(v->body[i]);
	}
	for (size_t i = 0; i < v->nkey; i++)
		EVP_PKEY_free(v->key[i].pkey);
	free(v);
}

static int verify_fail(struct dkim_verify *v, const char *why)
{
	if (!v->failed) {
		v->failed = true;
		snprintf(v->error, sizeof(v->error), "%s", why);
	}
	free(v->hbuf);
	v->hbuf = NULL;
	v->hlen = v->hcap = 0;
	return -1;
}

static int hbuf_append(struct dkim_verify *v, const char *p, size_t n)
{
	if (n > HBUF_MAX - v->hlen)
		return verify_fail(v, "header section over 1 MiB");
	if (v->hlen + n > v->hcap) {
		size_t cap = v->hcap == 0 ? 8192 : v->hcap;

		while (cap < v->hlen + n)
			cap *= 2;
		if (cap > HBUF_MAX)
			cap = HBUF_MAX;
		char *grown = mem_realloc(v->hbuf, cap);
		if (grown == NULL) {
			v->nomem = true;
			return verify_fail(v, "out of memory");
		}
		v->hbuf = grown;
		v->hcap = cap;
	}
	memcpy(v->hbuf + v->hlen, p, n);
	v->hlen += n;
	return 0;
}

/* Does the kept section end with the empty line ("\r\n" alone at the
 * start, or "\r\n\r\n")? */
static bool headers_ended(const char *h, size_t n)
{
	if (n < 2 || h[n - 2] != '\r' || h[n - 1] != '\n')
		return false;
	return n == 2 || (n >= 4 && h[n - 4] == '\r' && h[n - 3] == '\n');
}

/* The header section is complete: parse the signatures, free it. */
static void headers_end(struct dkim_verify *v)
{
	struct dkim_hdrs h = { 0 };
	size_t slen = v->hlen;
	char err[128];

	v->phase = PH_BODY;
	if (headers_ended(v->hbuf != NULL ? v->hbuf : "", slen))
		slen -= 2;
	if (dkim_hdrs_parse(v->hbuf != NULL ? v->hbuf : "", slen, &h, err, sizeof(err)) < 0) {
		v->nomem = v->nomem || errno == ENOMEM;
		verify_fail(v, err);
		dkim_hdrs_free(&h);
		return;
	}
	for (size_t i = 0; i < h.n && v->nsig < DKIM_VERIFY_MAX_SIGS; i++)
		if (dkim_hfield_is(&h.f[i], "dkim-signature", 14))
			sig_parse(v, &h, &h.f[i]);
	dkim_hdrs_free(&h);
	free(v->hbuf);
	v->hbuf = NULL;
	v->hlen = v->hcap = 0;
}

int dkim_verify_feed(struct dkim_verify *v, const void *data, size_t len)
{
	const char *p = data;

	if (v->phase == PH_DONE)
		abort();
	if (v->failed)
		return -1;
	while (len > 0 && v->phase == PH_HEADERS) {
		const char *lf = memchr(p, '\n', len);
		size_t take = lf != NULL ? (size_t)(lf - p) + 1 : len;

		if (hbuf_append(v, p, take) < 0)
			return -1;
		p += take;
		len -= take;
		if (lf != NULL && headers_ended(v->hbuf, v->hlen))
			headers_end(v);
	}
	if (v->failed)
		return -1;
	if (len > 0)
		for (size_t i = 0; i < v->nbody; i++)
			dkim_body_canon_feed(&v->body[i]->canon, p, len);
	return 0;
}

bool dkim_verify_headers_done(const struct dkim_verify *v)
{
	return v->phase != PH_HEADERS && !v->failed;
}

const char *dkim_verify_error(const struct dkim_verify *v)
{
	return v->error;
}

bool dkim_verify_out_of_memory(const struct dkim_verify *v)
{
	return v->nomem;
}

/* ---- keys ---------------------------------------------------------- */

size_t dkim_verify_key_count(const struct dkim_verify *v)
{
	return v->failed ? 0 : v->nkey;
}

const char *dkim_verify_key_name(const struct dkim_verify *v, size_t i)
{
	return i < v->nkey ? v->key[i].name : NULL;
}

bool dkim_verify_key_answered(const struct dkim_verify *v, size_t i)
{
	return i < v->nkey && v->key[i].answered;
}

__attribute__((format(printf, 3, 4)))
static void key_status(struct vkey *k, enum dkim_verify_status st, const char *fmt, ...)
{
	va_list ap;

	k->status = st;
	va_start(ap, fmt);
	vsnprintf(k->reason, sizeof(k->reason), fmt, ap);
	va_end(ap);
}

/* Empties OpenSSL's error queue; whether an allocation failed in it (a
 * failure for want of memory is no verdict on the key or signature). */
static bool ssl_out_of_memory(void)
{
	bool nomem = false;
	unsigned long e;

	while ((e = ERR_get_error()) != 0)
		nomem = nomem || ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
	return nomem;
}

/* The public key of p= for k=; NULL with k's status set (TEMPERROR only
 * when OpenSSL ran out of memory decoding it). */
static EVP_PKEY *key_decode(struct vkey *k, const struct dkim_verify_tag *p)
{
	unsigned char der[KEY_MAX_OCTETS];
	const unsigned char *q = der;
	size_t len = 0;
	EVP_PKEY *pk;
	int bits;

	if (b64_decode(p->value, p->value_len, der, sizeof(der), &len) < 0) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key p= is not base64");
		return NULL;
	}
	if (k->ed25519) {
		if (len != 32) {
			key_status(k, DKIM_VERIFY_PERMERROR, "%s",
				   "Ed25519 key is not 32 octets");
			return NULL;
		}
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, len);
		if (pk == NULL && ssl_out_of_memory())
			key_status(k, DKIM_VERIFY_TEMPERROR, "%s", "out of memory");
		else if (pk == NULL)
			key_status(k, DKIM_VERIFY_PERMERROR, "%s", "Ed25519 key is unusable");
		return pk;
	}
	/* RSA: SubjectPublicKeyInfo (RFC 6376 §3.6.1), or a bare RSAPublicKey
	 * that some publish. */
	pk = d2i_PUBKEY(NULL, &q, (long)len);
	if (pk == NULL || q != der + len) {
		EVP_PKEY_free(pk);
		q = der;
		pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)len);
		if (pk != NULL && q != der + len) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
	}
	if (ssl_out_of_memory() && pk == NULL) {
		key_status(k, DKIM_VERIFY_TEMPERROR, "%s", "out of memory");
		return NULL;
	}
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pk);
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key p= is not an RSA public key");
		return NULL;
	}
	bits = EVP_PKEY_get_bits(pk);
	if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_VERIFY_RSA_MAX_BITS) {
		EVP_PKEY_free(pk);
		key_status(k, DKIM_VERIFY_PERMERROR, "RSA key of %d bits (%s)", bits,
			   bits < DKIM_RSA_MIN_BITS ? "under 1024, RFC 8301" : "over 8192");
		return NULL;
	}
	return pk;
}

/* One TXT record as a key record (RFC 6376 §3.6.1). false when it is not
 * a key record at all (syntax): the next record may be. Else true, with
 * k's status PASS and k->pkey set, or a permerror (revoked, unusable). */
static bool key_parse(struct vkey *k, const char *text, size_t len)
{
	struct dkim_verify_tag tags[DKIM_VERIFY_MAX_TAGS];
	const struct dkim_verify_tag *t, *p;
	size_t n;

	k->ed25519 = k->strict = k->testing = false;
	k->sha256_ok = true;
	if (dkim_verify_tags_parse(text, len, tags, DKIM_VERIFY_MAX_TAGS, &n) < 0) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key record syntax error");
		return false;
	}
	if ((t = tag_get(tags, n, "v")) != NULL &&
	    (t != &tags[0] || !is_str(t->value, t->value_len, "DKIM1"))) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key v= is not DKIM1 first");
		return false;
	}
	if ((p = tag_get(tags, n, "p")) == NULL) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key record without p=");
		return false;
	}
	if ((t = tag_get(tags, n, "k")) != NULL) {
		if (is_str(t->value, t->value_len, "ed25519")) {
			k->ed25519 = true;
		} else if (!is_str(t->value, t->value_len, "rsa")) {
			key_status(k, DKIM_VERIFY_PERMERROR, "%s", "unknown key type k=");
			return true;
		}
	}
	if ((t = tag_get(tags, n, "h")) != NULL)
		k->sha256_ok = list_has(t->value, t->value_len, "sha256");
	if ((t = tag_get(tags, n, "s")) != NULL && !list_has(t->value, t->value_len, "*") &&
	    !list_has(t->value, t->value_len, "email")) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key is not for email (s=)");
		return true;
	}
	if ((t = tag_get(tags, n, "t")) != NULL) {
		k->testing = list_has(t->value, t->value_len, "y");
		k->strict = list_has(t->value, t->value_len, "s");
	}
	if (p->value_len == 0) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "key revoked");
		return true;
	}
	k->pkey = key_decode(k, p);
	if (k->pkey != NULL)
		key_status(k, DKIM_VERIFY_PASS, "%s", "");
	return true;
}

/* Does sig g verify (its hashes known, its key usable)? 1 yes, 0 no, -1
 * OpenSSL ran out of memory (that is no verdict). */
static int sig_check(const struct vsig *g, EVP_PKEY *pkey)
{
	bool ok = false;

	if (g->alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 §3: PureEdDSA over the 32-octet hash. */
		EVP_MD_CTX *md = EVP_MD_CTX_new();

		if (md == NULL)
			return -1;
		ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) == 1 &&
		     EVP_DigestVerify(md, g->b, g->blen, g->hdigest, SHA256_LEN) == 1;
		EVP_MD_CTX_free(md);
	} else {
		/* PKCS#1 v1.5: DigestInfo(SHA-256, digest). */
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pkey, NULL);

		if (pc == NULL)
			return -1;
		ok = EVP_PKEY_verify_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
		     EVP_PKEY_verify(pc, g->b, g->blen, g->hdigest, SHA256_LEN) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	if (ssl_out_of_memory() && !ok)
		return -1;
	return ok ? 1 : 0;
}

/* Settles g when the message has ended and its key is known. */
static void sig_settle(struct dkim_verify *v, struct vsig *g)
{
	const struct vkey *k;
	const struct vbody *b;

	if (g->settled || v->phase != PH_DONE || g->key < 0 || !v->key[g->key].answered)
		return;
	k = &v->key[g->key];
	b = v->body[g->body];
	g->testing = k->testing;
	if (k->status != DKIM_VERIFY_PASS) {
		settle(g, k->status, "%s", k->reason);
		return;
	}
	if (k->ed25519 != (g->alg == DKIM_ALG_ED25519_SHA256)) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "key type (k=) does not match a=");
		return;
	}
	if (!k->sha256_ok) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "key h= does not allow sha256");
		return;
	}
	if (k->strict && !same_ci(g->identity + g->idomain, strlen(g->identity + g->idomain),
				  g->domain, strlen(g->domain))) {
		settle(g, DKIM_VERIFY_PERMERROR, "%s", "key t=s: the i= domain is not d=");
		return;
	}
	if (b->md_failed) {
		settle(g, DKIM_VERIFY_TEMPERROR, "%s", "SHA-256 failed");
		return;
	}
	if (g->has_l) {
		if (b->total < g->l) {
			settle(g, DKIM_VERIFY_FAIL, "%s", "l= is longer than the body");
			return;
		}
		g->body_unsigned = b->total - g->l;
	}
	if (memcmp(g->bh, b->digest, SHA256_LEN) != 0) {
		settle(g, DKIM_VERIFY_FAIL, "%s", "body hash did not verify");
		return;
	}
	switch (sig_check(g, k->pkey)) {
	case -1:
		sig_nomem(v, g);
		return;
	case 0:
		settle(g, DKIM_VERIFY_FAIL, "%s", "signature did not verify");
		return;
	}
	settle(g, DKIM_VERIFY_PASS, "%s", "");
}

int dkim_verify_key_answer(struct dkim_verify *v, const char *name, enum dns_status st,
			   const struct dns_txt *txt, size_t n, const char *why)
{
	size_t nlen = strlen(name);
	struct vkey *k = NULL;

	if (nlen > 0 && name[nlen - 1] == '.')
		nlen--;
	for (size_t i = 0; i < v->nkey && !v->failed; i++)
		if (same_ci(v->key[i].name, strlen(v->key[i].name), name, nlen))
			k = &v->key[i];
	if (k == NULL || k->answered)
		return -1;
	k->answered = true;
	v->nomem = v->nomem || st == DNS_NOMEM;
	if (st == DNS_TEMPFAIL || st == DNS_NOMEM) {
		key_status(k, DKIM_VERIFY_TEMPERROR, "key lookup failed%s%s",
			   why != NULL && why[0] != '\0' ? ": " : "", why != NULL ? why : "");
	} else if (st != DNS_OK || n == 0) {
		key_status(k, DKIM_VERIFY_PERMERROR, "%s", "no key");
	} else {
		char first[REASON_MAX] = "";
		bool parsed = false;

		for (size_t i = 0; i < n && !parsed; i++) {
			parsed = key_parse(k, txt[i].text, txt[i].len);
			if (i == 0)
				memcpy(first, k->reason, sizeof(first));
		}
		if (!parsed)
			key_status(k, DKIM_VERIFY_PERMERROR, "%s", first);
		/* key_parse's only temporary failure: no memory to decode. */
		v->nomem = v->nomem || k->status == DKIM_VERIFY_TEMPERROR;
	}
	for (size_t i = 0; i < v->nsig; i++)
		if (v->sig[i].key == (int)(k - v->key))
			sig_settle(v, &v->sig[i]);
	return 0;
}

/* ---- the end ------------------------------------------------------- */

int dkim_verify_end(struct dkim_verify *v)
{
	unsigned int dlen = 0;

	if (v->phase == PH_DONE)
		abort();
	if (v->phase == PH_HEADERS && !v->failed)
		headers_end(v);
	for (size_t i = 0; i < v->nbody; i++) {
		struct vbody *b = v->body[i];

		dkim_body_canon_finish(&b->canon);
		if (!b->md_failed &&
		    (EVP_DigestFinal_ex(b->md, b->digest, &dlen) != 1 || dlen != SHA256_LEN))
			b->md_failed = true;
	}
	v->phase = PH_DONE;
	if (v->failed)
		return -1;
	for (size_t i = 0; i < v->nsig; i++)
		sig_settle(v, &v->sig[i]);
	return (int)v->nsig;
}

int dkim_verify_result(struct dkim_verify *v, size_t i, struct dkim_verify_result *res)
{
	const struct vsig *g;

	if (v->phase != PH_DONE || v->failed || i >= v->nsig)
		return -1;
	g = &v->sig[i];
	res->status = g->settled ? g->status : DKIM_VERIFY_TEMPERROR;
	res->reason = g->settled ? g->reason : "key not looked up";
	res->domain = g->domain;
	res->selector = g->selector;
	res->alg = g->alg_text;
	res->header_b = g->header_b;
	res->identity = g->identity;
	res->testing = g->testing;
	res->has_l = g->has_l;
	res->body_unsigned = g->body_unsigned;
	return 0;
}
