/*
 * Unit tests for smtp_reply: single- and multi-line replies, EHLO
 * keywords, pipelined replies, octet-at-a-time input, enhanced status
 * codes, the protocol errors (bare LF or CR, long lines, too many lines,
 * mixed or malformed codes) and that they stick, the text cap, control
 * characters, and the one-line rendering.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/smtp_reply.h"

static const char ehlo_reply[] =
	"250-mx.example.com Hello client.example [192.0.2.1]\r\n"
	"250-PIPELINING\r\n"
	"250-SIZE 1000\r\n"
	"250-STARTTLS\r\n"
	"250-8BITMIME\r\n"
	"250 AUTH PLAIN LOGIN\r\n";

static const char rcpt_reply[] =
	"550-5.1.1 <a@b>: user unknown\r\n"
	"550 5.1.1 mailbox unavailable\r\n";

/* Parse all of s in one call; it must hold exactly one complete reply. */
static void parse_one(const char *s, struct smtp_reply *r)
{
	struct smtp_reply_parser p;
	size_t used = 0;

	smtp_reply_parser_init(&p);
	if (smtp_reply_parse(&p, s, strlen(s), &used, r) != SMTP_REPLY_DONE)
		fail_msg("\"%s\": not DONE (%s)", s,
			 p.error != NULL ? p.error : "more");
	assert_int_equal(used, strlen(s));
}

/* One complete reply in s: its code, enhanced code and text. */
static void expect_reply(const char *s, int code, const char *enh,
			 const char *text)
{
	struct smtp_reply r;

	parse_one(s, &r);
	if (r.code != code || strcmp(r.enh, enh) != 0 ||
	    strcmp(r.text, text) != 0)
		fail_msg("\"%s\": got %d \"%s\" \"%s\", want %d \"%s\" \"%s\"",
			 s, r.code, r.enh, r.text, code, enh, text);
}

/* Parse s[0..len) in one call and expect a protocol error. */
static void expect_error(const char *s, size_t len)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used = 0;

	smtp_reply_parser_init(&p);
	if (smtp_reply_parse(&p, s, len, &used, &r) != SMTP_REPLY_ERROR)
		fail_msg("\"%s\": no error", s);
	assert_true(p.failed);
	assert_non_null(p.error);
}

static void test_single_line(void **state)
{
	(void)state;
	expect_reply("220 mx.example.com ESMTP ready\r\n", 220, "",
		     "mx.example.com ESMTP ready");
	expect_reply("554 5.7.1 Relay access denied\r\n", 554, "5.7.1",
		     "Relay access denied");
	/* Text is kept as is, spaces included. */
	expect_reply("221 2.0.0  Bye \r\n", 221, "2.0.0", " Bye ");
	expect_reply("250 \r\n", 250, "", "");
}

static void test_code_only(void **state)
{
	struct smtp_reply r;

	(void)state;
	parse_one("250\r\n", &r);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enh, "");
	assert_string_equal(r.text, "");
	assert_int_equal(r.nlines, 1);

	parse_one("250-first\r\n250\r\n", &r);
	assert_int_equal(r.nlines, 2);
	assert_string_equal(r.text, "first\n");
}

static void test_ehlo(void **state)
{
	struct smtp_reply r;
	const char *arg = NULL;
	size_t arglen = 99;

	(void)state;
	parse_one(ehlo_reply, &r);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 6);
	assert_string_equal(r.text,
			    "mx.example.com Hello client.example [192.0.2.1]\n"
			    "PIPELINING\nSIZE 1000\nSTARTTLS\n8BITMIME\n"
			    "AUTH PLAIN LOGIN");

	assert_true(smtp_reply_has_keyword(&r, "PIPELINING", &arg, &arglen));
	assert_int_equal(arglen, 0);
	assert_true(smtp_reply_has_keyword(&r, "size", &arg, &arglen));
	assert_int_equal(arglen, 4);
	assert_memory_equal(arg, "1000", 4);
	assert_true(arg > r.text && arg < r.text + sizeof(r.text));
	assert_true(smtp_reply_has_keyword(&r, "StartTLS", NULL, NULL));
	assert_true(smtp_reply_has_keyword(&r, "8BITMIME", &arg, NULL));
	assert_true(smtp_reply_has_keyword(&r, "AUTH", &arg, &arglen));
	assert_int_equal(arglen, strlen("PLAIN LOGIN"));
	assert_memory_equal(arg, "PLAIN LOGIN", arglen);

	/* Prefixes, words inside a line and the greeting line do not count. */
	assert_false(smtp_reply_has_keyword(&r, "PIPE", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "SIZE 10", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "PIPELININGX", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "PLAIN", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "SMTPUTF8", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "mx.example.com", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, "", NULL, NULL));
	assert_false(smtp_reply_has_keyword(&r, NULL, NULL, NULL));

	/* A one-line EHLO reply has no keywords. */
	parse_one("250 SIZE\r\n", &r);
	assert_false(smtp_reply_has_keyword(&r, "SIZE", NULL, NULL));
	/* The last line is a keyword line too; "SIZE " has an empty arg. */
	parse_one("250-mx\r\n250 SIZE \r\n", &r);
	assert_true(smtp_reply_has_keyword(&r, "SIZE", &arg, &arglen));
	assert_int_equal(arglen, 0);
}

/* The next reply from in[*off..len): DONE with these fields; *off moves on. */
static void expect_next(struct smtp_reply_parser *p, const char *in,
			size_t len, size_t *off, int code, const char *enh,
			const char *text)
{
	struct smtp_reply r;
	size_t used = 0;

	assert_int_equal(smtp_reply_parse(p, in + *off, len - *off, &used, &r),
			 SMTP_REPLY_DONE);
	assert_int_equal(r.code, code);
	assert_string_equal(r.enh, enh);
	assert_string_equal(r.text, text);
	*off += used;
}

static void test_pipelined(void **state)
{
	static const char in[] =
		"250 2.1.0 Ok\r\n"
		"250-2.1.5 Ok\r\n250 2.1.5 recipient ok\r\n"
		"354 End data with <CR><LF>.<CR><LF>\r\n"
		"2";
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used, off = 0, len = sizeof(in) - 1;

	(void)state;
	smtp_reply_parser_init(&p);
	expect_next(&p, in, len, &off, 250, "2.1.0", "Ok");
	assert_int_equal(off, 14);
	expect_next(&p, in, len, &off, 250, "2.1.5", "Ok\nrecipient ok");
	expect_next(&p, in, len, &off, 354, "",
		    "End data with <CR><LF>.<CR><LF>");
	assert_int_equal(off, len - 1);

	/* The partial line stays inside; r is left alone. */
	r.code = -1;
	assert_int_equal(smtp_reply_parse(&p, in + off, len - off, &used, &r),
			 SMTP_REPLY_MORE);
	assert_int_equal(used, 1);
	assert_int_equal(r.code, -1);
	off = 0;
	expect_next(&p, "21 bye\r\n", 8, &off, 221, "", "bye");
	assert_int_equal(off, 8);

	/* Empty input is fine. */
	assert_int_equal(smtp_reply_parse(&p, NULL, 0, &used, &r),
			 SMTP_REPLY_MORE);
	assert_int_equal(used, 0);
}

static void test_byte_at_a_time(void **state)
{
	static const char *const in[] = { ehlo_reply, rcpt_reply };
	struct smtp_reply_parser p;
	struct smtp_reply whole, r;
	size_t used;

	(void)state;
	smtp_reply_parser_init(&p);
	for (size_t k = 0; k < 2; k++) {
		size_t n = strlen(in[k]);

		parse_one(in[k], &whole);
		for (size_t i = 0; i < n; i++) {
			enum smtp_reply_status st;

			st = smtp_reply_parse(&p, in[k] + i, 1, &used, &r);
			assert_int_equal(used, 1);
			/* Done exactly at the LF that ends the reply. */
			assert_int_equal(st, i + 1 < n ? SMTP_REPLY_MORE
						       : SMTP_REPLY_DONE);
		}
		assert_int_equal(r.code, whole.code);
		assert_string_equal(r.enh, whole.enh);
		assert_string_equal(r.text, whole.text);
		assert_int_equal(r.nlines, whole.nlines);
	}
	assert_string_equal(r.text, "<a@b>: user unknown\nmailbox unavailable");
	assert_int_equal(p.line_len, 0);
}

static void test_enhanced(void **state)
{
	static const struct {
		const char *in;
		int code;
		const char *enh, *text;
	} cases[] = {
		{ "250 2.0.0\r\n", 250, "2.0.0", "" },
		{ "451 4.123.456 try later\r\n", 451, "4.123.456", "try later" },
		/* Absent. */
		{ "250 Ok\r\n", 250, "", "Ok" },
		/* Class does not match the code: kept as text. */
		{ "550 2.0.0 odd\r\n", 550, "", "2.0.0 odd" },
		{ "354 3.0.0 go ahead\r\n", 354, "", "3.0.0 go ahead" },
		/* Not an enhanced code. */
		{ "250 2.0.0.1 x\r\n", 250, "", "2.0.0.1 x" },
		{ "250 2.0.1234 x\r\n", 250, "", "2.0.1234 x" },
		{ "250 2.1000.0 x\r\n", 250, "", "2.1000.0 x" },
		{ "250 2..0 x\r\n", 250, "", "2..0 x" },
		{ "250 2.0. x\r\n", 250, "", "2.0. x" },
		{ "250 2.0.0x\r\n", 250, "", "2.0.0x" },
		{ "250 2.0\r\n", 250, "", "2.0" },
		/* Taken from the first line only, stripped where repeated. */
		{ "250-first\r\n250 2.0.0 second\r\n", 250, "",
		  "first\n2.0.0 second" },
		{ "550-5.7.1 one\r\n550-5.7.1\r\n550-two\r\n550 5.7.2 three\r\n",
		  550, "5.7.1", "one\n\ntwo\n5.7.2 three" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_reply(cases[i].in, cases[i].code, cases[i].enh,
			     cases[i].text);
}

static void test_bare_lf_cr(void **state)
{
	(void)state;
	expect_error("250 ok\n", 7);
	expect_error("\n", 1);
	expect_error("250-a\r\n250 ok\n", 14);
	expect_error("250 o\rk\r\n", 9);
	expect_error("250 ok\r\r\n", 9);
	expect_error("\r\r", 2);
	expect_error("\r ", 2);
}

static void test_bare_cr_split(void **state)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;

	(void)state;
	/* CR at the end of one read, something other than LF at the next. */
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, "250 ok\r", 7, &used, &r),
			 SMTP_REPLY_MORE);
	assert_int_equal(smtp_reply_parse(&p, "x\n", 2, &used, &r),
			 SMTP_REPLY_ERROR);
	assert_int_equal(used, 1);
	assert_string_equal(p.error, "bare CR in reply");
}

static void test_long_line(void **state)
{
	char buf[SMTP_REPLY_LINE_MAX + 8];
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;

	(void)state;
	/* Exactly SMTP_REPLY_LINE_MAX octets with the CRLF: fine. */
	memcpy(buf, "250 ", 4);
	memset(buf + 4, 'x', SMTP_REPLY_LINE_MAX - 6);
	memcpy(buf + SMTP_REPLY_LINE_MAX - 2, "\r\n", 3);
	assert_int_equal(strlen(buf), SMTP_REPLY_LINE_MAX);
	parse_one(buf, &r);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);

	/* One more: refused as soon as the octet is seen, CRLF or not. */
	memset(buf + 4, 'x', SMTP_REPLY_LINE_MAX - 5);
	memcpy(buf + SMTP_REPLY_LINE_MAX - 1, "\r\n", 3);
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, buf, strlen(buf), &used, &r),
			 SMTP_REPLY_ERROR);
	assert_int_equal(used, SMTP_REPLY_LINE_MAX - 1);
	assert_string_equal(p.error, "reply line too long");
	assert_true(p.line_len < SMTP_REPLY_LINE_MAX);
}

static void test_too_many_lines(void **state)
{
	static const char unit[] = "250-xyzzy\r\n";
	const size_t ulen = sizeof(unit) - 1;
	const size_t total = 1024 * 1024;
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;
	char *big = malloc(total);

	(void)state;
	assert_non_null(big);
	for (size_t i = 0; i < total; i++)
		big[i] = unit[i % ulen];

	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, big, total, &used, &r),
			 SMTP_REPLY_ERROR);
	/* The cap is hit at the end of line SMTP_REPLY_LINES_MAX + 1. */
	assert_int_equal(used, (SMTP_REPLY_LINES_MAX + 1) * ulen);
	assert_string_equal(p.error, "too many lines in one reply");
	assert_true(strlen(p.cur.text) < SMTP_REPLY_TEXT_MAX);
	free(big);

	/* SMTP_REPLY_LINES_MAX lines in all is still one good reply. */
	big = malloc(SMTP_REPLY_LINES_MAX * ulen + 1);
	assert_non_null(big);
	for (size_t i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		memcpy(big + i * ulen, unit, ulen);
	big[(SMTP_REPLY_LINES_MAX - 1) * ulen + 3] = ' ';
	big[SMTP_REPLY_LINES_MAX * ulen] = '\0';
	parse_one(big, &r);
	assert_int_equal(r.nlines, SMTP_REPLY_LINES_MAX);
	free(big);
}

static void test_mixed_codes(void **state)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;

	(void)state;
	expect_error("250-a\r\n251 b\r\n", 14);
	expect_error("250-a\r\n250-b\r\n550 c\r\n", 21);
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, "250-a\r\n350-b\r\n", 14, &used,
					  &r), SMTP_REPLY_ERROR);
	assert_int_equal(used, 14);
	assert_string_equal(p.error, "reply code changed within one reply");
}

static void test_bad_codes(void **state)
{
	(void)state;
	expect_error("099 x\r\n", 7);
	expect_error("199 x\r\n", 7);
	expect_error("600 x\r\n", 7);
	expect_error("abc x\r\n", 7);
	expect_error("25 \r\n", 5);
	expect_error("25\r\n", 4);
	expect_error("\r\n", 2);
	expect_error("2a0 x\r\n", 7);
	expect_error("25a x\r\n", 7);
	expect_error("2500 x\r\n", 8);
	expect_error("250x\r\n", 6);
	expect_error("250\tx\r\n", 7);
	expect_error(" 250 x\r\n", 8);
	expect_error("250_x\r\n", 7);
	expect_error("250-a\r\nxyz\r\n", 12);
}

static void test_truncation(void **state)
{
	char buf[3 * SMTP_REPLY_LINE_MAX];
	struct smtp_reply r;
	size_t n = 0;

	(void)state;
	/* Two lines of 700 octets: the text stops at the cap, NUL-ended. */
	for (int l = 0; l < 2; l++) {
		memcpy(buf + n, l == 0 ? "250-" : "250 ", 4);
		n += 4;
		memset(buf + n, l == 0 ? 'a' : 'b', 700);
		n += 700;
		memcpy(buf + n, "\r\n", 2);
		n += 2;
	}
	buf[n] = '\0';
	parse_one(buf, &r);
	assert_int_equal(r.nlines, 2);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
	assert_int_equal(r.text[699], 'a');
	assert_int_equal(r.text[700], '\n');
	assert_int_equal(r.text[701], 'b');
	assert_int_equal(r.text[SMTP_REPLY_TEXT_MAX - 2], 'b');

	/* Exactly full and no more. */
	memcpy(buf, "250 ", 4);
	memset(buf + 4, 'c', SMTP_REPLY_TEXT_MAX - 1);
	memcpy(buf + 4 + SMTP_REPLY_TEXT_MAX - 1, "\r\n", 3);
	parse_one(buf, &r);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
}

static void test_control_chars(void **state)
{
	static const char in[] = "250 a\tb\x01" "c\x7f" "d\x1b[0m\0e\xc3\xa9\xff\r\n";
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;

	(void)state;
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, in, sizeof(in) - 1, &used, &r),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, sizeof(in) - 1);
	assert_string_equal(r.text, "a?b?c?d?[0m?e\xc3\xa9\xff");
}

static void test_format(void **state)
{
	struct smtp_reply r;
	char buf[128];

	(void)state;
	parse_one(rcpt_reply, &r);
	smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf,
			    "550 5.1.1 <a@b>: user unknown mailbox unavailable");

	parse_one("250 Ok\r\n", &r);
	smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250 Ok");
	parse_one("250\r\n", &r);
	smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250");
	parse_one("250 2.0.0\r\n", &r);
	smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250 2.0.0");
	parse_one(ehlo_reply, &r);
	smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250 mx.example.com Hello client.example "
				 "[192.0.2.1] PIPELINING SIZE 1000 STARTTLS "
				 "8BITMIME AUTH PLAIN LOGIN");

	/* Small buffers: cut, always NUL-ended, nothing written past len. */
	parse_one("550 5.1.1 mailbox unavailable\r\n", &r);
	memset(buf, 'Z', sizeof(buf));
	smtp_reply_format(&r, buf, 14);
	assert_string_equal(buf, "550 5.1.1 mai");
	assert_int_equal(buf[14], 'Z');
	smtp_reply_format(&r, buf, 10);
	assert_string_equal(buf, "550 5.1.1");
	smtp_reply_format(&r, buf, 4);
	assert_string_equal(buf, "550");
	smtp_reply_format(&r, buf, 2);
	assert_string_equal(buf, "5");
	smtp_reply_format(&r, buf, 1);
	assert_string_equal(buf, "");
	buf[0] = 'Z';
	smtp_reply_format(&r, buf, 0);
	assert_int_equal(buf[0], 'Z');
}

static void test_error_sticky(void **state)
{
	struct smtp_reply_parser p;
	struct smtp_reply r;
	size_t used;

	(void)state;
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, "250 ok\nxyz", 10, &used, &r),
			 SMTP_REPLY_ERROR);
	assert_int_equal(used, 7);
	assert_string_equal(p.error, "bare LF in reply");
	r.code = -1;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(smtp_reply_parse(&p, "250 ok\r\n", 8, &used,
						  &r), SMTP_REPLY_ERROR);
		assert_int_equal(used, 0);
		assert_int_equal(r.code, -1);
	}
	assert_int_equal(smtp_reply_parse(&p, NULL, 0, &used, &r),
			 SMTP_REPLY_ERROR);
	assert_string_equal(p.error, "bare LF in reply");

	/* init starts afresh. */
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse(&p, "250 ok\r\n", 8, &used, &r),
			 SMTP_REPLY_DONE);
	assert_null(p.error);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_code_only),
		cmocka_unit_test(test_ehlo),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_bare_lf_cr),
		cmocka_unit_test(test_bare_cr_split),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_too_many_lines),
		cmocka_unit_test(test_mixed_codes),
		cmocka_unit_test(test_bad_codes),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_error_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
