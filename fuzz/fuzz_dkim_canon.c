/*
 * Fuzz target for dkim_canon's body canonicalizer (libFuzzer). The input
 * after its first octet is a body; bit 0 of the first octet picks simple
 * or relaxed, the rest two cut points. The body is canonicalized in one
 * piece, in three pieces cut there, and (when short) octet by octet: all
 * must equal what a plain whole-buffer implementation written here from
 * RFC 6376 §3.4.3/§3.4.4 gives. The output must also be canonical
 * already (canonicalizing it again changes nothing), end in CRLF unless
 * empty (relaxed only), and never end in an empty line.
 *
 * Build: clang -D_GNU_SOURCE -fsanitize=fuzzer,address -Isrc \
 *        fuzz/fuzz_dkim_canon.c src/signer/dkim_canon.c src/lib/xalloc.c -o /tmp/fz
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "signer/dkim_canon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static void put(struct buf *b, const unsigned char *d, size_t n)
{
	CHECK(b->len + n <= b->cap);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void collect(void *arg, const unsigned char *d, size_t n)
{
	CHECK(n > 0 && n <= DKIM_CANON_OUTBUF);
	put(arg, d, n);
}

static bool wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The reference: split at CRLF into lines (a last line without CRLF
 * counts as a line), relaxed reduces each line's WSP runs to one SP and
 * drops the line's trailing WSP; then the empty lines at the end go, and
 * simple makes an empty body one CRLF.
 */
static void reference(bool relaxed, const unsigned char *in, size_t len, struct buf *out)
{
	size_t i = 0, keep = 0; /* out->len up to the last line with content */

	while (i < len) {
		size_t end = i, next;
		size_t start = out->len;

		while (end < len && !(in[end] == '\r' && end + 1 < len && in[end + 1] == '\n'))
			end++;
		next = end < len ? end + 2 : len;
		if (!relaxed) {
			put(out, in + i, end - i);
		} else {
			bool run = false;

			for (size_t k = i; k < end; k++) {
				if (wsp(in[k])) {
					run = true;
					continue;
				}
				if (run)
					put(out, (const unsigned char *)" ", 1);
				run = false;
				put(out, in + k, 1);
			}
		}
		put(out, (const unsigned char *)"\r\n", 2);
		if (out->len - start > 2)
			keep = out->len;
		i = next;
	}
	out->len = keep;
	if (!relaxed && out->len == 0)
		put(out, (const unsigned char *)"\r\n", 2);
}

static void canon(enum dkim_canon_alg alg, const unsigned char *in, size_t len,
		  size_t cut1, size_t cut2, bool octets, struct buf *out)
{
	static struct dkim_body_canon c;

	out->len = 0;
	dkim_body_canon_init(&c, alg, collect, out);
	if (octets) {
		for (size_t i = 0; i < len; i++)
			dkim_body_canon_feed(&c, in + i, 1);
	} else {
		dkim_body_canon_feed(&c, in, cut1);
		dkim_body_canon_feed(&c, in + cut1, cut2 - cut1);
		dkim_body_canon_feed(&c, in + cut2, len - cut2);
	}
	dkim_body_canon_finish(&c);
	CHECK(c.written == out->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf ref, a, b;
	enum dkim_canon_alg alg;
	const unsigned char *in;
	size_t len, cut1, cut2, cap;

	if (size == 0)
		return 0;
	alg = data[0] & 1 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	in = data + 1;
	len = size - 1;
	cut1 = len * ((data[0] >> 1) & 0x07) / 7;
	cut2 = cut1 + (len - cut1) * (data[0] >> 4) / 15;
	/* Output is at most the input, one CR turned CR CRLF, and a CRLF. */
	cap = 2 * len + 8;
	ref = (struct buf){ .p = malloc(cap), .cap = cap };
	a = (struct buf){ .p = malloc(cap), .cap = cap };
	b = (struct buf){ .p = malloc(cap), .cap = cap };

	reference(alg == DKIM_CANON_RELAXED, in, len, &ref);
	canon(alg, in, len, len, len, false, &a);
	CHECK(a.len == ref.len && memcmp(a.p, ref.p, a.len) == 0);
	canon(alg, in, len, cut1, cut2, false, &a);
	CHECK(a.len == ref.len && memcmp(a.p, ref.p, a.len) == 0);
	if (len <= 4096) {
		canon(alg, in, len, 0, 0, true, &a);
		CHECK(a.len == ref.len && memcmp(a.p, ref.p, a.len) == 0);
	}

	/* Canonical already: a second pass changes nothing. */
	canon(alg, a.p, a.len, a.len / 2, a.len, false, &b);
	CHECK(b.len == a.len && memcmp(a.p, b.p, a.len) == 0);
	if (a.len > 0)
		CHECK(a.len >= 2 && a.p[a.len - 2] == '\r' && a.p[a.len - 1] == '\n');
	if (alg == DKIM_CANON_SIMPLE)
		CHECK(a.len >= 2);
	CHECK(a.len < 4 || memcmp(a.p + a.len - 4, "\r\n\r\n", 4) != 0);

	free(ref.p);
	free(a.p);
	free(b.p);
	return 0;
}
