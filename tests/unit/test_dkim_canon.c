/*
 * Unit tests for dkim_canon: the RFC 6376 §3.4.5 examples under relaxed
 * and simple, the body fed in every split and octet by octet (a CRLF cut
 * between two chunks, trailing empty lines across chunks), runs of
 * whitespace, the empty body (simple: CRLF, relaxed: nothing), a missing
 * final CRLF, bare CR and LF; the header section parser (folded fields,
 * duplicates, no colon, the caps) and the bottom-up selection of §5.4.2
 * with oversigned names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "signer/dkim_canon.h"

/* Canonical output gathered in memory. */
struct out {
	unsigned char buf[8192];
	size_t len;
	size_t calls;
};

static void collect(void *arg, const unsigned char *data, size_t len)
{
	struct out *o = arg;

	assert_true(o->len + len <= sizeof(o->buf));
	memcpy(o->buf + o->len, data, len);
	o->len += len;
	o->calls++;
}

static void expect_out(const struct out *o, const char *want, const char *what)
{
	size_t wl = strlen(want);

	if (o->len != wl || memcmp(o->buf, want, wl) != 0)
		fail_msg("%s: got \"%.*s\" (%zu), want \"%s\" (%zu)", what, (int)o->len,
			 (const char *)o->buf, o->len, want, wl);
}

/* The body in[0..len) in one piece. */
static void body_whole(enum dkim_canon_alg alg, const char *in, size_t len, struct out *o)
{
	struct dkim_body_canon *c = malloc(sizeof(*c));

	memset(o, 0, sizeof(*o));
	dkim_body_canon_init(c, alg, collect, o);
	dkim_body_canon_feed(c, in, len);
	dkim_body_canon_finish(c);
	free(c);
}

/* The body canonicalized whole, octet by octet, and cut at every point
 * (with an empty chunk between) must all give want. */
static void expect_body(enum dkim_canon_alg alg, const char *in, const char *want)
{
	size_t len = strlen(in);
	struct dkim_body_canon *c = malloc(sizeof(*c));
	struct out *o = malloc(sizeof(*o));
	char what[64];

	body_whole(alg, in, len, o);
	snprintf(what, sizeof(what), "%s whole", alg == DKIM_CANON_RELAXED ? "relaxed" : "simple");
	expect_out(o, want, what);

	memset(o, 0, sizeof(*o));
	dkim_body_canon_init(c, alg, collect, o);
	for (size_t i = 0; i < len; i++)
		dkim_body_canon_feed(c, in + i, 1);
	dkim_body_canon_finish(c);
	expect_out(o, want, "octet by octet");

	for (size_t cut = 0; cut <= len; cut++) {
		memset(o, 0, sizeof(*o));
		dkim_body_canon_init(c, alg, collect, o);
		dkim_body_canon_feed(c, in, cut);
		dkim_body_canon_feed(c, in, 0);
		dkim_body_canon_feed(c, in + cut, len - cut);
		dkim_body_canon_finish(c);
		snprintf(what, sizeof(what), "cut at %zu", cut);
		expect_out(o, want, what);
	}
	free(c);
	free(o);
}

static void expect_both(const char *in, const char *simple, const char *relaxed)
{
	expect_body(DKIM_CANON_SIMPLE, in, simple);
	expect_body(DKIM_CANON_RELAXED, in, relaxed);
}

/* RFC 6376 §3.4.5. */
static const char rfc_body[] = " C \r\nD \t E\r\n\r\n\r\n";

static void test_rfc_example_body(void **state)
{
	(void)state;
	expect_body(DKIM_CANON_RELAXED, rfc_body, " C\r\nD E\r\n");
	expect_body(DKIM_CANON_SIMPLE, rfc_body, " C \r\nD \t E\r\n");
}

static void header_canon(enum dkim_canon_alg alg, const char *field, bool crlf,
			 struct out *o)
{
	memset(o, 0, sizeof(*o));
	dkim_canon_header(alg, field, strlen(field), crlf, collect, o);
}

static void test_rfc_example_headers(void **state)
{
	struct out o;

	(void)state;
	header_canon(DKIM_CANON_RELAXED, "A: X\r\n", true, &o);
	expect_out(&o, "a:X\r\n", "A");
	header_canon(DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", true, &o);
	expect_out(&o, "b:Y Z\r\n", "B");
	header_canon(DKIM_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", true, &o);
	expect_out(&o, "B : Y\t\r\n\tZ  \r\n", "B simple");
	/* The signature field itself: no final CRLF, under both. */
	header_canon(DKIM_CANON_RELAXED, "DKIM-Signature: a=1;\r\n\tb=", false, &o);
	expect_out(&o, "dkim-signature:a=1; b=", "sig relaxed");
	header_canon(DKIM_CANON_SIMPLE, "DKIM-Signature: a=1;\r\n\tb=", false, &o);
	expect_out(&o, "DKIM-Signature: a=1;\r\n\tb=", "sig simple");
	/* A last field without its CRLF gets one. */
	header_canon(DKIM_CANON_SIMPLE, "Subject: x", true, &o);
	expect_out(&o, "Subject: x\r\n", "simple no CRLF");
	header_canon(DKIM_CANON_RELAXED, "SUBJECT:x", true, &o);
	expect_out(&o, "subject:x\r\n", "relaxed no CRLF");
}

static void test_relaxed_header_details(void **state)
{
	struct out o;

	(void)state;
	/* Runs of SP/HTAB become one SP; ends trimmed; empty value. */
	header_canon(DKIM_CANON_RELAXED, "To:   a \t b\t \r\n", true, &o);
	expect_out(&o, "to:a b\r\n", "runs");
	header_canon(DKIM_CANON_RELAXED, "X-Empty:   \r\n", true, &o);
	expect_out(&o, "x-empty:\r\n", "empty");
	/* A fold with nothing around it still leaves the SP/HTAB it has. */
	header_canon(DKIM_CANON_RELAXED, "Subject: a\r\n b\r\n\tc\r\n", true, &o);
	expect_out(&o, "subject:a b c\r\n", "folds");
	header_canon(DKIM_CANON_RELAXED, "Subject: a\r\n  \r\n b\r\n", true, &o);
	expect_out(&o, "subject:a b\r\n", "empty continuation");
	/* 8-bit octets and the case of the value are kept. */
	header_canon(DKIM_CANON_RELAXED, "Subject: Caf\xc3\xa9 ABC\r\n", true, &o);
	expect_out(&o, "subject:Caf\xc3\xa9 ABC\r\n", "8-bit");
	/* A fold before the colon (obsolete syntax). */
	header_canon(DKIM_CANON_RELAXED, "Subject\r\n : x\r\n", true, &o);
	expect_out(&o, "subject:x\r\n", "fold before colon");
	/* No colon: the field as a value. */
	header_canon(DKIM_CANON_RELAXED, "Not  a field\r\n", true, &o);
	expect_out(&o, "Not a field\r\n", "no colon");
	/* Only the first colon separates. */
	header_canon(DKIM_CANON_RELAXED, "X-A: b : c\r\n", true, &o);
	expect_out(&o, "x-a:b : c\r\n", "second colon");
}

static void test_body_trailing_lines(void **state)
{
	(void)state;
	expect_both("a\r\n\r\n\r\n\r\n", "a\r\n", "a\r\n");
	/* Empty lines inside the body stay. */
	expect_both("a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n");
	/* Lines of whitespace only are empty under relaxed. */
	expect_both("a\r\n \t\r\n  \r\n", "a\r\n \t\r\n  \r\n", "a\r\n");
	expect_both("a\r\n  \r\nb\r\n", "a\r\n  \r\nb\r\n", "a\r\n\r\nb\r\n");
	/* Only empty lines: an empty body. */
	expect_both("\r\n\r\n\r\n", "\r\n", "");
	expect_both(" \r\n\t\r\n", " \r\n\t\r\n", "");
}

static void test_body_empty(void **state)
{
	(void)state;
	expect_both("", "\r\n", "");
	expect_both("\r\n", "\r\n", "");
}

static void test_body_whitespace(void **state)
{
	(void)state;
	expect_both("a  b\t\tc \t d\r\n", "a  b\t\tc \t d\r\n", "a b c d\r\n");
	/* Leading whitespace is one SP, not removed. */
	expect_both("\t\t x\r\n", "\t\t x\r\n", " x\r\n");
	/* Trailing whitespace before CRLF goes. */
	expect_both("x \t \r\ny\t\r\n", "x \t \r\ny\t\r\n", "x\r\ny\r\n");
}

static void test_body_missing_final_crlf(void **state)
{
	(void)state;
	expect_both("abc", "abc\r\n", "abc\r\n");
	expect_both("a\r\nb", "a\r\nb\r\n", "a\r\nb\r\n");
	/* As if the CRLF were there: trailing whitespace goes under relaxed. */
	expect_both("abc  ", "abc  \r\n", "abc\r\n");
	expect_both("a\r\n\r\n  ", "a\r\n\r\n  \r\n", "a\r\n");
	/* A CR at the very end is an octet of the last line. */
	expect_both("a\r", "a\r\r\n", "a\r\r\n");
}

static void test_body_bare_cr_lf(void **state)
{
	(void)state;
	/* Only CRLF ends a line. */
	expect_both("a\nb\r\n", "a\nb\r\n", "a\nb\r\n");
	expect_both("a\rb\r\n", "a\rb\r\n", "a\rb\r\n");
	expect_both("a \r b\r\n", "a \r b\r\n", "a \r b\r\n");
	expect_both("a\r\r\n", "a\r\r\n", "a\r\r\n");
	expect_both("\n\r\n\r\n", "\n\r\n", "\n\r\n");
	expect_both("8bit \xe9\xff  x\r\n", "8bit \xe9\xff  x\r\n", "8bit \xe9\xff x\r\n");
}

/* Output of any size. */
struct bigout {
	unsigned char *buf;
	size_t len, cap;
};

static void collect_big(void *arg, const unsigned char *data, size_t len)
{
	struct bigout *o = arg;

	assert_true(len <= DKIM_CANON_OUTBUF);
	assert_true(o->len + len <= o->cap);
	memcpy(o->buf + o->len, data, len);
	o->len += len;
}

/* A long body: more than the output buffer, 2000 trailing empty lines
 * held across many chunks, fed in chunks of 7 octets. */
static void test_body_long(void **state)
{
	size_t cap = 1 << 20, len = 0, wlen = 0;
	char *in = malloc(cap), *want = malloc(cap);
	struct bigout o = { .buf = malloc(cap), .cap = cap };
	struct dkim_body_canon c;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		len += (size_t)snprintf(in + len, cap - len, "line %d  with \t spaces  \r\n", i);
		wlen += (size_t)snprintf(want + wlen, cap - wlen, "line %d with spaces\r\n", i);
	}
	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(in + len, cap - len, i % 2 ? "\r\n" : " \t\r\n");
	dkim_body_canon_init(&c, DKIM_CANON_RELAXED, collect_big, &o);
	for (size_t off = 0; off < len; off += 7)
		dkim_body_canon_feed(&c, in + off, len - off < 7 ? len - off : 7);
	dkim_body_canon_finish(&c);
	assert_int_equal(o.len, wlen);
	assert_memory_equal(o.buf, want, wlen);
	assert_int_equal(c.written, wlen);
	free(in);
	free(want);
	free(o.buf);
}

/* NUL octets are octets like any other. */
static void test_body_nul(void **state)
{
	static const char in[] = "a\0 \0b \r\n";
	struct out o;

	(void)state;
	body_whole(DKIM_CANON_RELAXED, in, sizeof(in) - 1, &o);
	assert_int_equal(o.len, 7);
	assert_memory_equal(o.buf, "a\0 \0b\r\n", 7);
}

/* ---- header section -------------------------------------------------- */

static void test_hdrs_parse(void **state)
{
	static const char sec[] = "From: a@example.com\r\n"
				  "Subject: one\r\n two\r\n\tthree\r\n"
				  "To: b@example.com\r\n"
				  "Received: x\r\n"
				  "To : c@example.com\r\n"
				  "no colon here\r\n"
				  "X-Last: no crlf";
	struct dkim_hdrs h;
	char err[128];

	(void)state;
	assert_int_equal(dkim_hdrs_parse(sec, strlen(sec), &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, 7);
	assert_int_equal(h.f[1].raw_len, strlen("Subject: one\r\n two\r\n\tthree\r\n"));
	assert_true(dkim_hfield_is(&h.f[1], "SUBJECT", 7));
	assert_true(dkim_hfield_is(&h.f[4], "to", 2)); /* "To :" */
	assert_int_equal(h.f[4].name_len, 2);
	assert_int_equal(h.f[5].name_len, 0);
	assert_int_equal(h.f[5].colon, h.f[5].raw_len);
	assert_false(dkim_hfield_is(&h.f[5], "no colon here", 13));
	assert_int_equal(h.f[6].raw_len, strlen("X-Last: no crlf"));
	assert_int_equal(dkim_hdrs_count(&h, "to", 2), 2);
	assert_int_equal(dkim_hdrs_count(&h, "cc", 2), 0);
	dkim_hdrs_free(&h);

	/* Empty section; a bare LF does not end a line. */
	assert_int_equal(dkim_hdrs_parse("", 0, &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, 0);
	dkim_hdrs_free(&h);
	assert_int_equal(dkim_hdrs_parse("A: 1\nB: 2\r\n", 11, &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, 1);
	dkim_hdrs_free(&h);
	/* A first line that starts with whitespace is a field of its own. */
	assert_int_equal(dkim_hdrs_parse(" A: 1\r\nB: 2\r\n", 13, &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, 2);
	dkim_hdrs_free(&h);
}

static void test_hdrs_caps(void **state)
{
	size_t cap = DKIM_HDRS_MAX_BYTES + 16, len = 0;
	char *buf = malloc(cap);
	struct dkim_hdrs h;
	char err[128];

	(void)state;
	for (int i = 0; i < DKIM_HDRS_MAX_FIELDS; i++)
		len += (size_t)snprintf(buf + len, cap - len, "X-%d: v\r\n", i);
	assert_int_equal(dkim_hdrs_parse(buf, len, &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, DKIM_HDRS_MAX_FIELDS);
	dkim_hdrs_free(&h);
	len += (size_t)snprintf(buf + len, cap - len, "X-last: v\r\n");
	assert_int_equal(dkim_hdrs_parse(buf, len, &h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "1000"));
	assert_int_equal(h.n, 0);
	assert_null(h.f);
	dkim_hdrs_free(&h);

	/* One field of exactly the byte cap is fine, one octet more is not. */
	memset(buf, 'a', DKIM_HDRS_MAX_BYTES);
	memcpy(buf, "X: ", 3);
	assert_int_equal(dkim_hdrs_parse(buf, DKIM_HDRS_MAX_BYTES, &h, err, sizeof(err)), 0);
	assert_int_equal(h.n, 1);
	dkim_hdrs_free(&h);
	assert_int_equal(dkim_hdrs_parse(buf, DKIM_HDRS_MAX_BYTES + 1, &h, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "1 MiB"));
	dkim_hdrs_free(&h);
	free(buf);
}

static void test_hdrs_select(void **state)
{
	static const char sec[] = "Received: r1\r\n"
				  "To: t1\r\n"
				  "From: f\r\n"
				  "Received: r2\r\n"
				  "to: t2\r\n"
				  "Subject: s\r\n";
	static const char *const names[] = { "from", "from", "to", "TO", "to",
					     "received", "cc", "subject", "received" };
	long idx[9];
	struct dkim_hdrs h;
	char err[128];

	(void)state;
	assert_int_equal(dkim_hdrs_parse(sec, strlen(sec), &h, err, sizeof(err)), 0);
	dkim_hdrs_select(&h, names, 9, idx);
	assert_int_equal(idx[0], 2);  /* the only From */
	assert_int_equal(idx[1], -1); /* From oversigned */
	assert_int_equal(idx[2], 4);  /* the last To first */
	assert_int_equal(idx[3], 1);  /* then the one above */
	assert_int_equal(idx[4], -1); /* none left */
	assert_int_equal(idx[5], 3);  /* the last Received */
	assert_int_equal(idx[6], -1); /* absent */
	assert_int_equal(idx[7], 5);
	assert_int_equal(idx[8], 0);
	dkim_hdrs_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_example_body),
		cmocka_unit_test(test_rfc_example_headers),
		cmocka_unit_test(test_relaxed_header_details),
		cmocka_unit_test(test_body_trailing_lines),
		cmocka_unit_test(test_body_empty),
		cmocka_unit_test(test_body_whitespace),
		cmocka_unit_test(test_body_missing_final_crlf),
		cmocka_unit_test(test_body_bare_cr_lf),
		cmocka_unit_test(test_body_long),
		cmocka_unit_test(test_body_nul),
		cmocka_unit_test(test_hdrs_parse),
		cmocka_unit_test(test_hdrs_caps),
		cmocka_unit_test(test_hdrs_select),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
