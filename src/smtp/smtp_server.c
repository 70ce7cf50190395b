/*
 * smtp_server: listeners, admission and the session set (smtp_server.h).
 */
#include "smtp/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/countmap.h"
#include "auth/users.h"
#include "lib/log.h"
#include "lib/netaddr.h"
#include "lib/workpool.h"
#include "smtp/auth_throttle.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "smtp/smtp_session.h"

#define LISTEN_BACKLOG 4096

struct listener {
	struct evconnlistener *l;
	struct smtp_server *srv;
	struct smtp_listener_info info;
	char name[128];
};

/* A users snapshot shared by the checks in flight. */
struct users_ref {
	struct auth_users *users;
	unsigned refs;
};

struct auth_check {
	struct users_ref *ref;
	char *user;
	char *password;
	bool ok;
	bool cancelled;
	void (*fn)(void *arg, bool ok);
	void *arg;
};

struct smtp_server {
	struct event_base *base;
	struct config *cfg;
	struct queue *queue;
	struct dns *dns;
	struct local_committer *local;
	struct users_ref *users;
	struct workpool *auth_pool;
	struct auth_throttle *throttle;
	struct listener *listeners;
	size_t nlisteners;
	struct smtp_session *sessions; /* list head */
	size_t nsessions;
	struct countmap *per_ip;
	uint64_t next_sid;
	bool stopping;
	struct event *stop_deadline;
	void (*stop_done)(void *);
	void *stop_arg;
};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg);

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	struct listener *li = arg;
	log_msg(LOG_WARNING, "accept_failed", "%s: %s", li->name,
		strerror_safe(EVUTIL_SOCKET_ERROR()));
}

static int bind_one(const struct cfg_listener *cl, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", cl->port);
	int rc = getaddrinfo(cl->address, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "listener %s:%d: %s", cl->address, cl->port,
			 gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", cl->address,
			 cl->port, strerror_safe(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

struct smtp_server *smtp_server_bind(struct event_base *base, struct config *cfg,
				     char *err, size_t errlen)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->per_ip = countmap_new(4096);
	srv->throttle = auth_throttle_new();
	srv->auth_pool = workpool_new(base, 2);
	srv->listeners = xcalloc(cfg->nlisteners ? cfg->nlisteners : 1,
				 sizeof(struct listener));
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *cl = &cfg->listeners[i];
		int fd = bind_one(cl, err, errlen);
		if (fd < 0) {
			smtp_server_free(srv);
			return NULL;
		}
		struct listener *li = &srv->listeners[srv->nlisteners++];
		li->srv = srv;
		snprintf(li->name, sizeof(li->name), "%s:%d", cl->address, cl->port);
		li->info.role = cl->role;
		li->info.auth = cl->auth;
		li->info.auth_plaintext = cl->auth_plaintext;
		if (cl->tls_cert) {
			/* Read now, as root: the key file is usually root's. */
			li->info.tls = config_listener_tls(cfg, cl, err, errlen);
			if (li->info.tls == NULL) {
				close(fd);
				smtp_server_free(srv);
				return NULL;
			}
		}
		/* backlog 0: the socket already listens with LISTEN_BACKLOG */
		li->l = evconnlistener_new(base, on_accept, li,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, 0, fd);
		if (li->l == NULL) {
			close(fd);
			snprintf(err, errlen, "cannot set up listener %s", li->name);
			srv->nlisteners--;
			smtp_server_free(srv);
			return NULL;
		}
		evconnlistener_set_error_cb(li->l, on_accept_error);
	}
	return srv;
}

void smtp_server_start(struct smtp_server *srv, struct queue *q)
{
	srv->queue = q;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_enable(srv->listeners[i].l);
		const struct smtp_listener_info *in = &srv->listeners[i].info;
		static const char *const roles[] = { "mx", "submission", "submissions" };
		log_msg(LOG_INFO, "listening", "%s role=%s tls=%s auth=%s", srv->listeners[i].name,
			roles[in->role],
			in->tls == NULL ? "none"
			: in->role == ROLE_SUBMISSIONS ? "implicit" : "starttls",
			!in->auth ? "no" : in->auth_plaintext ? "yes (also without TLS)" : "yes");
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	struct listener *li = arg;
	struct smtp_server *srv = li->srv;
	const char *reject = NULL;
	char ip[NETADDR_TEXT_MAX];
	netaddr_text(sa, ip, sizeof(ip));
	if (srv->nsessions >= srv->cfg->limits.connections)
		reject = "421 4.3.2 Too many connections, try again later";
	else if ((uint64_t)countmap_get(srv->per_ip, ip) >=
		 srv->cfg->limits.connections_per_ip)
		reject = "421 4.7.0 Too many connections from your address, try again later";
	/* A session rejected at once is already closed and freed (NULL). */
	smtp_session_new(srv, srv->cfg, fd, sa, (socklen_t)salen, ++srv->next_sid, &li->info,
			 reject);
}

/* Called by smtp_session_new (through register) and by close. */
void smtp_server_session_closed(struct smtp_server *srv, struct smtp_session *s)
{
	struct smtp_session_links *lk = smtp_session_links(s);
	if (lk->prev)
		smtp_session_links(lk->prev)->next = lk->next;
	else if (srv->sessions == s)
		srv->sessions = lk->next;
	else
		return; /* never registered */
	if (lk->next)
		smtp_session_links(lk->next)->prev = lk->prev;
	lk->prev = lk->next = NULL;
	srv->nsessions--;
	countmap_add(srv->per_ip, smtp_session_client(s), -1);
	if (srv->stopping && srv->nsessions == 0 && srv->stop_done) {
		void (*done)(void *) = srv->stop_done;
		srv->stop_done = NULL;
		done(srv->stop_arg);
	}
}

void smtp_server_session_register(struct smtp_server *srv, struct smtp_session *s)
{
	struct smtp_session_links *lk = smtp_session_links(s);
	lk->prev = NULL;
	lk->next = srv->sessions;
	if (srv->sessions)
		smtp_session_links(srv->sessions)->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	countmap_add(srv->per_ip, smtp_session_client(s), 1);
}

struct event_base *smtp_server_base(const struct smtp_server *srv)
{
	return srv->base;
}

void smtp_server_set_dns(struct smtp_server *srv, struct dns *dns)
{
	srv->dns = dns;
}

void smtp_server_set_local_committer(struct smtp_server *srv, struct local_committer *lc)
{
	srv->local = lc;
}

struct local_committer *smtp_server_local_committer(const struct smtp_server *srv)
{
	return srv->local;
}

struct dns *smtp_server_dns(const struct smtp_server *srv)
{
	return srv->dns;
}

struct queue *smtp_server_queue(const struct smtp_server *srv)
{
	return srv->queue;
}

void smtp_server_set_config(struct smtp_server *srv, struct config *cfg)
{
	config_unref(srv->cfg);
	srv->cfg = config_ref(cfg);
}

struct config *smtp_server_config(const struct smtp_server *srv)
{
	return srv->cfg;
}

bool smtp_server_stopping(const struct smtp_server *srv)
{
	return srv->stopping;
}

size_t smtp_server_sessions(const struct smtp_server *srv)
{
	return srv->nsessions;
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_server *srv = arg;
	log_msg(LOG_INFO, "shutdown_deadline", "%zu sessions still open; closing them",
		srv->nsessions);
	for (struct smtp_session *s = srv->sessions, *next; s; s = next) {
		next = smtp_session_links(s)->next;
		smtp_session_abort(s);
	}
}

void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *), void *arg)
{
	srv->stopping = true;
	srv->stop_done = done;
	srv->stop_arg = arg;
	/* Close the listening sockets: new clients are refused at once
	 * instead of waiting in the kernel's backlog for a greeting. */
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i].l);
		srv->listeners[i].l = NULL;
	}
	if (srv->nsessions == 0) {
		srv->stop_done = NULL;
		done(arg);
		return;
	}
	for (struct smtp_session *s = srv->sessions, *next; s; s = next) {
		next = smtp_session_links(s)->next;
		smtp_session_shutdown(s);
	}
	if (srv->nsessions > 0) {
		double t = srv->cfg->timeouts.shutdown;
		struct timeval tv = { (time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6) };
		srv->stop_deadline = evtimer_new(srv->base, on_stop_deadline, srv);
		evtimer_add(srv->stop_deadline, &tv);
	}
}

void smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].l)
			evconnlistener_free(srv->listeners[i].l);
		tls_ctx_free(srv->listeners[i].info.tls);
	}
	free(srv->listeners);
	workpool_free(srv->auth_pool); /* runs the callbacks of checks in flight */
	if (srv->users && --srv->users->refs == 0) {
		auth_users_free(srv->users->users);
		free(srv->users);
	}
	auth_throttle_free(srv->throttle);
	if (srv->stop_deadline)
		event_free(srv->stop_deadline);
	countmap_free(srv->per_ip);
	config_unref(srv->cfg);
	free(srv);
}

static void users_release(struct users_ref *r)
{
	if (r && --r->refs == 0) {
		auth_users_free(r->users);
		free(r);
	}
}

void smtp_server_set_users(struct smtp_server *srv, struct auth_users *users)
{
	users_release(srv->users);
	srv->users = xcalloc(1, sizeof(*srv->users));
	srv->users->users = users;
	srv->users->refs = 1;
}

struct auth_throttle *smtp_server_throttle(const struct smtp_server *srv)
{
	return srv->throttle;
}

static void check_work(void *arg)
{
	struct auth_check *c = arg;
	c->ok = c->ref && c->ref->users &&
		auth_users_verify(c->ref->users, c->user, c->password);
}

static void check_done(void *arg)
{
	struct auth_check *c = arg;
	users_release(c->ref);
	explicit_bzero(c->password, strlen(c->password));
	if (!c->cancelled)
		c->fn(c->arg, c->ok);
	free(c->password);
	free(c->user);
	free(c);
}

struct auth_check *smtp_server_check_password(struct smtp_server *srv, const char *user,
					      const char *password,
					      void (*fn)(void *arg, bool ok), void *arg)
{
	struct auth_check *c = xcalloc(1, sizeof(*c));
	c->ref = srv->users;
	if (c->ref)
		c->ref->refs++;
	c->user = xstrdup(user);
	c->password = xstrdup(password);
	c->fn = fn;
	c->arg = arg;
	workpool_submit(srv->auth_pool, check_work, check_done, c);
	return c;
}

void smtp_server_cancel_check(struct auth_check *c)
{
	if (c)
		c->cancelled = true;
}

int smtp_server_reload_tls(struct smtp_server *srv, const struct config *cfg)
{
	int failures = 0;
	for (size_t i = 0; i < srv->nlisteners && i < cfg->nlisteners; i++) {
		const struct cfg_listener *cl = &cfg->listeners[i];
		struct listener *li = &srv->listeners[i];
		if (cl->tls_cert == NULL || li->info.tls == NULL)
			continue; /* TLS on or off needs a restart */
		char err[512];
		SSL_CTX *ctx = config_listener_tls(cfg, cl, err, sizeof(err));
		if (ctx == NULL) {
			log_msg(LOG_ERROR, "tls_reload_failed", "%s: %s; keeping the old certificate",
				li->name, err);
			failures++;
			continue;
		}
		tls_ctx_free(li->info.tls);
		li->info.tls = ctx;
		log_msg(LOG_INFO, "tls_reloaded", "%s: %s", li->name, cl->tls_cert);
	}
	return failures;
}
