/*
 * conn: see conn.h.
 */
#include "lib/conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/xalloc.h"

#define READ_CHUNK 16384

struct conn {
	int fd;
	struct event *rev;
	struct event *wev;
	struct evbuffer *in;
	struct evbuffer *out;
	struct conn_callbacks cb;
	void *arg;
	size_t input_max;
	struct timeval rtv, wtv;
	bool rtimeout, wtimeout;
	bool reading;   /* rev is added */
	bool writing;   /* wev is added */
	bool failed;    /* a write failed: report once from the loop */
};

static struct timeval tv_of(double s)
{
	struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
	return tv;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->failed) {
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	if (what & EV_TIMEOUT) {
		c->cb.event(c->arg, CONN_READ_TIMEOUT);
		return;
	}
	struct evbuffer_iovec v[2];
	int nv = evbuffer_reserve_space(c->in, READ_CHUNK, v, 2);
	if (nv <= 0) {
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	size_t want = 0;
	for (int i = 0; i < nv; i++)
		want += v[i].iov_len;
	if (want > READ_CHUNK && nv == 1)
		v[0].iov_len = READ_CHUNK;
	ssize_t n = readv(fd, (struct iovec *)v, nv);
	if (n < 0) {
		evbuffer_commit_space(c->in, v, 0);
		if (errno == EAGAIN || errno == EINTR)
			return;
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	if (n == 0) {
		evbuffer_commit_space(c->in, v, 0);
		c->cb.event(c->arg, CONN_EOF);
		return;
	}
	size_t left = (size_t)n;
	for (int i = 0; i < nv; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(c->in, v, nv);
	if (evbuffer_get_length(c->in) >= c->input_max)
		conn_stop_reading(c);
	c->cb.readable(c->arg);
}

/* Returns false when the write failed (output dropped). */
static bool write_some(struct conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		int n = evbuffer_write(c->out, c->fd);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
		return false;
	}
	return true;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct conn *c = arg;
	if (what & EV_TIMEOUT) {
		c->cb.event(c->arg, CONN_WRITE_TIMEOUT);
		return;
	}
	if (!write_some(c)) {
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	if (evbuffer_get_length(c->out) == 0) {
		event_del(c->wev);
		c->writing = false;
		c->cb.drained(c->arg);
	}
}

struct conn *conn_new(struct event_base *base, int fd, const struct conn_callbacks *cb,
		      void *arg, size_t input_max)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->cb = *cb;
	c->arg = arg;
	c->input_max = input_max;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	if (c->in == NULL || c->out == NULL || c->rev == NULL || c->wev == NULL)
		xfatal("out of memory for a connection");
	return c;
}

void conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	event_free(c->rev);
	event_free(c->wev);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	close(c->fd);
	free(c);
}

struct evbuffer *conn_input(struct conn *c)
{
	return c->in;
}

struct evbuffer *conn_output(struct conn *c)
{
	return c->out;
}

size_t conn_pending_output(const struct conn *c)
{
	return evbuffer_get_length(c->out);
}

void conn_set_read_timeout(struct conn *c, double seconds)
{
	c->rtimeout = seconds > 0;
	c->rtv = tv_of(seconds);
	if (c->reading)
		event_add(c->rev, c->rtimeout ? &c->rtv : NULL); /* only the timer moves */
}

void conn_set_write_timeout(struct conn *c, double seconds)
{
	c->wtimeout = seconds > 0;
	c->wtv = tv_of(seconds);
	if (c->writing)
		event_add(c->wev, c->wtimeout ? &c->wtv : NULL);
}

void conn_start_reading(struct conn *c)
{
	if (c->reading)
		return;
	c->reading = true;
	event_add(c->rev, c->rtimeout ? &c->rtv : NULL);
}

void conn_stop_reading(struct conn *c)
{
	if (!c->reading)
		return;
	c->reading = false;
	event_del(c->rev);
}

void conn_flush(struct conn *c)
{
	if (c->writing || evbuffer_get_length(c->out) == 0)
		return; /* the write event is on it */
	if (!write_some(c)) {
		/* Report from the loop, never from inside the owner's call. */
		c->failed = true;
		event_active(c->rev, EV_READ, 0);
		return;
	}
	if (evbuffer_get_length(c->out) > 0) {
		c->writing = true;
		event_add(c->wev, c->wtimeout ? &c->wtv : NULL);
	}
}
