/*
 * log: formats and writes event lines (see log.h). The global state is
 * the level and the destination descriptors, set at start-up and on
 * reload from the loop thread, and the batch, which only the thread that
 * started it (the loop's) touches.
 */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static int file_fd = -1;
static bool to_stderr = true;

static const char *const level_names[] = { "debug", "info", "warning", "error" };

/* Room for many lines: a turn that logs more is written in several. */
#define LOG_BATCH_MAX (32 * 1024)

static _Thread_local bool batching;
static char batch[LOG_BATCH_MAX];
static size_t batch_len;
static void (*batch_arm)(void *arg);
static void *batch_arm_arg;

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_set_level(enum log_level level)
{
	min_level = level;
}

int log_open_file(const char *path, bool also_stderr)
{
	log_flush();
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (file_fd >= 0)
		close(file_fd);
	file_fd = fd;
	to_stderr = also_stderr;
	return 0;
}

void log_close_file(void)
{
	log_flush();
	if (file_fd >= 0)
		close(file_fd);
	file_fd = -1;
	to_stderr = true;
}

static void append(struct log_line *l, const char *s, size_t n)
{
	size_t room = LOG_LINE_MAX - 1 - l->len; /* keep one octet for '\n' */
	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* v in exactly width decimal digits (v < 10^width). */
static char *put_digits(char *p, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

/* "2026-11-29T09:00:00." for the second of tv, kept per thread: most
 * lines fall in the same second as the one before. */
static const char *second_stamp(time_t sec)
{
	static _Thread_local time_t cached = (time_t)-1;
	static _Thread_local char stamp[21];
	if (sec != cached) {
		struct tm tm;
		gmtime_r(&sec, &tm);
		char *p = put_digits(stamp, (unsigned)(tm.tm_year + 1900) % 10000, 4);
		*p++ = '-';
		p = put_digits(p, (unsigned)tm.tm_mon + 1, 2);
		*p++ = '-';
		p = put_digits(p, (unsigned)tm.tm_mday, 2);
		*p++ = 'T';
		p = put_digits(p, (unsigned)tm.tm_hour, 2);
		*p++ = ':';
		p = put_digits(p, (unsigned)tm.tm_min, 2);
		*p++ = ':';
		p = put_digits(p, (unsigned)tm.tm_sec, 2);
		*p++ = '.';
		*p = '\0';
		cached = sec;
	}
	return stamp;
}

void log_begin(struct log_line *l, enum log_level level, const char *event)
{
	l->len = 0;
	l->level = level;
	l->active = level >= min_level;
	if (!l->active)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	append(l, second_stamp(tv.tv_sec), 20);
	char millis[5];
	put_digits(millis, (unsigned)(tv.tv_usec / 1000), 3);
	millis[3] = 'Z';
	millis[4] = ' ';
	append(l, millis, sizeof(millis));
	append(l, level_names[level], strlen(level_names[level]));
	append(l, " event=", 7);
	append(l, event, strlen(event));
}

static bool needs_quotes(const char *v, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c >= 0x7f)
			return true;
	}
	return false;
}

void log_strn(struct log_line *l, const char *key, const char *v, size_t n)
{
	if (!l->active)
		return;
	append(l, " ", 1);
	append(l, key, strlen(key));
	append(l, "=", 1);
	if (!needs_quotes(v, n)) {
		append(l, v, n);
		return;
	}
	append(l, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		char esc[5];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			append(l, esc, 2);
		} else if (c < ' ' || c == 0x7f) {
			static const char hex[] = "0123456789abcdef";
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			append(l, esc, 4);
		} else {
			append(l, (const char *)&v[i], 1);
		}
		if (l->len >= LOG_LINE_MAX - 8) {
			append(l, "...", 3);
			break;
		}
	}
	append(l, "\"", 1);
}

void log_str(struct log_line *l, const char *key, const char *value)
{
	log_strn(l, key, value ? value : "", value ? strlen(value) : 0);
}

/* v in decimal, written backwards to end at *at (moved back to its
 * first digit). */
static void put_decimal(char *buf, size_t *at, unsigned long long v)
{
	do {
		buf[--*at] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
}

void log_int(struct log_line *l, const char *key, long long value)
{
	if (!l->active)
		return;
	char digits[24];
	size_t at = sizeof(digits);
	put_decimal(digits, &at, value < 0 ? 0 - (unsigned long long)value
					   : (unsigned long long)value);
	if (value < 0)
		digits[--at] = '-';
	log_strn(l, key, digits + at, sizeof(digits) - at);
}

void log_seconds(struct log_line *l, const char *key, double seconds)
{
	if (!l->active)
		return;
	unsigned long long ms = seconds > 0 ? (unsigned long long)(seconds * 1000.0 + 0.5) : 0;
	char digits[32];
	size_t at = sizeof(digits) - 4;
	put_digits(digits + at + 1, (unsigned)(ms % 1000), 3);
	digits[at] = '.';
	put_decimal(digits, &at, ms / 1000);
	log_strn(l, key, digits + at, sizeof(digits) - at);
}

void log_fmt(struct log_line *l, const char *key, const char *fmt, ...)
{
	if (!l->active)
		return;
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1;
	log_strn(l, key, tmp, len);
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += w;
		len -= (size_t)w;
	}
}

/* Whole lines to stderr, at most PIPE_BUF octets a write: a write that
 * large to a pipe is atomic, so other threads' lines never land inside
 * one (the log file is appended to, where every write is). */
static void write_stderr(const char *buf, size_t len)
{
	while (len > 0) {
		size_t n = len;
		if (n > PIPE_BUF) {
			const char *nl = memrchr(buf, '\n', PIPE_BUF);
			n = nl ? (size_t)(nl - buf) + 1 : PIPE_BUF;
		}
		write_all(STDERR_FILENO, buf, n);
		buf += n;
		len -= n;
	}
}

static void write_out(const char *buf, size_t len)
{
	if (file_fd >= 0)
		write_all(file_fd, buf, len);
	if (to_stderr || file_fd < 0)
		write_stderr(buf, len);
}

void log_end(struct log_line *l)
{
	if (!l->active)
		return;
	l->active = false;
	l->buf[l->len++] = '\n';
	if (!batching) {
		write_out(l->buf, l->len);
		return;
	}
	if (batch_len + l->len > sizeof(batch))
		log_flush();
	bool was_empty = batch_len == 0;
	memcpy(batch + batch_len, l->buf, l->len);
	batch_len += l->len;
	if (l->level >= LOG_WARNING)
		log_flush();
	else if (was_empty && batch_arm)
		batch_arm(batch_arm_arg);
}

void log_batch_start(void (*arm)(void *arg), void *arg)
{
	if (batch_arm != NULL && !batching)
		abort(); /* the batch is one thread's: another has it */
	batch_arm = arm;
	batch_arm_arg = arg;
	batch_len = 0;
	batching = true;
}

void log_flush(void)
{
	if (!batching || batch_len == 0)
		return;
	write_out(batch, batch_len);
	batch_len = 0;
}

/* An abort on the batching thread: the batch is written (write(2) is
 * safe in a signal handler), then the abort goes on. On another thread
 * the batch may be in use: it is left. */
static void on_abort(int sig)
{
	if (batching && batch_len > 0)
		write_out(batch, batch_len);
	batch_len = 0;
	raise(sig); /* SA_RESETHAND: the default action now */
}

void log_flush_on_abort(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_abort;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGABRT, &sa, NULL);
}

void log_batch_stop(void)
{
	log_flush();
	batching = false;
	batch_arm = NULL;
	batch_arm_arg = NULL;
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	struct log_line l;
	log_begin(&l, level, event);
	if (!l.active)
		return;
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n >= 0)
		log_strn(&l, "msg", tmp,
			 (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
	log_end(&l);
}
