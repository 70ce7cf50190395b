/*
 * Unit tests for maildir: real queue files (written with the qfile
 * writer) delivered into temporary Maildirs. Checks the stored copy
 * (Return-Path:, Delivered-To:, then the content with CR LF turned into
 * LF and lone CRs kept, also across content record boundaries), the name
 * in new/ and an empty tmp/, exactly-once delivery (a second delivery
 * under the same name finds the copy in new/, or in cur/ with
 * search_cur), a corrupt queue file (nothing published), per-target
 * failures, and the directory sync (in maildir_deliver or afterwards
 * with maildir_sync_new).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delivery/maildir.h"
#include "queue/envelope.h"
#include "queue/qfile.h"

static char root[PATH_MAX];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary root for each test. */
static int setup(void **state)
{
	(void)state;
	char t[] = "/tmp/fulmar-test-maildir-XXXXXX";
	if (mkdtemp(t) == NULL)
		return -1;
	snprintf(root, sizeof(root), "%s", t);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(root);
	return 0;
}

static void pathf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void pathf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < len);
}

/* A queue file in root holding this content; returns its fd (the file
 * itself is unlinked) and the content offset. */
static int make_qfile(const char *sender, const char *content, size_t len,
		      off_t *content_off)
{
	char p[PATH_MAX + 32];
	pathf(p, sizeof(p), "%s/qf-XXXXXX", root);
	int fd = mkstemp(p);
	assert_true(fd >= 0);
	unlink(p);
	struct envelope env;
	envelope_init(&env);
	memcpy(env.id, "0123456789ABCDEF", QUEUE_ID_LEN + 1);
	env.arrival_us = 1;
	assert_int_equal(envelope_set(&env.sender, sender), 0);
	assert_int_equal(envelope_add_rcpt(&env, "alice@example.test", NULL, NULL, 0), 0);
	struct qfile_writer *w = malloc(sizeof(*w));
	assert_non_null(w);
	qfile_writer_init(w, fd);
	qfile_write_envelope(w, &env);
	*content_off = (off_t)w->file_len;
	qfile_write_content(w, content, len);
	assert_int_equal(qfile_write_end(w), 0);
	free(w);
	envelope_free(&env);

	/* It reads back as a valid queue file. */
	struct envelope back;
	off_t off;
	envelope_init(&back);
	assert_int_equal(qfile_read_envelope(fd, &back, &off, NULL, 0), QFILE_OK);
	assert_int_equal(off, *content_off);
	envelope_free(&back);
	return fd;
}

static char *read_whole(const char *p, size_t *len)
{
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		fail_msg("cannot open %s: %s", p, strerror(errno));
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	char *buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	size_t off = 0;
	while (off < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + off, (size_t)sb.st_size - off);
		assert_true(r > 0);
		off += (size_t)r;
	}
	buf[off] = '\0';
	close(fd);
	*len = off;
	return buf;
}

/* Number of entries in dir (without . and ..); the only one's name in
 * `only` when there is exactly one. */
static int count_entries(const char *dir, char *only, size_t onlylen)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (only)
			snprintf(only, onlylen, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* The reference conversion: CR LF -> LF, every other octet as is. */
static char *to_lf(const char *in, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1);
	assert_non_null(out);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		out[o++] = in[i];
	}
	*outlen = o;
	return out;
}

/* The stored copy must be the two headers then the converted content. */
static void expect_copy(const char *maildir, const char *name, const char *return_path,
			const char *delivered_to, const char *content, size_t len)
{
	char p[PATH_MAX + 64], head[1024];
	pathf(p, sizeof(p), "%s/new/%s", maildir, name);
	size_t got_len, want_len;
	char *got = read_whole(p, &got_len);
	char *body = to_lf(content, len, &want_len);
	int hn = snprintf(head, sizeof(head), "Return-Path: <%s>\nDelivered-To: %s\n",
			  return_path, delivered_to);
	assert_true(hn > 0);
	assert_true(got_len >= (size_t)hn);
	if (memcmp(got, head, (size_t)hn) != 0)
		fail_msg("%s: headers differ: %.*s", p, hn, got);
	assert_int_equal(got_len - (size_t)hn, want_len);
	if (want_len && memcmp(got + hn, body, want_len) != 0) {
		size_t i = 0;
		while (got[hn + i] == body[i])
			i++;
		fail_msg("%s: content differs at octet %zu", p, i);
	}
	free(got);
	free(body);
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 077, 0); /* private to the owner */
	assert_int_equal(sb.st_nlink, 1);      /* the tmp/ link is gone */
}

/* Maildir layout after a delivery: new/ holds exactly `nnew` entries
 * (NAME among them when nnew == 1), tmp/ is empty. */
static void expect_layout(const char *maildir, int nnew, const char *name)
{
	char p[PATH_MAX + 64], only[NAME_MAX + 1] = "";
	pathf(p, sizeof(p), "%s/tmp", maildir);
	assert_int_equal(count_entries(p, NULL, 0), 0);
	pathf(p, sizeof(p), "%s/new", maildir);
	assert_int_equal(count_entries(p, only, sizeof(only)), nnew);
	if (nnew == 1 && name)
		assert_string_equal(only, name);
	pathf(p, sizeof(p), "%s/cur", maildir);
	assert_true(count_entries(p, NULL, 0) >= 0); /* exists */
}

static void init_target(struct maildir_target *t, const char *maildir,
			const char *delivered_to, const char *name)
{
	memset(t, 0, sizeof(*t));
	t->maildir = maildir;
	t->delivered_to = delivered_to;
	t->name = name;
	t->err = -12345; /* must be overwritten */
	t->duplicate = true;
}

static const char sample[] =
	"Subject: test\r\n"
	"From: <sender@example.org>\r\n"
	"\r\n"
	"line one\r\n"
	"a lone CR\rin the middle\r\n"
	"two CRs\r\r\n"
	"a lone LF\nhere\r\n"
	"\r\n"
	"last line without end";

static void test_deliver_one(void **state)
{
	(void)state;
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/alice/Maildir", root); /* does not exist yet */
	off_t off;
	int qfd = make_qfile("sender@example.org", sample, sizeof(sample) - 1, &off);
	struct maildir_target t;
	init_target(&t, md, "alice@example.test", "1700000000.Q0123456789ABCDEF_0.mx");
	char err[256] = "";
	assert_int_equal(maildir_deliver(qfd, off, "sender@example.org", &t, 1, false,
					 true, err, sizeof(err)),
			 0);
	assert_int_equal(t.err, 0);
	assert_false(t.duplicate);
	expect_layout(md, 1, t.name);
	expect_copy(md, t.name, "sender@example.org", "alice@example.test", sample,
		    sizeof(sample) - 1);
	/* The literal expectation for the tricky octets. */
	char p[PATH_MAX + 64];
	size_t len;
	pathf(p, sizeof(p), "%s/new/%s", md, t.name);
	char *got = read_whole(p, &len);
	assert_non_null(strstr(got, "a lone CR\rin the middle\ntwo CRs\r\na lone LF\nhere\n"
				    "\nlast line without end"));
	/* The only CR LF left is the lone CR of "\r\r\n" before its LF. */
	const char *crlf = strstr(got, "\r\n");
	assert_non_null(crlf);
	assert_null(strstr(crlf + 1, "\r\n"));
	assert_int_equal(crlf[-1], 's');
	free(got);
	/* The directories were made private. */
	struct stat sb;
	assert_int_equal(stat(md, &sb), 0);
	assert_int_equal(sb.st_mode & 077, 0);
	close(qfd);
}

static void test_deliver_two(void **state)
{
	(void)state;
	char md1[PATH_MAX + 32], md2[PATH_MAX + 32];
	pathf(md1, sizeof(md1), "%s/alice", root);
	pathf(md2, sizeof(md2), "%s/deep/path/bob", root);
	assert_int_equal(maildir_create(md1), 0); /* one exists, one not */
	off_t off;
	int qfd = make_qfile("", sample, sizeof(sample) - 1, &off);
	struct maildir_target t[2];
	init_target(&t[0], md1, "alice@example.test", "Q1_0");
	init_target(&t[1], md2, "bob@example.test", "Q1_1");
	char err[256] = "";
	assert_int_equal(maildir_deliver(qfd, off, "", t, 2, true, true, err, sizeof(err)), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(t[i].err, 0);
		assert_false(t[i].duplicate);
	}
	expect_layout(md1, 1, "Q1_0");
	expect_layout(md2, 1, "Q1_1");
	/* The null sender is "<>"; each copy has its own Delivered-To. */
	expect_copy(md1, "Q1_0", "", "alice@example.test", sample, sizeof(sample) - 1);
	expect_copy(md2, "Q1_1", "", "bob@example.test", sample, sizeof(sample) - 1);
	close(qfd);
}

static void test_two_names_one_maildir(void **state)
{
	(void)state;
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/shared", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "hi\r\n", 4, &off);
	struct maildir_target t[2];
	init_target(&t[0], md, "a@example.test", "Q2_0");
	init_target(&t[1], md, "b@example.test", "Q2_1");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", t, 2, false, true,
					 NULL, 0),
			 0);
	assert_int_equal(t[0].err, 0);
	assert_int_equal(t[1].err, 0);
	expect_layout(md, 2, NULL);
	expect_copy(md, "Q2_0", "s@example.org", "a@example.test", "hi\r\n", 4);
	expect_copy(md, "Q2_1", "s@example.org", "b@example.test", "hi\r\n", 4);
	close(qfd);
}

static void test_empty_content(void **state)
{
	(void)state;
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/empty", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "", 0, &off);
	struct maildir_target t;
	init_target(&t, md, "a@example.test", "E");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, false, true,
					 NULL, 0),
			 0);
	assert_int_equal(t.err, 0);
	expect_copy(md, "E", "s@example.org", "a@example.test", "", 0);
	close(qfd);
}

/* Big content full of CR and LF, so that CR LF pairs and lone CRs fall
 * on every content record and buffer boundary. */
static void test_big_content_boundaries(void **state)
{
	(void)state;
	size_t len = 5 * QFILE_CHUNK_MAX + 123;
	char *content = malloc(len);
	assert_non_null(content);
	uint32_t x = 99;
	static const char alphabet[] = "a\r\n\r\nxyz";
	for (size_t i = 0; i < len; i++) {
		x = x * 1664525u + 1013904223u;
		content[i] = alphabet[(x >> 24) % (sizeof(alphabet) - 1)];
	}
	/* Pairs and lone CRs exactly at the D record boundaries the writer
	 * makes (each QFILE_CHUNK_MAX octets, and where its buffer fills). */
	for (size_t k = 1; k < 5; k++) {
		size_t b = k * QFILE_CHUNK_MAX;
		content[b - 1] = '\r';
		content[b] = k % 2 ? '\n' : 'q';
	}
	content[len - 1] = '\r'; /* a CR at the very end is kept */
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/big", root);
	off_t off;
	int qfd = make_qfile("s@example.org", content, len, &off);
	struct maildir_target t;
	init_target(&t, md, "a@example.test", "BIG");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, false, true,
					 NULL, 0),
			 0);
	assert_int_equal(t.err, 0);
	expect_copy(md, "BIG", "s@example.org", "a@example.test", content, len);

	/* The content offsets where this file's D records begin (they depend
	 * only on the sizes, so the same for any content of this length). */
	size_t bounds[64], nb = 0;
	off_t pos = off;
	struct stat sb;
	assert_int_equal(fstat(qfd, &sb), 0);
	size_t coff = 0;
	while (pos < sb.st_size - QFILE_END_SIZE) {
		unsigned char h[5];
		assert_int_equal(pread(qfd, h, 5, pos), 5);
		assert_int_equal(h[0], 'D');
		size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
		coff += n;
		if (coff < len) {
			assert_true(nb < 64);
			bounds[nb++] = coff;
		}
		pos += 5 + (off_t)n;
	}
	assert_int_equal(coff, len);
	assert_true(nb >= 5);
	/* At every boundary: CR at the end of a record and LF (or not) at the
	 * start of the next, in several alignments. */
	for (size_t shift = 0; shift < 4; shift++) {
		for (size_t i = 0; i < len; i++)
			content[i] = (char)('a' + i % 7);
		for (size_t k = 0; k < nb; k++) {
			size_t b = bounds[k];
			content[b - 1] = '\r';
			content[b] = shift == 0 ? '\n' : shift == 1 ? 'z' : '\r';
			if (shift == 3) {
				content[b + 1] = '\n';
				content[b - 2] = '\r';
			}
		}
		close(qfd);
		qfd = make_qfile("s@example.org", content, len, &off);
		char name[32];
		snprintf(name, sizeof(name), "S%zu", shift);
		init_target(&t, md, "a@example.test", name);
		assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, false,
						 false, NULL, 0),
				 0);
		assert_int_equal(t.err, 0);
		expect_copy(md, name, "s@example.org", "a@example.test", content, len);
	}
	close(qfd);
	free(content);
}

static void test_duplicate_in_new(void **state)
{
	(void)state;
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/dup", root);
	off_t off1, off2;
	int q1 = make_qfile("s@example.org", "first\r\n", 7, &off1);
	int q2 = make_qfile("s@example.org", "second\r\n", 8, &off2);
	for (int search_cur = 0; search_cur <= 1; search_cur++) {
		char name[16];
		snprintf(name, sizeof(name), "N%d", search_cur);
		struct maildir_target t;
		init_target(&t, md, "a@example.test", name);
		assert_int_equal(maildir_deliver(q1, off1, "s@example.org", &t, 1,
						 search_cur, true, NULL, 0),
				 0);
		assert_int_equal(t.err, 0);
		assert_false(t.duplicate);
		/* Again, with other content under the same name. */
		init_target(&t, md, "a@example.test", name);
		assert_int_equal(maildir_deliver(q2, off2, "s@example.org", &t, 1,
						 search_cur, true, NULL, 0),
				 0);
		assert_int_equal(t.err, 0);
		assert_true(t.duplicate);
		expect_layout(md, search_cur + 1, NULL);
		/* The first copy stays as it was. */
		expect_copy(md, name, "s@example.org", "a@example.test", "first\r\n", 7);
	}
	close(q1);
	close(q2);
}

static void test_duplicate_in_cur(void **state)
{
	(void)state;
	char md[PATH_MAX + 32], from[PATH_MAX + 64], to[PATH_MAX + 64];
	pathf(md, sizeof(md), "%s/incur", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "body\r\n", 6, &off);
	static const char *const suffixes[] = { ":2,S", ":2,", "" };
	for (size_t i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "C%zu", i);
		struct maildir_target t;
		init_target(&t, md, "a@example.test", name);
		assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, true,
						 true, NULL, 0),
				 0);
		assert_false(t.duplicate);
		/* A mail reader moves it to cur/ and marks it seen. */
		pathf(from, sizeof(from), "%s/new/%s", md, name);
		pathf(to, sizeof(to), "%s/cur/%s%s", md, name, suffixes[i]);
		assert_int_equal(rename(from, to), 0);
		/* Delivering again finds it there. */
		init_target(&t, md, "a@example.test", name);
		assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, true,
						 true, NULL, 0),
				 0);
		assert_int_equal(t.err, 0);
		assert_true(t.duplicate);
		expect_layout(md, 0, NULL);
	}
	close(qfd);
}

static void test_cur_prefix_is_not_duplicate(void **state)
{
	(void)state;
	/* cur/ entries whose names only start with NAME are other messages. */
	char md[PATH_MAX + 32], p[PATH_MAX + 64];
	pathf(md, sizeof(md), "%s/prefix", root);
	assert_int_equal(maildir_create(md), 0);
	static const char *const others[] = { "NAME2:2,S", "NAMEX", "NAME.1:2,",
					      "NAM:2,S", "xNAME:2,S" };
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		pathf(p, sizeof(p), "%s/cur/%s", md, others[i]);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	off_t off;
	int qfd = make_qfile("s@example.org", "x", 1, &off);
	struct maildir_target t;
	init_target(&t, md, "a@example.test", "NAME");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, true, true,
					 NULL, 0),
			 0);
	assert_int_equal(t.err, 0);
	assert_false(t.duplicate);
	expect_layout(md, 1, "NAME");
	close(qfd);
}

static void test_cur_without_search(void **state)
{
	(void)state;
	/* search_cur = false: cur/ is not looked at (the caller knows the
	 * message was never delivered before). */
	char md[PATH_MAX + 32], from[PATH_MAX + 64], to[PATH_MAX + 64];
	pathf(md, sizeof(md), "%s/nosearch", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "x", 1, &off);
	struct maildir_target t;
	init_target(&t, md, "a@example.test", "M");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, false, true,
					 NULL, 0),
			 0);
	pathf(from, sizeof(from), "%s/new/M", md);
	pathf(to, sizeof(to), "%s/cur/M:2,S", md);
	assert_int_equal(rename(from, to), 0);
	init_target(&t, md, "a@example.test", "M");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", &t, 1, false, true,
					 NULL, 0),
			 0);
	assert_false(t.duplicate);
	expect_layout(md, 1, "M");
	close(qfd);
}

static void test_corrupt_queue_file(void **state)
{
	(void)state;
	char md1[PATH_MAX + 32], md2[PATH_MAX + 32];
	pathf(md1, sizeof(md1), "%s/c1", root);
	pathf(md2, sizeof(md2), "%s/c2", root);
	size_t len = 3 * QFILE_CHUNK_MAX;
	char *content = malloc(len);
	assert_non_null(content);
	for (size_t i = 0; i < len; i++)
		content[i] = (char)('a' + i % 26);
	off_t off;
	int qfd = make_qfile("s@example.org", content, len, &off);
	struct stat sb;
	assert_int_equal(fstat(qfd, &sb), 0);

	/* One octet changed late in the content: found only by the CRC, after
	 * much of the content was already copied to tmp/. */
	off_t where = sb.st_size - QFILE_END_SIZE - 10;
	char c;
	assert_int_equal(pread(qfd, &c, 1, where), 1);
	c ^= 0x20;
	assert_int_equal(pwrite(qfd, &c, 1, where), 1);
	struct maildir_target t[2];
	init_target(&t[0], md1, "a@example.test", "X0");
	init_target(&t[1], md2, "b@example.test", "X1");
	char err[256] = "";
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", t, 2, false, true, err,
					 sizeof(err)),
			 -1);
	assert_true(err[0] != '\0');
	for (int i = 0; i < 2; i++) {
		assert_int_not_equal(t[i].err, 0);
		assert_false(t[i].duplicate);
	}
	expect_layout(md1, 0, NULL);
	expect_layout(md2, 0, NULL);

	/* Truncated: no E record. */
	assert_int_equal(ftruncate(qfd, sb.st_size - 1), 0);
	init_target(&t[0], md1, "a@example.test", "X0");
	err[0] = '\0';
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", t, 1, true, true, err,
					 sizeof(err)),
			 -1);
	assert_true(err[0] != '\0');
	assert_int_not_equal(t[0].err, 0);
	expect_layout(md1, 0, NULL);
	close(qfd);
	free(content);
}

static void test_corrupt_with_one_duplicate(void **state)
{
	(void)state;
	/* A target already delivered stays "duplicate, no error"; the others
	 * fail; the result is -1. */
	char md[PATH_MAX + 32];
	pathf(md, sizeof(md), "%s/cd", root);
	off_t off;
	int good = make_qfile("s@example.org", "ok\r\n", 4, &off);
	struct maildir_target t[2];
	init_target(&t[0], md, "a@example.test", "D0");
	assert_int_equal(maildir_deliver(good, off, "s@example.org", t, 1, false, true,
					 NULL, 0),
			 0);
	close(good);
	int bad = make_qfile("s@example.org", "ok\r\n", 4, &off);
	assert_int_equal(pwrite(bad, "\xff", 1, off + 5), 1); /* the 'o' */
	init_target(&t[0], md, "a@example.test", "D0");
	init_target(&t[1], md, "b@example.test", "D1");
	assert_int_equal(maildir_deliver(bad, off, "s@example.org", t, 2, true, true, NULL, 0),
			 -1);
	assert_true(t[0].duplicate);
	assert_int_equal(t[0].err, 0);
	assert_false(t[1].duplicate);
	assert_int_not_equal(t[1].err, 0);
	expect_layout(md, 1, "D0");
	expect_copy(md, "D0", "s@example.org", "a@example.test", "ok\r\n", 4);
	close(bad);
}

static void test_one_target_fails(void **state)
{
	(void)state;
	/* A Maildir that cannot be created (a file is in the way) fails on
	 * its own; the other target is delivered. */
	char bad[PATH_MAX + 32], good[PATH_MAX + 32], blocker[PATH_MAX + 32];
	pathf(blocker, sizeof(blocker), "%s/blocker", root);
	int fd = open(blocker, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	pathf(bad, sizeof(bad), "%s/blocker/Maildir", root);
	pathf(good, sizeof(good), "%s/good", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "x\r\n", 3, &off);
	struct maildir_target t[2];
	init_target(&t[0], bad, "a@example.test", "F0");
	init_target(&t[1], good, "b@example.test", "F1");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", t, 2, true, true, NULL, 0),
			 0);
	assert_int_not_equal(t[0].err, 0);
	assert_false(t[0].duplicate);
	assert_int_equal(t[1].err, 0);
	expect_layout(good, 1, "F1");
	expect_copy(good, "F1", "s@example.org", "b@example.test", "x\r\n", 3);
	close(qfd);
}

static void test_sync_later(void **state)
{
	(void)state;
	char md1[PATH_MAX + 32], md2[PATH_MAX + 32];
	pathf(md1, sizeof(md1), "%s/s1", root);
	pathf(md2, sizeof(md2), "%s/s2", root);
	off_t off;
	int qfd = make_qfile("s@example.org", "x\r\n", 3, &off);
	struct maildir_target t[3];
	init_target(&t[0], md1, "a@example.test", "L0");
	init_target(&t[1], md2, "b@example.test", "L1");
	init_target(&t[2], md1, "c@example.test", "L2");
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", t, 3, false, false,
					 NULL, 0),
			 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].err, 0);
	/* Published already (only the directory fsync is left). */
	expect_layout(md1, 2, NULL);
	expect_layout(md2, 1, "L1");
	struct maildir_target *all[3] = { &t[0], &t[1], &t[2] };
	maildir_sync_new(all, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].err, 0);
	expect_copy(md1, "L0", "s@example.org", "a@example.test", "x\r\n", 3);
	expect_copy(md2, "L1", "s@example.org", "b@example.test", "x\r\n", 3);
	expect_copy(md1, "L2", "s@example.org", "c@example.test", "x\r\n", 3);
	close(qfd);
}

static void test_sync_failure(void **state)
{
	(void)state;
	/* maildir_sync_new gives the errno to every target of a Maildir whose
	 * new/ cannot be synced, and leaves duplicates and other Maildirs. */
	char gone[PATH_MAX + 32], fine[PATH_MAX + 32];
	pathf(gone, sizeof(gone), "%s/gone", root);
	pathf(fine, sizeof(fine), "%s/fine", root);
	assert_int_equal(maildir_create(fine), 0);
	struct maildir_target t[4];
	init_target(&t[0], gone, "a@example.test", "G0");
	init_target(&t[1], fine, "b@example.test", "G1");
	init_target(&t[2], gone, "c@example.test", "G2");
	init_target(&t[3], gone, "d@example.test", "G3");
	for (int i = 0; i < 4; i++) {
		t[i].err = 0;
		t[i].duplicate = false;
	}
	t[3].duplicate = true;
	struct maildir_target *all[4] = { &t[0], &t[1], &t[2], &t[3] };
	maildir_sync_new(all, 4);
	assert_int_equal(t[0].err, ENOENT);
	assert_int_equal(t[1].err, 0);
	assert_int_equal(t[2].err, ENOENT);
	assert_int_equal(t[3].err, 0);
	maildir_sync_new(all, 0); /* nothing to do */
}

static void test_maildir_create(void **state)
{
	(void)state;
	char md[PATH_MAX + 32], p[PATH_MAX + 64];
	pathf(md, sizeof(md), "%s/a/b/c/Maildir", root);
	assert_int_equal(maildir_create(md), 0);
	assert_int_equal(maildir_create(md), 0); /* again: fine */
	static const char *const subs[] = { "", "/tmp", "/new", "/cur" };
	for (size_t i = 0; i < 4; i++) {
		struct stat sb;
		pathf(p, sizeof(p), "%s%s", md, subs[i]);
		assert_int_equal(stat(p, &sb), 0);
		assert_true(S_ISDIR(sb.st_mode));
		assert_int_equal(sb.st_mode & 077, 0);
		if (i)
			assert_int_equal(count_entries(p, NULL, 0), 0);
	}
	/* A file in the way. */
	pathf(p, sizeof(p), "%s/file", root);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	pathf(md, sizeof(md), "%s/file/Maildir", root);
	assert_int_equal(maildir_create(md), -1);
}

static void test_no_targets(void **state)
{
	(void)state;
	off_t off;
	int qfd = make_qfile("s@example.org", "x", 1, &off);
	assert_int_equal(maildir_deliver(qfd, off, "s@example.org", NULL, 0, true, true,
					 NULL, 0),
			 0);
	close(qfd);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_deliver_one),
		T(test_deliver_two),
		T(test_two_names_one_maildir),
		T(test_empty_content),
		T(test_big_content_boundaries),
		T(test_duplicate_in_new),
		T(test_duplicate_in_cur),
		T(test_cur_prefix_is_not_duplicate),
		T(test_cur_without_search),
		T(test_corrupt_queue_file),
		T(test_corrupt_with_one_duplicate),
		T(test_one_target_fails),
		T(test_sync_later),
		T(test_sync_failure),
		T(test_maildir_create),
		T(test_no_targets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
