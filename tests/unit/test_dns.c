/*
 * Unit tests of lib/dns without a network: a lookup whose query cannot be
 * had (FULMAR_FAULT=alloc:1:ENOMEM:1, lib/mem.h) fails the one way dns.h
 * says, whatever its kind: the callback runs once, before the lookup
 * function returns NULL, with DNS_NOMEM, no records (an array that is
 * there all the same) and dns_nomem_text(); the reverse lookup with no
 * name. With memory, the same lookups are in flight until cancelled.
 */
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "alloc_faults.h"
#include "lib/dns.h"

/* What a callback was given. */
struct seen {
	int calls;
	enum dns_status st;
	size_t n;
	bool array;       /* the records' array was not NULL */
	const char *why;
	const char *name; /* dns_reverse_verified */
};

static void record(struct seen *s, enum dns_status st, const void *array, size_t n,
		   const char *why)
{
	s->calls++;
	s->st = st;
	s->array = array != NULL;
	s->n = n;
	s->why = why;
}

static void on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n,
		  const char *why)
{
	record(arg, st, mx, n, why);
}

static void on_addrs(void *arg, enum dns_status st, const struct sockaddr_storage *addrs,
		     size_t n, const char *why)
{
	record(arg, st, addrs, n, why);
}

static void on_txt(void *arg, enum dns_status st, const struct dns_txt *txt, size_t n,
		   const char *why)
{
	record(arg, st, txt, n, why);
}

static void on_ptr(void *arg, enum dns_status st, const char *const *names, size_t n,
		   const char *why)
{
	record(arg, st, names, n, why);
}

static void on_name(void *arg, const char *name)
{
	struct seen *s = arg;
	s->calls++;
	s->name = name;
}

/* Each lookup kind, started on d for s. */
static struct dns_query *start(struct dns *d, int kind, struct seen *s)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	switch (kind) {
	case 0:
		return dns_lookup_mx(d, "example.test", on_mx, s);
	case 1:
		return dns_lookup_addrs(d, "example.test", on_addrs, s);
	case 2:
		return dns_lookup_family(d, "example.test", AF_INET6, on_addrs, s);
	case 3:
		return dns_lookup_txt(d, "example.test", on_txt, s);
	case 4:
		return dns_lookup_ptr(d, "1.0.0.127.in-addr.arpa", on_ptr, s);
	default:
		return dns_reverse_verified(d, (const struct sockaddr *)&sin, on_name, s);
	}
}

#define KINDS 6

static void test_no_memory_for_the_query(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	char err[256];
	/* A resolver nobody answers: nothing here waits for it. */
	struct dns *d = dns_new(base, "127.0.0.1:9", 1.0, err, sizeof(err));
	assert_non_null(d);
	for (int kind = 0; kind < KINDS; kind++) {
		struct seen s = { .calls = 0 };
		alloc_fault_at(1);
		struct dns_query *q = start(d, kind, &s);
		assert_false(alloc_fault_left());
		alloc_fault_at(0);
		assert_null(q);
		assert_int_equal(s.calls, 1);
		if (kind == KINDS - 1) {
			assert_null(s.name);
			continue;
		}
		assert_int_equal(s.st, DNS_NOMEM);
		assert_int_equal(s.n, 0);
		assert_true(s.array);
		assert_string_equal(s.why, dns_nomem_text());
	}
	/* With memory: in flight, no callback, until cancelled. */
	for (int kind = 0; kind < KINDS; kind++) {
		struct seen s = { .calls = 0 };
		struct dns_query *q = start(d, kind, &s);
		assert_non_null(q);
		assert_int_equal(s.calls, 0);
		dns_cancel(q);
		assert_int_equal(s.calls, 0);
	}
	dns_free(d);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_memory_for_the_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
