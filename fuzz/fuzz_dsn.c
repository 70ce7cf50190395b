/*
 * Fuzz target for dsn_build (libFuzzer): a delivery status notification
 * made of fuzz-derived fields and original message.
 *
 * Octet 0: bit 0 RET=HDRS, bits 1-2 the number of recipients less one,
 * bit 3 no original at all; octets 1-4: the actions and times. Then
 * NUL-separated strings: reporting MTA, queue id, ENVID, sender, and per
 * recipient the final address, ORCPT, status, remote MTA, diagnostic; an
 * empty string is NULL where NULL is allowed. What follows the last
 * string used is the original message.
 * Checks on the result:
 *   - NUL after the last octet; every line ends in CR LF (no bare CR or
 *     LF anywhere) and is at most 998 octets;
 *   - in the message's header section every line is a field ("name:" with
 *     printable ASCII) or a continuation, with no 8-bit octet: no value can
 *     start a header line;
 *   - the boundary occurs in the body exactly four times: three
 *     delimiter lines and the close delimiter; nowhere in the content.
 *
 * Build: scripts/fuzz.sh --build-only dsn
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/dsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

#define STR_MAX (4 + 5 * 4)

static void check_lines(const char *m, size_t len)
{
	size_t start = 0;
	bool in_header = true;
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\r') {
			CHECK(i + 1 < len && m[i + 1] == '\n');
			size_t line = i - start;
			CHECK(line <= 998);
			if (line == 0)
				in_header = false;
			if (in_header) {
				const char *l = m + start;
				if (l[0] != ' ' && l[0] != '\t') {
					size_t k = 0;
					while (k < line && l[k] > 32 && l[k] < 127 && l[k] != ':')
						k++;
					CHECK(k > 0 && k < line && l[k] == ':');
				}
				for (size_t k = 0; k < line; k++)
					CHECK((unsigned char)l[k] < 0x80 && l[k] != '\0');
			}
			i++;
			start = i + 1;
		} else {
			CHECK(m[i] != '\n');
		}
	}
	CHECK(start == len); /* the last line ended in CR LF */
}

static void check_boundary(const char *m, size_t len)
{
	/* At the start of a line, which no value can begin. */
	static const char ct[] = "\r\nContent-Type: multipart/report; "
				 "report-type=delivery-status;\r\n\tboundary=\"";
	const char *b = strstr(m, ct);
	CHECK(b != NULL);
	b += sizeof(ct) - 1;
	const char *e = strchr(b, '"');
	CHECK(e != NULL && e > b);
	size_t blen = (size_t)(e - b), count = 0;
	/* In the body: a header field (To: with the sender) may hold it. */
	const char *body = strstr(m, "\r\n\r\n");
	CHECK(body != NULL);
	for (const char *p = body; (p = memmem(p, len - (size_t)(p - m), b, blen)) != NULL; p++)
		count++;
	CHECK(count == 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5 || size > 200000)
		return 0;
	size_t nr = 1 + ((data[0] >> 1) & 3);
	bool headers_only = data[0] & 1, no_original = data[0] & 8;

	/* The strings, copied so that each is NUL-ended. */
	char *copy = malloc(size + 1);
	CHECK(copy != NULL);
	memcpy(copy, data, size);
	copy[size] = '\0';
	const char *s[STR_MAX];
	size_t need = 4 + 5 * nr, pos = 5;
	for (size_t i = 0; i < need; i++) {
		s[i] = copy + pos;
		const char *z = memchr(copy + pos, '\0', size + 1 - pos);
		pos = (size_t)(z - copy) + (pos < size ? 1 : 0);
		if (pos > size)
			pos = size;
	}
#define OPT(x) ((x)[0] ? (x) : NULL)
	struct dsn_rcpt rc[4];
	for (size_t i = 0; i < nr; i++) {
		const char *const *f = s + 4 + 5 * i;
		rc[i] = (struct dsn_rcpt){
			.final_rcpt = f[0],
			.orcpt = OPT(f[1]),
			.action = (enum dsn_action)((data[1 + i] & 3)),
			.status = f[2],
			.remote_mta = OPT(f[3]),
			.diagnostic = OPT(f[4]),
			.last_attempt = (int64_t)data[1 + i] * 1000003,
			.will_retry_until = (int64_t)data[4 - i] * 7919 * 3600,
		};
	}
	struct dsn_report r = {
		.reporting_mta = s[0],
		.queue_id = s[1],
		.envid = OPT(s[2]),
		.sender = s[3],
		.arrival = (int64_t)data[2] << 20,
		.now = ((int64_t)data[3] << 24) - ((int64_t)data[4] << 8),
		.headers_only = headers_only,
		.rcpts = rc,
		.nrcpts = nr,
		.original = no_original ? NULL : copy + pos,
		.original_len = no_original ? 0 : size - pos,
	};
#undef OPT
	size_t len = 0;
	char *m = dsn_build(&r, &len);
	CHECK(m != NULL && m[len] == '\0');
	check_lines(m, len);
	check_boundary(m, len);
	free(m);
	free(copy);
	return 0;
}
