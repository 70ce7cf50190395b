/*
 * log: one line per event, "key=value" fields, written with a single
 * write(2) so lines from several threads never interleave.
 *
 * The event loop's thread may batch its lines (log_batch_start): they
 * are gathered and written together when its turn's callbacks are done,
 * one write(2) for many lines. A warning or an error is written at once,
 * with everything gathered before it; so is the batch on an abort
 * (log_flush_on_abort). A kill -9 loses the lines of the turn it cuts
 * (the log is no record of durability: the queue and the Maildirs are).
 * Other threads' lines are written at once, so they may come before the
 * loop's lines of the same instant: each line has its time stamp.
 *
 *   2026-11-29T09:00:00.123Z info event=queued id=0A1B... size=5120
 *
 * Values that come from the network go through log_str/log_strn, which
 * quote and escape them: no octet of peer data reaches a format string or
 * the log file unescaped. Lines are bounded (LOG_LINE_MAX); a field that
 * does not fit is cut and marked "...".
 */
#ifndef FULMAR_LOG_H
#define FULMAR_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARNING, LOG_ERROR };

#define LOG_LINE_MAX 2048

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	enum log_level level;
	bool active; /* false when the level is filtered out */
};

/* Parse "debug", "info", "warning", "error"; -1 when unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
/* Also write to this file (appended, created 0640); stderr is kept when
 * also_stderr. Returns 0, or -1 with errno. Safe to call again (reopen). */
int log_open_file(const char *path, bool also_stderr);
void log_close_file(void);

void log_begin(struct log_line *l, enum log_level level, const char *event);
void log_str(struct log_line *l, const char *key, const char *value);
void log_strn(struct log_line *l, const char *key, const char *value, size_t n);
void log_int(struct log_line *l, const char *key, long long value);
/* seconds with three decimals ("0.125"); negative is logged as 0. */
void log_seconds(struct log_line *l, const char *key, double seconds);
/* A value made by the program itself (numbers, fixed words); never pass
 * peer data in fmt. */
void log_fmt(struct log_line *l, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_end(struct log_line *l);

/* One-shot line with a single msg= field, for start-up and internal
 * events whose text the program made itself. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Batching on the calling thread (the event loop's). arm(arg) is called
 * when a line goes into an empty batch; the caller then runs log_flush()
 * on this thread once its other pending callbacks are done (an event made
 * active: libevent runs it in the same turn). Lines of other threads are
 * written at once, as without batching.
 */
void log_batch_start(void (*arm)(void *arg), void *arg);
/* Writes the batch (a no-op on other threads or when empty). */
void log_flush(void);
/* Writes the batch and ends batching. */
void log_batch_stop(void);
/* Writes the batch when the batching thread aborts (SIGABRT: xfatal, a
 * failed internal check), before the abort goes on. */
void log_flush_on_abort(void);

#endif
