/*
 * Fuzz target for data_reader (libFuzzer): the DATA/BDAT content reader.
 * The first 4 octets are settings: bit 0 of octet 0 picks DATA or BDAT,
 * octet 1 the text line limit (0: none, else 4..1024), octet 2 the size
 * limit (0: none, else up to 4 KiB), octet 3 the seed of the cuts; the
 * rest is what the client sent.
 * The input is fed in one piece, then cut at up to 8 points derived from
 * the seed (empty pieces too), then octet by octet when short. Each way
 * must give the same outcome: octets consumed (DATA: up to and including
 * the end marker), done, error, and the same octets sent to the sink.
 * Also:
 *   - DATA: done only right after CR LF "." CR LF (or ".CRLF" at the very
 *     start), and the rest is left alone; the size counts what the sink
 *     got; without an error the content is empty or ends in CR LF and has
 *     no bare CR or LF; within the limits given;
 *   - DATA round trip: content that was read without error, dot-stuffed
 *     again and ended with ".CRLF", reads back identical;
 *   - BDAT: everything consumed; without an error the content is the
 *     input.
 *
 * Build: scripts/fuzz.sh --build-only data_reader
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/data_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

struct out {
	char *p;
	size_t len, cap;
};

static int sink(void *arg, const char *buf, size_t len)
{
	struct out *o = arg;
	CHECK(len > 0);
	if (o->len + len > o->cap) {
		o->cap = (o->len + len) * 2;
		o->p = realloc(o->p, o->cap);
		CHECK(o->p != NULL);
	}
	memcpy(o->p + o->len, buf, len);
	o->len += len;
	return 0;
}

struct outcome {
	struct out out;
	size_t consumed;
	bool done;
	enum data_error error;
	uint64_t size;
};

struct settings {
	bool dot;
	size_t line_max;
	uint64_t size_max;
};

/* Feed s[0..len) cut at the given points (sorted, within len). */
static void run(const struct settings *cfg, const char *s, size_t len, const size_t *cuts,
		size_t ncuts, struct outcome *oc)
{
	struct data_reader r;
	data_reader_init(&r, cfg->dot, cfg->line_max, cfg->size_max);
	memset(oc, 0, sizeof(*oc));
	size_t from = 0;
	for (size_t k = 0; k <= ncuts && !oc->done; k++) {
		size_t to = k < ncuts ? cuts[k] : len;
		/* A piece is fed until the reader stops taking it. */
		size_t got = data_reader_feed(&r, s + from, to - from, sink, &oc->out, &oc->done);
		CHECK(got <= to - from);
		if (!cfg->dot)
			CHECK(got == to - from && !oc->done);
		else if (!oc->done)
			CHECK(got == to - from);
		oc->consumed = from + got;
		from = to;
	}
	bool again;
	if (oc->done) {
		/* Finished: a further feed takes nothing. */
		CHECK(data_reader_feed(&r, "x", 1, sink, &oc->out, &again) == 0 && again);
	}
	oc->error = cfg->dot ? r.error : data_reader_finish(&r);
	oc->size = data_reader_size(&r);
}

static void same(const struct outcome *a, const struct outcome *b)
{
	CHECK(a->consumed == b->consumed && a->done == b->done && a->error == b->error &&
	      a->size == b->size && a->out.len == b->out.len);
	CHECK(a->out.len == 0 || memcmp(a->out.p, b->out.p, a->out.len) == 0);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4 || size > 65536)
		return 0;
	struct settings cfg = {
		.dot = !(data[0] & 1),
		.line_max = data[1] ? 4 + (size_t)data[1] * 4 : 0,
		.size_max = data[2] ? (uint64_t)data[2] * 16 : 0,
	};
	unsigned seed = data[3];
	size_t len = size - 4;
	char *s = malloc(len ? len : 1);
	CHECK(s != NULL);
	memcpy(s, data + 4, len);

	struct outcome whole, cut;
	run(&cfg, s, len, NULL, 0, &whole);
	CHECK(whole.size == whole.out.len);
	CHECK(cfg.size_max == 0 || whole.size <= cfg.size_max);
	CHECK(whole.error <= DATA_ERR_SINK && whole.error != DATA_ERR_SINK);
	if (cfg.dot && whole.done) {
		/* The end marker is what was consumed last. */
		CHECK(whole.consumed >= 3 && memcmp(s + whole.consumed - 3, ".\r\n", 3) == 0);
		CHECK(whole.consumed == 3 ||
		      (whole.consumed >= 5 && s[whole.consumed - 5] == '\r' &&
		       s[whole.consumed - 4] == '\n'));
	}
	if (!cfg.dot) {
		CHECK(whole.consumed == len);
		if (whole.error == DATA_ERR_NONE)
			CHECK(whole.out.len == len && (len == 0 || memcmp(whole.out.p, s, len) == 0));
	}
	if (whole.error == DATA_ERR_NONE) {
		const char *o = whole.out.p;
		size_t n = whole.out.len;
		for (size_t i = 0; i < n; i++) {
			if (o[i] == '\r')
				CHECK(i + 1 < n && o[i + 1] == '\n'); /* a last CR is held */
			if (o[i] == '\n')
				CHECK(i > 0 && o[i - 1] == '\r');
		}
		if (cfg.dot && whole.done)
			CHECK(n == 0 || (n >= 2 && o[n - 2] == '\r' && o[n - 1] == '\n'));
	}

	/* Cut points from the seed: a small generator, so one octet gives many
	 * different splits. */
	size_t cuts[8];
	size_t ncuts = 1 + seed % 8;
	unsigned x = seed * 2654435761u + 1;
	for (size_t k = 0; k < ncuts; k++) {
		x = x * 1103515245u + 12345u;
		cuts[k] = len ? (x >> 8) % (len + 1) : 0;
	}
	qsort(cuts, ncuts, sizeof(cuts[0]), cmp_size);
	run(&cfg, s, len, cuts, ncuts, &cut);
	same(&whole, &cut);
	free(cut.out.p);

	if (len <= 512) {
		size_t ones[512];
		for (size_t k = 0; k < len; k++)
			ones[k] = k;
		run(&cfg, s, len, ones, len, &cut);
		same(&whole, &cut);
		free(cut.out.p);
	}

	/* DATA round trip: stuff the content again and read it back. */
	if (cfg.dot && whole.done && whole.error == DATA_ERR_NONE) {
		size_t cap = whole.out.len * 2 + 3, n = 0;
		char *st = malloc(cap);
		CHECK(st != NULL);
		bool bol = true;
		for (size_t i = 0; i < whole.out.len; i++) {
			if (bol && whole.out.p[i] == '.')
				st[n++] = '.';
			st[n++] = whole.out.p[i];
			bol = whole.out.p[i] == '\n';
		}
		memcpy(st + n, ".\r\n", 3);
		n += 3;
		run(&cfg, st, n, NULL, 0, &cut);
		CHECK(cut.done && cut.consumed == n && cut.error == DATA_ERR_NONE);
		CHECK(cut.out.len == whole.out.len &&
		      (cut.out.len == 0 || memcmp(cut.out.p, whole.out.p, cut.out.len) == 0));
		free(cut.out.p);
		free(st);
	}
	free(whole.out.p);
	free(s);
	return 0;
}
