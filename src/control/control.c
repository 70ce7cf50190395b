/*
 * control: see control.h. The server side of control_proto.h: accepts
 * clients on the unix socket, reads one request line at a time through
 * the conn layer (bounded input), asks the delivery engine, writes the
 * reply.
 */
#include "control/control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/control_proto.h"
#include "delivery/delivery.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define CONTROL_OUTPUT_MAX (16u << 20) /* one reply's payload, at most */
#define CONTROL_READ_TIMEOUT 60.0      /* an idle client is closed */
#define CONTROL_WRITE_TIMEOUT 30.0     /* a client that stops reading too */
#define ACCEPTS_PER_WAKEUP 16

struct client {
	struct control *ctl;
	struct conn *conn;
	bool closing; /* close once the output is written */
	struct client *prev, *next;
};

struct control {
	struct event_base *base;
	struct delivery *d;
	int fd;
	struct event *accept_ev;
	struct event *pause_ev; /* accept paused after EMFILE */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino;
	struct client *clients;
	unsigned nclients;
};

/* ---- the socket file ------------------------------------------------ */

/* A socket file left at path: replace it if nobody answers on it. */
static int clear_stale(const char *path, const struct sockaddr_un *sa, char *err,
		       size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "control socket %s: %s", path, strerror_safe(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "control socket %s exists and is not a socket", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror_safe(errno));
		return -1;
	}
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another fulmar serves this state_dir (%s answers)", path);
		return -1;
	}
	if (e != ECONNREFUSED && e != ENOENT) {
		snprintf(err, errlen, "control socket %s: %s", path, strerror_safe(e));
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale %s: %s", path,
			 strerror_safe(errno));
		return -1;
	}
	log_msg(LOG_INFO, "control_stale_socket", "removed the stale %s", path);
	return 0;
}

struct control *control_open(struct event_base *base, const char *state_dir,
			     char *err, size_t errlen)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", state_dir,
			 CONTROL_SOCKET_NAME);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "the control socket path %s/%s is longer than %zu octets",
			 state_dir, CONTROL_SOCKET_NAME, sizeof(sa.sun_path) - 1);
		return NULL;
	}
	if (clear_stale(sa.sun_path, &sa, err, errlen) < 0)
		return NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror_safe(errno));
		return NULL;
	}
	/* 0600 from the first instant: no window in which others may connect. */
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	struct stat st;
	if (rc < 0 || chmod(sa.sun_path, 0600) < 0 || lstat(sa.sun_path, &st) < 0 ||
	    listen(fd, 16) < 0) {
		if (rc == 0)
			e = errno;
		snprintf(err, errlen, "control socket %s: %s", sa.sun_path, strerror_safe(e));
		if (rc == 0)
			unlink(sa.sun_path);
		close(fd);
		return NULL;
	}
	struct control *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->fd = fd;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	strlcpy_safe(c->path, sa.sun_path, sizeof(c->path));
	return c;
}

/* ---- clients -------------------------------------------------------- */

static void client_free(struct client *cl)
{
	struct control *c = cl->ctl;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	c->nclients--;
	conn_free(cl->conn);
	free(cl);
}

/* After a reply: close now or once written, or read the next request. */
static void client_flush(struct client *cl)
{
	conn_flush(cl->conn);
	if (conn_pending_output(cl->conn) > 0) {
		conn_stop_reading(cl->conn); /* one reply at a time */
		return;
	}
	if (cl->closing)
		client_free(cl);
}

static void reply_error(struct client *cl, const char *text)
{
	evbuffer_add_printf(conn_output(cl->conn), "error: %s\n.\n", text);
}

/* A protocol error: say why, then close. */
static void client_reject(struct client *cl, const char *why)
{
	log_msg(LOG_INFO, "control_rejected", "%s", why);
	reply_error(cl, why);
	cl->closing = true;
	client_flush(cl);
}

struct list_ctx {
	struct evbuffer *payload;
	bool verbose;
	int64_t now;
	long omitted;
};

static void on_view(void *arg, const struct delivery_view *v)
{
	struct list_ctx *lc = arg;
	if (evbuffer_get_length(lc->payload) >= CONTROL_OUTPUT_MAX) {
		lc->omitted++;
		return;
	}
	control_proto_format(lc->payload, v->env, v->held, v->why, lc->verbose, lc->now);
}

static void on_view_count(void *arg, const struct delivery_view *v)
{
	(void)arg;
	(void)v;
}

static bool in_queue(struct control *c, const char *id)
{
	return delivery_list(c->d, id, on_view_count, NULL) > 0;
}

/* The engine's operator controls, by command. */
static int (*const actions[])(struct delivery *, const char *) = {
	[CONTROL_FLUSH] = delivery_flush,
	[CONTROL_HOLD] = delivery_hold,
	[CONTROL_RELEASE] = delivery_release,
	[CONTROL_DELETE] = delivery_delete,
	[CONTROL_BOUNCE] = delivery_bounce,
};

/* Run one request; the reply goes to the client's output. */
static void handle(struct client *cl, const struct control_req *req)
{
	struct control *c = cl->ctl;
	struct evbuffer *out = conn_output(cl->conn);
	const char *id = req->has_id ? req->id : NULL;
	char msg[128];
	int rc = 0;
	switch (req->cmd) {
	case CONTROL_LIST:
	case CONTROL_SHOW: {
		struct list_ctx lc = { evbuffer_new(), req->cmd == CONTROL_SHOW,
				       (int64_t)time(NULL), 0 };
		if (lc.payload == NULL)
			xfatal("out of memory for a control reply");
		long n = delivery_list(c->d, id, on_view, &lc);
		if (id != NULL && n <= 0) {
			evbuffer_free(lc.payload);
			rc = -1;
			break;
		}
		evbuffer_add(out, "ok\n", 3);
		evbuffer_add_buffer(out, lc.payload);
		evbuffer_free(lc.payload);
		if (lc.omitted > 0)
			evbuffer_add_printf(out, "# %ld more messages not listed (reply cap "
						 "reached); use `fulmar queue show ID`\n",
					    lc.omitted);
		evbuffer_add(out, ".\n", 2);
		return;
	}
	default:
		rc = actions[req->cmd](c->d, id);
		break;
	}
	struct log_line l;
	log_begin(&l, LOG_INFO, "queue_control");
	log_str(&l, "action", control_proto_cmd_name(req->cmd));
	log_str(&l, "id", id ? id : "all");
	log_str(&l, "result", rc == 0 ? "ok" : "refused");
	log_end(&l);
	if (rc == 0) {
		evbuffer_add(out, "ok\n.\n", 5);
		return;
	}
	if (id == NULL)
		snprintf(msg, sizeof(msg), "%s failed", control_proto_cmd_name(req->cmd));
	else if (req->cmd == CONTROL_RELEASE && in_queue(c, id))
		snprintf(msg, sizeof(msg), "message %s is not held", id);
	else
		snprintf(msg, sizeof(msg), "no message %s in the queue", id);
	reply_error(cl, msg);
}

/* Serve complete request lines, one at a time. */
static void client_process(struct client *cl)
{
	struct evbuffer *in = conn_input(cl->conn);
	while (!cl->closing && conn_pending_output(cl->conn) == 0) {
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		size_t have = evbuffer_get_length(in);
		if (eol.pos < 0) {
			if (have >= CONTROL_LINE_MAX)
				client_reject(cl, "request line too long");
			else
				conn_start_reading(cl->conn);
			return;
		}
		size_t len = (size_t)eol.pos;
		if (len + 1 > CONTROL_LINE_MAX) {
			client_reject(cl, "request line too long");
			return;
		}
		char line[CONTROL_LINE_MAX];
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		struct control_req req;
		char why[96];
		if (control_proto_parse(line, len, &req, why, sizeof(why)) < 0) {
			client_reject(cl, why);
			return;
		}
		handle(cl, &req);
		client_flush(cl); /* may free cl when closing: it is not */
	}
}

static void on_readable(void *arg)
{
	client_process(arg);
}

static void on_drained(void *arg)
{
	struct client *cl = arg;
	if (cl->closing) {
		client_free(cl);
		return;
	}
	client_process(cl);
}

static void on_event(void *arg, enum conn_event what)
{
	struct client *cl = arg;
	if (what == CONN_EOF && conn_pending_output(cl->conn) > 0) {
		cl->closing = true; /* the reply still goes out */
		conn_stop_reading(cl->conn);
		return;
	}
	client_free(cl);
}

static const struct conn_callbacks client_callbacks = {
	.readable = on_readable,
	.drained = on_drained,
	.event = on_event,
};

/* Only root and the user the daemon runs as (the socket's mode says the
 * same; this holds even if the mode is changed). */
static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

/* Refuse a client we will not serve: one line, best effort, close. */
static void refuse(int fd, const char *why)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "error: %s\n.\n", why);
	if (n > 0 && send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* nothing to do: the client goes anyway */
	}
	close(fd);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct control *c = arg;
	event_add(c->accept_ev, NULL);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	struct control *c = arg;
	for (int k = 0; k < ACCEPTS_PER_WAKEUP; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: pause rather than spin. */
				log_msg(LOG_WARNING, "control_accept_failed", "%s; pausing 1 s",
					strerror_safe(errno));
				event_del(c->accept_ev);
				struct timeval one = { 1, 0 };
				event_add(c->pause_ev, &one);
			}
			return;
		}
		if (!peer_allowed(fd)) {
			refuse(fd, "permission denied");
			continue;
		}
		if (c->nclients >= CONTROL_CLIENTS_MAX) {
			refuse(fd, "too many control clients");
			continue;
		}
		struct client *cl = xcalloc(1, sizeof(*cl));
		cl->ctl = c;
		cl->conn = conn_new(c->base, fd, &client_callbacks, cl, CONTROL_LINE_MAX);
		if (cl->conn == NULL) {
			free(cl);
			refuse(fd, "out of memory");
			continue;
		}
		conn_set_read_timeout(cl->conn, CONTROL_READ_TIMEOUT);
		conn_set_write_timeout(cl->conn, CONTROL_WRITE_TIMEOUT);
		cl->next = c->clients;
		if (c->clients)
			c->clients->prev = cl;
		c->clients = cl;
		c->nclients++;
		conn_start_reading(cl->conn);
	}
}

void control_start(struct control *c, struct delivery *d)
{
	c->d = d;
	c->accept_ev = event_new(c->base, c->fd, EV_READ | EV_PERSIST, on_accept, c);
	c->pause_ev = evtimer_new(c->base, on_resume, c);
	if (c->accept_ev == NULL || c->pause_ev == NULL)
		xfatal("out of memory for the control socket");
	event_add(c->accept_ev, NULL);
	log_msg(LOG_INFO, "control_listening", "%s", c->path);
}

void control_free(struct control *c)
{
	if (c == NULL)
		return;
	while (c->clients)
		client_free(c->clients);
	if (c->accept_ev)
		event_free(c->accept_ev);
	if (c->pause_ev)
		event_free(c->pause_ev);
	close(c->fd);
	/* Remove the file only if it is still ours. */
	struct stat st;
	if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
	free(c);
}
