/*
 * smtp_server: the listening sockets, connection admission (limits in
 * total and per client address), the set of live sessions, and the
 * server-wide operations on them: configuration reload and graceful
 * shutdown.
 *
 * Ownership: the server owns its listeners and every session; it borrows
 * the event base and the queue, and holds a reference to the current
 * configuration. Loop thread only.
 */
#ifndef FULMAR_SMTP_SERVER_H
#define FULMAR_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct event_base;
struct config;
struct queue;
struct smtp_server;
struct smtp_session;
struct dns;

/* Bind every listener of cfg (before privileges are dropped), and the
 * local socket STATE_DIR/sendmail.sock (mode 0666: any local user may
 * submit; a file left by a crash is replaced, one a live server answers on
 * is an error). NULL with err filled when one cannot be bound. */
struct smtp_server *smtp_server_bind(struct event_base *base, struct config *cfg,
				     char *err, size_t errlen);
/* Reload the TLS certificates of the listeners from cfg (same listeners,
 * same order). A listener whose files fail to load keeps its old ones;
 * returns the number of failures (each logged). Open sessions keep the
 * certificate they started with. */
int smtp_server_reload_tls(struct smtp_server *srv, const struct config *cfg);

/* The local socket's name in the state directory. Connections on it speak
 * SMTP with role ROLE_LOCAL: no TLS or AUTH, any sender, relaying allowed,
 * the peer's uid in Received:. */
#define SMTP_SERVER_LOCAL_SOCKET "sendmail.sock"

/* The address of STATE_DIR/sendmail.sock for bind or connect. A path too
 * long for sun_path is reached through an O_PATH descriptor of the
 * directory (/proc/self/fd/N/...): *dirfd is then that descriptor, to close
 * once bound or connected; -1 otherwise. -1 with errno on failure. */
int smtp_server_local_address(const char *state_dir, struct sockaddr_un *sun,
			      socklen_t *len, int *dirfd);

/* Start accepting, delivering messages into q. */
void smtp_server_start(struct smtp_server *srv, struct queue *q);
/* The configuration new sessions and recipient lookups use. */
void smtp_server_set_config(struct smtp_server *srv, struct config *cfg);
struct config *smtp_server_config(const struct smtp_server *srv);
/* Stop accepting (the local socket's file is removed); idle sessions get
 * 421 now, the others when their transaction ends or the shutdown deadline
 * passes. done() is called once no session is left. */
void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *), void *arg);
bool smtp_server_stopping(const struct smtp_server *srv);
size_t smtp_server_sessions(const struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

/* Resolver for reverse lookups of clients (may be NULL: none). */
void smtp_server_set_dns(struct smtp_server *srv, struct dns *dns);

/* Users who may AUTH: the server takes ownership of the snapshot; the
 * previous one is freed once no password check uses it. */
struct auth_users;
void smtp_server_set_users(struct smtp_server *srv, struct auth_users *users);
struct auth_throttle *smtp_server_throttle(const struct smtp_server *srv);

/* Check a password on a worker thread (hashing is slow on purpose); fn runs
 * on the loop thread, unless the check was cancelled first. NULL (errno
 * ENOMEM) when there is no memory for the check (lib/mem.h): fn never
 * runs then. */
struct auth_check;
struct auth_check *smtp_server_check_password(struct smtp_server *srv, const char *user,
					      const char *password,
					      void (*fn)(void *arg, bool ok), void *arg);
void smtp_server_cancel_check(struct auth_check *c);

/* Committer of deliver-at-receipt transactions (may be NULL: off). */
struct local_committer;
void smtp_server_set_local_committer(struct smtp_server *srv, struct local_committer *lc);
struct local_committer *smtp_server_local_committer(const struct smtp_server *srv);

/* For sessions: */
struct dns *smtp_server_dns(const struct smtp_server *srv);
struct event_base *smtp_server_base(const struct smtp_server *srv);
struct queue *smtp_server_queue(const struct smtp_server *srv);
/* 0, or -1 (ENOMEM) when the session cannot be counted for its address
 * (it is not registered then, and must close). */
int smtp_server_session_register(struct smtp_server *srv, struct smtp_session *s);
void smtp_server_session_closed(struct smtp_server *srv, struct smtp_session *s);

#endif
