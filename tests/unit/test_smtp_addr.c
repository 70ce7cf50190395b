/*
 * Unit tests for smtp_addr: RFC 5321 paths, address literals, source
 * routes, UTF-8 (RFC 6531), the limits of 4.5.3.1, and the relay-trick
 * forms that must parse (the caller refuses them) or must not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proto/smtp_addr.h"

/* Parse a NUL-ended test string (the parser itself never scans for NUL). */
static enum smtp_addr_status parse(const char *s, bool allow_null,
				   bool allow_utf8, struct smtp_addr *a,
				   size_t *consumed)
{
	return smtp_addr_parse(s, strlen(s), allow_null, allow_utf8, a,
			       consumed);
}

static void expect_status(const char *s, bool allow_utf8,
			  enum smtp_addr_status want)
{
	struct smtp_addr a;
	size_t consumed = 99;
	enum smtp_addr_status st = parse(s, false, allow_utf8, &a, &consumed);

	if (st != want)
		fail_msg("\"%s\": status %d, want %d", s, (int)st, (int)want);
	if (want != SMTP_ADDR_OK)
		assert_int_equal(consumed, 0);
}

static void expect_ok(const char *s, bool allow_utf8, const char *local,
		      const char *domain, const char *text)
{
	struct smtp_addr a;
	size_t consumed = 0;
	enum smtp_addr_status st = parse(s, false, allow_utf8, &a, &consumed);

	if (st != SMTP_ADDR_OK)
		fail_msg("\"%s\": status %d, want OK", s, (int)st);
	assert_false(a.is_null);
	assert_string_equal(a.local, local);
	assert_string_equal(a.domain, domain);
	assert_string_equal(a.text, text);
	assert_int_equal(consumed, strlen(s));
}

static void test_simple(void **state)
{
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(parse("<user@example.com>", false, false, &a,
			       &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "user");
	assert_string_equal(a.domain, "example.com");
	assert_string_equal(a.text, "user@example.com");
	assert_false(a.is_null);
	assert_false(a.local_quoted);
	assert_false(a.domain_literal);
	assert_false(a.has_utf8);
	assert_int_equal(consumed, 18);

	expect_ok("<a@b>", false, "a", "b", "a@b");
	expect_ok("<First.Last@Example.COM>", false, "First.Last",
		  "Example.COM", "First.Last@Example.COM");
	expect_ok("<a-b@sub-1.x-y.example>", false, "a-b", "sub-1.x-y.example",
		  "a-b@sub-1.x-y.example");
	expect_ok("<!#$%&'*+-/=?^_`{|}~@example.org>", false,
		  "!#$%&'*+-/=?^_`{|}~", "example.org",
		  "!#$%&'*+-/=?^_`{|}~@example.org");
	expect_ok("<user@localhost>", false, "user", "localhost",
		  "user@localhost");
	expect_ok("<u@123.example>", false, "u", "123.example",
		  "u@123.example");
}

static void test_consumed_stops_at_bracket(void **state)
{
	const char *s = "<a@b.example> SIZE=100 BODY=8BITMIME";
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(smtp_addr_parse(s, strlen(s), false, false, &a,
					 &consumed), SMTP_ADDR_OK);
	assert_int_equal(consumed, 13);
	assert_int_equal(s[consumed - 1], '>');

	/* The length given is honoured: no reading past it. */
	assert_int_equal(smtp_addr_parse(s, 12, false, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_addr_parse(s, 0, false, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_addr_parse(s, 1, false, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
}

static void test_null_path(void **state)
{
	struct smtp_addr a;
	size_t consumed = 0;

	(void)state;
	assert_int_equal(parse("<>", true, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_true(a.is_null);
	assert_string_equal(a.text, "");
	assert_string_equal(a.local, "");
	assert_string_equal(a.domain, "");
	assert_int_equal(consumed, 2);

	assert_int_equal(parse("<> SIZE=10", true, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_int_equal(consumed, 2);

	assert_int_equal(parse("<>", false, false, &a, &consumed),
			 SMTP_ADDR_NULL_DENIED);
	assert_false(a.is_null);
	assert_int_equal(parse("< >", true, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
	assert_int_equal(parse("<", true, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
}

static void test_quoted_local(void **state)
{
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(parse("<\"john smith\"@example.com>", false, false,
			       &a, &consumed), SMTP_ADDR_OK);
	assert_true(a.local_quoted);
	assert_string_equal(a.local, "john smith");
	assert_string_equal(a.text, "\"john smith\"@example.com");

	/* Escapes are removed from local, kept in text. */
	assert_int_equal(parse("<\"a\\\"b\\\\c\\ d\"@x.example>", false, false,
			       &a, &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "a\"b\\c d");
	assert_string_equal(a.text, "\"a\\\"b\\\\c\\ d\"@x.example");

	/* Specials are fine inside quotes. */
	expect_ok("<\"a<b>c,d:e;f(g)\"@x.example>", false, "a<b>c,d:e;f(g)",
		  "x.example", "\"a<b>c,d:e;f(g)\"@x.example");
	/* Empty quoted string: the grammar allows it. */
	expect_ok("<\"\"@x.example>", false, "", "x.example", "\"\"@x.example");
	/* An escaped ordinary character is that character. */
	expect_ok("<\"\\a\"@x.example>", false, "a", "x.example",
		  "\"\\a\"@x.example");

	expect_status("<\"abc@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"abc\"x@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<x\"abc\"@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"a\tb\"@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"a\\\tb\"@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"a\\\"@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"a\x7f\"@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<\"a\\", false, SMTP_ADDR_SYNTAX);
}

static void test_dot_string(void **state)
{
	(void)state;
	expect_status("<.a@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a.@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a..b@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a b@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("< a@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@x.example >", false, SMTP_ADDR_SYNTAX);
	expect_status("<a(b)@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a,b@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a\\b@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a\x01@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a\x7f@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a\r@x.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@x.example>", false, SMTP_ADDR_SYNTAX);
}

static void test_nul_octet(void **state)
{
	static const char in[] = "<a\0b@x.example>";
	static const char quoted[] = "<\"a\0b\"@x.example>";
	static const char dom[] = "<ab@x\0.example>";
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(smtp_addr_parse(in, sizeof(in) - 1, false, false, &a,
					 &consumed), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_addr_parse(quoted, sizeof(quoted) - 1, false,
					 true, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_addr_parse(dom, sizeof(dom) - 1, false, false,
					 &a, &consumed), SMTP_ADDR_SYNTAX);
}

static void test_missing_parts(void **state)
{
	(void)state;
	expect_status("", false, SMTP_ADDR_SYNTAX);
	expect_status("user@example.com", false, SMTP_ADDR_SYNTAX);
	expect_status("<user@example.com", false, SMTP_ADDR_SYNTAX);
	expect_status("<user>", false, SMTP_ADDR_SYNTAX);
	expect_status("<postmaster>", false, SMTP_ADDR_SYNTAX);
	expect_status("<Postmaster>", false, SMTP_ADDR_SYNTAX);
	expect_status("<user@>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@>", false, SMTP_ADDR_SYNTAX);
	expect_status("<<a@b>>", false, SMTP_ADDR_SYNTAX);
}

static void test_domain_syntax(void **state)
{
	char label[80];
	char buf[128];

	(void)state;
	expect_status("<a@example.com.>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@.example.com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@example..com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@-example.com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@example-.com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@example.-com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@example.com->", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@exa_mple.com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@exa mple.com>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a@example.com:25>", false, SMTP_ADDR_SYNTAX);

	/* A label holds at most 63 octets. */
	memset(label, 'l', 63);
	label[63] = '\0';
	snprintf(buf, sizeof(buf), "<a@%s.example>", label);
	expect_status(buf, false, SMTP_ADDR_OK);
	snprintf(buf, sizeof(buf), "<a@x%s.example>", label);
	expect_status(buf, false, SMTP_ADDR_SYNTAX);

	assert_true(smtp_addr_domain_valid("example.com", 11, false));
	assert_true(smtp_addr_domain_valid("a", 1, false));
	assert_true(smtp_addr_domain_valid("x-1.y--z.example", 16, false));
	assert_false(smtp_addr_domain_valid("", 0, false));
	assert_false(smtp_addr_domain_valid("example.com.", 12, false));
	assert_false(smtp_addr_domain_valid(".com", 4, false));
	assert_false(smtp_addr_domain_valid("a..b", 4, false));
	assert_false(smtp_addr_domain_valid("-a.b", 4, false));
	assert_false(smtp_addr_domain_valid("a-.b", 4, false));
	assert_false(smtp_addr_domain_valid("a_b", 3, false));
	assert_false(smtp_addr_domain_valid("[1.2.3.4]", 9, false));
	assert_false(smtp_addr_domain_valid("a b", 3, false));
	assert_false(smtp_addr_domain_valid("a\0b", 3, false));
	/* Only len octets are looked at. */
	assert_true(smtp_addr_domain_valid("example.com.", 11, false));
	assert_true(smtp_addr_domain_valid("b\xc3\xbc" "cher.example", 14,
					   true));
	assert_false(smtp_addr_domain_valid("b\xc3\xbc" "cher.example", 14,
					    false));
	assert_false(smtp_addr_domain_valid("b\xc3" "cher.example", 13, true));
}

static void test_domain_valid_length(void **state)
{
	char d[300];
	size_t n = 0;

	(void)state;
	/* 4 labels of 63 + 3 dots = 255 octets. */
	for (int i = 0; i < 4; i++) {
		if (i > 0)
			d[n++] = '.';
		memset(d + n, 'a' + i, 63);
		n += 63;
	}
	assert_int_equal(n, 255);
	assert_true(smtp_addr_domain_valid(d, n, false));
	d[n++] = 'x';
	assert_false(smtp_addr_domain_valid(d, n, false));
}

static void test_ip_literals(void **state)
{
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(parse("<postmaster@[192.0.2.1]>", false, false, &a,
			       &consumed), SMTP_ADDR_OK);
	assert_true(a.domain_literal);
	assert_string_equal(a.domain, "[192.0.2.1]");
	assert_string_equal(a.text, "postmaster@[192.0.2.1]");
	assert_int_equal(consumed, 24);

	assert_int_equal(parse("<u@[IPv6:2001:db8::1]>", false, false, &a,
			       &consumed), SMTP_ADDR_OK);
	assert_true(a.domain_literal);
	assert_string_equal(a.domain, "[IPv6:2001:db8::1]");

	expect_ok("<u@[ipv6:::1]>", false, "u", "[ipv6:::1]", "u@[ipv6:::1]");
	expect_ok("<u@[IPv6:::ffff:192.0.2.1]>", false, "u",
		  "[IPv6:::ffff:192.0.2.1]", "u@[IPv6:::ffff:192.0.2.1]");
	expect_ok("<u@[IPv6:2001:0db8:0000:0000:0000:ff00:0042:8329]>", false,
		  "u", "[IPv6:2001:0db8:0000:0000:0000:ff00:0042:8329]",
		  "u@[IPv6:2001:0db8:0000:0000:0000:ff00:0042:8329]");
	expect_ok("<u@[0.0.0.0]>", false, "u", "[0.0.0.0]", "u@[0.0.0.0]");
	expect_ok("<u@[255.255.255.255]>", false, "u", "[255.255.255.255]",
		  "u@[255.255.255.255]");

	expect_status("<u@[256.1.1.1]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.4.5]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.4 ]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[ 1.2.3.4]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.4>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.4]x>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.4].example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[example.com]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[2001:db8::1]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:1.2.3.4]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:2001:db8::g]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:2001:db8:::1]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:fe80::1%eth0]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[IPv6:1:2:3:4:5:6:7:8:9:a:b:c:d:e:f:1:2:3:4:5:6]>",
		      false, SMTP_ADDR_SYNTAX);
	/* General-address-literal: refused. */
	expect_status("<u@[x400:foo]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.\\4]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.[3].4]>", false, SMTP_ADDR_SYNTAX);
	expect_status("<u@[1.2.3.\xc3\xa4]>", false, SMTP_ADDR_NEED_UTF8);
	expect_status("<u@[1.2.3.\xc3\xa4]>", true, SMTP_ADDR_SYNTAX);
}

static void test_source_route(void **state)
{
	struct smtp_addr a;
	size_t consumed;
	const char *s = "<@a.example,@b.example:user@c.example>";

	(void)state;
	assert_int_equal(parse(s, false, false, &a, &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "user");
	assert_string_equal(a.domain, "c.example");
	assert_string_equal(a.text, "user@c.example");
	assert_int_equal(consumed, strlen(s));

	expect_ok("<@relay.example:u@d.example>", false, "u", "d.example",
		  "u@d.example");
	expect_status("<@a.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a.example:>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a.example,user@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a.example,:user@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a.example;@b:user@c.example>", false,
		      SMTP_ADDR_SYNTAX);
	expect_status("<@:user@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a..example:user@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<a.example:user@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@a.example:@b.example:u@c.example>", false,
		      SMTP_ADDR_SYNTAX);
	expect_status("<@[1.2.3.4]:u@c.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<@b\xc3\xbc.example:u@c.example>", false,
		      SMTP_ADDR_NEED_UTF8);
	expect_status("<@b\xc3\xbc.example:u@c.example>", true, SMTP_ADDR_OK);
}

static void test_utf8(void **state)
{
	struct smtp_addr a;
	size_t consumed;
	/* "jöran@bücher.example", "用户@例子.广告" */
	const char *s1 = "<j\xc3\xb6ran@b\xc3\xbc" "cher.example>";
	const char *s2 = "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90."
			 "\xe5\xb9\xbf\xe5\x91\x8a>";

	(void)state;
	assert_int_equal(parse(s1, false, true, &a, &consumed), SMTP_ADDR_OK);
	assert_true(a.has_utf8);
	assert_string_equal(a.local, "j\xc3\xb6ran");
	assert_string_equal(a.domain, "b\xc3\xbc" "cher.example");
	assert_int_equal(parse(s1, false, false, &a, &consumed),
			 SMTP_ADDR_NEED_UTF8);
	assert_int_equal(parse(s2, false, true, &a, &consumed), SMTP_ADDR_OK);
	assert_true(a.has_utf8);
	assert_int_equal(parse(s2, false, false, &a, &consumed),
			 SMTP_ADDR_NEED_UTF8);

	/* UTF-8 only in the domain, only in the local part, in quotes. */
	expect_status("<user@b\xc3\xbc" "cher.example>", false,
		      SMTP_ADDR_NEED_UTF8);
	expect_status("<user@b\xc3\xbc" "cher.example>", true, SMTP_ADDR_OK);
	expect_status("<j\xc3\xb6ran@example.com>", false,
		      SMTP_ADDR_NEED_UTF8);
	expect_status("<\"j\xc3\xb6 ran\"@example.com>", false,
		      SMTP_ADDR_NEED_UTF8);
	expect_ok("<\"j\xc3\xb6 ran\"@example.com>", true, "j\xc3\xb6 ran",
		  "example.com", "\"j\xc3\xb6 ran\"@example.com");
	/* 4-octet character (U+1F600) and the highest code point. */
	expect_ok("<\xf0\x9f\x98\x80@x.example>", true, "\xf0\x9f\x98\x80",
		  "x.example", "\xf0\x9f\x98\x80@x.example");
	expect_status("<\xf4\x8f\xbf\xbf@x.example>", true, SMTP_ADDR_OK);
	expect_status("<\xed\x9f\xbf@x.example>", true, SMTP_ADDR_OK);

	/* An ASCII-only address is not flagged. */
	assert_int_equal(parse("<a@b.example>", false, true, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_false(a.has_utf8);
}

static void test_invalid_utf8(void **state)
{
	static const char *const bad[] = {
		"<\x80@x.example>",             /* lone continuation */
		"<a\xbf@x.example>",
		"<\xc0\xaf@x.example>",         /* overlong "/" */
		"<\xc1\xbf@x.example>",         /* overlong */
		"<\xe0\x80\xaf@x.example>",     /* overlong 3-octet */
		"<\xe0\x9f\xbf@x.example>",     /* overlong 3-octet */
		"<\xf0\x8f\xbf\xbf@x.example>", /* overlong 4-octet */
		"<\xed\xa0\x80@x.example>",     /* surrogate U+D800 */
		"<\xed\xbf\xbf@x.example>",     /* surrogate U+DFFF */
		"<\xf4\x90\x80\x80@x.example>", /* U+110000 */
		"<\xf5\x80\x80\x80@x.example>",
		"<\xff@x.example>",
		"<\xc3@x.example>",             /* truncated */
		"<\xe4\xbe@x.example>",         /* truncated */
		"<\xc3\xc3\xa4@x.example>",
		"<a@b\xc3.example>",
		"<a@b\xed\xa0\x80.example>",
		"<\"\xc3\"@x.example>",
		"<\"\\\xc3\xa4\"@x.example>",   /* quoted-pair is ASCII only */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_status(bad[i], true, SMTP_ADDR_SYNTAX);
		expect_status(bad[i], false, SMTP_ADDR_NEED_UTF8);
	}
	/* Truncated by len, not by a NUL. */
	{
		struct smtp_addr a;
		size_t consumed;

		assert_int_equal(smtp_addr_parse("<\xe4\xbe\x8b@x>", 3, false,
						 true, &a, &consumed),
				 SMTP_ADDR_SYNTAX);
	}
	assert_int_equal(smtp_addr_utf8_len("\xc3\xa4", 2), 2);
	assert_int_equal(smtp_addr_utf8_len("\xc3\xa4", 1), 0);
	assert_int_equal(smtp_addr_utf8_len("\xe4\xbe\x8b", 3), 3);
	assert_int_equal(smtp_addr_utf8_len("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(smtp_addr_utf8_len("a", 1), 0);
	assert_int_equal(smtp_addr_utf8_len("", 0), 0);
}

/* "<" local "@" domain ">" with each part made of n repeated octets. */
static size_t build(char *buf, size_t local_n, size_t domain_labels,
		    size_t last_label)
{
	size_t n = 0;

	buf[n++] = '<';
	memset(buf + n, 'l', local_n);
	n += local_n;
	buf[n++] = '@';
	for (size_t i = 0; i < domain_labels; i++) {
		memset(buf + n, 'd', 63);
		n += 63;
		buf[n++] = '.';
	}
	memset(buf + n, 'e', last_label);
	n += last_label;
	buf[n++] = '>';
	return n;
}

static void test_length_limits(void **state)
{
	char buf[1024];
	struct smtp_addr a;
	size_t consumed, n;

	(void)state;
	/* Local part: 64 octets fine, 65 too long. */
	n = build(buf, 64, 0, 10);
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_int_equal(strlen(a.local), 64);
	assert_int_equal(consumed, n);
	n = build(buf, 65, 0, 10);
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_TOO_LONG);

	/* Quoted: the limit counts octets as written, quotes included. */
	n = build(buf, 64, 0, 3);
	buf[1] = '"';
	buf[64] = '"';
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_true(a.local_quoted);
	assert_int_equal(strlen(a.local), 62);
	n = build(buf, 65, 0, 3);
	buf[1] = '"';
	buf[65] = '"';
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_TOO_LONG);

	/* Domain: 254 octets with a 1-octet local part is a 256-octet path,
	 * fine; a 256-octet domain is too long. (255 cannot fit in a path;
	 * smtp_addr_domain_valid tests it.) */
	n = build(buf, 1, 3, 62);
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_int_equal(strlen(a.domain), 254);
	assert_int_equal(strlen(a.text), 256);
	n = build(buf, 1, 3, 63);
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_TOO_LONG);
	n = build(buf, 1, 3, 62);
	buf[n - 1] = '.';
	buf[n++] = 'x';
	buf[n++] = '>'; /* 254 + ".x": 256 */
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_TOO_LONG);

	/* Path text local@domain: 256 fine, 257 too long. */
	n = build(buf, 64, 2, 63); /* 64 + 1 + 191 = 256 */
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_int_equal(strlen(a.text), 256);
	assert_int_equal(strlen(a.local), 64);
	assert_int_equal(strlen(a.domain), 191);
	n = build(buf, 64, 2, 62); /* 64 + 1 + 190 = 255 */
	buf[n - 1] = '.';
	buf[n++] = 'x';
	buf[n++] = '>'; /* 64 + 1 + 192 = 257 */
	assert_int_equal(smtp_addr_parse(buf, n, false, false, &a, &consumed),
			 SMTP_ADDR_TOO_LONG);

	/* A source route does not count toward the path text. */
	{
		char r[600];
		size_t k = 0;

		r[k++] = '<';
		for (int i = 0; i < 3; i++) {
			r[k++] = '@';
			memset(r + k, 'r', 63);
			k += 63;
			r[k++] = i < 2 ? ',' : ':';
		}
		n = build(buf, 64, 2, 63);
		memcpy(r + k, buf + 1, n - 1);
		k += n - 1;
		assert_int_equal(smtp_addr_parse(r, k, false, false, &a,
						 &consumed), SMTP_ADDR_OK);
		assert_int_equal(strlen(a.text), 256);
		assert_int_equal(consumed, k);
	}
}

static void test_relay_tricks(void **state)
{
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	/* Parse fine; the caller decides these are relay attempts. */
	assert_int_equal(parse("<user%remote@local.example>", false, false, &a,
			       &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "user%remote");
	assert_false(a.local_quoted);
	assert_string_equal(a.domain, "local.example");

	assert_int_equal(parse("<\"user@remote\"@local.example>", false, false,
			       &a, &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "user@remote");
	assert_true(a.local_quoted);
	assert_string_equal(a.text, "\"user@remote\"@local.example");

	assert_int_equal(parse("<remote!user@local.example>", false, false, &a,
			       &consumed), SMTP_ADDR_OK);
	assert_string_equal(a.local, "remote!user");

	/* An unquoted '@' in the local part is a syntax error. */
	expect_status("<user@remote@local.example>", false, SMTP_ADDR_SYNTAX);
	expect_status("<user@remote.example@local.example>", false,
		      SMTP_ADDR_SYNTAX);
	expect_status("<user@[1.2.3.4]@local.example>", false,
		      SMTP_ADDR_SYNTAX);
}

static void test_out_cleared_on_error(void **state)
{
	struct smtp_addr a;
	size_t consumed;

	(void)state;
	assert_int_equal(parse("<a@b.example>", false, false, &a, &consumed),
			 SMTP_ADDR_OK);
	assert_int_equal(parse("<a@b.example", false, false, &a, &consumed),
			 SMTP_ADDR_SYNTAX);
	assert_string_equal(a.local, "");
	assert_string_equal(a.text, "");
	assert_int_equal(consumed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_consumed_stops_at_bracket),
		cmocka_unit_test(test_null_path),
		cmocka_unit_test(test_quoted_local),
		cmocka_unit_test(test_dot_string),
		cmocka_unit_test(test_nul_octet),
		cmocka_unit_test(test_missing_parts),
		cmocka_unit_test(test_domain_syntax),
		cmocka_unit_test(test_domain_valid_length),
		cmocka_unit_test(test_ip_literals),
		cmocka_unit_test(test_source_route),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_relay_tricks),
		cmocka_unit_test(test_out_cleared_on_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
