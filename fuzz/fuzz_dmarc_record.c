/*
 * Fuzz target for dmarc (libFuzzer): the record parser, the From-domain
 * extractor and discovery plus evaluation. The input is
 *   - parsed as one record: a DMARC_PARSE_OK record has policies in
 *     range, pct <= 100, sp = p and np = sp when unset, p=none when
 *     p_invalid; parsing is the same when the input is copied (no read
 *     past len: the copy has no NUL after it);
 *   - given to dmarc_from_domain as a header section: an OK domain is a
 *     NUL-ended lower-case name shorter than out;
 *   - split at '\n' into TXT records answered for _dmarc.<From domain>
 *     (first half) and _dmarc.<organization> (second half), then
 *     evaluated: a pass needs an aligned pass, apply is none unless fail.
 *
 * Build: clang -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *        fuzz/fuzz_dmarc_record.c src/verify/dmarc.c src/verify/psl.c \
 *        src/proto/addr_list.c src/proto/smtp_addr.c src/lib/xalloc.c -o /tmp/fz_dmarc
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/dmarc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static struct psl *psl;

static void record_checks(const char *s, size_t len)
{
	struct dmarc_record r, r2;
	enum dmarc_parse st = dmarc_record_parse(s, len, &r);
	CHECK(st == DMARC_PARSE_OK || st == DMARC_PARSE_NOT_DMARC || st == DMARC_PARSE_UNUSABLE);
	/* the same bytes, exactly len of them */
	char *exact = malloc(len ? len : 1);
	memcpy(exact, s, len);
	CHECK(dmarc_record_parse(exact, len, &r2) == st);
	free(exact);
	if (st != DMARC_PARSE_OK)
		return;
	CHECK(memcmp(&r, &r2, sizeof(r)) == 0);
	CHECK(r.p <= DMARC_POLICY_REJECT && r.sp <= DMARC_POLICY_REJECT &&
	      r.np <= DMARC_POLICY_REJECT);
	CHECK(r.pct <= 100);
	if (!r.sp_set)
		CHECK(r.sp == r.p);
	if (!r.np_set)
		CHECK(r.np == r.sp);
	if (r.p_invalid)
		CHECK(r.p == DMARC_POLICY_NONE && r.rua > 0);
}

static void from_checks(const char *s, size_t len)
{
	char out[64];
	memset(out, 'X', sizeof(out));
	enum dmarc_from st = dmarc_from_domain(s, len, out, 40);
	CHECK(out[40] == 'X');
	if (st != DMARC_FROM_OK)
		return;
	size_t n = strlen(out);
	CHECK(n > 0 && n < 40);
	for (size_t i = 0; i < n; i++)
		CHECK(!(out[i] >= 'A' && out[i] <= 'Z'));
}

static void discovery_checks(const uint8_t *data, size_t size)
{
	struct dmarc_txt txt[16];
	size_t n = 0;
	for (size_t i = 0; i <= size && n < 16;) {
		size_t e = i;
		while (e < size && data[e] != '\n')
			e++;
		txt[n].text = (const char *)data + i;
		txt[n].len = e - i;
		n++;
		i = e + 1;
	}
	const char *from = size && (data[0] & 1) ? "mail.shop.example.co.uk" : "example.com";
	struct dmarc *m = dmarc_new(psl, from);
	char name[300];
	int steps = 0;
	size_t half = n / 2;
	while (dmarc_step(m, name, sizeof(name))) {
		CHECK(++steps <= 2);
		CHECK(strncmp(name, "_dmarc.", 7) == 0);
		if (steps == 1)
			dmarc_answer(m, half ? DNS_OK : DNS_NXDOMAIN, txt, half, NULL);
		else
			dmarc_answer(m, n - half ? DNS_OK : DNS_NODATA, txt + half, n - half, NULL);
	}
	struct dmarc_dkim dk[2] = { { true, "Example.COM" }, { false, from } };
	for (unsigned k = 0; k < 4; k++) {
		struct dmarc_auth a = { k & 1 ? SPF_PASS : SPF_FAIL, k & 2 ? "other.org" : from,
					dk, k, size ? data[size - 1] % 100 : 0 };
		a.ndkim = k % 3;
		struct dmarc_outcome o;
		dmarc_evaluate(m, &a, &o);
		CHECK(o.result <= DMARC_PERMERROR);
		if (o.result == DMARC_PASS)
			CHECK(o.spf_aligned || o.dkim_aligned);
		if (o.result != DMARC_FAIL)
			CHECK(o.apply == DMARC_POLICY_NONE);
		else
			CHECK(o.apply <= o.policy);
		CHECK(memchr(o.reason, '\0', sizeof(o.reason)) != NULL);
	}
	dmarc_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (psl == NULL) {
		static const char list[] = "com\nuk\nco.uk\n*.ck\n!www.ck\norg\n";
		psl = psl_parse(list, sizeof(list) - 1);
	}
	record_checks((const char *)data, size);
	from_checks((const char *)data, size);
	discovery_checks(data, size);
	return 0;
}
