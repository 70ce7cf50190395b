/*
 * session: the inside of an SMTP session, shared by the files that make
 * it up: smtp_session.c (the state machine, commands, input and life
 * cycle), session_txn.c (the transaction) and session_auth.c (AUTH).
 * Private to src/smtp;
 * everything else uses smtp_session.h.
 *
 * Ownership: as smtp_session.h says; the helpers below run on the loop
 * thread with the session they are given.
 */
#ifndef FULMAR_SMTP_SESSION_PRIV_H
#define FULMAR_SMTP_SESSION_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/types.h>

#include "lib/netaddr.h"
#include "proto/data_reader.h"
#include "proto/smtp_addr.h"
#include "queue/envelope.h"
#include "queue/queue.h"
#include "smtp/smtp_session.h"

enum state {
	S_INIT = 0,   /* greeted, no EHLO/HELO yet */
	S_READY,      /* EHLO/HELO done, no transaction */
	S_MAIL,       /* MAIL accepted */
	S_RCPT,       /* at least one RCPT accepted */
	S_DATA,       /* reading DATA content */
	S_BDAT,       /* between BDAT chunks */
	S_BDAT_CHUNK, /* reading a BDAT chunk's octets */
	S_COMMIT,     /* waiting for the queue to make the message durable */
	S_CLOSING,    /* last reply sent; closing once it is flushed */
	S_AUTH,       /* AUTH exchange: reading base64 responses */
	S_COUNT
};


#define AUTH_LINE_MAX 12288   /* RFC 4954 4: a SASL response line */
#define AUTH_FIELD_MAX 1024   /* user names and passwords */

enum auth_step { AUTH_PLAIN_RESPONSE, AUTH_LOGIN_USER, AUTH_LOGIN_PASSWORD };

struct smtp_session {
	struct smtp_session_links links;
	struct smtp_server *srv;
	struct config *cfg; /* reference: limits of this session */
	struct conn *conn;
	struct event *deadline;
	uint64_t sid;
	char client[NETADDR_TEXT_MAX]; /* "localhost" on the local socket */
	long peer_uid;               /* local socket: the client's uid, else -1 */
	char *rdns;                  /* verified client name, or NULL */
	struct dns_query *rdns_query; /* in flight, or NULL */
	int client_port;
	bool relay_network;  /* in server.relay_networks: may relay without AUTH */
	enum state state;
	bool esmtp;
	SSL_CTX *tls_ctx;    /* STARTTLS offered (not yet started) when set */
	const struct smtp_listener_info *listener;
	bool greet_after_tls; /* implicit TLS: the 220 waits for the handshake */
	char *auth_user;     /* authenticated login name, or NULL */
	enum auth_step auth_step;
	char auth_login_user[AUTH_FIELD_MAX + 1];
	char auth_try_user[AUTH_FIELD_MAX + 1]; /* name being checked */
	struct auth_check *auth_check; /* password check in flight */
	struct signing *sign; /* DKIM for a submitted message, or NULL */
	struct inbound_auth *inauth; /* SPF/DKIM/DMARC of an inbound message */
	bool verifying;      /* S_COMMIT, waiting for inauth's verdict */
	/* The header section being held (see release_header): the only copy
	 * of it; the inbound checks read it there (inbound_auth_feed_header).
	 * hdr_buf[0..hdr_len) of hdr_cap, grown up to HEADER_HOLD_MAX. */
	bool hdr_done;
	bool hdr_overlong;   /* checked inbound header past the hold: refused */
	char *hdr_buf;
	size_t hdr_len, hdr_cap;
	char hdr_id[QUEUE_ID_LEN + 1];
	struct event *auth_delay;     /* the delayed 535 */
	/* A command line must be complete within timeouts.command of its
	 * first octet: trickled bytes restart the read timeout, not this. */
	struct event *cmd_deadline;
	bool skip_line;      /* discarding the rest of an over-long command */
	bool paused;         /* not processing input (commit in flight) */
	bool detached;       /* connection gone, commit in flight */
	/* The 421 to send once the commit in flight has been answered (the
	 * session deadline passed, or the server is shutting down). */
	const char *close_after_commit;
	unsigned errors;
	unsigned messages;
	unsigned rcpt_cmds;  /* RCPT commands accepted in this transaction */
	char first_rcpt[SMTP_ADDR_PATH_MAX + 1];
	uint64_t discard;    /* octets of a refused BDAT chunk still to skip */
	/* transaction */
	struct envelope env;
	struct queue_txn *txn;       /* the message goes to the queue, or */
	struct local_txn *ltxn;      /* straight to local Maildirs */
	char ltxn_id[QUEUE_ID_LEN + 1];
	int64_t ltxn_arrival_us;
	struct data_reader dr;
	uint64_t bdat_left;
	bool bdat_last;
	/* what the "queued" log line needs once the commit returns */
	char *log_from;
	size_t log_nrcpt;
	uint64_t log_size;
};

#define OOM_REPLY "451 4.3.0 Local error: out of memory"

/* Replies: one line (CRLF added); an error reply, counted toward
 * limits.errors (421 and close past it); 451 "out of memory" (not
 * counted: the client did nothing wrong). what names the command. */
void session_reply(struct smtp_session *s, const char *line);
void session_reply_error(struct smtp_session *s, const char *what, const char *line);
void session_reply_oom(struct smtp_session *s, const char *what);
void session_set_state(struct smtp_session *s, enum state next);
/* Runs the commands that wait in the input, as far as the state allows. */
void session_process(struct smtp_session *s);
/* The last step of every event handler: sends the replies written so
 * far, and closes a closing session whose output is gone (s may be
 * freed). */
void session_settle(struct smtp_session *s);

void session_replyf(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void session_log_reject(struct smtp_session *s, const char *what, const char *line);
void session_log_oom(uint64_t sid, const char *client, const char *id, const char *where);
/* Sends what is written, then closes (S_CLOSING). */
void session_close_after_flush(struct smtp_session *s);
void session_free(struct smtp_session *s);

/* session_txn.c: the transaction. */
void session_txn_reset(struct smtp_session *s);
/* The transaction is over: back to S_READY, reading again. */
void session_back_to_ready(struct smtp_session *s);
/* Opens the message's destination (queue file or Maildir copies) at DATA
 * or the first BDAT; 0 or an errno. */
int session_open_txn(struct smtp_session *s);
/* The reply for an errno of the storage: 452 4.3.1 or 451 4.3.0. */
const char *session_storage_error_reply(int err, bool creating);
/* data_reader's sink: the content's octets, in order. */
int session_content_sink(void *arg, const char *buf, size_t len);
/* The end of the content (e == DATA_OK) or its refusal. */
void session_content_done(struct smtp_session *s, const char *what, enum data_error e);

/* session_auth.c: the AUTH command, and each response line in S_AUTH. */
void session_cmd_auth(struct smtp_session *s, const char *arg, size_t len);
void session_auth_response(struct smtp_session *s, const char *line, size_t len);

#endif
