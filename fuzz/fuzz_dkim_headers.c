/*
 * Fuzz target for dkim_canon's header section parser and header field
 * canonicalization, and for dkim_sign's collection of the header section
 * (libFuzzer). The input after its first octet is:
 * - parsed as a header section: the fields must cover it exactly, in
 *   order, each but the last ending in a CRLF not followed by SP/HTAB;
 *   names end before the colon and hold no SP/HTAB at their end;
 * - each field canonicalized (relaxed and simple): relaxed output ends in
 *   CRLF, has a lower-case name and, when it holds no other CR or LF, is
 *   canonical already;
 * - selected by the names of its own first fields (each name twice): a
 *   pick is a field of that name, never picked twice;
 * - signed as a whole message with an Ed25519 key, fed in one piece and
 *   cut at a point taken from the first octet: the same header field or
 *   the same error either way.
 *
 * Build: clang -D_GNU_SOURCE -fsanitize=fuzzer,address -Isrc \
 *        fuzz/fuzz_dkim_headers.c src/signer/dkim_canon.c src/signer/dkim_sign.c \
 *        src/lib/xalloc.c -lcrypto -o /tmp/fz
 */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "signer/dkim_canon.h"
#include "signer/dkim_sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define NAMES 8

struct buf {
	unsigned char p[DKIM_HDRS_MAX_BYTES + 8];
	size_t len;
};

static void collect(void *arg, const unsigned char *d, size_t n)
{
	struct buf *b = arg;

	CHECK(b->len + n <= sizeof(b->p));
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static bool wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void check_field(const struct dkim_hfield *f)
{
	static struct buf a, b;
	bool plain = true;

	CHECK(f->raw_len > 0);
	CHECK(f->colon <= f->raw_len);
	if (f->colon == f->raw_len) {
		CHECK(f->name_len == 0 && memchr(f->raw, ':', f->raw_len) == NULL);
	} else {
		CHECK(f->raw[f->colon] == ':' && memchr(f->raw, ':', f->colon) == NULL);
		CHECK(f->name_len <= f->colon);
		if (f->name_len > 0)
			CHECK(!wsp(f->raw[f->name_len - 1]) && f->raw[f->name_len - 1] != '\r' &&
			      f->raw[f->name_len - 1] != '\n');
	}

	a.len = 0;
	dkim_canon_header(DKIM_CANON_RELAXED, f->raw, f->raw_len, true, collect, &a);
	CHECK(a.len >= 2 && a.p[a.len - 2] == '\r' && a.p[a.len - 1] == '\n');
	if (f->colon < f->raw_len) {
		const unsigned char *colon = memchr(a.p, ':', a.len);

		CHECK(colon != NULL);
		for (const unsigned char *p = a.p; p < colon; p++)
			CHECK(!(*p >= 'A' && *p <= 'Z'));
	}
	for (size_t i = 0; i + 2 < a.len; i++)
		plain = plain && a.p[i] != '\r' && a.p[i] != '\n';
	if (plain) {
		b.len = 0;
		dkim_canon_header(DKIM_CANON_RELAXED, (const char *)a.p, a.len, true, collect, &b);
		CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
	}
	/* Without the CRLF: the same, less the CRLF. */
	b.len = 0;
	dkim_canon_header(DKIM_CANON_RELAXED, f->raw, f->raw_len, false, collect, &b);
	CHECK(b.len + 2 == a.len && memcmp(a.p, b.p, b.len) == 0);

	a.len = 0;
	dkim_canon_header(DKIM_CANON_SIMPLE, f->raw, f->raw_len, true, collect, &a);
	CHECK(a.len >= 2 && a.p[a.len - 2] == '\r' && a.p[a.len - 1] == '\n');
	CHECK(a.len - 2 <= f->raw_len && memcmp(a.p, f->raw, a.len - 2) == 0);
}

static void check_select(const struct dkim_hdrs *h)
{
	char names[NAMES][65];
	const char *list[2 * NAMES];
	long idx[2 * NAMES];
	size_t n = 0;
	bool picked[DKIM_HDRS_MAX_FIELDS] = { false };

	for (size_t i = 0; i < h->n && n < NAMES; i++) {
		const struct dkim_hfield *f = &h->f[i];

		if (f->name_len == 0 || f->name_len > 64 || memchr(f->raw, '\0', f->name_len))
			continue;
		memcpy(names[n], f->raw, f->name_len);
		names[n][f->name_len] = '\0';
		list[2 * n] = names[n];
		list[2 * n + 1] = names[n];
		n++;
	}
	dkim_hdrs_select(h, list, 2 * n, idx);
	for (size_t i = 0; i < 2 * n; i++) {
		if (idx[i] < 0)
			continue;
		CHECK((size_t)idx[i] < h->n);
		CHECK(dkim_hfield_is(&h->f[idx[i]], list[i], strlen(list[i])));
		CHECK(!picked[idx[i]]);
		picked[idx[i]] = true;
	}
}

static EVP_PKEY *key(void)
{
	static EVP_PKEY *k;
	static const unsigned char seed[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

	if (k == NULL)
		k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	CHECK(k != NULL);
	return k;
}

/* The signer's output for the message, fed in two pieces; *rc its
 * result. The header text is the caller's. */
static char *sign(const char *msg, size_t len, size_t cut, int *rc, char *err, size_t errlen)
{
	char e[256], *hdr = NULL;
	size_t hlen = 0;
	struct dkim_sign *s = dkim_sign_new("example.com", "fz", DKIM_ALG_ED25519_SHA256, key(),
					    e, sizeof(e));

	CHECK(s != NULL);
	dkim_sign_set_time(s, 1700000000);
	(void)dkim_sign_feed(s, msg, cut);
	(void)dkim_sign_feed(s, msg + cut, len - cut);
	*rc = dkim_sign_finish(s, &hdr, &hlen, err, errlen);
	if (*rc == 0)
		CHECK(hdr != NULL && strlen(hdr) == hlen && hlen > 4 &&
		      memcmp(hdr + hlen - 2, "\r\n", 2) == 0);
	else
		CHECK(hdr == NULL && err[0] != '\0');
	dkim_sign_free(s);
	return hdr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_hdrs h;
	const char *in;
	char err[256], err2[256], *h1, *h2;
	size_t len, at = 0, cut;
	int rc1, rc2;

	if (size == 0)
		return 0;
	in = (const char *)data + 1;
	len = size - 1;
	if (dkim_hdrs_parse(in, len, &h, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < h.n; i++) {
			const struct dkim_hfield *f = &h.f[i];

			CHECK(f->raw == in + at);
			at += f->raw_len;
			check_field(f);
			if (i + 1 < h.n) {
				CHECK(f->raw_len >= 2 && f->raw[f->raw_len - 2] == '\r' &&
				      f->raw[f->raw_len - 1] == '\n');
				CHECK(!wsp(f->raw[f->raw_len]));
			}
		}
		CHECK(at == len);
		check_select(&h);
	} else {
		CHECK(h.n == 0 && h.f == NULL);
	}
	dkim_hdrs_free(&h);

	cut = len * data[0] / 255;
	h1 = sign(in, len, len, &rc1, err, sizeof(err));
	h2 = sign(in, len, cut, &rc2, err2, sizeof(err2));
	CHECK(rc1 == rc2);
	if (rc1 == 0)
		CHECK(strcmp(h1, h2) == 0);
	else
		CHECK(strcmp(err, err2) == 0);
	free(h1);
	free(h2);
	return 0;
}
