/*
 * Unit tests for dmarc: the record parser (v=DMARC1 first, p/sp/np,
 * adkim/aspf, pct, rua/ruf, the invalid-p rule of RFC 7489 6.6.3 step 6);
 * policy discovery against a fake resolver (the From domain's record, the
 * Organizational Domain's when there is none, several records, records
 * that are not DMARC, DNS errors); alignment of SPF and DKIM, relaxed and
 * strict; results and the policy to apply (p=, sp= for subdomains, pct=);
 * and the From domain of a header section (RFC 7489 6.6.1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "verify/dmarc.h"

static struct psl *psl;

static int setup(void **state)
{
	(void)state;
	static const char list[] = "com\nuk\nco.uk\nnet\norg\n";
	psl = psl_parse(list, sizeof(list) - 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	psl_free(psl);
	return 0;
}

/* ---- the record ---- */

static struct dmarc_record parse_ok(const char *text)
{
	struct dmarc_record r;
	enum dmarc_parse st = dmarc_record_parse(text, strlen(text), &r);
	if (st != DMARC_PARSE_OK)
		fail_msg("\"%s\": status %d", text, (int)st);
	return r;
}

static void parse_is(const char *text, enum dmarc_parse want)
{
	struct dmarc_record r;
	enum dmarc_parse st = dmarc_record_parse(text, strlen(text), &r);
	if (st != want)
		fail_msg("\"%s\": status %d, want %d", text, (int)st, (int)want);
}

static void test_record(void **state)
{
	(void)state;
	struct dmarc_record r = parse_ok("v=DMARC1; p=reject");
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
	assert_int_equal(r.sp, DMARC_POLICY_REJECT); /* sp defaults to p */
	assert_int_equal(r.np, DMARC_POLICY_REJECT);
	assert_false(r.adkim_strict);
	assert_false(r.aspf_strict);
	assert_int_equal(r.pct, 100);
	assert_false(r.p_invalid);

	r = parse_ok(" v = DMARC1 ;P=Quarantine; sp=none; np=reject; adkim=s; aspf=S; pct=25; "
		     "rua=mailto:a@example.com,mailto:b@example.net!10m; ruf=mailto:f@example.com;"
		     " fo=1; ri=3600; unknown=x;");
	assert_int_equal(r.p, DMARC_POLICY_QUARANTINE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	assert_int_equal(r.np, DMARC_POLICY_REJECT);
	assert_true(r.adkim_strict);
	assert_true(r.aspf_strict);
	assert_int_equal(r.pct, 25);
	assert_int_equal(r.rua, 2);
	assert_int_equal(r.ruf, 1);

	/* invalid values of the other tags fall back to their defaults */
	r = parse_ok("v=DMARC1; p=none; adkim=x; aspf=; pct=abc");
	assert_false(r.adkim_strict);
	assert_false(r.aspf_strict);
	assert_int_equal(r.pct, 100);
	assert_int_equal(parse_ok("v=DMARC1; p=none; pct=101").pct, 100);
	assert_int_equal(parse_ok("v=DMARC1; p=none; pct=0").pct, 0);
	/* the first of a repeated tag counts; junk between tags is ignored */
	assert_int_equal(parse_ok("v=DMARC1; p=reject; p=none").p, DMARC_POLICY_REJECT);
	assert_int_equal(parse_ok("v=DMARC1; garbage; p=quarantine").p, DMARC_POLICY_QUARANTINE);

	/* not DMARC records: v=DMARC1 must come first, in upper case */
	parse_is("p=reject; v=DMARC1", DMARC_PARSE_NOT_DMARC);
	parse_is("v=DMARC2; p=reject", DMARC_PARSE_NOT_DMARC);
	parse_is("v=dmarc1; p=reject", DMARC_PARSE_NOT_DMARC);
	parse_is("v=spf1 -all", DMARC_PARSE_NOT_DMARC);
	parse_is("", DMARC_PARSE_NOT_DMARC);

	/* 6.6.3 step 6: no valid p= (or a bad sp=) -> p=none if rua= is
	 * valid, else no DMARC at all */
	parse_is("v=DMARC1", DMARC_PARSE_UNUSABLE);
	parse_is("v=DMARC1; p=bogus", DMARC_PARSE_UNUSABLE);
	parse_is("v=DMARC1; p=reject; sp=bogus", DMARC_PARSE_UNUSABLE);
	parse_is("v=DMARC1; p=bogus; rua=not a uri", DMARC_PARSE_UNUSABLE);
	parse_is("v=DMARC1; p=bogus; rua=mailto:a@example.com,junk", DMARC_PARSE_UNUSABLE);
	r = parse_ok("v=DMARC1; p=bogus; rua=mailto:a@example.com");
	assert_true(r.p_invalid);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	r = parse_ok("v=DMARC1; rua=mailto:a@example.com");
	assert_true(r.p_invalid);
	r = parse_ok("v=DMARC1; p=reject; sp=bad; rua=mailto:a@example.com");
	assert_true(r.p_invalid);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
}

/* ---- discovery and evaluation with a fake resolver ---- */

struct rec {
	const char *name;
	const char *txt; /* NULL: SERVFAIL */
};

static const struct rec zone[] = {
	{ "_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine" },
	{ "_dmarc.example.com", "some unrelated TXT record" },
	{ "_dmarc.own.example.com", "v=DMARC1; p=none" },
	{ "_dmarc.strict.example.net", "v=DMARC1; p=reject; adkim=s; aspf=s" },
	{ "_dmarc.nosp.example.org", "v=DMARC1; p=quarantine" },
	{ "_dmarc.example.org", "v=DMARC1; p=reject" },
	{ "_dmarc.two.example.net", "v=DMARC1; p=reject" },
	{ "_dmarc.two.example.net", "v=DMARC1; p=none" },
	{ "_dmarc.bad.example.net", "v=DMARC1; p=maybe" },
	{ "_dmarc.badrua.example.net", "v=DMARC1; p=maybe; rua=mailto:d@example.net" },
	{ "_dmarc.pct.example.net", "v=DMARC1; p=reject; pct=30" },
	{ "_dmarc.broken.net", NULL },
	{ "_dmarc.example.co.uk", "v=DMARC1; p=reject" },
	{ NULL, NULL },
};

struct found {
	char names[1024]; /* the names looked up, '|' after each */
};

static struct dmarc *discover(const char *from, struct found *fd)
{
	struct dmarc *m = dmarc_new(psl, from);
	char name[300];
	memset(fd, 0, sizeof(*fd));
	int guard = 0;
	while (dmarc_step(m, name, sizeof(name))) {
		assert_true(++guard < 5);
		strncat(fd->names, name, sizeof(fd->names) - strlen(fd->names) - 2);
		strcat(fd->names, "|");
		struct dmarc_txt txt[8];
		size_t n = 0;
		bool exists = false, fail = false;
		for (const struct rec *r = zone; r->name; r++) {
			if (strcasecmp(r->name, name) != 0)
				continue;
			exists = true;
			if (r->txt == NULL) {
				fail = true;
				break;
			}
			txt[n].text = r->txt;
			txt[n].len = strlen(r->txt);
			n++;
		}
		if (fail)
			dmarc_answer(m, DNS_TEMPFAIL, NULL, 0, "SERVFAIL");
		else if (n > 0)
			dmarc_answer(m, DNS_OK, txt, n, NULL);
		else
			dmarc_answer(m, exists ? DNS_NODATA : DNS_NXDOMAIN, NULL, 0, NULL);
	}
	return m;
}

/* Evaluates From domain `from` with SPF (result, domain) and one DKIM
 * signature (pass, d=; d NULL: none). */
static void eval(const char *from, enum spf_result spf, const char *spf_domain, bool dkim_pass,
		 const char *dkim_d, unsigned roll, struct dmarc_outcome *out, struct found *fd)
{
	struct dmarc *m = discover(from, fd);
	struct dmarc_dkim dk = { dkim_pass, dkim_d };
	struct dmarc_auth a = { spf, spf_domain, &dk, dkim_d ? 1 : 0, roll };
	dmarc_evaluate(m, &a, out);
	dmarc_free(m);
}

static void test_alignment_relaxed(void **state)
{
	(void)state;
	struct dmarc_outcome o;
	struct found fd;
	/* SPF pass for a subdomain of the From domain: aligned (relaxed) */
	eval("example.com", SPF_PASS, "bounce.example.com", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PASS);
	assert_true(o.spf_aligned);
	assert_false(o.dkim_aligned);
	assert_int_equal(o.apply, DMARC_POLICY_NONE);
	assert_int_equal(o.policy, DMARC_POLICY_REJECT);
	assert_string_equal(fd.names, "_dmarc.example.com|");
	assert_string_equal(o.record_domain, "example.com");
	/* SPF pass for another organization: not aligned */
	eval("example.com", SPF_PASS, "mailer.example.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	assert_int_equal(o.apply, DMARC_POLICY_REJECT);
	/* SPF softfail never counts, even aligned */
	eval("example.com", SPF_SOFTFAIL, "example.com", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	/* DKIM pass with d= the parent domain of a From subdomain */
	eval("own.example.com", SPF_FAIL, "x.example.net", true, "EXAMPLE.COM", 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PASS);
	assert_true(o.dkim_aligned);
	assert_string_equal(o.dkim_domain, "example.com");
	/* a failed DKIM signature never counts */
	eval("example.com", SPF_NONE, "", false, "example.com", 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	/* the PSL draws the line: example.co.uk and other.co.uk differ */
	eval("example.co.uk", SPF_PASS, "other.co.uk", true, "co.uk", 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	eval("example.co.uk", SPF_PASS, "mail.example.co.uk", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PASS);
}

static void test_alignment_strict(void **state)
{
	(void)state;
	struct dmarc_outcome o;
	struct found fd;
	eval("strict.example.net", SPF_PASS, "mail.strict.example.net", true,
	     "sub.strict.example.net", 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	assert_false(o.spf_aligned);
	assert_false(o.dkim_aligned);
	assert_int_equal(o.apply, DMARC_POLICY_REJECT);
	eval("strict.example.net", SPF_PASS, "Strict.Example.Net.", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PASS);
	assert_true(o.spf_aligned);
	eval("strict.example.net", SPF_FAIL, "other.net", true, "strict.example.net", 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PASS);
	assert_true(o.dkim_aligned);
	assert_true(dmarc_aligned(psl, "a.example.com", "b.example.com", false));
	assert_false(dmarc_aligned(psl, "a.example.com", "b.example.com", true));
	assert_false(dmarc_aligned(psl, "example.com", NULL, false));
}

static void test_policies(void **state)
{
	(void)state;
	struct dmarc_outcome o;
	struct found fd;
	/* p=none */
	eval("own.example.com", SPF_FAIL, "x.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	assert_int_equal(o.policy, DMARC_POLICY_NONE);
	assert_int_equal(o.apply, DMARC_POLICY_NONE);
	assert_false(o.subdomain_policy);
	/* p=quarantine at the From domain itself, a subdomain of example.org */
	eval("nosp.example.org", SPF_FAIL, "x.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.apply, DMARC_POLICY_QUARANTINE);
	assert_false(o.subdomain_policy);
	/* a subdomain without a record: the organization's sp= */
	eval("shop.example.com", SPF_FAIL, "x.net", false, NULL, 0, &o, &fd);
	assert_string_equal(fd.names, "_dmarc.shop.example.com|_dmarc.example.com|");
	assert_int_equal(o.result, DMARC_FAIL);
	assert_true(o.subdomain_policy);
	assert_int_equal(o.policy, DMARC_POLICY_QUARANTINE);
	assert_int_equal(o.apply, DMARC_POLICY_QUARANTINE);
	assert_string_equal(o.record_domain, "example.com");
	assert_string_equal(o.org_domain, "example.com");
	/* ... and p= when there is no sp= */
	eval("a.b.example.org", SPF_FAIL, "x.net", false, NULL, 0, &o, &fd);
	assert_true(o.subdomain_policy);
	assert_int_equal(o.apply, DMARC_POLICY_REJECT);
	/* pct=30: a roll of 29 applies reject, 30 one step lower */
	eval("pct.example.net", SPF_FAIL, "x.net", false, NULL, 29, &o, &fd);
	assert_int_equal(o.apply, DMARC_POLICY_REJECT);
	assert_false(o.sampled_out);
	eval("pct.example.net", SPF_FAIL, "x.net", false, NULL, 30, &o, &fd);
	assert_int_equal(o.policy, DMARC_POLICY_REJECT);
	assert_int_equal(o.apply, DMARC_POLICY_QUARANTINE);
	assert_true(o.sampled_out);
	assert_string_equal(dmarc_policy_name(o.apply), "quarantine");
	assert_string_equal(dmarc_result_name(o.result), "fail");
}

static void test_no_policy(void **state)
{
	(void)state;
	struct dmarc_outcome o;
	struct found fd;
	/* no record anywhere: none, both names asked */
	eval("mail.nowhere.net", SPF_PASS, "mail.nowhere.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_NONE);
	assert_false(o.has_record);
	assert_string_equal(fd.names, "_dmarc.mail.nowhere.net|_dmarc.nowhere.net|");
	/* an Organizational Domain is asked once */
	eval("nowhere.net", SPF_PASS, "nowhere.net", false, NULL, 0, &o, &fd);
	assert_string_equal(fd.names, "_dmarc.nowhere.net|");
	assert_int_equal(o.result, DMARC_NONE);
	/* two records: no DMARC, and no fallback to the organization */
	eval("two.example.net", SPF_FAIL, "x.org", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_NONE);
	assert_string_equal(fd.names, "_dmarc.two.example.net|");
	assert_non_null(strstr(o.reason, "more than one"));
	/* an invalid p= without rua=: no DMARC */
	eval("bad.example.net", SPF_FAIL, "x.org", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_NONE);
	/* with a valid rua=: as if p=none */
	eval("badrua.example.net", SPF_FAIL, "x.org", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_FAIL);
	assert_int_equal(o.apply, DMARC_POLICY_NONE);
	assert_true(o.record.p_invalid);
}

static void test_errors(void **state)
{
	(void)state;
	struct dmarc_outcome o;
	struct found fd;
	eval("broken.net", SPF_PASS, "broken.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_TEMPERROR);
	assert_int_equal(o.apply, DMARC_POLICY_NONE);
	eval("sub.broken.net", SPF_PASS, "broken.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_TEMPERROR);
	assert_string_equal(fd.names, "_dmarc.sub.broken.net|_dmarc.broken.net|");
	/* no usable From domain: permerror, nothing asked */
	eval("", SPF_PASS, "x.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PERMERROR);
	assert_string_equal(fd.names, "");
	eval("bad..domain.com", SPF_PASS, "x.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_PERMERROR);
	/* the caller's timeout */
	struct dmarc *m = dmarc_new(psl, "example.com");
	char name[300];
	assert_true(dmarc_step(m, name, sizeof(name)));
	dmarc_abort(m, "timed out");
	assert_false(dmarc_step(m, name, sizeof(name)));
	struct dmarc_auth a = { SPF_PASS, "example.com", NULL, 0, 0 };
	dmarc_evaluate(m, &a, &o);
	assert_int_equal(o.result, DMARC_TEMPERROR);
	dmarc_free(m);
	/* a very long From domain: the _dmarc name would be too long */
	char longd[260];
	memset(longd, 'a', sizeof(longd));
	for (int i = 63; i < 250; i += 64)
		longd[i] = '.';
	memcpy(longd + 246, ".com", 5);
	eval(longd, SPF_PASS, "x.net", false, NULL, 0, &o, &fd);
	assert_int_equal(o.result, DMARC_NONE);
}

/* ---- the From domain ---- */

static void from_is(const char *hdr, enum dmarc_from want, const char *want_domain)
{
	char out[256] = "";
	enum dmarc_from st = dmarc_from_domain(hdr, strlen(hdr), out, sizeof(out));
	if (st != want)
		fail_msg("%s: status %s, want %s", hdr, dmarc_from_text(st), dmarc_from_text(want));
	if (want_domain && strcmp(out, want_domain) != 0)
		fail_msg("%s: domain %s, want %s", hdr, out, want_domain);
}

static void test_from_domain(void **state)
{
	(void)state;
	from_is("From: alice@example.com\r\nTo: bob@example.net\r\n", DMARC_FROM_OK, "example.com");
	from_is("Subject: hi\nfrom: \"Alice, A.\" (comment) <alice@Mail.EXAMPLE.com>\n",
		DMARC_FROM_OK, "mail.example.com");
	from_is("FROM:\r\n =?utf-8?q?Al?= <\"a@b\"@example.org>\r\n\r\nFrom: body@x.com\r\n",
		DMARC_FROM_OK, "example.org");
	from_is("To: bob@example.net\r\n", DMARC_FROM_MISSING, NULL);
	from_is("From: a@example.com\r\nFrom: b@example.com\r\n", DMARC_FROM_MULTIPLE_FIELDS, NULL);
	from_is("From: a@example.com, b@example.com\r\n", DMARC_FROM_MULTIPLE_ADDRESSES, NULL);
	from_is("From: a@example.com, a@example.com\r\n", DMARC_FROM_MULTIPLE_ADDRESSES, NULL);
	from_is("From: undisclosed:;\r\n", DMARC_FROM_NO_ADDRESS, NULL);
	from_is("From: \r\n", DMARC_FROM_NO_ADDRESS, NULL);
	from_is("From: alice\r\n", DMARC_FROM_BAD, NULL);
	from_is("From: alice@[192.0.2.1]\r\n", DMARC_FROM_BAD, NULL);
	from_is("From: <alice@exa mple.com\r\n", DMARC_FROM_BAD, NULL);
	from_is("From: alice@-bad-.com\r\n", DMARC_FROM_BAD, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_alignment_relaxed),
		cmocka_unit_test(test_alignment_strict),
		cmocka_unit_test(test_policies),
		cmocka_unit_test(test_no_policy),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_from_domain),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
