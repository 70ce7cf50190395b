/*
 * Unit tests for qfile: the queue file writer and reader.
 *
 * - Round trips of full and minimal envelopes and of content of many
 *   sizes (around QFILE_CHUNK_MAX and the writer's buffer), written in
 *   different splits, read back byte-exactly.
 * - The writer's output checked against the format in qfile.h by an
 *   independent parser (record order, D records of 1..QFILE_CHUNK_MAX
 *   octets, E with the content length and the CRC-32 of all before it).
 * - Damage: truncation at every offset, every single-octet change, and
 *   hand-made files (garbage after E, wrong version, bad id, unknown
 *   records, NUL in strings, lengths past EOF, length 0xFFFFFFFF, ...).
 *   The reader must answer QFILE_CORRUPT, never QFILE_OK with other data,
 *   and never crash. Hand-made files are read in a child process so that
 *   a crash (or a sanitizer report) fails one test, not the whole run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "proto/smtp_cmd.h"
#include "queue/envelope.h"
#include "queue/qfile.h"

#define TEST_ID "0123456789ABCDEF"

/* ---- helpers ---- */

static int tmp_fd(void)
{
	char path[] = "/tmp/fulmar-test-qfile-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(unlink(path), 0); /* gone when fd closes */
	return fd;
}

/* A file holding exactly these octets. */
static int fd_with(const unsigned char *p, size_t n)
{
	int fd = tmp_fd();
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fd, p + off, n - off);
		assert_true(w > 0);
		off += (size_t)w;
	}
	return fd;
}

/* Replace the whole content of fd with these octets. */
static void refill(int fd, const unsigned char *p, size_t n)
{
	assert_int_equal(ftruncate(fd, 0), 0);
	size_t off = 0;
	while (off < n) {
		ssize_t w = pwrite(fd, p + off, n - off, (off_t)off);
		assert_true(w > 0);
		off += (size_t)w;
	}
}

static unsigned char *slurp(int fd, size_t *len)
{
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	unsigned char *p = malloc((size_t)sb.st_size + 1);
	assert_non_null(p);
	size_t off = 0;
	while (off < (size_t)sb.st_size) {
		ssize_t r = pread(fd, p + off, (size_t)sb.st_size - off, (off_t)off);
		assert_true(r > 0);
		off += (size_t)r;
	}
	*len = off;
	return p;
}

/* Deterministic content with every octet value, CR, LF, NUL. */
static char *make_content(size_t n, unsigned seed)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (char)(x >> 24);
	}
	return p;
}

static void full_envelope(struct envelope *env)
{
	envelope_init(env);
	memcpy(env->id, TEST_ID, QUEUE_ID_LEN + 1);
	env->arrival_us = 1780000000123456LL;
	assert_int_equal(envelope_set(&env->sender, "s\xc3\xa9nder@example.org"), 0);
	assert_int_equal(envelope_set(&env->helo, "mail.example.org"), 0);
	assert_int_equal(envelope_set(&env->client_addr, "2001:db8::25"), 0);
	assert_int_equal(envelope_set(&env->proto, "UTF8SMTPS"), 0);
	env->smtputf8 = true;
	env->body = SMTP_BODY_8BITMIME;
	env->ret = SMTP_RET_HDRS;
	assert_int_equal(envelope_set(&env->envid, "QQ314159"), 0);
	assert_int_equal(envelope_set(&env->auth, "<e+3Dmc2@example.com>"), 0);
	assert_int_equal(envelope_add_rcpt(env, "alice@example.test", "Alice+x@Example.TEST",
					   "rfc822;Alice+x@Example.TEST",
					   SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE),
			 0);
	assert_int_equal(envelope_add_rcpt(env, "bob@example.test", "postmaster@example.test",
					   NULL, 0),
			 0);
	assert_int_equal(envelope_add_rcpt(env, "carol@remote.test", "list@example.test",
					   "utf-8;list@example.test", SMTP_NOTIFY_NEVER),
			 0);
	assert_int_equal(envelope_add_rcpt(env, "dave@example.test", "dave@example.test", NULL,
					   SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE |
						   SMTP_NOTIFY_SUCCESS),
			 0);
}

static void minimal_envelope(struct envelope *env)
{
	envelope_init(env);
	memcpy(env->id, "ZZZZZZZZZZZZZZZZ", QUEUE_ID_LEN + 1);
	env->arrival_us = 0;
	assert_int_equal(envelope_set(&env->sender, ""), 0);
	assert_int_equal(envelope_add_rcpt(env, "x@example.test", NULL, NULL, 0), 0);
}

struct written {
	unsigned char *file; /* the whole file */
	size_t file_len;
	uint64_t content_off; /* w.file_len right after the envelope */
};

/* Writes env and content (in pieces of `step` octets; 0 = one call) to fd. */
static void write_qfile(int fd, const struct envelope *env, const char *content,
			size_t len, size_t step, struct written *out)
{
	struct qfile_writer *w = malloc(sizeof(*w));
	assert_non_null(w);
	qfile_writer_init(w, fd);
	qfile_write_envelope(w, env);
	out->content_off = w->file_len;
	if (step == 0) {
		qfile_write_content(w, content, len);
	} else {
		for (size_t o = 0; o < len; o += step)
			qfile_write_content(w, content + o, len - o < step ? len - o : step);
	}
	assert_int_equal(w->content_len, len);
	assert_int_equal(qfile_write_end(w), 0);
	assert_int_equal(w->error, 0);
	out->file = slurp(fd, &out->file_len);
	assert_int_equal(w->file_len, out->file_len);
	free(w);
}

struct sink {
	unsigned char *p;
	size_t len, cap;
	size_t calls;
	size_t max_chunk;
	size_t fail_at; /* 1-based call that returns -1; 0 = never */
	size_t calls_after_fail;
	bool failed;
};

static int collect(void *arg, const char *data, size_t len)
{
	struct sink *s = arg;
	if (s->failed)
		s->calls_after_fail++;
	s->calls++;
	if (len > s->max_chunk)
		s->max_chunk = len;
	if (s->fail_at && s->calls == s->fail_at) {
		s->failed = true;
		return -1;
	}
	if (s->len + len > s->cap) {
		s->cap = (s->len + len) * 2 + 16;
		s->p = realloc(s->p, s->cap);
		assert_non_null(s->p);
	}
	memcpy(s->p + s->len, data, len);
	s->len += len;
	return 0;
}

static void assert_str_or_null(const char *got, const char *want)
{
	if (want == NULL)
		assert_null(got);
	else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
}

static void assert_env_equal(const struct envelope *got, const struct envelope *want)
{
	assert_string_equal(got->id, want->id);
	assert_int_equal(got->arrival_us, want->arrival_us);
	assert_str_or_null(got->sender, want->sender ? want->sender : "");
	assert_str_or_null(got->helo, want->helo);
	assert_str_or_null(got->client_addr, want->client_addr);
	assert_str_or_null(got->proto, want->proto);
	assert_int_equal(got->smtputf8, want->smtputf8);
	assert_int_equal(got->body, want->body);
	assert_int_equal(got->ret, want->ret);
	assert_str_or_null(got->envid, want->envid);
	assert_str_or_null(got->auth, want->auth);
	assert_int_equal(got->nrcpts, want->nrcpts);
	for (size_t i = 0; i < want->nrcpts; i++) {
		assert_string_equal(got->rcpts[i].addr, want->rcpts[i].addr);
		assert_string_equal(got->rcpts[i].orig, want->rcpts[i].orig);
		assert_str_or_null(got->rcpts[i].orcpt, want->rcpts[i].orcpt);
		assert_int_equal(got->rcpts[i].notify, want->rcpts[i].notify);
		assert_int_equal(got->rcpts[i].state, RCPT_PENDING);
		assert_int_equal(got->rcpts[i].attempts, 0);
		assert_null(got->rcpts[i].last_error);
	}
}

/* Read fd back completely; checks it against env and content. */
static void read_back(int fd, const struct envelope *want, const char *content,
		      size_t len, uint64_t content_off)
{
	struct envelope env;
	off_t off = -1;
	char err[256] = "";
	envelope_init(&env);
	enum qfile_status st = qfile_read_envelope(fd, &env, &off, err, sizeof(err));
	if (st != QFILE_OK)
		fail_msg("read_envelope: %d (%s)", (int)st, err);
	assert_int_equal((uint64_t)off, content_off);
	assert_int_equal(env.content_size, len);
	assert_env_equal(&env, want);

	struct sink s = { 0 };
	s.max_chunk = 0;
	st = qfile_read_content(fd, off, collect, &s, err, sizeof(err));
	if (st != QFILE_OK)
		fail_msg("read_content: %d (%s)", (int)st, err);
	assert_int_equal(s.len, len);
	if (len)
		assert_memory_equal(s.p, content, len);
	assert_true(s.max_chunk <= QFILE_CHUNK_MAX);
	if (len == 0)
		assert_int_equal(s.calls, 0);
	free(s.p);
	envelope_free(&env);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/*
 * An independent reading of the format of qfile.h: record order, D
 * record sizes, the E record. Returns the number of D records.
 */
static size_t check_format(const unsigned char *f, size_t n, uint64_t content_off,
			   size_t content_len, size_t nrcpts)
{
	size_t off = 0, nd = 0, nr = 0;
	static const char order[] = "VITCSP";
	size_t idx = 0;
	uint64_t seen = 0;
	bool in_content = false;
	for (;;) {
		assert_true(off + 5 <= n);
		char type = (char)f[off];
		uint32_t len = be32(f + off + 1);
		assert_true(off + 5 + len <= n);
		const unsigned char *p = f + off + 5;
		if (idx < 6) {
			assert_int_equal(type, order[idx]);
			if (type == 'V') {
				assert_int_equal(len, 7);
				assert_memory_equal(p, "FULMAR1", 7);
			}
			if (type == 'T')
				assert_int_equal(len, 8);
			if (type == 'I')
				assert_int_equal(len, QUEUE_ID_LEN);
			idx++;
		} else if (!in_content && type == 'R') {
			nr++;
		} else if (!in_content && type == 'M') {
			assert_int_equal(len, 0);
			assert_int_equal(off + 5, content_off);
			in_content = true;
		} else if (in_content && type == 'D') {
			assert_true(len >= 1);
			assert_true(len <= QFILE_CHUNK_MAX);
			seen += len;
			nd++;
		} else if (in_content && type == 'E') {
			assert_int_equal(len, 12);
			assert_int_equal(off + QFILE_END_SIZE, n); /* last */
			assert_int_equal(be64(p), content_len);
			uLong crc = crc32(0L, Z_NULL, 0);
			crc = crc32(crc, f, (uInt)off);
			assert_int_equal(be32(p + 8), (uint32_t)crc);
			break;
		} else {
			fail_msg("unexpected record '%c' at %zu", type, off);
		}
		off += 5 + len;
	}
	assert_int_equal(seen, content_len);
	assert_int_equal(nr, nrcpts);
	return nd;
}

/* ---- round trips ---- */

static void test_roundtrip_full_envelope(void **state)
{
	(void)state;
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	const char body[] = "Subject: hi\r\n\r\nHello\r\n";
	int fd = tmp_fd();
	write_qfile(fd, &env, body, sizeof(body) - 1, 0, &wr);
	check_format(wr.file, wr.file_len, wr.content_off, sizeof(body) - 1, 4);
	read_back(fd, &env, body, sizeof(body) - 1, wr.content_off);
	/* Reading is repeatable and independent of the fd offset. */
	assert_int_equal(lseek(fd, 3, SEEK_SET), 3);
	read_back(fd, &env, body, sizeof(body) - 1, wr.content_off);
	free(wr.file);
	close(fd);
	envelope_free(&env);
}

static void test_roundtrip_minimal_envelope(void **state)
{
	(void)state;
	struct envelope env;
	struct written wr;
	minimal_envelope(&env);
	int fd = tmp_fd();
	write_qfile(fd, &env, "x", 1, 0, &wr);
	read_back(fd, &env, "x", 1, wr.content_off);

	/* Absent optional strings come back absent (NULL), not "". */
	struct envelope got;
	off_t off;
	envelope_init(&got);
	assert_int_equal(qfile_read_envelope(fd, &got, &off, NULL, 0), QFILE_OK);
	assert_string_equal(got.sender, "");
	assert_null(got.helo);
	assert_null(got.client_addr);
	assert_null(got.proto);
	assert_null(got.envid);
	assert_null(got.auth);
	assert_false(got.smtputf8);
	assert_int_equal(got.body, SMTP_BODY_UNSPEC);
	assert_int_equal(got.ret, SMTP_RET_UNSPEC);
	assert_int_equal(got.arrival_us, 0);
	/* orig defaults to addr in envelope_add_rcpt */
	assert_string_equal(got.rcpts[0].orig, "x@example.test");
	assert_null(got.rcpts[0].orcpt);
	assert_int_equal(got.rcpts[0].notify, 0);
	envelope_free(&got);
	free(wr.file);
	close(fd);
	envelope_free(&env);
}

static void test_null_sender_pointer(void **state)
{
	(void)state;
	/* A NULL sender is written as the null reverse-path "". */
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	assert_int_equal(envelope_set(&env.sender, NULL), 0);
	int fd = tmp_fd();
	write_qfile(fd, &env, "", 0, 0, &wr);
	read_back(fd, &env, "", 0, wr.content_off); /* compares with "" */
	free(wr.file);
	close(fd);
	envelope_free(&env);
}

static void test_many_recipients(void **state)
{
	(void)state;
	struct envelope env;
	struct written wr;
	minimal_envelope(&env);
	char a[64], o[64], c[80];
	/* Enough that the envelope alone overflows the writer's buffer. */
	for (int i = 1; i < 2000; i++) {
		snprintf(a, sizeof(a), "user%d@example.test", i);
		snprintf(o, sizeof(o), "User%d+tag@Example.TEST", i);
		snprintf(c, sizeof(c), "rfc822;User%d+tag@Example.TEST", i);
		assert_int_equal(envelope_add_rcpt(&env, a, o, i % 3 ? c : NULL,
						   (unsigned)(i % 16)),
				 0);
	}
	int fd = tmp_fd();
	write_qfile(fd, &env, "body\r\n", 6, 0, &wr);
	assert_true(wr.content_off > QFILE_OUT_MAX);
	check_format(wr.file, wr.file_len, wr.content_off, 6, 2000);
	read_back(fd, &env, "body\r\n", 6, wr.content_off);
	free(wr.file);
	close(fd);
	envelope_free(&env);
}

static void roundtrip_size(size_t len)
{
	struct envelope env;
	full_envelope(&env);
	char *content = make_content(len, (unsigned)len);
	/* One call, then pieces of various sizes: the file must not depend on
	 * how the content was handed over. */
	static const size_t steps[] = { 0, 1, 5, 4096, 65535, 65536, 65537, 100000 };
	unsigned char *first = NULL;
	size_t first_len = 0;
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		if (steps[k] == 1 && len > 70000)
			continue; /* slow and covered by the small sizes */
		struct written wr;
		int fd = tmp_fd();
		write_qfile(fd, &env, content, len, steps[k], &wr);
		size_t nd = check_format(wr.file, wr.file_len, wr.content_off, len, 4);
		assert_true(nd >= (len + QFILE_CHUNK_MAX - 1) / QFILE_CHUNK_MAX);
		read_back(fd, &env, content, len, wr.content_off);
		if (first == NULL) {
			first = wr.file;
			first_len = wr.file_len;
		} else {
			assert_int_equal(wr.file_len, first_len);
			assert_memory_equal(wr.file, first, first_len);
			free(wr.file);
		}
		close(fd);
	}
	free(first);
	free(content);
	envelope_free(&env);
}

static void test_content_size_0(void **state) { (void)state; roundtrip_size(0); }
static void test_content_size_1(void **state) { (void)state; roundtrip_size(1); }
static void test_content_size_65535(void **state) { (void)state; roundtrip_size(65535); }
static void test_content_size_65536(void **state) { (void)state; roundtrip_size(65536); }
static void test_content_size_65537(void **state) { (void)state; roundtrip_size(65537); }
static void test_content_size_300000(void **state) { (void)state; roundtrip_size(300000); }

/* Sizes around the writer's buffer (QFILE_OUT_MAX) with the envelope in
 * front of the content. */
static void test_content_sizes_around_buffer(void **state)
{
	(void)state;
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	int fd = tmp_fd();
	write_qfile(fd, &env, "", 0, 0, &wr);
	size_t head = (size_t)wr.content_off;
	free(wr.file);
	close(fd);
	envelope_free(&env);
	const size_t base = QFILE_OUT_MAX - head;
	/* Content that makes the buffer exactly full with 0, 1, 2 D headers,
	 * and a few either side. */
	for (size_t d = 0; d <= 3; d++)
		for (long delta = -6; delta <= 6; delta++) {
			long len = (long)base - (long)(5 * d) + delta;
			if (len > 0)
				roundtrip_size((size_t)len);
		}
	roundtrip_size(2 * QFILE_OUT_MAX);
	roundtrip_size(2 * QFILE_OUT_MAX + 17);
}

/* ---- damage ---- */

/* Read a file completely: the status of the whole read (envelope, then
 * content). With want_content, an OK read must give exactly it. */
static enum qfile_status read_all(int fd, const char *want_content, size_t want_len,
				  bool *env_ok)
{
	struct envelope env;
	off_t off = 0;
	char err[128] = "";
	envelope_init(&env);
	enum qfile_status st = qfile_read_envelope(fd, &env, &off, err, sizeof(err));
	*env_ok = st == QFILE_OK;
	if (st == QFILE_OK) {
		struct sink s = { 0 };
		err[0] = '\0';
		st = qfile_read_content(fd, off, collect, &s, err, sizeof(err));
		if (st == QFILE_OK && want_content &&
		    (s.len != want_len || (want_len && memcmp(s.p, want_content, want_len))))
			fail_msg("read OK with different content");
		free(s.p);
	}
	if (st != QFILE_OK)
		assert_true(err[0] != '\0'); /* always says why */
	envelope_free(&env);
	return st;
}

/* A file with an F record: content, then prefix, then E. */
static void write_with_prefix(int fd, const char *content, size_t len, const char *prefix,
			      size_t plen)
{
	struct envelope env;
	minimal_envelope(&env);
	struct qfile_writer *w = malloc(sizeof(*w));
	assert_non_null(w);
	qfile_writer_init(w, fd);
	qfile_write_envelope(w, &env);
	qfile_write_content(w, content, len);
	qfile_write_prefix(w, prefix, plen);
	assert_int_equal(qfile_write_end(w), 0);
	assert_int_equal(w->content_len, len);
	free(w);
	envelope_free(&env);
}

/* The F record's octets come first when the content is read back. */
static void test_prefix_record(void **state)
{
	(void)state;
	const char *pre = "DKIM-Signature: v=1; a=ed25519-sha256; b=x\r\n";
	size_t sizes[] = { 0, 1, 70000, 200000 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		char *content = make_content(sizes[k], (unsigned)k + 7);
		size_t want_len = strlen(pre) + sizes[k];
		char *want = malloc(want_len + 1);
		assert_non_null(want);
		memcpy(want, pre, strlen(pre));
		memcpy(want + strlen(pre), content, sizes[k]);
		int fd = tmp_fd();
		write_with_prefix(fd, content, sizes[k], pre, strlen(pre));
		bool env_ok;
		assert_int_equal(read_all(fd, want, want_len, &env_ok), QFILE_OK);
		assert_true(env_ok);
		close(fd);
		free(want);
		free(content);
	}
}

/* The content kept in memory at commit (qfile_writer_content) is what a
 * read-back of the file gives: the prefix, then the content; a file
 * written in several fills keeps nothing. */
static void test_writer_content_matches_read_back(void **state)
{
	(void)state;
	const char *pre = "DKIM-Signature: v=1; b=y\r\n";
	size_t sizes[] = { 0, 1, 5120, 65536, 70000, 200000 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int with_prefix = 0; with_prefix <= 1; with_prefix++) {
			char *content = make_content(sizes[k], (unsigned)k + 11);
			struct envelope env;
			minimal_envelope(&env);
			int fd = tmp_fd();
			struct qfile_writer *w = malloc(sizeof(*w));
			assert_non_null(w);
			qfile_writer_init(w, fd);
			qfile_write_envelope(w, &env);
			size_t off = (size_t)w->file_len;
			for (size_t o = 0; o < sizes[k]; o += 4000)
				qfile_write_content(w, content + o,
						    sizes[k] - o < 4000 ? sizes[k] - o : 4000);
			if (with_prefix)
				qfile_write_prefix(w, pre, strlen(pre));
			assert_int_equal(qfile_write_end(w), 0);
			size_t plen = with_prefix ? strlen(pre) : 0, want_len = plen + sizes[k];
			char *got = NULL;
			size_t got_len = 0;
			int rc = qfile_writer_content(w, off, &got, &got_len);
			if (w->file_len > QFILE_OUT_MAX) {
				assert_int_equal(rc, -1); /* several fills */
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(got_len, want_len);
				assert_memory_equal(got, pre, plen);
				if (sizes[k])
					assert_memory_equal(got + plen, content, sizes[k]);
				char *want = malloc(want_len + 1);
				assert_non_null(want);
				memcpy(want, pre, plen);
				memcpy(want + plen, content, sizes[k]);
				bool env_ok;
				assert_int_equal(read_all(fd, want, want_len, &env_ok), QFILE_OK);
				free(want);
			}
			free(got);
			free(w);
			close(fd);
			envelope_free(&env);
			free(content);
		}
	}
}

/* Content that ends like an F record is content, never a prefix. */
static void test_prefix_mimicked_by_content(void **state)
{
	(void)state;
	unsigned char fake[5 + 8] = { 'F', 0, 0, 0, 8, 'B', 'c', 'c', ':', ' ', 'x', '\r', '\n' };
	int fd = tmp_fd();
	write_with_prefix(fd, (const char *)fake, sizeof(fake), NULL, 0);
	bool env_ok;
	assert_int_equal(read_all(fd, (const char *)fake, sizeof(fake), &env_ok), QFILE_OK);
	close(fd);
}

static void truncate_every_offset(size_t content_len)
{
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	char *content = make_content(content_len, 7);
	int fd = tmp_fd();
	write_qfile(fd, &env, content, content_len, 0, &wr);
	int fd2 = tmp_fd();
	size_t step = wr.file_len > 5000 ? 97 : 1;
	for (size_t cut = 0; cut < wr.file_len; cut++) {
		bool near_edge = cut < 300 || wr.file_len - cut < 300;
		if (!near_edge && cut % step != 0)
			continue;
		refill(fd2, wr.file, cut);
		bool env_ok;
		enum qfile_status st = read_all(fd2, NULL, 0, &env_ok);
		if (st != QFILE_CORRUPT)
			fail_msg("cut at %zu of %zu: status %d", cut, wr.file_len, (int)st);
		/* Without the E record, even the envelope is refused. */
		if (env_ok)
			fail_msg("cut at %zu: read_envelope accepted a file without E", cut);
	}
	/* And the untouched file is fine. */
	refill(fd2, wr.file, wr.file_len);
	bool env_ok;
	assert_int_equal(read_all(fd2, content, content_len, &env_ok), QFILE_OK);
	close(fd2);
	close(fd);
	free(wr.file);
	free(content);
	envelope_free(&env);
}

static void test_truncate_small(void **state)
{
	(void)state;
	truncate_every_offset(100);
}

static void test_truncate_empty_content(void **state)
{
	(void)state;
	truncate_every_offset(0);
}

static void test_truncate_multi_record(void **state)
{
	(void)state;
	truncate_every_offset(140000);
}

static void flip_bytes(size_t content_len, size_t step)
{
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	char *content = make_content(content_len, 11);
	int fd = tmp_fd();
	write_qfile(fd, &env, content, content_len, 0, &wr);
	int fd2 = tmp_fd();
	static const unsigned char masks[] = { 0x01, 0x80, 0xff, 0x20 };
	for (size_t i = 0; i < wr.file_len; i++) {
		bool in_tail = wr.file_len - i <= QFILE_END_SIZE + 5;
		if (!in_tail && i >= 400 && i % step != 0)
			continue;
		for (size_t m = 0; m < sizeof(masks); m++) {
			wr.file[i] ^= masks[m];
			refill(fd2, wr.file, wr.file_len);
			wr.file[i] ^= masks[m];
			bool env_ok;
			enum qfile_status st = read_all(fd2, content, content_len, &env_ok);
			if (st != QFILE_CORRUPT)
				fail_msg("octet %zu ^ 0x%02x: status %d", i, masks[m], (int)st);
		}
	}
	close(fd2);
	close(fd);
	free(wr.file);
	free(content);
	envelope_free(&env);
}

static void test_flip_every_byte_small(void **state)
{
	(void)state;
	flip_bytes(200, 1);
}

static void test_flip_bytes_big(void **state)
{
	(void)state;
	flip_bytes(200000, 1009);
}

/* ---- hand-made files ---- */

struct fb {
	unsigned char *p;
	size_t len, cap;
};

static void fb_put(struct fb *b, const void *v, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (n)
		memcpy(b->p + b->len, v, n);
	b->len += n;
}

static void fb_u32(struct fb *b, uint32_t v)
{
	unsigned char t[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	fb_put(b, t, 4);
}

static void fb_u64(struct fb *b, uint64_t v)
{
	fb_u32(b, (uint32_t)(v >> 32));
	fb_u32(b, (uint32_t)v);
}

/* A record whose length field says `declared` but carries n octets. */
static void fb_rec_lying(struct fb *b, char type, uint32_t declared, const void *v,
			 size_t n)
{
	unsigned char t = (unsigned char)type;
	fb_put(b, &t, 1);
	fb_u32(b, declared);
	fb_put(b, v, n);
}

static void fb_rec(struct fb *b, char type, const void *v, size_t n)
{
	fb_rec_lying(b, type, (uint32_t)n, v, n);
}

static void fb_str(struct fb *b, char type, const char *s)
{
	fb_rec(b, type, s, strlen(s));
}

static void fb_field(struct fb *b, char tag, const void *v, size_t n)
{
	unsigned char h[3] = { (unsigned char)tag, (unsigned char)(n >> 8),
			       (unsigned char)n };
	fb_put(b, h, 3);
	fb_put(b, v, n);
}

static void fb_fstr(struct fb *b, char tag, const char *s)
{
	fb_field(b, tag, s, strlen(s));
}

static void fb_recf(struct fb *b, char type, const struct fb *fields)
{
	fb_rec(b, type, fields->p, fields->len);
}

static void fb_time(struct fb *b)
{
	unsigned char t[8] = { 0, 0x06, 0x5a, 0, 0, 0, 0, 1 };
	fb_rec(b, 'T', t, 8);
}

static void fb_client(struct fb *b)
{
	struct fb f = { 0 };
	fb_fstr(&f, 'h', "helo.example");
	fb_fstr(&f, 'a', "192.0.2.1");
	fb_fstr(&f, 'p', "ESMTP");
	fb_recf(b, 'C', &f);
	free(f.p);
}

static void fb_params(struct fb *b)
{
	struct fb f = { 0 };
	unsigned char one = 1;
	fb_field(&f, 'u', &one, 1);
	fb_field(&f, 'b', &one, 1);
	fb_field(&f, 'r', &one, 1);
	fb_fstr(&f, 'e', "envid");
	fb_recf(b, 'P', &f);
	free(f.p);
}

static void fb_rcpt(struct fb *b, const char *addr)
{
	struct fb f = { 0 };
	unsigned char n = 6;
	fb_fstr(&f, 'a', addr);
	fb_fstr(&f, 'o', addr);
	fb_field(&f, 'n', &n, 1);
	fb_recf(b, 'R', &f);
	free(f.p);
}

/* The E record for what b holds so far. */
static void fb_end(struct fb *b, uint64_t content_len)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, b->p, (uInt)b->len);
	unsigned char t = 'E';
	fb_put(b, &t, 1);
	fb_u32(b, 12);
	fb_u64(b, content_len);
	fb_u32(b, (uint32_t)crc);
}

/* A complete valid envelope, with a hook to replace one part. */
enum part { P_NONE, P_V, P_I, P_T, P_C, P_S, P_P, P_R, P_M };

static void fb_envelope_except(struct fb *b, enum part skip)
{
	if (skip != P_V)
		fb_str(b, 'V', "FULMAR1");
	if (skip != P_I)
		fb_str(b, 'I', TEST_ID);
	if (skip != P_T)
		fb_time(b);
	if (skip != P_C)
		fb_client(b);
	if (skip != P_S)
		fb_str(b, 'S', "sender@example.org");
	if (skip != P_P)
		fb_params(b);
	if (skip != P_R)
		fb_rcpt(b, "rcpt@example.test");
	if (skip != P_M)
		fb_rec(b, 'M', NULL, 0);
}

/* A finished valid file with this content in one D record. */
static void fb_valid(struct fb *b, const char *content)
{
	fb_envelope_except(b, P_NONE);
	if (content[0])
		fb_str(b, 'D', content);
	fb_end(b, strlen(content));
}

/*
 * Read the file in a child process. Result: 0..2 status of the whole read
 * (as read_all), or -1 when the child crashed or a sanitizer stopped it.
 */
static int read_isolated(const struct fb *b, const char *want_content)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = fd_with(b->p, b->len);
		struct envelope env;
		off_t off = 0;
		char err[128] = "";
		envelope_init(&env);
		enum qfile_status st = qfile_read_envelope(fd, &env, &off, err, sizeof(err));
		int extra = 0;
		if (st == QFILE_OK) {
			struct sink s = { 0 };
			st = qfile_read_content(fd, off, collect, &s, err, sizeof(err));
			if (st == QFILE_OK && want_content &&
			    (s.len != strlen(want_content) ||
			     memcmp(s.p, want_content, s.len) != 0))
				extra = 8; /* OK with other content */
		}
		if (st != QFILE_OK && err[0] == '\0')
			extra = 16; /* no reason given */
		_exit(100 + (int)st + extra);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	if (!WIFEXITED(ws) || WEXITSTATUS(ws) < 100)
		return -1;
	int code = WEXITSTATUS(ws) - 100;
	if (code & 8)
		fail_msg("read OK but content differs");
	if (code & 16)
		fail_msg("failure without an error message");
	return code;
}

static void expect_file(struct fb *b, int want, const char *what)
{
	int got = read_isolated(b, NULL);
	if (got < 0)
		fail_msg("%s: the reader crashed (see the sanitizer report above)", what);
	if (got != want)
		fail_msg("%s: status %d, want %d", what, got, want);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static void test_handmade_valid(void **state)
{
	(void)state;
	/* The builder itself makes files the reader accepts. */
	struct fb b = { 0 };
	fb_valid(&b, "hello\r\n");
	assert_int_equal(read_isolated(&b, "hello\r\n"), QFILE_OK);
	free(b.p);

	/* Several D records of different sizes, including the maximum. */
	char *big = make_content(QFILE_CHUNK_MAX, 3);
	memset(&b, 0, sizeof(b));
	fb_envelope_except(&b, P_NONE);
	fb_rec(&b, 'D', "a", 1);
	fb_rec(&b, 'D', big, QFILE_CHUNK_MAX);
	fb_rec(&b, 'D', "bcd", 3);
	fb_end(&b, 1 + QFILE_CHUNK_MAX + 3);
	int fd = fd_with(b.p, b.len);
	struct envelope env;
	off_t off;
	envelope_init(&env);
	assert_int_equal(qfile_read_envelope(fd, &env, &off, NULL, 0), QFILE_OK);
	assert_int_equal(env.content_size, 1 + QFILE_CHUNK_MAX + 3);
	assert_string_equal(env.id, TEST_ID);
	assert_string_equal(env.helo, "helo.example");
	assert_string_equal(env.envid, "envid");
	assert_int_equal(env.rcpts[0].notify, 6);
	struct sink s = { 0 };
	assert_int_equal(qfile_read_content(fd, off, collect, &s, NULL, 0), QFILE_OK);
	assert_int_equal(s.len, 1 + QFILE_CHUNK_MAX + 3);
	assert_int_equal(s.calls, 3);
	assert_memory_equal(s.p, "a", 1);
	assert_memory_equal(s.p + 1, big, QFILE_CHUNK_MAX);
	assert_memory_equal(s.p + 1 + QFILE_CHUNK_MAX, "bcd", 3);
	free(s.p);
	envelope_free(&env);
	close(fd);
	free(b.p);
	free(big);
}

static void test_unknown_field_tags_skipped(void **state)
{
	(void)state;
	/* Unknown tags inside C, P and R are skipped (forward compatibility). */
	struct fb b = { 0 }, f = { 0 };
	fb_str(&b, 'V', "FULMAR1");
	fb_str(&b, 'I', TEST_ID);
	fb_time(&b);
	fb_fstr(&f, 'z', "future");
	fb_fstr(&f, 'h', "h.example");
	fb_field(&f, 'Q', "\0\0\0", 3); /* NUL inside an unknown field: ignored */
	fb_recf(&b, 'C', &f);
	f.len = 0;
	fb_str(&b, 'S', "");
	fb_fstr(&f, 'y', "x");
	fb_fstr(&f, 'x', "auth@example");
	fb_recf(&b, 'P', &f);
	f.len = 0;
	fb_fstr(&f, 'a', "r@example.test");
	fb_fstr(&f, 'w', "what");
	fb_recf(&b, 'R', &f);
	fb_rec(&b, 'M', NULL, 0);
	fb_str(&b, 'D', "x");
	fb_end(&b, 1);
	int fd = fd_with(b.p, b.len);
	struct envelope env;
	off_t off;
	envelope_init(&env);
	assert_int_equal(qfile_read_envelope(fd, &env, &off, NULL, 0), QFILE_OK);
	assert_string_equal(env.helo, "h.example");
	assert_string_equal(env.auth, "auth@example");
	assert_string_equal(env.sender, "");
	assert_int_equal(env.nrcpts, 1);
	assert_string_equal(env.rcpts[0].addr, "r@example.test");
	envelope_free(&env);
	close(fd);
	free(b.p);
	free(f.p);
}

static void test_short_files(void **state)
{
	(void)state;
	struct fb b = { 0 };
	expect_file(&b, QFILE_CORRUPT, "empty file");
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "only an E record");
	fb_str(&b, 'V', "FULMAR1");
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "V then E");
	fb_str(&b, 'V', "FULMAR1");
	expect_file(&b, QFILE_CORRUPT, "V only");
}

static void test_garbage_after_end(void **state)
{
	(void)state;
	struct fb b = { 0 };
	fb_valid(&b, "hello\r\n");
	fb_put(&b, "x", 1);
	expect_file(&b, QFILE_CORRUPT, "one octet after E");

	fb_valid(&b, "hello\r\n");
	fb_put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
	expect_file(&b, QFILE_CORRUPT, "zeros after E");

	/* A second, well-formed E record after the first. */
	fb_valid(&b, "hello\r\n");
	fb_end(&b, 7);
	expect_file(&b, QFILE_CORRUPT, "two E records");

	/* A D record after E, then an E that covers it all. */
	fb_valid(&b, "hello\r\n");
	fb_str(&b, 'D', "more");
	fb_end(&b, 11);
	expect_file(&b, QFILE_CORRUPT, "records after E, then another E");
}

static void test_bad_version(void **state)
{
	(void)state;
	static const char *const versions[] = { "FULMAR2", "FULMAR", "FULMAR10",
						"fulmar1", "", "FULMAR1\0" };
	static const size_t lens[] = { 7, 6, 8, 7, 0, 8 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct fb b = { 0 };
		fb_rec(&b, 'V', versions[i], lens[i]);
		fb_envelope_except(&b, P_V);
		fb_str(&b, 'D', "x");
		fb_end(&b, 1);
		char what[64];
		snprintf(what, sizeof(what), "version #%zu", i);
		expect_file(&b, QFILE_CORRUPT, what);
	}
	/* V not first. */
	struct fb b = { 0 };
	fb_str(&b, 'I', TEST_ID);
	fb_str(&b, 'V', "FULMAR1");
	fb_envelope_except(&b, P_V);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "V not first");
	/* No V at all. */
	fb_envelope_except(&b, P_V);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "no V");
	/* V twice. */
	fb_str(&b, 'V', "FULMAR1");
	fb_envelope_except(&b, P_NONE);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "V twice");
}

static void test_bad_id(void **state)
{
	(void)state;
	static const char *const ids[] = { "0123456789ABCDE", "0123456789ABCDEF0", "",
					   "01234567\0" "9ABCDEF" };
	static const size_t lens[] = { 15, 17, 0, 16 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct fb b = { 0 };
		fb_str(&b, 'V', "FULMAR1");
		fb_rec(&b, 'I', ids[i], lens[i]);
		fb_envelope_except(&b, P_V);
		/* the valid I comes after the bad one: the bad one must count */
		fb_end(&b, 0);
		char what[64];
		snprintf(what, sizeof(what), "id #%zu (length %zu)", i, lens[i]);
		expect_file(&b, QFILE_CORRUPT, what);

		/* and without any valid I */
		fb_str(&b, 'V', "FULMAR1");
		fb_rec(&b, 'I', ids[i], lens[i]);
		fb_time(&b);
		fb_client(&b);
		fb_str(&b, 'S', "s@example.org");
		fb_params(&b);
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, what);
	}
}

static void test_missing_records(void **state)
{
	(void)state;
	static const enum part parts[] = { P_I, P_T, P_S, P_R, P_M };
	static const char *const names[] = { "no I", "no T", "no S", "no R", "no M" };
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		struct fb b = { 0 };
		fb_envelope_except(&b, parts[i]);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, names[i]);
	}
	/* C and P are optional. */
	struct fb b = { 0 };
	fb_envelope_except(&b, P_C);
	fb_end(&b, 0);
	expect_file(&b, QFILE_OK, "no C");
	fb_envelope_except(&b, P_P);
	fb_end(&b, 0);
	expect_file(&b, QFILE_OK, "no P");
}

static void test_unknown_record_type(void **state)
{
	(void)state;
	static const char types[] = { 'Z', 'v', 'D', 'E', '\0', (char)0xff };
	for (size_t i = 0; i < sizeof(types); i++) {
		struct fb b = { 0 };
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_rec(&b, types[i], "abc", 3);
		fb_client(&b);
		fb_str(&b, 'S', "");
		fb_params(&b);
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		char what[64];
		snprintf(what, sizeof(what), "record type 0x%02x before M",
			 (unsigned char)types[i]);
		expect_file(&b, QFILE_CORRUPT, what);
	}
}

static void test_nul_in_strings(void **state)
{
	(void)state;
	struct fb b = { 0 }, f = { 0 };

	/* Sender */
	fb_str(&b, 'V', "FULMAR1");
	fb_str(&b, 'I', TEST_ID);
	fb_time(&b);
	fb_rec(&b, 'S', "a\0b@example.org", 15);
	fb_rcpt(&b, "r@example.test");
	fb_rec(&b, 'M', NULL, 0);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "NUL in sender");

	/* Client fields */
	static const char ctags[] = { 'h', 'a', 'p' };
	for (size_t i = 0; i < sizeof(ctags); i++) {
		f.len = 0;
		fb_field(&f, ctags[i], "x\0y", 3);
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_recf(&b, 'C', &f);
		fb_str(&b, 'S', "");
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, "NUL in a client field");
	}
	/* ENVID, AUTH */
	static const char ptags[] = { 'e', 'x' };
	for (size_t i = 0; i < sizeof(ptags); i++) {
		f.len = 0;
		fb_field(&f, ptags[i], "\0", 1);
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_str(&b, 'S', "");
		fb_recf(&b, 'P', &f);
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, "NUL in a parameter");
	}
	/* Recipient fields */
	static const char rtags[] = { 'a', 'o', 'c' };
	for (size_t i = 0; i < sizeof(rtags); i++) {
		f.len = 0;
		if (rtags[i] != 'a')
			fb_fstr(&f, 'a', "r@example.test");
		fb_field(&f, rtags[i], "r@ex\0ample.test", 15);
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_str(&b, 'S', "");
		fb_recf(&b, 'R', &f);
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, "NUL in a recipient field");
	}
	free(f.p);
}

static void test_bad_fields(void **state)
{
	(void)state;
	struct fb b = { 0 }, f = { 0 };
	unsigned char two[2] = { 1, 1 };

	/* Fixed-size fields of the wrong size. */
	static const char ptags[] = { 'u', 'b', 'r' };
	for (size_t i = 0; i < sizeof(ptags); i++)
		for (size_t n = 0; n <= 2; n += 2) {
			f.len = 0;
			fb_field(&f, ptags[i], two, n);
			fb_envelope_except(&b, P_M);
			fb_recf(&b, 'P', &f); /* a second P, bad */
			fb_rec(&b, 'M', NULL, 0);
			fb_end(&b, 0);
			expect_file(&b, QFILE_CORRUPT, "u/b/r field not 1 octet");
		}
	f.len = 0;
	fb_fstr(&f, 'a', "r@example.test");
	fb_field(&f, 'n', two, 2);
	fb_envelope_except(&b, P_M);
	fb_recf(&b, 'R', &f);
	fb_rec(&b, 'M', NULL, 0);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "notify field of 2 octets");

	/* A field longer than its record. */
	f.len = 0;
	fb_fstr(&f, 'h', "helo");
	f.p[2] = 5; /* says 5, has 4 */
	fb_str(&b, 'V', "FULMAR1");
	fb_recf(&b, 'C', &f);
	fb_envelope_except(&b, P_V);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "field past its record");

	/* A field header cut short (1 and 2 octets left). */
	for (size_t k = 1; k <= 2; k++) {
		f.len = 0;
		fb_fstr(&f, 'h', "helo");
		fb_put(&f, "ab", k);
		fb_str(&b, 'V', "FULMAR1");
		fb_recf(&b, 'C', &f);
		fb_envelope_except(&b, P_V);
		fb_end(&b, 0);
		expect_file(&b, QFILE_CORRUPT, "cut field header");
	}

	/* Recipient without an address, or with an empty one. */
	f.len = 0;
	fb_fstr(&f, 'o', "r@example.test");
	fb_envelope_except(&b, P_M);
	fb_recf(&b, 'R', &f);
	fb_rec(&b, 'M', NULL, 0);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "recipient without address");
	f.len = 0;
	fb_fstr(&f, 'a', "");
	fb_envelope_except(&b, P_M);
	fb_recf(&b, 'R', &f);
	fb_rec(&b, 'M', NULL, 0);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "recipient with empty address");

	/* T of the wrong size; M with a payload. */
	fb_str(&b, 'V', "FULMAR1");
	fb_str(&b, 'I', TEST_ID);
	fb_rec(&b, 'T', "1234567", 7);
	fb_envelope_except(&b, P_V);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "T of 7 octets");
	fb_envelope_except(&b, P_M);
	fb_rec(&b, 'M', "x", 1);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "M with a payload");
	free(f.p);
}

static void test_lengths_past_eof(void **state)
{
	(void)state;
	struct fb b = { 0 };
	/* An envelope record whose length runs past the end of the file. */
	static const uint32_t lens[] = { 100, 1000, 65536, 0x7fffffff, 0x80000000u,
					 0xfffffff0u };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_rec_lying(&b, 'S', lens[i], "s@example.org", 13);
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_end(&b, 0);
		char what[64];
		snprintf(what, sizeof(what), "S length 0x%x", lens[i]);
		expect_file(&b, QFILE_CORRUPT, what);
	}
	/* A length that runs exactly into the E record. */
	fb_str(&b, 'V', "FULMAR1");
	fb_str(&b, 'I', TEST_ID);
	fb_time(&b);
	fb_rec_lying(&b, 'S', 13 + 5 + 1, "s@example.org", 13);
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "S running into E");

	/* A content record whose length runs past E. */
	fb_envelope_except(&b, P_NONE);
	fb_rec_lying(&b, 'D', 100, "hello", 5);
	fb_end(&b, 5);
	expect_file(&b, QFILE_CORRUPT, "D length past E");
	fb_envelope_except(&b, P_NONE);
	fb_rec_lying(&b, 'D', 0xffffffffu, "hello", 5);
	fb_end(&b, 5);
	expect_file(&b, QFILE_CORRUPT, "D length 0xFFFFFFFF");
	/* A D record of more than QFILE_CHUNK_MAX. */
	char *big = make_content(QFILE_CHUNK_MAX + 1, 5);
	fb_envelope_except(&b, P_NONE);
	fb_rec(&b, 'D', big, QFILE_CHUNK_MAX + 1);
	fb_end(&b, QFILE_CHUNK_MAX + 1);
	expect_file(&b, QFILE_CORRUPT, "D of QFILE_CHUNK_MAX + 1");
	free(big);
	/* An empty D record. */
	fb_envelope_except(&b, P_NONE);
	fb_rec(&b, 'D', NULL, 0);
	fb_str(&b, 'D', "x");
	fb_end(&b, 1);
	expect_file(&b, QFILE_CORRUPT, "empty D record");
	/* Not a D record after M. */
	fb_envelope_except(&b, P_NONE);
	fb_str(&b, 'S', "x");
	fb_end(&b, 0);
	expect_file(&b, QFILE_CORRUPT, "S after M");
	/* Three octets between the last D and E (a cut record header). */
	fb_envelope_except(&b, P_NONE);
	fb_str(&b, 'D', "x");
	fb_put(&b, "D\0\0", 3);
	fb_end(&b, 1);
	expect_file(&b, QFILE_CORRUPT, "cut D header before E");
}

/*
 * BUG (qfile.c, qfile_read_envelope): "total += 5 + n" is computed in
 * 32 bits, so a record length of 0xFFFFFFFB..0xFFFFFFFF wraps to 0..4 and
 * passes the "envelope record too long" check; then xmalloc(n + 1) wraps
 * too (0xFFFFFFFF + 1 == 0 -> a 1-octet buffer) and rbuf_read copies the
 * rest of the file into it: a heap buffer overflow from a queue file.
 */
static void test_length_ffffffff_in_envelope(void **state)
{
	(void)state;
	static const uint32_t lens[] = { 0xffffffffu, 0xfffffffeu, 0xfffffffbu,
					 0xfffffffau };
	int bad = 0;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct fb b = { 0 };
		fb_str(&b, 'V', "FULMAR1");
		fb_str(&b, 'I', TEST_ID);
		fb_time(&b);
		fb_rec_lying(&b, 'S', lens[i], "s@example.org", 13);
		fb_rcpt(&b, "r@example.test");
		fb_rec(&b, 'M', NULL, 0);
		fb_str(&b, 'D', "some content that the overflow copies");
		fb_end(&b, 37);
		/* Every case is tried and reported before the test fails. */
		int got = read_isolated(&b, NULL);
		if (got != QFILE_CORRUPT) {
			print_error("S length 0x%08x: %s\n", lens[i],
				    got < 0 ? "the reader crashed" : "not CORRUPT");
			bad++;
		}
		free(b.p);
	}
	struct fb b = { 0 };
	fb_rec_lying(&b, 'V', 0xffffffffu, "FULMAR1", 7);
	fb_envelope_except(&b, P_V);
	fb_end(&b, 0);
	int got = read_isolated(&b, NULL);
	if (got != QFILE_CORRUPT) {
		print_error("V length 0xffffffff: %s\n",
			    got < 0 ? "the reader crashed" : "not CORRUPT");
		bad++;
	}
	free(b.p);
	if (bad)
		fail_msg("%d of 5 files with a record length near 0xFFFFFFFF were "
			 "not refused cleanly", bad);
}

static void test_envelope_over_header_max(void **state)
{
	(void)state;
	/* An S record longer than QFILE_HEADER_MAX, present in full (sparse
	 * zeros): refused by its length before anything is read. */
	struct fb b = { 0 };
	fb_str(&b, 'V', "FULMAR1");
	fb_str(&b, 'I', TEST_ID);
	fb_time(&b);
	fb_rec_lying(&b, 'S', QFILE_HEADER_MAX + 1, NULL, 0);
	int fd = fd_with(b.p, b.len);
	off_t end = (off_t)b.len + QFILE_HEADER_MAX + 1;
	assert_int_equal(ftruncate(fd, end), 0);
	unsigned char e[QFILE_END_SIZE] = { 'E', 0, 0, 0, 12 };
	assert_int_equal(pwrite(fd, e, sizeof(e), end), (ssize_t)sizeof(e));
	struct envelope env;
	off_t off;
	char err[128] = "";
	envelope_init(&env);
	assert_int_equal(qfile_read_envelope(fd, &env, &off, err, sizeof(err)),
			 QFILE_CORRUPT);
	assert_true(err[0] != '\0');
	envelope_free(&env);
	close(fd);
	free(b.p);
}

static void test_end_record_damage(void **state)
{
	(void)state;
	struct fb b = { 0 };
	/* Content length in E off by one either way. */
	for (int d = -1; d <= 1; d += 2) {
		fb_envelope_except(&b, P_NONE);
		fb_str(&b, 'D', "hello");
		fb_end(&b, (uint64_t)(5 + d));
		expect_file(&b, QFILE_CORRUPT, "E content length wrong");
	}
	/* E length field not 12. */
	fb_valid(&b, "hello");
	b.p[b.len - QFILE_END_SIZE + 4] = 13;
	expect_file(&b, QFILE_CORRUPT, "E length 13");
	/* CRC off by one bit. */
	fb_valid(&b, "hello");
	b.p[b.len - 1] ^= 1;
	expect_file(&b, QFILE_CORRUPT, "E CRC wrong");
}

static void test_content_consumer_stops(void **state)
{
	(void)state;
	struct envelope env;
	struct written wr;
	full_envelope(&env);
	size_t len = 3 * QFILE_CHUNK_MAX + 10;
	char *content = make_content(len, 9);
	int fd = tmp_fd();
	write_qfile(fd, &env, content, len, 0, &wr);
	struct envelope got;
	off_t off;
	envelope_init(&got);
	assert_int_equal(qfile_read_envelope(fd, &got, &off, NULL, 0), QFILE_OK);
	struct sink s = { 0 };
	s.fail_at = 2;
	char err[128] = "";
	enum qfile_status st = qfile_read_content(fd, off, collect, &s, err, sizeof(err));
	assert_int_not_equal(st, QFILE_OK); /* the consumer's failure is reported */
	assert_int_equal(s.calls_after_fail, 0); /* and it is not called again */
	assert_true(err[0] != '\0');
	free(s.p);
	envelope_free(&got);
	free(wr.file);
	free(content);
	close(fd);
	envelope_free(&env);
}

static void test_write_errors(void **state)
{
	(void)state;
	struct envelope env;
	full_envelope(&env);
	struct qfile_writer *w = malloc(sizeof(*w));
	assert_non_null(w);

	/* A read-only descriptor: EBADF, kept as the first error. */
	char path[] = "/tmp/fulmar-test-qfile-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int ro = open(path, O_RDONLY);
	assert_true(ro >= 0);
	unlink(path);
	qfile_writer_init(w, ro);
	qfile_write_envelope(w, &env);
	char *big = make_content(300000, 1);
	qfile_write_content(w, big, 300000);
	assert_int_equal(qfile_write_end(w), -1);
	assert_int_equal(w->error, EBADF);
	close(ro);
	close(fd);

	/* /dev/full: ENOSPC. */
	int full = open("/dev/full", O_WRONLY);
	if (full >= 0) {
		qfile_writer_init(w, full);
		qfile_write_envelope(w, &env);
		qfile_write_content(w, "x", 1);
		assert_int_equal(qfile_write_end(w), -1);
		assert_int_equal(w->error, ENOSPC);
		close(full);
	}
	free(big);
	free(w);
	envelope_free(&env);
}

static void test_writer_reinit(void **state)
{
	(void)state;
	/* One writer struct reused for a second file after an error. */
	struct envelope env;
	full_envelope(&env);
	struct qfile_writer *w = malloc(sizeof(*w));
	assert_non_null(w);
	int full = open("/dev/full", O_WRONLY);
	if (full >= 0) {
		qfile_writer_init(w, full);
		qfile_write_envelope(w, &env);
		qfile_write_content(w, "abc", 3);
		assert_int_equal(qfile_write_end(w), -1);
		close(full);
	}
	int fd = tmp_fd();
	qfile_writer_init(w, fd);
	qfile_write_envelope(w, &env);
	uint64_t off = w->file_len;
	qfile_write_content(w, "hello", 5);
	assert_int_equal(qfile_write_end(w), 0);
	read_back(fd, &env, "hello", 5, off);
	close(fd);
	free(w);
	envelope_free(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_full_envelope),
		cmocka_unit_test(test_roundtrip_minimal_envelope),
		cmocka_unit_test(test_null_sender_pointer),
		cmocka_unit_test(test_many_recipients),
		cmocka_unit_test(test_content_size_0),
		cmocka_unit_test(test_content_size_1),
		cmocka_unit_test(test_content_size_65535),
		cmocka_unit_test(test_content_size_65536),
		cmocka_unit_test(test_content_size_65537),
		cmocka_unit_test(test_content_size_300000),
		cmocka_unit_test(test_content_sizes_around_buffer),
		cmocka_unit_test(test_prefix_record),
		cmocka_unit_test(test_writer_content_matches_read_back),
		cmocka_unit_test(test_prefix_mimicked_by_content),
		cmocka_unit_test(test_truncate_small),
		cmocka_unit_test(test_truncate_empty_content),
		cmocka_unit_test(test_truncate_multi_record),
		cmocka_unit_test(test_flip_every_byte_small),
		cmocka_unit_test(test_flip_bytes_big),
		cmocka_unit_test(test_handmade_valid),
		cmocka_unit_test(test_unknown_field_tags_skipped),
		cmocka_unit_test(test_short_files),
		cmocka_unit_test(test_garbage_after_end),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_id),
		cmocka_unit_test(test_missing_records),
		cmocka_unit_test(test_unknown_record_type),
		cmocka_unit_test(test_nul_in_strings),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_lengths_past_eof),
		cmocka_unit_test(test_length_ffffffff_in_envelope),
		cmocka_unit_test(test_envelope_over_header_max),
		cmocka_unit_test(test_end_record_damage),
		cmocka_unit_test(test_content_consumer_stops),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_writer_reinit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
