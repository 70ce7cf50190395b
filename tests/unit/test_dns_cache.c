/*
 * Unit tests of lib/dns_cache: TTLs from the answer section, negative
 * answers, temporary failures never kept, expiry, the bound, and what a
 * failed allocation does (FULMAR_FAULT=alloc:N:ENOMEM, lib/mem.h): an
 * answer is not kept, a copy is a miss, nothing leaks.
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
	for (int n = 1; n <= 3; n++) {
		alloc_fault_at(n);
		dns_cache_put(c, 16, "example.test", ARES_SUCCESS, buf, len, 0.0);
		alloc_fault_at(0);
		assert_int_equal(dns_cache_count(c), 0);
		assert_false(dns_cache_get(c, 16, "example.test", 1.0, &st, &got, &glen));
	}
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
	/* Replacing an entry without memory forgets the old one. */
	alloc_fault_at(1);
	dns_cache_put(c, 16, "example.test", ARES_SUCCESS, buf, len, 2.0);
	alloc_fault_at(0);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
