/*
 * conn: see conn.h.
 */
#include "lib/conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

#define READ_CHUNK 16384
#define TLS_WRITE_CHUNK 16384

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
	SSL *ssl;       /* TLS, or NULL */
	bool handshaking;
	char tls_error[160]; /* why the handshake failed, for the log */
};

static void arm_write(struct conn *c)
{
	if (!c->writing) {
		c->writing = true;
		event_add(c->wev, c->wtimeout ? &c->wtv : NULL);
	}
}

static void disarm_write(struct conn *c)
{
	if (c->writing) {
		c->writing = false;
		event_del(c->wev);
	}
}

static struct timeval tv_of(double s)
{
	struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
	return tv;
}

static void handshake(struct conn *c);

/* Plain read: 1 data, 0 nothing now, -1 EOF, -2 error. */
static int read_plain(struct conn *c)
{
	struct evbuffer_iovec v[2];
	int nv = evbuffer_reserve_space(c->in, READ_CHUNK, v, 2);
	if (nv <= 0)
		return -2;
	if (nv == 1 && v[0].iov_len > READ_CHUNK)
		v[0].iov_len = READ_CHUNK;
	ssize_t n = readv(c->fd, (struct iovec *)v, nv);
	if (n <= 0) {
		evbuffer_commit_space(c->in, v, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return n == 0 ? -1 : -2;
	}
	size_t left = (size_t)n;
	for (int i = 0; i < nv; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(c->in, v, nv);
	return 1;
}

/* TLS read: everything the TLS layer has now (it may hold decrypted
 * octets the socket no longer signals), up to input_max. */
static int read_tls(struct conn *c)
{
	int got = 0;
	while (evbuffer_get_length(c->in) < c->input_max) {
		struct evbuffer_iovec v[1];
		if (evbuffer_reserve_space(c->in, READ_CHUNK, v, 1) != 1)
			return -2;
		int len = v[0].iov_len > READ_CHUNK ? READ_CHUNK : (int)v[0].iov_len;
		ERR_clear_error();
		int n = SSL_read(c->ssl, v[0].iov_base, len);
		if (n > 0) {
			v[0].iov_len = (size_t)n;
			evbuffer_commit_space(c->in, v, 1);
			got = 1;
			continue;
		}
		evbuffer_commit_space(c->in, v, 0);
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			return got;
		case SSL_ERROR_WANT_WRITE:
			arm_write(c);
			return got;
		case SSL_ERROR_ZERO_RETURN:
			return got ? 1 : -1;
		default:
			return got ? 1 : -2;
		}
	}
	return got;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct conn *c = arg;
	if (c->failed) {
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	if (what & EV_TIMEOUT) {
		c->cb.event(c->arg, CONN_READ_TIMEOUT);
		return;
	}
	if (c->ssl && c->handshaking) {
		handshake(c);
		return;
	}
	int r = c->ssl ? read_tls(c) : read_plain(c);
	if (r == 0)
		return;
	if (r < 0) {
		c->cb.event(c->arg, r == -1 ? CONN_EOF : CONN_ERROR);
		return;
	}
	if (evbuffer_get_length(c->in) >= c->input_max)
		conn_stop_reading(c);
	c->cb.readable(c->arg);
}

/* Returns false when the write failed (output dropped). */
static bool write_some(struct conn *c)
{
	if (c->ssl) {
		if (c->handshaking)
			return true; /* the output waits for the handshake */
		while (evbuffer_get_length(c->out) > 0) {
			size_t len = evbuffer_get_length(c->out);
			if (len > TLS_WRITE_CHUNK)
				len = TLS_WRITE_CHUNK;
			const unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)len);
			ERR_clear_error();
			int n = SSL_write(c->ssl, p, (int)len);
			if (n > 0) {
				evbuffer_drain(c->out, (size_t)n);
				continue;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
				return true;
			evbuffer_drain(c->out, evbuffer_get_length(c->out));
			return false;
		}
		return true;
	}
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
	if (c->ssl && c->handshaking) {
		handshake(c);
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

/* What conn_new made, without touching the socket. */
static void free_parts(struct conn *c)
{
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->in)
		evbuffer_free(c->in);
	if (c->out)
		evbuffer_free(c->out);
}

struct conn *conn_new(struct event_base *base, int fd, const struct conn_callbacks *cb,
		      void *arg, size_t input_max)
{
	struct conn *c = mem_calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = fd;
	c->cb = *cb;
	c->arg = arg;
	c->input_max = input_max;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	if (c->in == NULL || c->out == NULL || c->rev == NULL || c->wev == NULL) {
		free_parts(c);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl) {
		/* close_notify, best effort: the socket is non-blocking and we
		 * do not wait for the peer's. */
		if (!c->handshaking && !c->failed)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	free_parts(c);
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

static void handshake(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->handshaking = false;
		if (evbuffer_get_length(c->out) == 0)
			disarm_write(c);
		if (c->cb.tls_ready)
			c->cb.tls_ready(c->arg);
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		disarm_write(c);
		return;
	case SSL_ERROR_WANT_WRITE:
		arm_write(c);
		return;
	default: {
		unsigned long code = ERR_peek_last_error();
		if (code)
			ERR_error_string_n(code, c->tls_error, sizeof(c->tls_error));
		else
			snprintf(c->tls_error, sizeof(c->tls_error), "%s",
				 e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN
					 ? "connection closed during the handshake"
					 : "handshake failed");
		ERR_clear_error();
		c->cb.event(c->arg, CONN_ERROR);
		return;
	}
	}
}

void conn_start_tls(struct conn *c, SSL_CTX *ctx)
{
	evbuffer_drain(c->in, evbuffer_get_length(c->in));
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		c->failed = true;
		event_active(c->rev, EV_READ, 0);
		return;
	}
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_accept_state(c->ssl);
	c->handshaking = true;
	conn_start_reading(c);
}

void conn_start_tls_client(struct conn *c, SSL_CTX *ctx, const char *server_name)
{
	evbuffer_drain(c->in, evbuffer_get_length(c->in));
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    (server_name && SSL_set_tlsext_host_name(c->ssl, server_name) != 1)) {
		c->failed = true;
		event_active(c->rev, EV_READ, 0);
		return;
	}
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_connect_state(c->ssl);
	c->handshaking = true;
	conn_start_reading(c);
	arm_write(c); /* the client speaks first: on_write starts the handshake */
}

const char *conn_tls_error(const struct conn *c)
{
	return c->tls_error;
}

int conn_handshaking(const struct conn *c)
{
	return c->ssl != NULL && c->handshaking;
}

int conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL && !c->handshaking;
}

const char *conn_tls_version(const struct conn *c)
{
	return conn_is_tls(c) ? SSL_get_version(c->ssl) : "";
}

const char *conn_tls_cipher(const struct conn *c)
{
	return conn_is_tls(c) ? SSL_get_cipher_name(c->ssl) : "";
}

int conn_tls_cipher_bits(const struct conn *c)
{
	return conn_is_tls(c) ? SSL_get_cipher_bits(c->ssl, NULL) : 0;
}
