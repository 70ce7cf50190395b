/*
 * Fuzz target for the code that reads raw DNS answers (libFuzzer). The
 * input after its first octet is an answer as a server could send it:
 *   - dns_cache_put keeps it (its TTL is read from the answer) and
 *     dns_cache_get gives back an exact copy while fresh, nothing past an
 *     hour; a "no data" answer is kept a minute;
 *   - dns_parse_mx_answer and dns_parse_txt_answer (lib/dns.c's
 *     post-processing of ares_parse_mx_reply and ares_parse_txt_reply_ext):
 *     DNS_OK exactly when records were kept, at most DNS_MX_MAX MX names
 *     NUL-ended within struct dns_mx, at most DNS_TXT_MAX texts of at most
 *     DNS_TXT_LEN_MAX octets, NUL-ended; a failure's status is a c-ares
 *     error code;
 *   - the other parsers lib/dns.c calls on answers (A, AAAA, PTR), as it
 *     calls them.
 * The first octet picks the query type the cache files the answer under.
 *
 * Build: scripts/fuzz.sh --build-only dns_answer
 */
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns.h"
#include "lib/dns_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void check_cache(int type, const unsigned char *a, int alen)
{
	struct dns_cache *c = dns_cache_new(2);
	int status;
	unsigned char *buf;
	int len;
	dns_cache_put(c, type, "Example.ORG", ARES_SUCCESS, a, alen, 1000.0);
	if (dns_cache_get(c, type, "example.org", 1000.0, &status, &buf, &len)) {
		CHECK(status == ARES_SUCCESS && len == alen && buf != NULL &&
		      memcmp(buf, a, (size_t)len) == 0);
		free(buf);
		CHECK(!dns_cache_get(c, type, "example.org", 1000.0 + DNS_CACHE_TTL_MAX + 1,
				     &status, &buf, &len));
	}
	CHECK(dns_cache_count(c) == 0);
	/* Negative answers: a minute, whatever the buffer holds. */
	dns_cache_put(c, type, "nodata.example", ARES_ENODATA, a, alen, 1000.0);
	CHECK(dns_cache_get(c, type, "nodata.example", 1000.0 + DNS_CACHE_NEGATIVE_TTL - 1,
			    &status, &buf, &len));
	CHECK(status == ARES_ENODATA);
	free(buf);
	/* Past the bound, the older half goes; nothing is lost track of. */
	dns_cache_put(c, type, "a.example", ARES_ENOTFOUND, NULL, 0, 1001.0);
	dns_cache_put(c, type, "b.example", ARES_ENOTFOUND, a, alen, 1002.0);
	CHECK(dns_cache_count(c) <= 2);
	dns_cache_free(c);
}

/* The parsers' status contract (dns.h): *status untouched on DNS_OK,
 * the c-ares code behind any other outcome. */
static void check_status(enum dns_status st, int status)
{
	CHECK(st == DNS_OK || st == DNS_NODATA || st == DNS_TEMPFAIL || st == DNS_NOMEM);
	CHECK(st != DNS_OK || status == ARES_SUCCESS);
	CHECK(st != DNS_NODATA || status == ARES_ENODATA);
	CHECK(st != DNS_TEMPFAIL || (status != ARES_SUCCESS && status != ARES_ENOMEM));
	CHECK(st != DNS_NOMEM || status == ARES_ENOMEM);
}

static void check_mx(const unsigned char *a, int alen)
{
	struct dns_mx mx[DNS_MX_MAX];
	size_t n = 99;
	int status = ARES_SUCCESS;
	enum dns_status st = dns_parse_mx_answer(a, alen, mx, &n, &status);
	CHECK(n <= DNS_MX_MAX);
	CHECK((st == DNS_OK) == (n > 0));
	check_status(st, status);
	for (size_t i = 0; i < n; i++) {
		CHECK(memchr(mx[i].host, '\0', sizeof(mx[i].host)) != NULL);
		CHECK(mx[i].pref <= 0xffff);
	}
}

static void check_txt(const unsigned char *a, int alen)
{
	struct dns_txt txt[DNS_TXT_MAX];
	size_t n = 99;
	int status = ARES_SUCCESS;
	enum dns_status st = dns_parse_txt_answer(a, alen, txt, &n, &status);
	CHECK(n <= DNS_TXT_MAX);
	CHECK((st == DNS_OK) == (n > 0));
	check_status(st, status);
	for (size_t i = 0; i < n; i++) {
		CHECK(txt[i].len <= DNS_TXT_LEN_MAX && txt[i].text[txt[i].len] == '\0');
		free(txt[i].text);
	}
}

static void check_others(const unsigned char *a, int alen)
{
	struct hostent *h = NULL;
	if (ares_parse_a_reply(a, alen, &h, NULL, NULL) == ARES_SUCCESS && h)
		CHECK(h->h_addrtype == AF_INET && h->h_length == 4);
	if (h)
		ares_free_hostent(h);
	h = NULL;
	struct ares_addr6ttl ttls[4];
	int nttl = 4;
	if (ares_parse_aaaa_reply(a, alen, &h, ttls, &nttl) == ARES_SUCCESS && h)
		CHECK(h->h_addrtype == AF_INET6 && nttl >= 0 && nttl <= 4);
	if (h)
		ares_free_hostent(h);
	h = NULL;
	unsigned char dummy[4] = { 0 };
	if (ares_parse_ptr_reply(a, alen, dummy, sizeof(dummy), AF_INET, &h) == ARES_SUCCESS &&
	    h)
		CHECK(h->h_name != NULL);
	if (h)
		ares_free_hostent(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		CHECK(ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS);
		ready = true;
	}
	if (size < 1 || size > 65536)
		return 0;
	static const int types[] = { ns_t_mx, ns_t_txt, ns_t_a, ns_t_aaaa };
	int type = types[data[0] % 4];
	int alen = (int)(size - 1);
	/* An exact-size copy, so that any read past the end is caught. */
	unsigned char *a = malloc(size);
	CHECK(a != NULL);
	memcpy(a, data + 1, (size_t)alen);
	check_cache(type, a, alen);
	check_mx(a, alen);
	check_txt(a, alen);
	check_others(a, alen);
	free(a);
	return 0;
}
