/*
 * smtp_client: one outgoing SMTP connection (RFC 5321), reusable for
 * several transactions. It connects, reads the greeting, says EHLO (HELO
 * when EHLO is refused), starts TLS as the policy says, authenticates
 * when credentials are given, and then runs transactions one at a time,
 * pipelined when the server offers PIPELINING (RFC 2920).
 *
 * Every reply goes through the bounded parser of proto/smtp_reply.h and
 * every wait has its timeout (RFC 5321 §4.5.3.2): a hostile or stuck
 * server costs a bounded amount of memory and time.
 *
 * Ownership: the owner (the outbound scheduler) creates a client and
 * gets exactly one callback per request: `ready` after smtp_client_open,
 * `done` after smtp_client_send. Between transactions an idle client may
 * report `closed` (the server hung up or timed out). smtp_client_free
 * releases it at any time (no callback after that); smtp_client_quit
 * says QUIT politely and frees it by itself later. Loop thread only.
 */
#ifndef FULMAR_SMTP_CLIENT_H
#define FULMAR_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

struct event_base;
struct evbuffer;
struct smtp_client;
typedef struct ssl_ctx_st SSL_CTX;

#define SMTP_CLIENT_REPLY_MAX 512 /* a reply kept for logs and bounces */

struct smtp_client_params {
	const char *helo_name;      /* our EHLO argument */
	const char *our_hostname;   /* a server greeting with this name is a loop */
	const char *server_name;    /* the host name we connect to, for logs and SNI */
	enum tls_policy tls;        /* MAY, REQUIRED or NONE */
	SSL_CTX *tls_ctx;           /* client context (lib/tls.h) */
	const char *auth_user;      /* AUTH PLAIN when not NULL (needs TLS or loopback) */
	const char *auth_password;
	double connect_timeout, greeting_timeout, command_timeout;
	double data_timeout, data_done_timeout;
};

/* What the server offered in its EHLO reply. */
struct smtp_client_caps {
	bool esmtp;
	bool pipelining;
	bool starttls;
	bool eightbitmime;
	bool smtputf8;
	bool dsn;
	bool auth_plain;
	uint64_t size;              /* 0: no SIZE limit announced */
};

/* Why a connection could not be made ready, or a transaction failed
 * as a whole. */
enum smtp_client_error {
	SMTP_CLIENT_OK = 0,
	SMTP_CLIENT_NETWORK,  /* connect failed, closed, timeout, TLS failed */
	SMTP_CLIENT_REPLY,    /* the server's reply (code, text) refused us */
	SMTP_CLIENT_LOOP,     /* the server is ourselves (5.4.6) */
	SMTP_CLIENT_TLS_REQUIRED, /* policy required TLS, none offered */
	SMTP_CLIENT_AUTH,     /* our credentials were refused (or no AUTH PLAIN) */
	SMTP_CLIENT_PROTOCOL, /* malformed or over-long reply */
};

struct smtp_client_status {
	enum smtp_client_error error;
	int code;                           /* the server's reply code, or 0 */
	char reply[SMTP_CLIENT_REPLY_MAX];  /* "550 5.1.1 text" or our description */
};

/* One recipient of a transaction; the client fills code and reply. */
struct smtp_client_rcpt {
	const char *addr;
	const char *orcpt;    /* xtext as received, or NULL */
	unsigned notify;      /* SMTP_NOTIFY_* (sent only when the server has DSN) */
	int code;             /* RCPT reply, then the final reply for accepted ones;
	                         0 when no reply came */
	char reply[SMTP_CLIENT_REPLY_MAX];
};

struct smtp_client_txn {
	const char *sender;   /* "" for <> */
	uint64_t size;        /* for SIZE= */
	bool eightbit;        /* BODY=8BITMIME */
	bool smtputf8;        /* SMTPUTF8 */
	int ret;              /* enum smtp_ret */
	const char *envid;    /* xtext or NULL */
	struct smtp_client_rcpt *rcpts;
	size_t nrcpts;
	struct evbuffer *content; /* the message as stored; consumed */
	/* Filled by the client: the transaction as a whole. error OK means
	 * each rcpt's code tells its fate. */
	struct smtp_client_status status;
};

typedef void (*smtp_client_ready_fn)(void *arg, struct smtp_client *c,
				     const struct smtp_client_status *st);
typedef void (*smtp_client_done_fn)(void *arg, struct smtp_client *c,
				    struct smtp_client_txn *t);
typedef void (*smtp_client_closed_fn)(void *arg, struct smtp_client *c);

/* Connect to sa. ready runs once (from the loop); on failure the client
 * is already unusable: free it. */
struct smtp_client *smtp_client_open(struct event_base *base, const struct sockaddr *sa,
				     socklen_t salen, const struct smtp_client_params *p,
				     smtp_client_ready_fn ready, smtp_client_closed_fn closed,
				     void *arg);
const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c);
/* "mx1.example.net[192.0.2.1]:25" */
const char *smtp_client_relay(const struct smtp_client *c);
const char *smtp_client_server_name(const struct smtp_client *c);
bool smtp_client_tls(const struct smtp_client *c);
/* Transactions done on this connection. */
unsigned smtp_client_count(const struct smtp_client *c);

/* Run one transaction; t must stay valid until done runs. After done,
 * the client is idle again (or broken: status NETWORK/PROTOCOL). */
void smtp_client_send(struct smtp_client *c, struct smtp_client_txn *t,
		      smtp_client_done_fn done, void *arg);
void smtp_client_quit(struct smtp_client *c);
void smtp_client_free(struct smtp_client *c);

#endif
