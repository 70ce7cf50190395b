/*
 * Unit tests for fsio's fault injection (FULMAR_FAULT="OP:N:ERRNO[:COUNT]"):
 * which call fails, with which errno, that only OP is counted, that a
 * COUNT lets later calls succeed again, that fsync and the directory
 * fsync share one count, and that a malformed or empty setting injects
 * nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsio.h"

static char dir[PATH_MAX];
static char file[PATH_MAX];
static int fd = -1;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/fulmar-fsio-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(file, sizeof(file), "%s/f", dir);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	return fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	if (fd >= 0)
		close(fd);
	fd = -1;
	char other[PATH_MAX + 8];
	snprintf(other, sizeof(other), "%s/g", dir);
	unlink(file);
	unlink(other);
	rmdir(dir);
	return 0;
}

static void faults(const char *spec)
{
	setenv("FULMAR_FAULT", spec, 1);
	fsio_init_faults();
}

/* 0 when the write went through, else the errno. */
static int try_write(void)
{
	errno = 0;
	return fsio_write_all(fd, "x", 1) == 0 ? 0 : errno;
}

static void test_no_faults(void **state)
{
	(void)state;
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_write(), 0);
	assert_int_equal(fsio_fsync(fd), 0);
}

static void test_nth_and_later_fail(void **state)
{
	(void)state;
	faults("write:3:ENOSPC");
	assert_int_equal(try_write(), 0);
	assert_int_equal(try_write(), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(try_write(), ENOSPC);
	/* Nothing was written by the failed calls. */
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 2);
}

static void test_count_recovers(void **state)
{
	(void)state;
	faults("write:2:EIO:3");
	assert_int_equal(try_write(), 0);
	assert_int_equal(try_write(), EIO);
	assert_int_equal(try_write(), EIO);
	assert_int_equal(try_write(), EIO);
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_write(), 0);
}

static void test_only_op_is_counted(void **state)
{
	(void)state;
	faults("fsync:2:EDQUOT:1");
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_write(), 0); /* writes do not count */
	assert_int_equal(fsio_fsync(fd), 0);
	/* fsync_dir shares the count with fsync. */
	errno = 0;
	assert_int_equal(fsio_fsync_dir(dir), -1);
	assert_int_equal(errno, EDQUOT);
	assert_int_equal(fsio_fsync(fd), 0);
	assert_int_equal(fsio_fsync_dir(dir), 0);
}

static void test_rename_link_open(void **state)
{
	(void)state;
	char other[PATH_MAX + 8];
	snprintf(other, sizeof(other), "%s/g", dir);
	faults("rename:1:EROFS:1");
	errno = 0;
	assert_int_equal(fsio_rename(file, other), -1);
	assert_int_equal(errno, EROFS);
	assert_int_equal(access(file, F_OK), 0); /* nothing moved */
	assert_int_equal(fsio_rename(file, other), 0);
	assert_int_equal(fsio_rename(other, file), 0);

	faults("link:1:EACCES:1");
	assert_int_equal(fsio_link(file, other), -1);
	assert_int_equal(errno, EACCES);
	assert_int_not_equal(access(other, F_OK), 0);
	assert_int_equal(fsio_link(file, other), 0);
	unlink(other);

	faults("open:1:ENOSPC:1");
	assert_int_equal(fsio_open(other, O_WRONLY | O_CREAT, 0600), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_not_equal(access(other, F_OK), 0);
	int g = fsio_open(other, O_WRONLY | O_CREAT, 0600);
	assert_true(g >= 0);
	close(g);
}

/* A rename that would replace a file fails instead (EEXIST); truncate
 * takes faults like the rest. */
static void test_rename_noreplace_truncate(void **state)
{
	(void)state;
	char other[PATH_MAX + 8];
	snprintf(other, sizeof(other), "%s/g", dir);
	int g = open(other, O_WRONLY | O_CREAT, 0600);
	assert_true(g >= 0);
	close(g);
	errno = 0;
	assert_int_equal(fsio_rename_noreplace(file, other), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(access(file, F_OK), 0);
	unlink(other);
	faults("rename:1:EIO:1");
	assert_int_equal(fsio_rename_noreplace(file, other), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(fsio_rename_noreplace(file, other), 0);
	assert_int_not_equal(access(file, F_OK), 0);
	assert_int_equal(rename(other, file), 0);

	assert_int_equal(write(fd, "abc", 3), 3);
	faults("truncate:1:EIO:1");
	assert_int_equal(fsio_ftruncate(fd, 1), -1);
	assert_int_equal(errno, EIO);
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 3);
	assert_int_equal(fsio_ftruncate(fd, 1), 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 1);
}

static void test_reinit_forgets(void **state)
{
	(void)state;
	faults("write:1:EIO");
	assert_int_equal(try_write(), EIO);
	faults("write:2:ENOSPC");
	assert_int_equal(try_write(), 0); /* the count starts again */
	assert_int_equal(try_write(), ENOSPC);
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	assert_int_equal(try_write(), 0);
}

static void test_malformed_specs(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "write", "write:1", "nosuchop:1:EIO",
					   "write1EIO" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		faults(bad[i]);
		for (int k = 0; k < 3; k++)
			assert_int_equal(try_write(), 0);
		assert_int_equal(fsio_fsync(fd), 0);
	}
	/* An unknown errno name means EIO. */
	faults("write:1:EWHATEVER:1");
	assert_int_equal(try_write(), EIO);
	assert_int_equal(try_write(), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_no_faults),
		T(test_nth_and_later_fail),
		T(test_count_recovers),
		T(test_only_op_is_counted),
		T(test_rename_link_open),
		T(test_rename_noreplace_truncate),
		T(test_reinit_forgets),
		T(test_malformed_specs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
