/*
 * connector: non-blocking connect(2) with a timeout (connector.h).
 */
#include "lib/connector.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/xalloc.h"

struct connector {
	int fd;
	int err;           /* a failure known before the loop ran */
	struct event *ev;
	connector_fn fn;
	void *arg;
};

static void finish(struct connector *c, int fd, int err)
{
	connector_fn fn = c->fn;
	void *arg = c->arg;
	event_free(c->ev);
	free(c);
	fn(arg, fd, err);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct connector *c = arg;
	if (c->err) {
		if (c->fd >= 0)
			close(c->fd);
		finish(c, -1, c->err);
		return;
	}
	if (what & EV_TIMEOUT) {
		close(c->fd);
		finish(c, -1, ETIMEDOUT);
		return;
	}
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		close(c->fd);
		finish(c, -1, soerr);
		return;
	}
	finish(c, c->fd, 0);
}

struct connector *connector_start(struct event_base *base, const struct sockaddr *sa,
				  socklen_t salen, double timeout, connector_fn fn,
				  void *arg)
{
	struct connector *c = xcalloc(1, sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->err = errno;
	} else {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(c->fd, sa, salen) < 0 && errno != EINPROGRESS)
			c->err = errno;
	}
	c->ev = event_new(base, c->fd >= 0 ? c->fd : -1, EV_WRITE, on_ready, c);
	if (c->err || c->fd < 0) {
		event_active(c->ev, EV_WRITE, 0);
	} else {
		struct timeval tv = { (time_t)timeout,
				      (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6) };
		event_add(c->ev, &tv);
	}
	return c;
}

void connector_cancel(struct connector *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	event_free(c->ev);
	free(c);
}
