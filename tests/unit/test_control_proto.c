/*
 * Unit tests for control_proto: request parsing (commands, ids, bounds,
 * garbage), value escaping (controls, invalid UTF-8, C1), and the
 * listing format of `fulmar queue list|show`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_proto.h"
#include "proto/smtp_cmd.h"

#define ID "0A1B2C3D4E5F6071"

static int parse(const char *s, struct control_req *req, char *err, size_t errlen)
{
	return control_proto_parse(s, strlen(s), req, err, errlen);
}

static void expect_req(const char *s, enum control_cmd cmd, const char *id)
{
	struct control_req req;
	char err[96] = "";
	if (parse(s, &req, err, sizeof(err)) != 0)
		fail_msg("\"%s\": refused (%s)", s, err);
	assert_int_equal(req.cmd, cmd);
	assert_int_equal(req.has_id, id != NULL);
	if (id)
		assert_string_equal(req.id, id);
}

static void expect_refused(const char *s, size_t len, const char *why)
{
	struct control_req req;
	char err[96] = "";
	if (control_proto_parse(s, len, &req, err, sizeof(err)) == 0)
		fail_msg("\"%.*s\": accepted", (int)len, s);
	assert_string_equal(err, why);
}

static void test_commands(void **state)
{
	(void)state;
	expect_req("LIST", CONTROL_LIST, NULL);
	expect_req("list\r", CONTROL_LIST, NULL);
	expect_req("SHOW " ID, CONTROL_SHOW, ID);
	expect_req("show 0a1b2c3d4e5f6071", CONTROL_SHOW, ID); /* upper-cased */
	expect_req("FLUSH", CONTROL_FLUSH, NULL);
	expect_req("FLUSH " ID, CONTROL_FLUSH, ID);
	expect_req("HOLD " ID, CONTROL_HOLD, ID);
	expect_req("RELEASE " ID, CONTROL_RELEASE, ID);
	expect_req("DELETE " ID, CONTROL_DELETE, ID);
	expect_req("Bounce " ID, CONTROL_BOUNCE, ID);
	assert_string_equal(control_proto_cmd_name(CONTROL_RELEASE), "RELEASE");
}

static void test_refused(void **state)
{
	(void)state;
	expect_refused("", 0, "empty request");
	expect_refused("FROB", 4, "unknown command");
	expect_refused("LISTX", 5, "unknown command");
	expect_refused("LIS", 3, "unknown command");
	expect_refused("HOLD", 4, "a queue id is needed");
	expect_refused("HOLD ", 5, "a queue id is needed");
	expect_refused("LIST " ID, 5 + 16, "this command takes no argument");
	expect_refused("HOLD 0A1B", 9, "not a queue id");
	expect_refused("HOLD " ID "0", 5 + 17, "not a queue id");
	expect_refused("HOLD 0A1B2C3D4E5F607G", 21, "not a queue id");
	expect_refused("HOLD " ID " x", 5 + 18, "not a queue id");
	expect_refused("HOLD  " ID, 6 + 16, "not a queue id");
	expect_refused("LIST\0", 5, "invalid octet in the request");
	expect_refused("LI\x1bST", 5, "invalid octet in the request");
	expect_refused("LIST \xc3\xa9", 7, "invalid octet in the request");
	char big[CONTROL_LINE_MAX + 1];
	memset(big, 'A', sizeof(big));
	expect_refused(big, CONTROL_LINE_MAX, "request line too long");
	/* 511 octets + "\n" fit: refused for what they say, not their size */
	expect_refused(big, CONTROL_LINE_MAX - 1, "unknown command");
}

/* The buffer's contents as a NUL-ended string; b is freed. */
static char *drain(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *out = malloc(len + 1);
	evbuffer_remove(b, out, len);
	out[len] = '\0';
	evbuffer_free(b);
	return out;
}

static char *escaped(const char *s, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	control_proto_escape(b, s, n);
	return drain(b);
}

static void expect_escape(const char *in, size_t n, const char *want)
{
	char *got = escaped(in, n);
	if (strcmp(got, want) != 0)
		fail_msg("escape(%.*s): \"%s\", want \"%s\"", (int)n, in, got, want);
	free(got);
}

static void test_escape(void **state)
{
	(void)state;
	expect_escape("plain text", 10, "plain text");
	expect_escape("", 0, "");
	expect_escape("a\"b\\c", 5, "a\\\"b\\\\c");
	expect_escape("a\nb\rc\x1b[31md", 11, "a\\x0ab\\x0dc\\x1b[31md");
	expect_escape("\x7f\x00", 2, "\\x7f\\x00");
	expect_escape("caf\xc3\xa9", 5, "caf\xc3\xa9");               /* é */
	expect_escape("\xe2\x82\xac", 3, "\xe2\x82\xac");              /* € */
	expect_escape("\xf0\x9f\x90\xa6", 4, "\xf0\x9f\x90\xa6");      /* 🐦 */
	expect_escape("\xc2\x9b", 2, "\\xc2\\x9b");                    /* C1 CSI */
	expect_escape("\xc3", 1, "\\xc3");                             /* cut */
	expect_escape("\xc0\xaf", 2, "\\xc0\\xaf");                    /* overlong */
	expect_escape("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");           /* surrogate */
	expect_escape("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80");  /* > U+10FFFF */
	expect_escape("\x9b", 1, "\\x9b");
}

static char *formatted(const struct envelope *env, bool held, const char *const *why,
		       bool verbose)
{
	struct evbuffer *b = evbuffer_new();
	control_proto_format(b, env, held, why, verbose, 1000100);
	return drain(b);
}

static void make_env(struct envelope *env)
{
	envelope_init(env);
	memcpy(env->id, ID, sizeof(ID));
	env->arrival_us = 1000000LL * 1000000;
	env->content_size = 345;
	assert_int_equal(envelope_set(&env->sender, "s@client.test"), 0);
	assert_int_equal(envelope_add_rcpt(env, "a@example.test", "A@example.test", NULL, 0),
			 0);
	assert_int_equal(envelope_add_rcpt(env, "b@remote.test", "b@remote.test",
					   "rfc822;b@remote.test",
					   SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY),
			 0);
	assert_int_equal(envelope_add_rcpt(env, "c@example.test", "c@example.test", NULL, 0),
			 0);
	env->rcpts[0].state = RCPT_DEFERRED;
	env->rcpts[0].attempts = 2;
	env->rcpts[0].next_attempt = 1000130;
	assert_int_equal(envelope_set(&env->rcpts[0].last_error,
				      "open tmp/x: Permission denied"),
			 0);
	env->rcpts[2].state = RCPT_DELIVERED;
}

static void test_format(void **state)
{
	(void)state;
	struct envelope env;
	make_env(&env);
	const char *why[] = { "backoff", "rate limit", "delivered" };
	char *got = formatted(&env, true, why, false);
	assert_string_equal(got,
		ID "  age=100s size=345 from=<s@client.test> nrcpt=3 [held]\n"
		"    a@example.test  deferred  why=backoff next_attempt_in=30s attempts=2 "
		"last_error=\"open tmp/x: Permission denied\"\n"
		"    b@remote.test  pending  why=\"rate limit\"\n"
		"    c@example.test  delivered\n");
	free(got);

	/* offline: no why, not held */
	got = formatted(&env, false, NULL, false);
	assert_non_null(strstr(got, "nrcpt=3\n"));
	assert_non_null(strstr(got, "    b@remote.test  pending\n"));
	assert_null(strstr(got, "why="));
	free(got);

	got = formatted(&env, false, why, true);
	assert_non_null(strstr(got, "\n  arrival=1970-01-12T13:46:40Z"));
	assert_non_null(strstr(got, "orig=A@example.test"));
	assert_non_null(strstr(got, "orcpt=rfc822;b@remote.test notify=failure,delay\n"));
	free(got);
	envelope_free(&env);
}

static void test_format_escapes(void **state)
{
	(void)state;
	struct envelope env;
	make_env(&env);
	assert_int_equal(envelope_set(&env.sender, "evil\x1b]0;owned\x07@x"), 0);
	assert_int_equal(envelope_set(&env.rcpts[0].last_error,
				      "550 bad\r\n.\r\nQUIT \"x\""),
			 0);
	char *got = formatted(&env, false, NULL, false);
	assert_non_null(strstr(got, "from=<evil\\x1b]0;owned\\x07@x>"));
	assert_non_null(strstr(got, "last_error=\"550 bad\\x0d\\x0a.\\x0d\\x0aQUIT \\\"x\\\"\""));
	/* no control octet but the line ends, and no line that is only "." */
	for (const char *p = got; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			fail_msg("raw control octet 0x%02x in %s", *p, got);
	assert_null(strstr(got, "\n.\n"));
	free(got);
	/* a bad id (cannot come from a checked queue file) starts no "." line */
	memcpy(env.id, ".AAAAAAAAAAAAAAA", QUEUE_ID_LEN + 1);
	got = formatted(&env, false, NULL, false);
	assert_true(strncmp(got, "(bad-id)  ", 10) == 0);
	free(got);
	envelope_free(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_escapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
