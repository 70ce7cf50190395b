/*
 * Fuzz target for dkim_verify (libFuzzer): the tag=value parser, the
 * DKIM-Signature and key record checks, and the streaming feed path.
 *
 * Input: one control octet, then a message, then optionally a NUL octet
 * and a key record text. The control octet picks the chunk size of the
 * second feeding (1..32 octets) and the DNS answer given for every key
 * name (the record, NXDOMAIN, SERVFAIL, or the record after a record
 * that is not one).
 * - The whole input (after the control octet) goes through the tag
 *   parser: each tag lies inside the input, its value inside its raw
 *   span, names are ALPHA *(ALNUM / "_") and never repeated, values hold
 *   no ';'.
 * - The message is verified twice: in one piece with the keys answered
 *   after the end, and in small chunks with the keys answered as soon as
 *   the header section has ended. The two must agree on the count, each
 *   result, each reason and each count of octets after l=. Every result is one of the six, its texts
 *   NUL-terminated and bounded, its reason empty exactly on pass.
 * Seeds (fuzz/corpus/dkim_verify) include messages signed by python3-dkim
 * with the records of their keys, so the pass path is reached.
 *
 * Build: clang -D_GNU_SOURCE -fsanitize=fuzzer,address -Isrc \
 *        fuzz/fuzz_dkim_verify.c src/verify/dkim_verify.c \
 *        src/signer/dkim_canon.c src/signer/dkim_sign.c src/lib/xalloc.c \
 *        -lcrypto -o /tmp/fz
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dkim_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

struct outcome {
	int n;
	enum dkim_verify_status st[DKIM_VERIFY_MAX_SIGS];
	char reason[DKIM_VERIFY_MAX_SIGS][200];
	uint64_t unsigned_octets[DKIM_VERIFY_MAX_SIGS];
};

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_name_char(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

static void check_tags(const char *s, size_t len)
{
	struct dkim_verify_tag t[DKIM_VERIFY_MAX_TAGS];
	size_t n = 99;

	if (dkim_verify_tags_parse(s, len, t, DKIM_VERIFY_MAX_TAGS, &n) < 0)
		return;
	CHECK(n <= DKIM_VERIFY_MAX_TAGS);
	for (size_t i = 0; i < n; i++) {
		CHECK(t[i].name >= s && t[i].name + t[i].name_len <= s + len);
		CHECK(t[i].name_len > 0 && is_alpha(t[i].name[0]));
		for (size_t k = 0; k < t[i].name_len; k++)
			CHECK(is_name_char(t[i].name[k]));
		CHECK(t[i].raw >= s && t[i].raw + t[i].raw_len <= s + len);
		CHECK(t[i].value >= t[i].raw &&
		      t[i].value + t[i].value_len <= t[i].raw + t[i].raw_len);
		CHECK(memchr(t[i].raw, ';', t[i].raw_len) == NULL);
		for (size_t k = 0; k < i; k++)
			CHECK(t[k].name_len != t[i].name_len ||
			      memcmp(t[k].name, t[i].name, t[i].name_len) != 0);
	}
}

static void check_text(const char *s, size_t max)
{
	CHECK(s != NULL);
	CHECK(strnlen(s, max + 1) <= max);
}

static void answer(struct dkim_verify *v, unsigned mode, const char *rec, size_t rlen)
{
	static char junk[] = "v=spf1 -all";

	for (size_t i = 0; i < dkim_verify_key_count(v); i++) {
		const char *name = dkim_verify_key_name(v, i);
		struct dns_txt txt[2];

		CHECK(name != NULL && strlen(name) <= 253);
		if (dkim_verify_key_answered(v, i))
			continue;
		switch (mode) {
		case 0:
			txt[0].text = (char *)(uintptr_t)rec;
			txt[0].len = rlen;
			CHECK(dkim_verify_key_answer(v, name, DNS_OK, txt, 1, NULL) == 0);
			break;
		case 1:
			CHECK(dkim_verify_key_answer(v, name, DNS_NXDOMAIN, NULL, 0, "") == 0);
			break;
		case 2:
			CHECK(dkim_verify_key_answer(v, name, DNS_TEMPFAIL, NULL, 0,
						     "Timeout") == 0);
			break;
		default:
			txt[0].text = junk;
			txt[0].len = strlen(junk);
			txt[1].text = (char *)(uintptr_t)rec;
			txt[1].len = rlen;
			CHECK(dkim_verify_key_answer(v, name, DNS_OK, txt, 2, NULL) == 0);
			break;
		}
		CHECK(dkim_verify_key_answered(v, i));
		CHECK(dkim_verify_key_answer(v, name, DNS_OK, NULL, 0, NULL) == -1);
	}
}

/* Verifies msg fed in chunks of chunk octets, the keys answered before
 * the end (early) or after it. */
static void run(const char *msg, size_t len, size_t chunk, bool early, unsigned mode,
		const char *rec, size_t rlen, struct outcome *o)
{
	struct dkim_verify *v = dkim_verify_new(1715000600);
	bool failed = false;

	for (size_t off = 0; off < len; off += chunk)
		failed = dkim_verify_feed(v, msg + off, len - off < chunk ? len - off : chunk) < 0 ||
			 failed;
	if (early) /* (none known yet when the header section has not ended) */
		answer(v, mode, rec, rlen);
	o->n = dkim_verify_end(v);
	CHECK(o->n >= -1 && o->n <= DKIM_VERIFY_MAX_SIGS);
	CHECK((o->n == -1) == (dkim_verify_error(v)[0] != '\0'));
	CHECK(!failed || o->n == -1);
	answer(v, mode, rec, rlen);
	for (int i = 0; i < o->n; i++) {
		struct dkim_verify_result r;

		CHECK(dkim_verify_result(v, (size_t)i, &r) == 0);
		CHECK(r.status <= DKIM_VERIFY_PERMERROR);
		CHECK(r.status != DKIM_VERIFY_NEUTRAL && r.status != DKIM_VERIFY_POLICY);
		check_text(r.reason, 159);
		CHECK((r.status == DKIM_VERIFY_PASS) == (r.reason[0] == '\0'));
		check_text(r.domain, 253);
		check_text(r.selector, 253);
		check_text(r.alg, 23);
		check_text(r.header_b, 8);
		check_text(r.identity, 320);
		CHECK(r.has_l || r.body_unsigned == 0);
		o->st[i] = r.status;
		snprintf(o->reason[i], sizeof(o->reason[i]), "%s", r.reason);
		o->unsigned_octets[i] = r.body_unsigned;
	}
	dkim_verify_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg, *nul, *rec = "";
	size_t len, rlen = 0, chunk;
	unsigned mode;
	struct outcome a, b;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] & 0x1f) + 1;
	mode = (unsigned)(data[0] >> 5) & 3;
	msg = (const char *)data + 1;
	len = size - 1;
	check_tags(msg, len);
	nul = memchr(msg, '\0', len);
	if (nul != NULL) {
		rec = nul + 1;
		rlen = len - (size_t)(nul - msg) - 1;
		len = (size_t)(nul - msg);
		check_tags(rec, rlen);
	}
	run(msg, len, len > 0 ? len : 1, false, mode, rec, rlen, &a);
	run(msg, len, chunk, true, mode, rec, rlen, &b);
	CHECK(a.n == b.n);
	for (int i = 0; i < a.n; i++) {
		CHECK(a.st[i] == b.st[i]);
		CHECK(strcmp(a.reason[i], b.reason[i]) == 0);
		CHECK(a.unsigned_octets[i] == b.unsigned_octets[i]);
	}
	return 0;
}
