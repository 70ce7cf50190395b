/*
 * smtp_client: the outgoing SMTP conversation (smtp_client.h).
 *
 * Every command sent appends what reply it expects to a FIFO; every reply
 * parsed is matched with the head of the FIFO. Pipelining is then only a
 * question of how many commands go out before the first reply is read.
 */
#include "delivery/smtp_client.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include "lib/conn.h"
#include "lib/connector.h"
#include "lib/log.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"
#include "proto/smtp_cmd.h"
#include "proto/smtp_reply.h"

#define INPUT_MAX (64 * 1024) /* unparsed octets read ahead, at most */

enum expect_kind {
	X_GREETING, X_EHLO, X_HELO, X_STARTTLS, X_AUTH, X_RSET, X_MAIL, X_RCPT,
	X_DATA, X_DOT, X_QUIT,
};

struct expect {
	enum expect_kind kind;
	size_t idx; /* X_RCPT: recipient index */
};

enum phase { P_CONNECTING, P_OPENING, P_IDLE, P_TXN, P_QUITTING, P_BROKEN };

struct smtp_client {
	struct event_base *base;
	struct smtp_client_params p;
	char *server_name;
	char *helo_name;
	char *our_hostname;
	char *auth_user;
	char *auth_password;
	char relay[320];
	struct connector *connector;
	struct conn *conn;
	struct smtp_reply_parser parser;
	struct smtp_client_caps caps;
	enum phase phase;
	bool tls_started;
	bool need_rset;    /* the previous transaction was left open */
	bool rset_first;   /* this transaction's commands start with RSET */
	unsigned count;
	/* expected replies */
	struct expect *fifo;
	size_t fifo_cap, fifo_head, fifo_len;
	/* the transaction */
	struct smtp_client_txn *txn;
	char **cmds;        /* commands not yet sent (without pipelining) */
	size_t ncmds, next_cmd;
	size_t accepted;    /* recipients accepted so far */
	bool data_refused;  /* pipelined DATA answered 354 with no recipient */
	/* callbacks */
	smtp_client_ready_fn ready;
	smtp_client_closed_fn closed;
	smtp_client_done_fn done;
	void *arg, *done_arg;
	/* re-entrancy: a callback may free the client */
	int depth;
	bool dead;
};

static void client_destroy(struct smtp_client *c)
{
	connector_cancel(c->connector);
	if (c->conn)
		conn_free(c->conn);
	for (size_t i = 0; i < c->ncmds; i++)
		free(c->cmds[i]);
	free(c->cmds);
	free(c->fifo);
	free(c->server_name);
	free(c->helo_name);
	free(c->our_hostname);
	if (c->auth_password)
		memset(c->auth_password, 0, strlen(c->auth_password));
	free(c->auth_user);
	free(c->auth_password);
	free(c);
}

void smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->depth > 0) {
		c->dead = true;
		return;
	}
	client_destroy(c);
}

/* Enter/leave a region that calls the owner back. Returns false when the
 * owner freed the client meanwhile (it is gone now). */
static void enter(struct smtp_client *c)
{
	c->depth++;
}

static bool leave(struct smtp_client *c)
{
	if (--c->depth == 0 && c->dead) {
		client_destroy(c);
		return false;
	}
	return !c->dead;
}

const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c)
{
	return &c->caps;
}

const char *smtp_client_relay(const struct smtp_client *c)
{
	return c->relay;
}

const char *smtp_client_server_name(const struct smtp_client *c)
{
	return c->server_name;
}

bool smtp_client_tls(const struct smtp_client *c)
{
	return c->conn && conn_is_tls(c->conn);
}

unsigned smtp_client_count(const struct smtp_client *c)
{
	return c->count;
}

/* ---- output ---- */

static void expect(struct smtp_client *c, enum expect_kind kind, size_t idx)
{
	if (c->fifo_len == c->fifo_cap) {
		size_t cap = c->fifo_cap ? c->fifo_cap * 2 : 16;
		struct expect *n = xcalloc(cap, sizeof(*n));
		for (size_t i = 0; i < c->fifo_len; i++)
			n[i] = c->fifo[(c->fifo_head + i) % c->fifo_cap];
		free(c->fifo);
		c->fifo = n;
		c->fifo_cap = cap;
		c->fifo_head = 0;
	}
	c->fifo[(c->fifo_head + c->fifo_len) % c->fifo_cap] = (struct expect){ kind, idx };
	c->fifo_len++;
}

static struct expect pop_expect(struct smtp_client *c)
{
	struct expect e = c->fifo[c->fifo_head];
	c->fifo_head = (c->fifo_head + 1) % c->fifo_cap;
	c->fifo_len--;
	return e;
}

static double timeout_for(const struct smtp_client *c, enum expect_kind k)
{
	switch (k) {
	case X_GREETING:
		return c->p.greeting_timeout;
	case X_DATA:
		return c->p.data_timeout;
	case X_DOT:
		return c->p.data_done_timeout;
	default:
		return c->p.command_timeout;
	}
}

/* Queue one command line (without CRLF) expecting a reply of kind k;
 * send_line also writes it out at once. */
static void queue_line(struct smtp_client *c, const char *line, enum expect_kind k,
		       size_t idx)
{
	struct evbuffer *out = conn_output(c->conn);
	evbuffer_add(out, line, strlen(line));
	evbuffer_add(out, "\r\n", 2);
	if (c->fifo_len == 0)
		conn_set_read_timeout(c->conn, timeout_for(c, k));
	expect(c, k, idx);
}

static void send_line(struct smtp_client *c, const char *line, enum expect_kind k,
		      size_t idx)
{
	queue_line(c, line, k, idx);
	conn_flush(c->conn);
}

/* ---- outcomes ---- */

static void status_set(struct smtp_client_status *st, enum smtp_client_error e, int code,
		       const char *text)
{
	st->error = e;
	st->code = code;
	snprintf(st->reply, sizeof(st->reply), "%s", text);
}

static void status_reply(struct smtp_client_status *st, enum smtp_client_error e,
			 const struct smtp_reply *r)
{
	st->error = e;
	st->code = r->code;
	smtp_reply_format(r, st->reply, sizeof(st->reply));
}

/* The connection is unusable: report to whoever waits. */
static void fail(struct smtp_client *c, enum smtp_client_error e, const char *why)
{
	enum phase was = c->phase;
	c->phase = P_BROKEN;
	if (c->conn)
		conn_stop_reading(c->conn);
	enter(c);
	if (was == P_CONNECTING || was == P_OPENING) {
		struct smtp_client_status st;
		status_set(&st, e, 0, why);
		c->ready(c->arg, c, &st);
	} else if (was == P_TXN) {
		status_set(&c->txn->status, e, 0, why);
		struct smtp_client_txn *t = c->txn;
		c->txn = NULL;
		c->done(c->done_arg, c, t);
	} else if (was == P_IDLE) {
		c->closed(c->arg, c);
	} else if (was == P_QUITTING) {
		c->dead = true;
	}
	leave(c);
}

static void opening_refused(struct smtp_client *c, enum smtp_client_error e,
			    const struct smtp_reply *r, const char *text)
{
	struct smtp_client_status st;
	if (r)
		status_reply(&st, e, r);
	else
		status_set(&st, e, 0, text);
	c->phase = P_BROKEN;
	conn_stop_reading(c->conn);
	/* Be polite: the server may be fine, only not for us. */
	evbuffer_add(conn_output(c->conn), "QUIT\r\n", 6);
	conn_flush(c->conn);
	enter(c);
	c->ready(c->arg, c, &st);
	leave(c);
}

/* ---- opening: greeting, EHLO, STARTTLS, AUTH ---- */

static void send_ehlo(struct smtp_client *c)
{
	char line[320];
	snprintf(line, sizeof(line), "EHLO %s", c->helo_name);
	send_line(c, line, X_EHLO, 0);
}

/* Does the first word of a greeting or EHLO reply name us? */
static bool names_us(const struct smtp_client *c, const struct smtp_reply *r)
{
	size_t n = strcspn(r->text, " \n");
	return n > 0 && strlen(c->our_hostname) == n &&
	       strncasecmp(r->text, c->our_hostname, n) == 0;
}

static void parse_caps(struct smtp_client *c, const struct smtp_reply *r)
{
	memset(&c->caps, 0, sizeof(c->caps));
	c->caps.esmtp = true;
	const char *arg;
	size_t alen;
	c->caps.pipelining = smtp_reply_has_keyword(r, "PIPELINING", NULL, NULL);
	c->caps.starttls = smtp_reply_has_keyword(r, "STARTTLS", NULL, NULL);
	c->caps.eightbitmime = smtp_reply_has_keyword(r, "8BITMIME", NULL, NULL);
	c->caps.smtputf8 = smtp_reply_has_keyword(r, "SMTPUTF8", NULL, NULL);
	c->caps.dsn = smtp_reply_has_keyword(r, "DSN", NULL, NULL);
	if (smtp_reply_has_keyword(r, "SIZE", &arg, &alen) && alen > 0) {
		uint64_t v = 0;
		for (size_t i = 0; i < alen && isdigit((unsigned char)arg[i]) &&
				   v < UINT64_MAX / 10 - 10; i++)
			v = v * 10 + (uint64_t)(arg[i] - '0');
		c->caps.size = v;
	}
	if (smtp_reply_has_keyword(r, "AUTH", &arg, &alen)) {
		for (size_t i = 0; i + 5 <= alen; i++)
			if (strncasecmp(arg + i, "PLAIN", 5) == 0 &&
			    (i == 0 || arg[i - 1] == ' ') &&
			    (i + 5 == alen || arg[i + 5] == ' '))
				c->caps.auth_plain = true;
	}
}

static void become_ready(struct smtp_client *c)
{
	c->phase = P_IDLE;
	conn_set_read_timeout(c->conn, 0);
	struct smtp_client_status st = { SMTP_CLIENT_OK, 0, "" };
	enter(c);
	c->ready(c->arg, c, &st);
	leave(c);
}

static void send_auth(struct smtp_client *c)
{
	size_t ul = strlen(c->auth_user), pl = strlen(c->auth_password);
	size_t rawlen = 2 + ul + pl;
	unsigned char *raw = xmalloc(rawlen);
	raw[0] = '\0';
	memcpy(raw + 1, c->auth_user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, c->auth_password, pl);
	size_t cap = 4 * ((rawlen + 2) / 3) + 1;
	char *line = xmalloc(cap + 16);
	memcpy(line, "AUTH PLAIN ", 11);
	EVP_EncodeBlock((unsigned char *)line + 11, raw, (int)rawlen);
	send_line(c, line, X_AUTH, 0);
	memset(raw, 0, rawlen);
	memset(line, 0, cap + 16);
	free(raw);
	free(line);
}

/* After EHLO (or HELO) succeeded: TLS, then AUTH, then ready. */
static void after_hello(struct smtp_client *c)
{
	bool tls = conn_is_tls(c->conn);
	if (!tls && c->caps.starttls && c->p.tls != TLS_POLICY_NONE) {
		send_line(c, "STARTTLS", X_STARTTLS, 0);
		return;
	}
	if (!tls && c->p.tls == TLS_POLICY_REQUIRED) {
		opening_refused(c, SMTP_CLIENT_TLS_REQUIRED, NULL,
				"TLS is required, but the server does not offer STARTTLS");
		return;
	}
	if (c->auth_user) {
		if (!c->caps.auth_plain) {
			opening_refused(c, SMTP_CLIENT_AUTH, NULL,
					"authentication is configured, but the server "
					"offers no AUTH PLAIN");
			return;
		}
		send_auth(c);
		return;
	}
	become_ready(c);
}

static void on_tls_ready(void *arg)
{
	struct smtp_client *c = arg;
	send_ehlo(c);
}

static void opening_reply(struct smtp_client *c, struct expect e, const struct smtp_reply *r)
{
	switch (e.kind) {
	case X_GREETING:
		if (r->code / 100 != 2) {
			opening_refused(c, SMTP_CLIENT_REPLY, r, NULL);
			return;
		}
		if (names_us(c, r)) {
			opening_refused(c, SMTP_CLIENT_LOOP, NULL,
					"the server's greeting names this host: mail loops "
					"back to myself");
			return;
		}
		send_ehlo(c);
		return;
	case X_EHLO:
		if (r->code / 100 == 5 && !conn_is_tls(c->conn)) {
			char line[320];
			snprintf(line, sizeof(line), "HELO %s", c->helo_name);
			send_line(c, line, X_HELO, 0);
			return;
		}
		/* fall through */
	case X_HELO:
		if (r->code / 100 != 2) {
			opening_refused(c, SMTP_CLIENT_REPLY, r, NULL);
			return;
		}
		if (names_us(c, r)) {
			opening_refused(c, SMTP_CLIENT_LOOP, NULL,
					"the server's EHLO reply names this host: mail loops "
					"back to myself");
			return;
		}
		if (e.kind == X_EHLO)
			parse_caps(c, r);
		else
			memset(&c->caps, 0, sizeof(c->caps));
		after_hello(c);
		return;
	case X_STARTTLS:
		if (r->code == 220) {
			c->tls_started = true;
			conn_set_read_timeout(c->conn, c->p.command_timeout);
			conn_start_tls_client(c->conn, c->p.tls_ctx, c->server_name);
			return;
		}
		if (c->p.tls == TLS_POLICY_REQUIRED) {
			opening_refused(c, SMTP_CLIENT_TLS_REQUIRED, r, NULL);
			return;
		}
		c->caps.starttls = false;
		after_hello(c);
		return;
	case X_AUTH:
		if (r->code != 235) {
			opening_refused(c, SMTP_CLIENT_AUTH, r, NULL);
			return;
		}
		become_ready(c);
		return;
	default:
		fail(c, SMTP_CLIENT_PROTOCOL, "unexpected reply while opening");
		return;
	}
}

/* ---- transactions ---- */

static void add_xtext_param(char *line, size_t cap, const char *name, const char *v)
{
	size_t n = strlen(line);
	if (v && n + strlen(name) + strlen(v) + 2 < cap)
		snprintf(line + n, cap - n, " %s=%s", name, v);
}

static char *mail_command(const struct smtp_client *c, const struct smtp_client_txn *t)
{
	char line[1200];
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", t->sender);
	size_t n = strlen(line);
	if (c->caps.size)
		snprintf(line + n, sizeof(line) - n, " SIZE=%llu",
			 (unsigned long long)t->size);
	if (t->eightbit && c->caps.eightbitmime)
		add_xtext_param(line, sizeof(line), "BODY", "8BITMIME");
	if (t->smtputf8 && c->caps.smtputf8) {
		n = strlen(line);
		snprintf(line + n, sizeof(line) - n, " SMTPUTF8");
	}
	if (c->caps.dsn) {
		if (t->ret == SMTP_RET_FULL)
			add_xtext_param(line, sizeof(line), "RET", "FULL");
		else if (t->ret == SMTP_RET_HDRS)
			add_xtext_param(line, sizeof(line), "RET", "HDRS");
		add_xtext_param(line, sizeof(line), "ENVID", t->envid);
	}
	return xstrdup(line);
}

static char *rcpt_command(const struct smtp_client *c, const struct smtp_client_rcpt *r)
{
	char line[1200];
	snprintf(line, sizeof(line), "RCPT TO:<%s>", r->addr);
	if (c->caps.dsn && r->notify) {
		char v[40] = "";
		if (r->notify & SMTP_NOTIFY_NEVER) {
			strcat(v, "NEVER");
		} else {
			const char *names[] = { "SUCCESS", "FAILURE", "DELAY" };
			const unsigned bits[] = { SMTP_NOTIFY_SUCCESS, SMTP_NOTIFY_FAILURE,
						  SMTP_NOTIFY_DELAY };
			for (int i = 0; i < 3; i++) {
				if (!(r->notify & bits[i]))
					continue;
				if (v[0])
					strcat(v, ",");
				strcat(v, names[i]);
			}
		}
		if (v[0])
			add_xtext_param(line, sizeof(line), "NOTIFY", v);
		add_xtext_param(line, sizeof(line), "ORCPT", r->orcpt);
	}
	return xstrdup(line);
}

static void clear_cmds(struct smtp_client *c)
{
	for (size_t i = 0; i < c->ncmds; i++)
		free(c->cmds[i]);
	free(c->cmds);
	c->cmds = NULL;
	c->ncmds = c->next_cmd = 0;
}

/* The command for expected reply number i of the transaction. */
static enum expect_kind cmd_kind(const struct smtp_client *c, size_t i, size_t *idx)
{
	size_t base = c->rset_first ? 1 : 0;
	*idx = 0;
	if (i < base)
		return X_RSET;
	if (i == base)
		return X_MAIL;
	if (i <= base + c->txn->nrcpts) {
		*idx = i - base - 1;
		return X_RCPT;
	}
	return X_DATA;
}

static void queue_next_cmd(struct smtp_client *c)
{
	size_t idx;
	enum expect_kind k = cmd_kind(c, c->next_cmd, &idx);
	queue_line(c, c->cmds[c->next_cmd], k, idx);
	c->next_cmd++;
}

static void send_next_cmd(struct smtp_client *c)
{
	queue_next_cmd(c);
	conn_flush(c->conn);
}

void smtp_client_send(struct smtp_client *c, struct smtp_client_txn *t,
		      smtp_client_done_fn done, void *arg)
{
	c->txn = t;
	c->done = done;
	c->done_arg = arg;
	c->phase = P_TXN;
	c->accepted = 0;
	c->data_refused = false;
	memset(&t->status, 0, sizeof(t->status));
	for (size_t i = 0; i < t->nrcpts; i++) {
		t->rcpts[i].code = 0;
		t->rcpts[i].reply[0] = '\0';
	}
	clear_cmds(c);
	c->cmds = xcalloc(t->nrcpts + 3, sizeof(char *));
	c->rset_first = c->need_rset;
	if (c->rset_first)
		c->cmds[c->ncmds++] = xstrdup("RSET");
	c->cmds[c->ncmds++] = mail_command(c, t);
	for (size_t i = 0; i < t->nrcpts; i++)
		c->cmds[c->ncmds++] = rcpt_command(c, &t->rcpts[i]);
	c->cmds[c->ncmds++] = xstrdup("DATA");
	c->need_rset = true; /* until the transaction ends properly */
	if (c->caps.pipelining) {
		/* RFC 2920: the whole group in one write. */
		while (c->next_cmd < c->ncmds)
			queue_next_cmd(c);
		conn_flush(c->conn);
	} else {
		send_next_cmd(c);
	}
}

/* Append the content, dot-stuffed, then the end of data. The content's
 * chunks are read where they are (no contiguous copy of the message). */
static void send_content(struct smtp_client *c)
{
	struct evbuffer *out = conn_output(c->conn);
	struct evbuffer *in = c->txn->content;
	size_t len = evbuffer_get_length(in);
	int nv = evbuffer_peek(in, -1, NULL, NULL, 0);
	struct evbuffer_iovec *v = xcalloc(nv > 0 ? (size_t)nv : 1, sizeof(*v));
	nv = evbuffer_peek(in, -1, NULL, v, nv);
	bool line_start = true;
	char last = '\n', before_last = '\r';
	for (int k = 0; k < nv; k++) {
		const char *p = v[k].iov_base;
		size_t n = v[k].iov_len, off = 0;
		while (off < n) {
			if (line_start && p[off] == '.')
				evbuffer_add(out, ".", 1);
			const char *nl = memchr(p + off, '\n', n - off);
			size_t end = nl ? (size_t)(nl - p) + 1 : n;
			evbuffer_add(out, p + off, end - off);
			line_start = nl != NULL;
			off = end;
		}
		if (n >= 2) {
			before_last = p[n - 2];
			last = p[n - 1];
		} else if (n == 1) {
			before_last = last;
			last = p[0];
		}
	}
	free(v);
	if (len > 0 && (before_last != '\r' || last != '\n'))
		evbuffer_add(out, "\r\n", 2);
	evbuffer_drain(in, len);
	evbuffer_add(out, ".\r\n", 3);
	conn_set_write_timeout(c->conn, c->p.data_timeout);
	conn_set_read_timeout(c->conn, c->p.data_done_timeout);
	expect(c, X_DOT, 0);
	conn_flush(c->conn);
}

static void txn_finish(struct smtp_client *c)
{
	struct smtp_client_txn *t = c->txn;
	c->txn = NULL;
	c->phase = P_IDLE;
	c->count++;
	clear_cmds(c);
	conn_set_read_timeout(c->conn, 0);
	conn_set_write_timeout(c->conn, c->p.command_timeout);
	enter(c);
	c->done(c->done_arg, c, t);
	leave(c);
}

static void txn_reply(struct smtp_client *c, struct expect e, const struct smtp_reply *r)
{
	struct smtp_client_txn *t = c->txn;
	bool more = !c->caps.pipelining && c->next_cmd < c->ncmds;
	switch (e.kind) {
	case X_RSET:
		break; /* whatever it says, MAIL tells the truth */
	case X_MAIL:
		if (r->code / 100 != 2) {
			status_reply(&t->status, SMTP_CLIENT_REPLY, r);
			if (!c->caps.pipelining) {
				txn_finish(c);
				return;
			}
		}
		break;
	case X_RCPT: {
		struct smtp_client_rcpt *rc = &t->rcpts[e.idx];
		if (t->status.error != SMTP_CLIENT_OK)
			break; /* MAIL failed: its reply is every recipient's */
		rc->code = r->code;
		smtp_reply_format(r, rc->reply, sizeof(rc->reply));
		if (r->code / 100 == 2)
			c->accepted++;
		if (!c->caps.pipelining && e.idx + 1 == t->nrcpts && c->accepted == 0) {
			/* Nobody accepted: no DATA; the next transaction RSETs. */
			status_set(&t->status, SMTP_CLIENT_OK, 0, "");
			txn_finish(c);
			return;
		}
		break;
	}
	case X_DATA:
		if (r->code == 354) {
			if (c->accepted == 0 || t->status.error != SMTP_CLIENT_OK) {
				/* Pipelined DATA accepted with nobody to send to:
				 * end it empty and ignore its outcome. */
				c->data_refused = true;
				evbuffer_drain(t->content, evbuffer_get_length(t->content));
				evbuffer_add(conn_output(c->conn), ".\r\n", 3);
				expect(c, X_DOT, 0);
				conn_flush(c->conn);
				return;
			}
			send_content(c);
			return;
		}
		if (t->status.error == SMTP_CLIENT_OK && c->accepted > 0)
			status_reply(&t->status, SMTP_CLIENT_REPLY, r);
		txn_finish(c);
		return;
	case X_DOT:
		if (!c->data_refused) {
			for (size_t i = 0; i < t->nrcpts; i++) {
				struct smtp_client_rcpt *rc = &t->rcpts[i];
				if (rc->code / 100 != 2)
					continue;
				rc->code = r->code;
				smtp_reply_format(r, rc->reply, sizeof(rc->reply));
			}
			c->need_rset = false;
		}
		txn_finish(c);
		return;
	default:
		fail(c, SMTP_CLIENT_PROTOCOL, "unexpected reply in a transaction");
		return;
	}
	if (more)
		send_next_cmd(c);
}

/* ---- input ---- */

static void dispatch(struct smtp_client *c, const struct smtp_reply *r)
{
	if (c->fifo_len == 0) {
		/* Unsolicited: an idle server saying 421 before it hangs up. */
		char why[SMTP_CLIENT_REPLY_MAX];
		smtp_reply_format(r, why, sizeof(why));
		fail(c, SMTP_CLIENT_NETWORK, why);
		return;
	}
	struct expect e = pop_expect(c);
	if (c->fifo_len > 0)
		conn_set_read_timeout(c->conn, timeout_for(c, c->fifo[c->fifo_head].kind));
	if (e.kind == X_QUIT) {
		c->dead = true;
		return;
	}
	if (c->phase == P_OPENING)
		opening_reply(c, e, r);
	else if (c->phase == P_TXN)
		txn_reply(c, e, r);
}

static void on_readable(void *arg)
{
	struct smtp_client *c = arg;
	enter(c);
	struct evbuffer *in = conn_input(c->conn);
	while (!c->dead && c->phase != P_BROKEN && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		struct smtp_reply r;
		enum smtp_reply_status st =
			smtp_reply_parse(&c->parser, v.iov_base, v.iov_len, &used, &r);
		evbuffer_drain(in, used);
		if (st == SMTP_REPLY_ERROR) {
			char why[200];
			snprintf(why, sizeof(why), "malformed reply from the server: %s",
				 c->parser.error ? c->parser.error : "protocol error");
			fail(c, SMTP_CLIENT_PROTOCOL, why);
			break;
		}
		if (st == SMTP_REPLY_DONE)
			dispatch(c, &r);
	}
	leave(c);
}

static void on_drained(void *arg)
{
	(void)arg;
}

static void on_event(void *arg, enum conn_event what)
{
	struct smtp_client *c = arg;
	if (c->phase == P_QUITTING) {
		smtp_client_free(c);
		return;
	}
	const char *why;
	char buf[300];
	switch (what) {
	case CONN_EOF:
		why = "the server closed the connection";
		break;
	case CONN_READ_TIMEOUT:
		why = "timeout waiting for the server's reply";
		break;
	case CONN_WRITE_TIMEOUT:
		why = "timeout sending to the server";
		break;
	default:
		if (c->tls_started && !conn_is_tls(c->conn) && conn_tls_error(c->conn)[0]) {
			snprintf(buf, sizeof(buf), "TLS handshake failed: %s",
				 conn_tls_error(c->conn));
			why = buf;
		} else {
			why = "connection error";
		}
		break;
	}
	fail(c, SMTP_CLIENT_NETWORK, why);
}

static const struct conn_callbacks client_callbacks = {
	.readable = on_readable,
	.drained = on_drained,
	.event = on_event,
	.tls_ready = on_tls_ready,
};

static void on_connected(void *arg, int fd, int err)
{
	struct smtp_client *c = arg;
	c->connector = NULL;
	if (fd < 0) {
		char why[200];
		snprintf(why, sizeof(why), "connect: %s", strerror_safe(err));
		fail(c, SMTP_CLIENT_NETWORK, why);
		return;
	}
	c->phase = P_OPENING;
	c->conn = conn_new(c->base, fd, &client_callbacks, c, INPUT_MAX);
	if (c->conn == NULL) {
		close(fd);
		fail(c, SMTP_CLIENT_NETWORK, "out of memory for the connection");
		return;
	}
	conn_set_write_timeout(c->conn, c->p.command_timeout);
	conn_set_read_timeout(c->conn, c->p.greeting_timeout);
	expect(c, X_GREETING, 0);
	conn_start_reading(c->conn);
}

struct smtp_client *smtp_client_open(struct event_base *base, const struct sockaddr *sa,
				     socklen_t salen, const struct smtp_client_params *p,
				     smtp_client_ready_fn ready, smtp_client_closed_fn closed,
				     void *arg)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->p = *p;
	c->server_name = xstrdup(p->server_name ? p->server_name : "");
	c->helo_name = xstrdup(p->helo_name);
	c->our_hostname = xstrdup(p->our_hostname ? p->our_hostname : "");
	if (p->auth_user && p->auth_password) {
		c->auth_user = xstrdup(p->auth_user);
		c->auth_password = xstrdup(p->auth_password);
	}
	c->p.server_name = c->p.helo_name = c->p.our_hostname = NULL;
	c->p.auth_user = c->p.auth_password = NULL;
	c->ready = ready;
	c->closed = closed;
	c->arg = arg;
	smtp_reply_parser_init(&c->parser);
	char ip[64];
	int port = netaddr_text(sa, ip, sizeof(ip));
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", c->server_name, ip, port);
	c->phase = P_CONNECTING;
	c->connector = connector_start(base, sa, salen, p->connect_timeout, on_connected, c);
	return c;
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->conn == NULL || c->phase == P_BROKEN || c->phase == P_CONNECTING) {
		smtp_client_free(c);
		return;
	}
	c->phase = P_QUITTING;
	conn_set_read_timeout(c->conn, 5);
	send_line(c, "QUIT", X_QUIT, 0);
}
