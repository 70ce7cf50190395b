/*
 * Fuzz target for smtp_addr (libFuzzer): the RFC 5321 path parser. Bit 0
 * of the first octet is allow_null, bit 1 allow_utf8; the rest is the
 * path (with whatever follows it on the command line).
 * Checks:
 *   - a success consumed 2..len octets ending in '>', with local, domain
 *     and text NUL-ended within their limits (64, 255, 256), text being
 *     "local@domain" as written; "<>" only when allowed; no UTF-8 unless
 *     allowed; the domain passes smtp_addr_domain_valid unless a literal;
 *   - the same result on an exact-size copy (no read past len), and with
 *     the octets after the '>' cut off (the parse never looks past it);
 *   - round trip: "<" text ">" parses again to the same local, domain,
 *     text and flags (has_utf8 then says whether the text has 8-bit
 *     octets: the first parse also counted the source route's);
 *   - smtp_addr_domain_valid and smtp_addr_utf8_len on the raw input:
 *     a UTF-8 length is 0 or 2..4 and within len.
 *
 * Build: scripts/fuzz.sh --build-only smtp_addr
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static bool same(const struct smtp_addr *a, const struct smtp_addr *b)
{
	return a->is_null == b->is_null && a->local_quoted == b->local_quoted &&
	       a->domain_literal == b->domain_literal && a->has_utf8 == b->has_utf8 &&
	       strcmp(a->local, b->local) == 0 && strcmp(a->domain, b->domain) == 0 &&
	       strcmp(a->text, b->text) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 2048)
		return 0;
	bool allow_null = data[0] & 1, allow_utf8 = data[0] & 2;
	size_t len = size - 1;
	char *s = malloc(len ? len : 1); /* exact size: ASan sees any overread */
	CHECK(s != NULL);
	memcpy(s, data + 1, len);

	struct smtp_addr a;
	size_t used = 12345;
	enum smtp_addr_status st = smtp_addr_parse(s, len, allow_null, allow_utf8, &a, &used);
	CHECK(st <= SMTP_ADDR_NULL_DENIED);
	if (st != SMTP_ADDR_OK) {
		CHECK(used == 0);
		CHECK(st != SMTP_ADDR_NULL_DENIED || !allow_null);
		CHECK(st != SMTP_ADDR_NEED_UTF8 || !allow_utf8);
	} else {
		CHECK(used >= 2 && used <= len && s[0] == '<' && s[used - 1] == '>');
		CHECK(memchr(a.local, '\0', sizeof(a.local)) != NULL);
		CHECK(memchr(a.domain, '\0', sizeof(a.domain)) != NULL);
		CHECK(memchr(a.text, '\0', sizeof(a.text)) != NULL);
		CHECK(allow_utf8 || !a.has_utf8);
		if (a.is_null) {
			CHECK(allow_null && used == 2 && a.text[0] == '\0');
		} else {
			size_t tl = strlen(a.text), dl = strlen(a.domain);
			CHECK(tl > dl + 1 && a.text[tl - dl - 1] == '@' &&
			      strcmp(a.text + tl - dl, a.domain) == 0);
			CHECK(strlen(a.local) <= tl - dl - 1);
			if (!a.local_quoted)
				CHECK(strlen(a.local) == tl - dl - 1 &&
				      memcmp(a.local, a.text, tl - dl - 1) == 0);
			CHECK(a.local_quoted == (a.text[0] == '"'));
			CHECK(a.domain_literal == (a.domain[0] == '['));
			if (!a.domain_literal)
				CHECK(smtp_addr_domain_valid(a.domain, dl, allow_utf8));
			/* The text is in the input, just before the '>'. */
			CHECK(used >= tl + 2 && memcmp(s + used - 1 - tl, a.text, tl) == 0);

			/* Round trip. */
			char again[SMTP_ADDR_PATH_MAX + 3];
			again[0] = '<';
			memcpy(again + 1, a.text, tl);
			again[tl + 1] = '>';
			struct smtp_addr b;
			size_t used2;
			CHECK(smtp_addr_parse(again, tl + 2, false, allow_utf8, &b, &used2) ==
			      SMTP_ADDR_OK);
			/* has_utf8 counts a source route's octets too (the path
			 * on the wire had them), the text alone does not. */
			bool text_8bit = false;
			for (size_t i = 0; i < tl; i++)
				text_8bit |= (unsigned char)a.text[i] >= 0x80;
			CHECK(b.has_utf8 == text_8bit && (a.has_utf8 || !text_8bit));
			b.has_utf8 = a.has_utf8;
			CHECK(used2 == tl + 2 && same(&a, &b));
		}
		/* Nothing after the '>' matters. */
		struct smtp_addr c;
		size_t used3;
		CHECK(smtp_addr_parse(s, used, allow_null, allow_utf8, &c, &used3) ==
		      SMTP_ADDR_OK);
		CHECK(used3 == used && same(&a, &c));
	}

	/* The raw input as a domain, and UTF-8 lengths along it. */
	if (smtp_addr_domain_valid(s, len, allow_utf8)) {
		CHECK(len > 0 && len <= SMTP_ADDR_DOMAIN_MAX);
		CHECK(s[0] != '.' && s[len - 1] != '.' && s[0] != '-' && s[len - 1] != '-');
	}
	for (size_t i = 0; i < len && i < 64; i++) {
		size_t n = smtp_addr_utf8_len(s + i, len - i);
		CHECK(n == 0 || (n >= 2 && n <= 4 && n <= len - i));
	}
	free(s);
	return 0;
}
