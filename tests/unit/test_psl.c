/*
 * Unit tests for psl: a small list written here (plain rules, the "*.ck"
 * wildcard and its "!www.ck" exception, Unicode rules and their A-label
 * form, comments), the implicit rule for an unlisted TLD, case and final
 * dots, names that are not names; then the list Debian ships, when it is
 * installed, against cases from publicsuffix.org's test list.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "verify/psl.h"

static const char LIST[] =
	"// This Source Code Form is subject to the terms of the Mozilla Public\n"
	"// ===BEGIN ICANN DOMAINS===\n"
	"com\n"
	"uk\n"
	"co.uk\n"
	"\n"
	"// ck : https://en.wikipedia.org/wiki/.ck\n"
	"*.ck\n"
	"!www.ck\n"
	"jp\n"
	"*.kawasaki.jp\n"
	"!city.kawasaki.jp\n"
	"cn\n"
	"\xe5\x85\xac\xe5\x8f\xb8.cn\n"        /* 公司.cn */
	"\xe6\x97\xa5\xe6\x9c\xac\n"           /* 日本 */
	"  indented.example   trailing words ignored\r\n"
	"// ===END ICANN DOMAINS===\n"
	"// ===BEGIN PRIVATE DOMAINS===\n"
	"github.io\n";

static void org_eq(const struct psl *p, const char *domain, const char *want)
{
	char out[PSL_NAME_MAX + 1];
	if (!psl_org_domain(p, domain, out, sizeof(out)))
		fail_msg("%s: no organizational domain, want %s", domain, want);
	if (strcmp(out, want) != 0)
		fail_msg("%s: organizational domain %s, want %s", domain, out, want);
}

static void suffix_eq(const struct psl *p, const char *domain, const char *want)
{
	char out[PSL_NAME_MAX + 1];
	if (!psl_public_suffix(p, domain, out, sizeof(out)))
		fail_msg("%s: no public suffix, want %s", domain, want);
	if (strcmp(out, want) != 0)
		fail_msg("%s: public suffix %s, want %s", domain, out, want);
}

static void test_small_list(void **state)
{
	(void)state;
	struct psl *p = psl_parse(LIST, sizeof(LIST) - 1);
	/* 13 rules, two of them also in A-label form */
	assert_int_equal(psl_count(p), 15);

	suffix_eq(p, "co.uk", "co.uk");
	org_eq(p, "co.uk", "co.uk"); /* a public suffix is its own */
	org_eq(p, "uk", "uk");
	org_eq(p, "example.co.uk", "example.co.uk");
	org_eq(p, "a.b.example.co.uk", "example.co.uk");
	org_eq(p, "example.uk", "example.uk");
	org_eq(p, "mail.example.com", "example.com");
	org_eq(p, "example.com", "example.com");

	/* *.ck: every second-level name is a public suffix ... */
	suffix_eq(p, "foo.ck", "foo.ck");
	org_eq(p, "foo.ck", "foo.ck");
	org_eq(p, "bar.foo.ck", "bar.foo.ck");
	org_eq(p, "a.bar.foo.ck", "bar.foo.ck");
	/* ... but for !www.ck */
	suffix_eq(p, "www.ck", "ck");
	org_eq(p, "www.ck", "www.ck");
	org_eq(p, "a.b.www.ck", "www.ck");
	org_eq(p, "ck", "ck");
	org_eq(p, "x.city.kawasaki.jp", "city.kawasaki.jp");
	org_eq(p, "x.y.kawasaki.jp", "x.y.kawasaki.jp");

	/* a TLD not on the list: the implicit rule "*" */
	suffix_eq(p, "example.unlisted", "unlisted");
	org_eq(p, "a.b.example.unlisted", "example.unlisted");
	org_eq(p, "unlisted", "unlisted");

	/* Unicode rules match in either form */
	org_eq(p, "shop.example.xn--55qx5d.cn", "example.xn--55qx5d.cn");
	org_eq(p, "example.\xe5\x85\xac\xe5\x8f\xb8.cn", "example.\xe5\x85\xac\xe5\x8f\xb8.cn");
	org_eq(p, "a.example.xn--wgv71a", "example.xn--wgv71a");
	org_eq(p, "a.example.cn", "example.cn");

	/* case, final dot, the rest of the line after the rule */
	org_eq(p, "Mail.EXAMPLE.Co.UK.", "example.co.uk");
	org_eq(p, "a.b.indented.example", "b.indented.example");
	org_eq(p, "x.user.github.io", "user.github.io");

	char out[PSL_NAME_MAX + 1];
	assert_false(psl_org_domain(p, "", out, sizeof(out)));
	assert_false(psl_org_domain(p, ".", out, sizeof(out)));
	assert_false(psl_org_domain(p, "a..example.com", out, sizeof(out)));
	assert_false(psl_org_domain(p, "example.com..", out, sizeof(out)));
	assert_false(psl_org_domain(p, ".example.com", out, sizeof(out)));
	assert_false(psl_org_domain(p, "example.co.uk", out, 8)); /* too small */
	psl_free(p);
}

static void test_empty_and_missing(void **state)
{
	(void)state;
	struct psl *p = psl_parse("// nothing\n\n", 12);
	assert_int_equal(psl_count(p), 0);
	org_eq(p, "a.example.com", "example.com");
	psl_free(p);
	char err[256];
	assert_null(psl_load("/nonexistent/psl.dat", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/psl.dat"));
}

/* The list of the publicsuffix package, with cases of its test list. */
static void test_system_list(void **state)
{
	(void)state;
	if (access(PSL_DEFAULT_PATH, R_OK) != 0)
		skip();
	char err[256];
	const struct psl *p = psl_default(err, sizeof(err));
	assert_non_null(p);
	assert_ptr_equal(psl_default(err, sizeof(err)), p); /* loaded once */
	assert_true(psl_count(p) > 5000);
	org_eq(p, "example.com", "example.com");
	org_eq(p, "www.example.com", "example.com");
	org_eq(p, "b.example.uk.com", "example.uk.com");
	org_eq(p, "www.example.co.uk", "example.co.uk");
	org_eq(p, "test.ac", "test.ac");
	org_eq(p, "a.b.test.ck", "b.test.ck");
	org_eq(p, "www.www.ck", "www.ck");
	org_eq(p, "a.b.c.kobe.jp", "b.c.kobe.jp");
	org_eq(p, "www.city.kobe.jp", "city.kobe.jp");
	org_eq(p, "a.b.example.pvt.k12.ma.us", "example.pvt.k12.ma.us");
	org_eq(p, "www.xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn");
	org_eq(p, "shishi.xn--fiqs8s", "shishi.xn--fiqs8s");
	org_eq(p, "www.example.unlistedtld", "example.unlistedtld");
	org_eq(p, "foo.bar.github.io", "bar.github.io");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_list),
		cmocka_unit_test(test_empty_and_missing),
		cmocka_unit_test(test_system_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
