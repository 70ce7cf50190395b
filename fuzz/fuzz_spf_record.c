/*
 * Fuzz target for spf (libFuzzer): the record parser, the macro expander
 * and the whole check_host() state machine. The input is lines:
 *   - each line is checked by spf_record_check and expanded by
 *     spf_macro_expand as a domain-spec and as an explanation (both for an
 *     IPv4 and an IPv6 client);
 *   - then a check runs against a fake resolver made of the same input:
 *     a TXT query gets the line picked by a hash of the name (so includes
 *     and redirects reach other lines), A/AAAA/MX/PTR answers are made
 *     from the hash too (addresses near the client's, up to 12 MX names,
 *     PTR names, NXDOMAIN, NODATA, SERVFAIL).
 * Checks: the expander's length and NUL, and that it never writes past
 * out; the check ends within SPF_QUERIES_MAX queries, with a result in
 * range and its strings set; a record spf_record_check refuses makes the
 * check (when it is the top record) a permerror.
 *
 * Build: clang -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *        fuzz/fuzz_spf_record.c src/verify/spf.c src/lib/xalloc.c -o /tmp/fz_spf
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define LINES_MAX 64

struct input {
	const char *line[LINES_MAX];
	size_t len[LINES_MAX];
	size_t n;
};

static uint32_t hash(const char *s, uint32_t salt)
{
	uint32_t h = 2166136261u ^ salt;
	for (; *s; s++) {
		h ^= (unsigned char)(*s | 0x20);
		h *= 16777619u;
	}
	return h;
}

static void expand_checks(struct spf *c, const char *s, size_t len)
{
	char out[300];
	for (int domain = 0; domain < 2; domain++) {
		memset(out, 'X', sizeof(out));
		/* a short buffer: the expander must stop inside it */
		int n = spf_macro_expand(c, s, len, domain, out, 64);
		CHECK(n < 64);
		if (n >= 0)
			CHECK(out[n] == '\0' && strlen(out) == (size_t)n);
		CHECK(out[64] == 'X');
	}
}

static void answer(struct spf *c, const struct spf_query *q, const struct input *in,
		   const unsigned char *client, bool v6)
{
	uint32_t h = hash(q->name, (uint32_t)q->type);
	struct spf_rr rr[12];
	char names[12][40];
	memset(rr, 0, sizeof(rr));
	switch (h % 16) {
	case 0:
		spf_answer(c, DNS_TEMPFAIL, NULL, 0, "fuzz");
		return;
	case 1:
	case 2:
		spf_answer(c, DNS_NXDOMAIN, NULL, 0, NULL);
		return;
	case 3:
		spf_answer(c, DNS_NODATA, NULL, 0, NULL);
		return;
	default:
		break;
	}
	size_t n = 0;
	switch (q->type) {
	case SPF_Q_TXT:
		if (in->n == 0)
			break;
		rr[0].text = in->line[(h >> 4) % in->n];
		rr[0].len = in->len[(h >> 4) % in->n];
		n = 1;
		if ((h >> 12) % 8 == 0 && in->n > 1) { /* sometimes two records */
			rr[1].text = in->line[(h >> 16) % in->n];
			rr[1].len = in->len[(h >> 16) % in->n];
			n = 2;
		}
		break;
	case SPF_Q_A:
	case SPF_Q_AAAA:
		n = 1 + (h >> 4) % 3;
		for (size_t i = 0; i < n; i++) {
			memcpy(rr[i].addr, client, 16);
			rr[i].addr[(q->type == SPF_Q_A ? 3 : 15) - i] ^= (unsigned char)(h >> (8 + i));
		}
		(void)v6;
		break;
	case SPF_Q_MX:
	case SPF_Q_PTR:
		n = (h >> 4) % 13;
		for (size_t i = 0; i < n; i++) {
			snprintf(names[i], sizeof(names[i]), "h%u.example.com", (unsigned)((h >> 8) + i) % 7);
			rr[i].text = names[i];
			rr[i].len = strlen(names[i]);
		}
		if (n > 0 && (h >> 20) % 5 == 0)
			rr[0].text = "", rr[0].len = 0; /* a Null MX */
		break;
	}
	spf_answer(c, n ? DNS_OK : DNS_NODATA, rr, n, NULL);
}

static void run_check(const struct input *in, const char *ip, uint32_t salt)
{
	struct sockaddr_storage ss;
	CHECK(spf_parse_ip(ip, &ss));
	unsigned char client[16] = { 0 };
	bool v6 = ss.ss_family == AF_INET6;
	if (v6)
		memcpy(client, &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr, 16);
	else
		memcpy(client, &((struct sockaddr_in *)(void *)&ss)->sin_addr, 4);
	const char *domains[] = { "example.com", "a.example.org", "x-y.example.net" };
	struct spf *c = spf_new((const struct sockaddr *)&ss, domains[salt % 3],
				"us.er+tag@example.com", "helo.example.com");
	spf_set_time(c, 1700000000);
	/* every query of the top domain's TXT gets line 0 */
	struct spf_query q;
	int queries = 0;
	bool first = true;
	while (spf_step(c, &q)) {
		CHECK(++queries <= SPF_QUERIES_MAX);
		CHECK(q.name[0] != '\0' && strlen(q.name) <= SPF_NAME_MAX);
		if (first && in->n > 0) {
			CHECK(q.type == SPF_Q_TXT);
			struct spf_rr rr = { in->line[0], in->len[0], { 0 } };
			spf_answer(c, DNS_OK, &rr, 1, NULL);
			first = false;
			continue;
		}
		first = false;
		answer(c, &q, in, client, v6);
	}
	const struct spf_outcome *o = spf_result(c);
	CHECK(o->result >= SPF_NONE && o->result <= SPF_PERMERROR);
	CHECK(o->reason && o->mechanism && o->explanation && o->domain);
	CHECK(o->lookups <= SPF_LOOKUPS_MAX + 1 && o->void_lookups <= SPF_VOID_MAX + 1);
	if (in->n > 0) {
		char err[160];
		int rc = spf_record_check(in->line[0], in->len[0], err, sizeof(err));
		if (rc == 1)
			CHECK(o->result == SPF_NONE);
		if (rc == -1)
			CHECK(o->result == SPF_PERMERROR);
	}
	spf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { .n = 0 };
	char *copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (size_t i = 0; i <= size && in.n < LINES_MAX;) {
		size_t e = i;
		while (e < size && copy[e] != '\n')
			e++;
		in.line[in.n] = copy + i;
		in.len[in.n] = e - i;
		in.n++;
		i = e + 1;
	}

	struct sockaddr_storage s4, s6;
	CHECK(spf_parse_ip("192.0.2.3", &s4) && spf_parse_ip("2001:db8::cb01", &s6));
	struct spf *c4 = spf_new((const struct sockaddr *)&s4, "email.example.com",
				 "strong-bad@email.example.com", "mx.example.org");
	struct spf *c6 = spf_new((const struct sockaddr *)&s6, "email.example.com", "", "");
	spf_set_time(c4, 1);
	spf_set_time(c6, 2);
	for (size_t i = 0; i < in.n; i++) {
		char err[160];
		int rc = spf_record_check(in.line[i], in.len[i], err, sizeof(err));
		CHECK(rc >= -1 && rc <= 1);
		expand_checks(c4, in.line[i], in.len[i]);
		expand_checks(c6, in.line[i], in.len[i]);
	}
	spf_free(c4);
	spf_free(c6);

	uint32_t salt = size ? data[size - 1] : 0;
	run_check(&in, "192.0.2.3", salt);
	run_check(&in, "2001:db8::cb01", salt + 1);
	free(copy);
	return 0;
}
