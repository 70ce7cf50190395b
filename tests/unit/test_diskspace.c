/*
 * Unit tests for diskspace: the figure is f_bavail * f_frsize of the
 * directory's file system, cached for DISKSPACE_INTERVAL_MS (a change on
 * disk in between is not seen; another directory is asked at once), and
 * a failing statvfs is reported with its errno.
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
#include <sys/statvfs.h>
#include <unistd.h>

#include "lib/diskspace.h"

static void test_matches_statvfs(void **state)
{
	(void)state;
	struct diskspace ds = { 0 };
	uint64_t avail = 0;
	assert_int_equal(diskspace_avail(&ds, "/", &avail), 0);
	struct statvfs sv;
	assert_int_equal(statvfs("/", &sv), 0);
	uint64_t now = (uint64_t)sv.f_bavail * sv.f_frsize;
	/* Other processes may write in between: close, not equal. */
	uint64_t diff = now > avail ? now - avail : avail - now;
	assert_true(diff < 64u * 1024 * 1024);
}

static void test_cached_within_interval(void **state)
{
	(void)state;
	char dir[] = "/tmp/fulmar-space-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct diskspace ds = { 0 };
	uint64_t first = 0, second = 1;
	assert_int_equal(diskspace_avail(&ds, dir, &first), 0);
	/* 4 MB written (and synced): the cached figure does not move. */
	char path[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/fill", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static char block[1 << 20];
	memset(block, 'x', sizeof(block));
	for (int i = 0; i < 4; i++)
		assert_int_equal(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	fsync(fd);
	close(fd);
	assert_int_equal(diskspace_avail(&ds, dir, &second), 0);
	assert_true(second == first);
	unlink(path);
	rmdir(dir);
}

static void test_errors_and_other_dirs(void **state)
{
	(void)state;
	struct diskspace ds = { 0 };
	uint64_t avail = 7;
	errno = 0;
	assert_int_equal(diskspace_avail(&ds, "/nonexistent/fulmar-space", &avail), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(avail, 7);
	/* Still within the interval, but another directory: asked at once. */
	assert_int_equal(diskspace_avail(&ds, "/", &avail), 0);
	/* And the failing one again: its new failure, not "/"'s figure. */
	errno = 0;
	assert_int_equal(diskspace_avail(&ds, "/nonexistent/fulmar-space", &avail), -1);
	assert_int_equal(errno, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_statvfs),
		cmocka_unit_test(test_cached_within_interval),
		cmocka_unit_test(test_errors_and_other_dirs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
