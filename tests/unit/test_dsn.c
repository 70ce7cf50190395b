/*
 * Unit tests for dsn: the headers of the report, the multipart/report
 * structure (boundary delimiters, the three parts in order), the
 * per-message and per-recipient status fields, ORCPT xtext decoding,
 * ENVID echoed, RET=HDRS cutting the body, an original without a final
 * CR LF, the subject by worst action, the boundary varied away from the
 * content, and the safety of inserted values: a diagnostic or address
 * carrying CR LF cannot start a header line, 8-bit and control octets
 * become '?', and every line of every report ends in CR LF and is at most
 * 998 octets.
 *
 * With FULMAR_DSN_DUMP=PATH in the environment, test_dump also writes a
 * sample report to PATH (for checking it with an outside MIME parser).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/dsn.h"

#define NOW INT64_C(1700000000)  /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define ARRIVAL (NOW - 3600)

static const char original[] =
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.net\r\n"
	"Subject: hello\r\n"
	"\r\n"
	"Body line one.\r\n"
	"Body line two.\r\n";

static struct dsn_rcpt one_failed(void)
{
	struct dsn_rcpt rc = {
		.final_rcpt = "bob@example.net",
		.orcpt = NULL,
		.action = DSN_FAILED,
		.status = "5.1.1",
		.remote_mta = "mx.example.net",
		.diagnostic = "550 5.1.1 <bob@example.net>: no such user",
		.last_attempt = NOW - 10,
		.will_retry_until = 0,
	};
	return rc;
}

static struct dsn_report report(const struct dsn_rcpt *rcpts, size_t n)
{
	struct dsn_report r = {
		.reporting_mta = "mail.example.org",
		.queue_id = "4F2A9C0B17",
		.envid = NULL,
		.sender = "alice@example.org",
		.arrival = ARRIVAL,
		.now = NOW,
		.headers_only = false,
		.rcpts = rcpts,
		.nrcpts = n,
		.original = original,
		.original_len = sizeof(original) - 1,
	};
	return r;
}

/* Every line ends in CR LF (no bare CR or LF, no NUL) and has at most
 * 998 octets before its CR LF; the text ends with CR LF. */
static void assert_lines_ok(const char *p, size_t len)
{
	size_t col = 0;
	assert_true(len >= 2);
	assert_int_equal(p[len], '\0');
	for (size_t i = 0; i < len; i++) {
		assert_int_not_equal(p[i], '\0');
		if (p[i] == '\r') {
			assert_true(i + 1 < len && p[i + 1] == '\n');
			assert_true(col <= 998);
			col = 0;
			i++;
			continue;
		}
		assert_int_not_equal(p[i], '\n');
		col++;
	}
	assert_int_equal(col, 0);
}

/* Builds and checks the line discipline; the caller frees. */
static char *build(const struct dsn_report *r, size_t *len)
{
	char *p = dsn_build(r, len);
	assert_non_null(p);
	assert_int_equal(strlen(p), *len);
	assert_lines_ok(p, *len);
	return p;
}

/* Is there a line that is exactly s (s without CR LF)? */
static bool has_line(const char *p, const char *s)
{
	size_t n = strlen(s);
	for (const char *q = p; (q = strstr(q, s)) != NULL; q++)
		if ((q == p || q[-1] == '\n') && q[n] == '\r' && q[n + 1] == '\n')
			return true;
	return false;
}

/* Is there a line that starts with s? */
static bool has_line_prefix(const char *p, const char *s)
{
	for (const char *q = p; (q = strstr(q, s)) != NULL; q++)
		if (q == p || q[-1] == '\n')
			return true;
	return false;
}

/* The end of the top-level header section. */
static const char *body_of(const char *p)
{
	const char *e = strstr(p, "\r\n\r\n");
	assert_non_null(e);
	return e + 4;
}

/* The boundary parameter of the top-level Content-Type. */
static void get_boundary(const char *p, char *out, size_t len)
{
	const char *b = strstr(p, "boundary=\"");
	assert_non_null(b);
	assert_true(b < body_of(p));
	b += strlen("boundary=\"");
	const char *e = strchr(b, '"');
	assert_non_null(e);
	assert_true((size_t)(e - b) < len && e - b > 0 && e - b <= 70);
	memcpy(out, b, (size_t)(e - b));
	out[e - b] = '\0';
}

/* Splits the body on the boundary: the parts (each from after its
 * delimiter line to the CR LF before the next delimiter), checking there
 * are exactly three and a close delimiter ending the text. */
struct part {
	const char *p;
	size_t len;
};

static void get_parts(const char *msg, size_t msglen, struct part parts[3])
{
	char b[80];
	char delim[90];
	char close[90];
	get_boundary(msg, b, sizeof(b));
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", b);
	snprintf(close, sizeof(close), "\r\n--%s--\r\n", b);
	const char *q = body_of(msg);
	for (int i = 0; i < 3; i++) {
		const char *d = strstr(q - 2, delim);
		assert_non_null(d);
		parts[i].p = d + strlen(delim);
		if (i > 0)
			parts[i - 1].len = (size_t)(d - parts[i - 1].p);
		q = parts[i].p;
	}
	assert_null(strstr(q - 2, delim));
	const char *c = strstr(q - 2, close);
	assert_non_null(c);
	assert_ptr_equal(c + strlen(close), msg + msglen);
	parts[2].len = (size_t)(c - parts[2].p);
}

/* A part's content (after its header section), NUL-ended copy. */
static char *part_content(const struct part *pt)
{
	char *s = malloc(pt->len + 1);
	assert_non_null(s);
	memcpy(s, pt->p, pt->len);
	s[pt->len] = '\0';
	char *e = strstr(s, "\r\n\r\n");
	assert_non_null(e);
	memmove(s, e + 4, strlen(e + 4) + 1);
	return s;
}

static bool part_has_header(const struct part *pt, const char *line)
{
	char *s = malloc(pt->len + 1);
	assert_non_null(s);
	memcpy(s, pt->p, pt->len);
	s[pt->len] = '\0';
	char *e = strstr(s, "\r\n\r\n");
	assert_non_null(e);
	e[2] = '\0';
	bool ok = has_line(s, line);
	free(s);
	return ok;
}

static void test_headers(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	size_t len;
	char *m = build(&r, &len);
	const char *body = body_of(m);
	static const char from[] =
		"From: Mail Delivery System <MAILER-DAEMON@mail.example.org>\r\n";
	assert_true(strncmp(m, from, sizeof(from) - 1) == 0);
	assert_true(has_line(m, "To: <alice@example.org>"));
	assert_true(has_line(m, "Subject: Undelivered Mail Returned to Sender"));
	assert_true(has_line(m, "Date: Tue, 14 Nov 2023 22:13:20 +0000"));
	assert_true(has_line(m, "Message-ID: <dsn.4F2A9C0B17.1700000000@mail.example.org>"));
	assert_true(has_line(m, "Auto-Submitted: auto-replied"));
	assert_true(has_line(m, "MIME-Version: 1.0"));
	assert_true(has_line(m, "Content-Type: multipart/report; report-type=delivery-status;"));
	assert_true(has_line(m, "Content-Transfer-Encoding: 7bit"));
	/* all of them in the top-level header section */
	assert_true(strstr(m, "Auto-Submitted:") < body);
	assert_true(strstr(m, "Message-ID:") < body);
	free(m);
}

static void test_three_parts(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	size_t len;
	char *m = build(&r, &len);
	struct part pt[3];
	get_parts(m, len, pt);
	assert_true(part_has_header(&pt[0], "Content-Type: text/plain; charset=us-ascii"));
	assert_true(part_has_header(&pt[1], "Content-Type: message/delivery-status"));
	assert_true(part_has_header(&pt[2], "Content-Type: message/rfc822"));

	char *human = part_content(&pt[0]);
	assert_true(has_line(human, "This is the mail system at host mail.example.org."));
	assert_non_null(strstr(human, "I'm sorry to have to inform you"));
	/* wrapped at 76 on a space, the rest indented */
	assert_true(has_line(human, "<bob@example.net>: host mx.example.net said: 550 5.1.1 "
				    "<bob@example.net>: no"));
	assert_true(has_line(human, "    such user"));
	free(human);
	free(m);
}

static void test_status_fields(void **state)
{
	(void)state;
	struct dsn_rcpt rc[2] = { one_failed(), one_failed() };
	rc[1].final_rcpt = "carol@example.com";
	rc[1].status = "5.2.2";
	rc[1].remote_mta = NULL;
	rc[1].diagnostic = NULL;
	rc[1].last_attempt = 0;
	struct dsn_report r = report(rc, 2);
	size_t len;
	char *m = build(&r, &len);
	struct part pt[3];
	get_parts(m, len, pt);
	char *st = part_content(&pt[1]);
	const char *want =
		"Reporting-MTA: dns; mail.example.org\r\n"
		"X-Fulmar-Queue-ID: 4F2A9C0B17\r\n"
		"Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; bob@example.net\r\n"
		"Action: failed\r\n"
		"Status: 5.1.1\r\n"
		"Remote-MTA: dns; mx.example.net\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n"
		"Last-Attempt-Date: Tue, 14 Nov 2023 22:13:10 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; carol@example.com\r\n"
		"Action: failed\r\n"
		"Status: 5.2.2\r\n";
	assert_string_equal(st, want);
	free(st);

	char *human = part_content(&pt[0]);
	assert_true(has_line(human, "<carol@example.com>: mailbox full (5.2.2)"));
	free(human);
	free(m);
}

static void test_orcpt_and_envid(void **state)
{
	(void)state;
	struct dsn_rcpt rc[5] = { one_failed(), one_failed(), one_failed(), one_failed(),
				  one_failed() };
	rc[0].orcpt = "rfc822;bob+2Bfilter+3Dx@example.net";  /* bob+filter=x@ */
	rc[1].orcpt = "RFC822;b+2bc@example.net";              /* lower-case hex */
	rc[2].orcpt = "rfc822;bob+4@example.net";              /* malformed: as is */
	rc[3].orcpt = "x-local;abc+41";                        /* other type: as is */
	rc[4].orcpt = "rfc822;evil+0D+0ABcc:+20x@example.net"; /* decodes CR LF */
	struct dsn_report r = report(rc, 5);
	r.envid = "QQ314159+2Bx";
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Original-Envelope-Id: QQ314159+2Bx"));
	assert_true(has_line(m, "Original-Recipient: rfc822;bob+filter=x@example.net"));
	assert_true(has_line(m, "Original-Recipient: rfc822;b+c@example.net"));
	assert_true(has_line(m, "Original-Recipient: rfc822;bob+4@example.net"));
	assert_true(has_line(m, "Original-Recipient: x-local;abc+41"));
	assert_true(has_line(m, "Original-Recipient: rfc822;evil Bcc: x@example.net"));
	assert_false(has_line_prefix(m, "Bcc:"));
	/* Original-Recipient follows Final-Recipient */
	const char *f = strstr(m, "Final-Recipient:");
	assert_true(f < strstr(m, "Original-Recipient:"));
	free(m);
}

/* Part 3 of the report on r is exactly want. */
static void assert_returned(const struct dsn_report *r, const char *want)
{
	size_t len;
	char *m = build(r, &len);
	struct part pt[3];
	get_parts(m, len, pt);
	assert_true(part_has_header(&pt[2], r->headers_only ?
					    "Content-Type: text/rfc822-headers" :
					    "Content-Type: message/rfc822"));
	char *ret = part_content(&pt[2]);
	assert_string_equal(ret, want);
	free(ret);
	free(m);
}

/* What part 3 carries: all of the original (RET=FULL) or its header
 * section (RET=HDRS), ending in CR LF, with the delimiter's own CR LF
 * after it. */
static void test_returned_original(void **state)
{
	(void)state;
	static const struct {
		bool headers_only;
		const char *original; /* NULL: none */
		const char *want;
	} cases[] = {
		{ false, original, original },
		{ true, original,
		  "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\n" },
		/* no empty line: all of it is the header section */
		{ true, "Subject: x\r\nX-Y: z\r\n", "Subject: x\r\nX-Y: z\r\n" },
		/* an empty header section */
		{ true, "\r\nbody\r\n", "" },
		/* no final CR LF: one is added */
		{ false, "Subject: x\r\n\r\nlast line", "Subject: x\r\n\r\nlast line\r\n" },
		{ true, "Subject: x", "Subject: x\r\n" },
		{ false, "", "" },
		{ false, NULL, "" },
		/* bare LF and CR are line ends (the bare CR ends the headers) */
		{ false, "Subject: x\nX-A: y\r\rbody", "Subject: x\r\nX-A: y\r\n\r\nbody\r\n" },
		{ true, "Subject: x\nX-A: y\r\rbody", "Subject: x\r\nX-A: y\r\n" },
	};
	struct dsn_rcpt rc = one_failed();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_report r = report(&rc, 1);
		r.headers_only = cases[i].headers_only;
		r.original = cases[i].original;
		r.original_len = cases[i].original ? strlen(cases[i].original) : 0;
		assert_returned(&r, cases[i].want);
	}

	/* RET=HDRS: nothing of the body anywhere in the report */
	struct dsn_report r = report(&rc, 1);
	r.headers_only = true;
	size_t len;
	char *m = build(&r, &len);
	assert_null(strstr(m, "Body line"));
	free(m);
}

static void test_injection(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	rc.diagnostic = "550 no\r\nBcc: x@evil.example\r\n\r\nbody";
	rc.remote_mta = "mx.example.net\r\nBcc: y@evil.example";
	rc.final_rcpt = "bob@example.net\nBcc: z@evil.example";
	rc.status = "5.1.1\r\nBcc: s@evil.example";
	struct dsn_report r = report(&rc, 1);
	r.sender = "alice@example.org>\r\nBcc: w@evil.example";
	r.reporting_mta = "mail.example.org\r\nBcc: v@evil.example";
	r.queue_id = "ID\r\nBcc: u@evil.example";
	r.envid = "E\rBcc: t@evil.example";
	size_t len;
	char *m = build(&r, &len);
	assert_false(has_line_prefix(m, "Bcc:"));
	assert_true(has_line(m, "Diagnostic-Code: smtp; 550 no Bcc: x@evil.example body"));
	assert_true(has_line(m, "Status: 5.0.0")); /* invalid status replaced */
	assert_true(has_line(m, "Original-Envelope-Id: E Bcc: t@evil.example"));
	assert_true(has_line(m, "Final-Recipient: rfc822; bob@example.net Bcc: z@evil.example"));
	assert_true(has_line(m, "Remote-MTA: dns; mx.example.net Bcc: y@evil.example"));
	assert_true(has_line(m, "X-Fulmar-Queue-ID: ID Bcc: u@evil.example"));
	/* where a host name or an atom belongs, only their characters */
	assert_true(has_line(m, "From: Mail Delivery System "
				"<MAILER-DAEMON@mail.example.orgBccvevil.example>"));
	assert_true(has_line(m, "Reporting-MTA: dns; mail.example.orgBccvevil.example"));
	assert_true(has_line(m, "Message-ID: <dsn.IDBccuevilexample.1700000000@"
				"mail.example.orgBccvevil.example>"));
	/* the human-readable part indents the continuation of a wrapped line */
	assert_true(has_line(m, "    y@evil.example said: 550 no Bcc: x@evil.example body"));
	struct part pt[3];
	get_parts(m, len, pt);
	free(m);
}

static void test_8bit_and_controls(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	rc.diagnostic = "550 caf\xc3\xa9 \x01\x7f\x1b[2J\tend";
	struct dsn_report r = report(&rc, 1);
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Diagnostic-Code: smtp; 550 caf?? ???[2J end"));
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)m[i] < 0x80);
	free(m);
}

static void test_long_values(void **state)
{
	(void)state;
	static char word[5001];
	static char words[6001];
	static char addr[2001];
	memset(word, 'w', sizeof(word) - 1);
	for (size_t i = 0; i < sizeof(words) - 1; i++)
		words[i] = i % 7 == 6 ? ' ' : 'a';
	memset(addr, 'a', sizeof(addr) - 1);
	addr[1000] = '@';
	struct dsn_rcpt rc[3] = { one_failed(), one_failed(), one_failed() };
	rc[0].diagnostic = word;
	rc[1].diagnostic = words;
	rc[2].final_rcpt = addr;
	rc[2].orcpt = addr;
	rc[2].remote_mta = addr;
	struct dsn_report r = report(rc, 3);
	r.sender = addr;
	r.envid = addr;
	r.reporting_mta = addr;
	size_t len;
	char *m = build(&r, &len); /* lines checked in build() */
	struct part pt[3];
	get_parts(m, len, pt);
	/* folded at spaces, short continuation lines */
	char *st = part_content(&pt[1]);
	const char *d = strstr(st, "Diagnostic-Code: smtp; aaaaaa aaaaaa");
	assert_non_null(d);
	assert_true(strstr(d, "\r\n") - d <= 78);
	assert_true(strstr(d, "\r\n")[2] == ' ');
	free(st);
	free(m);
}

/* A line of the original longer than 998 octets is broken with CR LF SP. */
static void test_original_long_line(void **state)
{
	(void)state;
	static char orig[3000];
	static char want[3100];
	memcpy(orig, "Subject: x\r\n\r\n", 14);
	memset(orig + 14, 'b', 2500);
	memcpy(want, orig, 14 + 998);
	memcpy(want + 14 + 998, "\r\n ", 3);
	memset(want + 14 + 998 + 3, 'b', 997);
	memcpy(want + 14 + 998 + 3 + 997, "\r\n ", 3);
	memset(want + 14 + 998 + 3 + 997 + 3, 'b', 2500 - 998 - 997);
	strcat(want, "\r\n");
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	r.original = orig;
	r.original_len = strlen(orig);
	assert_returned(&r, want); /* lines checked in build() */
}

static void test_subjects_by_action(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	rc.action = DSN_DELAYED;
	rc.status = "4.4.1";
	rc.diagnostic = NULL;
	rc.remote_mta = NULL;
	rc.will_retry_until = NOW + 5 * 86400;
	struct dsn_report r = report(&rc, 1);
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Subject: Delayed Mail (still being retried)"));
	assert_true(has_line(m, "Action: delayed"));
	assert_true(has_line(m, "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000"));
	assert_true(has_line(m, "Sun, 19 Nov 2023 22:13:20 +0000."));
	assert_non_null(strstr(m, "THIS IS A WARNING ONLY"));
	assert_null(strstr(m, "I'm sorry"));
	assert_true(has_line(m, "<bob@example.net>: no answer from host (4.4.1)"));
	assert_true(has_line(m, "Content-Description: Delayed Message"));
	free(m);

	rc.action = DSN_DELIVERED;
	rc.status = "2.0.0";
	m = build(&r, &len);
	assert_true(has_line(m, "Subject: Successful Mail Delivery Report"));
	assert_true(has_line(m, "Action: delivered"));
	assert_null(strstr(m, "Will-Retry-Until"));
	assert_non_null(strstr(m, "successfully delivered"));
	assert_true(has_line(m, "<bob@example.net>: delivered to mailbox"));
	free(m);

	rc.action = DSN_RELAYED;
	rc.remote_mta = "old.example.net";
	rc.diagnostic = "250 ok queued";
	m = build(&r, &len);
	assert_true(has_line(m, "Subject: Successful Mail Delivery Report"));
	assert_true(has_line(m, "Action: relayed"));
	assert_true(has_line(m, "<bob@example.net>: delivery via old.example.net: 250 ok queued"));
	free(m);

	/* mixed: the worst action names the report, headings per group */
	struct dsn_rcpt mix[3] = { one_failed(), one_failed(), one_failed() };
	mix[0].action = DSN_DELIVERED;
	mix[0].status = "2.0.0";
	mix[1].action = DSN_DELAYED;
	mix[1].status = "4.2.2";
	mix[2].action = DSN_FAILED;
	r = report(mix, 3);
	m = build(&r, &len);
	assert_true(has_line(m, "Subject: Undelivered Mail Returned to Sender"));
	assert_true(has_line(m, "Could not be delivered:"));
	assert_true(has_line(m, "Delayed, still being retried:"));
	assert_true(has_line(m, "Delivered:"));
	assert_true(has_line(m, "The mail system will keep trying to deliver it."));
	free(m);
}

static void test_boundary_avoids_content(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	size_t len;
	char *m = build(&r, &len);
	char b0[80];
	get_boundary(m, b0, sizeof(b0));
	assert_string_equal(b0, "=_4F2A9C0B17.1700000000");
	free(m);

	/* the original carries the first choice, the diagnostic the second */
	char orig[400];
	snprintf(orig, sizeof(orig), "Subject: x\r\n\r\n--%s\r\n--%s--\r\n", b0, b0);
	char diag[200];
	snprintf(diag, sizeof(diag), "550 --%s.1--", b0);
	r.original = orig;
	r.original_len = strlen(orig);
	rc.diagnostic = diag;
	m = build(&r, &len);
	char b1[80];
	get_boundary(m, b1, sizeof(b1));
	assert_string_equal(b1, "=_4F2A9C0B17.1700000000.2");
	free(m);
	assert_returned(&r, orig); /* three parts: the content did not split */
}

static void test_8bit_original(void **state)
{
	(void)state;
	static const char orig[] = "Subject: x\r\n\r\ncaf\xc3\xa9\r\n";
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	r.original = orig;
	r.original_len = sizeof(orig) - 1;
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Content-Transfer-Encoding: 8bit"));
	assert_false(has_line(m, "Content-Transfer-Encoding: 7bit"));
	free(m);

	r.headers_only = true; /* the 8-bit octets were in the body */
	m = build(&r, &len);
	assert_false(has_line(m, "Content-Transfer-Encoding: 8bit"));
	free(m);
}

static void test_dates(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	r.now = 0;
	r.arrival = INT64_C(951782400); /* a leap day */
	rc.last_attempt = INT64_C(-5);  /* clamped */
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Date: Thu, 01 Jan 1970 00:00:00 +0000"));
	assert_true(has_line(m, "Arrival-Date: Tue, 29 Feb 2000 00:00:00 +0000"));
	assert_true(has_line(m, "Last-Attempt-Date: Thu, 01 Jan 1970 00:00:00 +0000"));
	free(m);
}

static void test_address_literal_host(void **state)
{
	(void)state;
	struct dsn_rcpt rc = one_failed();
	struct dsn_report r = report(&rc, 1);
	r.reporting_mta = "[IPv6:2001:db8::1]";
	size_t len;
	char *m = build(&r, &len);
	assert_true(has_line(m, "Reporting-MTA: dns; [IPv6:2001:db8::1]"));
	assert_true(has_line(m, "Message-ID: <dsn.4F2A9C0B17.1700000000@[IPv6:2001:db8::1]>"));
	free(m);

	r.reporting_mta = NULL;
	r.queue_id = NULL;
	m = build(&r, &len);
	assert_true(has_line(m, "Message-ID: <dsn.0.1700000000@localhost>"));
	free(m);
}

static void test_no_recipients(void **state)
{
	(void)state;
	struct dsn_report r = report(NULL, 0);
	size_t len;
	char *m = build(&r, &len);
	struct part pt[3];
	get_parts(m, len, pt);
	assert_null(strstr(m, "Final-Recipient"));
	free(m);
}

/* A sample report, written to $FULMAR_DSN_DUMP when set. */
static void test_dump(void **state)
{
	(void)state;
	struct dsn_rcpt rc[2] = { one_failed(), one_failed() };
	rc[0].orcpt = "rfc822;bob+2Bx@example.net";
	rc[1].final_rcpt = "dave@example.com";
	rc[1].action = DSN_DELAYED;
	rc[1].status = "4.4.1";
	rc[1].remote_mta = "mx.example.com";
	rc[1].diagnostic = "connection timed out";
	rc[1].will_retry_until = NOW + 4 * 86400;
	struct dsn_report r = report(rc, 2);
	r.envid = "ENV+2B1";
	size_t len;
	char *m = build(&r, &len);
	const char *path = getenv("FULMAR_DSN_DUMP");
	if (path != NULL && path[0] != '\0') {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(m, 1, len, f), len);
		assert_int_equal(fclose(f), 0);
	}
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_three_parts),
		cmocka_unit_test(test_status_fields),
		cmocka_unit_test(test_orcpt_and_envid),
		cmocka_unit_test(test_returned_original),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_8bit_and_controls),
		cmocka_unit_test(test_long_values),
		cmocka_unit_test(test_original_long_line),
		cmocka_unit_test(test_subjects_by_action),
		cmocka_unit_test(test_boundary_avoids_content),
		cmocka_unit_test(test_8bit_original),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_address_literal_host),
		cmocka_unit_test(test_no_recipients),
		cmocka_unit_test(test_dump),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
