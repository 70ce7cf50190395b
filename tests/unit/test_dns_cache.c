/*
 * Unit tests of lib/dns_cache: TTLs from the answer section, negative
 * answers, temporary failures never kept, expiry, the bound, and what a
 * failed allocation does (FULMAR_FAULT=alloc:N:ENOMEM, lib/mem.h): an
 * answer is not kept (an older one for the name stays), a copy is a
 * miss, nothing leaks.
 */
#include <ares.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_faults.h"
#include "lib/dns_cache.h"

/* A DNS response for name/TXT with one answer of the given TTL. */
static size_t answer(unsigned char *buf, const char *name, unsigned ttl, unsigned ancount)
{
	size_t n = 0;
	unsigned char hdr[12] = { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, (unsigned char)ancount, 0, 0, 0, 0 };
	memcpy(buf, hdr, 12);
	n = 12;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		buf[n++] = (unsigned char)l;
		memcpy(buf + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	buf[n++] = 0;
	buf[n++] = 0, buf[n++] = 16; /* TXT */
	buf[n++] = 0, buf[n++] = 1;  /* IN */
	for (unsigned i = 0; i < ancount; i++) {
		buf[n++] = 0xc0, buf[n++] = 12; /* the name, compressed */
		buf[n++] = 0, buf[n++] = 16, buf[n++] = 0, buf[n++] = 1;
		buf[n++] = (unsigned char)(ttl >> 24), buf[n++] = (unsigned char)(ttl >> 16);
		buf[n++] = (unsigned char)(ttl >> 8), buf[n++] = (unsigned char)ttl;
		buf[n++] = 0, buf[n++] = 4;
		buf[n++] = 3, buf[n++] = 'a', buf[n++] = 'b', buf[n++] = 'c';
	}
	return n;
}

static void test_positive_ttl(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(100);
	unsigned char buf[512];
	int len = (int)answer(buf, "example.test", 30, 1);
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, buf, len, 1000.0);
	int st;
	unsigned char *got;
	int glen;
	assert_true(dns_cache_get(c, 16, "EXAMPLE.test", 1029.0, &st, &got, &glen));
	assert_int_equal(st, ARES_SUCCESS);
	assert_int_equal(glen, len);
	assert_memory_equal(got, buf, (size_t)len);
	free(got);
	assert_false(dns_cache_get(c, 16, "example.test", 1030.5, &st, &got, &glen));
	assert_int_equal(dns_cache_count(c), 0);
	assert_false(dns_cache_get(c, 15, "example.test", 1000.0, &st, &got, &glen));
	dns_cache_free(c);
}

static void test_ttl_capped_and_zero(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(100);
	unsigned char buf[512];
	int len = (int)answer(buf, "long.test", 86400, 2);
	dns_cache_put(c, 16, "long.test", ARES_SUCCESS, buf, len, 0.0);
	int st;
	unsigned char *got;
	int glen;
	assert_true(dns_cache_get(c, 16, "long.test", DNS_CACHE_TTL_MAX - 1, &st, &got, &glen));
	free(got);
	assert_false(dns_cache_get(c, 16, "long.test", DNS_CACHE_TTL_MAX + 1, &st, &got, &glen));
	len = (int)answer(buf, "zero.test", 0, 1);
	dns_cache_put(c, 16, "zero.test", ARES_SUCCESS, buf, len, 0.0);
	assert_false(dns_cache_get(c, 16, "zero.test", 0.0, &st, &got, &glen));
	dns_cache_free(c);
}

static void test_negative_and_tempfail(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(100);
	int st;
	unsigned char *got;
	int glen;
	dns_cache_put(c, 16, "none.test", ARES_ENOTFOUND, NULL, 0, 0.0);
	assert_true(dns_cache_get(c, 16, "none.test", 59.0, &st, &got, &glen));
	assert_int_equal(st, ARES_ENOTFOUND);
	assert_null(got);
	assert_false(dns_cache_get(c, 16, "none.test", 61.0, &st, &got, &glen));
	dns_cache_put(c, 16, "fail.test", ARES_ESERVFAIL, NULL, 0, 0.0);
	dns_cache_put(c, 16, "fail.test", ARES_ETIMEOUT, NULL, 0, 0.0);
	assert_false(dns_cache_get(c, 16, "fail.test", 1.0, &st, &got, &glen));
	/* A garbled answer is not kept. */
	unsigned char junk[20] = { 0 };
	junk[7] = 5;
	dns_cache_put(c, 16, "junk.test", ARES_SUCCESS, junk, sizeof(junk), 0.0);
	assert_false(dns_cache_get(c, 16, "junk.test", 1.0, &st, &got, &glen));
	dns_cache_free(c);
}

static void test_bounded(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(50);
	unsigned char buf[512];
	for (int i = 0; i < 500; i++) {
		char name[64];
		snprintf(name, sizeof(name), "n%d.test", i);
		int len = (int)answer(buf, name, 600, 1);
		dns_cache_put(c, 16, name, ARES_SUCCESS, buf, len, (double)i);
		assert_true(dns_cache_count(c) <= 50);
	}
	int st;
	unsigned char *got;
	int glen;
	assert_true(dns_cache_get(c, 16, "n499.test", 500.0, &st, &got, &glen));
	free(got);
	assert_false(dns_cache_get(c, 16, "n0.test", 500.0, &st, &got, &glen));
	dns_cache_free(c);
}

struct put_run {
	struct dns_cache *c;
	const unsigned char *buf;
	int len;
};

/* A put into an empty cache while a fault is set: nothing kept (true),
 * or the answer. */
static bool put_run(void *arg)
{
	struct put_run *p = arg;
	int st;
	unsigned char *got;
	int glen;

	dns_cache_put(p->c, 16, "example.test", ARES_SUCCESS, p->buf, p->len, 0.0);
	if (dns_cache_count(p->c) != 0)
		return false;
	assert_false(dns_cache_get(p->c, 16, "example.test", 1.0, &st, &got, &glen));
	return true;
}

static void test_out_of_memory(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(100); /* start-up memory: never counted */
	unsigned char buf[512];
	int len = (int)answer(buf, "example.test", 600, 1);
	int st;
	unsigned char *got;
	int glen;
	/* A put allocates the entry, its name, its copy of the answer: each
	 * failing in turn keeps nothing (and, under LeakSanitizer, leaks
	 * nothing); a failure past them does not concern the put. */
	int failed;
	assert_int_equal(alloc_sweep(10, put_run, &(struct put_run){ c, buf, len }, &failed), 4);
	assert_int_equal(failed, 3);
	dns_cache_free(c);
	c = dns_cache_new(100);
	/* A negative answer has no copy to make: two allocations. */
	alloc_fault_at(2);
	dns_cache_put(c, 16, "none.test", ARES_ENOTFOUND, NULL, 0, 0.0);
	alloc_fault_at(0);
	assert_int_equal(dns_cache_count(c), 0);
	/* Kept; then the copy cannot be made: a miss, the entry stays. */
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, buf, len, 0.0);
	alloc_fault_at(1);
	assert_false(dns_cache_get(c, 16, "example.test", 1.0, &st, &got, &glen));
	assert_true(dns_cache_get(c, 16, "example.test", 1.0, &st, &got, &glen));
	alloc_fault_at(0);
	assert_int_equal(glen, len);
	assert_memory_equal(got, buf, (size_t)len);
	free(got);
	dns_cache_free(c);
}

/* A fresh answer replaces the one kept for the name; when the new entry
 * cannot be made (its struct, name or copy of the answer failing in
 * turn), the old one stays, whole, until its own TTL runs out. */
static void test_replace_out_of_memory(void **state)
{
	(void)state;
	struct dns_cache *c = dns_cache_new(100);
	unsigned char old[512], fresh[512];
	int old_len = (int)answer(old, "example.test", 600, 1);
	int fresh_len = (int)answer(fresh, "example.test", 30, 1);
	int st;
	unsigned char *got;
	int glen;
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, old, old_len, 0.0);
	for (int n = 1; n <= 3; n++) {
		alloc_fault_at(n);
		dns_cache_put(c, 16, "example.test", ARES_SUCCESS, fresh, fresh_len, 10.0);
		assert_false(alloc_fault_left());
		alloc_fault_at(0);
		assert_int_equal(dns_cache_count(c), 1);
		assert_true(dns_cache_get(c, 16, "example.test", 599.0, &st, &got, &glen));
		assert_int_equal(st, ARES_SUCCESS);
		assert_int_equal(glen, old_len);
		assert_memory_equal(got, old, (size_t)old_len);
		free(got);
	}
	/* Those three are all the put's: a fault at the fourth is left. */
	alloc_fault_at(4);
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, old, old_len, 0.0);
	assert_true(alloc_fault_left());
	alloc_fault_at(0);
	/* A negative answer in place of it, without memory: the same. */
	alloc_fault_at(1);
	dns_cache_put(c, 16, "example.test", ARES_ENOTFOUND, NULL, 0, 10.0);
	alloc_fault_at(0);
	assert_true(dns_cache_get(c, 16, "example.test", 599.0, &st, &got, &glen));
	assert_int_equal(st, ARES_SUCCESS);
	free(got);
	/* With memory, the fresh answer takes the old one's place. */
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, fresh, fresh_len, 10.0);
	assert_int_equal(dns_cache_count(c), 1);
	assert_true(dns_cache_get(c, 16, "example.test", 39.0, &st, &got, &glen));
	assert_int_equal(glen, fresh_len);
	assert_memory_equal(got, fresh, (size_t)fresh_len);
	free(got);
	assert_false(dns_cache_get(c, 16, "example.test", 41.0, &st, &got, &glen));
	assert_int_equal(dns_cache_count(c), 0);
	dns_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_positive_ttl),
		cmocka_unit_test(test_ttl_capped_and_zero),
		cmocka_unit_test(test_negative_and_tempfail),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_replace_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
