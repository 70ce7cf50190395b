/*
 * log: formats and writes event lines (see log.h). The only global state
 * is the level and the destination descriptors, set at start-up and on
 * reload from the loop thread.
 */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static int file_fd = -1;
static bool to_stderr = true;

static const char *const level_names[] = { "debug", "info", "warning", "error" };

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

void log_begin(struct log_line *l, enum log_level level, const char *event)
{
	l->len = 0;
	l->active = level >= min_level;
	if (!l->active)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char head[96];
	int n = snprintf(head, sizeof(head),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s event=%s",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000),
			 level_names[level], event);
	append(l, head, n > 0 ? (size_t)n : 0);
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

void log_int(struct log_line *l, const char *key, long long value)
{
	log_fmt(l, key, "%lld", value);
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

void log_end(struct log_line *l)
{
	if (!l->active)
		return;
	l->buf[l->len++] = '\n';
	if (file_fd >= 0)
		write_all(file_fd, l->buf, l->len);
	if (to_stderr || file_fd < 0)
		write_all(STDERR_FILENO, l->buf, l->len);
	l->active = false;
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
