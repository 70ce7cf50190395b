/*
 * session_txn: the transaction of an SMTP session once its envelope is
 * known: where the content goes (the queue, or straight into local
 * Maildirs), the header section held for submitted mail (completed, a
 * forged Authentication-Results removed), the commit and its reply, and
 * the inbound checks' verdict. The rest of the session is smtp_session.c
 * (session.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "delivery/local_txn.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/monotime.h"
#include "lib/xalloc.h"
#include "proto/data_reader.h"
#include "queue/envelope.h"
#include "queue/queue.h"
#include "signer/signing.h"
#include "smtp/inbound_auth.h"
#include "smtp/received.h"
#include "smtp/session.h"
#include "smtp/smtp_server.h"

#define HEADER_HOLD_MAX (64u * 1024) /* header held to complete it, or to check it */
#define HEADER_HOLD_FIRST 4096u       /* its buffer's first size (doubled as needed) */

/* The held header section is no longer needed. */
static void drop_header(struct smtp_session *s)
{
	free(s->hdr_buf);
	s->hdr_buf = NULL;
	s->hdr_len = s->hdr_cap = 0;
}

void session_txn_reset(struct smtp_session *s)
{
	if (s->txn) {
		queue_txn_abort(s->txn);
		s->txn = NULL;
	}
	if (s->ltxn) {
		local_txn_abort(s->ltxn);
		s->ltxn = NULL;
	}
	signing_free(s->sign);
	s->sign = NULL;
	inbound_auth_free(s->inauth);
	s->inauth = NULL;
	s->verifying = false;
	envelope_reset(&s->env);
	drop_header(s);
	s->hdr_overlong = false;
	s->rcpt_cmds = 0;
	s->first_rcpt[0] = '\0';
	s->bdat_left = 0;
	s->bdat_last = false;
}

void session_back_to_ready(struct smtp_session *s)
{
	session_txn_reset(s);
	session_set_state(s, s->esmtp || s->env.helo ? S_READY : S_INIT);
	conn_set_read_timeout(s->conn, s->cfg->timeouts.command);
}

static void write_content(struct smtp_session *s, const char *buf, size_t len)
{
	if (s->ltxn) {
		local_txn_write(s->ltxn, buf, len);
		return;
	}
	queue_txn_write(s->txn, buf, len);
	if (s->sign)
		signing_feed(s->sign, buf, len);
}

/* Is there a header field "name:" at the start of a line of h? */
static bool has_field(const char *h, size_t len, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i + n <= len;) {
		if (strncasecmp(h + i, name, n) == 0)
			return true;
		const char *nl = memchr(h + i, '\n', len - i);
		if (nl == NULL)
			break;
		i = (size_t)(nl - h) + 1;
	}
	return false;
}

/*
 * Inbound (mx) with checks: write the held header section without the
 * Authentication-Results fields that claim our authserv-id (RFC 8601 §5:
 * forgeries, or left over from a previous pass). Fields are whole lines
 * with their continuation lines; scope is the header section's length.
 */
static void write_header_without_our_ar(struct smtp_session *s, const char *h, size_t len,
					size_t scope)
{
	const char *id = s->cfg->inbound.authserv_id ? s->cfg->inbound.authserv_id
						     : s->cfg->hostname;
	size_t i = 0, kept = 0, dropped = 0;
	while (i < scope) {
		size_t end = i;
		do {
			const char *nl = memchr(h + end, '\n', scope - end);
			end = nl ? (size_t)(nl - h) + 1 : scope;
		} while (end < scope && (h[end] == ' ' || h[end] == '\t'));
		if (inbound_auth_is_ours(h + i, end - i, id)) {
			if (i > kept)
				write_content(s, h + kept, i - kept);
			kept = end;
			dropped++;
		}
		i = end;
	}
	write_content(s, h + kept, len - kept);
	if (dropped > 0)
		log_msg(LOG_INFO, "ar_removed", "sid=%llu: %zu Authentication-Results field%s "
			"claiming %s removed", (unsigned long long)s->sid, dropped,
			dropped == 1 ? "" : "s", id);
}

/*
 * The header section is held back (at most HEADER_HOLD_MAX octets) until
 * its end is seen, then released. Submission (RFC 6409 8.2, 8.3): a
 * message without Message-ID: or Date: gets ours, in front of it.
 * Inbound with checks: the checks read it from here (they keep no copy
 * of their own), then it is written without our forged
 * Authentication-Results. A header section longer than the hold is
 * passed on as it is. -1 when the checks ran out of memory.
 */
static int release_header(struct smtp_session *s)
{
	s->hdr_done = true;
	const char *h = s->hdr_buf ? s->hdr_buf : ""; /* none held: an empty message */
	size_t len = s->hdr_len;
	if (s->inauth && inbound_auth_feed_header(s->inauth, h, len) < 0)
		return -1;
	const char *end = len >= 2 && h[0] == '\r' && h[1] == '\n' ? h : NULL;
	if (end == NULL && len >= 4)
		end = memmem(h, len, "\r\n\r\n", 4);
	size_t scope = end ? (size_t)(end - h) : (s->hdr_len < HEADER_HOLD_MAX ? len : 0);
	if (s->listener->role == ROLE_MX) {
		write_header_without_our_ar(s, h, len, scope);
		drop_header(s);
		return 0;
	}
	char add[512];
	size_t n = 0;
	if (scope > 0 || end == h) {
		if (!has_field(h, scope, "message-id:"))
			n += (size_t)snprintf(add + n, sizeof(add) - n,
					      "Message-ID: <%s.%lld@%s>\r\n", s->hdr_id,
					      (long long)time(NULL), s->cfg->hostname);
		if (!has_field(h, scope, "date:")) {
			char date[64];
			received_date(date, sizeof(date), time(NULL));
			n += (size_t)snprintf(add + n, sizeof(add) - n, "Date: %s\r\n", date);
		}
	}
	if (n > 0)
		write_content(s, add, n);
	write_content(s, h, len);
	drop_header(s);
	return 0;
}

/* The octet at i of the held octets followed by buf. */
static char held_then(const struct smtp_session *s, const char *buf, size_t i)
{
	return i < s->hdr_len ? s->hdr_buf[i] : buf[i - s->hdr_len];
}

/* How many octets of buf, after the held ones, end the header section
 * with its empty line ("\r\n" at the very start, or "\r\n\r\n"); 0
 * when it does not end in buf. */
static size_t header_end(const struct smtp_session *s, const char *buf, size_t len)
{
	for (const char *lf = memchr(buf, '\n', len); lf != NULL;
	     lf = memchr(lf + 1, '\n', len - (size_t)(lf + 1 - buf))) {
		size_t past = s->hdr_len + (size_t)(lf - buf) + 1; /* octets through lf */
		if (past >= 2 && held_then(s, buf, past - 2) == '\r' &&
		    (past == 2 || (past >= 4 && held_then(s, buf, past - 3) == '\n' &&
				   held_then(s, buf, past - 4) == '\r')))
			return (size_t)(lf - buf) + 1;
	}
	return 0;
}

/* Appends buf to the held header section, its buffer grown as needed:
 * twice its size or what is needed, at least HEADER_HOLD_FIRST, never
 * past HEADER_HOLD_MAX (the caller takes no more). -1 when memory ran
 * out. */
static int hold(struct smtp_session *s, const char *buf, size_t n)
{
	size_t need = s->hdr_len + n;
	if (n == 0)
		return 0;
	if (need > s->hdr_cap) {
		size_t cap = 2 * s->hdr_cap > need ? 2 * s->hdr_cap : need;
		if (cap < HEADER_HOLD_FIRST)
			cap = HEADER_HOLD_FIRST;
		if (cap > HEADER_HOLD_MAX)
			cap = HEADER_HOLD_MAX;
		char *grown = mem_realloc(s->hdr_buf, cap);
		if (grown == NULL)
			return -1;
		s->hdr_buf = grown;
		s->hdr_cap = cap;
	}
	memcpy(s->hdr_buf + s->hdr_len, buf, n);
	s->hdr_len = need;
	return 0;
}

/* Octets after the header section (or the hold): to the checks, then on. */
static int pass_on(struct smtp_session *s, const char *buf, size_t len)
{
	if (s->inauth && inbound_auth_feed(s->inauth, buf, len) < 0)
		return -1;
	write_content(s, buf, len);
	return 0;
}

/* Content octets, in order. -1 when memory ran out: data_reader then
 * swallows the rest of the content and content_done answers 451. */
int session_content_sink(void *arg, const char *buf, size_t len)
{
	struct smtp_session *s = arg;
	if (s->hdr_overlong)
		return 0;
	if (s->hdr_done)
		return pass_on(s, buf, len);
	/* Only what fits the hold is looked at: an end past it is too far. */
	size_t room = HEADER_HOLD_MAX - s->hdr_len;
	size_t end = header_end(s, buf, len < room ? len : room);
	size_t take = end > 0 ? end : (len < room ? len : room);
	if (hold(s, buf, take) < 0)
		return -1;
	/* Ended, or the hold is full (when the end is past it). */
	bool ended = end > 0;
	if (!ended && s->hdr_len < HEADER_HOLD_MAX)
		return 0;
	if (!ended && s->listener->role == ROLE_MX && s->inauth) {
		/* Past the hold, a forged Authentication-Results field could
		 * not be taken out: the rest is dropped, the message refused
		 * at its end (session_content_done). */
		s->hdr_done = s->hdr_overlong = true;
		drop_header(s);
		return 0;
	}
	if (release_header(s) < 0)
		return -1;
	return take < len ? pass_on(s, buf + take, len - take) : 0;
}

/*
 * Deliver at receipt when every recipient is a local mailbox (and there
 * are not too many): the copies go straight into the Maildirs, with the
 * same durability promise as the queue and half the file operations.
 */
static bool open_local_txn(struct smtp_session *s)
{
	struct config *cur = smtp_server_config(s->srv);
	struct local_committer *lc = smtp_server_local_committer(s->srv);
	if (!cur->deliver_at_receipt || lc == NULL || s->env.nrcpts == 0 ||
	    s->env.nrcpts > LOCAL_TXN_MAX_TARGETS)
		return false;
	struct local_target_spec specs[LOCAL_TXN_MAX_TARGETS];
	for (size_t i = 0; i < s->env.nrcpts; i++) {
		const struct cfg_mailbox *mb = config_find_mailbox(cur, s->env.rcpts[i].addr);
		if (mb == NULL)
			return false; /* a forward to a remote address: queue it */
		specs[i].maildir = mb->maildir;
		specs[i].address = s->env.rcpts[i].addr;
	}
	queue_new_id(smtp_server_queue(s->srv), s->ltxn_id, &s->ltxn_arrival_us);
	char err[256];
	s->ltxn = local_txn_begin(lc, s->env.sender ? s->env.sender : "", specs,
				  s->env.nrcpts, (long long)(s->ltxn_arrival_us / 1000000),
				  s->ltxn_id, s->cfg->hostname, err, sizeof(err));
	if (s->ltxn == NULL) {
		/* The queue will retry these deliveries with backoff. */
		log_msg(LOG_WARNING, "deliver_at_receipt_failed", "sid=%llu: %s",
			(unsigned long long)s->sid, err);
		return false;
	}
	return true;
}

/* The reply when the queue file or the Maildir copies could not be
 * created or made durable: a full disk or quota is "insufficient system
 * storage" (RFC 3463 4.3.1, as Postfix says it), anything else a local
 * error in processing. Both are temporary: the client keeps the message. */
const char *session_storage_error_reply(int err, bool creating)
{
	if (err == ENOSPC || err == EDQUOT)
		return "452 4.3.1 Insufficient system storage, try again later";
	return creating ? "451 4.3.0 Error: cannot create queue file, try again later"
			: "451 4.3.0 Error: queue file write error, try again later";
}

/* Create the queue file (or the Maildir copies) and write our Received:.
 * 0, or the errno of the failure. */
int session_open_txn(struct smtp_session *s)
{
	char err[256];
	/* RFC 3848 / RFC 6531 protocol words; S when the session is in TLS. */
	bool tls = conn_is_tls(s->conn);
	char proto_buf[16];
	snprintf(proto_buf, sizeof(proto_buf), "%s%s%s",
		 !s->esmtp ? "SMTP" : s->env.smtputf8 ? "UTF8SMTP" : "ESMTP",
		 tls ? "S" : "", s->auth_user && s->esmtp ? "A" : "");
	const char *proto = proto_buf;
	char tls_info[160];
	snprintf(tls_info, sizeof(tls_info), "%s with cipher %s (%d/%d bits)",
		 conn_tls_version(s->conn), conn_tls_cipher(s->conn),
		 conn_tls_cipher_bits(s->conn), conn_tls_cipher_bits(s->conn));
	size_t nrcpt = s->env.nrcpts;
	char *from = mem_strdup(s->env.sender ? s->env.sender : "");
	if (from == NULL || envelope_set(&s->env.proto, proto) < 0) {
		free(from);
		return ENOMEM;
	}
	const char *id;
	if (s->inauth == NULL && open_local_txn(s)) {
		id = s->ltxn_id;
	} else {
		s->txn = queue_txn_begin(smtp_server_queue(s->srv), &s->env, err, sizeof(err));
		if (s->txn == NULL) {
			int saved = errno ? errno : EIO;
			if (saved != ENOMEM) /* that one is logged as event=oom */
				log_msg(LOG_ERROR, "queue_error", "sid=%llu: %s",
					(unsigned long long)s->sid, err);
			free(from);
			return saved;
		}
		id = queue_txn_id(s->txn);
	}
	free(s->log_from);
	s->log_from = from;
	s->log_nrcpt = nrcpt;
	/* Only submitted mail is completed; mail relayed to us is not ours
	 * to change (its header section is held only for the checks). */
	s->hdr_done = s->listener->role == ROLE_MX && s->inauth == NULL;
	s->hdr_len = 0;
	strlcpy_safe(s->hdr_id, id, sizeof(s->hdr_id));
	/* Submitted mail that goes through the queue (it may leave) is
	 * signed when its sender's domain has keys. The caller's 451 rolls
	 * back the transaction when the signer cannot be had. */
	if (s->txn && (s->listener->role != ROLE_MX || s->auth_user || s->relay_network) &&
	    signing_start(s->cfg, from, id, &s->sign) < 0)
		return ENOMEM;
	char hdr[2048];
	struct received_info ri = {
		.helo = s->env.helo, .rdns = s->rdns, .ip = s->client,
		.host = s->cfg->hostname, .proto = proto, .id = id,
		.rcpt = s->rcpt_cmds == 1 ? s->first_rcpt : NULL, .when = time(NULL),
		.tls = tls ? tls_info : NULL,
		.local = s->listener->role == ROLE_LOCAL, .uid = s->peer_uid,
	};
	size_t n = received_format(hdr, sizeof(hdr), &ri);
	write_content(s, hdr, n);
	return 0;
}

/* The transaction's end was answered: the next command, or the 421 that
 * waited for it. */
static void resume_after_commit(struct smtp_session *s)
{
	s->paused = false;
	session_back_to_ready(s);
	if (s->close_after_commit) {
		session_reply(s, s->close_after_commit);
		session_close_after_flush(s);
		session_settle(s);
		return;
	}
	conn_start_reading(s->conn);
	session_process(s);
	session_settle(s);
}

static void on_committed(void *arg, int err, const char *id)
{
	struct smtp_session *s = arg;
	struct log_line l;
	if (err == 0) {
		log_begin(&l, LOG_INFO, "queued");
		log_str(&l, "id", id);
		log_int(&l, "sid", (long long)s->sid);
		log_str(&l, "client", s->client);
		log_str(&l, "from", s->log_from);
		log_int(&l, "nrcpt", (long long)s->log_nrcpt);
		log_int(&l, "size", (long long)s->log_size);
		log_end(&l);
	}
	if (s->detached) {
		session_free(s);
		return;
	}
	if (err == 0) {
		s->messages++;
		session_replyf(s, "250 2.0.0 Ok: queued as %s", id);
	} else if (err == ENOMEM) { /* no memory for the DKIM signatures or A-R */
		session_log_oom(s->sid, s->client, id, "DATA");
		session_reply(s, OOM_REPLY);
	} else {
		const char *line = session_storage_error_reply(err, false);
		session_reply(s, line);
		session_log_reject(s, "DATA", line);
	}
	resume_after_commit(s);
}

/* Deliver-at-receipt finished: log like the queue and the delivery
 * engine would have (queued, then one delivery line per recipient). */
static void on_local_committed(void *arg, int err)
{
	struct smtp_session *s = arg;
	if (err == 0) {
		double delay = (double)(walltime_us() - s->ltxn_arrival_us) / 1e6;
		for (size_t i = 0; i < s->env.nrcpts; i++) {
			const struct env_rcpt *r = &s->env.rcpts[i];
			struct log_line l;
			log_begin(&l, LOG_INFO, "delivery");
			log_str(&l, "id", s->ltxn_id);
			log_str(&l, "to", r->addr);
			if (strcmp(r->orig, r->addr) != 0)
				log_str(&l, "orig_to", r->orig);
			log_str(&l, "relay", "local");
			log_seconds(&l, "delay", delay);
			log_str(&l, "dsn", "2.0.0");
			log_str(&l, "status", "sent");
			log_str(&l, "detail", "delivered at receipt");
			log_end(&l);
		}
	} else {
		log_msg(LOG_ERROR, "deliver_at_receipt_failed", "id=%s: %s", s->ltxn_id,
			strerror_safe(err));
	}
	on_committed(s, err, s->ltxn_id);
}

static void commit(struct smtp_session *s)
{
	s->log_size = data_reader_size(&s->dr);
	session_set_state(s, S_COMMIT);
	s->paused = true; /* input may still arrive (bounded); it waits */
	if (s->ltxn) {
		struct local_txn *t = s->ltxn;
		s->ltxn = NULL;
		local_txn_commit(t, on_local_committed, s);
		return;
	}
	struct queue_txn *t = s->txn;
	s->txn = NULL;
	if (s->sign) {
		queue_txn_set_prefix(t, signing_finish, signing_free, s->sign);
		s->sign = NULL;
	}
	queue_txn_commit(t, on_committed, s);
}

/* queue_prefix_fn (commit worker): the Authentication-Results field. */
static int copy_prefix(void *arg, char **out, size_t *len)
{
	*len = strlen(arg);
	*out = mem_strndup(arg, *len);
	return *out == NULL ? ENOMEM : 0;
}

/* SPF, DKIM and DMARC have spoken: refuse, or commit with their
 * Authentication-Results field in front of the message. */
static void on_verdict(void *arg, const struct inbound_verdict *v)
{
	struct smtp_session *s = arg;
	s->verifying = false;
	if (v->out_of_memory) { /* not a verdict: nothing accepted unverified */
		session_reply_oom(s, "DATA");
		resume_after_commit(s);
		return;
	}
	struct log_line l;
	log_begin(&l, v->reject ? LOG_WARNING : LOG_INFO, "authenticated");
	log_int(&l, "sid", (long long)s->sid);
	log_str(&l, "spf", v->spf);
	log_str(&l, "dkim", v->dkim);
	log_str(&l, "dmarc", v->dmarc);
	log_str(&l, "from_domain", v->from_domain);
	if (v->reject)
		log_str(&l, "action", "reject");
	log_end(&l);
	if (v->reject) {
		session_reply(s, v->reply);
		session_log_reject(s, "DATA", v->reply);
		resume_after_commit(s);
		return;
	}
	char *header = mem_strndup(v->header, v->header_len);
	if (header == NULL) {
		session_reply_oom(s, "DATA");
		resume_after_commit(s);
		return;
	}
	queue_txn_set_prefix(s->txn, copy_prefix, free, header);
	s->state = S_DATA; /* commit() moves to S_COMMIT again */
	commit(s);
}

/* The content ended (DATA's dot, or the LAST chunk): check and commit. */
void session_content_done(struct smtp_session *s, const char *what, enum data_error e)
{
	switch (e) {
	case DATA_ERR_NONE:
		if (s->hdr_overlong) {
			char line[96];
			snprintf(line, sizeof(line), "552 5.3.4 Message rejected: header section "
				 "longer than %u KiB", HEADER_HOLD_MAX / 1024);
			session_reply_error(s, what, line);
			break;
		}
		/* A message that is all header; the checks' lack of memory
		 * also comes as their verdict. */
		if (!s->hdr_done)
			(void)release_header(s);
		if (s->inauth) {
			session_set_state(s, S_COMMIT);
			s->paused = true;
			s->verifying = true;
			inbound_auth_finish(s->inauth, on_verdict, s);
			return;
		}
		commit(s);
		return;
	case DATA_ERR_BARE_LF:
	case DATA_ERR_BARE_CR:
		session_reply_error(s, what, "554 5.5.2 Message rejected: bare CR or LF in message "
				     "content (lines must end with CR LF)");
		break;
	case DATA_ERR_LINE_TOO_LONG:
		session_replyf(s, "554 5.6.0 Message rejected: a line is longer than %llu octets",
		       (unsigned long long)s->cfg->limits.text_line);
		session_log_reject(s, what, "554 5.6.0 line too long");
		s->errors++;
		break;
	case DATA_ERR_TOO_BIG:
		session_reply_error(s, what, "552 5.3.4 Message size exceeds fixed maximum message size");
		break;
	case DATA_ERR_SINK: /* the sink fails only for want of memory */
		session_reply_oom(s, what);
		break;
	}
	if (s->state != S_CLOSING)
		session_back_to_ready(s);
	else
		session_txn_reset(s);
}
