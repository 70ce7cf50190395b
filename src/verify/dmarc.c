/*
 * dmarc: RFC 7489 record parsing, policy discovery, alignment and result
 * (dmarc.h). Discovery has three states: asking _dmarc.<From domain>,
 * asking _dmarc.<Organizational Domain>, done; what it found is kept in
 * struct dmarc and dmarc_evaluate works from it.
 */
#include "verify/dmarc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/mem.h"
#include "lib/xalloc.h"
#include "proto/addr_list.h"
#include "proto/smtp_addr.h"

enum dstate { D_FROM, D_ORG, D_DONE };

struct dmarc {
	const struct psl *psl;
	enum dstate state;
	char from[DMARC_NAME_MAX + 1];
	char org[DMARC_NAME_MAX + 1];
	char record_domain[DMARC_NAME_MAX + 1];
	enum dmarc_result early; /* DMARC_NONE, or temperror/permerror when
				  * discovery failed */
	bool has_record;
	struct dmarc_record rec;
	char reason[200];
	bool nomem; /* discovery ended for want of memory */
};

static char lower(char ch)
{
	return (char)tolower((unsigned char)ch);
}

static bool is_alpha(char ch)
{
	return isalpha((unsigned char)ch) != 0;
}

static bool is_digit(char ch)
{
	return isdigit((unsigned char)ch) != 0;
}

static bool wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_NONE: return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT: return "reject";
	}
	return "?";
}

const char *dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_NONE: return "none";
	case DMARC_PASS: return "pass";
	case DMARC_FAIL: return "fail";
	case DMARC_TEMPERROR: return "temperror";
	case DMARC_PERMERROR: return "permerror";
	}
	return "?";
}

/* ---- the record (RFC 7489 6.3, 6.4) ---- */

static bool policy_of(const char *v, size_t len, enum dmarc_policy *out)
{
	if (ieq(v, len, "none"))
		*out = DMARC_POLICY_NONE;
	else if (ieq(v, len, "quarantine"))
		*out = DMARC_POLICY_QUARANTINE;
	else if (ieq(v, len, "reject"))
		*out = DMARC_POLICY_REJECT;
	else
		return false;
	return true;
}

/* dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]: a scheme,
 * ':', something without spaces. */
static bool uri_ok(const char *s, size_t len)
{
	size_t i = 0;
	if (len == 0 || !is_alpha(s[0]))
		return false;
	while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' ||
			   s[i] == '.'))
		i++;
	if (i == len || s[i] != ':')
		return false;
	size_t body = ++i;
	while (i < len && s[i] != '!') {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
		i++;
	}
	if (i == body)
		return false;
	if (i == len)
		return true;
	i++; /* "!" size */
	size_t digits = i;
	while (i < len && is_digit(s[i]))
		i++;
	if (i == digits)
		return false;
	if (i < len && strchr("kmgtKMGT", s[i]))
		i++;
	return i == len;
}

/* Valid URIs in a comma-separated list; -1 when one is invalid. */
static int uri_list(const char *v, size_t len)
{
	int n = 0;
	for (size_t i = 0; i <= len;) {
		size_t e = i;
		while (e < len && v[e] != ',')
			e++;
		size_t s = i, t = e;
		while (s < t && wsp(v[s]))
			s++;
		while (t > s && wsp(v[t - 1]))
			t--;
		if (!uri_ok(v + s, t - s))
			return -1;
		n++;
		i = e + 1;
	}
	return n;
}

enum dmarc_parse dmarc_record_parse(const char *text, size_t len, struct dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->pct = 100;
	if (len > DMARC_RECORD_MAX)
		return DMARC_PARSE_NOT_DMARC;
	bool first = true, p_ok = false, p_seen = false, sp_bad = false, rua_ok = false;
	bool seen_sp = false, seen_np = false, seen_adkim = false, seen_aspf = false,
	     seen_pct = false, seen_rua = false, seen_ruf = false;
	for (size_t i = 0; i <= len;) {
		size_t e = i;
		while (e < len && text[e] != ';')
			e++;
		size_t s = i, t = e;
		i = e + 1;
		while (s < t && wsp(text[s]))
			s++;
		while (t > s && wsp(text[t - 1]))
			t--;
		/* tag *WSP "=" *WSP value */
		size_t n = s;
		while (n < t && (is_alpha(text[n]) || is_digit(text[n]) || text[n] == '_'))
			n++;
		size_t name_len = n - s;
		size_t eq = n;
		while (eq < t && wsp(text[eq]))
			eq++;
		bool tag = name_len > 0 && eq < t && text[eq] == '=';
		size_t v = eq + 1;
		while (tag && v < t && wsp(text[v]))
			v++;
		const char *name = text + s, *val = text + v;
		size_t vlen = tag ? t - v : 0;
		if (first) {
			/* v=DMARC1 first, the value in upper case (ABNF %x) */
			if (!tag || !ieq(name, name_len, "v") || vlen != 6 ||
			    memcmp(val, "DMARC1", 6) != 0)
				return DMARC_PARSE_NOT_DMARC;
			first = false;
			continue;
		}
		if (!tag)
			continue; /* a broken tag is ignored (6.3) */
		if (ieq(name, name_len, "p") && !p_seen) {
			p_seen = true;
			p_ok = policy_of(val, vlen, &r->p);
		} else if (ieq(name, name_len, "sp") && !seen_sp) {
			seen_sp = true;
			r->sp_set = policy_of(val, vlen, &r->sp);
			sp_bad = !r->sp_set;
		} else if (ieq(name, name_len, "np") && !seen_np) {
			seen_np = true;
			r->np_set = policy_of(val, vlen, &r->np);
		} else if (ieq(name, name_len, "adkim") && !seen_adkim) {
			seen_adkim = true;
			r->adkim_strict = ieq(val, vlen, "s");
		} else if (ieq(name, name_len, "aspf") && !seen_aspf) {
			seen_aspf = true;
			r->aspf_strict = ieq(val, vlen, "s");
		} else if (ieq(name, name_len, "pct") && !seen_pct) {
			seen_pct = true;
			unsigned pct = 0;
			bool ok = vlen > 0 && vlen <= 3;
			for (size_t k = 0; ok && k < vlen; k++) {
				ok = is_digit(val[k]);
				pct = pct * 10 + (unsigned)(val[k] - '0');
			}
			if (ok && pct <= 100)
				r->pct = pct;
		} else if (ieq(name, name_len, "rua") && !seen_rua) {
			seen_rua = true;
			int k = uri_list(val, vlen);
			r->rua = k > 0 ? (unsigned)k : 0;
			rua_ok = k > 0;
		} else if (ieq(name, name_len, "ruf") && !seen_ruf) {
			seen_ruf = true;
			int k = uri_list(val, vlen);
			r->ruf = k > 0 ? (unsigned)k : 0;
		}
	}
	if (first)
		return DMARC_PARSE_NOT_DMARC;
	if (!p_ok || sp_bad) {
		/* 6.6.3 step 6 */
		if (!rua_ok)
			return DMARC_PARSE_UNUSABLE;
		r->p_invalid = true;
		r->p = DMARC_POLICY_NONE;
		r->sp_set = false;
	}
	if (!r->sp_set)
		r->sp = r->p;
	if (!r->np_set)
		r->np = r->sp;
	return DMARC_PARSE_OK;
}

/* ---- discovery (6.6.3) ---- */

static bool lower_copy(char *out, size_t cap, const char *s)
{
	size_t len = strlen(s);
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len >= cap)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = lower(s[i]);
	out[len] = '\0';
	return true;
}

struct dmarc *dmarc_new(const struct psl *psl, const char *from_domain)
{
	struct dmarc *m = mem_calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->psl = psl;
	m->state = D_FROM;
	if (from_domain == NULL || !lower_copy(m->from, sizeof(m->from), from_domain) ||
	    !smtp_addr_domain_valid(m->from, strlen(m->from), true) ||
	    !psl_org_domain(psl, m->from, m->org, sizeof(m->org))) {
		m->state = D_DONE;
		m->early = DMARC_PERMERROR;
		snprintf(m->reason, sizeof(m->reason), "no valid From domain");
	}
	return m;
}

void dmarc_free(struct dmarc *m)
{
	free(m);
}

static const char *current_domain(const struct dmarc *m)
{
	return m->state == D_FROM ? m->from : m->org;
}

bool dmarc_step(struct dmarc *m, char *name, size_t namelen)
{
	while (m->state != D_DONE) {
		int n = snprintf(name, namelen, "_dmarc.%s", current_domain(m));
		if (n > 0 && (size_t)n < namelen && n <= DMARC_NAME_MAX)
			return true;
		/* a name too long to exist: no record there */
		dmarc_answer(m, DNS_NXDOMAIN, NULL, 0, NULL);
	}
	return false;
}

bool dmarc_out_of_memory(const struct dmarc *m)
{
	return m->nomem;
}

void dmarc_abort(struct dmarc *m, const char *why)
{
	if (m->state == D_DONE)
		return;
	m->state = D_DONE;
	m->early = DMARC_TEMPERROR;
	snprintf(m->reason, sizeof(m->reason), "%s", why ? why : "aborted");
}

void dmarc_answer(struct dmarc *m, enum dns_status st, const struct dmarc_txt *txt,
		  size_t n, const char *why)
{
	if (m->state == D_DONE)
		return;
	const char *dom = current_domain(m);
	if (st == DNS_TEMPFAIL || st == DNS_NOMEM) {
		m->state = D_DONE;
		m->early = DMARC_TEMPERROR;
		m->nomem = st == DNS_NOMEM;
		snprintf(m->reason, sizeof(m->reason), "DNS error looking up TXT _dmarc.%s: %s",
			 dom, why && *why ? why : "temporary failure");
		return;
	}
	size_t found = 0, which = 0;
	struct dmarc_record rec;
	for (size_t i = 0; st == DNS_OK && i < n; i++) {
		/* step 2: records that are not DMARC records are discarded */
		if (txt[i].len >= 2 && dmarc_record_parse(txt[i].text, txt[i].len, &rec) !=
					       DMARC_PARSE_NOT_DMARC) {
			found++;
			which = i;
		}
	}
	if (found == 0 && m->state == D_FROM && strcmp(m->from, m->org) != 0) {
		m->state = D_ORG; /* step 3 */
		return;
	}
	m->state = D_DONE;
	if (found == 0) {
		snprintf(m->reason, sizeof(m->reason), "no DMARC record for %s", m->from);
		return;
	}
	if (found > 1) {
		snprintf(m->reason, sizeof(m->reason), "more than one DMARC record at _dmarc.%s",
			 dom);
		return;
	}
	if (dmarc_record_parse(txt[which].text, txt[which].len, &m->rec) != DMARC_PARSE_OK) {
		snprintf(m->reason, sizeof(m->reason),
			 "DMARC record at _dmarc.%s has no valid policy", dom);
		return;
	}
	m->has_record = true;
	strlcpy_safe(m->record_domain, dom, sizeof(m->record_domain));
}

/* ---- alignment and result (3.1, 6.6.2) ---- */

bool dmarc_aligned(const struct psl *psl, const char *a, const char *b, bool strict)
{
	char la[DMARC_NAME_MAX + 1], lb[DMARC_NAME_MAX + 1];
	if (a == NULL || b == NULL || !lower_copy(la, sizeof(la), a) ||
	    !lower_copy(lb, sizeof(lb), b))
		return false;
	if (strcmp(la, lb) == 0)
		return true;
	if (strict)
		return false;
	char oa[DMARC_NAME_MAX + 1], ob[DMARC_NAME_MAX + 1];
	return psl_org_domain(psl, la, oa, sizeof(oa)) && psl_org_domain(psl, lb, ob, sizeof(ob)) &&
	       strcmp(oa, ob) == 0;
}

static enum dmarc_policy lower_policy(enum dmarc_policy p)
{
	return p == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
}

void dmarc_evaluate(const struct dmarc *m, const struct dmarc_auth *a,
		    struct dmarc_outcome *out)
{
	memset(out, 0, sizeof(*out));
	strlcpy_safe(out->from_domain, m->from, sizeof(out->from_domain));
	strlcpy_safe(out->org_domain, m->org, sizeof(out->org_domain));
	strlcpy_safe(out->reason, m->reason, sizeof(out->reason));
	if (m->state != D_DONE) {
		out->result = DMARC_TEMPERROR;
		strlcpy_safe(out->reason, "policy discovery not finished", sizeof(out->reason));
		return;
	}
	if (!m->has_record) {
		out->result = m->early;
		return;
	}
	const struct dmarc_record *r = &m->rec;
	out->has_record = true;
	out->record = *r;
	strlcpy_safe(out->record_domain, m->record_domain, sizeof(out->record_domain));
	out->policy = r->p;
	if (strcmp(m->record_domain, m->from) != 0) {
		out->policy = r->sp;
		out->subdomain_policy = true;
	}
	out->spf_aligned = a->spf == SPF_PASS &&
			   dmarc_aligned(m->psl, a->spf_domain, m->from, r->aspf_strict);
	for (size_t i = 0; i < a->ndkim; i++)
		if (a->dkim[i].pass &&
		    dmarc_aligned(m->psl, a->dkim[i].domain, m->from, r->adkim_strict)) {
			out->dkim_aligned = true;
			lower_copy(out->dkim_domain, sizeof(out->dkim_domain), a->dkim[i].domain);
			break;
		}
	if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARC_PASS;
		out->apply = DMARC_POLICY_NONE;
		snprintf(out->reason, sizeof(out->reason), "aligned %s pass (%s)",
			 out->dkim_aligned ? "DKIM" : "SPF",
			 out->dkim_aligned ? out->dkim_domain : a->spf_domain);
		return;
	}
	out->result = DMARC_FAIL;
	out->apply = out->policy;
	if (a->roll >= r->pct) {
		out->sampled_out = true;
		out->apply = lower_policy(out->policy);
	}
	snprintf(out->reason, sizeof(out->reason), "no aligned SPF or DKIM pass; %s=%s%s",
		 out->subdomain_policy ? "sp" : "p", dmarc_policy_name(out->policy),
		 out->sampled_out ? " (sampled out by pct)" : "");
}

/* ---- the From domain (6.6.1) ---- */

const char *dmarc_from_text(enum dmarc_from st)
{
	switch (st) {
	case DMARC_FROM_OK: return "ok";
	case DMARC_FROM_MISSING: return "no From field";
	case DMARC_FROM_MULTIPLE_FIELDS: return "more than one From field";
	case DMARC_FROM_NO_ADDRESS: return "no address in From";
	case DMARC_FROM_MULTIPLE_ADDRESSES: return "more than one address in From";
	case DMARC_FROM_BAD: return "From is not a usable address";
	}
	return "?";
}

struct from_collect {
	size_t count;
	char addr[ADDR_LIST_ADDR_MAX + 1];
};

static int collect(void *arg, const char *addr, size_t len)
{
	struct from_collect *fc = arg;
	if (fc->count++ == 0 && len < sizeof(fc->addr)) {
		memcpy(fc->addr, addr, len);
		fc->addr[len] = '\0';
	}
	return fc->count > 1; /* a second address: stop */
}

enum dmarc_from dmarc_from_domain(const char *hdr, size_t len, char *out, size_t outlen)
{
	size_t pos = 0, fields = 0;
	struct addr_list_field f, from = { 0 };
	while (addr_list_next_field(hdr, len, &pos, &f))
		if (addr_list_field_is(&f, "from")) {
			if (fields++ == 0)
				from = f;
		}
	if (fields == 0)
		return DMARC_FROM_MISSING;
	if (fields > 1)
		return DMARC_FROM_MULTIPLE_FIELDS;
	struct from_collect fc = { 0, "" };
	enum addr_list_status st = addr_list_parse(from.value, from.value_len, collect, &fc);
	if (fc.count > 1)
		return DMARC_FROM_MULTIPLE_ADDRESSES;
	if (st != ADDR_LIST_OK)
		return DMARC_FROM_BAD;
	if (fc.count == 0)
		return DMARC_FROM_NO_ADDRESS;
	const char *at = strrchr(fc.addr, '@');
	if (at == NULL || at[1] == '\0' || at[1] == '[')
		return DMARC_FROM_BAD;
	char dom[DMARC_NAME_MAX + 1];
	if (!lower_copy(dom, sizeof(dom), at + 1) ||
	    !smtp_addr_domain_valid(dom, strlen(dom), true) || strlen(dom) >= outlen)
		return DMARC_FROM_BAD;
	memcpy(out, dom, strlen(dom) + 1);
	return DMARC_FROM_OK;
}
