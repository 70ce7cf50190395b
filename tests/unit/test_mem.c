/*
 * Unit tests for the fallible allocator's fault injection
 * (FULMAR_FAULT="alloc:N:ENOMEM[:COUNT]", lib/mem.h): the Nth mem_* call
 * fails with NULL and ENOMEM whichever function it is, COUNT lets later
 * calls succeed again, a failed mem_realloc leaves its block alone, the
 * xalloc.h functions and the fsio operations are never counted, and other
 * operations' faults never touch allocations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsio.h"
#include "lib/mem.h"
#include "lib/xalloc.h"

static int teardown(void **state)
{
	(void)state;
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	return 0;
}

static void faults(const char *spec)
{
	setenv("FULMAR_FAULT", spec, 1);
	fsio_init_faults();
}

/* 0 when a mem_alloc went through (and is freed), else the errno. */
static int try_alloc(void)
{
	errno = 0;
	void *p = mem_alloc(16);
	if (p == NULL)
		return errno;
	free(p);
	return 0;
}

static void test_no_faults(void **state)
{
	(void)state;
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_alloc(), 0);
	char *s = mem_strndup("hello, world", 5);
	assert_string_equal(s, "hello");
	free(s);
}

static void test_one_failure(void **state)
{
	(void)state;
	faults("alloc:3:ENOMEM:1");
	assert_int_equal(try_alloc(), 0);
	assert_int_equal(try_alloc(), 0);
	assert_int_equal(try_alloc(), ENOMEM);
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_alloc(), 0);
}

static void test_nth_and_later_fail(void **state)
{
	(void)state;
	faults("alloc:2:ENOMEM");
	assert_int_equal(try_alloc(), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_alloc(), ENOMEM);
}

/* Every mem_* function takes its turn in the one count. */
static void test_every_function_counts(void **state)
{
	(void)state;
	faults("alloc:1:ENOMEM:5");
	errno = 0;
	assert_null(mem_alloc(8));
	assert_int_equal(errno, ENOMEM);
	assert_null(mem_calloc(2, 8));
	assert_null(mem_realloc(NULL, 8));
	assert_null(mem_strdup("x"));
	assert_null(mem_strndup("xy", 1));
	char *s = mem_strdup("back");
	assert_string_equal(s, "back");
	free(s);
}

static void test_failed_realloc_keeps_block(void **state)
{
	(void)state;
	faults("alloc:2:ENOMEM:1");
	char *p = mem_alloc(4);
	assert_non_null(p);
	memcpy(p, "abc", 4);
	assert_null(mem_realloc(p, 1 << 20));
	assert_string_equal(p, "abc"); /* still ours, unchanged */
	char *q = mem_realloc(p, 8);
	assert_non_null(q);
	assert_string_equal(q, "abc");
	free(q);
}

/* The spec's errno is for the file operations: an allocation that fails
 * says ENOMEM. */
static void test_errno_is_enomem(void **state)
{
	(void)state;
	faults("alloc:1:EIO:1");
	assert_int_equal(try_alloc(), ENOMEM);
}

/* xalloc.h is the aborting tier: never counted, never failed. */
static void test_xalloc_not_counted(void **state)
{
	(void)state;
	faults("alloc:2:ENOMEM:1");
	assert_int_equal(try_alloc(), 0);
	for (int i = 0; i < 5; i++) {
		char *s = xstrdup("fatal tier");
		free(s);
		free(xmalloc(8));
	}
	assert_int_equal(try_alloc(), ENOMEM);
}

static void test_other_ops_leave_alloc_alone(void **state)
{
	(void)state;
	faults("write:1:ENOSPC");
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_alloc(), 0);
	faults("alloc:1:ENOMEM");
	errno = 0;
	assert_int_equal(fsio_fsync_dir("/tmp"), 0); /* fsio ops are not allocations */
	assert_int_equal(try_alloc(), ENOMEM);
}

static void test_reinit_forgets(void **state)
{
	(void)state;
	faults("alloc:1:ENOMEM");
	assert_int_equal(try_alloc(), ENOMEM);
	faults("alloc:2:ENOMEM:1");
	assert_int_equal(try_alloc(), 0); /* the count starts again */
	assert_int_equal(try_alloc(), ENOMEM);
	unsetenv("FULMAR_FAULT");
	fsio_init_faults();
	assert_int_equal(try_alloc(), 0);
}

static void test_malformed_specs(void **state)
{
	(void)state;
	static const char *const bad[] = { "alloc", "alloc:1", "allocs:1:ENOMEM", "alloc1ENOMEM" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		faults(bad[i]);
		for (int k = 0; k < 3; k++)
			assert_int_equal(try_alloc(), 0);
	}
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_no_faults),
		T(test_one_failure),
		T(test_nth_and_later_fail),
		T(test_every_function_counts),
		T(test_failed_realloc_keeps_block),
		T(test_errno_is_enomem),
		T(test_xalloc_not_counted),
		T(test_other_ops_leave_alloc_alone),
		T(test_reinit_forgets),
		T(test_malformed_specs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
