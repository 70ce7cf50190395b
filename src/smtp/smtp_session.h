/*
 * smtp_session: one SMTP conversation (RFC 5321 + ESMTP extensions), as an
 * explicit state machine. Commands are looked up in one table giving, per
 * verb, the states where it is allowed and its handler; every state change
 * goes through one function. The session (connection, EHLO, error count)
 * and the transaction (envelope, queue file) are separate; the transaction
 * is rolled back on every exit path that does not commit it.
 *
 * Input is read through the bufferevent with fixed bounds: a command line
 * longer than limits.command_line is refused and skipped, message content
 * streams through data_reader into the queue file, never held whole in
 * memory.
 *
 * Ownership: created and freed by smtp_server. A session whose commit is
 * in flight when the client goes away lives on (detached) until the
 * commit's callback, then frees itself.
 */
#ifndef FULMAR_SMTP_SESSION_H
#define FULMAR_SMTP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct smtp_server;
struct smtp_session;
struct config;
typedef struct ssl_ctx_st SSL_CTX;

/* What a session needs to know of the listener that accepted it. */
struct smtp_listener_info {
	int role;            /* enum listener_role */
	SSL_CTX *tls;        /* STARTTLS (or implicit TLS) context, or NULL */
	bool auth;           /* AUTH offered */
	bool auth_plaintext; /* ... even before TLS */
};

/* Takes ownership of fd. reject_reply: when non-NULL the session only
 * sends this reply line (e.g. "421 4.7.0 Too many connections") and
 * closes (and NULL is returned: the session is gone). listener: its role,
 * TLS and AUTH settings; it outlives the session. */
struct smtp_session *smtp_session_new(struct smtp_server *srv, struct config *cfg,
				      int fd, const struct sockaddr *sa,
				      socklen_t salen, uint64_t sid,
				      const struct smtp_listener_info *listener,
				      const char *reject_reply);
/* Server shutdown: close now if idle, else after the transaction. */
void smtp_session_shutdown(struct smtp_session *s);
/* Shutdown deadline passed: 421 and close whatever the state. */
void smtp_session_abort(struct smtp_session *s);
/* Client address as text, and its raw form for per-address accounting. */
const char *smtp_session_client(const struct smtp_session *s);

/* Intrusive list links, managed by smtp_server. */
struct smtp_session_links {
	struct smtp_session *prev, *next;
};
struct smtp_session_links *smtp_session_links(struct smtp_session *s);

#endif
