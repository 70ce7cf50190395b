/*
 * inbound_auth: SPF, DKIM and DMARC for one inbound transaction
 * (inbound_auth.h).
 */
#include "smtp/inbound_auth.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "proto/addr_list.h"
#include "verify/dkim_verify.h"
#include "verify/dkim_verify_async.h"
#include "verify/dmarc.h"
#include "verify/dmarc_async.h"
#include "verify/psl.h"
#include "verify/spf.h"
#include "verify/spf_async.h"

#define AR_MAX 4096               /* the Authentication-Results field */

struct inbound_auth {
	struct event_base *base;
	struct dns *dns;
	const struct psl *psl;
	double timeout;
	bool dmarc_reject;
	char authserv_id[256];
	char id[32];
	/* SPF of MAIL FROM (of HELO for <>), and of HELO on its own */
	struct spf_async *spf_q;
	bool spf_done;
	enum spf_result spf;
	char spf_domain[256];
	char spf_identity[16];   /* "mailfrom" or "helo" */
	char spf_value[300];     /* the address or name checked */
	struct spf_async *helo_q;
	bool helo_done;
	bool helo_checked;       /* a separate HELO check ran */
	enum spf_result helo_spf;
	char helo[256];
	/* DKIM */
	struct dkim_verify *dkim;
	struct dkim_verify_async *dkim_q;
	bool dkim_done;
	bool dkim_started;
	int dkim_n;              /* signatures, from dkim_verify_end */
	/* the header section has been fed (From: is known) */
	bool hdr_done;
	/* DMARC */
	struct dmarc *dmarc;
	struct dmarc_async *dmarc_q;
	bool dmarc_done;
	enum dmarc_from from_status;
	char from_domain[256];
	/* a check ran out of memory: the verdict is out_of_memory, at once */
	bool oom;
	/* the end */
	bool finishing;
	struct event *later;
	inbound_verdict_fn fn;
	void *arg;
};

static void maybe_done(struct inbound_auth *a);
static void fire(evutil_socket_t fd, short what, void *arg);

static void on_spf(void *arg, const struct spf_outcome *r)
{
	struct inbound_auth *a = arg;
	a->spf_q = NULL;
	a->spf_done = true;
	a->oom = a->oom || r->out_of_memory;
	a->spf = r->result;
	snprintf(a->spf_domain, sizeof(a->spf_domain), "%s", r->domain ? r->domain : "");
	maybe_done(a);
}

static void on_helo_spf(void *arg, const struct spf_outcome *r)
{
	struct inbound_auth *a = arg;
	a->helo_q = NULL;
	a->helo_done = true;
	a->oom = a->oom || r->out_of_memory;
	a->helo_spf = r->result;
	maybe_done(a);
}

static void on_dkim(void *arg, struct dkim_verify *v)
{
	struct inbound_auth *a = arg;
	a->dkim_q = NULL;
	a->dkim_done = true;
	a->oom = a->oom || dkim_verify_out_of_memory(v);
	maybe_done(a);
}

/* The key lookups, once: as soon as signatures are known (the header
 * section fed), or at the end (dkim_verify_end: a header section without
 * its empty line); none to make is done at once. NULL from the start
 * without on_dkim having run: no memory to start, an out-of-memory
 * verdict like the other checks' (dkim_verify_async.h). */
static void dkim_start(struct inbound_auth *a)
{
	if (a->dkim_started)
		return;
	a->dkim_started = true;
	if (a->dns && dkim_verify_key_count(a->dkim) > 0) {
		a->dkim_q = dkim_verify_async_start(a->dkim, a->dns, on_dkim, a);
		if (a->dkim_q == NULL && !a->dkim_done)
			a->oom = true;
	}
	if (a->dkim_q == NULL)
		a->dkim_done = true;
}

static void on_dmarc(void *arg, struct dmarc *m)
{
	struct inbound_auth *a = arg;
	a->dmarc_q = NULL;
	a->dmarc_done = true;
	a->oom = a->oom || dmarc_out_of_memory(m);
	maybe_done(a);
}

struct inbound_auth *inbound_auth_start(struct event_base *base, struct dns *dns,
					const struct config *cfg, const struct sockaddr *client,
					const char *helo, const char *mailfrom,
					const char *queue_id)
{
	struct inbound_auth *a = mem_calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->base = base;
	a->dns = dns;
	a->psl = psl_default_loaded();
	a->timeout = cfg->inbound.timeout;
	a->dmarc_reject = cfg->inbound.dmarc_reject;
	snprintf(a->authserv_id, sizeof(a->authserv_id), "%s",
		 cfg->inbound.authserv_id ? cfg->inbound.authserv_id : cfg->hostname);
	snprintf(a->id, sizeof(a->id), "%s", queue_id ? queue_id : "");
	a->dkim = dkim_verify_new((int64_t)time(NULL));
	a->later = evtimer_new(base, fire, a);
	if (a->dkim == NULL || a->later == NULL)
		goto nomem;
	const char *h = helo ? helo : "";
	if (mailfrom[0]) {
		snprintf(a->spf_identity, sizeof(a->spf_identity), "mailfrom");
		snprintf(a->spf_value, sizeof(a->spf_value), "%s", mailfrom);
	} else {
		snprintf(a->spf_identity, sizeof(a->spf_identity), "helo");
		snprintf(a->spf_value, sizeof(a->spf_value), "%s", h);
	}
	snprintf(a->helo, sizeof(a->helo), "%s", h);
	a->helo_done = true;
	if (dns == NULL) {
		a->spf_done = true;
		a->spf = SPF_TEMPERROR;
		return a;
	}
	struct spf *c = mailfrom[0] ? spf_new_mailfrom(client, mailfrom, h)
				    : spf_new_helo(client, h);
	if (c == NULL)
		goto nomem;
	spf_set_receiver(c, a->authserv_id);
	if ((a->spf_q = spf_async_start(base, dns, c, a->timeout, on_spf, a)) == NULL)
		goto nomem;
	/* RFC 7208 §2.3: the HELO identity too, when MAIL FROM is not it. */
	if (mailfrom[0] && h[0]) {
		struct spf *hc = spf_new_helo(client, h);
		if (hc == NULL)
			goto nomem;
		spf_set_receiver(hc, a->authserv_id);
		a->helo_done = false;
		a->helo_checked = true;
		a->helo_q = spf_async_start(base, dns, hc, a->timeout, on_helo_spf, a);
		if (a->helo_q == NULL)
			goto nomem;
	}
	return a;
nomem:
	inbound_auth_free(a);
	errno = ENOMEM;
	return NULL;
}

/* The header section is complete (hdr, borrowed for the call): From:
 * and the lookups of keys and policy can start while the body streams
 * in. */
static void headers_complete(struct inbound_auth *a, const char *hdr, size_t len)
{
	a->hdr_done = true;
	a->from_status = dmarc_from_domain(hdr ? hdr : "", len, a->from_domain,
					   sizeof(a->from_domain));
	if (a->from_status != DMARC_FROM_OK)
		a->from_domain[0] = '\0';
	if (dkim_verify_key_count(a->dkim) > 0)
		dkim_start(a);
	if (a->from_status == DMARC_FROM_OK && a->psl && a->dns) {
		a->dmarc = dmarc_new(a->psl, a->from_domain);
		if (a->dmarc)
			a->dmarc_q = dmarc_async_start(a->base, a->dns, a->dmarc, a->timeout,
						       on_dmarc, a);
		if (a->dmarc_q == NULL) { /* no memory for the one or the other */
			a->oom = true;
			a->dmarc_done = true;
		}
	} else {
		a->dmarc_done = true;
	}
}

/* 0, or -1 (ENOMEM) once a check has run out of memory. */
static int feed_status(const struct inbound_auth *a)
{
	if (a->oom) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

int inbound_auth_feed(struct inbound_auth *a, const char *data, size_t len)
{
	if (dkim_verify_feed(a->dkim, data, len) < 0 && dkim_verify_out_of_memory(a->dkim))
		a->oom = true;
	return feed_status(a);
}

int inbound_auth_feed_header(struct inbound_auth *a, const char *hdr, size_t len)
{
	if (inbound_auth_feed(a, hdr, len) < 0)
		return -1;
	headers_complete(a, hdr, len);
	return feed_status(a);
}

void inbound_auth_finish(struct inbound_auth *a, inbound_verdict_fn fn, void *arg)
{
	a->fn = fn;
	a->arg = arg;
	a->finishing = true;
	if (!a->hdr_done)
		headers_complete(a, "", 0); /* no header section was fed */
	a->dkim_n = dkim_verify_end(a->dkim);
	a->oom = a->oom || dkim_verify_out_of_memory(a->dkim);
	dkim_start(a);
	maybe_done(a);
}

/* ---- the verdict ---- */

struct out {
	char buf[AR_MAX];
	size_t len;
};

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->len + n >= sizeof(o->buf) - 3)
		n = sizeof(o->buf) - 3 - o->len;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* A value for a property: a token as is, else a quoted string; never a
 * CR, LF or other control character (they come from the network). */
static void put_value(struct out *o, const char *v)
{
	char tmp[600];
	size_t n = 0;
	bool token = v[0] != '\0';
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && strchr("@.-_+=/", *p) == NULL)
			token = false;
	if (!token)
		tmp[n++] = '"';
	for (const char *p = v; *p && n < sizeof(tmp) - 3; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f || c >= 0x80)
			c = '?';
		if (!token && (c == '"' || c == '\\'))
			tmp[n++] = '\\';
		tmp[n++] = (char)c;
	}
	if (!token)
		tmp[n++] = '"';
	tmp[n] = '\0';
	put(o, tmp);
}

static void fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct inbound_auth *a = arg;
	if (a->oom) {
		struct inbound_verdict nomem = { .header = "", .reply = "", .spf = "temperror",
						 .dkim = "temperror", .dmarc = "temperror",
						 .from_domain = a->from_domain,
						 .out_of_memory = true };
		a->fn(a->arg, &nomem);
		return;
	}
	struct out o = { .len = 0 };
	put(&o, "Authentication-Results: ");
	put_value(&o, a->authserv_id);
	/* SPF */
	put(&o, ";\r\n\tspf=");
	put(&o, spf_result_name(a->spf));
	put(&o, a->spf_identity[0] == 'm' ? " smtp.mailfrom=" : " smtp.helo=");
	put_value(&o, a->spf_value[0] ? a->spf_value : "unknown");
	if (a->helo_checked) {
		put(&o, ";\r\n\tspf=");
		put(&o, spf_result_name(a->helo_spf));
		put(&o, " smtp.helo=");
		put_value(&o, a->helo);
	}
	/* DKIM */
	int n = a->dkim_n;
	struct dmarc_dkim dd[DKIM_VERIFY_MAX_SIGS];
	size_t ndd = 0;
	char dkim_summary[32] = "none";
	if (n <= 0) {
		put(&o, ";\r\n\tdkim=none");
		if (n < 0) {
			put(&o, " (");
			put(&o, dkim_verify_error(a->dkim));
			put(&o, ")");
			snprintf(dkim_summary, sizeof(dkim_summary), "permerror");
		}
	}
	for (int i = 0; i < n; i++) {
		struct dkim_verify_result r;
		if (dkim_verify_result(a->dkim, (size_t)i, &r) < 0)
			continue;
		put(&o, ";\r\n\tdkim=");
		put(&o, dkim_verify_status_name(r.status));
		if (r.reason && r.reason[0] && r.status != DKIM_VERIFY_PASS) {
			put(&o, " reason=");
			put_value(&o, r.reason);
		}
		if (r.domain[0]) {
			put(&o, " header.d=");
			put_value(&o, r.domain);
		}
		if (r.selector[0]) {
			put(&o, " header.s=");
			put_value(&o, r.selector);
		}
		if (r.header_b[0]) {
			put(&o, " header.b=");
			put_value(&o, r.header_b);
		}
		if (ndd < DKIM_VERIFY_MAX_SIGS && r.domain[0])
			dd[ndd++] = (struct dmarc_dkim){ r.status == DKIM_VERIFY_PASS, r.domain };
		if (i == 0 || r.status == DKIM_VERIFY_PASS)
			snprintf(dkim_summary, sizeof(dkim_summary), "%s",
				 dkim_verify_status_name(r.status));
	}
	/* DMARC */
	struct dmarc_outcome dm;
	memset(&dm, 0, sizeof(dm));
	bool reject = false;
	char reply[300] = "";
	put(&o, ";\r\n\tdmarc=");
	if (a->from_status != DMARC_FROM_OK) {
		dm.result = DMARC_PERMERROR;
		put(&o, "permerror (");
		put(&o, dmarc_from_text(a->from_status));
		put(&o, ")");
	} else if (a->dmarc == NULL) {
		dm.result = DMARC_TEMPERROR;
		put(&o, "temperror");
	} else {
		struct dmarc_auth da = { a->spf, a->spf_domain, dd, ndd,
					 (unsigned)(random() % 100) };
		dmarc_evaluate(a->dmarc, &da, &dm);
		put(&o, dmarc_result_name(dm.result));
		if (dm.has_record) {
			put(&o, " (p=");
			put(&o, dmarc_policy_name(dm.policy));
			put(&o, " dis=");
			put(&o, dm.result == DMARC_FAIL ? dmarc_policy_name(dm.apply) : "none");
			put(&o, ")");
		}
		put(&o, " header.from=");
		put_value(&o, a->from_domain);
		if (dm.result == DMARC_FAIL && dm.apply == DMARC_POLICY_REJECT &&
		    a->dmarc_reject) {
			reject = true;
			snprintf(reply, sizeof(reply),
				 "550 5.7.1 Message rejected: DMARC policy of %.200s says reject",
				 a->from_domain);
		}
	}
	put(&o, "\r\n");
	struct inbound_verdict v = {
		.header = o.buf,
		.header_len = o.len,
		.reject = reject,
		.reply = reply,
		.spf = spf_result_name(a->spf),
		.dkim = dkim_summary,
		.dmarc = dmarc_result_name(dm.result),
		.from_domain = a->from_domain,
	};
	a->fn(a->arg, &v);
}

/* Every check has its answer, or one ran out of memory: the verdict
 * need not wait for the others then (they are cancelled with a). */
static void maybe_done(struct inbound_auth *a)
{
	if (!a->finishing)
		return;
	if (!a->oom && (!a->spf_done || !a->helo_done || !a->dkim_done || !a->dmarc_done))
		return;
	a->finishing = false;
	/* From the loop, never inside inbound_auth_finish. */
	event_active(a->later, EV_TIMEOUT, 0);
}

void inbound_auth_free(struct inbound_auth *a)
{
	if (a == NULL)
		return;
	spf_async_cancel(a->spf_q);
	spf_async_cancel(a->helo_q);
	dkim_verify_async_cancel(a->dkim_q);
	dmarc_async_cancel(a->dmarc_q);
	dkim_verify_free(a->dkim);
	dmarc_free(a->dmarc);
	if (a->later)
		event_free(a->later);
	free(a);
}

/* An octet that ends a token (RFC 2045 5.1: white space, controls and
 * tspecials). */
static bool ends_token(char c)
{
	return (unsigned char)c <= ' ' || c == 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

bool inbound_auth_is_ours(const char *field, size_t len, const char *authserv_id)
{
	size_t pos = 0;
	struct addr_list_field f;
	if (!addr_list_next_field(field, len, &pos, &f) ||
	    !addr_list_field_is(&f, "authentication-results"))
		return false;
	/* The authserv-id (RFC 8601 2.2: a token or a quoted string) comes
	 * first, after any comments and folding. */
	const char *v = f.value;
	size_t i = 0, vlen = f.value_len;
	(void)addr_list_skip_cfws(v, vlen, &i);
	size_t idlen = strlen(authserv_id), matched = 0;
	bool same = true;
	if (i < vlen && v[i] == '"') {
		for (i++; i < vlen && v[i] != '"'; i++) {
			if (v[i] == '\\' && i + 1 < vlen)
				i++;
			same = same && matched < idlen &&
			       tolower((unsigned char)v[i]) ==
				       tolower((unsigned char)authserv_id[matched]);
			matched++;
		}
	} else {
		for (; i < vlen && !ends_token(v[i]); i++, matched++)
			same = same && matched < idlen &&
			       tolower((unsigned char)v[i]) ==
				       tolower((unsigned char)authserv_id[matched]);
	}
	return same && matched == idlen && idlen > 0;
}
