/*
 * Unit tests for data_reader: the DATA end marker and dot-unstuffing, the
 * SMTP smuggling variants (none of which may end the message), bare CR
 * and LF, line and size limits, BDAT chunks, and the rule that any split
 * of the input gives the same result. A naive octet-at-a-time model of
 * the contract checks the reader on random inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/data_reader.h"

#define OUT_MAX 8192

struct result {
	char out[OUT_MAX];
	size_t out_len;
	size_t calls;     /* sink calls */
	size_t fail_call; /* make this sink call (1-based) fail; 0 = none */
	size_t consumed;
	bool done;
	enum data_error error;
	uint64_t size;
};

static int sink(void *arg, const char *buf, size_t len)
{
	struct result *res = arg;

	assert_true(len > 0); /* never called for nothing */
	res->calls++;
	if (res->fail_call != 0 && res->calls == res->fail_call)
		return -1;
	assert_true(res->out_len + len <= OUT_MAX);
	memcpy(res->out + res->out_len, buf, len);
	res->out_len += len;
	return 0;
}

/*
 * Feed in[0..len) cut at cuts[0..ncuts) (ascending offsets, repeats give
 * empty feeds), as a session would: stop at the end marker. BDAT mode
 * calls data_reader_finish at the end.
 */
static void run(const char *in, size_t len, bool dot, size_t line_max,
		uint64_t size_max, const size_t *cuts, size_t ncuts,
		struct result *res)
{
	struct data_reader r;
	size_t off = 0;
	bool done = false;

	res->out_len = 0;
	res->calls = 0;
	data_reader_init(&r, dot, line_max, size_max);
	for (size_t k = 0; k <= ncuts && !done; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		size_t n;

		if (end < off)
			end = off;
		n = data_reader_feed(&r, in + off, end - off, sink, res, &done);
		if (!done)
			assert_int_equal(n, end - off);
		else
			assert_true(n <= end - off);
		if (!dot)
			assert_false(done);
		off += n;
	}
	res->consumed = off;
	res->done = done;
	res->error = dot ? r.error : data_reader_finish(&r);
	res->size = data_reader_size(&r);
	assert_true(res->size == res->out_len);
}

static void assert_same(const struct result *a, const struct result *b,
			const char *what, size_t where)
{
	if (a->out_len != b->out_len ||
	    memcmp(a->out, b->out, a->out_len) != 0 ||
	    a->consumed != b->consumed || a->done != b->done ||
	    a->error != b->error)
		fail_msg("%s at %zu: out %zu/%zu consumed %zu/%zu done %d/%d "
			 "error %d/%d", what, where, a->out_len, b->out_len,
			 a->consumed, b->consumed, (int)a->done, (int)b->done,
			 (int)a->error, (int)b->error);
}

/* One feed, then byte by byte, every 2-way split and (for short inputs)
 * every 3-way split: all must agree. The one-feed result goes in *ref. */
static void run_all_splits(const char *in, size_t len, bool dot,
			   size_t line_max, uint64_t size_max,
			   struct result *ref)
{
	struct result *res = calloc(1, sizeof(*res));
	size_t *cuts = calloc(len + 2, sizeof(*cuts));

	assert_non_null(res);
	assert_non_null(cuts);
	run(in, len, dot, line_max, size_max, NULL, 0, ref);

	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(in, len, dot, line_max, size_max, cuts, len, res);
	assert_same(ref, res, "byte by byte", 0);
	if (len > 0)
		assert_true(res->calls <= len);

	for (size_t i = 0; i <= len; i++) {
		cuts[0] = i;
		run(in, len, dot, line_max, size_max, cuts, 1, res);
		assert_same(ref, res, "2-way split", i);
	}
	if (len <= 64) {
		for (size_t i = 0; i <= len; i++) {
			for (size_t j = i; j <= len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run(in, len, dot, line_max, size_max, cuts, 2,
				    res);
				assert_same(ref, res, "3-way split",
					    i * 1000 + j);
			}
		}
	}
	free(cuts);
	free(res);
}

struct data_case {
	const char *in;
	const char *out;   /* expected content */
	size_t left;       /* octets not consumed (the pipelined command) */
	bool done;
	enum data_error error;
};

static void check_case(const struct data_case *c, bool dot, size_t line_max,
		       uint64_t size_max)
{
	struct result *ref = calloc(1, sizeof(*ref));
	size_t len = strlen(c->in);

	assert_non_null(ref);
	run_all_splits(c->in, len, dot, line_max, size_max, ref);
	if (ref->out_len != strlen(c->out) ||
	    memcmp(ref->out, c->out, ref->out_len) != 0)
		fail_msg("input \"%s\": output \"%.*s\", want \"%s\"", c->in,
			 (int)ref->out_len, ref->out, c->out);
	assert_int_equal(ref->consumed, len - c->left);
	assert_int_equal(ref->done, c->done);
	assert_int_equal(ref->error, c->error);
	free(ref);
}

static void test_plain(void **state)
{
	static const struct data_case cases[] = {
		{ "Subject: hi\r\n\r\nbody\r\n.\r\n",
		  "Subject: hi\r\n\r\nbody\r\n", 0, true, DATA_ERR_NONE },
		{ "a\r\n.\r\nQUIT\r\n", "a\r\n", 6, true, DATA_ERR_NONE },
		{ "a\r\nb\r\n.\r\n.\r\n", "a\r\nb\r\n", 3, true,
		  DATA_ERR_NONE },
		/* Dots that are not at the start of a line stay. */
		{ "a.b\r\n a.\r\nx.\r\n.\r\n", "a.b\r\n a.\r\nx.\r\n", 0, true,
		  DATA_ERR_NONE },
		/* 8-bit and NUL octets are content (the session judges). */
		{ "\xc3\xa4\xff\r\n.\r\n", "\xc3\xa4\xff\r\n", 0, true,
		  DATA_ERR_NONE },
		/* No end yet: everything consumed, not done. */
		{ "a\r\nb", "a\r\nb", 0, false, DATA_ERR_NONE },
		{ "a\r\n.", "a\r\n", 0, false, DATA_ERR_NONE },
		{ "a\r\n.\r", "a\r\n", 0, false, DATA_ERR_NONE },
		{ "a\r", "a", 0, false, DATA_ERR_NONE },
		{ "", "", 0, false, DATA_ERR_NONE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], true, 1000, 0);
}

static void test_nul_content(void **state)
{
	static const char in[] = "a\0b\r\n.\r\n";
	struct result *ref = calloc(1, sizeof(*ref));

	(void)state;
	assert_non_null(ref);
	run_all_splits(in, sizeof(in) - 1, true, 1000, 0, ref);
	assert_int_equal(ref->out_len, 5);
	assert_memory_equal(ref->out, "a\0b\r\n", 5);
	assert_true(ref->done);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	free(ref);
}

static void test_empty_message(void **state)
{
	static const struct data_case cases[] = {
		{ ".\r\n", "", 0, true, DATA_ERR_NONE },
		{ ".\r\nMAIL FROM:<a@b.example>\r\n", "", 25, true,
		  DATA_ERR_NONE },
		{ "\r\n.\r\n", "\r\n", 0, true, DATA_ERR_NONE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], true, 1000, 0);
}

static void test_dot_unstuffing(void **state)
{
	static const struct data_case cases[] = {
		{ "..\r\n..x\r\n.x\r\n...\r\n.\r\n",
		  ".\r\n.x\r\nx\r\n..\r\n", 0, true, DATA_ERR_NONE },
		{ "..\r\n.\r\n", ".\r\n", 0, true, DATA_ERR_NONE },
		{ ".. \r\n.\r\nRSET\r\n", ". \r\n", 6, true, DATA_ERR_NONE },
		{ "a\r\n..\r\n.\r\n", "a\r\n.\r\n", 0, true, DATA_ERR_NONE },
		{ ".a.b.\r\n.\r\n", "a.b.\r\n", 0, true, DATA_ERR_NONE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], true, 1000, 0);
}

/*
 * SMTP smuggling: a smuggled "end of data" followed by a second
 * transaction, then the real end and a pipelined QUIT. The smuggled end
 * must not end the message: the reader consumes through the real end,
 * leaves QUIT, and reports the first bare CR or LF.
 */
static void test_smuggling(void **state)
{
	static const struct {
		const char *variant;
		const char *out_tail; /* content after "hello" before the error */
		enum data_error error;
	} v[] = {
		{ "\n.\n", "", DATA_ERR_BARE_LF },
		{ "\r.\r", "", DATA_ERR_BARE_CR },
		{ "\n.\r\n", "", DATA_ERR_BARE_LF },
		{ "\r\n.\r", "\r\n", DATA_ERR_BARE_CR },
		{ "\r.\r\n", "", DATA_ERR_BARE_CR },
		{ "\r\n.\n", "\r\n", DATA_ERR_BARE_LF },
		{ "\r\n.\r\r\n", "\r\n", DATA_ERR_BARE_CR },
		{ "\r\n\n.\n", "\r\n", DATA_ERR_BARE_LF },
		{ "\r\n..\n", "\r\n.", DATA_ERR_BARE_LF },
		{ "\r\n.\n\r\n", "\r\n", DATA_ERR_BARE_LF },
		{ "\n", "", DATA_ERR_BARE_LF },
		{ "\r", "", DATA_ERR_BARE_CR },
	};
	static const char head[] = "Subject: t\r\n\r\nhello";
	static const char smuggled[] =
		"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\n"
		"DATA\r\nevil\r\n.\r\n";
	static const char next[] = "QUIT\r\n";
	char in[512], want[128];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct data_case c;
		int n = snprintf(in, sizeof(in), "%s%s%s%s", head, v[i].variant,
				 smuggled, next);

		assert_true(n > 0 && (size_t)n < sizeof(in));
		snprintf(want, sizeof(want), "%s%s", head, v[i].out_tail);
		c.in = in;
		c.out = want;
		c.left = strlen(next);
		c.done = true;
		c.error = v[i].error;
		check_case(&c, true, 1000, 0);
		/* The same without a line limit and with a size limit. */
		check_case(&c, true, 0, 1u << 20);
	}
}

/* A line starting with the smuggled form, at the very start of content. */
static void test_smuggling_at_start(void **state)
{
	static const struct data_case cases[] = {
		{ ".\nMAIL FROM:<e@x>\r\n.\r\nQUIT\r\n", "", 6, true,
		  DATA_ERR_BARE_LF },
		{ ".\rMAIL FROM:<e@x>\r\n.\r\nQUIT\r\n", "", 6, true,
		  DATA_ERR_BARE_CR },
		{ "\n.\r\nx\r\n.\r\nQUIT\r\n", "", 6, true, DATA_ERR_BARE_LF },
		{ "\r.\r\nx\r\n.\r\nQUIT\r\n", "", 6, true, DATA_ERR_BARE_CR },
		{ ".\r\r\n.\r\nQUIT\r\n", "", 6, true, DATA_ERR_BARE_CR },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], true, 1000, 0);
}

static void test_bare_cr_lf(void **state)
{
	static const struct data_case cases[] = {
		{ "a\rb\r\n.\r\n", "a", 0, true, DATA_ERR_BARE_CR },
		{ "a\nb\r\n.\r\n", "a", 0, true, DATA_ERR_BARE_LF },
		{ "ok\r\na\r\r\nb\r\n.\r\n", "ok\r\na", 0, true,
		  DATA_ERR_BARE_CR },
		{ "ok\r\n\n\r\n.\r\n", "ok\r\n", 0, true, DATA_ERR_BARE_LF },
		/* First error wins; later ones do not change it. */
		{ "a\nb\rc\r\n.\r\n", "a", 0, true, DATA_ERR_BARE_LF },
		{ "a\rb\nc\r\n.\r\n", "a", 0, true, DATA_ERR_BARE_CR },
		/* Stuffed dot then bare LF or CR. */
		{ "..\n\r\n.\r\n", ".", 0, true, DATA_ERR_BARE_LF },
		{ "..\rx\r\n.\r\n", ".", 0, true, DATA_ERR_BARE_CR },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], true, 1000, 0);
}

/* n octets of 'x' (or a leading '.' when dot) then CR LF, at p. */
static size_t line(char *p, size_t n, bool dot)
{
	memset(p, 'x', n);
	if (dot && n > 0)
		p[0] = '.';
	p[n] = '\r';
	p[n + 1] = '\n';
	return n + 2;
}

static void test_line_length(void **state)
{
	static char in[4096];
	struct result *ref = calloc(1, sizeof(*ref));
	size_t n;

	(void)state;
	assert_non_null(ref);

	/* 998 + CR LF = 1000 octets: fine. */
	n = line(in, 3, false);
	n += line(in + n, 998, false);
	memcpy(in + n, ".\r\nNOOP\r\n", 9);
	run_all_splits(in, n + 9, true, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	assert_true(ref->done);
	assert_int_equal(ref->consumed, n + 3);
	assert_int_equal(ref->out_len, n);
	assert_memory_equal(ref->out, in, n);

	/* 999 + CR LF: too long; the reader still finds the end. */
	n = line(in, 3, false);
	n += line(in + n, 999, false);
	n += line(in + n, 5, false);
	memcpy(in + n, ".\r\nNOOP\r\n", 9);
	run_all_splits(in, n + 9, true, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_LINE_TOO_LONG);
	assert_true(ref->done);
	assert_int_equal(ref->consumed, n + 3);
	/* What was sent is a prefix of the content, without the long
	 * line's end. */
	assert_true(ref->out_len >= 5 && ref->out_len < 5 + 1001);
	assert_memory_equal(ref->out, in, ref->out_len);

	/* The limit counts the stuffed dot: "." + 997 + CR LF is 1000. */
	n = line(in, 998, true);
	memcpy(in + n, ".\r\n", 3);
	run_all_splits(in, n + 3, true, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	assert_int_equal(ref->out_len, 999);
	assert_memory_equal(ref->out, in + 1, 999);
	n = line(in, 999, true);
	memcpy(in + n, ".\r\n", 3);
	run_all_splits(in, n + 3, true, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_LINE_TOO_LONG);
	assert_true(ref->done);

	/* A long line without any CR LF. */
	memset(in, 'y', 3000);
	memcpy(in + 3000, "\r\n.\r\n", 5);
	run_all_splits(in, 3005, true, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_LINE_TOO_LONG);
	assert_true(ref->done);
	assert_int_equal(ref->consumed, 3005);
	assert_true(ref->out_len <= 1000);

	/* No limit. */
	run_all_splits(in, 3005, true, 0, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	assert_int_equal(ref->out_len, 3002);

	/* BDAT mode, across chunks. */
	n = line(in, 998, false);
	n += line(in + n, 998, false);
	run_all_splits(in, n, false, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	assert_int_equal(ref->out_len, n);
	n = line(in, 999, false);
	run_all_splits(in, n, false, 1000, 0, ref);
	assert_int_equal(ref->error, DATA_ERR_LINE_TOO_LONG);
	free(ref);
}

static void test_size_limit(void **state)
{
	static const struct data_case at[] = {
		{ "12345678\r\n.\r\nQUIT\r\n", "12345678\r\n", 6, true,
		  DATA_ERR_NONE },
		/* Counted after unstuffing. */
		{ "..2345678\r\n.\r\n", ".2345678\r\n", 0, true,
		  DATA_ERR_NONE },
		{ "123456789\r\n.\r\nQUIT\r\n", "123456789\r", 6, true,
		  DATA_ERR_TOO_BIG },
		{ "1234\r\n5678\r\nabcdefgh\r\n.\r\n", "1234\r\n5678", 0, true,
		  DATA_ERR_TOO_BIG },
	};
	struct result *ref = calloc(1, sizeof(*ref));

	(void)state;
	assert_non_null(ref);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		check_case(&at[i], true, 1000, 10);

	/* BDAT: exactly the limit, then one more octet. */
	run_all_splits("0123456789", 10, false, 0, 10, ref);
	assert_int_equal(ref->error, DATA_ERR_NONE);
	assert_int_equal(ref->size, 10);
	run_all_splits("0123456789A", 11, false, 0, 10, ref);
	assert_int_equal(ref->error, DATA_ERR_TOO_BIG);
	assert_int_equal(ref->size, 10);
	free(ref);
}

static void test_sink_failure(void **state)
{
	static const char in[] = "a\r\n..b\r\nc\r\n.\r\nQUIT\r\n";
	struct result *res = calloc(1, sizeof(*res));

	(void)state;
	assert_non_null(res);
	res->fail_call = 1;
	run(in, sizeof(in) - 1, true, 1000, 0, NULL, 0, res);
	assert_int_equal(res->error, DATA_ERR_SINK);
	assert_int_equal(res->calls, 1); /* nothing after the failure */
	assert_true(res->done);
	assert_int_equal(res->consumed, sizeof(in) - 1 - 6);
	assert_int_equal(res->size, 0);

	res->fail_call = 2;
	run(in, sizeof(in) - 1, true, 1000, 0, NULL, 0, res);
	assert_int_equal(res->error, DATA_ERR_SINK);
	assert_int_equal(res->calls, 2);
	assert_int_equal(res->size, 3);
	assert_true(res->done);
	free(res);
}

/* Runs of octets go to the sink in as few calls as possible. */
static void test_few_sink_calls(void **state)
{
	char in[4096];
	size_t n = 0;
	struct result *res = calloc(1, sizeof(*res));

	(void)state;
	assert_non_null(res);
	for (int i = 0; i < 100; i++)
		n += line(in + n, 30, false);
	memcpy(in + n, ".\r\n", 3);
	run(in, n + 3, true, 1000, 0, NULL, 0, res);
	assert_int_equal(res->calls, 1);
	assert_int_equal(res->out_len, n);

	/* One stuffed dot splits the run once. */
	in[512] = '.';
	assert_int_equal(in[511], '\n');
	run(in, n + 3, true, 1000, 0, NULL, 0, res);
	assert_int_equal(res->calls, 2);
	assert_int_equal(res->out_len, n - 1);

	/* BDAT: one call per chunk. */
	run(in, n, false, 1000, 0, NULL, 0, res);
	assert_int_equal(res->calls, 1);
	free(res);
}

static void test_after_done(void **state)
{
	struct data_reader r;
	struct result *res = calloc(1, sizeof(*res));
	bool done = false;

	(void)state;
	assert_non_null(res);
	data_reader_init(&r, true, 1000, 0);
	assert_int_equal(data_reader_feed(&r, "x\r\n.\r\nMAIL", 10, sink, res,
					  &done), 6);
	assert_true(done);
	done = false;
	assert_int_equal(data_reader_feed(&r, "MAIL", 4, sink, res, &done), 0);
	assert_true(done);
	assert_int_equal(res->out_len, 3);
	free(res);
}

static void test_bdat(void **state)
{
	static const struct data_case cases[] = {
		/* No dot handling and no end marker in BDAT. */
		{ "a\r\n.\r\nb\r\n", "a\r\n.\r\nb\r\n", 0, false,
		  DATA_ERR_NONE },
		{ "..x\r\n.\r\n", "..x\r\n.\r\n", 0, false, DATA_ERR_NONE },
		{ ".\r\n", ".\r\n", 0, false, DATA_ERR_NONE },
		/* Content need not end with CR LF. */
		{ "abc", "abc", 0, false, DATA_ERR_NONE },
		{ "abc\r\ndef", "abc\r\ndef", 0, false, DATA_ERR_NONE },
		{ "a\nb", "a", 0, false, DATA_ERR_BARE_LF },
		{ "a\rb", "a", 0, false, DATA_ERR_BARE_CR },
		/* A CR at the very end is bare: data_reader_finish says so. */
		{ "abc\r", "abc", 0, false, DATA_ERR_BARE_CR },
		{ "\r", "", 0, false, DATA_ERR_BARE_CR },
		{ "", "", 0, false, DATA_ERR_NONE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], false, 1000, 0);
}

/* BDAT chunks as separate feeds: CR at the end of one, LF or not at the
 * start of the next. */
static void test_bdat_cr_at_chunk_end(void **state)
{
	struct data_reader r;
	struct result *res = calloc(1, sizeof(*res));
	bool done;

	(void)state;
	assert_non_null(res);
	data_reader_init(&r, false, 1000, 0);
	assert_int_equal(data_reader_feed(&r, "abc\r", 4, sink, res, &done), 4);
	assert_false(done);
	assert_int_equal(res->out_len, 3); /* the CR is held */
	assert_int_equal(data_reader_feed(&r, "\ndef\r", 5, sink, res, &done),
			 5);
	assert_int_equal(data_reader_feed(&r, "\n", 1, sink, res, &done), 1);
	assert_int_equal(data_reader_finish(&r), DATA_ERR_NONE);
	assert_int_equal(res->out_len, 10);
	assert_memory_equal(res->out, "abc\r\ndef\r\n", 10);

	res->out_len = 0;
	data_reader_init(&r, false, 1000, 0);
	data_reader_feed(&r, "abc\r", 4, sink, res, &done);
	assert_int_equal(data_reader_feed(&r, "def", 3, sink, res, &done), 3);
	assert_int_equal(data_reader_finish(&r), DATA_ERR_BARE_CR);
	assert_int_equal(res->out_len, 3);

	res->out_len = 0;
	data_reader_init(&r, false, 1000, 0);
	data_reader_feed(&r, "abc\r", 4, sink, res, &done);
	assert_int_equal(data_reader_feed(&r, "", 0, sink, res, &done), 0);
	assert_int_equal(data_reader_finish(&r), DATA_ERR_BARE_CR);
	assert_int_equal(res->out_len, 3);
	free(res);
}

/*
 * The contract, octet by octet, over the whole input: the reference the
 * real reader is checked against.
 */
static void model(const char *in, size_t len, bool dot, size_t line_max,
		  uint64_t size_max, struct result *res)
{
	bool bol = true;
	size_t line_len = 0, i = 0;

	res->out_len = 0;
	res->done = false;
	res->error = DATA_ERR_NONE;
	res->consumed = len;
	while (i < len) {
		char c;

		if (bol) {
			bol = false;
			line_len = 0;
			if (dot && in[i] == '.') {
				if (i + 2 < len && in[i + 1] == '\r' &&
				    in[i + 2] == '\n') {
					res->done = true;
					res->consumed = i + 3;
					break;
				}
				line_len = 1;
				i++;
				continue;
			}
		}
		c = in[i];
		line_len++;
		if (res->error == DATA_ERR_NONE) {
			if (line_max != 0 && line_len > line_max)
				res->error = DATA_ERR_LINE_TOO_LONG;
			else if (c == '\r' && i + 1 < len && in[i + 1] != '\n')
				res->error = DATA_ERR_BARE_CR;
			else if (c == '\r' && i + 1 == len && !dot)
				res->error = DATA_ERR_BARE_CR; /* finish */
			else if (c == '\n' && (i == 0 || in[i - 1] != '\r'))
				res->error = DATA_ERR_BARE_LF;
		}
		if (c == '\n' && i > 0 && in[i - 1] == '\r')
			bol = true;
		if (res->error == DATA_ERR_NONE &&
		    !(c == '\r' && i + 1 == len)) {
			if (size_max != 0 && res->out_len + 1 > size_max)
				res->error = DATA_ERR_TOO_BIG;
			else
				res->out[res->out_len++] = c;
		}
		i++;
	}
}

static void test_random_against_model(void **state)
{
	static const char alphabet[] = "ab.\r\n";
	static const size_t line_maxes[] = { 0, 3, 4, 6 };
	static const uint64_t size_maxes[] = { 0, 5, 12 };
	struct result *want = calloc(1, sizeof(*want));
	struct result *got = calloc(1, sizeof(*got));
	size_t *cuts = calloc(64, sizeof(*cuts));
	char in[48];
	unsigned seed = 12345;

	(void)state;
	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(cuts);
	for (int iter = 0; iter < 20000; iter++) {
		size_t len, ncuts;
		bool dot;
		size_t line_max;
		uint64_t size_max;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % 5];
		}
		seed = seed * 1103515245u + 12345u;
		dot = (seed >> 16) & 1;
		line_max = line_maxes[(seed >> 17) % 4];
		size_max = size_maxes[(seed >> 19) % 3];
		seed = seed * 1103515245u + 12345u;
		ncuts = len == 0 ? 0 : (seed >> 16) % 6;
		for (size_t k = 0; k < ncuts; k++) {
			seed = seed * 1103515245u + 12345u;
			cuts[k] = (seed >> 16) % (len + 1);
		}
		for (size_t k = 1; k < ncuts; k++) /* insertion sort */
			for (size_t j = k; j > 0 && cuts[j - 1] > cuts[j]; j--) {
				size_t t = cuts[j];

				cuts[j] = cuts[j - 1];
				cuts[j - 1] = t;
			}

		model(in, len, dot, line_max, size_max, want);
		run(in, len, dot, line_max, size_max, cuts, ncuts, got);
		assert_same(want, got, "random vs model", (size_t)iter);
	}
	free(cuts);
	free(got);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_nul_content),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_smuggling_at_start),
		cmocka_unit_test(test_bare_cr_lf),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_sink_failure),
		cmocka_unit_test(test_few_sink_calls),
		cmocka_unit_test(test_after_done),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_bdat_cr_at_chunk_end),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
