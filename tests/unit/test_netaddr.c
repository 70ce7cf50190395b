/*
 * Unit tests for netaddr's address blocks: parsing (IPv4, IPv6, bare
 * addresses, v4-mapped blocks, every malformed form refused with a
 * message) and matching socket addresses (IPv4, IPv6, IPv4 seen through
 * an IPv6 socket, prefix edges, /0, other families).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/un.h>

#include "lib/netaddr.h"

static struct sockaddr_storage ss_of(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(2525);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(2525);
	}
	return ss;
}

/* Does text (a block) contain addr? The block must parse. */
static bool in_block(const char *block, const char *addr)
{
	struct netaddr_cidr c;
	char err[160] = "";
	int rc = netaddr_cidr_parse(block, &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("'%s' did not parse: %s", block, err);
	struct sockaddr_storage ss = ss_of(addr);
	return netaddr_cidr_match(&c, (const struct sockaddr *)&ss);
}

static void test_parse_forms(void **state)
{
	(void)state;
	struct netaddr_cidr c;
	char err[160];
	assert_int_equal(netaddr_cidr_parse("127.0.0.0/8", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(c.addr[0], 127);
	assert_int_equal(netaddr_cidr_parse("192.0.2.7", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(netaddr_cidr_parse("::1", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	assert_int_equal(netaddr_cidr_parse("2001:db8::/32", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(netaddr_cidr_parse("0.0.0.0/0", &c, err, sizeof(err)), 0);
	assert_int_equal(c.prefix, 0);
	assert_int_equal(netaddr_cidr_parse("::/0", &c, err, sizeof(err)), 0);
	assert_int_equal(c.prefix, 0);
	/* A v4-mapped block is the IPv4 block. */
	assert_int_equal(netaddr_cidr_parse("::ffff:10.0.0.0/104", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(c.addr[0], 10);
	assert_int_equal(netaddr_cidr_parse("::ffff:192.0.2.1", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	/* Outside ::ffff:0:0/96 it stays an IPv6 block. */
	assert_int_equal(netaddr_cidr_parse("::/80", &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 80);
}

static void test_parse_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "/8", "127.0.0.0/", "127.0.0.0/33", "::/129", "127.0.0.0/-1",
		"127.0.0.0/+8", "127.0.0.0/8/8", "127.0.0.0/8 ", " 127.0.0.0/8",
		"127.0.0.0/08x", "127.0.0.0/00008", "127.1/8", "localhost",
		"127.0.0.256", "1.2.3.4.5", "::1::2", "10.1.2.3/8", "192.0.2.1/31",
		"2001:db8::1/32", "fe80::1%lo", "127.0.0.0/4294967304",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/8",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct netaddr_cidr c;
		char err[160] = "";
		if (netaddr_cidr_parse(bad[i], &c, err, sizeof(err)) == 0)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(err[0] != '\0');
	}
	/* A tiny error buffer is filled without overflow. */
	struct netaddr_cidr c;
	char small[8];
	assert_int_equal(netaddr_cidr_parse("10.1.2.3/8", &c, small, sizeof(small)), -1);
	assert_true(strlen(small) < sizeof(small));
}

static void test_match_ipv4(void **state)
{
	(void)state;
	assert_true(in_block("127.0.0.0/8", "127.0.0.1"));
	assert_true(in_block("127.0.0.0/8", "127.255.255.255"));
	assert_false(in_block("127.0.0.0/8", "128.0.0.1"));
	assert_false(in_block("127.0.0.0/8", "126.255.255.255"));
	assert_true(in_block("127.0.0.1", "127.0.0.1"));
	assert_false(in_block("127.0.0.1/32", "127.0.0.2"));
	/* Prefixes not on an octet boundary. */
	assert_true(in_block("192.0.2.64/26", "192.0.2.64"));
	assert_true(in_block("192.0.2.64/26", "192.0.2.127"));
	assert_false(in_block("192.0.2.64/26", "192.0.2.128"));
	assert_false(in_block("192.0.2.64/26", "192.0.2.63"));
	assert_true(in_block("172.16.0.0/12", "172.31.255.1"));
	assert_false(in_block("172.16.0.0/12", "172.32.0.1"));
	assert_true(in_block("0.0.0.0/0", "203.0.113.9"));
	/* An IPv4 block never matches a real IPv6 client. */
	assert_false(in_block("0.0.0.0/0", "2001:db8::1"));
}

static void test_match_ipv6(void **state)
{
	(void)state;
	assert_true(in_block("::1", "::1"));
	assert_false(in_block("::1", "::2"));
	assert_true(in_block("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(in_block("2001:db8::/32", "2001:db9::1"));
	assert_true(in_block("2001:db8:0:80::/57", "2001:db8:0:ff::1"));
	assert_false(in_block("2001:db8:0:80::/57", "2001:db8:0:100::1"));
	assert_true(in_block("::/0", "2001:db8::1"));
	/* An IPv6 block never matches an IPv4 client ... */
	assert_false(in_block("::/0", "127.0.0.1"));
	/* ... and an IPv4 client seen through an IPv6 socket is IPv4. */
	assert_true(in_block("127.0.0.0/8", "::ffff:127.0.0.1"));
	assert_false(in_block("127.0.0.1/32", "::ffff:127.0.0.2"));
	assert_true(in_block("::ffff:127.0.0.0/104", "127.0.0.5"));
	assert_false(in_block("::/0", "::ffff:127.0.0.1"));
}

static void test_match_other_family(void **state)
{
	(void)state;
	struct netaddr_cidr c;
	char err[160];
	assert_int_equal(netaddr_cidr_parse("0.0.0.0/0", &c, err, sizeof(err)), 0);
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_false(netaddr_cidr_match(&c, (const struct sockaddr *)&un));
	assert_int_equal(netaddr_cidr_parse("::/0", &c, err, sizeof(err)), 0);
	assert_false(netaddr_cidr_match(&c, (const struct sockaddr *)&un));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_match_ipv4),
		cmocka_unit_test(test_match_ipv6),
		cmocka_unit_test(test_match_other_family),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
