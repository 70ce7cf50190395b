/*
 * Fuzz target for smtp_reply (libFuzzer). The input after its first octet
 * is parsed twice: in one piece, and cut in three at two points taken
 * from the first octet. Both must give the same replies and the same
 * error; every reply must hold to the header's bounds (code 200..599,
 * text NUL-ended within its array with no control character but "\n",
 * at most SMTP_REPLY_LINES_MAX lines), and an error must stick.
 *
 * Build: clang -fsanitize=fuzzer,address -Isrc fuzz/fuzz_smtp_reply.c \
 *        src/proto/smtp_reply.c -o /tmp/fz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

/* A parser fed from up to three pieces of one input, as reads would. */
struct feeder {
	struct smtp_reply_parser p;
	const char *piece[3];
	size_t piece_len[3];
	int at;          /* the piece being read */
	size_t off;      /* octets of it used */
};

enum { FEED_END = -1 };

static void check_reply(const struct smtp_reply *r)
{
	const void *nul = memchr(r->text, '\0', sizeof(r->text));
	char line[SMTP_REPLY_TEXT_MAX + 32];
	const char *arg;
	size_t arglen, tlen;

	CHECK(r->code >= 200 && r->code <= 599);
	CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
	CHECK(memchr(r->enh, '\0', sizeof(r->enh)) != NULL);
	CHECK(r->enh[0] == '\0' || r->enh[0] == '0' + r->code / 100);
	CHECK(nul != NULL);
	tlen = (size_t)((const char *)nul - r->text);
	CHECK(tlen <= SMTP_REPLY_TEXT_MAX - 1);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)r->text[i];

		CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
	}
	if (smtp_reply_has_keyword(r, "SIZE", &arg, &arglen))
		CHECK(arg >= r->text && arg + arglen <= r->text + tlen);
	smtp_reply_format(r, line, sizeof(line));
	CHECK(memchr(line, '\0', sizeof(line)) != NULL);
	smtp_reply_format(r, line, 7);
	CHECK(memchr(line, '\0', 7) != NULL);
}

/* The next status other than MORE: DONE, ERROR, or FEED_END when the
 * input ran out. */
static int feed_next(struct feeder *f, struct smtp_reply *out)
{
	while (f->at < 3) {
		size_t left = f->piece_len[f->at] - f->off, used = (size_t)-1;
		enum smtp_reply_status st;

		st = smtp_reply_parse(&f->p, f->piece[f->at] + f->off, left,
				      &used, out);
		CHECK(used <= left);
		CHECK(f->p.line_len < SMTP_REPLY_LINE_MAX);
		f->off += used;
		if (st == SMTP_REPLY_ERROR) {
			CHECK(f->p.failed && f->p.error != NULL);
			return st;
		}
		if (st == SMTP_REPLY_DONE) {
			CHECK(used > 0);
			check_reply(out);
			return st;
		}
		CHECK(st == SMTP_REPLY_MORE && f->off == f->piece_len[f->at]);
		f->at++;
		f->off = 0;
	}
	return FEED_END;
}

static void feeder_init(struct feeder *f, const char *s, size_t cut1,
			size_t cut2, size_t len)
{
	smtp_reply_parser_init(&f->p);
	f->piece[0] = s;
	f->piece_len[0] = cut1;
	f->piece[1] = s + cut1;
	f->piece_len[1] = cut2 - cut1;
	f->piece[2] = s + cut2;
	f->piece_len[2] = len - cut2;
	f->at = 0;
	f->off = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct feeder whole, split;
	static struct smtp_reply ra, rb;
	const char *s;
	size_t len, cut1, cut2;
	int sa, sb;

	if (size == 0)
		return 0;
	s = (const char *)data + 1;
	len = size - 1;
	cut1 = len * (data[0] & 0x0f) / 15;
	cut2 = cut1 + (len - cut1) * (data[0] >> 4) / 15;
	feeder_init(&whole, s, len, len, len);
	feeder_init(&split, s, cut1, cut2, len);
	do {
		sa = feed_next(&whole, &ra);
		sb = feed_next(&split, &rb);
		CHECK(sa == sb);
		if (sa == SMTP_REPLY_DONE) {
			CHECK(ra.code == rb.code && ra.nlines == rb.nlines);
			CHECK(strcmp(ra.enh, rb.enh) == 0);
			CHECK(strcmp(ra.text, rb.text) == 0);
		}
	} while (sa == SMTP_REPLY_DONE);
	if (sa == SMTP_REPLY_ERROR) {
		size_t used = 1;

		CHECK(strcmp(whole.p.error, split.p.error) == 0);
		CHECK(smtp_reply_parse(&whole.p, "250 ok\r\n", 8, &used,
				       &ra) == SMTP_REPLY_ERROR);
		CHECK(used == 0);
	}
	return 0;
}
