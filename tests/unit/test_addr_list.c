/*
 * Unit tests for addr_list: RFC 5322 address lists (display names, quoted
 * strings with commas, comments, groups, source routes, folding, UTF-8,
 * bare local names), the malformed lists that must be refused, the length
 * limit, stopping early, and the header field walk behind `sendmail -t`
 * (folded To:/Cc:/Bcc:, LF and CR LF, where the fields end).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proto/addr_list.h"

/* The addresses found, joined with '|'. */
struct found {
	char buf[4096];
	size_t n;
	int stop_after; /* 0: never stop */
	int count;
};

static int collect(void *arg, const char *addr, size_t len)
{
	struct found *f = arg;
	assert_int_equal(strlen(addr), len); /* NUL-ended, len without it */
	assert_true(f->n + len + 2 < sizeof(f->buf));
	if (f->n > 0)
		f->buf[f->n++] = '|';
	memcpy(f->buf + f->n, addr, len);
	f->n += len;
	f->buf[f->n] = '\0';
	f->count++;
	return f->stop_after && f->count >= f->stop_after;
}

static void expect_list(const char *list, const char *want)
{
	struct found f = { .n = 0 };
	enum addr_list_status st = addr_list_parse(list, strlen(list), collect, &f);
	if (st != ADDR_LIST_OK)
		fail_msg("\"%s\": status %d, want OK", list, (int)st);
	if (strcmp(f.buf, want) != 0)
		fail_msg("\"%s\": got \"%s\", want \"%s\"", list, f.buf, want);
}

static void expect_status(const char *list, enum addr_list_status want)
{
	struct found f = { .n = 0 };
	enum addr_list_status st = addr_list_parse(list, strlen(list), collect, &f);
	if (st != want)
		fail_msg("\"%s\": status %d, want %d", list, (int)st, (int)want);
}

static void test_plain_lists(void **state)
{
	(void)state;
	expect_list("alice@example.test", "alice@example.test");
	expect_list("  alice@example.test  ", "alice@example.test");
	expect_list("a@x.test, b@y.test,c@z.test", "a@x.test|b@y.test|c@z.test");
	expect_list("", "");
	expect_list("   ", "");
	/* obs-addr-list: empty elements */
	expect_list("a@x.test,, ,b@y.test,", "a@x.test|b@y.test");
	/* a bare local name, for the caller to qualify */
	expect_list("root", "root");
	expect_list("root, bob@x.test", "root|bob@x.test");
	/* ';' between addresses outside a group */
	expect_list("a@x.test; b@y.test", "a@x.test|b@y.test");
}

static void test_display_names(void **state)
{
	(void)state;
	expect_list("Alice Example <alice@example.test>", "alice@example.test");
	expect_list("\"Doe, John\" <john@example.test>, bob@example.test",
		    "john@example.test|bob@example.test");
	expect_list("\"a <b@c> d\" <real@example.test>", "real@example.test");
	expect_list("\"quoted \\\" quote, and comma\" <q@example.test>", "q@example.test");
	expect_list("John Q. Public <jqp@example.test>", "jqp@example.test");
	expect_list("<angle@example.test>", "angle@example.test");
	expect_list("=?UTF-8?Q?J=C3=BCrgen?= <j@example.test>", "j@example.test");
	/* raw UTF-8 (RFC 6532) in the name and the address */
	expect_list("J\xc3\xbcrgen <j\xc3\xbcrgen@b\xc3\xbc" "cher.test>",
		    "j\xc3\xbcrgen@b\xc3\xbc" "cher.test");
	/* an unquoted address as display name, as seen in the wild */
	expect_list("bob@example.test <bob@example.test>", "bob@example.test");
	/* an empty angle address is no address */
	expect_list("<>, a@x.test", "a@x.test");
}

static void test_comments(void **state)
{
	(void)state;
	expect_list("alice@example.test (Alice, the first)", "alice@example.test");
	expect_list("(leading) alice@example.test", "alice@example.test");
	expect_list("alice(in)@(the)example.test", "alice@example.test");
	expect_list("a@x.test (nested (comments, here) too), b@y.test", "a@x.test|b@y.test");
	expect_list("a@x.test (escaped \\) paren, still comment), b@y.test",
		    "a@x.test|b@y.test");
	expect_list("Name (c) <n@x.test> (after)", "n@x.test");
	/* obs-local-part: CFWS around the dots goes */
	expect_list("john . doe @ example . test", "john.doe@example.test");
}

static void test_groups(void **state)
{
	(void)state;
	expect_list("undisclosed-recipients:;", "");
	expect_list("undisclosed-recipients: ;", "");
	expect_list("undisclosed-recipients:", ""); /* no ';': let pass */
	expect_list("team: a@x.test, B <b@y.test>;", "a@x.test|b@y.test");
	expect_list("team: a@x.test;, c@z.test", "a@x.test|c@z.test");
	expect_list("first: a@x.test; , second: b@y.test;", "a@x.test|b@y.test");
	expect_list("\"The Team\": a@x.test;", "a@x.test");
	expect_status("a: b: c@x.test;;", ADDR_LIST_SYNTAX); /* groups do not nest */
	expect_status(": a@x.test;", ADDR_LIST_SYNTAX);      /* a group needs a name */
	expect_status("g: a@x.test; b@y.test", ADDR_LIST_SYNTAX);
}

static void test_quoted_local_and_literals(void **state)
{
	(void)state;
	expect_list("\"john doe\"@example.test", "\"john doe\"@example.test");
	expect_list("<\"a,b\"@example.test>", "\"a,b\"@example.test");
	expect_list("user@[192.0.2.1]", "user@[192.0.2.1]");
	expect_list("<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]");
	/* a source route is ignored */
	expect_list("<@relay.test,@other.test:user@example.test>", "user@example.test");
}

static void test_folding(void **state)
{
	(void)state;
	expect_list("a@x.test,\r\n b@y.test,\n\tc@z.test", "a@x.test|b@y.test|c@z.test");
	expect_list("\"Long\r\n Name\" <a@x.test>", "a@x.test");
	/* folding inside a quoted local part is removed */
	expect_list("\"a\r\n b\"@x.test", "\"a b\"@x.test");
}

static void test_malformed(void **state)
{
	(void)state;
	expect_status("Alice Smith", ADDR_LIST_SYNTAX);   /* a name, no address */
	expect_status("a@x.test b@y.test", ADDR_LIST_SYNTAX);
	expect_status("<a@x.test", ADDR_LIST_SYNTAX);
	expect_status("a@x.test>", ADDR_LIST_SYNTAX);
	expect_status("Name <a@x.test> junk", ADDR_LIST_SYNTAX);
	expect_status("\"unterminated@x.test", ADDR_LIST_SYNTAX);
	expect_status("a@x.test (unterminated comment", ADDR_LIST_SYNTAX);
	expect_status("a@[192.0.2.1", ADDR_LIST_SYNTAX);
	expect_status("a@", ADDR_LIST_SYNTAX);
	expect_status("@x.test", ADDR_LIST_SYNTAX);
	expect_status(".a@x.test", ADDR_LIST_SYNTAX);
	expect_status("a.@x.test", ADDR_LIST_SYNTAX);
	expect_status("a@x..test", ADDR_LIST_SYNTAX);
	expect_status("a@x.test.", ADDR_LIST_SYNTAX);
	expect_status("a@@x.test", ADDR_LIST_SYNTAX);
	expect_status("a@x.test)", ADDR_LIST_SYNTAX);
	expect_status("a\x01@x.test", ADDR_LIST_SYNTAX);
	expect_status("<a@x.test", ADDR_LIST_SYNTAX);
	expect_status("<<a@x.test>>", ADDR_LIST_SYNTAX);
	expect_status("<@route.test a@x.test>", ADDR_LIST_SYNTAX);
	expect_status("a@[1.2.3.4]x", ADDR_LIST_SYNTAX);
	/* what came before an error was reported; the status says the rest */
	struct found f = { .n = 0 };
	const char *l = "ok@x.test, bad bad";
	assert_int_equal(addr_list_parse(l, strlen(l), collect, &f), ADDR_LIST_SYNTAX);
	assert_string_equal(f.buf, "ok@x.test");
}

static void test_too_long(void **state)
{
	(void)state;
	char list[600];
	memset(list, 'a', 250);
	memcpy(list + 250, "@x.test", 8); /* 257 octets */
	expect_status(list, ADDR_LIST_TOO_LONG);
	memcpy(list + 249, "@x.test", 8); /* 256 octets: the maximum */
	struct found f = { .n = 0 };
	assert_int_equal(addr_list_parse(list, strlen(list), collect, &f), ADDR_LIST_OK);
	assert_int_equal(f.n, ADDR_LIST_ADDR_MAX);
}

static void test_stop(void **state)
{
	(void)state;
	struct found f = { .n = 0, .stop_after = 2 };
	const char *l = "a@x.test, b@x.test, c@x.test";
	assert_int_equal(addr_list_parse(l, strlen(l), collect, &f), ADDR_LIST_STOPPED);
	assert_string_equal(f.buf, "a@x.test|b@x.test");
}

/* (ptr,len): the parser must not read past len. */
static void test_bounded(void **state)
{
	(void)state;
	const char *l = "a@x.test, b@y.test";
	struct found f = { .n = 0 };
	assert_int_equal(addr_list_parse(l, 8, collect, &f), ADDR_LIST_OK);
	assert_string_equal(f.buf, "a@x.test");
	/* a quote or comment cut by len is unterminated */
	expect_status("\"", ADDR_LIST_SYNTAX);
	assert_int_equal(addr_list_parse("(abc) a@x", 3, collect, &f), ADDR_LIST_SYNTAX);
}

static void test_fields(void **state)
{
	(void)state;
	const char *h = "Subject: hi\r\n"
			"To: a@x.test,\r\n"
			"  b@y.test\r\n"
			"X-Spaced : v\r\n"
			"Empty:\r\n"
			"\r\n"
			"Body: not a field\r\n";
	size_t len = strlen(h), pos = 0;
	struct addr_list_field f;
	assert_true(addr_list_next_field(h, len, &pos, &f));
	assert_true(addr_list_field_is(&f, "SUBJECT"));
	assert_int_equal(f.value_len, 3);
	assert_memory_equal(f.value, " hi", 3);
	assert_int_equal(f.start, 0);
	assert_int_equal(f.end, 13);
	assert_true(addr_list_next_field(h, len, &pos, &f));
	assert_true(addr_list_field_is(&f, "to"));
	assert_false(addr_list_field_is(&f, "t"));
	assert_int_equal(f.value_len, strlen(" a@x.test,\r\n  b@y.test"));
	assert_memory_equal(f.value, " a@x.test,\r\n  b@y.test", f.value_len);
	assert_int_equal(f.end, 13 + strlen("To: a@x.test,\r\n  b@y.test\r\n"));
	assert_true(addr_list_next_field(h, len, &pos, &f));
	assert_true(addr_list_field_is(&f, "x-spaced"));
	assert_true(addr_list_next_field(h, len, &pos, &f));
	assert_true(addr_list_field_is(&f, "empty"));
	assert_int_equal(f.value_len, 0);
	assert_false(addr_list_next_field(h, len, &pos, &f)); /* the empty line */
	assert_memory_equal(h + pos, "\r\nBody", 6);
	assert_int_equal(addr_list_header_len(h, len), pos);

	/* LF line ends, a last field without a line end */
	const char *g = "A: 1\nB: 2\n 3";
	pos = 0;
	assert_true(addr_list_next_field(g, strlen(g), &pos, &f));
	assert_true(addr_list_next_field(g, strlen(g), &pos, &f));
	assert_memory_equal(f.value, " 2\n 3", f.value_len);
	assert_int_equal(f.end, strlen(g));
	assert_false(addr_list_next_field(g, strlen(g), &pos, &f));

	/* where the fields stop: a line that is no field */
	assert_int_equal(addr_list_header_len("hello world\n", 12), 0);
	assert_int_equal(addr_list_header_len("From me@x Mon\nA: b\n", 19), 0);
	assert_int_equal(addr_list_header_len("A: b\nno colon here\n", 19), 5);
	assert_int_equal(addr_list_header_len(" continuation first\n", 20), 0);
	assert_int_equal(addr_list_header_len("", 0), 0);
}

static void test_recipients(void **state)
{
	(void)state;
	const char *h = "From: Sender <s@x.test>\n"
			"To: \"Doe, Jane\" <jane@example.test>,\n"
			"\tbob@example.test (Bob)\n"
			"Subject: to: not@this.test\n"
			"cc: undisclosed-recipients:;\n"
			"CC: team: carol@example.test;\n"
			"Reply-To: not@this.test\n"
			"Bcc: hidden@example.test\n"
			"Resent-To: not@this.test\n";
	struct found f = { .n = 0 };
	assert_int_equal(addr_list_recipients(h, strlen(h), collect, &f), ADDR_LIST_OK);
	assert_string_equal(f.buf, "jane@example.test|bob@example.test|carol@example.test|"
				   "hidden@example.test");
	/* fields after the end of the header section are not read */
	const char *h2 = "To: a@x.test\n\nCc: b@x.test\n";
	struct found f2 = { .n = 0 };
	assert_int_equal(addr_list_recipients(h2, strlen(h2), collect, &f2), ADDR_LIST_OK);
	assert_string_equal(f2.buf, "a@x.test");
	/* a bad list is reported */
	const char *h3 = "To: a@x.test\nCc: Just A Name\n";
	struct found f3 = { .n = 0 };
	assert_int_equal(addr_list_recipients(h3, strlen(h3), collect, &f3), ADDR_LIST_SYNTAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_lists),
		cmocka_unit_test(test_display_names),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_quoted_local_and_literals),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_recipients),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
