/*
 * smtp_session: the SMTP server state machine (smtp_session.h).
 *
 * States:  INIT --EHLO/HELO--> READY --MAIL--> MAIL --RCPT--> RCPT
 *          RCPT --DATA--> DATA --end--> COMMIT --fsync--> READY
 *          RCPT --BDAT--> BDAT_CHUNK --octets--> BDAT (--BDAT--> BDAT_CHUNK)
 *          BDAT_CHUNK --LAST--> COMMIT
 *          any --QUIT/timeout/errors--> CLOSING
 * Every change goes through session_set_state(), which logs it at debug level.
 */
#include "smtp/smtp_session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/diskspace.h"
#include "lib/conn.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/netaddr.h"
#include "lib/xalloc.h"
#include "proto/data_reader.h"
#include "proto/smtp_addr.h"
#include "proto/smtp_cmd.h"
#include "queue/envelope.h"
#include "queue/queue.h"
#include "smtp/inbound_auth.h"
#include "smtp/recipient.h"
#include "smtp/session.h"
#include "smtp/smtp_server.h"
#include "verify/spf.h"

#define OUTPUT_PAUSE (256u * 1024)  /* stop reading while this much is unsent */
#define INPUT_HIGH (256u * 1024)    /* reading stops past this much unprocessed */
#define CLOSE_FLUSH_SECONDS 10      /* time to flush a last reply */

static const char *const state_names[S_COUNT] = {
	"init", "ready", "mail", "rcpt", "data", "bdat", "bdat_chunk", "commit", "closing",
	"auth"
};

struct smtp_session_links *smtp_session_links(struct smtp_session *s)
{
	return &s->links;
}

const char *smtp_session_client(const struct smtp_session *s)
{
	return s->client;
}

static void close_now(struct smtp_session *s);

/* ---- replies ---- */

void session_reply(struct smtp_session *s, const char *line)
{
	struct evbuffer *out = conn_output(s->conn);
	evbuffer_add(out, line, strlen(line));
	evbuffer_add(out, "\r\n", 2);
}


void session_replyf(struct smtp_session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	session_reply(s, buf);
}

void session_set_state(struct smtp_session *s, enum state next)
{
	if (s->state == next)
		return;
	struct log_line l;
	log_begin(&l, LOG_DEBUG, "state");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "from", state_names[s->state]);
	log_str(&l, "to", state_names[next]);
	log_end(&l);
	s->state = next;
}

/* Close once the output is flushed (see session_settle()), with a bounded wait. */
void session_close_after_flush(struct smtp_session *s)
{
	if (s->state == S_CLOSING)
		return;
	session_set_state(s, S_CLOSING);
	conn_stop_reading(s->conn);
	conn_set_write_timeout(s->conn, CLOSE_FLUSH_SECONDS);
}

/*
 * The last step of every event handler: send the replies written so far,
 * and close a closing session whose output is gone. s may be freed.
 */
void session_settle(struct smtp_session *s)
{
	conn_flush(s->conn);
	/* Mid-handshake nothing can be sent: a closing session just goes. */
	if (s->state == S_CLOSING &&
	    (conn_pending_output(s->conn) == 0 || conn_handshaking(s->conn)))
		close_now(s);
}

void session_log_reject(struct smtp_session *s, const char *what, const char *line)
{
	struct log_line l;
	log_begin(&l, LOG_INFO, "reject");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "client", s->client);
	log_str(&l, "cmd", what);
	log_str(&l, "reply", line);
	log_end(&l);
}

/* A refused command: reply, log, count; 421 once there are too many. */
void session_reply_error(struct smtp_session *s, const char *what, const char *line)
{
	session_reply(s, line);
	session_log_reject(s, what, line);
	if (++s->errors >= s->cfg->limits.errors) {
		session_reply(s, "421 4.7.0 Too many errors, closing connection");
		session_log_reject(s, what, "421 4.7.0 too many errors");
		session_close_after_flush(s);
	}
}

/* ---- out of memory ----
 *
 * Everything a session allocates comes from lib/mem.h, whose failures
 * end here: as Postfix's smtpd does on "out of memory", but the rest of
 * the server goes on. A command gets 451 and its transaction is rolled
 * back (what was acknowledged before stays so); a session that cannot go
 * on gets 421 and is closed. Either way one event=oom line.
 */


void session_log_oom(uint64_t sid, const char *client, const char *id, const char *where)
{
	struct log_line l;
	log_begin(&l, LOG_ERROR, "oom");
	log_int(&l, "sid", (long long)sid);
	if (id && id[0])
		log_str(&l, "id", id);
	log_str(&l, "client", client);
	log_str(&l, "where", where);
	log_end(&l);
}

/* The queue id of the message under way, or NULL. */
static const char *txn_id(const struct smtp_session *s)
{
	if (s->txn)
		return queue_txn_id(s->txn);
	return s->ltxn ? s->ltxn_id : NULL;
}

/* 451 to the command what; the caller rolls back what it had started.
 * Not counted toward limits.errors: the client did nothing wrong. */
void session_reply_oom(struct smtp_session *s, const char *what)
{
	session_log_oom(s->sid, s->client, txn_id(s), what);
	session_reply(s, OOM_REPLY);
}


/* The session cannot go on: 421, the transaction rolled back, closed
 * once the reply is out (the caller settles). */
static void close_oom(struct smtp_session *s, const char *where)
{
	session_log_oom(s->sid, s->client, txn_id(s), where);
	session_replyf(s, "421 4.3.0 %s Out of memory, closing connection", s->cfg->hostname);
	session_txn_reset(s);
	session_close_after_flush(s);
}

/* ---- command handlers ---- */

static void cmd_helo(struct smtp_session *s, const char *arg, size_t len, bool esmtp)
{
	if (len == 0 || memchr(arg, ' ', len) || len > 255) {
		session_reply_error(s, esmtp ? "EHLO" : "HELO",
			    len > 255 ? "501 5.5.4 Host name too long"
				      : "501 5.5.4 Syntax: EHLO hostname");
		return;
	}
	char helo[256]; /* len <= 255, checked above */
	memcpy(helo, arg, len);
	helo[len] = '\0';
	if (envelope_set(&s->env.helo, helo) < 0) {
		session_reply_oom(s, esmtp ? "EHLO" : "HELO"); /* nothing changed */
		return;
	}
	session_txn_reset(s);
	s->esmtp = esmtp;
	session_set_state(s, S_READY);
	if (!esmtp) {
		session_replyf(s, "250 %s", s->cfg->hostname);
		return;
	}
	session_replyf(s, "250-%s", s->cfg->hostname);
	session_reply(s, "250-PIPELINING");
	session_replyf(s, "250-SIZE %llu", (unsigned long long)s->cfg->limits.message_size);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	session_reply(s, "250-SMTPUTF8");
	session_reply(s, "250-CHUNKING");
	if (s->tls_ctx && !conn_is_tls(s->conn))
		session_reply(s, "250-STARTTLS");
	if (s->listener->auth && s->auth_user == NULL &&
	    (conn_is_tls(s->conn) || s->listener->auth_plaintext))
		session_reply(s, "250-AUTH PLAIN LOGIN");
	session_reply(s, "250 DSN");
}

static void cmd_ehlo(struct smtp_session *s, const char *arg, size_t len)
{
	cmd_helo(s, arg, len, true);
}

static void cmd_helo_only(struct smtp_session *s, const char *arg, size_t len)
{
	cmd_helo(s, arg, len, false);
}

static const char *param_reply(enum smtp_param_status st)
{
	switch (st) {
	case SMTP_PARAM_SYNTAX:
		return "501 5.5.4";
	case SMTP_PARAM_UNKNOWN:
		return "555 5.5.4";
	case SMTP_PARAM_SIZE_LIMIT:
		return "552 5.3.4";
	case SMTP_PARAM_OK:
		break;
	}
	return "250 2.0.0";
}

/* Mail from other servers (mx, not authenticated, not a relay network)
 * gets SPF, DKIM and DMARC checks (inbound_auth.h). False when they
 * should run and there was no memory to start them. */
static bool start_inbound_checks(struct smtp_session *s)
{
	if (s->listener->role != ROLE_MX || s->auth_user || s->relay_network ||
	    !s->cfg->inbound.checks)
		return true;
	struct sockaddr_storage ss;
	if (!spf_parse_ip(s->client, &ss))
		return true;
	s->inauth = inbound_auth_start(smtp_server_base(s->srv), smtp_server_dns(s->srv),
				       s->cfg, (const struct sockaddr *)&ss,
				       s->env.helo ? s->env.helo : "", s->env.sender, NULL);
	return s->inauth != NULL;
}

/*
 * queue.min_free, as Postfix's queue_minfree: refuse new mail while the
 * file system of state_dir has less than that free (and less than that
 * plus the SIZE= the client announced). The figure is at most a second
 * old: one statvfs a second, however many MAIL commands. Sessions all run
 * on the event loop's thread, so one cache serves them all.
 */
static bool storage_low(struct smtp_session *s, const struct smtp_mail_params *mp)
{
	static struct diskspace space;
	const struct config *cur = smtp_server_config(s->srv);
	uint64_t min = cur->queue.min_free;
	if (min == 0)
		return false;
	uint64_t avail;
	if (diskspace_avail(&space, cur->state_dir, &avail) < 0)
		return false; /* the queue's own errors will say what is wrong */
	uint64_t want = min + (mp->has_size ? mp->size : 0);
	if (want < min)
		want = UINT64_MAX;
	if (avail >= want)
		return false;
	struct log_line l;
	log_begin(&l, LOG_WARNING, "insufficient_storage");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "client", s->client);
	log_str(&l, "dir", cur->state_dir);
	log_fmt(&l, "free", "%llu", (unsigned long long)avail);
	log_fmt(&l, "min_free", "%llu", (unsigned long long)min);
	if (mp->has_size)
		log_fmt(&l, "size", "%llu", (unsigned long long)mp->size);
	log_end(&l);
	return true;
}

static void cmd_mail(struct smtp_session *s, const char *arg, size_t len)
{
	long off = smtp_cmd_path_offset(arg, len, "FROM:");
	if (off < 0) {
		session_reply_error(s, "MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	struct smtp_addr addr;
	size_t used;
	enum smtp_addr_status as = smtp_addr_parse(arg + off, len - (size_t)off, true,
						   true, &addr, &used);
	if (as == SMTP_ADDR_SYNTAX || as == SMTP_ADDR_TOO_LONG) {
		session_reply_error(s, "MAIL", "501 5.1.7 Bad sender address syntax");
		return;
	}
	const char *rest = arg + off + used;
	size_t rest_len = len - (size_t)off - used;
	if (rest_len > 0 && rest[0] != ' ') {
		session_reply_error(s, "MAIL", "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]");
		return;
	}
	struct smtp_mail_params mp;
	char why[128] = "";
	if (rest_len > 0 && !s->esmtp) {
		session_reply_error(s, "MAIL", "555 5.5.4 Parameters need EHLO");
		return;
	}
	enum smtp_param_status ps = smtp_mail_params_parse(
		rest, rest_len, s->cfg->limits.message_size, &mp, why, sizeof(why));
	if (ps != SMTP_PARAM_OK) {
		char line[256];
		if (ps == SMTP_PARAM_SIZE_LIMIT)
			snprintf(line, sizeof(line), "552 5.3.4 Message size exceeds fixed "
						     "maximum message size");
		else
			snprintf(line, sizeof(line), "%s %s", param_reply(ps),
				 why[0] ? why : "Invalid parameter");
		session_reply_error(s, "MAIL", line);
		return;
	}
	if (addr.has_utf8 && !mp.smtputf8) {
		session_reply_error(s, "MAIL", "553 5.6.7 UTF-8 addresses need the SMTPUTF8 parameter");
		return;
	}
	/* Local submissions (`fulmar sendmail`) may use any sender, as with
	 * sendmail -f: the Received: field names the uid that sent it. */
	bool local = s->listener->role == ROLE_LOCAL;
	if (s->listener->role != ROLE_MX && !local && s->auth_user == NULL) {
		session_reply_error(s, "MAIL", "530 5.7.0 Authentication required");
		return;
	}
	if (s->auth_user &&
	    !config_sender_owned(smtp_server_config(s->srv), s->auth_user, addr.text)) {
		char line[400];
		snprintf(line, sizeof(line), "553 5.7.1 Sender address rejected: not owned by "
					     "user %s", s->auth_user);
		session_reply_error(s, "MAIL", line);
		return;
	}
	if (storage_low(s, &mp)) {
		session_reply_error(s, "MAIL", "452 4.3.1 Insufficient system storage");
		return;
	}
	session_txn_reset(s);
	if (envelope_set(&s->env.sender, addr.is_null ? "" : addr.text) < 0 ||
	    envelope_set(&s->env.envid, mp.has_envid ? mp.envid : NULL) < 0 ||
	    envelope_set(&s->env.auth, mp.has_auth ? mp.auth : NULL) < 0 ||
	    !start_inbound_checks(s)) {
		session_txn_reset(s);
		session_reply_oom(s, "MAIL");
		return;
	}
	s->env.smtputf8 = mp.smtputf8;
	s->env.body = mp.body;
	s->env.ret = mp.ret;
	session_set_state(s, S_MAIL);
	session_reply(s, "250 2.1.0 Ok");
}

/* The final addresses of one RCPT into the envelope (once each), all or
 * none: 0, or -1 when memory ran out (what this RCPT added is taken back). */
static int add_finals(struct smtp_session *s, const struct rcpt_finals *finals,
		      const char *orig, const struct smtp_rcpt_params *rp)
{
	size_t before = s->env.nrcpts;
	for (size_t i = 0; i < finals->n; i++) {
		if (envelope_find_rcpt(&s->env, finals->items[i]) >= 0)
			continue;
		if (envelope_add_rcpt(&s->env, finals->items[i], orig,
				      rp->has_orcpt ? rp->orcpt : NULL, rp->notify) < 0) {
			envelope_truncate_rcpts(&s->env, before);
			return -1;
		}
	}
	return 0;
}

/* "<postmaster>" without a domain (RFC 5321 4.1.1.3). */
static bool is_bare_postmaster(const char *p, size_t len)
{
	return len >= 12 && strncasecmp(p, "<postmaster>", 12) == 0;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg, size_t len)
{
	long off = smtp_cmd_path_offset(arg, len, "TO:");
	if (off < 0) {
		session_reply_error(s, "RCPT", "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->rcpt_cmds >= s->cfg->limits.recipients) {
		session_reply_error(s, "RCPT", "452 4.5.3 Error: too many recipients");
		return;
	}
	struct smtp_addr addr;
	size_t used;
	struct config *cur = smtp_server_config(s->srv);
	enum smtp_addr_status as = smtp_addr_parse(arg + off, len - (size_t)off, false,
						   true, &addr, &used);
	if (as != SMTP_ADDR_OK && is_bare_postmaster(arg + off, len - (size_t)off) &&
	    cur->ndomains > 0) {
		memset(&addr, 0, sizeof(addr));
		strlcpy_safe(addr.local, "postmaster", sizeof(addr.local));
		strlcpy_safe(addr.domain, cur->domains[0].name, sizeof(addr.domain));
		snprintf(addr.text, sizeof(addr.text), "postmaster@%s", addr.domain);
		used = 12;
		as = SMTP_ADDR_OK;
	}
	if (as != SMTP_ADDR_OK) {
		session_reply_error(s, "RCPT", as == SMTP_ADDR_NULL_DENIED
				       ? "501 5.1.3 Null recipient address not allowed"
				       : "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (addr.has_utf8 && !s->env.smtputf8) {
		session_reply_error(s, "RCPT", "553 5.6.7 UTF-8 addresses need SMTPUTF8 on MAIL");
		return;
	}
	const char *rest = arg + off + used;
	size_t rest_len = len - (size_t)off - used;
	if (rest_len > 0 && (rest[0] != ' ' || !s->esmtp)) {
		session_reply_error(s, "RCPT", rest[0] != ' '
				       ? "501 5.5.4 Syntax: RCPT TO:<address> [parameters]"
				       : "555 5.5.4 Parameters need EHLO");
		return;
	}
	struct smtp_rcpt_params rp;
	char why[128] = "";
	enum smtp_param_status ps = smtp_rcpt_params_parse(rest, rest_len, s->env.smtputf8,
							   &rp, why, sizeof(why));
	if (ps != SMTP_PARAM_OK) {
		char line[256];
		snprintf(line, sizeof(line), "%s %s", param_reply(ps),
			 why[0] ? why : "Invalid parameter");
		session_reply_error(s, "RCPT", line);
		return;
	}
	struct rcpt_finals finals = { 0 };
	switch (recipient_resolve(cur, &addr, &finals)) {
	case RCPT_REMOTE:
		if (s->auth_user == NULL && s->listener->role != ROLE_LOCAL &&
		    !s->relay_network) {
			session_reply_error(s, "RCPT", "554 5.7.1 Relay access denied");
			return;
		}
		/* An authenticated user or a local one relays: the outbound
		 * engine's. */
		char low[sizeof(addr.text)];
		strlcpy_safe(low, addr.text, sizeof(low));
		for (char *p = strrchr(low, '@'); p && *p; p++)
			*p = (char)tolower((unsigned char)*p);
		rcpt_finals_add(&finals, low);
		if (finals.failed) {
			rcpt_finals_free(&finals);
			session_reply_oom(s, "RCPT");
			return;
		}
		break;
	case RCPT_RELAY_DENIED:
		session_reply_error(s, "RCPT", "554 5.7.1 Relay access denied");
		return;
	case RCPT_UNKNOWN_USER:
		session_reply_error(s, "RCPT", "550 5.1.1 User unknown in local recipient table");
		return;
	case RCPT_NO_MEMORY:
		session_reply_oom(s, "RCPT");
		return;
	case RCPT_ACCEPT:
		break;
	}
	size_t hard_cap = s->cfg->limits.recipients * 2 + RCPT_EXPANSION_MAX;
	if (s->env.nrcpts + finals.n > hard_cap) {
		rcpt_finals_free(&finals);
		session_reply_error(s, "RCPT", "452 4.5.3 Error: too many recipients");
		return;
	}
	int added = add_finals(s, &finals, addr.text, &rp);
	rcpt_finals_free(&finals);
	if (added < 0) {
		session_reply_oom(s, "RCPT");
		return;
	}
	if (s->rcpt_cmds++ == 0)
		strlcpy_safe(s->first_rcpt, addr.text, sizeof(s->first_rcpt));
	session_set_state(s, S_RCPT);
	session_reply(s, "250 2.1.5 Ok");
}

/* DATA or the first BDAT, when the message could not be started (errno
 * err of open_txn): the transaction is over. */
static void refuse_content(struct smtp_session *s, const char *what, int err)
{
	if (err == ENOMEM)
		session_reply_oom(s, what);
	else
		session_reply_error(s, what, session_storage_error_reply(err, true));
	session_back_to_ready(s);
}

static void cmd_data(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (len > 0) {
		session_reply_error(s, "DATA", "501 5.5.4 Syntax: DATA (no arguments)");
		return;
	}
	int oerr = session_open_txn(s);
	if (oerr != 0) {
		refuse_content(s, "DATA", oerr);
		return;
	}
	data_reader_init(&s->dr, true, s->cfg->limits.text_line, s->cfg->limits.message_size);
	session_set_state(s, S_DATA);
	conn_set_read_timeout(s->conn, s->cfg->timeouts.data);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void bdat_chunk_done(struct smtp_session *s, uint64_t size);

static void cmd_bdat(struct smtp_session *s, const char *arg, size_t len)
{
	uint64_t size;
	bool last;
	if (!smtp_bdat_parse(arg, len, &size, &last)) {
		session_reply_error(s, "BDAT", "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
		return;
	}
	if (s->state != S_RCPT && s->state != S_BDAT) {
		/* Refused, but its octets follow: skip them to stay in step. */
		s->discard = size;
		session_reply_error(s, "BDAT", s->state == S_MAIL ? "503 5.5.1 Error: need RCPT command"
				       : "503 5.5.1 Error: need MAIL and RCPT commands");
		return;
	}
	if (s->state == S_RCPT) {
		int oerr = session_open_txn(s);
		if (oerr != 0) {
			s->discard = size;
			refuse_content(s, "BDAT", oerr);
			return;
		}
		data_reader_init(&s->dr, false, s->cfg->limits.text_line,
				 s->cfg->limits.message_size);
	}
	s->bdat_left = size;
	s->bdat_last = last;
	session_set_state(s, S_BDAT_CHUNK);
	conn_set_read_timeout(s->conn, s->cfg->timeouts.data);
	if (size == 0)
		bdat_chunk_done(s, 0);
}

static void bdat_chunk_done(struct smtp_session *s, uint64_t size)
{
	if (s->dr.error != DATA_ERR_NONE) {
		session_content_done(s, "BDAT", s->dr.error);
		return;
	}
	if (s->bdat_last) {
		session_content_done(s, "BDAT", data_reader_finish(&s->dr));
		return;
	}
	session_set_state(s, S_BDAT);
	conn_set_read_timeout(s->conn, s->cfg->timeouts.command);
	session_replyf(s, "250 2.0.0 %llu octets received", (unsigned long long)size);
}

static void cmd_rset(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	session_back_to_ready(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	session_reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	session_reply(s, "221 2.0.0 Bye");
	session_txn_reset(s);
	session_close_after_flush(s);
}

static void cmd_help(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	session_reply(s, "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
	session_reply(s, "214 2.0.0 See RFC 5321");
}

static void cmd_vrfy(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (len == 0) {
		session_reply_error(s, "VRFY", "501 5.5.4 Syntax: VRFY address");
		return;
	}
	session_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_starttls(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (s->tls_ctx == NULL && !conn_is_tls(s->conn)) {
		session_reply_error(s, "STARTTLS", "502 5.5.1 Error: command not implemented");
		return;
	}
	if (conn_is_tls(s->conn)) {
		session_reply_error(s, "STARTTLS", "503 5.5.1 Error: TLS already active");
		return;
	}
	if (len > 0) {
		session_reply_error(s, "STARTTLS", "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->state != S_READY && s->state != S_INIT) {
		session_reply_error(s, "STARTTLS", "503 5.5.1 Error: STARTTLS in a mail transaction");
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	conn_flush(s->conn);
	if (conn_pending_output(s->conn) > 0) {
		/* The 220 must go out in the clear before the handshake. */
		session_close_after_flush(s);
		return;
	}
	SSL_CTX *ctx = s->tls_ctx;
	s->tls_ctx = NULL;
	/* Discards whatever the client pipelined behind STARTTLS: it must
	 * never be taken as having come inside TLS (CVE-2011-0411). */
	conn_start_tls(s->conn, ctx);
	SSL_CTX_free(ctx); /* the connection's SSL holds its own reference */
	conn_set_read_timeout(s->conn, s->cfg->timeouts.tls_handshake);
	s->paused = true; /* until the handshake is done */
}

static void cmd_not_implemented(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	session_reply_error(s, "?", "502 5.5.1 Error: command not implemented");
}

/* ---- the command table ---- */

#define IN(st) (1u << (st))
#define ANY_IDLE (IN(S_INIT) | IN(S_READY) | IN(S_MAIL) | IN(S_RCPT) | IN(S_BDAT))

struct command {
	enum smtp_verb verb;
	unsigned states; /* where it is allowed */
	void (*handler)(struct smtp_session *s, const char *arg, size_t len);
};

static const struct command commands[] = {
	{ SMTP_VERB_EHLO, ANY_IDLE, cmd_ehlo },
	{ SMTP_VERB_HELO, ANY_IDLE, cmd_helo_only },
	{ SMTP_VERB_MAIL, IN(S_READY), cmd_mail },
	{ SMTP_VERB_RCPT, IN(S_MAIL) | IN(S_RCPT), cmd_rcpt },
	{ SMTP_VERB_DATA, IN(S_RCPT), cmd_data },
	{ SMTP_VERB_BDAT, ANY_IDLE, cmd_bdat }, /* checks its state itself */
	{ SMTP_VERB_RSET, ANY_IDLE, cmd_rset },
	{ SMTP_VERB_NOOP, ANY_IDLE, cmd_noop },
	{ SMTP_VERB_QUIT, ANY_IDLE, cmd_quit },
	{ SMTP_VERB_HELP, ANY_IDLE, cmd_help },
	{ SMTP_VERB_VRFY, ANY_IDLE, cmd_vrfy },
	{ SMTP_VERB_EXPN, ANY_IDLE, cmd_not_implemented },
	{ SMTP_VERB_STARTTLS, ANY_IDLE, cmd_starttls },
	{ SMTP_VERB_AUTH, ANY_IDLE, session_cmd_auth }, /* checks its state itself */
};

static const char *sequence_error(const struct smtp_session *s, enum smtp_verb verb)
{
	if (s->state == S_INIT)
		return "503 5.5.1 Error: send HELO/EHLO first";
	switch (verb) {
	case SMTP_VERB_MAIL:
		return s->state == S_BDAT ? "503 5.5.1 Error: BDAT transfer in progress"
					  : "503 5.5.1 Error: nested MAIL command";
	case SMTP_VERB_RCPT:
		return s->state == S_BDAT ? "503 5.5.1 Error: BDAT transfer in progress"
					  : "503 5.5.1 Error: need MAIL command";
	case SMTP_VERB_DATA:
		return s->state == S_BDAT  ? "503 5.5.1 Error: DATA not allowed after BDAT"
		       : s->state == S_MAIL ? "503 5.5.1 Error: need RCPT command"
					    : "503 5.5.1 Error: need MAIL command";
	default:
		return "503 5.5.1 Error: bad sequence of commands";
	}
}

static void handle_line(struct smtp_session *s, const char *line, size_t len)
{
	if (s->state == S_AUTH) {
		session_auth_response(s, line, len);
		return;
	}
	struct smtp_cmd cmd;
	bool bad = false;
	smtp_cmd_parse(line, len, &cmd, &bad);
	if (bad) {
		session_reply_error(s, "?", "500 5.5.2 Error: bad character in command");
		return;
	}
	if (cmd.verb == SMTP_VERB_UNKNOWN) {
		session_reply_error(s, "?", "500 5.5.2 Error: command not recognized");
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (c->verb != cmd.verb)
			continue;
		if (!(c->states & IN(s->state))) {
			session_reply_error(s, smtp_cmd_verb_name(cmd.verb),
				    sequence_error(s, cmd.verb));
			return;
		}
		c->handler(s, cmd.arg, cmd.arg_len);
		return;
	}
	session_reply_error(s, "?", "502 5.5.1 Error: command not implemented");
}

/* ---- input ---- */

/* Feed available input to the content reader. True when progress. */
static bool feed_content(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v[16];
	int n = evbuffer_peek(in, -1, NULL, v, 16);
	size_t used = 0;
	bool done = false;
	bool bdat = s->state == S_BDAT_CHUNK;
	for (int i = 0; i < n && !done; i++) {
		size_t len = v[i].iov_len;
		if (bdat && len > s->bdat_left - used)
			len = (size_t)(s->bdat_left - used);
		used += data_reader_feed(&s->dr, v[i].iov_base, len, session_content_sink, s, &done);
		if (bdat && used == s->bdat_left)
			break;
	}
	evbuffer_drain(in, used);
	if (bdat) {
		uint64_t chunk = s->bdat_left;
		s->bdat_left -= used;
		if (s->bdat_left == 0) {
			bdat_chunk_done(s, chunk);
			return true;
		}
		return used > 0;
	}
	if (done)
		session_content_done(s, "DATA", s->dr.error);
	return done || used > 0;
}

static bool read_command(struct smtp_session *s, struct evbuffer *in)
{
	size_t limit = s->state == S_AUTH ? AUTH_LINE_MAX + 2 : s->cfg->limits.command_line;
	size_t avail = evbuffer_get_length(in);
	struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
	if (s->skip_line) {
		if (p.pos < 0) {
			evbuffer_drain(in, avail);
			return false;
		}
		evbuffer_drain(in, (size_t)p.pos + 1);
		s->skip_line = false;
		return true;
	}
	if (p.pos < 0) {
		if (avail >= limit) {
			evbuffer_drain(in, avail);
			s->skip_line = true;
			if (s->state == S_AUTH)
				session_set_state(s, S_READY); /* the exchange is over */
			session_reply_error(s, "?", "500 5.5.2 Error: line too long");
		}
		return false;
	}
	size_t n = (size_t)p.pos + 1;
	if (n > limit) {
		evbuffer_drain(in, n);
		if (s->state == S_AUTH)
			session_set_state(s, S_READY); /* the exchange is over */
		session_reply_error(s, "?", "500 5.5.2 Error: line too long");
		return true;
	}
	char line[65537]; /* limits.command_line is at most 65536 */
	evbuffer_remove(in, line, n);
	n--; /* the LF */
	if (n > 0 && line[n - 1] == '\r')
		n--;
	handle_line(s, line, n);
	return true;
}

static void on_cmd_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	if (s->state == S_CLOSING || s->state == S_COMMIT || s->paused)
		return;
	session_reply(s, "421 4.4.2 Timeout: command line not completed, closing connection");
	session_log_reject(s, "-", "421 4.4.2 command line not completed in time");
	session_txn_reset(s);
	session_close_after_flush(s);
	session_settle(s);
}

/* A command line started and not ended: arm its deadline (once); a
 * complete one disarms it. */
static void watch_partial_command(struct smtp_session *s, bool progress)
{
	if (progress) {
		if (s->cmd_deadline)
			evtimer_del(s->cmd_deadline);
		return;
	}
	if (evbuffer_get_length(conn_input(s->conn)) == 0)
		return;
	if (s->cmd_deadline == NULL &&
	    (s->cmd_deadline = evtimer_new(smtp_server_base(s->srv), on_cmd_deadline, s)) == NULL) {
		close_oom(s, "command"); /* no deadline to hold the line to */
		return;
	}
	if (!evtimer_pending(s->cmd_deadline, NULL)) {
		double t = s->cfg->timeouts.command;
		struct timeval tv = { (time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6) };
		evtimer_add(s->cmd_deadline, &tv);
	}
}

void session_process(struct smtp_session *s)
{
	struct evbuffer *in = conn_input(s->conn);
	struct evbuffer *out = conn_output(s->conn);
	while (s->state != S_CLOSING && !s->paused) {
		if (smtp_server_stopping(s->srv) &&
		    (s->state == S_INIT || s->state == S_READY)) {
			session_reply(s, "421 4.3.2 Service shutting down, closing connection");
			session_close_after_flush(s);
			return;
		}
		if (evbuffer_get_length(out) > OUTPUT_PAUSE)
			return; /* resumed by the write callback */
		if (evbuffer_get_length(in) == 0)
			return;
		if (s->discard > 0) {
			size_t n = evbuffer_get_length(in);
			if (n > s->discard)
				n = (size_t)s->discard;
			evbuffer_drain(in, n);
			s->discard -= n;
			continue;
		}
		bool content = s->state == S_DATA || s->state == S_BDAT_CHUNK;
		bool progress = content ? feed_content(s, in) : read_command(s, in);
		if (!content)
			watch_partial_command(s, progress);
		if (!progress)
			return;
	}
}

/* ---- event callbacks ---- */

static void on_readable(void *arg)
{
	struct smtp_session *s = arg;
	session_process(s);
	session_settle(s);
}

static void on_drained(void *arg)
{
	struct smtp_session *s = arg;
	if (s->state != S_CLOSING)
		session_process(s); /* output drained: resume pipelined input */
	session_settle(s);
}

static void on_conn_event(void *arg, enum conn_event what)
{
	struct smtp_session *s = arg;
	if (what == CONN_READ_TIMEOUT && s->state != S_CLOSING &&
	    !conn_handshaking(s->conn)) {
		session_reply(s, "421 4.4.2 Timeout exceeded, closing connection");
		session_log_reject(s, "-", "421 4.4.2 timeout");
		session_txn_reset(s);
		session_close_after_flush(s);
		session_settle(s);
		return;
	}
	if (conn_handshaking(s->conn) || conn_tls_error(s->conn)[0]) {
		struct log_line l;
		log_begin(&l, LOG_INFO, "tls_failed");
		log_int(&l, "sid", (long long)s->sid);
		log_str(&l, "client", s->client);
		log_str(&l, "reason", conn_tls_error(s->conn)[0] ? conn_tls_error(s->conn)
							      : what == CONN_READ_TIMEOUT
								? "handshake timeout"
								: "connection closed during the handshake");
		log_end(&l);
	}
	close_now(s); /* EOF, error, or output stuck */
}

/* The handshake is done: forget everything said before it (RFC 3207 4.2):
 * the client must say EHLO again. */
static void on_tls_ready(void *arg)
{
	struct smtp_session *s = arg;
	session_txn_reset(s);
	free(s->env.helo);
	s->env.helo = NULL;
	s->esmtp = false;
	s->paused = false;
	free(s->auth_user); /* RFC 3207: nothing learned before TLS counts */
	s->auth_user = NULL;
	session_set_state(s, S_INIT);
	conn_set_read_timeout(s->conn, s->cfg->timeouts.command);
	if (s->greet_after_tls) {
		s->greet_after_tls = false;
		session_replyf(s, "220 %s ESMTP Fulmar", s->cfg->hostname);
	}
	struct log_line l;
	log_begin(&l, LOG_INFO, "tls");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "client", s->client);
	log_str(&l, "version", conn_tls_version(s->conn));
	log_str(&l, "cipher", conn_tls_cipher(s->conn));
	log_end(&l);
	session_process(s);
	session_settle(s);
}

static const struct conn_callbacks session_io = { on_readable, on_drained, on_conn_event,
						  on_tls_ready };

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)fd;
	(void)what;
	if (s->state == S_COMMIT) {
		s->close_after_commit = "421 4.4.2 Session time limit exceeded, closing connection";
		return;
	}
	if (s->state == S_CLOSING)
		return;
	session_reply(s, "421 4.4.2 Session time limit exceeded, closing connection");
	session_log_reject(s, "-", "421 4.4.2 session deadline");
	session_txn_reset(s);
	session_close_after_flush(s);
	session_settle(s);
}

/* ---- life cycle ---- */

static void close_now(struct smtp_session *s)
{
	/* Waiting for SPF/DKIM/DMARC is not a commit in flight: txn_reset
	 * below cancels it, and nothing will call back. */
	bool waiting_verdict = s->verifying;
	struct log_line l;
	log_begin(&l, LOG_INFO, "disconnect");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "client", s->client);
	log_int(&l, "messages", s->messages);
	log_int(&l, "errors", s->errors);
	log_end(&l);
	session_txn_reset(s);
	dns_cancel(s->rdns_query);
	s->rdns_query = NULL;
	smtp_server_cancel_check(s->auth_check);
	s->auth_check = NULL;
	if (s->auth_delay) {
		event_free(s->auth_delay);
		s->auth_delay = NULL;
	}
	if (s->cmd_deadline) {
		event_free(s->cmd_deadline);
		s->cmd_deadline = NULL;
	}
	if (s->deadline) {
		event_free(s->deadline);
		s->deadline = NULL;
	}
	conn_free(s->conn);
	s->conn = NULL;
	smtp_server_session_closed(s->srv, s);
	if (s->state == S_COMMIT && !waiting_verdict) {
		s->detached = true; /* a commit is in flight: on_committed frees it */
		return;
	}
	session_free(s);
}

/* The memory of a session whose connection is gone (close_now has run). */
void session_free(struct smtp_session *s)
{
	free(s->log_from);
	free(s->rdns);
	free(s->auth_user);
	free(s->hdr_buf);
	SSL_CTX_free(s->tls_ctx);
	envelope_free(&s->env);
	config_unref(s->cfg);
	free(s);
}

static void on_rdns(void *arg, const char *name)
{
	struct smtp_session *s = arg;
	s->rdns_query = NULL;
	if (name == NULL)
		return;
	/* Without it Received: says "unknown": the session can go on. */
	s->rdns = mem_strdup(name);
	if (s->rdns == NULL)
		session_log_oom(s->sid, s->client, NULL, "rdns");
}

/* No memory for the session or its connection: say so on the bare
 * socket, best effort (it is new: its buffer has room), and close it. */
static void refuse_oom(int fd, const struct config *cfg, uint64_t sid, const char *client)
{
	session_log_oom(sid, client, NULL, "connect");
	char line[512];
	int n = snprintf(line, sizeof(line),
			 "421 4.3.0 %s Out of memory, closing connection\r\n", cfg->hostname);
	if (n > 0 && (size_t)n < sizeof(line) &&
	    send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* nothing to do: the client goes anyway */
	}
	close(fd);
}

struct smtp_session *smtp_session_new(struct smtp_server *srv, struct config *cfg,
				      int fd, const struct sockaddr *sa,
				      socklen_t salen, uint64_t sid,
				      const struct smtp_listener_info *listener,
				      const char *reject_reply)
{
	(void)salen;
	struct smtp_session *s = mem_calloc(1, sizeof(*s));
	if (s == NULL) {
		char client[NETADDR_TEXT_MAX] = "localhost";
		if (listener->role != ROLE_LOCAL)
			netaddr_text(sa, client, sizeof(client));
		refuse_oom(fd, cfg, sid, client);
		return NULL;
	}
	s->srv = srv;
	s->cfg = config_ref(cfg);
	s->sid = sid;
	s->listener = listener;
	/* Our own reference: a reload may replace the listener's context. */
	s->tls_ctx = listener->role == ROLE_SUBMISSIONS ? NULL : listener->tls;
	if (s->tls_ctx)
		SSL_CTX_up_ref(s->tls_ctx);
	envelope_init(&s->env);
	s->peer_uid = -1;
	bool local = listener->role == ROLE_LOCAL;
	if (local) {
		strlcpy_safe(s->client, "localhost", sizeof(s->client));
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			s->peer_uid = (long)cred.uid;
	} else {
		s->client_port = netaddr_text(sa, s->client, sizeof(s->client));
	}
	s->relay_network = config_relay_client(cfg, sa);
	struct event_base *base = smtp_server_base(srv);
	if (envelope_set(&s->env.client_addr, s->client) < 0 ||
	    (s->conn = conn_new(base, fd, &session_io, s, INPUT_HIGH)) == NULL ||
	    (s->deadline = evtimer_new(base, on_deadline, s)) == NULL) {
		refuse_oom(fd, cfg, sid, s->client);
		session_free(s);
		return NULL;
	}
	if (smtp_server_session_register(srv, s) < 0) {
		close_oom(s, "connect"); /* never registered: close_now knows */
		session_settle(s);
		return NULL;
	}
	struct log_line l;
	log_begin(&l, LOG_INFO, "connect");
	log_int(&l, "sid", (long long)sid);
	log_str(&l, "client", s->client);
	if (local)
		log_int(&l, "uid", s->peer_uid);
	else
		log_int(&l, "port", s->client_port);
	log_end(&l);
	if (reject_reply) {
		session_reply(s, reject_reply);
		session_log_reject(s, "connect", reject_reply);
		session_close_after_flush(s);
		session_settle(s); /* may free s */
		return NULL;
	}
	struct timeval tv = { (time_t)cfg->timeouts.session,
			      (suseconds_t)((cfg->timeouts.session -
					     (double)(time_t)cfg->timeouts.session) * 1e6) };
	evtimer_add(s->deadline, &tv);
	conn_set_read_timeout(s->conn, cfg->timeouts.command);
	conn_set_write_timeout(s->conn, cfg->timeouts.command);
	/* The name is looked up while the client talks; Received: uses it if
	 * it has arrived by then, "unknown" otherwise. */
	if (cfg->dns.reverse_lookups && smtp_server_dns(srv) && !local)
		s->rdns_query = dns_reverse_verified(smtp_server_dns(srv), sa, on_rdns, s);
	if (listener->role == ROLE_SUBMISSIONS && listener->tls) {
		/* Implicit TLS (RFC 8314): the handshake first, then the 220. */
		s->greet_after_tls = true;
		s->paused = true;
		conn_start_tls(s->conn, listener->tls);
		conn_set_read_timeout(s->conn, cfg->timeouts.tls_handshake);
		return s;
	}
	session_replyf(s, "220 %s ESMTP Fulmar", cfg->hostname);
	conn_start_reading(s->conn);
	conn_flush(s->conn); /* the greeting goes out now */
	return s;
}

void smtp_session_shutdown(struct smtp_session *s)
{
	if (s->state == S_CLOSING || s->paused)
		return;
	if (s->state == S_INIT || s->state == S_READY) {
		session_process(s); /* sends 421 and closes */
		session_settle(s);
	}
}

void smtp_session_abort(struct smtp_session *s)
{
	if (s->state == S_CLOSING)
		return;
	if (s->state == S_COMMIT) {
		s->close_after_commit = "421 4.3.2 Service shutting down, closing connection";
		return;
	}
	session_reply(s, "421 4.3.2 Service shutting down, closing connection");
	session_txn_reset(s);
	session_close_after_flush(s);
	session_settle(s);
}
