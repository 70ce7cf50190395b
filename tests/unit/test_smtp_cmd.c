/*
 * Unit tests for smtp_cmd: verb and argument split, bad octets, the
 * "FROM:"/"TO:" prefix, MAIL and RCPT parameters, xtext, BDAT arguments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proto/smtp_cmd.h"

static void check_cmd(const char *line, enum smtp_verb verb, const char *arg)
{
	struct smtp_cmd c;
	bool bad = true;

	smtp_cmd_parse(line, strlen(line), &c, &bad);
	assert_false(bad);
	if (c.verb != verb)
		fail_msg("\"%s\": verb %d, want %d", line, (int)c.verb,
			 (int)verb);
	assert_int_equal(c.arg_len, strlen(arg));
	assert_memory_equal(c.arg, arg, c.arg_len);
}

static void test_verbs(void **state)
{
	(void)state;
	check_cmd("HELO client.example", SMTP_VERB_HELO, "client.example");
	check_cmd("EHLO client.example", SMTP_VERB_EHLO, "client.example");
	check_cmd("MAIL FROM:<a@b>", SMTP_VERB_MAIL, "FROM:<a@b>");
	check_cmd("RCPT TO:<a@b>", SMTP_VERB_RCPT, "TO:<a@b>");
	check_cmd("DATA", SMTP_VERB_DATA, "");
	check_cmd("BDAT 100 LAST", SMTP_VERB_BDAT, "100 LAST");
	check_cmd("RSET", SMTP_VERB_RSET, "");
	check_cmd("NOOP", SMTP_VERB_NOOP, "");
	check_cmd("NOOP anything at all", SMTP_VERB_NOOP, "anything at all");
	check_cmd("QUIT", SMTP_VERB_QUIT, "");
	check_cmd("HELP", SMTP_VERB_HELP, "");
	check_cmd("VRFY user", SMTP_VERB_VRFY, "user");
	check_cmd("EXPN list", SMTP_VERB_EXPN, "list");
	check_cmd("STARTTLS", SMTP_VERB_STARTTLS, "");
	check_cmd("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", SMTP_VERB_AUTH,
		  "PLAIN dGVzdAB0ZXN0AHRlc3Q=");
}

static void test_verb_case(void **state)
{
	(void)state;
	check_cmd("mail FROM:<a@b>", SMTP_VERB_MAIL, "FROM:<a@b>");
	check_cmd("MaIl from:<a@b>", SMTP_VERB_MAIL, "from:<a@b>");
	check_cmd("starttls", SMTP_VERB_STARTTLS, "");
	check_cmd("eHlO x", SMTP_VERB_EHLO, "x");
}

static void test_unknown_verbs(void **state)
{
	(void)state;
	check_cmd("MAILX FROM:<a@b>", SMTP_VERB_UNKNOWN, "FROM:<a@b>");
	check_cmd("MAI", SMTP_VERB_UNKNOWN, "");
	check_cmd("DATAX", SMTP_VERB_UNKNOWN, "");
	check_cmd("STARTTLSX", SMTP_VERB_UNKNOWN, "");
	check_cmd("XCLIENT ADDR=1.2.3.4", SMTP_VERB_UNKNOWN, "ADDR=1.2.3.4");
	check_cmd("", SMTP_VERB_UNKNOWN, "");
	check_cmd(" MAIL FROM:<a@b>", SMTP_VERB_UNKNOWN, "MAIL FROM:<a@b>");
	check_cmd("MAIL\tFROM:<a@b>", SMTP_VERB_UNKNOWN, "");
	check_cmd("M\xc3\xa4IL", SMTP_VERB_UNKNOWN, "");
}

static void test_arg_spaces(void **state)
{
	(void)state;
	/* Exactly one space is skipped; the rest is kept. */
	check_cmd("MAIL  FROM:<a@b>", SMTP_VERB_MAIL, " FROM:<a@b>");
	/* Trailing spaces and tabs are trimmed. */
	check_cmd("MAIL FROM:<a@b>   ", SMTP_VERB_MAIL, "FROM:<a@b>");
	check_cmd("MAIL FROM:<a@b> \t ", SMTP_VERB_MAIL, "FROM:<a@b>");
	check_cmd("DATA ", SMTP_VERB_DATA, "");
	check_cmd("QUIT    ", SMTP_VERB_QUIT, "");
	check_cmd("EHLO a\tb", SMTP_VERB_EHLO, "a\tb");
	check_cmd("HELO  ", SMTP_VERB_HELO, "");
}

static void test_bad_octets(void **state)
{
	static const char *const lines[] = {
		"MAIL FROM:<a@b>\r", "MAIL FROM:<a@b>\rRCPT TO:<c@d>",
		"DATA\n", "NOOP \x01", "NOOP \x1f", "NOOP \x7f", "\x1b[0m",
		"RCPT TO:<a@b>\x0b", "\rQUIT",
	};
	static const char with_nul[] = "MAIL FROM:<a@b>\0 SIZE=1";
	struct smtp_cmd c;
	bool bad;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		bad = false;
		smtp_cmd_parse(lines[i], strlen(lines[i]), &c, &bad);
		assert_true(bad);
		assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	}
	bad = false;
	smtp_cmd_parse(with_nul, sizeof(with_nul) - 1, &c, &bad);
	assert_true(bad);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	/* A NUL past len is not looked at. */
	smtp_cmd_parse(with_nul, 15, &c, &bad);
	assert_false(bad);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	/* HT and 8-bit octets are not bad. */
	smtp_cmd_parse("NOOP \t\xc3\xa4\xff", 9, &c, &bad);
	assert_false(bad);
	assert_int_equal(c.verb, SMTP_VERB_NOOP);
}

static void test_verb_name(void **state)
{
	(void)state;
	assert_string_equal(smtp_cmd_verb_name(SMTP_VERB_MAIL), "MAIL");
	assert_string_equal(smtp_cmd_verb_name(SMTP_VERB_STARTTLS),
			    "STARTTLS");
	assert_string_equal(smtp_cmd_verb_name(SMTP_VERB_AUTH), "AUTH");
	assert_string_equal(smtp_cmd_verb_name(SMTP_VERB_UNKNOWN), "?");
	assert_string_equal(smtp_cmd_verb_name(SMTP_VERB_COUNT), "?");
	for (int v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		/* Each name parses back to its verb. */
		const char *name = smtp_cmd_verb_name((enum smtp_verb)v);
		struct smtp_cmd c;
		bool bad;

		smtp_cmd_parse(name, strlen(name), &c, &bad);
		assert_int_equal(c.verb, v);
	}
}

static long path_off(const char *arg, const char *kw)
{
	return smtp_cmd_path_offset(arg, strlen(arg), kw);
}

static void test_path_offset(void **state)
{
	(void)state;
	assert_int_equal(path_off("FROM:<a@b>", "FROM:"), 5);
	assert_int_equal(path_off("from:<a@b>", "FROM:"), 5);
	assert_int_equal(path_off("FrOm:<>", "FROM:"), 5);
	assert_int_equal(path_off("FROM: <a@b>", "FROM:"), 6);
	assert_int_equal(path_off("FROM:   <a@b>", "FROM:"), 8);
	assert_int_equal(path_off("TO:<a@b>", "TO:"), 3);
	assert_int_equal(path_off("to: <a@b> NOTIFY=NEVER", "TO:"), 4);
	/* The keyword may be given without its colon. */
	assert_int_equal(path_off("FROM:<a@b>", "FROM"), 5);
	assert_int_equal(path_off("TO: <a@b>", "TO"), 4);

	assert_int_equal(path_off("FROM:a@b", "FROM:"), -1);
	assert_int_equal(path_off("FROM:", "FROM:"), -1);
	assert_int_equal(path_off("FROM: ", "FROM:"), -1);
	assert_int_equal(path_off("FROM <a@b>", "FROM:"), -1);
	assert_int_equal(path_off("FROM <a@b>", "FROM"), -1);
	assert_int_equal(path_off("FROM :<a@b>", "FROM:"), -1);
	assert_int_equal(path_off("TO:<a@b>", "FROM:"), -1);
	assert_int_equal(path_off("FRO", "FROM:"), -1);
	assert_int_equal(path_off("", "FROM:"), -1);
	assert_int_equal(path_off(" FROM:<a@b>", "FROM:"), -1);
	assert_int_equal(path_off("FROMX:<a@b>", "FROM"), -1);
	assert_int_equal(path_off("FROM:x<a@b>", "FROM:"), -1);
}

/* ---- MAIL parameters ---- */

static enum smtp_param_status mail(const char *s, uint64_t max,
				   struct smtp_mail_params *p, char *err)
{
	return smtp_mail_params_parse(s, strlen(s), max, p, err, 64);
}

static enum smtp_param_status rcpt(const char *s, bool utf8,
				   struct smtp_rcpt_params *p, char *err)
{
	return smtp_rcpt_params_parse(s, strlen(s), utf8, p, err, 64);
}

static void expect_mail(const char *s, enum smtp_param_status want)
{
	struct smtp_mail_params p;
	char err[64];
	enum smtp_param_status st = mail(s, 0, &p, err);

	if (st != want)
		fail_msg("\"%s\": status %d, want %d (%s)", s, (int)st,
			 (int)want, err);
	if (want != SMTP_PARAM_OK)
		assert_true(err[0] != '\0');
}

static void expect_rcpt(const char *s, bool utf8, enum smtp_param_status want)
{
	struct smtp_rcpt_params p;
	char err[64];
	enum smtp_param_status st = rcpt(s, utf8, &p, err);

	if (st != want)
		fail_msg("\"%s\": status %d, want %d (%s)", s, (int)st,
			 (int)want, err);
	if (want != SMTP_PARAM_OK)
		assert_true(err[0] != '\0');
}

static void test_mail_empty(void **state)
{
	struct smtp_mail_params p;
	char err[64];

	(void)state;
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(mail("", 0, &p, err), SMTP_PARAM_OK);
	assert_false(p.has_size);
	assert_int_equal(p.body, SMTP_BODY_UNSPEC);
	assert_false(p.smtputf8);
	assert_int_equal(p.ret, SMTP_RET_UNSPEC);
	assert_false(p.has_envid);
	assert_false(p.has_auth);
	assert_string_equal(err, "");
	assert_int_equal(mail("   ", 0, &p, err), SMTP_PARAM_OK);
}

static void test_mail_all(void **state)
{
	struct smtp_mail_params p;
	char err[64];
	const char *s = " SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS "
			"ENVID=QQ314159+2B AUTH=joe+40example.com";

	(void)state;
	assert_int_equal(mail(s, 100000, &p, err), SMTP_PARAM_OK);
	assert_true(p.has_size);
	assert_int_equal(p.size, 12345);
	assert_int_equal(p.body, SMTP_BODY_8BITMIME);
	assert_true(p.smtputf8);
	assert_int_equal(p.ret, SMTP_RET_HDRS);
	assert_true(p.has_envid);
	assert_string_equal(p.envid, "QQ314159+2B");
	assert_true(p.has_auth);
	assert_string_equal(p.auth, "joe+40example.com");

	/* Without the leading space, and with several spaces between. */
	assert_int_equal(mail("SIZE=1  BODY=7BIT   RET=FULL", 0, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.size, 1);
	assert_int_equal(p.body, SMTP_BODY_7BIT);
	assert_int_equal(p.ret, SMTP_RET_FULL);
	assert_false(p.smtputf8);

	assert_int_equal(mail(" AUTH=<>", 0, &p, err), SMTP_PARAM_OK);
	assert_true(p.has_auth);
	assert_string_equal(p.auth, "<>");
}

static void test_mail_case(void **state)
{
	struct smtp_mail_params p;
	char err[64];

	(void)state;
	assert_int_equal(mail(" size=10 body=8bitmime smtputf8 ret=hdrs "
			      "envid=x auth=y", 0, &p, err), SMTP_PARAM_OK);
	assert_int_equal(p.size, 10);
	assert_int_equal(p.body, SMTP_BODY_8BITMIME);
	assert_true(p.smtputf8);
	assert_int_equal(p.ret, SMTP_RET_HDRS);
	assert_int_equal(mail(" Body=7Bit Ret=Full SmtpUtf8", 0, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.body, SMTP_BODY_7BIT);
	assert_int_equal(p.ret, SMTP_RET_FULL);
	assert_true(p.smtputf8);
}

static void test_mail_size(void **state)
{
	struct smtp_mail_params p;
	char err[64];

	(void)state;
	assert_int_equal(mail(" SIZE=0", 0, &p, err), SMTP_PARAM_OK);
	assert_true(p.has_size);
	assert_int_equal(p.size, 0);
	assert_int_equal(mail(" SIZE=18446744073709551615", 0, &p, err),
			 SMTP_PARAM_OK);
	assert_true(p.size == UINT64_MAX);
	assert_int_equal(mail(" SIZE=00000000000000000001", 0, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.size, 1);

	expect_mail(" SIZE=18446744073709551616", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=99999999999999999999", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=000000000000000000001", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=-1", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=+1", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=1k", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=0x10", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE==1", SMTP_PARAM_SYNTAX);
	assert_int_equal(mail(" SIZE=abc", 0, &p, err), SMTP_PARAM_SYNTAX);
	assert_string_equal(err, "invalid SIZE value");

	/* The limit: at it is fine, above it is 552. */
	assert_int_equal(mail(" SIZE=1000", 1000, &p, err), SMTP_PARAM_OK);
	assert_int_equal(mail(" SIZE=1001", 1000, &p, err),
			 SMTP_PARAM_SIZE_LIMIT);
	assert_true(err[0] != '\0');
	assert_int_equal(mail(" SIZE=18446744073709551615", 1000, &p, err),
			 SMTP_PARAM_SIZE_LIMIT);
	/* A malformed command gets 501, even with SIZE over the limit. */
	assert_int_equal(mail(" SIZE=1001 BODY=x", 1000, &p, err),
			 SMTP_PARAM_SYNTAX);
	assert_int_equal(mail(" SIZE=1001 FOO", 1000, &p, err),
			 SMTP_PARAM_UNKNOWN);
}

static void test_mail_body_ret(void **state)
{
	(void)state;
	expect_mail(" BODY=BINARYMIME", SMTP_PARAM_SYNTAX);
	expect_mail(" BODY=8BIT", SMTP_PARAM_SYNTAX);
	expect_mail(" BODY=7BITX", SMTP_PARAM_SYNTAX);
	expect_mail(" BODY=", SMTP_PARAM_SYNTAX);
	expect_mail(" BODY", SMTP_PARAM_SYNTAX);
	expect_mail(" RET=", SMTP_PARAM_SYNTAX);
	expect_mail(" RET", SMTP_PARAM_SYNTAX);
	expect_mail(" RET=HEADERS", SMTP_PARAM_SYNTAX);
	expect_mail(" RET=FULLHDRS", SMTP_PARAM_SYNTAX);
	expect_mail(" SMTPUTF8=yes", SMTP_PARAM_SYNTAX);
	expect_mail(" SMTPUTF8=", SMTP_PARAM_SYNTAX);
}

static void test_mail_envid_auth(void **state)
{
	char buf[700];
	struct smtp_mail_params p;
	char err[64];

	(void)state;
	expect_mail(" ENVID=", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID=a+2b", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID=a+", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID=a+2", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID=a=b", SMTP_PARAM_SYNTAX);
	expect_mail(" ENVID=\xc3\xa4", SMTP_PARAM_SYNTAX);
	expect_mail(" AUTH=", SMTP_PARAM_SYNTAX);
	expect_mail(" AUTH", SMTP_PARAM_SYNTAX);
	expect_mail(" AUTH=a+zz", SMTP_PARAM_SYNTAX);

	/* ENVID: 100 octets fine, 101 not. */
	memcpy(buf, " ENVID=", 7);
	memset(buf + 7, 'e', 100);
	buf[107] = '\0';
	assert_int_equal(mail(buf, 0, &p, err), SMTP_PARAM_OK);
	assert_int_equal(strlen(p.envid), 100);
	buf[107] = 'e';
	buf[108] = '\0';
	expect_mail(buf, SMTP_PARAM_SYNTAX);

	/* AUTH: 500 octets fine, 501 not. */
	memcpy(buf, " AUTH=", 6);
	memset(buf + 6, 'a', 500);
	buf[506] = '\0';
	assert_int_equal(mail(buf, 0, &p, err), SMTP_PARAM_OK);
	assert_int_equal(strlen(p.auth), 500);
	buf[506] = 'a';
	buf[507] = '\0';
	expect_mail(buf, SMTP_PARAM_SYNTAX);
}

static void test_mail_unknown_dup(void **state)
{
	struct smtp_mail_params p;
	char err[64];

	(void)state;
	expect_mail(" FOO=bar", SMTP_PARAM_UNKNOWN);
	expect_mail(" X-FOO", SMTP_PARAM_UNKNOWN);
	expect_mail(" NOTIFY=NEVER", SMTP_PARAM_UNKNOWN);
	expect_mail(" SIZEX=1", SMTP_PARAM_UNKNOWN);
	expect_mail(" SIZE=1 SIZE=1", SMTP_PARAM_UNKNOWN);
	expect_mail(" SIZE=1 size=2", SMTP_PARAM_UNKNOWN);
	expect_mail(" BODY=7BIT BODY=8BITMIME", SMTP_PARAM_UNKNOWN);
	expect_mail(" SMTPUTF8 SMTPUTF8", SMTP_PARAM_UNKNOWN);
	expect_mail(" RET=FULL RET=HDRS", SMTP_PARAM_UNKNOWN);
	expect_mail(" ENVID=a ENVID=b", SMTP_PARAM_UNKNOWN);
	expect_mail(" AUTH=<> AUTH=<>", SMTP_PARAM_UNKNOWN);
	/* Unknown beats a bad value of the unknown keyword. */
	expect_mail(" FOO=", SMTP_PARAM_UNKNOWN);
	assert_int_equal(mail(" SIZE=1 FOO", 0, &p, err), SMTP_PARAM_UNKNOWN);
	assert_string_equal(err, "unknown parameter");
	assert_int_equal(mail(" BODY=7BIT body=7bit", 0, &p, err),
			 SMTP_PARAM_UNKNOWN);
	assert_string_equal(err, "duplicate parameter");
}

static void test_mail_keyword_syntax(void **state)
{
	(void)state;
	expect_mail(" =1", SMTP_PARAM_SYNTAX);
	expect_mail(" -SIZE=1", SMTP_PARAM_SYNTAX);
	expect_mail(" SI_ZE=1", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE:1", SMTP_PARAM_SYNTAX);
	expect_mail(" <>", SMTP_PARAM_SYNTAX);
	expect_mail(" SIZE=1\tBODY=7BIT", SMTP_PARAM_SYNTAX);
	expect_mail(" S\xc3\xa4=1", SMTP_PARAM_SYNTAX);
}

static void test_err_truncated(void **state)
{
	struct smtp_mail_params p;
	char err[8];

	(void)state;
	memset(err, 'x', sizeof(err));
	assert_int_equal(smtp_mail_params_parse(" SIZE=x", 7, 0, &p, err, 8),
			 SMTP_PARAM_SYNTAX);
	assert_string_equal(err, "invalid");
	/* A NULL or empty buffer is fine. */
	assert_int_equal(smtp_mail_params_parse(" SIZE=x", 7, 0, &p, NULL, 0),
			 SMTP_PARAM_SYNTAX);
	assert_int_equal(smtp_mail_params_parse(" SIZE=x", 7, 0, &p, err, 0),
			 SMTP_PARAM_SYNTAX);
	/* Only len octets are looked at. */
	assert_int_equal(smtp_mail_params_parse(" SIZE=1 FOO", 7, 0, &p, err,
						8), SMTP_PARAM_OK);
	assert_int_equal(p.size, 1);
}

/* ---- RCPT parameters ---- */

static void test_rcpt_notify(void **state)
{
	struct smtp_rcpt_params p;
	char err[64];

	(void)state;
	assert_int_equal(rcpt("", false, &p, err), SMTP_PARAM_OK);
	assert_int_equal(p.notify, 0);
	assert_false(p.has_orcpt);

	assert_int_equal(rcpt(" NOTIFY=NEVER", false, &p, err), SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_NEVER);
	assert_int_equal(rcpt(" NOTIFY=SUCCESS", false, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_SUCCESS);
	assert_int_equal(rcpt(" NOTIFY=SUCCESS,FAILURE,DELAY", false, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE |
				   SMTP_NOTIFY_DELAY);
	assert_int_equal(rcpt(" notify=delay,failure", false, &p, err),
			 SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
	assert_int_equal(rcpt(" Notify=Never", false, &p, err), SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_NEVER);

	expect_rcpt(" NOTIFY=NEVER,SUCCESS", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=DELAY,NEVER", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=SUCCESS,SUCCESS", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=NEVER,NEVER", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=SUCCESS,", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=,SUCCESS", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=SUCCESS,,DELAY", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=ALWAYS", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NOTIFY=NEVER NOTIFY=NEVER", false, SMTP_PARAM_UNKNOWN);
	assert_int_equal(rcpt(" NOTIFY=X", false, &p, err), SMTP_PARAM_SYNTAX);
	assert_string_equal(err, "invalid NOTIFY value");
}

static void test_rcpt_orcpt(void **state)
{
	struct smtp_rcpt_params p;
	char err[64];
	char buf[600];

	(void)state;
	assert_int_equal(rcpt(" ORCPT=rfc822;user+40example.com", false, &p,
			      err), SMTP_PARAM_OK);
	assert_true(p.has_orcpt);
	assert_string_equal(p.orcpt, "rfc822;user+40example.com");
	assert_int_equal(p.notify, 0);

	assert_int_equal(rcpt(" NOTIFY=FAILURE ORCPT=rfc822;a@b.example",
			      false, &p, err), SMTP_PARAM_OK);
	assert_int_equal(p.notify, SMTP_NOTIFY_FAILURE);
	assert_string_equal(p.orcpt, "rfc822;a@b.example");
	expect_rcpt(" orcpt=RFC822;a@b", false, SMTP_PARAM_OK);
	expect_rcpt(" ORCPT=utf-8;us\\x{E9}r@b", false, SMTP_PARAM_OK);

	/* UTF-8 octets: only under SMTPUTF8, and only well-formed. */
	expect_rcpt(" ORCPT=utf-8;j\xc3\xb6ran@b.example", true, SMTP_PARAM_OK);
	expect_rcpt(" ORCPT=utf-8;j\xc3\xb6ran@b.example", false,
		    SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=utf-8;j\xc3ran@b.example", true, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=utf-8;\xed\xa0\x80@b.example", true,
		    SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=utf\xc3\xa4;a@b", true, SMTP_PARAM_SYNTAX);

	expect_rcpt(" ORCPT=", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822;", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=;a@b", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822;a+4@b", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822;a+4a@b", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822;a=b", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rf(c);a@b", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" ORCPT=rfc822;a ORCPT=rfc822;b", false,
		    SMTP_PARAM_UNKNOWN);
	assert_int_equal(rcpt(" ORCPT=x", false, &p, err), SMTP_PARAM_SYNTAX);
	assert_string_equal(err, "invalid ORCPT value");

	/* At most 500 octets. */
	memcpy(buf, " ORCPT=rfc822;", 14);
	memset(buf + 14, 'o', 493);
	buf[507] = '\0';
	assert_int_equal(rcpt(buf, false, &p, err), SMTP_PARAM_OK);
	assert_int_equal(strlen(p.orcpt), 500);
	buf[507] = 'o';
	buf[508] = '\0';
	expect_rcpt(buf, false, SMTP_PARAM_SYNTAX);
}

static void test_rcpt_unknown(void **state)
{
	(void)state;
	expect_rcpt(" SIZE=10", false, SMTP_PARAM_UNKNOWN);
	expect_rcpt(" FOO", false, SMTP_PARAM_UNKNOWN);
	expect_rcpt(" NOTIFY=NEVER FOO=1", false, SMTP_PARAM_UNKNOWN);
	expect_rcpt(" =x", false, SMTP_PARAM_SYNTAX);
	expect_rcpt(" NO_TIFY=NEVER", false, SMTP_PARAM_SYNTAX);
}

/* ---- xtext ---- */

static bool xt(const char *s)
{
	return smtp_xtext_valid(s, strlen(s));
}

static void test_xtext(void **state)
{
	(void)state;
	assert_true(xt(""));
	assert_true(xt("abc"));
	assert_true(xt("+2B"));
	assert_true(xt("a+2Bb+3D"));
	assert_true(xt("+00+FF+09"));
	assert_true(xt("!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~"));
	assert_false(xt("+2b"));
	assert_false(xt("+"));
	assert_false(xt("a+"));
	assert_false(xt("+2"));
	assert_false(xt("+G0"));
	assert_false(xt("+ 2B"));
	assert_false(xt("="));
	assert_false(xt("a=b"));
	assert_false(xt("a b"));
	assert_false(xt("a\tb"));
	assert_false(xt("\x7f"));
	assert_false(xt("\xc3\xa4"));
	assert_false(smtp_xtext_valid("a\0b", 3));
	/* Only len octets: "+2" cut from "+2B" is invalid. */
	assert_false(smtp_xtext_valid("+2B", 2));
	assert_true(smtp_xtext_valid("ab=", 2));
}

/* ---- BDAT ---- */

static bool bdat(const char *s, uint64_t *size, bool *last)
{
	return smtp_bdat_parse(s, strlen(s), size, last);
}

static void test_bdat(void **state)
{
	uint64_t size;
	bool last;

	(void)state;
	assert_true(bdat("1234", &size, &last));
	assert_int_equal(size, 1234);
	assert_false(last);
	assert_true(bdat("1234 LAST", &size, &last));
	assert_int_equal(size, 1234);
	assert_true(last);
	assert_true(bdat("0 last", &size, &last));
	assert_int_equal(size, 0);
	assert_true(last);
	assert_true(bdat("7 LaSt", &size, &last));
	assert_true(last);
	assert_true(bdat("18446744073709551615", &size, &last));
	assert_true(size == UINT64_MAX);
	assert_true(bdat("00000000000000000012 LAST", &size, &last));
	assert_int_equal(size, 12);

	assert_false(bdat("", &size, &last));
	assert_false(bdat(" ", &size, &last));
	assert_false(bdat("LAST", &size, &last));
	assert_false(bdat(" 12", &size, &last));
	assert_false(bdat("+12", &size, &last));
	assert_false(bdat("-12", &size, &last));
	assert_false(bdat("12a", &size, &last));
	assert_false(bdat("0x12", &size, &last));
	assert_false(bdat("18446744073709551616", &size, &last));
	assert_false(bdat("000000000000000000012", &size, &last));
	assert_false(bdat("12 ", &size, &last));
	assert_false(bdat("12  LAST", &size, &last));
	assert_false(bdat("12\tLAST", &size, &last));
	assert_false(bdat("12 LAS", &size, &last));
	assert_false(bdat("12 LASTX", &size, &last));
	assert_false(bdat("12 LAST ", &size, &last));
	assert_false(bdat("12 LAST LAST", &size, &last));
	assert_false(bdat("12 13", &size, &last));
	assert_false(bdat("12 FIRST", &size, &last));
	assert_false(smtp_bdat_parse("1\0", 2, &size, &last));
	/* Only len octets. */
	assert_true(smtp_bdat_parse("12 LAST", 2, &size, &last));
	assert_int_equal(size, 12);
	assert_false(last);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_verb_case),
		cmocka_unit_test(test_unknown_verbs),
		cmocka_unit_test(test_arg_spaces),
		cmocka_unit_test(test_bad_octets),
		cmocka_unit_test(test_verb_name),
		cmocka_unit_test(test_path_offset),
		cmocka_unit_test(test_mail_empty),
		cmocka_unit_test(test_mail_all),
		cmocka_unit_test(test_mail_case),
		cmocka_unit_test(test_mail_size),
		cmocka_unit_test(test_mail_body_ret),
		cmocka_unit_test(test_mail_envid_auth),
		cmocka_unit_test(test_mail_unknown_dup),
		cmocka_unit_test(test_mail_keyword_syntax),
		cmocka_unit_test(test_err_truncated),
		cmocka_unit_test(test_rcpt_notify),
		cmocka_unit_test(test_rcpt_orcpt),
		cmocka_unit_test(test_rcpt_unknown),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_bdat),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
