/*
 * Unit tests for countmap: counts per key, entries that vanish at zero,
 * many keys, and chains in a table far smaller than the key set (one
 * bucket, a few buckets) where removal from the head, middle and tail of
 * a chain must not disturb the other keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/countmap.h"

#define MANY 5000

static void key_of(char *buf, size_t len, int i)
{
	snprintf(buf, len, "192.0.2.%d/%d", i % 256, i);
}

static void test_empty(void **state)
{
	(void)state;
	struct countmap *m = countmap_new(16);
	assert_non_null(m);
	assert_int_equal(countmap_get(m, "a"), 0);
	assert_int_equal(countmap_get(m, ""), 0);
	countmap_free(m);
	countmap_free(NULL); /* allowed */
}

static void test_add_get_remove(void **state)
{
	(void)state;
	struct countmap *m = countmap_new(16);
	assert_int_equal(countmap_add(m, "198.51.100.1", 1), 1);
	assert_int_equal(countmap_add(m, "198.51.100.1", 1), 2);
	assert_int_equal(countmap_add(m, "198.51.100.1", 1), 3);
	assert_int_equal(countmap_get(m, "198.51.100.1"), 3);
	assert_int_equal(countmap_get(m, "198.51.100.2"), 0);
	assert_int_equal(countmap_add(m, "198.51.100.1", -1), 2);
	assert_int_equal(countmap_add(m, "198.51.100.1", -1), 1);
	assert_int_equal(countmap_get(m, "198.51.100.1"), 1);
	assert_int_equal(countmap_add(m, "198.51.100.1", -1), 0);
	assert_int_equal(countmap_get(m, "198.51.100.1"), 0);
	/* Gone: adding again starts from zero. */
	assert_int_equal(countmap_add(m, "198.51.100.1", 1), 1);
	assert_int_equal(countmap_add(m, "198.51.100.1", -1), 0);
	countmap_free(m);
}

static void test_decrement_absent(void **state)
{
	(void)state;
	struct countmap *m = countmap_new(4);
	/* Never goes negative and creates nothing. */
	assert_int_equal(countmap_add(m, "x", -1), 0);
	assert_int_equal(countmap_get(m, "x"), 0);
	assert_int_equal(countmap_add(m, "x", 1), 1);
	countmap_free(m);
}

static void test_keys_are_exact(void **state)
{
	(void)state;
	struct countmap *m = countmap_new(8);
	/* Prefixes, case and the empty key are all distinct keys. */
	countmap_add(m, "abc", 1);
	countmap_add(m, "ab", 1);
	countmap_add(m, "ab", 1);
	countmap_add(m, "ABC", 1);
	countmap_add(m, "", 1);
	assert_int_equal(countmap_get(m, "abc"), 1);
	assert_int_equal(countmap_get(m, "ab"), 2);
	assert_int_equal(countmap_get(m, "ABC"), 1);
	assert_int_equal(countmap_get(m, ""), 1);
	assert_int_equal(countmap_get(m, "a"), 0);
	assert_int_equal(countmap_get(m, "abcd"), 0);
	assert_int_equal(countmap_add(m, "", -1), 0);
	assert_int_equal(countmap_get(m, "abc"), 1);
	countmap_free(m);
}

static void test_key_is_copied(void **state)
{
	(void)state;
	struct countmap *m = countmap_new(8);
	char key[32];
	snprintf(key, sizeof(key), "%s", "2001:db8::1");
	countmap_add(m, key, 1);
	memset(key, 'z', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	assert_int_equal(countmap_get(m, "2001:db8::1"), 1);
	assert_int_equal(countmap_get(m, key), 0);
	countmap_free(m);
}

/* Many keys with different counts, then remove every other one, then the
 * rest; each step checks every key. */
static void many_keys(size_t buckets)
{
	struct countmap *m = countmap_new(buckets);
	char key[64];
	for (int i = 0; i < MANY; i++) {
		key_of(key, sizeof(key), i);
		for (int k = 0; k <= i % 3; k++)
			assert_int_equal(countmap_add(m, key, 1), k + 1);
	}
	for (int i = 0; i < MANY; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(countmap_get(m, key), i % 3 + 1);
	}
	for (int i = 0; i < MANY; i += 2) {
		key_of(key, sizeof(key), i);
		for (int k = i % 3; k >= 0; k--)
			assert_int_equal(countmap_add(m, key, -1), k);
	}
	for (int i = 0; i < MANY; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(countmap_get(m, key), i % 2 ? i % 3 + 1 : 0);
	}
	for (int i = 1; i < MANY; i += 2) {
		key_of(key, sizeof(key), i);
		for (int k = i % 3; k >= 0; k--)
			assert_int_equal(countmap_add(m, key, -1), k);
	}
	for (int i = 0; i < MANY; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(countmap_get(m, key), 0);
	}
	countmap_free(m);
}

static void test_many_keys(void **state)
{
	(void)state;
	many_keys(1024);
}

static void test_many_keys_few_buckets(void **state)
{
	(void)state;
	many_keys(3);
}

static void test_zero_buckets(void **state)
{
	(void)state;
	/* countmap_new(0) must still give a working map. */
	many_keys(0);
}

/* One bucket: everything in one chain. Remove the chain's head, middle
 * and tail in turn. */
static void test_single_chain_removal(void **state)
{
	(void)state;
	static const char *const keys[] = { "k0", "k1", "k2", "k3", "k4" };
	const size_t n = sizeof(keys) / sizeof(keys[0]);
	for (size_t victim = 0; victim < n; victim++) {
		struct countmap *m = countmap_new(1);
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k <= i; k++)
				countmap_add(m, keys[i], 1);
		assert_int_equal(countmap_add(m, keys[victim], -(long)(victim + 1)), 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(countmap_get(m, keys[i]),
					 i == victim ? 0 : (long)(i + 1));
		/* The others still count up and down. */
		for (size_t i = 0; i < n; i++) {
			if (i == victim)
				continue;
			assert_int_equal(countmap_add(m, keys[i], 1), (long)(i + 2));
			assert_int_equal(countmap_add(m, keys[i], -1), (long)(i + 1));
		}
		countmap_free(m);
	}
}

/* Interleaved up and down on colliding keys, checked against a plain
 * array model. */
static void test_random_against_model(void **state)
{
	(void)state;
	enum { NKEYS = 64, STEPS = 20000 };
	long model[NKEYS] = { 0 };
	struct countmap *m = countmap_new(2);
	char key[32];
	unsigned long x = 12345;
	for (int s = 0; s < STEPS; s++) {
		x = x * 6364136223846793005UL + 1442695040888963407UL;
		int k = (int)((x >> 33) % NKEYS);
		long delta = (x >> 20) & 1 ? 1 : -1;
		snprintf(key, sizeof(key), "key-%d", k);
		long want = model[k] + delta;
		if (want < 0)
			want = 0;
		model[k] = want;
		assert_int_equal(countmap_add(m, key, delta), want);
		if (s % 97 == 0)
			for (int i = 0; i < NKEYS; i++) {
				snprintf(key, sizeof(key), "key-%d", i);
				assert_int_equal(countmap_get(m, key), model[i]);
			}
	}
	countmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_add_get_remove),
		cmocka_unit_test(test_decrement_absent),
		cmocka_unit_test(test_keys_are_exact),
		cmocka_unit_test(test_key_is_copied),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_many_keys_few_buckets),
		cmocka_unit_test(test_zero_buckets),
		cmocka_unit_test(test_single_chain_removal),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
