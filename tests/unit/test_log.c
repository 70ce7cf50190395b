/*
 * Unit tests for log: the line's shape (time stamp, level, event), the
 * quoting of values, integers and seconds written without printf, and
 * batching: lines held until log_flush, armed once per batch, a warning
 * written at once with what came before it, a full batch written before
 * it overflows, lines of other threads never held, a batch on stderr
 * written whole in pieces, and the batch written when the process aborts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"

static char path[64];

static int open_log(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/fulmar-test-log-%ld", (long)getpid());
	unlink(path);
	assert_int_equal(log_open_file(path, false), 0);
	log_set_level(LOG_INFO);
	return 0;
}

static int arms;

static void count_arm(void *arg)
{
	assert_ptr_equal(arg, &arms);
	arms++;
}

/* open_log, then batching on this thread with arms counted from 0. */
static int open_log_batched(void **state)
{
	open_log(state);
	arms = 0;
	log_batch_start(count_arm, &arms);
	return 0;
}

static int close_log(void **state)
{
	(void)state;
	log_batch_stop();
	log_close_file();
	unlink(path);
	return 0;
}

/* The file's contents so far (static buffer, NUL-terminated). */
static const char *contents(void)
{
	static char buf[128 * 1024];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

/* Both a and b are in s, a before b. */
static void assert_in_order(const char *s, const char *a, const char *b)
{
	const char *pa = strstr(s, a), *pb = strstr(s, b);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_true(pa < pb);
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_line_shape(void **state)
{
	(void)state;
	struct log_line l;
	log_begin(&l, LOG_INFO, "queued");
	log_str(&l, "id", "0A1B");
	log_str(&l, "from", "a b\"c\\\x01");
	log_str(&l, "empty", "");
	log_int(&l, "size", 5120);
	log_int(&l, "neg", -42);
	log_int(&l, "min", INT64_MIN);
	log_seconds(&l, "delay", 1.2345);
	log_seconds(&l, "early", -3.0);
	log_seconds(&l, "big", 86400.0005);
	log_end(&l);
	const char *s = contents();
	/* 2026-11-29T09:00:00.123Z info event=queued */
	assert_true(strlen(s) > 24);
	assert_true(s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
		    s[16] == ':' && s[19] == '.' && s[23] == 'Z' && s[24] == ' ');
	for (int i = 0; i < 23; i++)
		if (i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && i != 19)
			assert_true(s[i] >= '0' && s[i] <= '9');
	assert_string_equal(s + 25,
			    "info event=queued id=0A1B from=\"a b\\\"c\\\\\\x01\" empty=\"\" "
			    "size=5120 neg=-42 min=-9223372036854775808 delay=1.235 "
			    "early=0.000 big=86400.001\n");
}

static void test_filtered_level(void **state)
{
	(void)state;
	struct log_line l;
	log_begin(&l, LOG_DEBUG, "noise");
	log_int(&l, "n", 1);
	log_end(&l);
	assert_string_equal(contents(), "");
}

static void log_n(int n, enum log_level level)
{
	struct log_line l;
	log_begin(&l, level, "e");
	log_int(&l, "n", n);
	log_end(&l);
}

static void test_batch_held_until_flush(void **state)
{
	(void)state;
	log_n(1, LOG_INFO);
	log_n(2, LOG_INFO);
	log_n(3, LOG_INFO);
	assert_string_equal(contents(), "");
	assert_int_equal(arms, 1); /* once, when the batch became non-empty */
	log_flush();
	const char *s = contents();
	assert_int_equal(count_lines(s), 3);
	assert_in_order(s, "n=1\n", "n=2\n");
	assert_in_order(s, "n=2\n", "n=3\n");
	log_n(4, LOG_INFO);
	assert_int_equal(arms, 2); /* armed again for the next batch */
	log_batch_stop(); /* writes what is left */
	assert_int_equal(count_lines(contents()), 4);
	log_n(5, LOG_INFO); /* no batching: at once */
	assert_int_equal(count_lines(contents()), 5);
	assert_int_equal(arms, 2);
}

static void test_warning_written_at_once(void **state)
{
	(void)state;
	log_n(1, LOG_INFO);
	log_n(2, LOG_WARNING);
	const char *s = contents();
	assert_int_equal(count_lines(s), 2);
	assert_in_order(s, "info event=e n=1\n", "warning event=e n=2\n");
	log_n(3, LOG_ERROR); /* an empty batch: the error alone, no arming */
	assert_int_equal(count_lines(contents()), 3);
	assert_int_equal(arms, 1);
}

static void test_full_batch_written_first(void **state)
{
	(void)state;
	char big[1500];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	int n = 0;
	while (contents()[0] == '\0') { /* until the batch had to be written */
		struct log_line l;
		log_begin(&l, LOG_INFO, "e");
		log_str(&l, "v", big);
		log_end(&l);
		n++;
		assert_true(n < 100);
	}
	/* 32 KiB hold at least 20 such lines; the last one is still held */
	assert_true(n > 20);
	assert_int_equal(count_lines(contents()), (size_t)n - 1);
	log_flush();
	assert_int_equal(count_lines(contents()), (size_t)n);
}

static void *log_from_thread(void *arg)
{
	(void)arg;
	log_n(7, LOG_INFO);
	log_flush(); /* not the batching thread: nothing to do */
	return NULL;
}

static void test_other_threads_not_held(void **state)
{
	(void)state;
	log_n(1, LOG_INFO);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, log_from_thread, NULL), 0);
	pthread_join(t, NULL);
	assert_string_equal(contents() + 25, "info event=e n=7\n");
	log_flush();
	assert_int_equal(count_lines(contents()), 2);
}

static void test_batch_to_stderr_whole(void **state)
{
	(void)state;
	log_close_file(); /* stderr only */
	int p[2];
	assert_int_equal(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	char v[300];
	memset(v, 'v', sizeof(v) - 1);
	v[sizeof(v) - 1] = '\0';
	for (int i = 0; i < 60; i++) { /* about 20 KiB: several pieces */
		struct log_line l;
		log_begin(&l, LOG_INFO, "e");
		log_int(&l, "n", i);
		log_str(&l, "v", v);
		log_end(&l);
	}
	/* Held until now: nothing in the pipe yet. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	char probe;
	assert_int_equal(read(p[0], &probe, 1), -1);
	assert_int_equal(errno, EAGAIN);
	fcntl(p[0], F_SETFL, 0);
	log_batch_stop();
	dup2(saved, STDERR_FILENO);
	close(saved);
	static char got[64 * 1024];
	size_t n = 0;
	ssize_t r;
	while ((r = read(p[0], got + n, sizeof(got) - 1 - n)) > 0)
		n += (size_t)r;
	close(p[0]);
	got[n] = '\0';
	assert_int_equal(count_lines(got), 60);
	const char *at = got;
	for (int i = 0; i < 60; i++) { /* each line whole, in order */
		char want[32];
		snprintf(want, sizeof(want), " n=%d v=vvv", i);
		const char *hit = strstr(at, want);
		assert_non_null(hit);
		const char *eol = strchr(hit, '\n');
		assert_int_equal(eol - hit, (long)(strlen(" n=") + (i < 10 ? 1 : 2) +
						  strlen(" v=") + sizeof(v) - 1));
		at = eol + 1;
	}
	assert_int_equal(log_open_file(path, false), 0); /* for the teardown */
}

static void test_batch_written_on_abort(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		log_batch_start(count_arm, &arms);
		log_flush_on_abort();
		log_n(42, LOG_INFO);
		abort();
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	assert_string_equal(contents() + 25, "info event=e n=42\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_line_shape, open_log, close_log),
		cmocka_unit_test_setup_teardown(test_filtered_level, open_log, close_log),
		cmocka_unit_test_setup_teardown(test_batch_held_until_flush, open_log_batched, close_log),
		cmocka_unit_test_setup_teardown(test_warning_written_at_once, open_log_batched, close_log),
		cmocka_unit_test_setup_teardown(test_full_batch_written_first, open_log_batched, close_log),
		cmocka_unit_test_setup_teardown(test_other_threads_not_held, open_log_batched, close_log),
		cmocka_unit_test_setup_teardown(test_batch_to_stderr_whole, open_log_batched, close_log),
		cmocka_unit_test_setup_teardown(test_batch_written_on_abort, open_log, close_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
