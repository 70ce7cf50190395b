/*
 * Unit tests for received: the Received: trace header (RFC 5321 4.4,
 * RFC 5322 3.6.7) with and without the "for" clause, the fallbacks to
 * "unknown", CR LF line ends with tab-started continuation lines, the
 * RFC 5322 date in UTC, and the "buffer too small" answer at every size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp/received.h"

#define T_2026_11_29_0900 ((time_t)1795942800) /* Sun, 29 Nov 2026 09:00:00 UTC */

static struct received_info base_info(void)
{
	struct received_info ri = {
		.helo = "client.example.org",
		.rdns = "mail.example.org",
		.ip = "192.0.2.25",
		.host = "mx.example.test",
		.proto = "ESMTP",
		.id = "0123456789ABCDEF",
		.rcpt = "alice@example.test",
		.when = T_2026_11_29_0900,
	};
	return ri;
}

/*
 * Checks the folding rules and returns the header unfolded (RFC 5322
 * 2.2.3: remove each CR LF that precedes white space) with every run of
 * white space made one space, without the final CR LF.
 */
static void check_and_unfold(const char *h, size_t n, char *out, size_t outlen)
{
	assert_int_equal(strlen(h), n);
	assert_true(n >= 2);
	assert_memory_equal(h + n - 2, "\r\n", 2); /* ends in CR LF */
	assert_int_equal(strncmp(h, "Received: ", 10), 0);
	size_t o = 0;
	bool space = false;
	for (size_t i = 0; i < n - 2; i++) {
		char c = h[i];
		if (c == '\r') {
			/* every CR is part of a CR LF followed by a tab */
			assert_int_equal(h[i + 1], '\n');
			assert_int_equal(h[i + 2], '\t');
			i++;
			continue;
		}
		assert_true(c != '\n'); /* no bare LF */
		if (c == ' ' || c == '\t') {
			space = true;
			continue;
		}
		if (space && o > 0)
			out[o++] = ' ';
		space = false;
		assert_true(o + 2 < outlen);
		out[o++] = c;
	}
	out[o] = '\0';
}

/* Every line (of those CR LF ends) is at most max octets. */
static void check_line_lengths(const char *h, size_t max)
{
	const char *p = h;
	const char *e;
	while ((e = strstr(p, "\r\n")) != NULL) {
		assert_true((size_t)(e - p) <= max);
		p = e + 2;
	}
	assert_int_equal(*p, '\0');
}

static void test_with_rcpt(void **state)
{
	(void)state;
	struct received_info ri = base_info();
	char buf[1024], flat[1024];
	size_t n = received_format(buf, sizeof(buf), &ri);
	assert_true(n > 0);
	check_and_unfold(buf, n, flat, sizeof(flat));
	assert_string_equal(flat,
			    "Received: from client.example.org (mail.example.org [192.0.2.25]) "
			    "by mx.example.test (Fulmar) with ESMTP id 0123456789ABCDEF "
			    "for <alice@example.test>; Sun, 29 Nov 2026 09:00:00 +0000");
	check_line_lengths(buf, 78);
	/* It is folded (more than one line), the first line is the "from". */
	static const char first[] = "Received: from client.example.org "
				    "(mail.example.org [192.0.2.25])\r\n\t";
	assert_int_equal(strncmp(buf, first, strlen(first)), 0);
}

static void test_without_rcpt(void **state)
{
	(void)state;
	struct received_info ri = base_info();
	ri.rcpt = NULL;
	char buf[1024], flat[1024];
	size_t n = received_format(buf, sizeof(buf), &ri);
	assert_true(n > 0);
	check_and_unfold(buf, n, flat, sizeof(flat));
	assert_string_equal(flat,
			    "Received: from client.example.org (mail.example.org [192.0.2.25]) "
			    "by mx.example.test (Fulmar) with ESMTP id 0123456789ABCDEF; "
			    "Sun, 29 Nov 2026 09:00:00 +0000");
	assert_null(strstr(buf, "for"));
	check_line_lengths(buf, 78);
}

static void test_unknown_fallbacks(void **state)
{
	(void)state;
	struct received_info ri = base_info();
	char buf[1024], flat[1024];
	ri.rdns = NULL;
	size_t n = received_format(buf, sizeof(buf), &ri);
	check_and_unfold(buf, n, flat, sizeof(flat));
	static const char want1[] = "Received: from client.example.org (unknown "
				    "[192.0.2.25]) by ";
	assert_int_equal(strncmp(flat, want1, strlen(want1)), 0);
	/* No HELO (or an empty one) either. */
	static const char want2[] = "Received: from unknown (unknown [192.0.2.25]) by ";
	ri.helo = NULL;
	n = received_format(buf, sizeof(buf), &ri);
	check_and_unfold(buf, n, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, want2, strlen(want2)), 0);
	ri.helo = "";
	n = received_format(buf, sizeof(buf), &ri);
	check_and_unfold(buf, n, flat, sizeof(flat));
	assert_int_equal(strncmp(flat, want2, strlen(want2)), 0);
}

static void test_ipv6_and_utf8(void **state)
{
	(void)state;
	struct received_info ri = base_info();
	ri.ip = "2001:db8::25";
	ri.proto = "UTF8SMTPS";
	ri.rcpt = "j\xc3\xb6rg@b\xc3\xbc" "cher.example";
	char buf[1024], flat[1024];
	size_t n = received_format(buf, sizeof(buf), &ri);
	check_and_unfold(buf, n, flat, sizeof(flat));
	assert_non_null(strstr(flat, "(mail.example.org [2001:db8::25])"));
	assert_non_null(strstr(flat, " with UTF8SMTPS id "));
	assert_non_null(strstr(flat, " for <j\xc3\xb6rg@b\xc3\xbc" "cher.example>; "));
}

static void test_long_rcpt(void **state)
{
	(void)state;
	/* The longest path SMTP allows (256 octets) is written whole. */
	char rcpt[257];
	memset(rcpt, 'a', 64);
	rcpt[64] = '@';
	for (size_t i = 65; i < 256; i++)
		rcpt[i] = (i % 10 == 0) ? '.' : 'b';
	rcpt[255] = 'c';
	rcpt[256] = '\0';
	struct received_info ri = base_info();
	ri.rcpt = rcpt;
	char buf[2048], flat[2048], want[300];
	size_t n = received_format(buf, sizeof(buf), &ri);
	assert_true(n > 0);
	check_and_unfold(buf, n, flat, sizeof(flat));
	snprintf(want, sizeof(want), " for <%s>; Sun, 29 Nov 2026", rcpt);
	assert_non_null(strstr(flat, want));
}

static void test_buffer_too_small(void **state)
{
	(void)state;
	struct received_info ri = base_info();
	char full[1024];
	size_t n = received_format(full, sizeof(full), &ri);
	assert_true(n > 0);
	char *buf = malloc(n + 1);
	assert_non_null(buf);
	for (size_t len = 0; len <= n; len++) {
		/* Exactly len octets: ASan sees any write past them. */
		char *b = malloc(len ? len : 1);
		assert_non_null(b);
		if (received_format(b, len, &ri) != 0)
			fail_msg("buffer of %zu for %zu octets: not 0", len, n);
		free(b);
	}
	/* n + 1 (room for the NUL) is enough, and gives the same text. */
	assert_int_equal(received_format(buf, n + 1, &ri), n);
	assert_string_equal(buf, full);
	free(buf);
	ri.rcpt = NULL;
	size_t m = received_format(full, sizeof(full), &ri);
	assert_true(m > 0 && m < n);
	assert_int_equal(received_format(full, m, &ri), 0);
	assert_int_equal(received_format(full, m + 1, &ri), m);
}

static void test_date(void **state)
{
	(void)state;
	static const struct {
		time_t t;
		const char *want;
	} cases[] = {
		{ T_2026_11_29_0900, "Sun, 29 Nov 2026 09:00:00 +0000" },
		{ 0, "Thu, 01 Jan 1970 00:00:00 +0000" },
		{ 946684800, "Sat, 01 Jan 2000 00:00:00 +0000" },
		{ 1709251199, "Thu, 29 Feb 2024 23:59:59 +0000" },
		{ (time_t)2147483648LL, "Tue, 19 Jan 2038 03:14:08 +0000" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];
		memset(buf, 'x', sizeof(buf));
		received_date(buf, sizeof(buf), cases[i].t);
		assert_string_equal(buf, cases[i].want);

		/* And the header ends with the same date. */
		struct received_info ri = base_info();
		ri.when = cases[i].t;
		char h[1024], flat[1024];
		size_t n = received_format(h, sizeof(h), &ri);
		check_and_unfold(h, n, flat, sizeof(flat));
		size_t fl = strlen(flat), wl = strlen(cases[i].want);
		assert_true(fl > wl + 2);
		assert_string_equal(flat + fl - wl, cases[i].want);
		assert_memory_equal(flat + fl - wl - 2, "; ", 2);
	}
}

static void test_date_independent_of_tz(void **state)
{
	(void)state;
	/* UTC whatever the local time zone. */
	const char *old = getenv("TZ");
	char *saved = old ? strdup(old) : NULL;
	setenv("TZ", "Pacific/Kiritimati", 1); /* UTC+14 */
	tzset();
	char buf[64];
	received_date(buf, sizeof(buf), T_2026_11_29_0900);
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
	assert_string_equal(buf, "Sun, 29 Nov 2026 09:00:00 +0000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_with_rcpt),
		cmocka_unit_test(test_without_rcpt),
		cmocka_unit_test(test_unknown_fallbacks),
		cmocka_unit_test(test_ipv6_and_utf8),
		cmocka_unit_test(test_long_rcpt),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_date_independent_of_tz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
