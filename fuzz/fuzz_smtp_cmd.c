/*
 * Fuzz target for smtp_cmd (libFuzzer): one SMTP command line, without its
 * CRLF, through everything smtp_session does with it: smtp_cmd_parse, then
 * by verb MAIL/RCPT's path offset and (past the path, as the session cuts
 * it with smtp_addr_parse) the parameters, BDAT's argument; the whole
 * argument is also tried as parameters of both kinds, as xtext and as a
 * BDAT argument, whatever the verb.
 * Checks:
 *   - the argument lies inside the line, has no trailing blank, and a line
 *     with a control octet (but HT) is an unknown verb with bad_octet set;
 *     the verb's name, parsed back, gives the verb;
 *   - parsing is the same on a copy with no NUL after it (no read past len);
 *   - OK parameters hold to the header: values NUL-ended within their
 *     arrays, valid xtext (ENVID, AUTH), NOTIFY bits known and NEVER alone,
 *     ORCPT "type;xtext"; printing them back in canonical form and parsing
 *     again gives the same values (round trip); an error leaves a reason;
 *   - SIZE above a limit gives SIZE_LIMIT exactly when the syntax is fine;
 *   - BDAT: the size printed back in decimal (with " LAST") parses again to
 *     the same size and flag.
 *
 * Build: scripts/fuzz.sh --build-only smtp_cmd
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_addr.h"
#include "proto/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static bool nul_ended_within(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void check_mail(const char *s, size_t len)
{
	struct smtp_mail_params p, q;
	char err[64];
	enum smtp_param_status st = smtp_mail_params_parse(s, len, 0, &p, err, sizeof(err));
	CHECK(nul_ended_within(err, sizeof(err)));
	if (st != SMTP_PARAM_OK) {
		CHECK(st == SMTP_PARAM_SYNTAX || st == SMTP_PARAM_UNKNOWN);
		CHECK(err[0] != '\0');
		return;
	}
	CHECK(p.body <= SMTP_BODY_8BITMIME && p.ret <= SMTP_RET_HDRS);
	CHECK(nul_ended_within(p.envid, sizeof(p.envid)));
	CHECK(nul_ended_within(p.auth, sizeof(p.auth)));
	CHECK(!p.has_envid || (p.envid[0] && smtp_xtext_valid(p.envid, strlen(p.envid))));
	CHECK(!p.has_auth || (p.auth[0] && smtp_xtext_valid(p.auth, strlen(p.auth))));

	/* A limit below the size: SIZE_LIMIT, and the rest parsed the same. */
	if (p.has_size && p.size > 1) { /* a limit of 0 is none */
		CHECK(smtp_mail_params_parse(s, len, p.size - 1, &q, err, sizeof(err)) ==
		      SMTP_PARAM_SIZE_LIMIT);
		CHECK(smtp_mail_params_parse(s, len, p.size, &q, err, sizeof(err)) ==
		      SMTP_PARAM_OK);
	}

	/* Canonical form, parsed again. */
	char out[1200];
	size_t o = 0;
	if (p.has_size)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " SIZE=%llu",
				      (unsigned long long)p.size);
	if (p.body != SMTP_BODY_UNSPEC)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " BODY=%s",
				      p.body == SMTP_BODY_7BIT ? "7BIT" : "8BITMIME");
	if (p.smtputf8)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " SMTPUTF8");
	if (p.ret != SMTP_RET_UNSPEC)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " RET=%s",
				      p.ret == SMTP_RET_FULL ? "FULL" : "HDRS");
	if (p.has_envid)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " ENVID=%s", p.envid);
	if (p.has_auth)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " AUTH=%s", p.auth);
	CHECK(o < sizeof(out));
	CHECK(smtp_mail_params_parse(out, o, 0, &q, err, sizeof(err)) == SMTP_PARAM_OK);
	CHECK(q.has_size == p.has_size && q.size == p.size && q.body == p.body &&
	      q.smtputf8 == p.smtputf8 && q.ret == p.ret && q.has_envid == p.has_envid &&
	      q.has_auth == p.has_auth && strcmp(q.envid, p.envid) == 0 &&
	      strcmp(q.auth, p.auth) == 0);
}

static void check_rcpt(const char *s, size_t len, bool utf8)
{
	struct smtp_rcpt_params p, q;
	char err[64];
	enum smtp_param_status st = smtp_rcpt_params_parse(s, len, utf8, &p, err, sizeof(err));
	CHECK(nul_ended_within(err, sizeof(err)));
	if (st != SMTP_PARAM_OK) {
		CHECK(st == SMTP_PARAM_SYNTAX || st == SMTP_PARAM_UNKNOWN);
		CHECK(err[0] != '\0');
		return;
	}
	unsigned all = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE |
		       SMTP_NOTIFY_DELAY;
	CHECK((p.notify & ~all) == 0);
	CHECK(!(p.notify & SMTP_NOTIFY_NEVER) || p.notify == SMTP_NOTIFY_NEVER);
	CHECK(nul_ended_within(p.orcpt, sizeof(p.orcpt)));
	if (p.has_orcpt) {
		const char *semi = strchr(p.orcpt, ';');
		CHECK(semi != NULL && semi != p.orcpt && semi[1] != '\0');
	}
	/* Without SMTPUTF8, an ORCPT is plain xtext after its type. */
	if (p.has_orcpt && !utf8)
		CHECK(smtp_xtext_valid(strchr(p.orcpt, ';') + 1,
				       strlen(strchr(p.orcpt, ';') + 1)));

	char out[700];
	size_t o = 0;
	if (p.notify) {
		static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
		o += (size_t)snprintf(out + o, sizeof(out) - o, " NOTIFY=");
		bool first = true;
		for (unsigned k = 0; k < 4; k++)
			if (p.notify & (1u << k)) {
				o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s",
						      first ? "" : ",", names[k]);
				first = false;
			}
	}
	if (p.has_orcpt)
		o += (size_t)snprintf(out + o, sizeof(out) - o, " ORCPT=%s", p.orcpt);
	CHECK(o < sizeof(out));
	CHECK(smtp_rcpt_params_parse(out, o, utf8, &q, err, sizeof(err)) == SMTP_PARAM_OK);
	CHECK(q.notify == p.notify && q.has_orcpt == p.has_orcpt &&
	      strcmp(q.orcpt, p.orcpt) == 0);
}

static void check_bdat(const char *s, size_t len)
{
	uint64_t n, n2;
	bool last, last2;
	if (!smtp_bdat_parse(s, len, &n, &last)) {
		CHECK(n == 0 && !last);
		return;
	}
	char out[40];
	int o = snprintf(out, sizeof(out), "%llu%s", (unsigned long long)n, last ? " LAST" : "");
	CHECK(o > 0 && (size_t)o < sizeof(out));
	CHECK(smtp_bdat_parse(out, (size_t)o, &n2, &last2));
	CHECK(n2 == n && last2 == last);
}

/* MAIL FROM:<path> params / RCPT TO:<path> params, as smtp_session cuts them. */
static void check_path_and_params(const struct smtp_cmd *c, bool utf8)
{
	const char *kw = c->verb == SMTP_VERB_MAIL ? "FROM:" : "TO:";
	long off = smtp_cmd_path_offset(c->arg, c->arg_len, kw);
	if (off < 0)
		return;
	CHECK((size_t)off < c->arg_len && c->arg[off] == '<');
	struct smtp_addr a;
	size_t used;
	if (smtp_addr_parse(c->arg + off, c->arg_len - (size_t)off, c->verb == SMTP_VERB_MAIL,
			    utf8, &a, &used) != SMTP_ADDR_OK)
		return;
	CHECK(used >= 2 && used <= c->arg_len - (size_t)off);
	const char *rest = c->arg + off + used;
	size_t rest_len = c->arg_len - (size_t)off - used;
	if (rest_len > 0 && rest[0] != ' ')
		return;
	if (c->verb == SMTP_VERB_MAIL)
		check_mail(rest, rest_len);
	else
		check_rcpt(rest, rest_len, utf8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 4096)
		return 0;
	bool utf8 = data[0] & 1;
	const char *line = (const char *)data + 1;
	size_t len = size - 1;

	struct smtp_cmd c;
	bool bad;
	smtp_cmd_parse(line, len, &c, &bad);
	CHECK(c.verb >= SMTP_VERB_UNKNOWN && c.verb < SMTP_VERB_COUNT);
	CHECK(c.arg >= line && c.arg + c.arg_len <= line + len);
	if (c.arg_len > 0)
		CHECK(c.arg[c.arg_len - 1] != ' ' && c.arg[c.arg_len - 1] != '\t');
	bool has_ctl = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			has_ctl = true;
	}
	CHECK(bad == has_ctl);
	if (bad)
		CHECK(c.verb == SMTP_VERB_UNKNOWN);
	if (c.verb != SMTP_VERB_UNKNOWN) {
		const char *name = smtp_cmd_verb_name(c.verb);
		struct smtp_cmd c2;
		bool bad2;
		smtp_cmd_parse(name, strlen(name), &c2, &bad2);
		CHECK(c2.verb == c.verb && !bad2 && c2.arg_len == 0);
	}

	/* The same parse on an exact-size copy: nothing read past len. */
	char *copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	memcpy(copy, line, len);
	struct smtp_cmd cc;
	bool badc;
	smtp_cmd_parse(copy, len, &cc, &badc);
	CHECK(cc.verb == c.verb && badc == bad && cc.arg_len == c.arg_len &&
	      cc.arg - copy == c.arg - line);

	if (!bad) {
		if (c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT)
			check_path_and_params(&cc, utf8);
		if (c.verb == SMTP_VERB_BDAT)
			check_bdat(cc.arg, cc.arg_len);
	}
	/* Whatever the verb: the argument as each kind of input. */
	check_mail(cc.arg, cc.arg_len);
	check_rcpt(cc.arg, cc.arg_len, utf8);
	check_bdat(cc.arg, cc.arg_len);
	bool x = smtp_xtext_valid(cc.arg, cc.arg_len);
	CHECK(x == smtp_xtext_valid(line + (cc.arg - copy), cc.arg_len));
	free(copy);
	return 0;
}
