/*
 * Fuzz target for qfile (libFuzzer): the queue file reader, which treats
 * its files as untrusted, and the writer against it.
 *
 * Octet 0 holds flags; the rest, R, is used three ways:
 *   1. R as a queue file (on a memfd). With bit 0 set the last 17 octets
 *      are made an E record whose CRC is right, so that the fuzzer gets
 *      past the checksum into the records. qfile_read_envelope and, when
 *      it succeeds, qfile_read_content must not crash or leak; a success
 *      gives an envelope with a 16-octet id and at least one recipient with
 *      a non-empty address, and content of the stated length (plus an F
 *      prefix of at most QFILE_CHUNK_MAX).
 *   2. Whatever was read back is written again with qfile_writer and must
 *      read back identical (envelope and content).
 *   3. R cut at NUL octets into envelope fields (helo, client, proto,
 *      sender, ENVID, AUTH, then address, original, ORCPT per recipient;
 *      numbers from octets of R; the content is R itself, in pieces;
 *      bit 1: an F prefix): written, then read back identical.
 *
 * Build: scripts/fuzz.sh --build-only qfile
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "queue/envelope.h"
#include "queue/qfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static struct qfile_writer writer; /* 128 KiB: not on the stack */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 16;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static int collect(void *arg, const char *data, size_t len)
{
	buf_add(arg, data, len);
	return 0;
}

static int mem_fd(const void *p, size_t n)
{
	int fd = memfd_create("fuzz-qfile", 0);
	CHECK(fd >= 0);
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		CHECK(w > 0);
		c += w;
		n -= (size_t)w;
	}
	return fd;
}

static bool str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void check_same(const struct envelope *a, const struct envelope *b)
{
	CHECK(strcmp(a->id, b->id) == 0 && a->arrival_us == b->arrival_us);
	CHECK(str_eq(a->helo, b->helo) && str_eq(a->client_addr, b->client_addr) &&
	      str_eq(a->proto, b->proto));
	CHECK(strcmp(a->sender ? a->sender : "", b->sender ? b->sender : "") == 0);
	CHECK(a->smtputf8 == b->smtputf8 && a->body == b->body && a->ret == b->ret);
	CHECK(str_eq(a->envid, b->envid) && str_eq(a->auth, b->auth));
	CHECK(a->nrcpts == b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++) {
		CHECK(str_eq(a->rcpts[i].addr, b->rcpts[i].addr));
		CHECK(str_eq(a->rcpts[i].orig, b->rcpts[i].orig));
		CHECK(str_eq(a->rcpts[i].orcpt, b->rcpts[i].orcpt));
		CHECK(a->rcpts[i].notify == b->rcpts[i].notify);
	}
}

/* Write env, content (in pieces of `step` octets) and prefix; read the
 * file back: it must give env and prefix + content again. */
static void round_trip(const struct envelope *env, const char *content, size_t clen,
		       size_t step, const char *prefix, size_t plen)
{
	int fd = memfd_create("fuzz-qfile-rt", 0);
	CHECK(fd >= 0);
	qfile_writer_init(&writer, fd);
	qfile_write_envelope(&writer, env);
	for (size_t off = 0; off < clen; off += step)
		qfile_write_content(&writer, content + off, clen - off < step ? clen - off : step);
	if (plen)
		qfile_write_prefix(&writer, prefix, plen);
	CHECK(qfile_write_end(&writer) == 0);

	struct envelope back;
	envelope_init(&back);
	off_t off = 0;
	char err[128];
	CHECK(qfile_read_envelope(fd, &back, &off, err, sizeof(err)) == QFILE_OK);
	check_same(env, &back);
	CHECK(back.content_size == clen);
	struct buf got = { 0 };
	CHECK(qfile_read_content(fd, off, collect, &got, err, sizeof(err)) == QFILE_OK);
	CHECK(got.len == plen + clen);
	CHECK(plen == 0 || memcmp(got.p, prefix, plen) == 0);
	CHECK(clen == 0 || memcmp(got.p + plen, content, clen) == 0);
	free(got.p);
	envelope_free(&back);
	close(fd);
}

/* Part 1 and 2: the input as a queue file. */
static void read_raw(const uint8_t *r, size_t n, bool fix_tail)
{
	unsigned char *file = malloc(n ? n : 1);
	CHECK(file != NULL);
	memcpy(file, r, n);
	if (fix_tail && n >= QFILE_END_SIZE) {
		unsigned char *e = file + n - QFILE_END_SIZE;
		e[0] = 'E';
		e[1] = e[2] = e[3] = 0;
		e[4] = 12;
		uint32_t crc = (uint32_t)crc32(0L, file, (uInt)(n - QFILE_END_SIZE));
		e[13] = (unsigned char)(crc >> 24);
		e[14] = (unsigned char)(crc >> 16);
		e[15] = (unsigned char)(crc >> 8);
		e[16] = (unsigned char)crc;
	}
	int fd = mem_fd(file, n);
	struct envelope env;
	envelope_init(&env);
	off_t off = -1;
	char err[128] = "";
	enum qfile_status st = qfile_read_envelope(fd, &env, &off, err, sizeof(err));
	CHECK(st == QFILE_OK || st == QFILE_CORRUPT);
	CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	if (st == QFILE_OK) {
		CHECK(off > 0 && (size_t)off <= n - QFILE_END_SIZE);
		CHECK(strlen(env.id) == QUEUE_ID_LEN && env.nrcpts > 0);
		for (size_t i = 0; i < env.nrcpts; i++)
			CHECK(env.rcpts[i].addr && env.rcpts[i].addr[0]);
		struct buf got = { 0 };
		st = qfile_read_content(fd, off, collect, &got, err, sizeof(err));
		CHECK(st == QFILE_OK || st == QFILE_CORRUPT);
		if (st == QFILE_OK) {
			CHECK(got.len >= env.content_size &&
			      got.len - env.content_size <= QFILE_CHUNK_MAX);
			size_t plen = got.len - (size_t)env.content_size;
			/* Written again, read back the same. */
			const char *c = got.p ? got.p : "";
			round_trip(&env, c + plen, (size_t)env.content_size, 4096, c, plen);
		}
		free(got.p);
	} else {
		CHECK(err[0] != '\0');
	}
	envelope_free(&env);
	close(fd);
	free(file);
}

/* Part 3: an envelope made of the input's fields. */
static void write_fields(const uint8_t *r, size_t n, bool with_prefix)
{
	const char *f[64];
	size_t nf = 0, start = 0;
	for (size_t i = 0; i <= n && nf < 64; i++)
		if (i == n || r[i] == 0) {
			f[nf++] = (const char *)r + start; /* NUL-ended or at the end */
			start = i + 1;
		}
	if (nf == 0 || r[n - 1] != 0)
		return; /* the last field must be NUL-ended to be used as a string */
	nf--; /* the empty "field" after the final NUL */

	struct envelope env;
	envelope_init(&env);
	for (size_t i = 0; i < QUEUE_ID_LEN; i++)
		env.id[i] = (char)('A' + (i < n ? r[i] : 0) % 26);
	env.id[QUEUE_ID_LEN] = '\0';
	env.arrival_us = n >= 8 ? (int64_t)((uint64_t)r[0] << 56 | (uint64_t)r[n - 1] << 40 |
					    (uint64_t)r[n / 2] << 24 | n)
				: (int64_t)n;
	char **strs[] = { &env.helo, &env.client_addr, &env.proto, &env.sender, &env.envid,
			  &env.auth };
	size_t k = 0;
	for (; k < 6 && k < nf; k++)
		if (f[k][0] || k == 3) /* empty: absent, but the sender "" is <> */
			CHECK(envelope_set(strs[k], f[k]) == 0);
	env.smtputf8 = n > 1 && (r[1] & 1);
	env.body = n > 2 ? r[2] : 0;
	env.ret = n > 3 ? r[3] : 0;
	for (k = 6; k < nf; k += 3) {
		const char *addr = f[k][0] ? f[k] : "x@example.org";
		const char *orig = k + 1 < nf && f[k + 1][0] ? f[k + 1] : NULL;
		const char *orcpt = k + 2 < nf && f[k + 2][0] ? f[k + 2] : NULL;
		CHECK(envelope_add_rcpt(&env, addr, orig, orcpt, r[k % n]) == 0);
	}
	if (env.nrcpts == 0)
		CHECK(envelope_add_rcpt(&env, "postmaster", NULL, NULL, 0) == 0);
	size_t step = 1 + (n > 4 ? r[4] : 0) * 97u;
	size_t plen = with_prefix ? n / 3 + 1 : 0; /* <= n, as n >= 1 */
	round_trip(&env, (const char *)r, n, step, (const char *)r + n - plen, plen);
	envelope_free(&env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 60000)
		return 0;
	read_raw(data + 1, size - 1, data[0] & 1);
	if (size > 1)
		write_fields(data + 1, size - 1, data[0] & 2);
	return 0;
}
