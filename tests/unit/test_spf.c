/*
 * Unit tests for spf: the check_host() state machine driven by a fake
 * resolver (a table of records in each test): results pass, fail,
 * softfail, neutral, none, temperror, permerror; the mechanisms all,
 * include, a, mx, ptr, ip4, ip6, exists and the modifiers redirect= and
 * exp=; dual CIDR lengths; the macros of RFC 7208 section 7.4; the limit
 * of 10 DNS-querying terms, 10 MX names and 2 void lookups; two SPF
 * records; syntax errors; the HELO identity and the null MAIL FROM. Out
 * of memory (FULMAR_FAULT=alloc:N:ENOMEM, lib/mem.h): each allocation of
 * a check failing in turn, and a lookup that failed for want of memory,
 * end in temperror marked out_of_memory, never in another result.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_faults.h"
#include "verify/spf.h"
#include "verify/spf_async.h"

#include <event2/event.h>

/* A record of the fake DNS. type "SERVFAIL" fails every query for the
 * name (or only those of `value` when it is a type name); "EXISTS" makes
 * the name exist without records (NODATA). */
struct rec {
	const char *name;
	const char *type;
	const char *value;
};

#define END { NULL, NULL, NULL }

static bool name_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

struct run {
	struct spf_outcome out;
	char domain[SPF_NAME_MAX + 1];
	char mechanism[128], reason[SPF_REASON_MAX], explanation[SPF_EXPLAIN_MAX + 1];
	int queries;
	char log[4096]; /* "TYPE name|" for each query */
};

/* Answers one query from the table. */
static void answer(struct spf *c, const struct spf_query *q, const struct rec *zone)
{
	const char *tname = spf_qtype_name(q->type);
	struct spf_rr rr[32];
	size_t n = 0;
	bool exists = false;
	memset(rr, 0, sizeof(rr));
	for (const struct rec *r = zone; r->name; r++) {
		if (!name_eq(r->name, q->name))
			continue;
		exists = true;
		if (strcmp(r->type, "SERVFAIL") == 0 && (r->value == NULL || strcmp(r->value, tname) == 0)) {
			spf_answer(c, DNS_TEMPFAIL, NULL, 0, "SERVFAIL");
			return;
		}
		if (strcmp(r->type, tname) != 0)
			continue;
		assert_true(n < 32);
		if (q->type == SPF_Q_A)
			assert_int_equal(inet_pton(AF_INET, r->value, rr[n].addr), 1);
		else if (q->type == SPF_Q_AAAA)
			assert_int_equal(inet_pton(AF_INET6, r->value, rr[n].addr), 1);
		rr[n].text = r->value;
		rr[n].len = strlen(r->value);
		n++;
	}
	if (n > 0)
		spf_answer(c, DNS_OK, rr, n, NULL);
	else
		spf_answer(c, exists ? DNS_NODATA : DNS_NXDOMAIN, NULL, 0, NULL);
}

static void drive(struct spf *c, const struct rec *zone, struct run *r)
{
	struct spf_query q;
	memset(r, 0, sizeof(*r));
	spf_set_time(c, 1700000000);
	spf_set_receiver(c, "mx.receiver.test");
	while (spf_step(c, &q)) {
		r->queries++;
		assert_true(r->queries < 300);
		size_t l = strlen(r->log);
		snprintf(r->log + l, sizeof(r->log) - l, "%s %s|", spf_qtype_name(q.type), q.name);
		answer(c, &q, zone);
	}
	const struct spf_outcome *o = spf_result(c);
	r->out = *o;
	strncpy(r->mechanism, o->mechanism, sizeof(r->mechanism) - 1);
	strncpy(r->reason, o->reason, sizeof(r->reason) - 1);
	strncpy(r->explanation, o->explanation, sizeof(r->explanation) - 1);
	strncpy(r->domain, o->domain, sizeof(r->domain) - 1);
	/* the outcome's strings die with c: point them at our copies */
	r->out.domain = r->domain;
	r->out.mechanism = r->mechanism;
	r->out.reason = r->reason;
	r->out.explanation = r->explanation;
	spf_free(c);
}

static struct spf *new_check(const char *ip, const char *mailfrom, const char *helo)
{
	struct sockaddr_storage ss;
	assert_true(spf_parse_ip(ip, &ss));
	return spf_new_mailfrom((const struct sockaddr *)&ss, mailfrom, helo);
}

/* Runs the MAIL FROM check and compares the result. */
static void expect(const struct rec *zone, const char *ip, const char *mailfrom,
		   enum spf_result want, const char *want_mech, struct run *r)
{
	drive(new_check(ip, mailfrom, "helo.example.net"), zone, r);
	if (r->out.result != want)
		fail_msg("%s from %s: got %s (%s), want %s; queries %s", mailfrom, ip,
			 spf_result_name(r->out.result), r->reason, spf_result_name(want), r->log);
	if (want_mech && strcmp(r->mechanism, want_mech) != 0)
		fail_msg("%s from %s: mechanism \"%s\", want \"%s\"", mailfrom, ip, r->mechanism,
			 want_mech);
}

/* ---- results ---- */

static const struct rec basic[] = {
	{ "example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 -all" },
	{ "example.com", "TXT", "google-site-verification=abc" },
	{ "soft.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all" },
	{ "neutral.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ?all" },
	{ "default.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24" },
	{ "nospf.example.com", "TXT", "some other text" },
	{ "broken.example.com", "SERVFAIL", NULL },
	{ "two.example.com", "TXT", "v=spf1 -all" },
	{ "two.example.com", "TXT", "v=spf1 +all" },
	{ "upper.example.com", "TXT", "V=SPF1 IP4:192.0.2.1 -ALL" },
	{ "spf10.example.com", "TXT", "v=spf10 +all" },
	END,
};

static void test_results(void **state)
{
	(void)state;
	struct run r;
	expect(basic, "192.0.2.55", "alice@example.com", SPF_PASS, "ip4:192.0.2.0/24", &r);
	assert_string_equal(r.out.domain, "example.com");
	assert_int_equal(r.queries, 1);
	expect(basic, "198.51.100.7", "alice@example.com", SPF_PASS, "ip4:198.51.100.7", &r);
	expect(basic, "198.51.100.8", "alice@example.com", SPF_FAIL, "-all", &r);
	expect(basic, "198.51.100.8", "bob@soft.example.com", SPF_SOFTFAIL, "~all", &r);
	expect(basic, "198.51.100.8", "bob@neutral.example.com", SPF_NEUTRAL, "?all", &r);
	expect(basic, "198.51.100.8", "bob@default.example.com", SPF_NEUTRAL, "", &r);
	expect(basic, "198.51.100.8", "bob@nospf.example.com", SPF_NONE, "", &r);
	expect(basic, "198.51.100.8", "bob@nowhere.example.com", SPF_NONE, "", &r);
	expect(basic, "198.51.100.8", "bob@broken.example.com", SPF_TEMPERROR, "", &r);
	expect(basic, "198.51.100.8", "bob@two.example.com", SPF_PERMERROR, "", &r);
	assert_non_null(strstr(r.reason, "more than one SPF record"));
	expect(basic, "192.0.2.1", "bob@upper.example.com", SPF_PASS, "IP4:192.0.2.1", &r);
	expect(basic, "192.0.2.1", "bob@spf10.example.com", SPF_NONE, "", &r);
	/* IPv4 seen through an IPv6 socket is IPv4 */
	expect(basic, "::ffff:192.0.2.9", "alice@example.com", SPF_PASS, "ip4:192.0.2.0/24", &r);
	/* an IPv6 client never matches ip4 */
	expect(basic, "2001:db8::1", "alice@example.com", SPF_FAIL, "-all", &r);
	/* names that are not domains: none, no query */
	expect(basic, "192.0.2.1", "alice@localhost", SPF_NONE, "", &r);
	assert_int_equal(r.queries, 0);
	expect(basic, "192.0.2.1", "alice@[192.0.2.1]", SPF_NONE, "", &r);
	expect(basic, "192.0.2.1", "alice@a..example.com", SPF_NONE, "", &r);
	assert_int_equal(r.queries, 0);
}

/* ---- syntax ---- */

static void test_syntax_errors(void **state)
{
	(void)state;
	static const char *bad[] = {
		"v=spf1 foo:bar.com -all",    /* unknown mechanism */
		"v=spf1 ip4:192.0.2 -all",    /* bad address */
		"v=spf1 ip4:192.0.2.1/33",    /* prefix too long */
		"v=spf1 ip4:192.0.2.1/",      /* empty prefix */
		"v=spf1 ip4:192.0.2.1/024",   /* leading zero */
		"v=spf1 ip6:2001:db8::/129",
		"v=spf1 a:museum",            /* domain-end needs "." toplabel */
		"v=spf1 a:1.2.3.4",           /* numeric top label */
		"v=spf1 a:example.-com",
		"v=spf1 include:",            /* missing domain */
		"v=spf1 include",
		"v=spf1 exists",
		"v=spf1 all/24",
		"v=spf1 a/24/64",
		"v=spf1 mx//129",
		"v=spf1 redirect=a.example.com redirect=b.example.com",
		"v=spf1 exp=a.example.com exp=b.example.com",
		"v=spf1 -redirect=a.example.com",
		"v=spf1 a:%{x}.example.com",  /* unknown macro letter */
		"v=spf1 a:%{d0}.example.com", /* zero digits */
		"v=spf1 a:%{c}.example.com",  /* c only in explanations */
		"v=spf1 a:%.example.com",
		"v=spf1 a:%{d.example.com",
		"v=spf1 =foo",
		"v=spf1 -all\x01",
		"v=spf1 ip4:1.2.3.4 9foo=bar",
	};
	char err[160];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (spf_record_check(bad[i], strlen(bad[i]), err, sizeof(err)) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	static const char *good[] = {
		"v=spf1",
		"v=spf1 ",
		"v=spf1  -all  ",
		"v=spf1 a mx ptr -all",
		"v=spf1 a/24 mx/24//64 a:example.com//64 mx:example.com/0",
		"v=spf1 ip4:0.0.0.0/0 ip6:::/0 ip6:2001:db8::/32",
		"v=spf1 include:_spf.example.com. ~all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 a:%{d} mx:%{o}",
		"v=spf1 redirect=_spf.example.com exp=explain.%{d}",
		"v=spf1 unknown-mod=whatever%%value foo.bar=1 -all",
		"v=spf1 a:1-2.example.com a:example.1a",
		"v=spf1 a:%{l/}.example.com//64",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (spf_record_check(good[i], strlen(good[i]), err, sizeof(err)) != 0)
			fail_msg("refused \"%s\": %s", good[i], err);
	assert_int_equal(spf_record_check("v=spf1x", 7, err, sizeof(err)), 1);
	assert_int_equal(spf_record_check("spf1", 4, err, sizeof(err)), 1);
	assert_int_equal(spf_record_check("v=spf1\t-all", 11, err, sizeof(err)), 1);

	/* a syntax error anywhere is a permerror before anything matches */
	static const struct rec zone[] = {
		{ "example.com", "TXT", "v=spf1 +all foo:bar" },
		END,
	};
	struct run r;
	expect(zone, "192.0.2.1", "a@example.com", SPF_PERMERROR, "", &r);
	assert_non_null(strstr(r.reason, "syntax error"));
}

/* ---- mechanisms ---- */

static const struct rec mech[] = {
	/* include */
	{ "inc.example.com", "TXT", "v=spf1 include:_spf.other.net include:_fail.other.net -all" },
	{ "_spf.other.net", "TXT", "v=spf1 ip4:203.0.113.0/28 -all" },
	{ "_fail.other.net", "TXT", "v=spf1 ip4:203.0.113.99 -all" },
	{ "incnone.example.com", "TXT", "v=spf1 include:nothing.other.net -all" },
	{ "inctemp.example.com", "TXT", "v=spf1 include:broken.other.net -all" },
	{ "broken.other.net", "SERVFAIL", NULL },
	{ "incperm.example.com", "TXT", "v=spf1 include:syntax.other.net -all" },
	{ "syntax.other.net", "TXT", "v=spf1 ip4:bad" },
	{ "incinc.example.com", "TXT", "v=spf1 include:l1.other.net -all" },
	{ "l1.other.net", "TXT", "v=spf1 include:l2.other.net ?all" },
	{ "l2.other.net", "TXT", "v=spf1 ip6:2001:db8:2::/48 -all" },
	/* a */
	{ "a.example.com", "TXT", "v=spf1 a -all" },
	{ "a.example.com", "A", "192.0.2.10" },
	{ "a.example.com", "A", "192.0.2.11" },
	{ "a.example.com", "AAAA", "2001:db8::10" },
	{ "a24.example.com", "TXT", "v=spf1 a:a.example.com/24//64 -all" },
	{ "aspec.example.com", "TXT", "v=spf1 a:a.example.com -all" },
	{ "atemp.example.com", "TXT", "v=spf1 a:broken.other.net -all" },
	/* mx */
	{ "mx.example.com", "TXT", "v=spf1 mx -all" },
	{ "mx.example.com", "MX", "mx1.example.com" },
	{ "mx.example.com", "MX", "mx2.example.com" },
	{ "mx1.example.com", "A", "192.0.2.21" },
	{ "mx2.example.com", "A", "192.0.2.22" },
	{ "mx2.example.com", "AAAA", "2001:db8::22" },
	{ "mxcidr.example.com", "TXT", "v=spf1 mx:mx.example.com/30 -all" },
	{ "nullmx.example.com", "TXT", "v=spf1 mx -all" },
	{ "nullmx.example.com", "MX", "" },
	{ "mx11.example.com", "TXT", "v=spf1 mx -all" },
	{ "mx11.example.com", "MX", "h1.example.com" }, { "mx11.example.com", "MX", "h2.example.com" },
	{ "mx11.example.com", "MX", "h3.example.com" }, { "mx11.example.com", "MX", "h4.example.com" },
	{ "mx11.example.com", "MX", "h5.example.com" }, { "mx11.example.com", "MX", "h6.example.com" },
	{ "mx11.example.com", "MX", "h7.example.com" }, { "mx11.example.com", "MX", "h8.example.com" },
	{ "mx11.example.com", "MX", "h9.example.com" }, { "mx11.example.com", "MX", "h10.example.com" },
	{ "mx11.example.com", "MX", "h11.example.com" },
	{ "mxtemp.example.com", "TXT", "v=spf1 mx -all" },
	{ "mxtemp.example.com", "MX", "broken.other.net" },
	/* ip6 */
	{ "ip6.example.com", "TXT", "v=spf1 ip6:2001:db8:1::/48 ip6:2001:db8:f::1 -all" },
	/* redirect */
	{ "redir.example.com", "TXT", "v=spf1 ip4:192.0.2.200 redirect=_spf.other.net" },
	{ "redirnone.example.com", "TXT", "v=spf1 redirect=nothing.other.net" },
	{ "redirall.example.com", "TXT", "v=spf1 ?all redirect=_spf.other.net" },
	{ "redirmacro.example.com", "TXT", "v=spf1 redirect=_spf.%{d}" },
	{ "_spf.redirmacro.example.com", "TXT", "v=spf1 ip4:192.0.2.77 -all" },
	/* exists */
	{ "exists.example.com", "TXT", "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all" },
	{ "1.2.0.192.bob._spf.exists.example.com", "A", "127.0.0.2" },
	/* ptr */
	{ "ptr.example.com", "TXT", "v=spf1 ptr -all" },
	{ "ptrspec.example.com", "TXT", "v=spf1 ptr:example.org -all" },
	{ "3.2.0.192.in-addr.arpa", "PTR", "mx.example.org" },
	{ "3.2.0.192.in-addr.arpa", "PTR", "liar.ptr.example.com" },
	{ "mx.example.org", "A", "192.0.2.3" },
	{ "liar.ptr.example.com", "A", "192.0.2.99" },
	{ "4.2.0.192.in-addr.arpa", "PTR", "host.ptr.example.com" },
	{ "host.ptr.example.com", "A", "192.0.2.4" },
	END,
};

static void test_include(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "203.0.113.5", "x@inc.example.com", SPF_PASS, "include:_spf.other.net", &r);
	assert_int_equal(r.out.lookups, 1);
	/* an included fail is only "no match": the next term decides */
	expect(mech, "203.0.113.99", "x@inc.example.com", SPF_PASS, "include:_fail.other.net", &r);
	expect(mech, "198.51.100.1", "x@inc.example.com", SPF_FAIL, "-all", &r);
	assert_int_equal(r.out.lookups, 2);
	expect(mech, "198.51.100.1", "x@incnone.example.com", SPF_PERMERROR, "", &r);
	expect(mech, "198.51.100.1", "x@inctemp.example.com", SPF_TEMPERROR, "", &r);
	expect(mech, "198.51.100.1", "x@incperm.example.com", SPF_PERMERROR, "", &r);
	expect(mech, "2001:db8:2::5", "x@incinc.example.com", SPF_PASS, "include:l1.other.net", &r);
	/* ?all inside an include is neutral: no match, -all at the top */
	expect(mech, "2001:db8:3::5", "x@incinc.example.com", SPF_FAIL, "-all", &r);
}

static void test_a(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "192.0.2.11", "x@a.example.com", SPF_PASS, "a", &r);
	assert_non_null(strstr(r.log, "A a.example.com|"));
	expect(mech, "192.0.2.12", "x@a.example.com", SPF_FAIL, "-all", &r);
	expect(mech, "2001:db8::10", "x@a.example.com", SPF_PASS, "a", &r);
	assert_non_null(strstr(r.log, "AAAA a.example.com|"));
	assert_null(strstr(r.log, "|A a.example.com"));
	expect(mech, "192.0.2.250", "x@a24.example.com", SPF_PASS, "a:a.example.com/24//64", &r);
	expect(mech, "2001:db8::ffff", "x@a24.example.com", SPF_PASS, NULL, &r);
	expect(mech, "2001:db9::10", "x@a24.example.com", SPF_FAIL, NULL, &r);
	expect(mech, "192.0.2.10", "x@aspec.example.com", SPF_PASS, "a:a.example.com", &r);
	expect(mech, "192.0.2.10", "x@atemp.example.com", SPF_TEMPERROR, "", &r);
}

static void test_mx(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "192.0.2.22", "x@mx.example.com", SPF_PASS, "mx", &r);
	assert_non_null(strstr(r.log, "MX mx.example.com|A mx1.example.com|A mx2.example.com|"));
	expect(mech, "2001:db8::22", "x@mx.example.com", SPF_PASS, "mx", &r);
	expect(mech, "192.0.2.23", "x@mx.example.com", SPF_FAIL, "-all", &r);
	expect(mech, "192.0.2.23", "x@mxcidr.example.com", SPF_PASS, "mx:mx.example.com/30", &r);
	expect(mech, "192.0.2.23", "x@nullmx.example.com", SPF_FAIL, "-all", &r);
	expect(mech, "192.0.2.23", "x@mx11.example.com", SPF_PERMERROR, "", &r);
	assert_non_null(strstr(r.reason, "more than 10 MX"));
	expect(mech, "192.0.2.23", "x@mxtemp.example.com", SPF_TEMPERROR, "", &r);
}

static void test_ip6(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "2001:db8:1:ffff::1", "x@ip6.example.com", SPF_PASS, "ip6:2001:db8:1::/48", &r);
	expect(mech, "2001:db8:f::1", "x@ip6.example.com", SPF_PASS, "ip6:2001:db8:f::1", &r);
	expect(mech, "2001:db8:f::2", "x@ip6.example.com", SPF_FAIL, "-all", &r);
	expect(mech, "192.0.2.1", "x@ip6.example.com", SPF_FAIL, "-all", &r);
}

static void test_redirect(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "192.0.2.200", "x@redir.example.com", SPF_PASS, "ip4:192.0.2.200", &r);
	expect(mech, "203.0.113.1", "x@redir.example.com", SPF_PASS, "ip4:203.0.113.0/28", &r);
	assert_string_equal(r.out.domain, "redir.example.com");
	expect(mech, "198.51.100.1", "x@redir.example.com", SPF_FAIL, "-all", &r);
	expect(mech, "198.51.100.1", "x@redirnone.example.com", SPF_PERMERROR, "", &r);
	/* all matches first: redirect= is never reached */
	expect(mech, "198.51.100.1", "x@redirall.example.com", SPF_NEUTRAL, "?all", &r);
	assert_int_equal(r.queries, 1);
	expect(mech, "192.0.2.77", "x@redirmacro.example.com", SPF_PASS, NULL, &r);
}

static void test_exists(void **state)
{
	(void)state;
	struct run r;
	expect(mech, "192.0.2.1", "bob@exists.example.com", SPF_PASS, NULL, &r);
	assert_non_null(strstr(r.log, "A 1.2.0.192.bob._spf.exists.example.com|"));
	expect(mech, "192.0.2.1", "carol@exists.example.com", SPF_FAIL, "-all", &r);
	/* exists always asks for A, even for an IPv6 client */
	expect(mech, "2001:db8::1", "bob@exists.example.com", SPF_FAIL, "-all", &r);
	assert_non_null(strstr(r.log, "|A 1.0.0.0."));
}

static void test_ptr(void **state)
{
	(void)state;
	struct run r;
	/* mx.example.org is validated but outside ptr.example.com; liar's A
	 * does not point back */
	expect(mech, "192.0.2.3", "x@ptr.example.com", SPF_FAIL, "-all", &r);
	assert_non_null(strstr(r.log, "PTR 3.2.0.192.in-addr.arpa|A mx.example.org|"
				      "A liar.ptr.example.com|"));
	expect(mech, "192.0.2.3", "x@ptrspec.example.com", SPF_PASS, "ptr:example.org", &r);
	expect(mech, "192.0.2.4", "x@ptr.example.com", SPF_PASS, "ptr", &r);
	/* no PTR: no match (a void lookup) */
	expect(mech, "192.0.2.5", "x@ptr.example.com", SPF_FAIL, "-all", &r);
	assert_int_equal(r.out.void_lookups, 1);
}

/* ---- macros: RFC 7208 section 7.4 ---- */

static void expand_eq(struct spf *c, const char *macro, bool domain, const char *want)
{
	char out[1024];
	int n = spf_macro_expand(c, macro, strlen(macro), domain, out, sizeof(out));
	if (n < 0)
		fail_msg("\"%s\": error", macro);
	if (strcmp(out, want) != 0)
		fail_msg("\"%s\": got \"%s\", want \"%s\"", macro, out, want);
	assert_int_equal((size_t)n, strlen(want));
}

static void test_macros(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	assert_true(spf_parse_ip("192.0.2.3", &ss));
	struct spf *c = spf_new((const struct sockaddr *)&ss, "email.example.com",
				"strong-bad@email.example.com", "mx.example.org");
	spf_set_time(c, 1700000000);
	spf_set_receiver(c, "mx.receiver.test");
	expand_eq(c, "%{s}", true, "strong-bad@email.example.com");
	expand_eq(c, "%{o}", true, "email.example.com");
	expand_eq(c, "%{d}", true, "email.example.com");
	expand_eq(c, "%{d4}", true, "email.example.com");
	expand_eq(c, "%{d3}", true, "email.example.com");
	expand_eq(c, "%{d2}", true, "example.com");
	expand_eq(c, "%{d1}", true, "com");
	expand_eq(c, "%{dr}", true, "com.example.email");
	expand_eq(c, "%{d2r}", true, "example.email");
	expand_eq(c, "%{l}", true, "strong-bad");
	expand_eq(c, "%{l-}", true, "strong.bad");
	expand_eq(c, "%{lr}", true, "strong-bad");
	expand_eq(c, "%{lr-}", true, "bad.strong");
	expand_eq(c, "%{l1r-}", true, "strong");
	expand_eq(c, "%{ir}.%{v}._spf.%{d2}", true, "3.2.0.192.in-addr._spf.example.com");
	expand_eq(c, "%{lr-}.lp._spf.%{d2}", true, "bad.strong.lp._spf.example.com");
	expand_eq(c, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", true,
		  "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
	expand_eq(c, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", true,
		  "3.2.0.192.in-addr.strong.lp._spf.example.com");
	expand_eq(c, "%{d2}.trusted-domains.example.net", true,
		  "example.com.trusted-domains.example.net");
	expand_eq(c, "%{h}", true, "mx.example.org");
	expand_eq(c, "%{p}", true, "unknown");
	/* escapes, upper case (URL-encoded), explanations */
	expand_eq(c, "a%%b%_c%-d", false, "a%b c%20d");
	expand_eq(c, "%{S}", true, "strong-bad%40email.example.com");
	expand_eq(c, "%{i} is not allowed by %{d} at %{t} (%{r}, %{c})", false,
		  "192.0.2.3 is not allowed by email.example.com at 1700000000 "
		  "(mx.receiver.test, 192.0.2.3)");
	char out[64];
	assert_int_equal(spf_macro_expand(c, "%{c}.x.com", 10, true, out, sizeof(out)), -1);
	assert_int_equal(spf_macro_expand(c, "%{d0}", 5, true, out, sizeof(out)), -1);
	assert_int_equal(spf_macro_expand(c, "%{d", 3, true, out, sizeof(out)), -1);
	spf_free(c);

	assert_true(spf_parse_ip("2001:db8::cb01", &ss));
	c = spf_new((const struct sockaddr *)&ss, "email.example.com",
		    "strong-bad@email.example.com", "mx.example.org");
	expand_eq(c, "%{ir}.%{v}._spf.%{d2}", true,
		  "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf."
		  "example.com");
	expand_eq(c, "%{c}", false, "2001:db8::cb01");
	spf_free(c);
}

/* %{p}: the validated name, looked up when a term needs it */
static void test_macro_p(void **state)
{
	(void)state;
	static const struct rec zone[] = {
		{ "example.org", "TXT", "v=spf1 exists:%{p}.allow.example.org -all" },
		{ "3.2.0.192.in-addr.arpa", "PTR", "mx.example.org" },
		{ "mx.example.org", "A", "192.0.2.3" },
		{ "mx.example.org.allow.example.org", "A", "127.0.0.2" },
		END,
	};
	struct run r;
	expect(zone, "192.0.2.3", "x@example.org", SPF_PASS, NULL, &r);
	expect(zone, "192.0.2.4", "x@example.org", SPF_FAIL, NULL, &r);
	assert_non_null(strstr(r.log, "A unknown.allow.example.org|"));
}

/* ---- limits ---- */

static void test_lookup_limit(void **state)
{
	(void)state;
	static const struct rec zone[] = {
		/* ten DNS-querying terms: at the limit */
		{ "ten.example.com", "TXT",
		  "v=spf1 a:h1.example.com a:h2.example.com a:h3.example.com a:h4.example.com "
		  "a:h5.example.com mx:h6.example.com a:h7.example.com a:h8.example.com "
		  "include:i9.example.com ptr:h10.example.com ip4:192.0.2.1 -all" },
		/* eleven: over it, even though ip4 would match */
		{ "eleven.example.com", "TXT",
		  "v=spf1 a:h1.example.com a:h2.example.com a:h3.example.com a:h4.example.com "
		  "a:h5.example.com a:h6.example.com a:h7.example.com a:h8.example.com "
		  "a:h9.example.com a:h10.example.com a:h11.example.com ip4:192.0.2.1 -all" },
		/* through includes and redirect */
		{ "chain.example.com", "TXT", "v=spf1 include:c1.example.com redirect=c2.example.com" },
		{ "c1.example.com", "TXT", "v=spf1 a:h1.example.com a:h2.example.com a:h3.example.com a:h4.example.com" },
		{ "c2.example.com", "TXT", "v=spf1 a:h5.example.com a:h6.example.com a:h7.example.com a:h8.example.com ip4:192.0.2.1" },
		/* an include loop ends at the limit */
		{ "loop.example.com", "TXT", "v=spf1 include:loop.example.com -all" },
		{ "i9.example.com", "TXT", "v=spf1 -all" },
		{ "h1.example.com", "A", "10.0.0.1" }, { "h2.example.com", "A", "10.0.0.1" },
		{ "h3.example.com", "A", "10.0.0.1" }, { "h4.example.com", "A", "10.0.0.1" },
		{ "h5.example.com", "A", "10.0.0.1" }, { "h6.example.com", "A", "10.0.0.1" },
		{ "h6.example.com", "MX", "h7.example.com" },
		{ "h7.example.com", "A", "10.0.0.1" }, { "h8.example.com", "A", "10.0.0.1" },
		{ "h9.example.com", "A", "10.0.0.1" }, { "h10.example.com", "A", "10.0.0.1" },
		{ "h11.example.com", "A", "10.0.0.1" },
		END,
	};
	struct run r;
	expect(zone, "192.0.2.1", "x@ten.example.com", SPF_PASS, "ip4:192.0.2.1", &r);
	assert_int_equal(r.out.lookups, 10);
	expect(zone, "192.0.2.1", "x@eleven.example.com", SPF_PERMERROR, "", &r);
	assert_non_null(strstr(r.reason, "more than 10"));
	assert_int_equal(r.queries, 11); /* the TXT and ten A: the 11th is not asked */
	expect(zone, "192.0.2.1", "x@chain.example.com", SPF_PASS, NULL, &r);
	assert_int_equal(r.out.lookups, 10);
	expect(zone, "192.0.2.1", "x@loop.example.com", SPF_PERMERROR, "", &r);
}

static void test_void_lookups(void **state)
{
	(void)state;
	static const struct rec zone[] = {
		{ "two.example.com", "TXT", "v=spf1 a:nx1.example.com mx:nodata.example.com -all" },
		{ "three.example.com", "TXT",
		  "v=spf1 a:nx1.example.com exists:nx2.example.com a:nodata.example.com ip4:192.0.2.1" },
		{ "nodata.example.com", "TXT", "v=spf1" },
		END,
	};
	struct run r;
	expect(zone, "192.0.2.1", "x@two.example.com", SPF_FAIL, "-all", &r);
	assert_int_equal(r.out.void_lookups, 2);
	expect(zone, "192.0.2.1", "x@three.example.com", SPF_PERMERROR, "", &r);
	assert_non_null(strstr(r.reason, "void"));
}

/* ---- identities ---- */

static void test_helo(void **state)
{
	(void)state;
	static const struct rec zone[] = {
		{ "mail.example.net", "TXT", "v=spf1 a exists:%{l}.%{o}.ok.example.net -all" },
		{ "mail.example.net", "A", "192.0.2.30" },
		{ "postmaster.mail.example.net.ok.example.net", "A", "127.0.0.2" },
		{ "example.com", "TXT", "v=spf1 -all" },
		END,
	};
	struct sockaddr_storage ss;
	struct run r;
	assert_true(spf_parse_ip("192.0.2.30", &ss));
	drive(spf_new_helo((const struct sockaddr *)&ss, "mail.example.net"), zone, &r);
	assert_int_equal(r.out.result, SPF_PASS);
	assert_string_equal(r.mechanism, "a");
	assert_string_equal(r.out.domain, "mail.example.net");
	/* the sender is postmaster@helo */
	assert_true(spf_parse_ip("192.0.2.31", &ss));
	drive(spf_new_helo((const struct sockaddr *)&ss, "mail.example.net"), zone, &r);
	assert_int_equal(r.out.result, SPF_PASS);
	assert_string_equal(r.mechanism, "exists:%{l}.%{o}.ok.example.net");
	/* the null MAIL FROM checks postmaster@helo too */
	drive(new_check("192.0.2.30", "", "mail.example.net"), zone, &r);
	assert_int_equal(r.out.result, SPF_PASS);
	assert_string_equal(r.out.domain, "mail.example.net");
	/* a HELO that is an address literal or a single label: none */
	drive(spf_new_helo((const struct sockaddr *)&ss, "[192.0.2.30]"), zone, &r);
	assert_int_equal(r.out.result, SPF_NONE);
	drive(spf_new_helo((const struct sockaddr *)&ss, "localhost"), zone, &r);
	assert_int_equal(r.out.result, SPF_NONE);
	/* MAIL FROM and HELO are separate checks */
	drive(new_check("192.0.2.30", "a@example.com", "mail.example.net"), zone, &r);
	assert_int_equal(r.out.result, SPF_FAIL);
}

static void test_explanation(void **state)
{
	(void)state;
	static const struct rec zone[] = {
		{ "example.com", "TXT", "v=spf1 mx -all exp=explain._spf.%{d}" },
		{ "explain._spf.example.com", "TXT",
		  "%{i} is not one of %{d}'s designated mail servers." },
		{ "bad.example.com", "TXT", "v=spf1 -all exp=nowhere.example.com" },
		{ "two.example.com", "TXT", "v=spf1 -all exp=twoexp.example.com" },
		{ "twoexp.example.com", "TXT", "one" },
		{ "twoexp.example.com", "TXT", "two" },
		{ "tmp.example.com", "TXT", "v=spf1 -all exp=broken.example.com" },
		{ "broken.example.com", "SERVFAIL", NULL },
		{ "inc.example.com", "TXT", "v=spf1 include:incexp.example.com -all" },
		{ "incexp.example.com", "TXT", "v=spf1 +all exp=explain._spf.example.com" },
		END,
	};
	struct run r;
	expect(zone, "192.0.2.1", "x@example.com", SPF_FAIL, "-all", &r);
	assert_string_equal(r.explanation,
			    "192.0.2.1 is not one of example.com's designated mail servers.");
	expect(zone, "192.0.2.1", "x@bad.example.com", SPF_FAIL, "-all", &r);
	assert_string_equal(r.explanation, "");
	expect(zone, "192.0.2.1", "x@two.example.com", SPF_FAIL, "-all", &r);
	assert_string_equal(r.explanation, "");
	expect(zone, "192.0.2.1", "x@tmp.example.com", SPF_FAIL, "-all", &r);
	expect(zone, "192.0.2.1", "x@inc.example.com", SPF_PASS, NULL, &r);
	assert_string_equal(r.explanation, "");
}

/* The step API asks again for the same query until it is answered, and
 * spf_abort ends the check with temperror. */
static void test_abort(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	struct spf_query q1, q2;
	assert_true(spf_parse_ip("192.0.2.1", &ss));
	struct spf *c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@example.com", "h.example.com");
	assert_true(spf_step(c, &q1));
	assert_true(spf_step(c, &q2));
	assert_int_equal(q1.type, SPF_Q_TXT);
	assert_string_equal(q1.name, q2.name);
	spf_abort(c, "timed out");
	assert_false(spf_step(c, &q1));
	assert_int_equal(spf_result(c)->result, SPF_TEMPERROR);
	assert_string_equal(spf_result(c)->reason, "timed out");
	spf_free(c);
}

/* ---- out of memory ---- */

static const struct rec oom_zone[] = {
	{ "example.com", "TXT", "v=spf1 include:_spf.example.com -all exp=why.example.com" },
	{ "_spf.example.com", "TXT", "v=spf1 a:mail.example.com ip4:198.51.100.0/24 -all" },
	{ "mail.example.com", "A", "198.51.100.99" },
	{ "why.example.com", "TXT", "%{i} may not send for %{d}" },
	END,
};

/* A check that goes through an include, an a:, and a fail with its
 * explanation, while a fault is set: spf_new* give NULL, or the result is
 * temperror "out of memory" with out_of_memory set, or (the fault fell on
 * nothing that mattered) the result is the usual one. True when out of
 * memory. */
static bool oom_run(void *arg)
{
	(void)arg;
	struct spf *c = new_check("192.0.2.1", "x@example.com", "h.example.net");
	struct run r;

	if (c == NULL)
		return true;
	drive(c, oom_zone, &r);
	if (r.out.out_of_memory) {
		assert_int_equal(r.out.result, SPF_TEMPERROR);
		assert_string_equal(r.reason, "out of memory");
		return true;
	}
	assert_int_equal(r.out.result, SPF_FAIL);
	assert_string_equal(r.explanation, "192.0.2.1 may not send for example.com");
	return false;
}

/* Each allocation of that check fails in turn. */
static void test_out_of_memory(void **state)
{
	(void)state;
	int failed;
	int n = alloc_sweep(99, oom_run, NULL, &failed);
	/* The struct, two frames, two records, the explanation. */
	assert_int_equal(n, 7);
	assert_int_equal(failed, 6);

	/* A lookup that failed for want of memory is not the sender's DNS
	 * trouble; a SERVFAIL is. */
	struct spf_query q;
	struct spf *c = new_check("192.0.2.1", "x@example.com", "h.example.net");
	assert_true(spf_step(c, &q));
	spf_answer(c, DNS_NOMEM, NULL, 0, dns_nomem_text());
	assert_false(spf_step(c, &q));
	assert_int_equal(spf_result(c)->result, SPF_TEMPERROR);
	assert_true(spf_result(c)->out_of_memory);
	spf_free(c);
	c = new_check("192.0.2.1", "x@example.com", "h.example.net");
	assert_true(spf_step(c, &q));
	spf_answer(c, DNS_TEMPFAIL, NULL, 0, "Server failure");
	assert_false(spf_step(c, &q));
	assert_int_equal(spf_result(c)->result, SPF_TEMPERROR);
	assert_false(spf_result(c)->out_of_memory);
	spf_free(c);
}

static void test_names(void **state)
{
	(void)state;
	enum spf_result r;
	assert_true(spf_result_parse("SoftFail", &r));
	assert_int_equal(r, SPF_SOFTFAIL);
	assert_false(spf_result_parse("maybe", &r));
	assert_string_equal(spf_result_name(SPF_PERMERROR), "permerror");
}

/* ---- spf_async on a real event loop, without a DNS server ---- */

struct async_seen {
	int calls;
	enum spf_result result;
};

static void on_async(void *arg, const struct spf_outcome *r)
{
	struct async_seen *s = arg;
	s->calls++;
	s->result = r->result;
}

static void test_async(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	char err[256];
	/* nothing listens on 127.0.0.1:9: the query fails at once or times out */
	struct dns *d = dns_new(base, "127.0.0.1:9", 0.3, err, sizeof(err));
	assert_non_null(d);
	struct sockaddr_storage ss;
	assert_true(spf_parse_ip("192.0.2.1", &ss));

	/* a DNS failure: temperror, called back once, from the loop */
	struct async_seen seen = { 0, SPF_NONE };
	struct spf *c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@example.com", "h.example.com");
	assert_non_null(spf_async_start(base, d, c, 5.0, on_async, &seen));
	assert_int_equal(seen.calls, 0);
	while (seen.calls == 0 && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.result, SPF_TEMPERROR);

	/* known at once (no valid domain): still not called inside start */
	seen.calls = 0;
	c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@localhost", "h.example.com");
	assert_non_null(spf_async_start(base, d, c, 5.0, on_async, &seen));
	assert_int_equal(seen.calls, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.result, SPF_NONE);

	/* the overall limit before the resolver's own */
	seen.calls = 0;
	struct dns *slow = dns_new(base, "192.0.2.1:53", 5.0, err, sizeof(err));
	assert_non_null(slow);
	c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@example.com", "h.example.com");
	assert_non_null(spf_async_start(base, slow, c, 0.2, on_async, &seen));
	while (seen.calls == 0 && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	assert_int_equal(seen.result, SPF_TEMPERROR);

	/* cancelled: never called back, nothing leaks */
	seen.calls = 0;
	c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@example.com", "h.example.com");
	spf_async_cancel(spf_async_start(base, slow, c, 0.2, on_async, &seen));
	c = spf_new_mailfrom((const struct sockaddr *)&ss, "a@localhost", "h.example.com");
	spf_async_cancel(spf_async_start(base, d, c, 0.2, on_async, &seen));
	struct timeval half = { 0, 500000 };
	event_base_loopexit(base, &half);
	event_base_dispatch(base);
	assert_int_equal(seen.calls, 0);

	dns_free(slow);
	dns_free(d);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_results),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_a),
		cmocka_unit_test(test_mx),
		cmocka_unit_test(test_ip6),
		cmocka_unit_test(test_redirect),
		cmocka_unit_test(test_exists),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_macro_p),
		cmocka_unit_test(test_lookup_limit),
		cmocka_unit_test(test_void_lookups),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_explanation),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_async),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
