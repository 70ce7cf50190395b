/*
 * smtp_server: listeners, admission and the session set (smtp_server.h).
 */
#include "smtp/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/countmap.h"
#include "auth/users.h"
#include "lib/log.h"
#include "lib/mem.h"
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
	char name[256]; /* for the log: "address:port", or the socket's path */
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
	struct listener *listeners; /* the configured ones, then the local socket */
	size_t nlisteners;
	size_t nconfigured;         /* listeners[i] is cfg->listeners[i] below this */
	char local_path[PATH_MAX];  /* STATE_DIR/sendmail.sock, "" when not ours */
	dev_t local_dev;            /* the file we made, so as to remove only it */
	ino_t local_ino;
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

int smtp_server_local_address(const char *state_dir, struct sockaddr_un *sun,
			      socklen_t *len, int *dirfd)
{
	*dirfd = -1;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	int n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", state_dir,
			 SMTP_SERVER_LOCAL_SOCKET);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(sun->sun_path)) {
		int fd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		n = snprintf(sun->sun_path, sizeof(sun->sun_path), "/proc/self/fd/%d/%s", fd,
			     SMTP_SERVER_LOCAL_SOCKET);
		*dirfd = fd;
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
	return 0;
}

/* The local socket: replaces a file left by a crash, refuses to take the
 * place of a live server's. Bound before privileges are dropped; the
 * listening descriptor keeps working after, and the state directory,
 * which the run user owns, lets it remove the file at shutdown. */
static int bind_local(struct smtp_server *srv, const struct config *cfg, char *err,
		      size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, SMTP_SERVER_LOCAL_SOCKET);
	struct sockaddr_un sun;
	socklen_t sl;
	int dirfd;
	if (smtp_server_local_address(cfg->state_dir, &sun, &sl, &dirfd) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror_safe(errno));
		return -1;
	}
	int fd = -1;
	const char *why = NULL;
	struct stat st;
	if (lstat(path, &st) == 0) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (!S_ISSOCK(st.st_mode))
			why = "the file exists and is not a socket";
		else if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sl) == 0)
			why = "another fulmar serves this state_dir (it answers)";
		else if (unlink(path) < 0 && errno != ENOENT)
			why = strerror_safe(errno);
		else
			log_msg(LOG_INFO, "local_stale_socket", "removed the stale %s", path);
		if (probe >= 0)
			close(probe);
	}
	bool bound = false;
	if (why == NULL) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		bound = fd >= 0 && bind(fd, (struct sockaddr *)&sun, sl) == 0;
		if (!bound || chmod(path, 0666) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
		    lstat(path, &st) < 0) {
			why = strerror_safe(errno);
		} else {
			strlcpy_safe(srv->local_path, path, sizeof(srv->local_path));
			srv->local_dev = st.st_dev;
			srv->local_ino = st.st_ino;
		}
	}
	if (dirfd >= 0)
		close(dirfd);
	if (why) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, why);
		if (bound)
			unlink(path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Remove the local socket's file, if it is still the one we made. */
static void unlink_local(struct smtp_server *srv)
{
	struct stat st;
	if (srv->local_path[0] && lstat(srv->local_path, &st) == 0 &&
	    st.st_dev == srv->local_dev && st.st_ino == srv->local_ino)
		unlink(srv->local_path);
	srv->local_path[0] = '\0';
}

static bool add_listener(struct smtp_server *srv, int fd, const char *name,
			 char *err, size_t errlen)
{
	struct listener *li = &srv->listeners[srv->nlisteners];
	li->srv = srv;
	strlcpy_safe(li->name, name, sizeof(li->name));
	/* backlog 0: the socket already listens with LISTEN_BACKLOG */
	li->l = evconnlistener_new(srv->base, on_accept, li,
				   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, 0, fd);
	if (li->l == NULL) {
		close(fd);
		tls_ctx_free(li->info.tls);
		snprintf(err, errlen, "cannot set up listener %s", li->name);
		return false;
	}
	evconnlistener_set_error_cb(li->l, on_accept_error);
	srv->nlisteners++;
	return true;
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
	srv->listeners = xcalloc(cfg->nlisteners + 1, sizeof(struct listener));
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *cl = &cfg->listeners[i];
		int fd = bind_one(cl, err, errlen);
		if (fd < 0) {
			smtp_server_free(srv);
			return NULL;
		}
		struct listener *li = &srv->listeners[srv->nlisteners];
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
		char name[sizeof(li->name)];
		snprintf(name, sizeof(name), "%s:%d", cl->address, cl->port);
		if (!add_listener(srv, fd, name, err, errlen)) {
			smtp_server_free(srv);
			return NULL;
		}
	}
	srv->nconfigured = srv->nlisteners;
	/* Bound after the TCP ports: a second server on the same
	 * configuration fails there first, before touching the socket. */
	int fd = bind_local(srv, cfg, err, errlen);
	srv->listeners[srv->nlisteners].info.role = ROLE_LOCAL;
	if (fd < 0 || !add_listener(srv, fd, srv->local_path, err, errlen)) {
		smtp_server_free(srv);
		return NULL;
	}
	return srv;
}

void smtp_server_start(struct smtp_server *srv, struct queue *q)
{
	srv->queue = q;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_enable(srv->listeners[i].l);
		const struct smtp_listener_info *in = &srv->listeners[i].info;
		static const char *const roles[] = { "mx", "submission", "submissions",
						     "local" };
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
	else if (li->info.role != ROLE_LOCAL &&
		 (uint64_t)countmap_get(srv->per_ip, ip) >= srv->cfg->limits.connections_per_ip)
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

int smtp_server_session_register(struct smtp_server *srv, struct smtp_session *s)
{
	if (countmap_add(srv->per_ip, smtp_session_client(s), 1) < 0)
		return -1;
	struct smtp_session_links *lk = smtp_session_links(s);
	lk->prev = NULL;
	lk->next = srv->sessions;
	if (srv->sessions)
		smtp_session_links(srv->sessions)->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	return 0;
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
	unlink_local(srv);
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
	unlink_local(srv);
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
	/* A session's memory: fallible (lib/mem.h). */
	struct auth_check *c = mem_calloc(1, sizeof(*c));
	char *u = mem_strdup(user);
	char *p = mem_strdup(password);
	if (c == NULL || u == NULL || p == NULL) {
		if (p)
			explicit_bzero(p, strlen(p));
		free(p);
		free(u);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->ref = srv->users;
	if (c->ref)
		c->ref->refs++;
	c->user = u;
	c->password = p;
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
	for (size_t i = 0; i < srv->nconfigured && i < cfg->nlisteners; i++) {
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
