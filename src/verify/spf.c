/*
 * spf: RFC 7208 check_host() as a state machine (spf.h). The check is a
 * stack of frames, one per check_host() in progress (the top one and an
 * include's); redirect= replaces the frame it ends. A frame's record is
 * fetched, parsed whole (a syntax error anywhere is a permerror before any
 * term is evaluated), then its terms are evaluated in order. A term that
 * needs the DNS sets c->wait and returns; spf_answer handles the answer
 * according to c->wait and the next spf_step resumes where it stopped:
 * each step below may be entered again after an answer, and does only what
 * is still to do (c->counted, c->target_ready, c->mx_loaded, c->pstate).
 *
 * temperror and permerror end the whole check at once, from any depth
 * (RFC 7208 5.2: an include passes them up unchanged).
 */
#include "verify/spf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

#define EXPAND_MAX 4096 /* octets of one macro expansion before it is a permerror */
#define LOCAL_MAX 256   /* octets of <sender>'s local part kept */
#define PARTS_MAX 600   /* parts of a macro value split at its delimiters */

enum mech { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };

struct term {
	enum mech mech;
	char qual;           /* '+', '-', '~', '?' */
	unsigned start, len; /* the term as written, in the record */
	unsigned spec, spec_len; /* domain-spec in the record; spec_len 0: none */
	unsigned cidr4, cidr6;
	unsigned char net[16]; /* ip4 (first 4), ip6 */
};

/* A record's terms and modifiers; offsets point into the record. */
struct parsed {
	struct term terms[SPF_TERMS_MAX];
	size_t nterms;
	bool has_redirect, has_exp;
	unsigned redirect, redirect_len, exp, exp_len; /* domain-specs */
};

struct frame {
	char domain[SPF_NAME_MAX + 1];
	bool loaded;     /* record fetched and parsed */
	bool redirected; /* this check_host() came from redirect= */
	char *record;    /* SPF_RECORD_MAX + 1 */
	size_t record_len;
	struct parsed p;
	size_t next;     /* the term to evaluate */
};

enum wait { W_NONE, W_RECORD, W_A, W_EXISTS, W_MX, W_MX_ADDR, W_PTR, W_PTR_FWD, W_EXP };
enum phase { PH_RUN, PH_EXP_DOMAIN, PH_EXP_TEXT };
enum pstate { P_IDLE, P_PTR, P_FWD, P_DONE };

struct spf {
	/* the identity */
	int family; /* 4 or 6 */
	unsigned char ip[16];
	char domain[SPF_NAME_MAX + 1];
	char local[LOCAL_MAX + 1];
	char sender_domain[SPF_NAME_MAX + 1];
	char helo[SPF_NAME_MAX + 1];
	char receiver[SPF_NAME_MAX + 1];
	time_t now;
	bool now_set;

	/* the evaluation */
	struct frame *fr[SPF_DEPTH_MAX];
	int depth;
	enum phase phase;
	enum wait wait;
	struct spf_query q;
	unsigned lookups, voids, queries;
	bool done;

	/* the term in progress */
	bool counted;      /* counted toward SPF_LOOKUPS_MAX */
	bool target_ready; /* c->target holds its expanded domain-spec */
	bool target_bad;   /* ... which is not a usable name */
	char target[SPF_NAME_MAX + 1];
	bool mx_loaded;
	char mx[SPF_MX_MAX][SPF_NAME_MAX + 1];
	size_t nmx, imx;

	/* validated names of the client (ptr, %{p}), found once */
	enum pstate pstate;
	bool ptr_for_mech; /* the PTR lookup was started by a ptr mechanism */
	char ptr[SPF_PTR_MAX][SPF_NAME_MAX + 1];
	size_t nptr, iptr;
	char valid[SPF_PTR_MAX][SPF_NAME_MAX + 1];
	size_t nvalid;

	/* exp= */
	char exp_target[SPF_NAME_MAX + 1];
	bool exp_target_ready;
	char *exp_text;
	size_t exp_len;

	/* the outcome */
	struct spf_outcome out;
	char mechanism[128];
	char reason[SPF_REASON_MAX];
	char explanation[SPF_EXPLAIN_MAX + 1];
};

/* ---- small helpers ---- */

static char lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static bool is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_alnum(char ch)
{
	return is_alpha(ch) || is_digit(ch);
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Is name equal to dom, or a subdomain of it (any case)? */
static bool name_within(const char *name, const char *dom)
{
	size_t n = strlen(name), d = strlen(dom);
	if (n < d || !ieq(name + n - d, d, dom))
		return false;
	return n == d || name[n - d - 1] == '.';
}

static void cut_copy(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

const char *spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_NONE: return "none";
	case SPF_NEUTRAL: return "neutral";
	case SPF_PASS: return "pass";
	case SPF_FAIL: return "fail";
	case SPF_SOFTFAIL: return "softfail";
	case SPF_TEMPERROR: return "temperror";
	case SPF_PERMERROR: return "permerror";
	}
	return "?";
}

bool spf_result_parse(const char *name, enum spf_result *out)
{
	for (int r = SPF_NONE; r <= SPF_PERMERROR; r++)
		if (ieq(name, strlen(name), spf_result_name((enum spf_result)r))) {
			*out = (enum spf_result)r;
			return true;
		}
	return false;
}

const char *spf_qtype_name(enum spf_qtype t)
{
	switch (t) {
	case SPF_Q_TXT: return "TXT";
	case SPF_Q_A: return "A";
	case SPF_Q_AAAA: return "AAAA";
	case SPF_Q_MX: return "MX";
	case SPF_Q_PTR: return "PTR";
	}
	return "?";
}

/*
 * A name we may query: labels of 1..63 of letters, digits, '-', '_' (and
 * whatever a macro put there that is printable), 253 octets in all, no
 * final dot (the caller strips it). multi: at least two labels.
 */
static bool name_ok(const char *s, size_t len, bool strict, bool multi)
{
	if (len == 0 || len > SPF_NAME_MAX)
		return false;
	size_t label = 0, labels = 1;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			labels++;
			continue;
		}
		if (strict ? !(is_alnum(ch) || ch == '-' || ch == '_')
			   : ((unsigned char)ch <= 0x20 || (unsigned char)ch >= 0x7f))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && (!multi || labels >= 2);
}

/* ---- the outcome ---- */

static void finish(struct spf *c, enum spf_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void finish(struct spf *c, enum spf_result r, const char *fmt, ...)
{
	if (c->done)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	c->out.result = r;
	c->done = true;
	c->wait = W_NONE;
	if (r == SPF_TEMPERROR || r == SPF_PERMERROR || r == SPF_NONE)
		c->mechanism[0] = '\0';
}

const struct spf_outcome *spf_result(const struct spf *c)
{
	return &c->out;
}

void spf_abort(struct spf *c, const char *why)
{
	finish(c, SPF_TEMPERROR, "%s", why ? why : "aborted");
}

/* Memory ran out (ours, or the resolver's): temperror, marked so that the
 * caller can tell it from the sender's DNS trouble. */
static void out_of_memory(struct spf *c)
{
	if (c->done)
		return;
	finish(c, SPF_TEMPERROR, "out of memory");
	c->out.out_of_memory = true;
}

/* ---- construction ---- */

static void set_ip(struct spf *c, const struct sockaddr *sa)
{
	c->family = 4;
	memset(c->ip, 0, sizeof(c->ip));
	if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(c->ip, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			c->family = 6;
			memcpy(c->ip, &s6->sin6_addr, 16);
		}
	} else if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		memcpy(c->ip, &s4->sin_addr, 4);
	}
}

bool spf_parse_ip(const char *text, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)out;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)out;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

struct spf *spf_new(const struct sockaddr *client, const char *domain, const char *sender,
		    const char *helo)
{
	struct spf *c = mem_calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	set_ip(c, client);
	strlcpy_safe(c->receiver, "unknown", sizeof(c->receiver));
	strlcpy_safe(c->helo, helo ? helo : "", sizeof(c->helo));
	size_t dlen = domain ? strlen(domain) : 0;
	if (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	bool ok = dlen <= SPF_NAME_MAX && name_ok(domain ? domain : "", dlen, true, true);
	cut_copy(c->domain, sizeof(c->domain), domain ? domain : "", dlen);
	/* <sender>: local part before the last '@', "postmaster" if none. */
	const char *s = sender ? sender : "";
	const char *at = strrchr(s, '@');
	size_t llen = at ? (size_t)(at - s) : 0;
	if (llen == 0)
		strlcpy_safe(c->local, "postmaster", sizeof(c->local));
	else
		cut_copy(c->local, sizeof(c->local), s, llen);
	strlcpy_safe(c->sender_domain, at ? at + 1 : c->domain, sizeof(c->sender_domain));
	if (c->sender_domain[0] == '\0')
		strlcpy_safe(c->sender_domain, c->domain, sizeof(c->sender_domain));
	c->out.domain = c->domain;
	c->out.mechanism = c->mechanism;
	c->out.reason = c->reason;
	c->out.explanation = c->explanation;
	if (!ok) {
		finish(c, SPF_NONE, "no valid domain to check (\"%s\")", c->domain);
		return c;
	}
	if ((c->fr[0] = mem_calloc(1, sizeof(struct frame))) == NULL) {
		free(c);
		return NULL;
	}
	strlcpy_safe(c->fr[0]->domain, c->domain, sizeof(c->fr[0]->domain));
	c->depth = 1;
	return c;
}

struct spf *spf_new_mailfrom(const struct sockaddr *client, const char *mailfrom,
			     const char *helo)
{
	const char *at = mailfrom ? strrchr(mailfrom, '@') : NULL;
	if (at == NULL || at[1] == '\0')
		return spf_new_helo(client, helo);
	return spf_new(client, at + 1, mailfrom, helo);
}

struct spf *spf_new_helo(const struct sockaddr *client, const char *helo)
{
	return spf_new(client, helo ? helo : "", "", helo);
}

static void frame_free(struct frame *f)
{
	if (f) {
		free(f->record);
		free(f);
	}
}

void spf_free(struct spf *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < SPF_DEPTH_MAX; i++)
		frame_free(c->fr[i]);
	free(c->exp_text);
	free(c);
}

void spf_set_receiver(struct spf *c, const char *name)
{
	strlcpy_safe(c->receiver, name, sizeof(c->receiver));
}

void spf_set_time(struct spf *c, time_t now)
{
	c->now = now;
	c->now_set = true;
}

/* ---- record syntax (RFC 7208 section 12) ---- */

static bool macro_letter(char ch, bool explain)
{
	switch (lower(ch)) {
	case 's': case 'l': case 'o': case 'd': case 'i': case 'p': case 'h': case 'v':
		return true;
	case 'c': case 'r': case 't':
		return explain;
	default:
		return false;
	}
}

static bool delimiter(char ch)
{
	return ch == '.' || ch == '-' || ch == '+' || ch == ',' || ch == '/' || ch == '_' ||
	       ch == '=';
}

/*
 * One macro-expand at s[0] == '%': its length, or 0 when malformed. The
 * parts of "%{...}" go to *letter, *digits (0 when absent), *rev, and
 * the delimiters to [*dl, *dl + *dlen).
 */
static size_t macro_at(const char *s, size_t len, bool explain, char *letter,
		       unsigned *digits, bool *rev, size_t *dl, size_t *dlen)
{
	if (len < 2)
		return 0;
	if (s[1] == '%' || s[1] == '_' || s[1] == '-') {
		*letter = s[1];
		return 2;
	}
	if (s[1] != '{' || len < 4 || !macro_letter(s[2], explain))
		return 0;
	*letter = s[2];
	size_t i = 3;
	unsigned n = 0;
	bool any = false;
	while (i < len && is_digit(s[i])) {
		if (n < 1000)
			n = n * 10 + (unsigned)(s[i] - '0');
		any = true;
		i++;
	}
	if (any && n == 0)
		return 0; /* "If a DIGIT is specified, the value MUST be nonzero" */
	*digits = n;
	*rev = false;
	if (i < len && lower(s[i]) == 'r') {
		*rev = true;
		i++;
	}
	*dl = i;
	while (i < len && delimiter(s[i]))
		i++;
	*dlen = i - *dl;
	if (i >= len || s[i] != '}')
		return 0;
	return i + 1;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static bool toplabel(const char *s, size_t len)
{
	if (len == 0)
		return false;
	bool alpha = false, dash = false;
	for (size_t i = 0; i < len; i++) {
		if (is_alpha(s[i]))
			alpha = true;
		else if (s[i] == '-')
			dash = true;
		else if (!is_digit(s[i]))
			return false;
	}
	if (!dash)
		return alpha;
	return is_alnum(s[0]) && is_alnum(s[len - 1]);
}

/*
 * macro-string (domain: also domain-end, RFC 7208 7.1; explain: the
 * explain-string of an exp= TXT record, with spaces and c, r, t).
 */
static bool macro_string_ok(const char *s, size_t len, bool domain, bool explain)
{
	size_t i = 0;
	bool last_macro = false;
	while (i < len) {
		if (s[i] == '%') {
			char letter;
			unsigned digits;
			bool rev;
			size_t dl, dlen;
			size_t n = macro_at(s + i, len - i, explain, &letter, &digits, &rev, &dl,
					    &dlen);
			if (n == 0)
				return false;
			i += n;
			last_macro = true;
			continue;
		}
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 0x21 && ch <= 0x7e) || (explain && ch == ' ')))
			return false;
		last_macro = false;
		i++;
	}
	if (!domain)
		return true;
	if (last_macro)
		return true;
	/* domain-end = "." toplabel [ "." ] */
	size_t end = len;
	if (end > 0 && s[end - 1] == '.')
		end--;
	size_t dot = end;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	if (dot == 0)
		return false; /* no "." before the top label */
	/* the top label must be literal text, not the tail of a macro */
	for (size_t k = dot; k < end; k++)
		if (s[k] == '%' || s[k] == '{' || s[k] == '}')
			return false;
	return toplabel(s + dot, end - dot);
}

/* "/" ("0" / %x31-39 0*(maxdigits-1)DIGIT), value <= max; length or 0. */
static size_t cidr_at(const char *s, size_t len, unsigned max, unsigned *out)
{
	if (len < 2 || s[0] != '/' || !is_digit(s[1]))
		return 0;
	if (s[1] == '0') {
		if (len > 2 && is_digit(s[2]))
			return 0;
		*out = 0;
		return 2;
	}
	unsigned v = 0;
	size_t i = 1;
	while (i < len && is_digit(s[i]) && i <= 3) {
		v = v * 10 + (unsigned)(s[i] - '0');
		i++;
	}
	if ((i < len && is_digit(s[i])) || v > max)
		return 0;
	*out = v;
	return i;
}

/* End of a domain-spec starting at s: the first '/' outside "%{...}". */
static size_t spec_end(const char *s, size_t len)
{
	bool in_macro = false;
	for (size_t i = 0; i < len; i++) {
		if (in_macro) {
			if (s[i] == '}')
				in_macro = false;
		} else if (s[i] == '%' && i + 1 < len && s[i + 1] == '{') {
			in_macro = true;
			i++;
		} else if (s[i] == '%' && i + 1 < len) {
			i++; /* %%, %_, %- */
		} else if (s[i] == '/') {
			return i;
		}
	}
	return len;
}

static int term_error(char *err, size_t errlen, const char *what, const char *t, size_t tlen)
{
	snprintf(err, errlen, "%s \"%.*s\"", what, (int)(tlen > 60 ? 60 : tlen), t);
	return -1;
}

/* One term at rec[off..off+tlen). 0, or -1 with err filled. */
static int parse_term(const char *rec, unsigned off, unsigned tlen, struct parsed *p,
		      char *err, size_t errlen)
{
	const char *t = rec + off;
	size_t i = 0;
	char qual = '+';
	bool qualified = false;
	if (t[0] == '+' || t[0] == '-' || t[0] == '~' || t[0] == '?') {
		qual = t[0];
		qualified = true;
		i = 1;
	}
	size_t name = i;
	while (i < tlen && (is_alnum(t[i]) || t[i] == '-' || t[i] == '_' || t[i] == '.'))
		i++;
	size_t name_len = i - name;
	if (name_len == 0)
		return term_error(err, errlen, "malformed term", t, tlen);

	if (i < tlen && t[i] == '=') {
		/* modifier */
		if (qualified || !is_alpha(t[name]))
			return term_error(err, errlen, "malformed modifier", t, tlen);
		const char *v = t + i + 1;
		unsigned vlen = tlen - (unsigned)i - 1, voff = off + (unsigned)i + 1;
		if (ieq(t + name, name_len, "redirect") || ieq(t + name, name_len, "exp")) {
			bool redirect = lower(t[name]) == 'r';
			if (redirect ? p->has_redirect : p->has_exp)
				return term_error(err, errlen, "repeated modifier", t, tlen);
			if (!macro_string_ok(v, vlen, true, false))
				return term_error(err, errlen, "bad domain-spec in", t, tlen);
			if (redirect) {
				p->has_redirect = true;
				p->redirect = voff;
				p->redirect_len = vlen;
			} else {
				p->has_exp = true;
				p->exp = voff;
				p->exp_len = vlen;
			}
			return 0;
		}
		if (!macro_string_ok(v, vlen, false, false))
			return term_error(err, errlen, "bad macro-string in", t, tlen);
		return 0; /* unknown modifiers are ignored (RFC 7208 6) */
	}

	if (p->nterms == SPF_TERMS_MAX)
		return term_error(err, errlen, "too many terms at", t, tlen);
	struct term *m = &p->terms[p->nterms];
	memset(m, 0, sizeof(*m));
	m->qual = qual;
	m->start = off;
	m->len = tlen;
	m->cidr4 = 32;
	m->cidr6 = 128;
	const char *nm = t + name;
	const char *r = t + i; /* after the name */
	size_t rlen = tlen - i;
	bool spec_opt = false, spec_req = false, dual = false;
	if (ieq(nm, name_len, "all")) {
		m->mech = M_ALL;
	} else if (ieq(nm, name_len, "include")) {
		m->mech = M_INCLUDE, spec_req = true;
	} else if (ieq(nm, name_len, "exists")) {
		m->mech = M_EXISTS, spec_req = true;
	} else if (ieq(nm, name_len, "a")) {
		m->mech = M_A, spec_opt = true, dual = true;
	} else if (ieq(nm, name_len, "mx")) {
		m->mech = M_MX, spec_opt = true, dual = true;
	} else if (ieq(nm, name_len, "ptr")) {
		m->mech = M_PTR, spec_opt = true;
	} else if (ieq(nm, name_len, "ip4") || ieq(nm, name_len, "ip6")) {
		bool v6 = nm[2] == '6';
		m->mech = v6 ? M_IP6 : M_IP4;
		if (rlen < 2 || r[0] != ':')
			return term_error(err, errlen, "missing address in", t, tlen);
		size_t alen = 1;
		while (alen < rlen && r[alen] != '/')
			alen++;
		char addr[64];
		if (alen - 1 >= sizeof(addr))
			return term_error(err, errlen, "bad address in", t, tlen);
		memcpy(addr, r + 1, alen - 1);
		addr[alen - 1] = '\0';
		if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, m->net) != 1)
			return term_error(err, errlen, "bad address in", t, tlen);
		if (alen < rlen) {
			unsigned v;
			size_t n = cidr_at(r + alen, rlen - alen, v6 ? 128 : 32, &v);
			if (n == 0 || alen + n != rlen)
				return term_error(err, errlen, "bad prefix length in", t, tlen);
			if (v6)
				m->cidr6 = v;
			else
				m->cidr4 = v;
		}
		p->nterms++;
		return 0;
	} else {
		return term_error(err, errlen, "unknown mechanism", t, tlen);
	}

	size_t k = 0;
	if (k < rlen && r[k] == ':') {
		if (!spec_opt && !spec_req)
			return term_error(err, errlen, "unexpected argument in", t, tlen);
		size_t e = dual ? spec_end(r + 1, rlen - 1) : rlen - 1;
		if (!macro_string_ok(r + 1, e, true, false))
			return term_error(err, errlen, "bad domain-spec in", t, tlen);
		m->spec = off + (unsigned)i + 1;
		m->spec_len = (unsigned)e;
		k = 1 + e;
	} else if (spec_req) {
		return term_error(err, errlen, "missing domain in", t, tlen);
	}
	if (dual && k < rlen) {
		/* dual-cidr-length = ip4-cidr-length / ip6-cidr-length /
		 * ( ip4-cidr-length "/" ip6-cidr-length ) */
		unsigned v;
		size_t n;
		if (rlen - k >= 2 && r[k] == '/' && r[k + 1] != '/') {
			if ((n = cidr_at(r + k, rlen - k, 32, &v)) == 0)
				return term_error(err, errlen, "bad prefix length in", t, tlen);
			m->cidr4 = v;
			k += n;
		}
		if (k < rlen) {
			if (rlen - k < 3 || r[k] != '/' ||
			    (n = cidr_at(r + k + 1, rlen - k - 1, 128, &v)) == 0)
				return term_error(err, errlen, "bad prefix length in", t, tlen);
			m->cidr6 = v;
			k += 1 + n;
		}
	}
	if (k != rlen)
		return term_error(err, errlen, "malformed term", t, tlen);
	p->nterms++;
	return 0;
}

/* Is rec an SPF record: "v=spf1" then a space or the end? */
static bool is_spf_record(const char *rec, size_t len)
{
	return len >= 6 && ieq(rec, 6, "v=spf1") && (len == 6 || rec[6] == ' ');
}

/* A whole record (known to start with v=spf1). 0 or -1 with err. */
static int parse_record(const char *rec, size_t len, struct parsed *p, char *err,
			size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (len > SPF_RECORD_MAX) {
		snprintf(err, errlen, "record longer than %d octets", SPF_RECORD_MAX);
		return -1;
	}
	size_t i = 6;
	while (i < len) {
		if (rec[i] != ' ') {
			snprintf(err, errlen, "unexpected octet 0x%02x", (unsigned char)rec[i]);
			return -1;
		}
		while (i < len && rec[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t s = i;
		while (i < len && rec[i] != ' ')
			i++;
		if (parse_term(rec, (unsigned)s, (unsigned)(i - s), p, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int spf_record_check(const char *text, size_t len, char *err, size_t errlen)
{
	if (!is_spf_record(text, len))
		return 1;
	struct parsed p;
	return parse_record(text, len, &p, err, errlen);
}

/* ---- macros (RFC 7208 section 7) ---- */

struct obuf {
	char *p;
	size_t len, cap;
	bool over;
};

static void oput(struct obuf *o, const char *s, size_t n)
{
	if (o->len + n >= o->cap) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void ip_text(const struct spf *c, bool dotted6, char *out, size_t cap)
{
	if (c->family == 4) {
		inet_ntop(AF_INET, c->ip, out, (socklen_t)cap);
		return;
	}
	if (!dotted6) {
		inet_ntop(AF_INET6, c->ip, out, (socklen_t)cap);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	for (int i = 0; i < 16 && n + 4 < cap; i++) {
		out[n++] = hex[c->ip[i] >> 4];
		out[n++] = '.';
		out[n++] = hex[c->ip[i] & 15];
		out[n++] = '.';
	}
	out[n > 0 ? n - 1 : 0] = '\0';
}

/* The validated name for %{p} given <domain> (RFC 7208 7.3). */
static const char *p_value(const struct spf *c, const char *domain)
{
	if (c->pstate != P_DONE || c->nvalid == 0)
		return "unknown";
	for (size_t i = 0; i < c->nvalid; i++)
		if (ieq(c->valid[i], strlen(c->valid[i]), domain))
			return c->valid[i];
	for (size_t i = 0; i < c->nvalid; i++)
		if (name_within(c->valid[i], domain))
			return c->valid[i];
	return c->valid[0];
}

/* Appends value transformed by digits, reversal and delimiters; url: the
 * macro letter was upper-case, so the result is URL-escaped. */
static void put_transformed(struct obuf *o, const char *val, unsigned digits, bool rev,
			    const char *delims, size_t ndelims, bool url)
{
	size_t vlen = strlen(val);
	/* split into parts */
	size_t starts[PARTS_MAX], lens[PARTS_MAX], n = 0;
	size_t s = 0;
	for (size_t i = 0; i <= vlen; i++) {
		bool d = i == vlen;
		if (!d) {
			if (ndelims == 0)
				d = val[i] == '.';
			else
				d = memchr(delims, val[i], ndelims) != NULL;
		}
		if (!d)
			continue;
		if (n == PARTS_MAX) {
			o->over = true;
			return;
		}
		starts[n] = s;
		lens[n] = i - s;
		n++;
		s = i + 1;
	}
	size_t keep = digits == 0 || digits > n ? n : digits;
	/* after reversal the rightmost `keep` parts */
	char tmp[EXPAND_MAX];
	struct obuf t = { tmp, 0, sizeof(tmp), false };
	tmp[0] = '\0';
	for (size_t k = n - keep; k < n; k++) {
		size_t idx = rev ? n - 1 - k : k;
		if (k > n - keep)
			oput(&t, ".", 1);
		oput(&t, val + starts[idx], lens[idx]);
	}
	if (t.over) {
		o->over = true;
		return;
	}
	if (!url) {
		oput(o, tmp, t.len);
		return;
	}
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < t.len; i++) {
		char ch = tmp[i];
		if (is_alnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			oput(o, &ch, 1);
		} else {
			char e[3] = { '%', hex[(unsigned char)ch >> 4], hex[(unsigned char)ch & 15] };
			oput(o, e, 3);
		}
	}
}

/*
 * Expands s[0..len) with <domain> = domain into o. 0; -1 syntax error;
 * -2 too long; 1: %{p} is needed and the names are not validated yet
 * (only when need_p is non-NULL; else "unknown").
 */
static int expand(struct spf *c, const char *domain, const char *s, size_t len,
		  bool explain, struct obuf *o, bool *need_p)
{
	for (size_t i = 0; i < len;) {
		if (s[i] != '%') {
			size_t j = i;
			while (j < len && s[j] != '%')
				j++;
			oput(o, s + i, j - i);
			i = j;
			continue;
		}
		char letter;
		unsigned digits = 0;
		bool rev = false;
		size_t dl = 0, dlen = 0;
		size_t n = macro_at(s + i, len - i, explain, &letter, &digits, &rev, &dl, &dlen);
		if (n == 0)
			return -1;
		if (n == 2) {
			oput(o, letter == '%' ? "%" : letter == '_' ? " " : "%20",
			     letter == '-' ? 3 : 1);
			i += 2;
			continue;
		}
		char buf[SPF_NAME_MAX * 2 + 80];
		const char *val = "";
		switch (lower(letter)) {
		case 's':
			snprintf(buf, sizeof(buf), "%s@%s", c->local, c->sender_domain);
			val = buf;
			break;
		case 'l': val = c->local; break;
		case 'o': val = c->sender_domain; break;
		case 'd': val = domain; break;
		case 'i': ip_text(c, true, buf, sizeof(buf)); val = buf; break;
		case 'c': ip_text(c, false, buf, sizeof(buf)); val = buf; break;
		case 'v': val = c->family == 4 ? "in-addr" : "ip6"; break;
		case 'h': val = c->helo[0] ? c->helo : "unknown"; break;
		case 'r': val = c->receiver; break;
		case 't':
			snprintf(buf, sizeof(buf), "%lld",
				 (long long)(c->now_set ? c->now : time(NULL)));
			val = buf;
			break;
		case 'p':
			if (need_p && c->pstate != P_DONE) {
				*need_p = true;
				return 1;
			}
			val = p_value(c, domain);
			break;
		default:
			return -1;
		}
		put_transformed(o, val, digits, rev, s + i + dl, dlen,
				letter >= 'A' && letter <= 'Z');
		i += n;
	}
	return o->over ? -2 : 0;
}

int spf_macro_expand(struct spf *c, const char *s, size_t len, bool is_domain, char *out,
		     size_t outlen)
{
	if (outlen == 0 || !macro_string_ok(s, len, is_domain, !is_domain))
		return -1;
	struct obuf o = { out, 0, outlen, false };
	out[0] = '\0';
	int rc = expand(c, c->domain, s, len, !is_domain, &o, NULL);
	return rc == 0 ? (int)o.len : -1;
}

/* ---- DNS queries ---- */

static void ask(struct spf *c, enum spf_qtype type, const char *name, enum wait w)
{
	if (c->queries >= SPF_QUERIES_MAX) {
		finish(c, SPF_PERMERROR, "more than %d DNS queries", SPF_QUERIES_MAX);
		return;
	}
	c->queries++;
	c->q.type = type;
	strlcpy_safe(c->q.name, name, sizeof(c->q.name));
	c->wait = w;
}

/* A lookup that found nothing: counts toward the void limit. false when
 * the check has just ended with permerror. */
static bool void_lookup(struct spf *c, const char *name)
{
	c->voids++;
	c->out.void_lookups = c->voids;
	if (c->voids > SPF_VOID_MAX) {
		finish(c, SPF_PERMERROR, "more than %d void DNS lookups (the last: %s)",
		       SPF_VOID_MAX, name);
		return false;
	}
	return true;
}

static bool ip_in(const struct spf *c, const unsigned char *addr, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;
	if (memcmp(c->ip, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->ip[full] & mask) == (addr[full] & mask);
}

/* ---- validated names: the ptr mechanism and %{p} (RFC 7208 5.5) ---- */

/* Advances the validation; true when it is complete. */
static bool validate(struct spf *c)
{
	if (c->pstate == P_DONE)
		return true;
	if (c->pstate == P_IDLE) {
		char rev[80];
		size_t n = 0;
		if (c->family == 4) {
			snprintf(rev, sizeof(rev), "%u.%u.%u.%u.in-addr.arpa", c->ip[3], c->ip[2],
				 c->ip[1], c->ip[0]);
		} else {
			static const char hex[] = "0123456789abcdef";
			for (int i = 15; i >= 0; i--) {
				rev[n++] = hex[c->ip[i] & 15];
				rev[n++] = '.';
				rev[n++] = hex[c->ip[i] >> 4];
				rev[n++] = '.';
			}
			memcpy(rev + n, "ip6.arpa", sizeof("ip6.arpa"));
		}
		c->pstate = P_PTR;
		ask(c, SPF_Q_PTR, rev, W_PTR);
		return false;
	}
	if (c->pstate == P_FWD) {
		if (c->iptr < c->nptr) {
			ask(c, c->family == 4 ? SPF_Q_A : SPF_Q_AAAA, c->ptr[c->iptr], W_PTR_FWD);
			return false;
		}
		c->pstate = P_DONE;
		return true;
	}
	return false; /* P_PTR: waiting */
}

static void on_ptr(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n)
{
	c->nptr = c->iptr = 0;
	if (st == DNS_OK) {
		for (size_t i = 0; i < n && c->nptr < SPF_PTR_MAX; i++) {
			size_t len = rr[i].len;
			if (len > 0 && rr[i].text[len - 1] == '.')
				len--;
			if (!name_ok(rr[i].text, len, false, false))
				continue;
			cut_copy(c->ptr[c->nptr], sizeof(c->ptr[0]), rr[i].text, len);
			c->nptr++;
		}
	}
	if (c->ptr_for_mech && (st == DNS_NXDOMAIN || st == DNS_NODATA || (st == DNS_OK && n == 0)))
		if (!void_lookup(c, c->q.name))
			return;
	/* A DNS error: no validated names (the mechanism does not match, %{p}
	 * is "unknown"). */
	c->pstate = c->nptr > 0 ? P_FWD : P_DONE;
}

static void on_ptr_fwd(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n)
{
	if (st == DNS_OK) {
		size_t alen = c->family == 4 ? 4 : 16;
		for (size_t i = 0; i < n; i++)
			if (memcmp(rr[i].addr, c->ip, alen) == 0) {
				memcpy(c->valid[c->nvalid++], c->ptr[c->iptr], sizeof(c->valid[0]));
				break;
			}
	}
	c->iptr++; /* errors: that name is skipped */
}

/* ---- evaluation ---- */

static struct frame *top(struct spf *c)
{
	return c->fr[c->depth - 1];
}

static void term_reset(struct spf *c)
{
	c->counted = false;
	c->target_ready = false;
	c->target_bad = false;
	c->mx_loaded = false;
	c->nmx = c->imx = 0;
}

static enum spf_result of_qual(char q)
{
	switch (q) {
	case '-': return SPF_FAIL;
	case '~': return SPF_SOFTFAIL;
	case '?': return SPF_NEUTRAL;
	default: return SPF_PASS;
	}
}

static void term_done(struct spf *c, bool matched);

/* A check_host() in progress ends with r (not temperror/permerror). */
static void frame_result(struct spf *c, enum spf_result r, const struct term *t)
{
	struct frame *f = top(c);
	char ip[INET6_ADDRSTRLEN];
	ip_text(c, false, ip, sizeof(ip));
	if (c->depth == 1) {
		if (t) {
			cut_copy(c->mechanism, sizeof(c->mechanism), f->record + t->start, t->len);
			snprintf(c->reason, sizeof(c->reason), "%s matched %s in the record of %s",
				 ip, c->mechanism, f->domain);
		} else {
			c->mechanism[0] = '\0';
			snprintf(c->reason, sizeof(c->reason),
				 "no mechanism matched %s in the record of %s", ip, f->domain);
		}
		if (r == SPF_FAIL && f->p.has_exp) {
			c->out.result = r;
			c->phase = PH_EXP_DOMAIN;
			return;
		}
		char keep[SPF_REASON_MAX];
		memcpy(keep, c->reason, sizeof(keep));
		finish(c, r, "%s", keep);
		return;
	}
	/* an include's check_host(): RFC 7208 5.2 */
	frame_free(f);
	c->fr[--c->depth] = NULL;
	term_done(c, r == SPF_PASS);
}

static void term_done(struct spf *c, bool matched)
{
	struct frame *f = top(c);
	const struct term *t = &f->p.terms[f->next];
	term_reset(c);
	if (matched) {
		frame_result(c, of_qual(t->qual), t);
		return;
	}
	f->next++;
}

/* The frame's record could not be found (no record, NXDOMAIN, none). */
static void no_record(struct spf *c, const char *why)
{
	struct frame *f = top(c);
	if (c->depth == 1 && !f->redirected)
		finish(c, SPF_NONE, "%s", why);
	else
		finish(c, SPF_PERMERROR, "%s %s: %s", f->redirected ? "redirect to" : "include of",
		       f->domain, why);
}

static void on_record(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n,
		      const char *why)
{
	struct frame *f = top(c);
	if (st == DNS_TEMPFAIL) {
		finish(c, SPF_TEMPERROR, "DNS error looking up TXT %s: %s", f->domain,
		       why && *why ? why : "temporary failure");
		return;
	}
	if (st == DNS_NXDOMAIN) {
		no_record(c, "no such domain");
		return;
	}
	size_t found = 0, which = 0;
	for (size_t i = 0; st == DNS_OK && i < n; i++)
		if (is_spf_record(rr[i].text, rr[i].len)) {
			found++;
			which = i;
		}
	if (found == 0) {
		char msg[SPF_NAME_MAX + 32];
		snprintf(msg, sizeof(msg), "no SPF record at %s", f->domain);
		no_record(c, msg);
		return;
	}
	if (found > 1) {
		finish(c, SPF_PERMERROR, "more than one SPF record at %s", f->domain);
		return;
	}
	/* Parsed in place: on an error the check is over anyway. */
	char err[160];
	if (parse_record(rr[which].text, rr[which].len, &f->p, err, sizeof(err)) < 0) {
		finish(c, SPF_PERMERROR, "syntax error in the SPF record of %s: %s", f->domain, err);
		return;
	}
	if (f->record == NULL && (f->record = mem_alloc(SPF_RECORD_MAX + 1)) == NULL) {
		out_of_memory(c);
		return;
	}
	memcpy(f->record, rr[which].text, rr[which].len);
	f->record[rr[which].len] = '\0';
	f->record_len = rr[which].len;
	f->next = 0;
	f->loaded = true;
}

/*
 * Expands a domain-spec into a query name (RFC 7208 7.3: cut from the
 * left to 253 octets, final dot dropped). 1 done (*bad when the name is
 * unusable), 0 waiting for %{p} validation, -1 the check ended.
 */
static int expand_name(struct spf *c, const char *domain, const char *spec, size_t len,
		       char *out, bool *bad)
{
	char buf[EXPAND_MAX];
	struct obuf o = { buf, 0, sizeof(buf), false };
	buf[0] = '\0';
	bool need_p = false;
	int rc = expand(c, domain, spec, len, false, &o, &need_p);
	if (rc == 1) {
		validate(c);
		return c->done ? -1 : 0;
	}
	if (rc < 0) {
		finish(c, SPF_PERMERROR, "%s expanding \"%.*s\"",
		       rc == -2 ? "too long a name" : "syntax error", (int)(len > 60 ? 60 : len),
		       spec);
		return -1;
	}
	size_t n = o.len;
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	size_t s = 0;
	while (n - s > SPF_NAME_MAX) {
		const char *dot = memchr(buf + s, '.', n - s);
		if (dot == NULL)
			break;
		s = (size_t)(dot - buf) + 1;
	}
	*bad = !name_ok(buf + s, n - s, false, false);
	cut_copy(out, SPF_NAME_MAX + 1, buf + s, n - s > SPF_NAME_MAX ? SPF_NAME_MAX : n - s);
	return 1;
}

static bool needs_dns(enum mech m)
{
	return m == M_INCLUDE || m == M_A || m == M_MX || m == M_PTR || m == M_EXISTS;
}

static bool count_lookup(struct spf *c, const char *what)
{
	if (c->counted)
		return true;
	c->counted = true;
	c->lookups++;
	c->out.lookups = c->lookups;
	if (c->lookups > SPF_LOOKUPS_MAX) {
		finish(c, SPF_PERMERROR, "more than %d DNS-querying terms (at %s)",
		       SPF_LOOKUPS_MAX, what);
		return false;
	}
	return true;
}

static void eval_term(struct spf *c, struct frame *f, const struct term *t)
{
	char what[80];
	cut_copy(what, sizeof(what), f->record + t->start, t->len);
	if (needs_dns(t->mech)) {
		if (!count_lookup(c, what))
			return;
		if (!c->target_ready) {
			const char *spec = t->spec_len ? f->record + t->spec : f->domain;
			size_t slen = t->spec_len ? t->spec_len : strlen(f->domain);
			if (t->spec_len == 0) {
				strlcpy_safe(c->target, f->domain, sizeof(c->target));
				c->target_bad = false;
			} else if (expand_name(c, f->domain, spec, slen, c->target,
					       &c->target_bad) <= 0) {
				return;
			}
			c->target_ready = true;
		}
	}
	switch (t->mech) {
	case M_ALL:
		term_done(c, true);
		return;
	case M_IP4:
		term_done(c, c->family == 4 && ip_in(c, t->net, t->cidr4));
		return;
	case M_IP6:
		term_done(c, c->family == 6 && ip_in(c, t->net, t->cidr6));
		return;
	case M_A:
		if (c->target_bad) {
			term_done(c, false);
			return;
		}
		ask(c, c->family == 4 ? SPF_Q_A : SPF_Q_AAAA, c->target, W_A);
		return;
	case M_EXISTS:
		if (c->target_bad) {
			term_done(c, false);
			return;
		}
		ask(c, SPF_Q_A, c->target, W_EXISTS);
		return;
	case M_MX:
		if (c->target_bad) {
			term_done(c, false);
			return;
		}
		if (!c->mx_loaded) {
			ask(c, SPF_Q_MX, c->target, W_MX);
			return;
		}
		if (c->imx < c->nmx) {
			ask(c, c->family == 4 ? SPF_Q_A : SPF_Q_AAAA, c->mx[c->imx], W_MX_ADDR);
			return;
		}
		term_done(c, false);
		return;
	case M_PTR:
		if (c->pstate == P_IDLE)
			c->ptr_for_mech = true;
		if (!validate(c))
			return;
		if (!c->target_bad)
			for (size_t i = 0; i < c->nvalid; i++)
				if (name_within(c->valid[i], c->target)) {
					term_done(c, true);
					return;
				}
		term_done(c, false);
		return;
	case M_INCLUDE:
		if (c->target_bad || !name_ok(c->target, strlen(c->target), false, true)) {
			finish(c, SPF_PERMERROR, "include of an invalid name \"%s\"", c->target);
			return;
		}
		if (c->depth == SPF_DEPTH_MAX) {
			finish(c, SPF_PERMERROR, "includes nested too deep at %s", what);
			return;
		}
		if ((c->fr[c->depth] = mem_calloc(1, sizeof(struct frame))) == NULL) {
			out_of_memory(c);
			return;
		}
		strlcpy_safe(c->fr[c->depth]->domain, c->target, SPF_NAME_MAX + 1);
		c->depth++;
		/* the include term stays in progress in the frame below */
		c->counted = c->target_ready = false;
		return;
	}
}

/* The terms are done without a match: redirect= or the default neutral. */
static void after_terms(struct spf *c, struct frame *f)
{
	if (!f->p.has_redirect) {
		frame_result(c, SPF_NEUTRAL, NULL);
		return;
	}
	if (!count_lookup(c, "redirect="))
		return;
	if (!c->target_ready) {
		if (expand_name(c, f->domain, f->record + f->p.redirect, f->p.redirect_len, c->target,
				&c->target_bad) <= 0)
			return;
		c->target_ready = true;
	}
	if (c->target_bad || !name_ok(c->target, strlen(c->target), false, true)) {
		finish(c, SPF_PERMERROR, "redirect to an invalid name \"%s\"", c->target);
		return;
	}
	/* check_host() with the new domain, in place of this one */
	strlcpy_safe(f->domain, c->target, sizeof(f->domain));
	f->loaded = false;
	f->redirected = true;
	f->p.nterms = f->next = 0;
	f->p.has_redirect = f->p.has_exp = false;
	term_reset(c);
}

static void run_frame(struct spf *c)
{
	struct frame *f = top(c);
	if (!f->loaded) {
		ask(c, SPF_Q_TXT, f->domain, W_RECORD);
		return;
	}
	if (f->next < f->p.nterms) {
		/* An include in progress has its frame above this one; we only
		 * get here for it when that frame has ended (term_done). */
		eval_term(c, f, &f->p.terms[f->next]);
		return;
	}
	after_terms(c, f);
}

/* exp=: fetch and expand the explanation; any problem means none. */
static void run_exp(struct spf *c)
{
	struct frame *f = top(c);
	char keep[SPF_REASON_MAX];
	memcpy(keep, c->reason, sizeof(keep));
	if (c->phase == PH_EXP_DOMAIN) {
		if (!c->exp_target_ready) {
			char buf[EXPAND_MAX];
			struct obuf o = { buf, 0, sizeof(buf), false };
			bool need_p = false;
			int rc = expand(c, f->domain, f->record + f->p.exp, f->p.exp_len, false, &o,
					&need_p);
			if (rc == 1) {
				validate(c);
				return;
			}
			size_t n = o.len;
			if (n > 0 && buf[n - 1] == '.')
				n--;
			if (rc != 0 || !name_ok(buf, n, false, false)) {
				finish(c, SPF_FAIL, "%s", keep);
				return;
			}
			cut_copy(c->exp_target, sizeof(c->exp_target), buf, n);
			c->exp_target_ready = true;
		}
		ask(c, SPF_Q_TXT, c->exp_target, W_EXP);
		return;
	}
	/* PH_EXP_TEXT */
	char buf[SPF_EXPLAIN_MAX + 1];
	struct obuf o = { buf, 0, sizeof(buf), false };
	buf[0] = '\0';
	bool need_p = false;
	int rc = expand(c, f->domain, c->exp_text, c->exp_len, true, &o, &need_p);
	if (rc == 1) {
		validate(c);
		return;
	}
	bool ok = rc == 0;
	for (size_t i = 0; ok && i < o.len; i++)
		ok = (unsigned char)buf[i] >= 0x20 && (unsigned char)buf[i] < 0x7f;
	if (ok)
		memcpy(c->explanation, buf, o.len + 1);
	finish(c, SPF_FAIL, "%s", keep);
}

static void on_exp(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n)
{
	char keep[SPF_REASON_MAX];
	memcpy(keep, c->reason, sizeof(keep));
	if (st != DNS_OK || n != 1 || rr[0].len > SPF_RECORD_MAX ||
	    !macro_string_ok(rr[0].text, rr[0].len, false, true)) {
		finish(c, SPF_FAIL, "%s", keep);
		return;
	}
	if ((c->exp_text = mem_strndup(rr[0].text, rr[0].len)) == NULL) {
		out_of_memory(c);
		return;
	}
	c->exp_len = rr[0].len;
	c->phase = PH_EXP_TEXT;
}

static void run(struct spf *c)
{
	while (!c->done && c->wait == W_NONE) {
		/* A %{p} or ptr validation in progress goes first. */
		if (c->pstate == P_FWD || c->pstate == P_PTR) {
			if (!validate(c))
				continue;
		}
		if (c->phase == PH_RUN)
			run_frame(c);
		else
			run_exp(c);
	}
}

bool spf_step(struct spf *c, struct spf_query *q)
{
	run(c);
	if (c->done)
		return false;
	*q = c->q;
	return true;
}

void spf_answer(struct spf *c, enum dns_status st, const struct spf_rr *rr, size_t n,
		const char *why)
{
	if (c->done || c->wait == W_NONE)
		return;
	if (st == DNS_NOMEM) {
		out_of_memory(c);
		return;
	}
	enum wait w = c->wait;
	c->wait = W_NONE;
	if (st == DNS_OK && n == 0)
		st = DNS_NODATA;
	const char *target = c->q.name;
	switch (w) {
	case W_NONE:
		return;
	case W_RECORD:
		on_record(c, st, rr, n, why);
		return;
	case W_PTR:
		on_ptr(c, st, rr, n);
		return;
	case W_PTR_FWD:
		on_ptr_fwd(c, st, rr, n);
		return;
	case W_EXP:
		on_exp(c, st, rr, n);
		return;
	case W_A:
	case W_EXISTS:
	case W_MX:
	case W_MX_ADDR:
		break;
	}
	if (st == DNS_TEMPFAIL) {
		finish(c, SPF_TEMPERROR, "DNS error looking up %s %s: %s", spf_qtype_name(c->q.type),
		       target, why && *why ? why : "temporary failure");
		return;
	}
	const struct term *t = &top(c)->p.terms[top(c)->next];
	if (w == W_MX_ADDR) {
		bool match = false;
		for (size_t i = 0; st == DNS_OK && i < n && !match; i++)
			match = ip_in(c, rr[i].addr, c->family == 4 ? t->cidr4 : t->cidr6);
		c->imx++;
		if (match)
			term_done(c, true);
		return;
	}
	if (st != DNS_OK) {
		if (void_lookup(c, target))
			term_done(c, false);
		return;
	}
	if (w == W_EXISTS) {
		term_done(c, true);
		return;
	}
	if (w == W_A) {
		bool match = false;
		for (size_t i = 0; i < n && !match; i++)
			match = ip_in(c, rr[i].addr, c->family == 4 ? t->cidr4 : t->cidr6);
		term_done(c, match);
		return;
	}
	/* W_MX */
	if (n > SPF_MX_MAX) {
		finish(c, SPF_PERMERROR, "more than %d MX records at %s", SPF_MX_MAX, target);
		return;
	}
	c->nmx = c->imx = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = rr[i].len;
		if (len > 0 && rr[i].text[len - 1] == '.')
			len--;
		if (!name_ok(rr[i].text, len, false, false))
			continue; /* the Null MX, or junk: no address to compare */
		cut_copy(c->mx[c->nmx++], sizeof(c->mx[0]), rr[i].text, len);
	}
	c->mx_loaded = true;
}
