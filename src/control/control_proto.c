/*
 * control_proto: see control_proto.h.
 */
#include "control/control_proto.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proto/smtp_addr.h"
#include "proto/smtp_cmd.h"

enum arg_rule { ARG_NONE, ARG_ID, ARG_OPTIONAL_ID };

static const struct {
	const char *name;
	enum control_cmd cmd;
	enum arg_rule arg;
} commands[] = {
	{ "LIST", CONTROL_LIST, ARG_NONE },
	{ "SHOW", CONTROL_SHOW, ARG_ID },
	{ "FLUSH", CONTROL_FLUSH, ARG_OPTIONAL_ID },
	{ "HOLD", CONTROL_HOLD, ARG_ID },
	{ "RELEASE", CONTROL_RELEASE, ARG_ID },
	{ "DELETE", CONTROL_DELETE, ARG_ID },
	{ "BOUNCE", CONTROL_BOUNCE, ARG_ID },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void set_err(char *err, size_t errlen, const char *text)
{
	if (errlen > 0)
		snprintf(err, errlen, "%s", text);
}

bool control_proto_is_id(const char *s, size_t len)
{
	if (len != QUEUE_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

int control_proto_parse(const char *line, size_t len, struct control_req *req,
			char *err, size_t errlen)
{
	memset(req, 0, sizeof(*req));
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len + 1 > CONTROL_LINE_MAX) {
		set_err(err, errlen, "request line too long");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c >= 0x7f) {
			set_err(err, errlen, "invalid octet in the request");
			return -1;
		}
	}
	const char *sp = memchr(line, ' ', len);
	size_t wlen = sp ? (size_t)(sp - line) : len;
	size_t k = 0;
	while (k < NCOMMANDS && !(strlen(commands[k].name) == wlen &&
				  strncasecmp(commands[k].name, line, wlen) == 0))
		k++;
	if (k == NCOMMANDS) {
		set_err(err, errlen, wlen == 0 ? "empty request" : "unknown command");
		return -1;
	}
	req->cmd = commands[k].cmd;
	const char *arg = sp ? sp + 1 : NULL;
	size_t alen = sp ? len - wlen - 1 : 0;
	if (arg == NULL || alen == 0) {
		if (commands[k].arg == ARG_ID) {
			set_err(err, errlen, "a queue id is needed");
			return -1;
		}
		return 0;
	}
	if (commands[k].arg == ARG_NONE) {
		set_err(err, errlen, "this command takes no argument");
		return -1;
	}
	if (!control_proto_is_id(arg, alen)) {
		set_err(err, errlen, "not a queue id");
		return -1;
	}
	for (size_t i = 0; i < alen; i++)
		req->id[i] = (arg[i] >= 'a' && arg[i] <= 'f') ? (char)(arg[i] - 'a' + 'A') : arg[i];
	req->id[alen] = '\0';
	req->has_id = true;
	return 0;
}

const char *control_proto_cmd_name(enum control_cmd cmd)
{
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (commands[k].cmd == cmd)
			return commands[k].name;
	return "?";
}

/* Length of the well-formed UTF-8 sequence at p, or 0; C1 controls
 * (U+0080..U+009F, C2 80..C2 9F) count as not well-formed here. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	if (n >= 2 && p[0] == 0xc2 && p[1] < 0xa0)
		return 0;
	return smtp_addr_utf8_len((const char *)p, n);
}

void control_proto_escape(struct evbuffer *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0; /* octets [i - run, i) are safe as they are */
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t ok = 0;
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			ok = 1;
		else if (c >= 0x80)
			ok = utf8_len(p + i, n - i);
		if (ok) {
			run += ok;
			i += ok;
			continue;
		}
		evbuffer_add(out, p + i - run, run);
		run = 0;
		char esc[4] = { '\\', (char)c, 0, 0 };
		if (c == '"' || c == '\\') {
			evbuffer_add(out, esc, 2);
		} else {
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			evbuffer_add(out, esc, 4);
		}
		i++;
	}
	evbuffer_add(out, p + n - run, run);
}

const char *control_proto_state_name(enum rcpt_state st)
{
	switch (st) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DEFERRED:
		return "deferred";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_FAILED:
		return "failed";
	}
	return "?";
}

/* " key=value", quoted when the value is empty or holds a space, a quote
 * or a backslash (as in the log). */
static void add_field_q(struct evbuffer *out, bool *first, const char *key, const char *v,
			bool quote)
{
	size_t n = strlen(v);
	quote = quote || n == 0 || strpbrk(v, " \"\\=") != NULL;
	evbuffer_add_printf(out, "%s%s=%s", *first ? "  " : " ", key, quote ? "\"" : "");
	control_proto_escape(out, v, n);
	if (quote)
		evbuffer_add(out, "\"", 1);
	*first = false;
}

static void add_field(struct evbuffer *out, bool *first, const char *key, const char *v)
{
	add_field_q(out, first, key, v, false);
}

static void add_num(struct evbuffer *out, bool *first, const char *key, long long v,
		    const char *unit)
{
	evbuffer_add_printf(out, "%s%s=%lld%s", *first ? "  " : " ", key, v, unit);
	*first = false;
}

static void add_notify(struct evbuffer *out, bool *first, unsigned notify)
{
	static const struct {
		unsigned flag;
		const char *name;
	} names[] = {
		{ SMTP_NOTIFY_NEVER, "never" },
		{ SMTP_NOTIFY_SUCCESS, "success" },
		{ SMTP_NOTIFY_FAILURE, "failure" },
		{ SMTP_NOTIFY_DELAY, "delay" },
	};
	char buf[64] = "";
	size_t len = 0;
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (notify & names[k].flag)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
						len ? "," : "", names[k].name);
	add_field(out, first, "notify", buf);
}

static void format_details(struct evbuffer *out, const struct envelope *env)
{
	bool first = false; /* the line starts with arrival= */
	char when[32] = "?";
	time_t t = (time_t)(env->arrival_us / 1000000);
	struct tm tm;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* Two spaces: not a recipient line (those have four). */
	evbuffer_add_printf(out, "  arrival=%s", when);
	if (env->client_addr)
		add_field(out, &first, "client", env->client_addr);
	if (env->helo)
		add_field(out, &first, "helo", env->helo);
	if (env->proto)
		add_field(out, &first, "proto", env->proto);
	if (env->auth)
		add_field(out, &first, "auth", env->auth);
	if (env->envid)
		add_field(out, &first, "envid", env->envid);
	if (env->ret != SMTP_RET_UNSPEC)
		add_field(out, &first, "ret", env->ret == SMTP_RET_FULL ? "full" : "hdrs");
	if (env->body != SMTP_BODY_UNSPEC)
		add_field(out, &first, "body",
			  env->body == SMTP_BODY_8BITMIME ? "8bitmime" : "7bit");
	if (env->smtputf8)
		add_field(out, &first, "smtputf8", "yes");
	evbuffer_add(out, "\n", 1);
}

void control_proto_format(struct evbuffer *out, const struct envelope *env, bool held,
			  const char *const *why, bool verbose, int64_t now)
{
	long long age = (long long)now - (long long)(env->arrival_us / 1000000);
	/* The id starts the line: a well-formed one cannot look like the
	 * reply's final "." (queue files are checked when read, but the
	 * framing must not depend on it). */
	if (control_proto_is_id(env->id, strlen(env->id)))
		evbuffer_add(out, env->id, QUEUE_ID_LEN);
	else
		evbuffer_add(out, "(bad-id)", 8);
	evbuffer_add_printf(out, "  age=%llds size=%llu from=<", age < 0 ? 0 : age,
			    (unsigned long long)env->content_size);
	control_proto_escape(out, env->sender ? env->sender : "",
			     env->sender ? strlen(env->sender) : 0);
	evbuffer_add_printf(out, "> nrcpt=%zu%s\n", env->nrcpts, held ? " [held]" : "");
	if (verbose)
		format_details(out, env);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];
		bool first = true;
		evbuffer_add(out, "    ", 4);
		control_proto_escape(out, r->addr ? r->addr : "", r->addr ? strlen(r->addr) : 0);
		evbuffer_add_printf(out, "  %s", control_proto_state_name(r->state));
		bool final = r->state == RCPT_DELIVERED || r->state == RCPT_FAILED;
		if (!final && why && why[i])
			add_field(out, &first, "why", why[i]);
		if (r->state == RCPT_DEFERRED) {
			long long in = (long long)r->next_attempt - (long long)now;
			add_num(out, &first, "next_attempt_in", in < 0 ? 0 : in, "s");
			add_num(out, &first, "attempts", r->attempts, "");
		} else if (r->attempts > 0) {
			add_num(out, &first, "attempts", r->attempts, "");
		}
		if (r->last_error)
			add_field_q(out, &first, "last_error", r->last_error, true);
		if (verbose) {
			if (r->orig && (r->addr == NULL || strcmp(r->orig, r->addr) != 0))
				add_field(out, &first, "orig", r->orig);
			if (r->orcpt)
				add_field(out, &first, "orcpt", r->orcpt);
			if (r->notify)
				add_notify(out, &first, r->notify);
		}
		evbuffer_add(out, "\n", 1);
	}
}
