/*
 * tls_load: SMTP-over-TLS load client for bench/tls_run.sh.
 *
 *   tls_load --port P --mode handshake --conns N --duration S [options]
 *   tls_load --port P --mode mail --conns N --count M --per-conn K [options]
 *
 * One process, --threads T threads (default 1), each with its own epoll
 * loop and its share of the N concurrent connections, all non-blocking.
 * Every connection goes to 127.0.0.1 (--host takes another 127.x.y.z
 * address; anything outside 127.0.0.0/8 is refused).
 *
 * handshake: each connection in a loop: connect, read the 220 greeting,
 *   EHLO, STARTTLS, a full TLS handshake (TLS 1.3 by default; no session
 *   is ever offered for resumption), QUIT inside TLS, read the 221, wait
 *   for the server to close, close.  For --duration seconds; counts the
 *   handshakes completed within it.
 *
 * mail: each connection: connect, 220, EHLO, STARTTLS, handshake, EHLO
 *   again, then up to K messages (MAIL FROM, RCPT TO, DATA, --size octets
 *   of message, one command at a time, no pipelining: as smtp-source
 *   does), QUIT, and again, until M messages got their 250.  Every message
 *   has its own Message-Id and the same body.
 *
 * Prints one JSON object on stdout: the counts, the wall time, the
 * client's own CPU seconds (getrusage, all threads), the errors by kind
 * and the TLS version, cipher and key-exchange group of one connection.
 *
 * Build: cc -O2 -pthread -o tls_load tls_load.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_HANDSHAKE, MODE_MAIL };

enum state {
	S_IDLE,       /* not connected */
	S_CONNECTING, /* non-blocking connect in progress */
	S_GREETING,   /* waiting for 220 */
	S_EHLO1,      /* EHLO sent in plaintext */
	S_STARTTLS,   /* STARTTLS sent, waiting for 220 */
	S_HANDSHAKE,  /* SSL_connect in progress */
	S_EHLO2,      /* EHLO sent inside TLS */
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_BODY,       /* message sent, waiting for its 250 */
	S_QUIT,       /* QUIT sent, waiting for 221 */
	S_CLOSING,    /* 221 seen, waiting for the server to close */
};

/* Error kinds reported in the JSON. */
enum err {
	E_CONNECT, E_GREETING, E_EHLO, E_STARTTLS, E_HANDSHAKE, E_MAIL, E_RCPT,
	E_DATA, E_MESSAGE, E_QUIT, E_IO, E_TIMEOUT, E_NERR
};
static const char *const err_names[E_NERR] = {
	"connect", "greeting", "ehlo", "starttls", "handshake", "mail", "rcpt",
	"data", "message", "quit", "io", "timeout"
};

static atomic_int stop_flag;

struct buf {
	char *p;
	size_t len, cap, off; /* off: already sent (out) / consumed (in) */
};

struct conn {
	int fd;
	SSL *ssl;
	enum state st;
	struct buf in, out;
	int msgs_here;     /* messages sent on this connection */
	int quota;         /* mail mode: messages reserved for it */
	double last_io;    /* for the stall timeout */
	struct worker *w;
};

struct worker {
	int id;
	pthread_t thr;
	int ep;
	SSL_CTX *ctx;
	struct conn *conns;
	int nconns;
	/* results */
	uint64_t handshakes, cycles, messages, errors[E_NERR];
	char tls_version[32], tls_cipher[64], tls_group[32];
	char last_error[256];
};

/* options */
static enum mode mode = MODE_HANDSHAKE;
static const char *host = "127.0.0.1";
static int port;
static int nconns = 50;
static int nthreads = 1;
static double duration = 10.0;
static long long count = 1000;
static int per_conn = 10;
static size_t msg_size = 5120;
static const char *mail_from = "from@bench.test";
static const char *rcpt_to = "bench@example.test";
static const char *helo = "tls-load.bench.test";
static int tls_max = TLS1_3_VERSION, tls_min = TLS1_3_VERSION;
static double stall_timeout = 30.0;

/* shared state */
static atomic_llong msgs_started;  /* mail mode: messages handed out */
static atomic_llong msgs_done;
static double t_last_msg;          /* when the last message got its 250 */
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static double t_start, t_deadline;
static struct sockaddr_in dst;
static char *body;  /* the message text after the headers, dot-terminated */
static size_t body_len;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tls_load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->off > 0 && b->off == b->len) {
		b->off = b->len = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			die("out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_reset(struct buf *b)
{
	b->len = b->off = 0;
}

static atomic_int errors_all;

static void set_error(struct worker *w, enum err e, const char *fmt, ...)
{
	va_list ap;
	w->errors[e]++;
	/* A server that fails everything: give up rather than loop. */
	if (atomic_fetch_add(&errors_all, 1) + 1 >= 1000)
		atomic_store(&stop_flag, 1);
	va_start(ap, fmt);
	vsnprintf(w->last_error, sizeof(w->last_error), fmt, ap);
	va_end(ap);
}

static void ep_mod(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) < 0)
		die("epoll_ctl MOD: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd); /* also removes it from the epoll set */
		c->fd = -1;
	}
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->st = S_IDLE;
	c->msgs_here = 0;
	c->quota = 0;
}

static int want_more_work(void)
{
	if (atomic_load(&stop_flag))
		return 0;
	if (mode == MODE_HANDSHAKE)
		return now() < t_deadline;
	return atomic_load(&msgs_started) < count;
}

/* Mail mode: reserves up to per_conn of the messages still to send for a
 * new connection, so that no connection is opened for nothing. */
static int reserve_quota(void)
{
	long long cur = atomic_load(&msgs_started);
	for (;;) {
		long long left = count - cur;
		if (left <= 0)
			return 0;
		int q = left < per_conn ? (int)left : per_conn;
		if (atomic_compare_exchange_weak(&msgs_started, &cur, cur + q))
			return q;
	}
}

static void conn_start(struct conn *c)
{
	struct worker *w = c->w;
	if (mode == MODE_MAIL) {
		c->quota = reserve_quota();
		if (c->quota == 0) {
			c->st = S_IDLE;
			return;
		}
	}
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->last_io = now();
	int r = connect(c->fd, (struct sockaddr *)&dst, sizeof(dst));
	if (r < 0 && errno != EINPROGRESS) {
		set_error(w, E_CONNECT, "connect: %s", strerror(errno));
		close(c->fd);
		c->fd = -1;
		c->st = S_IDLE;
		return;
	}
	c->st = S_CONNECTING;
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
		die("epoll_ctl ADD: %s", strerror(errno));
}

/* Ends this connection's cycle and starts the next one if there is work. */
static void conn_recycle(struct conn *c)
{
	conn_close(c);
	if (want_more_work())
		conn_start(c);
}

static void conn_fail(struct conn *c, enum err e, const char *what)
{
	set_error(c->w, e, "%s (state %d)", what, (int)c->st);
	/* Mail mode: the messages this connection did not send go back to
	 * the pool, to be sent on another. */
	if (mode == MODE_MAIL && c->quota > c->msgs_here) {
		int back = c->quota - c->msgs_here;
		if (c->st == S_MAIL || c->st == S_RCPT || c->st == S_DATA || c->st == S_BODY)
			back++; /* the one in progress failed */
		atomic_fetch_sub(&msgs_started, back);
		c->quota = c->msgs_here;
	} else if (mode == MODE_MAIL && (c->st == S_MAIL || c->st == S_RCPT ||
					 c->st == S_DATA || c->st == S_BODY)) {
		atomic_fetch_sub(&msgs_started, 1);
	}
	conn_recycle(c);
}

/* Sends what is in c->out; returns -1 on a fatal error. */
static int flush_out(struct conn *c)
{
	struct buf *b = &c->out;
	while (b->off < b->len) {
		size_t n = b->len - b->off;
		if (c->ssl) {
			ERR_clear_error();
			int r = SSL_write(c->ssl, b->p + b->off, (int)n);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				return -1;
			}
			b->off += (size_t)r;
		} else {
			ssize_t r = send(c->fd, b->p + b->off, n, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				return -1;
			}
			b->off += (size_t)r;
		}
	}
	if (b->off == b->len)
		buf_reset(b);
	ep_mod(c, EPOLLIN | (b->len > b->off ? EPOLLOUT : 0));
	return 0;
}

static int send_str(struct conn *c, const char *s, size_t n)
{
	buf_add(&c->out, s, n);
	return flush_out(c);
}

static int send_cmd(struct conn *c, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	return send_str(c, line, (size_t)n);
}

static void start_handshake(struct conn *c);
static void drive_handshake(struct conn *c);

static void next_message_or_quit(struct conn *c)
{
	if (c->msgs_here < c->quota && !atomic_load(&stop_flag)) {
		c->msgs_here++;
		c->st = S_MAIL;
		if (send_cmd(c, "MAIL FROM:<%s>\r\n", mail_from) < 0)
			conn_fail(c, E_IO, "send MAIL");
		return;
	}
	c->st = S_QUIT;
	if (send_cmd(c, "QUIT\r\n") < 0)
		conn_fail(c, E_IO, "send QUIT");
}

static void send_message(struct conn *c)
{
	char hdr[512];
	static atomic_ullong serial;
	unsigned long long id = atomic_fetch_add(&serial, 1);
	int n = snprintf(hdr, sizeof(hdr),
			 "From: <%s>\r\nTo: <%s>\r\nSubject: tls_load\r\n"
			 "Message-Id: <%d.%llu@tls-load.bench.test>\r\n\r\n",
			 mail_from, rcpt_to, (int)getpid(), id);
	buf_add(&c->out, hdr, (size_t)n);
	c->st = S_BODY;
	if (send_str(c, body, body_len) < 0)
		conn_fail(c, E_IO, "send message");
}

/* One complete reply (the last line's code) in state c->st. */
static void on_reply(struct conn *c, int code, const char *text)
{
	struct worker *w = c->w;
	switch (c->st) {
	case S_GREETING:
		if (code != 220)
			return conn_fail(c, E_GREETING, text);
		c->st = S_EHLO1;
		if (send_cmd(c, "EHLO %s\r\n", helo) < 0)
			conn_fail(c, E_IO, "send EHLO");
		return;
	case S_EHLO1:
		if (code != 250)
			return conn_fail(c, E_EHLO, text);
		c->st = S_STARTTLS;
		if (send_cmd(c, "STARTTLS\r\n") < 0)
			conn_fail(c, E_IO, "send STARTTLS");
		return;
	case S_STARTTLS:
		if (code != 220)
			return conn_fail(c, E_STARTTLS, text);
		if (c->in.len > c->in.off)
			return conn_fail(c, E_STARTTLS, "data after the STARTTLS reply");
		start_handshake(c);
		return;
	case S_EHLO2:
		if (code != 250)
			return conn_fail(c, E_EHLO, text);
		next_message_or_quit(c);
		return;
	case S_MAIL:
		if (code != 250)
			return conn_fail(c, E_MAIL, text);
		c->st = S_RCPT;
		if (send_cmd(c, "RCPT TO:<%s>\r\n", rcpt_to) < 0)
			conn_fail(c, E_IO, "send RCPT");
		return;
	case S_RCPT:
		if (code != 250 && code != 251)
			return conn_fail(c, E_RCPT, text);
		c->st = S_DATA;
		if (send_cmd(c, "DATA\r\n") < 0)
			conn_fail(c, E_IO, "send DATA");
		return;
	case S_DATA:
		if (code != 354)
			return conn_fail(c, E_DATA, text);
		send_message(c);
		return;
	case S_BODY:
		if (code != 250)
			return conn_fail(c, E_MESSAGE, text);
		w->messages++;
		atomic_fetch_add(&msgs_done, 1);
		{
			double t = now();
			pthread_mutex_lock(&last_lock);
			if (t > t_last_msg)
				t_last_msg = t;
			pthread_mutex_unlock(&last_lock);
		}
		next_message_or_quit(c);
		return;
	case S_QUIT:
		if (code != 221)
			set_error(w, E_QUIT, "QUIT: %s", text);
		w->cycles++;
		/* The server closes after 221; wait for that so that it, not
		 * we, keeps the TIME_WAIT. */
		c->st = S_CLOSING;
		return;
	default:
		conn_fail(c, E_IO, "unexpected reply");
	}
}

/* Parses complete replies in c->in. */
static void parse_replies(struct conn *c)
{
	for (;;) {
		struct buf *b = &c->in;
		char *start = b->p + b->off;
		size_t avail = b->len - b->off;
		char *nl = memchr(start, '\n', avail);
		if (nl == NULL)
			break;
		size_t linelen = (size_t)(nl - start) + 1;
		int last = linelen < 4 || start[3] != '-';
		b->off += linelen;
		if (!last)
			continue;
		int code = atoi(start);
		char text[128];
		size_t tl = linelen < sizeof(text) - 1 ? linelen : sizeof(text) - 1;
		memcpy(text, start, tl);
		text[tl] = 0;
		text[strcspn(text, "\r\n")] = 0;
		enum state before = c->st;
		int fd = c->fd;
		if (b->off == b->len)
			buf_reset(b);
		on_reply(c, code, text);
		/* The connection may have been closed, recycled or switched
		 * to TLS. */
		if (c->fd != fd || c->st == S_IDLE || c->st == S_HANDSHAKE ||
		    before == S_STARTTLS)
			return;
	}
}

static void start_handshake(struct conn *c)
{
	struct worker *w = c->w;
	buf_reset(&c->in);
	c->ssl = SSL_new(w->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		die("SSL_new");
	SSL_set_connect_state(c->ssl);
	c->st = S_HANDSHAKE;
	drive_handshake(c);
}

static void drive_handshake(struct conn *c)
{
	struct worker *w = c->w;
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		if (mode == MODE_HANDSHAKE) {
			if (now() <= t_deadline)
				w->handshakes++;
		} else {
			w->handshakes++;
		}
		if (w->tls_version[0] == 0) {
			snprintf(w->tls_version, sizeof(w->tls_version), "%s",
				 SSL_get_version(c->ssl));
			snprintf(w->tls_cipher, sizeof(w->tls_cipher), "%s",
				 SSL_get_cipher_name(c->ssl));
			int nid = SSL_get_negotiated_group(c->ssl);
			const char *g = nid ? OBJ_nid2sn(nid & ~TLSEXT_nid_unknown) : "?";
			snprintf(w->tls_group, sizeof(w->tls_group), "%s", g ? g : "?");
		}
		if (SSL_session_reused(c->ssl))
			set_error(w, E_HANDSHAKE, "a session was resumed");
		if (mode == MODE_HANDSHAKE) {
			c->st = S_QUIT;
			if (send_cmd(c, "QUIT\r\n") < 0)
				conn_fail(c, E_IO, "send QUIT");
		} else {
			c->st = S_EHLO2;
			if (send_cmd(c, "EHLO %s\r\n", helo) < 0)
				conn_fail(c, E_IO, "send EHLO");
		}
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ep_mod(c, EPOLLIN);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ep_mod(c, EPOLLOUT);
		return;
	}
	char msg[200];
	unsigned long le = ERR_peek_error();
	snprintf(msg, sizeof(msg), "handshake: SSL error %d, %s", e,
		 le ? ERR_reason_error_string(le) : strerror(errno));
	conn_fail(c, E_HANDSHAKE, msg);
}

/* Reads what there is; 1 when the peer closed, -1 on error, 0 otherwise. */
static int read_in(struct conn *c)
{
	char tmp[16384];
	for (;;) {
		if (c->ssl) {
			ERR_clear_error();
			int r = SSL_read(c->ssl, tmp, sizeof(tmp));
			if (r > 0) {
				buf_add(&c->in, tmp, (size_t)r);
				continue;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return 0;
			if (e == SSL_ERROR_ZERO_RETURN)
				return 1;
			if (e == SSL_ERROR_SYSCALL && errno == 0)
				return 1;
			if (e == SSL_ERROR_SSL && c->st == S_CLOSING)
				return 1; /* unexpected EOF without close_notify */
			return -1;
		}
		ssize_t r = recv(c->fd, tmp, sizeof(tmp), 0);
		if (r > 0) {
			buf_add(&c->in, tmp, (size_t)r);
			/* Stop reading plaintext at the STARTTLS reply: what
			 * follows is TLS. */
			if (c->st == S_STARTTLS)
				return 0;
			continue;
		}
		if (r == 0)
			return 1;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		return -1;
	}
}

static void on_event(struct conn *c, uint32_t ev)
{
	c->last_io = now();
	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			char m[128];
			snprintf(m, sizeof(m), "connect: %s", strerror(err));
			return conn_fail(c, E_CONNECT, m);
		}
		c->st = S_GREETING;
		ep_mod(c, EPOLLIN);
		return;
	}
	if (c->st == S_HANDSHAKE) {
		drive_handshake(c);
		return;
	}
	if ((ev & EPOLLOUT) && c->out.len > c->out.off) {
		if (flush_out(c) < 0)
			return conn_fail(c, E_IO, "write");
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		int fd = c->fd;
		int r = read_in(c);
		if (c->in.len > c->in.off)
			parse_replies(c);
		if (c->fd != fd || c->st == S_IDLE)
			return;
		if (r == 1) {
			if (c->st == S_CLOSING)
				conn_recycle(c);
			else
				conn_fail(c, E_IO, "server closed the connection");
			return;
		}
		if (r < 0) {
			if (c->st == S_CLOSING)
				conn_recycle(c);
			else
				conn_fail(c, E_IO, "read error");
			return;
		}
		/* A TLS write may have waited for a read. */
		if (c->ssl && c->st != S_HANDSHAKE && c->out.len > c->out.off &&
		    flush_out(c) < 0)
			conn_fail(c, E_IO, "write");
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	for (int i = 0; i < w->nconns; i++)
		conn_start(&w->conns[i]);
	double last_sweep = now();
	for (;;) {
		int active = 0;
		for (int i = 0; i < w->nconns; i++)
			if (w->conns[i].st != S_IDLE)
				active++;
		double t = now();
		if (mode == MODE_HANDSHAKE && t >= t_deadline)
			break; /* what is in flight at the end is dropped */
		if (active == 0) {
			if (!want_more_work())
				break;
			for (int i = 0; i < w->nconns; i++)
				conn_start(&w->conns[i]);
			continue;
		}
		int n = epoll_wait(w->ep, evs, 256, 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
		t = now();
		if (t - last_sweep > 1.0) {
			last_sweep = t;
			for (int i = 0; i < w->nconns; i++) {
				struct conn *c = &w->conns[i];
				if (c->st != S_IDLE && t - c->last_io > stall_timeout)
					conn_fail(c, E_TIMEOUT, "no progress");
				else if (c->st == S_IDLE && want_more_work())
					conn_start(c);
			}
		}
	}
	for (int i = 0; i < w->nconns; i++)
		conn_close(&w->conns[i]);
	return NULL;
}

/* The certificate is not checked (self-signed, and the same for both
 * servers): no chain is built, which saves the client CPU for the load. */
static int no_chain_check(X509_STORE_CTX *x, void *arg)
{
	(void)x;
	(void)arg;
	return 1;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, tls_min);
	SSL_CTX_set_max_proto_version(ctx, tls_max);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, no_chain_check, NULL);
	/* Full handshakes only: no client session cache, no session ever
	 * offered, tickets not asked for. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	return ctx;
}

static void usage(int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: tls_load --port P [--host 127.0.0.1] [--mode handshake|mail]\n"
		"         [--conns N] [--threads T] [--duration S]\n"
		"         [--count M] [--per-conn K] [--size OCTETS]\n"
		"         [--from ADDR] [--to ADDR] [--tls 1.2|1.3] [--timeout S]\n");
	exit(rc);
}

static void make_body(void)
{
	/* The message after its headers: lines of 78 characters and CRLF,
	 * filled up to msg_size octets in all (headers are about 150), then
	 * the end-of-data line. */
	size_t target = msg_size > 200 ? msg_size - 150 : 50;
	body = malloc(target + 200);
	if (body == NULL)
		die("out of memory");
	size_t n = 0;
	const char *words = "abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ ";
	size_t wl = strlen(words);
	int line = 0;
	while (n + 80 <= target) {
		for (int i = 0; i < 78; i++)
			body[n++] = words[(size_t)(i + line) % wl];
		body[n++] = '\r';
		body[n++] = '\n';
		line++;
	}
	memcpy(body + n, ".\r\n", 3);
	n += 3;
	body_len = n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, 0, 'p' },
		{ "host", required_argument, 0, 'H' },
		{ "mode", required_argument, 0, 'm' },
		{ "conns", required_argument, 0, 'c' },
		{ "threads", required_argument, 0, 't' },
		{ "duration", required_argument, 0, 'd' },
		{ "count", required_argument, 0, 'n' },
		{ "per-conn", required_argument, 0, 'k' },
		{ "size", required_argument, 0, 's' },
		{ "from", required_argument, 0, 'f' },
		{ "to", required_argument, 0, 'r' },
		{ "tls", required_argument, 0, 'T' },
		{ "timeout", required_argument, 0, 'o' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'p': port = atoi(optarg); break;
		case 'H': host = optarg; break;
		case 'm':
			if (strcmp(optarg, "handshake") == 0)
				mode = MODE_HANDSHAKE;
			else if (strcmp(optarg, "mail") == 0)
				mode = MODE_MAIL;
			else
				usage(2);
			break;
		case 'c': nconns = atoi(optarg); break;
		case 't': nthreads = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'n': count = atoll(optarg); break;
		case 'k': per_conn = atoi(optarg); break;
		case 's': msg_size = (size_t)atol(optarg); break;
		case 'f': mail_from = optarg; break;
		case 'r': rcpt_to = optarg; break;
		case 'T':
			if (strcmp(optarg, "1.3") == 0)
				tls_min = tls_max = TLS1_3_VERSION;
			else if (strcmp(optarg, "1.2") == 0)
				tls_min = tls_max = TLS1_2_VERSION;
			else
				usage(2);
			break;
		case 'o': stall_timeout = atof(optarg); break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (port <= 0 || port > 65535 || nconns <= 0 || nthreads <= 0 || per_conn <= 0)
		usage(2);
	if (nthreads > nconns)
		nthreads = nconns;
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1)
		die("bad --host %s", host);
	if ((ntohl(dst.sin_addr.s_addr) >> 24) != 127)
		die("refusing %s: loopback (127.0.0.0/8) only", host);
	signal(SIGPIPE, SIG_IGN);
	make_body();

	struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
	struct conn *cs = calloc((size_t)nconns, sizeof(*cs));
	if (ws == NULL || cs == NULL)
		die("out of memory");
	int per = nconns / nthreads, extra = nconns % nthreads, at = 0;
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = &ws[i];
		w->id = i;
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->ep < 0)
			die("epoll_create1: %s", strerror(errno));
		w->ctx = client_ctx();
		w->nconns = per + (i < extra ? 1 : 0);
		w->conns = &cs[at];
		for (int j = 0; j < w->nconns; j++) {
			cs[at + j].fd = -1;
			cs[at + j].w = w;
		}
		at += w->nconns;
	}

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	t_start = now();
	t_deadline = t_start + duration;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&ws[i].thr, NULL, worker_main, &ws[i]) != 0)
			die("pthread_create");
	for (int i = 0; i < nthreads; i++)
		pthread_join(ws[i].thr, NULL);
	double t_end = now();
	getrusage(RUSAGE_SELF, &ru1);

	double elapsed = mode == MODE_HANDSHAKE ? duration : t_end - t_start;
	double ucpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
	double scpu = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		      (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	uint64_t hs = 0, cyc = 0, msgs = 0, errs[E_NERR] = { 0 }, nerr = 0;
	const char *ver = "", *cip = "", *grp = "", *lasterr = "";
	for (int i = 0; i < nthreads; i++) {
		hs += ws[i].handshakes;
		cyc += ws[i].cycles;
		msgs += ws[i].messages;
		for (int e = 0; e < E_NERR; e++) {
			errs[e] += ws[i].errors[e];
			nerr += ws[i].errors[e];
		}
		if (!ver[0] && ws[i].tls_version[0]) {
			ver = ws[i].tls_version;
			cip = ws[i].tls_cipher;
			grp = ws[i].tls_group;
		}
		if (ws[i].last_error[0])
			lasterr = ws[i].last_error;
	}
	printf("{\"mode\":\"%s\",\"port\":%d,\"conns\":%d,\"threads\":%d,"
	       "\"elapsed_s\":%.4f,\"wall_s\":%.4f,\"last_message_s\":%.4f,\"handshakes\":%llu,\"cycles\":%llu,"
	       "\"messages\":%llu,\"count\":%lld,\"per_conn\":%d,\"approx_size\":%zu,"
	       "\"client_user_s\":%.3f,\"client_sys_s\":%.3f,\"client_cpu_s\":%.3f,",
	       mode == MODE_HANDSHAKE ? "handshake" : "mail", port, nconns, nthreads,
	       elapsed, t_end - t_start, t_last_msg > 0 ? t_last_msg - t_start : 0.0,
	       (unsigned long long)hs,
	       (unsigned long long)cyc, (unsigned long long)msgs,
	       mode == MODE_MAIL ? count : 0, per_conn, body_len + 150, ucpu, scpu,
	       ucpu + scpu);
	printf("\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",\"tls_group\":\"%s\","
	       "\"errors_total\":%llu,\"errors\":{",
	       ver, cip, grp, (unsigned long long)nerr);
	int first = 1;
	for (int e = 0; e < E_NERR; e++) {
		if (!errs[e])
			continue;
		printf("%s\"%s\":%llu", first ? "" : ",", err_names[e],
		       (unsigned long long)errs[e]);
		first = 0;
	}
	printf("},\"last_error\":\"");
	for (const char *p = lasterr; *p; p++)
		if (*p != '"' && *p != '\\' && (unsigned char)*p >= 32)
			putchar(*p);
	printf("\"}\n");
	return 0;
}
