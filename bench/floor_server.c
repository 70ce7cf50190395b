/*
 * floor_server: the least CPU the Maildir job of bench/run.sh can cost on
 * this machine, to measure Fulmar and Postfix against. It makes the system
 * calls that job needs and almost nothing else: one thread, epoll, one
 * write per reply; the messages whose data ended in one turn of the loop
 * are committed together at its end (group commit: start the write-back
 * of every copy, fsync each, rename each into new/, one fsync of new/,
 * held open), then their 250s. No command parsing beyond the first four
 * letters, no limits, no logging, no Received: header, no threads (the
 * fsyncs block the loop): a measuring stick, not a server. Never point a
 * client other than smtp-source at it.
 *
 *   floor_server PORT MAILDIR
 *
 * Listens on 127.0.0.1:PORT; MAILDIR must have tmp/ and new/. Built and
 * run by bench/run.sh (--servers ...,floor).
 */
#define _GNU_SOURCE /* accept4, memmem, sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_BUF (64 * 1024)

struct conn {
	int fd;
	int file;               /* the tmp/ copy while in data, else -1 */
	bool committing;        /* data ended: in the turn's commit */
	bool durable;           /* the commit: fsynced and renamed */
	struct conn *next;      /* in the turn's commit */
	size_t len;             /* octets in buf */
	char name[64];
	char buf[CONN_BUF];
	char out[CONN_BUF];     /* LF-converted data */
};

static const char *maildir;
static int new_dir = -1;
static unsigned long copies;
static struct conn *to_commit; /* data ended in this turn */

static void reply(struct conn *c, const char *text)
{
	if (write(c->fd, text, strlen(text)) < 0)
		perror("floor_server: reply");
}

static void path_of(char *buf, size_t len, const char *sub, const char *name)
{
	snprintf(buf, len, "%s/%s/%s", maildir, sub, name);
}

static void begin_data(struct conn *c)
{
	static const char head[] = "Return-Path: <from@bench.test>\n"
				   "Delivered-To: bench@example.test\n";
	char path[4096];
	snprintf(c->name, sizeof(c->name), "%lu.P%d.floor", ++copies, (int)getpid());
	path_of(path, sizeof(path), "tmp", c->name);
	c->file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->file >= 0 && write(c->file, head, sizeof(head) - 1) < 0) {
		close(c->file);
		c->file = -1;
	}
	if (c->file < 0) {
		perror("floor_server: tmp file");
		reply(c, "451 4.3.0 Local error\r\n");
		return;
	}
	reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/* The turn's group commit: every copy written back and fsynced, renamed
 * into new/, one fsync of new/, then the replies. */
static void commit_turn(void)
{
	char from[4096], to[4096];
	for (struct conn *c = to_commit; c; c = c->next)
		(void)sync_file_range(c->file, 0, 0, SYNC_FILE_RANGE_WRITE);
	bool any = false;
	for (struct conn *c = to_commit; c; c = c->next) {
		bool synced = fsync(c->file) == 0;
		synced &= close(c->file) == 0;
		c->file = -1;
		path_of(from, sizeof(from), "tmp", c->name);
		path_of(to, sizeof(to), "new", c->name);
		c->durable = synced && rename(from, to) == 0;
		any |= c->durable;
	}
	bool dir_ok = !any || fsync(new_dir) == 0;
	for (struct conn *c = to_commit; c; c = c->next) {
		if (c->durable && dir_ok) {
			reply(c, "250 2.0.0 Ok: queued\r\n");
		} else {
			perror("floor_server: commit");
			reply(c, "451 4.3.0 Local error\r\n");
		}
		c->committing = false;
	}
}

/* In data: copies what buf holds up to the final dot, CR LF as LF (no
 * dot-unstuffing: smtp-source sends no line that starts with a dot).
 * Returns true once the final dot was consumed. */
static bool take_data(struct conn *c)
{
	const char *end = memmem(c->buf, c->len, "\r\n.\r\n", 5);
	/* Without the end, hold back four octets (a terminator may be cut)
	 * and a CR whose LF is held back. */
	size_t n = end ? (size_t)(end - c->buf) + 2 : (c->len > 4 ? c->len - 4 : 0);
	if (!end && n > 0 && c->buf[n - 1] == '\r')
		n--;
	size_t o = 0;
	for (size_t i = 0; i < n; i++)
		if (!(c->buf[i] == '\r' && i + 1 < n && c->buf[i + 1] == '\n'))
			c->out[o++] = c->buf[i];
	if (o > 0 && write(c->file, c->out, o) < 0)
		perror("floor_server: write");
	size_t used = end ? n + 3 : n;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	if (end) {
		c->committing = true;
		c->next = to_commit;
		to_commit = c;
	}
	return end != NULL;
}

/* One command line; returns false on QUIT. */
static bool command(struct conn *c, const char *line)
{
	if (strncasecmp(line, "QUIT", 4) == 0) {
		reply(c, "221 2.0.0 Bye\r\n");
		return false;
	}
	if (strncasecmp(line, "DATA", 4) == 0)
		begin_data(c);
	else if (strncasecmp(line, "HELO", 4) == 0 || strncasecmp(line, "EHLO", 4) == 0)
		reply(c, "250 floor.bench.test\r\n");
	else
		reply(c, "250 2.0.0 Ok\r\n");
	return true;
}

/* Runs the commands buf holds; returns false on QUIT. */
static bool run_input(struct conn *c)
{
	while (!c->committing) {
		if (c->file >= 0) {
			if (!take_data(c))
				return true;
			continue;
		}
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl == NULL)
			return true;
		*nl = '\0';
		size_t used = (size_t)(nl - c->buf) + 1;
		bool go_on = command(c, c->buf);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (!go_on)
			return false;
	}
	return true;
}

/* Returns false when the connection is to be closed. */
static bool on_readable(struct conn *c)
{
	if (c->committing)
		return true; /* read after the commit (epoll reports it again) */
	if (c->len == sizeof(c->buf))
		return false;
	ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (r <= 0)
		return r < 0 && errno == EAGAIN;
	c->len += (size_t)r;
	return run_input(c);
}

static void conn_close(struct conn *c)
{
	if (c->file >= 0)
		close(c->file); /* an unfinished copy stays in tmp/ */
	close(c->fd);           /* also leaves the epoll set */
	free(c);
}

static int listen_on(const char *port)
{
	char *end;
	long p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p < 1 || p > 65535) {
		fprintf(stderr, "floor_server: bad port: %s\n", port);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0) {
		perror("floor_server: listen");
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: floor_server PORT MAILDIR\n");
		return 2;
	}
	maildir = argv[2];
	char path[4096];
	snprintf(path, sizeof(path), "%s/new", maildir);
	new_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (new_dir < 0) {
		perror(path);
		return 1;
	}
	int lfd = listen_on(argv[1]);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	if (lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
		return 1;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				if ((c = calloc(1, sizeof(*c))) == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				c->file = -1;
				struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				reply(c, "220 floor.bench.test ESMTP\r\n");
			} else if (!on_readable(c)) {
				conn_close(c);
			}
		}
		if (to_commit == NULL)
			continue;
		commit_turn();
		for (struct conn *c = to_commit, *next; c; c = next) {
			next = c->next;
			if (!run_input(c)) /* what came in behind the data */
				conn_close(c);
		}
		to_commit = NULL;
	}
}
