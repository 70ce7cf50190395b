/*
 * dkim_sign: the DKIM signer (see dkim_sign.h). It owns the collection of
 * the header section as the message streams in, the body hash, the h=
 * list with its oversigning, the text of the DKIM-Signature fields and
 * the signing through OpenSSL 3 EVP. Canonicalization is dkim_canon's.
 * Pure: bytes in, header text out; no I/O.
 */
#include "signer/dkim_sign.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/mem.h"

const char *const dkim_sign_default_headers[] = {
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "Reply-To", "In-Reply-To",
	"References", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
	NULL,
};

/* Width the signature's lines are folded to (RFC 5322 §2.1.1: 78). */
#define FOLD_AT 76
/* The header section kept: the section and the CRLF of the empty line. */
#define HBUF_MAX (DKIM_HDRS_MAX_BYTES + 2)
/* The longest field name we accept in the list. */
#define NAME_MAX_LEN 64

struct dkim_sig {
	char *domain;
	char *selector;
	enum dkim_alg alg;
	EVP_PKEY *pkey;
};

enum phase { PH_HEADERS, PH_BODY, PH_DONE };

struct dkim_sign {
	struct dkim_sig sig[DKIM_SIGN_MAX_SIGS];
	size_t nsig;
	char *names[DKIM_SIGN_MAX_NAMES]; /* lower case */
	size_t nnames;
	enum dkim_canon_alg hcanon, bcanon;
	int64_t t;
	int64_t expire; /* seconds after t, 0: no x= */
	enum phase phase;
	bool fed;
	bool failed;
	bool nomem;     /* failed for want of memory */
	char error[256];
	/* the header section, with the empty line's CRLF once it is seen */
	char *hbuf;
	size_t hlen, hcap;
	/* the body */
	EVP_MD_CTX *bh;
	struct dkim_body_canon body;
};

/* A growing string for the header text; our own output, bounded by the
 * header section's caps. Once an allocation has failed, nomem is set and
 * nothing more is added. */
struct text {
	char *p;
	size_t len, cap;
	size_t col; /* octets on the current line */
	bool nomem;
};

const char *dkim_alg_name(enum dkim_alg alg)
{
	return alg == DKIM_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* ---- names --------------------------------------------------------- */

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool dns_name_valid(const char *s, bool underscore)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-' && !(underscore && c == '_'))
			return false;
		if (label == 0 && c == '-')
			return false;
		label++;
	}
	return true;
}

bool dkim_domain_valid(const char *s)
{
	return dns_name_valid(s, false);
}

bool dkim_selector_valid(const char *s)
{
	return dns_name_valid(s, true);
}

/* A header field name (RFC 5322 ftext: printable ASCII but ':'). */
static bool field_name_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

/* A lower-case copy of s; NULL when out of memory. */
static char *lower_dup(const char *s)
{
	char *d = mem_strdup(s);

	for (char *p = d; p != NULL && *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

/* ---- construction -------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int check_key(enum dkim_alg alg, EVP_PKEY *pkey, char *err, size_t errlen)
{
	if (pkey == NULL) {
		set_err(err, errlen, "%s", "no key");
		return -1;
	}
	if (alg == DKIM_ALG_RSA_SHA256) {
		if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
			set_err(err, errlen, "%s", "rsa-sha256 needs an RSA key");
			return -1;
		}
		if (EVP_PKEY_get_bits(pkey) < DKIM_RSA_MIN_BITS) {
			set_err(err, errlen, "%s",
				"RSA key shorter than 1024 bits (RFC 8301)");
			return -1;
		}
		return 0;
	}
	if (alg == DKIM_ALG_ED25519_SHA256) {
		if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519) {
			set_err(err, errlen, "%s", "ed25519-sha256 needs an Ed25519 key");
			return -1;
		}
		return 0;
	}
	set_err(err, errlen, "%s", "unknown algorithm");
	return -1;
}

static void body_out(void *arg, const unsigned char *data, size_t len)
{
	struct dkim_sign *s = arg;

	if (!s->failed && EVP_DigestUpdate(s->bh, data, len) != 1) {
		s->failed = true;
		snprintf(s->error, sizeof(s->error), "SHA-256 of the body failed");
	}
}

struct dkim_sign *dkim_sign_new(const char *domain, const char *selector, enum dkim_alg alg,
				EVP_PKEY *pkey, char *err, size_t errlen)
{
	struct dkim_sign *s = mem_calloc(1, sizeof(*s));

	if (s == NULL) {
		set_err(err, errlen, "%s", "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	s->hcanon = DKIM_CANON_RELAXED;
	s->bcanon = DKIM_CANON_RELAXED;
	s->t = (int64_t)time(NULL);
	s->bh = EVP_MD_CTX_new();
	if (s->bh == NULL) { /* only for memory */
		set_err(err, errlen, "%s", "out of memory");
		goto nomem;
	}
	if (EVP_DigestInit_ex(s->bh, EVP_sha256(), NULL) != 1) {
		set_err(err, errlen, "%s", "cannot start SHA-256");
		dkim_sign_free(s);
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; dkim_sign_default_headers[i] != NULL; i++) {
		if ((s->names[s->nnames] = lower_dup(dkim_sign_default_headers[i])) == NULL) {
			set_err(err, errlen, "%s", "out of memory");
			goto nomem;
		}
		s->nnames++;
	}
	if (dkim_sign_add(s, domain, selector, alg, pkey, err, errlen) < 0) {
		int saved = errno;

		dkim_sign_free(s);
		errno = saved;
		return NULL;
	}
	return s;
nomem:
	dkim_sign_free(s);
	errno = ENOMEM;
	return NULL;
}

int dkim_sign_add(struct dkim_sign *s, const char *domain, const char *selector,
		  enum dkim_alg alg, EVP_PKEY *pkey, char *err, size_t errlen)
{
	struct dkim_sig *g;
	char *d, *sel;

	errno = EINVAL;
	if (s->fed || s->nsig == DKIM_SIGN_MAX_SIGS) {
		set_err(err, errlen, "%s", s->fed ? "signature added after the first octet"
						  : "too many signatures");
		return -1;
	}
	if (domain == NULL || !dkim_domain_valid(domain)) {
		set_err(err, errlen, "invalid signing domain '%s'", domain ? domain : "");
		return -1;
	}
	if (selector == NULL || !dkim_selector_valid(selector)) {
		set_err(err, errlen, "invalid selector '%s'", selector ? selector : "");
		return -1;
	}
	if (check_key(alg, pkey, err, errlen) < 0)
		return -1;
	d = mem_strdup(domain);
	sel = mem_strdup(selector);
	if (d == NULL || sel == NULL) {
		free(d);
		free(sel);
		set_err(err, errlen, "%s", "out of memory");
		errno = ENOMEM;
		return -1;
	}
	if (EVP_PKEY_up_ref(pkey) != 1) {
		free(d);
		free(sel);
		set_err(err, errlen, "%s", "cannot take a reference on the key");
		errno = EINVAL;
		return -1;
	}
	g = &s->sig[s->nsig++];
	g->domain = d;
	g->selector = sel;
	g->alg = alg;
	g->pkey = pkey;
	return 0;
}

int dkim_sign_set_headers(struct dkim_sign *s, const char *const *names, size_t n,
			  char *err, size_t errlen)
{
	char *list[DKIM_SIGN_MAX_NAMES];
	size_t count = 0;
	bool from = false, nomem = false;

	if (s->fed) {
		set_err(err, errlen, "%s", "header list set after the first octet");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		if (names[i] == NULL || !field_name_valid(names[i])) {
			set_err(err, errlen, "invalid header field name '%s'",
				names[i] ? names[i] : "");
			goto fail;
		}
		for (size_t k = 0; k < count; k++)
			dup = dup || strcasecmp(list[k], names[i]) == 0;
		if (dup)
			continue;
		if (strcasecmp(names[i], "DKIM-Signature") == 0) {
			set_err(err, errlen, "%s", "DKIM-Signature cannot be in the list");
			goto fail;
		}
		if (count == DKIM_SIGN_MAX_NAMES) {
			set_err(err, errlen, "%s", "more than 64 header field names");
			goto fail;
		}
		from = from || strcasecmp(names[i], "From") == 0;
		if ((list[count] = lower_dup(names[i])) == NULL) {
			set_err(err, errlen, "%s", "out of memory");
			nomem = true;
			goto fail;
		}
		count++;
	}
	if (!from) {
		set_err(err, errlen, "%s", "the header list must name From (RFC 6376 5.4)");
		goto fail;
	}
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	memcpy(s->names, list, count * sizeof(list[0]));
	s->nnames = count;
	return 0;
fail:
	for (size_t i = 0; i < count; i++)
		free(list[i]);
	errno = nomem ? ENOMEM : EINVAL;
	return -1;
}

void dkim_sign_set_canon(struct dkim_sign *s, enum dkim_canon_alg header,
			 enum dkim_canon_alg body)
{
	if (s->fed)
		abort();
	s->hcanon = header;
	s->bcanon = body;
}

void dkim_sign_set_time(struct dkim_sign *s, int64_t t)
{
	s->t = t;
}

void dkim_sign_set_expire(struct dkim_sign *s, int64_t seconds)
{
	s->expire = seconds > 0 ? seconds : 0;
}

void dkim_sign_free(struct dkim_sign *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nsig; i++) {
		free(s->sig[i].domain);
		free(s->sig[i].selector);
		EVP_PKEY_free(s->sig[i].pkey);
	}
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	free(s->hbuf);
	EVP_MD_CTX_free(s->bh);
	free(s);
}

/* ---- the stream ---------------------------------------------------- */

static int sign_fail(struct dkim_sign *s, const char *why)
{
	if (!s->failed) {
		s->failed = true;
		snprintf(s->error, sizeof(s->error), "%s", why);
	}
	return -1;
}

static int sign_nomem(struct dkim_sign *s)
{
	if (!s->failed)
		s->nomem = true;
	return sign_fail(s, "out of memory");
}

static int hbuf_append(struct dkim_sign *s, const char *p, size_t n)
{
	if (n > HBUF_MAX - s->hlen)
		return sign_fail(s, "header section over 1 MiB");
	if (s->hlen + n > s->hcap) {
		size_t cap = s->hcap == 0 ? 8192 : s->hcap;

		while (cap < s->hlen + n)
			cap *= 2;
		if (cap > HBUF_MAX)
			cap = HBUF_MAX;
		char *grown = mem_realloc(s->hbuf, cap);
		if (grown == NULL)
			return sign_nomem(s);
		s->hbuf = grown;
		s->hcap = cap;
	}
	memcpy(s->hbuf + s->hlen, p, n);
	s->hlen += n;
	return 0;
}

/* Does the kept header section end with the empty line: "\r\n" alone at
 * the start, or "\r\n\r\n"? */
static bool headers_ended(const struct dkim_sign *s)
{
	const char *h = s->hbuf;
	size_t n = s->hlen;

	if (n < 2 || h[n - 2] != '\r' || h[n - 1] != '\n')
		return false;
	return n == 2 || (n >= 4 && h[n - 4] == '\r' && h[n - 3] == '\n');
}

int dkim_sign_feed(struct dkim_sign *s, const void *data, size_t len)
{
	const char *p = data;

	if (s->phase == PH_DONE)
		abort();
	if (!s->fed) {
		s->fed = true;
		dkim_body_canon_init(&s->body, s->bcanon, body_out, s);
	}
	if (s->failed)
		return -1;
	while (len > 0 && s->phase == PH_HEADERS) {
		const char *lf = memchr(p, '\n', len);
		size_t take = lf != NULL ? (size_t)(lf - p) + 1 : len;

		if (hbuf_append(s, p, take) < 0)
			return -1;
		p += take;
		len -= take;
		if (lf != NULL && headers_ended(s))
			s->phase = PH_BODY;
	}
	if (len > 0)
		dkim_body_canon_feed(&s->body, p, len);
	return s->failed ? -1 : 0;
}

/* ---- the header text ----------------------------------------------- */

static void text_add(struct text *t, const char *p, size_t n)
{
	if (t->nomem)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap == 0 ? 1024 : t->cap;
		char *grown;

		while (cap < t->len + n + 1)
			cap *= 2;
		if ((grown = mem_realloc(t->p, cap)) == NULL) {
			t->nomem = true;
			return;
		}
		t->p = grown;
		t->cap = cap;
	}
	memcpy(t->p + t->len, p, n);
	t->len += n;
	t->p[t->len] = '\0';
	for (size_t i = 0; i < n; i++)
		t->col = p[i] == '\n' ? 0 : t->col + 1;
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

/* word, after sep when it fits on the line, else on a new folded line. */
static void text_word(struct text *t, const char *sep, const char *word)
{
	if (t->col + strlen(sep) + strlen(word) > FOLD_AT && t->col > 1)
		text_str(t, "\r\n\t");
	else
		text_str(t, sep);
	text_str(t, word);
}

/* The field up to "b=", the value left empty (§3.5, §3.7). */
static void sig_text(const struct dkim_sign *s, const struct dkim_sig *g,
		     const char *const *hnames, size_t nh, const char *bh, struct text *t)
{
	char tag[600];

	text_str(t, "DKIM-Signature:");
	text_word(t, " ", "v=1;");
	snprintf(tag, sizeof(tag), "a=%s;", dkim_alg_name(g->alg));
	text_word(t, " ", tag);
	snprintf(tag, sizeof(tag), "c=%s/%s;",
		 s->hcanon == DKIM_CANON_RELAXED ? "relaxed" : "simple",
		 s->bcanon == DKIM_CANON_RELAXED ? "relaxed" : "simple");
	text_word(t, " ", tag);
	snprintf(tag, sizeof(tag), "d=%s;", g->domain);
	text_word(t, " ", tag);
	snprintf(tag, sizeof(tag), "s=%s;", g->selector);
	text_word(t, " ", tag);
	snprintf(tag, sizeof(tag), "t=%lld;", (long long)s->t);
	text_word(t, " ", tag);
	if (s->expire > 0) {
		snprintf(tag, sizeof(tag), "x=%lld;", (long long)(s->t + s->expire));
		text_word(t, " ", tag);
	}
	for (size_t i = 0; i < nh; i++) {
		/* The colon ends each name, so a fold never comes before it. */
		snprintf(tag, sizeof(tag), "%s%s%s", i == 0 ? "h=" : "", hnames[i],
			 i + 1 == nh ? ";" : ":");
		text_word(t, i == 0 ? " " : "", tag);
	}
	snprintf(tag, sizeof(tag), "bh=%s;", bh);
	text_word(t, " ", tag);
	text_str(t, "\r\n\tb=");
}

/* The b= value, base64 folded into lines that fit. */
static void text_b64_folded(struct text *t, const char *b64)
{
	size_t n = strlen(b64);

	while (n > 0) {
		size_t room = t->col < FOLD_AT ? FOLD_AT - t->col : 0, k;

		if (room < 8) {
			text_str(t, "\r\n\t");
			continue;
		}
		k = n < room ? n : room;
		text_add(t, b64, k);
		b64 += k;
		n -= k;
	}
	text_str(t, "\r\n");
}

static void hash_out(void *arg, const unsigned char *data, size_t len)
{
	EVP_MD_CTX *md = arg;

	/* A failure shows at EVP_DigestFinal_ex. */
	(void)EVP_DigestUpdate(md, data, len);
}

/* raw in base64, NUL-ended; NULL when out of memory. */
static char *b64(const unsigned char *raw, size_t n)
{
	char *out = mem_alloc(4 * ((n + 2) / 3) + 1);

	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	return out;
}

/* The signature of digest (the SHA-256 of the signed data) with g's key,
 * base64; NULL with s->error set (and s->nomem when memory ran out:
 * ours, or OpenSSL's for a context). */
static char *sign_digest(struct dkim_sign *s, const struct dkim_sig *g,
			 const unsigned char *digest, size_t dlen)
{
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pc = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char *out = NULL;
	bool ok, nomem;

	if (g->alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 §3: PureEdDSA over the 32-octet hash. */
		md = EVP_MD_CTX_new();
		nomem = md == NULL;
		ok = !nomem && EVP_DigestSignInit(md, NULL, NULL, NULL, g->pkey) == 1 &&
		     EVP_DigestSign(md, NULL, &siglen, digest, dlen) == 1;
		nomem = nomem || (ok && (sig = mem_alloc(siglen)) == NULL);
		ok = ok && !nomem && EVP_DigestSign(md, sig, &siglen, digest, dlen) == 1;
	} else {
		/* PKCS#1 v1.5: DigestInfo(SHA-256, digest) padded and signed. */
		pc = EVP_PKEY_CTX_new(g->pkey, NULL);
		nomem = pc == NULL;
		ok = !nomem && EVP_PKEY_sign_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
		     EVP_PKEY_sign(pc, NULL, &siglen, digest, dlen) == 1;
		nomem = nomem || (ok && (sig = mem_alloc(siglen)) == NULL);
		ok = ok && !nomem && EVP_PKEY_sign(pc, sig, &siglen, digest, dlen) == 1;
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(pc);
	if (ok && (out = b64(sig, siglen)) == NULL)
		nomem = true;
	if (nomem) {
		sign_nomem(s);
	} else if (!ok) {
		unsigned long e = ERR_get_error();
		char reason[160] = "unknown error";

		if (e != 0)
			ERR_error_string_n(e, reason, sizeof(reason));
		snprintf(s->error, sizeof(s->error), "%s signing failed: %s",
			 dkim_alg_name(g->alg), reason);
	}
	ERR_clear_error();
	free(sig);
	return out;
}

/*
 * The h= list: each listed name as many times as it occurs, From once
 * more, an absent name once. *nh names (pointers into s->names) into a
 * new array; NULL when out of memory.
 */
static const char **h_list(const struct dkim_sign *s, const struct dkim_hdrs *h, size_t *nh)
{
	const char **list;
	size_t n = 0, total = 0;

	for (size_t i = 0; i < s->nnames; i++) {
		size_t c = dkim_hdrs_count(h, s->names[i], strlen(s->names[i]));

		total += strcmp(s->names[i], "from") == 0 ? c + 1 : (c == 0 ? 1 : c);
	}
	list = mem_calloc(total, sizeof(*list));
	if (list == NULL)
		return NULL;
	for (size_t i = 0; i < s->nnames; i++) {
		size_t c = dkim_hdrs_count(h, s->names[i], strlen(s->names[i]));

		c = strcmp(s->names[i], "from") == 0 ? c + 1 : (c == 0 ? 1 : c);
		while (c-- > 0)
			list[n++] = s->names[i];
	}
	*nh = n;
	return list;
}

int dkim_sign_finish(struct dkim_sign *s, char **header_out, size_t *len, char *err,
		     size_t errlen)
{
	struct dkim_hdrs h = { 0 };
	struct text out = { 0 };
	EVP_MD_CTX *base = NULL, *md = NULL;
	const char **hnames = NULL;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char *bh = NULL;
	size_t nh = 0, slen;
	long *idx = NULL;
	int rc = -1;

	*header_out = NULL;
	*len = 0;
	if (s->phase == PH_DONE)
		abort();
	if (!s->fed)
		(void)dkim_sign_feed(s, "", 0);
	dkim_body_canon_finish(&s->body);
	s->phase = PH_DONE;
	if (s->failed)
		goto out;

	/* The body hash, shared by every signature. */
	if (EVP_DigestFinal_ex(s->bh, digest, &dlen) != 1) {
		sign_fail(s, "SHA-256 of the body failed");
		goto out;
	}
	if ((bh = b64(digest, dlen)) == NULL) {
		sign_nomem(s);
		goto out;
	}

	/* The header section without the empty line (absent when the
	 * message had no body). */
	slen = s->hlen;
	if (slen >= 2 && s->hbuf[slen - 2] == '\r' && s->hbuf[slen - 1] == '\n' &&
	    (slen == 2 || (slen >= 4 && s->hbuf[slen - 4] == '\r' &&
			   s->hbuf[slen - 3] == '\n')))
		slen -= 2;
	if (dkim_hdrs_parse(s->hbuf != NULL ? s->hbuf : "", slen, &h, s->error,
			    sizeof(s->error)) < 0) {
		s->failed = true;
		s->nomem = errno == ENOMEM;
		goto out;
	}
	if (dkim_hdrs_count(&h, "from", 4) == 0) {
		sign_fail(s, "the message has no From: header field");
		goto out;
	}

	/* The canonical signed fields, hashed once for every signature. */
	hnames = h_list(s, &h, &nh);
	idx = hnames != NULL ? mem_calloc(nh, sizeof(*idx)) : NULL;
	base = EVP_MD_CTX_new();
	md = EVP_MD_CTX_new();
	if (idx == NULL || base == NULL || md == NULL) { /* EVP_MD_CTX_new: memory only */
		sign_nomem(s);
		goto out;
	}
	dkim_hdrs_select(&h, hnames, nh, idx);
	if (EVP_DigestInit_ex(base, EVP_sha256(), NULL) != 1) {
		sign_fail(s, "cannot start SHA-256");
		goto out;
	}
	for (size_t i = 0; i < nh; i++) {
		if (idx[i] >= 0) { /* -1: an oversigned name, nothing to hash */
			const struct dkim_hfield *f = &h.f[idx[i]];

			dkim_canon_header(s->hcanon, f->raw, f->raw_len, true, hash_out, base);
		}
	}

	for (size_t k = 0; k < s->nsig; k++) {
		const struct dkim_sig *g = &s->sig[k];
		size_t start = out.len;
		char *b;

		out.col = 0;
		sig_text(s, g, hnames, nh, bh, &out);
		if (out.nomem) {
			sign_nomem(s);
			goto out;
		}
		if (EVP_MD_CTX_copy_ex(md, base) != 1) {
			sign_fail(s, "cannot copy the SHA-256 state");
			goto out;
		}
		/* The field itself, b= empty, no final CRLF (§3.7). */
		dkim_canon_header(s->hcanon, out.p + start, out.len - start, false, hash_out,
				  md);
		if (EVP_DigestFinal_ex(md, digest, &dlen) != 1) {
			sign_fail(s, "SHA-256 of the header fields failed");
			goto out;
		}
		b = sign_digest(s, g, digest, dlen);
		if (b == NULL) {
			s->failed = true;
			goto out;
		}
		text_b64_folded(&out, b);
		free(b);
		if (out.nomem) {
			sign_nomem(s);
			goto out;
		}
	}
	*header_out = out.p;
	*len = out.len;
	out.p = NULL;
	rc = 0;
out:
	if (rc < 0) {
		set_err(err, errlen, "%s", s->error);
		errno = s->nomem ? ENOMEM : EINVAL;
	}
	free(out.p);
	free(bh);
	free(idx);
	free(hnames);
	dkim_hdrs_free(&h);
	EVP_MD_CTX_free(base);
	EVP_MD_CTX_free(md);
	return rc;
}
