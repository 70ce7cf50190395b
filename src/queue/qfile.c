/*
 * qfile: queue file records (qfile.h). Writer used by the SMTP session on
 * the loop thread; reader used by the queue scan, the delivery workers and
 * the CLI.
 */
#include "queue/qfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/fsio.h"
#include "lib/mem.h"
#include "lib/xalloc.h"

#define QFILE_VERSION "FULMAR1"

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put_u64(unsigned char *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* ---- writer ---- */

void qfile_writer_init(struct qfile_writer *w, int fd)
{
	w->fd = fd;
	w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
	w->content_len = 0;
	w->file_len = 0;
	w->error = 0;
	w->buflen = 0;
	w->open_d = -1;
	w->whole = false;
}

/* Close the open D record: its length is what follows its header. */
static void close_d(struct qfile_writer *w)
{
	if (w->open_d < 0)
		return;
	size_t n = w->buflen - (size_t)w->open_d - 5;
	if (n == 0)
		w->buflen = (size_t)w->open_d; /* empty: drop the header */
	else
		put_u32(w->buf + w->open_d + 1, (uint32_t)n);
	w->open_d = -1;
}

static void flush(struct qfile_writer *w)
{
	close_d(w);
	if (w->buflen == 0 || w->error) {
		w->buflen = 0;
		return;
	}
	if (fsio_write_all(w->fd, w->buf, w->buflen) < 0)
		w->error = errno ? errno : EIO;
	else
		w->crc = (uint32_t)crc32(w->crc, w->buf, (uInt)w->buflen);
	w->buflen = 0;
}

static void append(struct qfile_writer *w, const void *p, size_t n)
{
	const unsigned char *c = p;
	while (n > 0 && !w->error) {
		if (w->buflen == sizeof(w->buf))
			flush(w);
		size_t room = sizeof(w->buf) - w->buflen;
		size_t k = n < room ? n : room;
		memcpy(w->buf + w->buflen, c, k);
		w->buflen += k;
		w->file_len += k;
		c += k;
		n -= k;
	}
}

static void write_record(struct qfile_writer *w, char type, const void *p, size_t n)
{
	unsigned char head[5];
	close_d(w);
	head[0] = (unsigned char)type;
	put_u32(head + 1, (uint32_t)n);
	append(w, head, sizeof(head));
	if (n)
		append(w, p, n);
}

/* Builds a record made of fields in a growable buffer. Its memory is
 * fallible (lib/mem.h): the writer of a session's envelope fails with
 * ENOMEM instead of aborting. */
struct fields {
	unsigned char *p;
	size_t len, cap;
	bool failed; /* out of memory: the record is incomplete */
};

static void field_put(struct fields *f, char tag, const void *v, size_t n)
{
	if (n > 0xffff)
		n = 0xffff; /* every field value is bounded far below this */
	if (f->failed)
		return;
	if (f->len + 3 + n > f->cap) {
		size_t cap = (f->len + 3 + n) * 2;
		unsigned char *p = mem_realloc(f->p, cap);
		if (p == NULL) {
			f->failed = true;
			return;
		}
		f->p = p;
		f->cap = cap;
	}
	f->p[f->len] = (unsigned char)tag;
	f->p[f->len + 1] = (unsigned char)(n >> 8);
	f->p[f->len + 2] = (unsigned char)n;
	memcpy(f->p + f->len + 3, v, n);
	f->len += 3 + n;
}

static void field_str(struct fields *f, char tag, const char *s)
{
	if (s)
		field_put(f, tag, s, strlen(s));
}

static void field_u8(struct fields *f, char tag, unsigned v)
{
	unsigned char c = (unsigned char)v;
	field_put(f, tag, &c, 1);
}

void qfile_write_envelope(struct qfile_writer *w, const struct envelope *env)
{
	unsigned char t[8];
	struct fields f = { 0 };

	write_record(w, 'V', QFILE_VERSION, strlen(QFILE_VERSION));
	write_record(w, 'I', env->id, strlen(env->id));
	put_u64(t, (uint64_t)env->arrival_us);
	write_record(w, 'T', t, 8);

	field_str(&f, 'h', env->helo);
	field_str(&f, 'a', env->client_addr);
	field_str(&f, 'p', env->proto);
	write_record(w, 'C', f.p, f.len);

	write_record(w, 'S', env->sender ? env->sender : "",
		     env->sender ? strlen(env->sender) : 0);

	f.len = 0;
	field_u8(&f, 'u', env->smtputf8);
	field_u8(&f, 'b', (unsigned)env->body);
	field_u8(&f, 'r', (unsigned)env->ret);
	field_str(&f, 'e', env->envid);
	field_str(&f, 'x', env->auth);
	write_record(w, 'P', f.p, f.len);

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];
		f.len = 0;
		field_str(&f, 'a', r->addr);
		field_str(&f, 'o', r->orig);
		field_str(&f, 'c', r->orcpt);
		field_u8(&f, 'n', r->notify);
		write_record(w, 'R', f.p, f.len);
	}
	free(f.p);
	if (f.failed && w->error == 0)
		w->error = ENOMEM; /* records are missing: the file is no good */
	write_record(w, 'M', NULL, 0);
}

void qfile_write_content(struct qfile_writer *w, const char *data, size_t len)
{
	w->content_len += len;
	while (len > 0 && !w->error) {
		if (w->open_d >= 0 &&
		    w->buflen - (size_t)w->open_d - 5 == QFILE_CHUNK_MAX)
			close_d(w);
		if (w->open_d < 0) {
			if (sizeof(w->buf) - w->buflen < 5 + 1)
				flush(w);
			w->open_d = (long)w->buflen;
			memset(w->buf + w->buflen, 0, 5);
			w->buf[w->buflen] = 'D';
			w->buflen += 5;
			w->file_len += 5;
		}
		size_t room_d = QFILE_CHUNK_MAX - (w->buflen - (size_t)w->open_d - 5);
		size_t room_b = sizeof(w->buf) - w->buflen;
		size_t k = len < room_d ? len : room_d;
		k = k < room_b ? k : room_b;
		memcpy(w->buf + w->buflen, data, k);
		w->buflen += k;
		w->file_len += k;
		data += k;
		len -= k;
		if (w->buflen == sizeof(w->buf))
			flush(w);
	}
}

void qfile_write_prefix(struct qfile_writer *w, const char *data, size_t len)
{
	if (len == 0 || len > QFILE_CHUNK_MAX)
		return;
	write_record(w, 'F', data, len);
}

int qfile_write_end(struct qfile_writer *w)
{
	close_d(w);
	if (sizeof(w->buf) - w->buflen < QFILE_END_SIZE)
		flush(w);
	/* The CRC covers everything before the E record. */
	uint32_t crc = (uint32_t)crc32(w->crc, w->buf, (uInt)w->buflen);
	unsigned char *rec = w->buf + w->buflen;
	rec[0] = 'E';
	put_u32(rec + 1, 12);
	put_u64(rec + 5, w->content_len);
	put_u32(rec + 13, crc);
	w->buflen += QFILE_END_SIZE;
	w->file_len += QFILE_END_SIZE;
	w->whole = w->file_len == w->buflen;
	if (!w->error && fsio_write_all(w->fd, w->buf, w->buflen) < 0)
		w->error = errno ? errno : EIO;
	w->buflen = 0;
	return w->error ? -1 : 0;
}

int qfile_writer_content(const struct qfile_writer *w, size_t content_off,
			 char **out, size_t *outlen)
{
	if (!w->whole || w->error || w->file_len < QFILE_END_SIZE ||
	    content_off > w->file_len - QFILE_END_SIZE)
		return -1;
	/* Our own records, just written: D records, then at most one F. */
	const unsigned char *p = w->buf + content_off;
	const unsigned char *end = w->buf + w->file_len - QFILE_END_SIZE;
	const unsigned char *prefix = NULL;
	size_t prefix_len = 0, total = 0;
	for (const unsigned char *r = p; r < end; r += 5 + get_u32(r + 1)) {
		if (r[0] == 'F') {
			prefix = r + 5;
			prefix_len = get_u32(r + 1);
		}
		total += get_u32(r + 1);
	}
	char *buf = mem_alloc(total ? total : 1);
	if (buf == NULL)
		return -1;
	size_t n = 0;
	if (prefix) {
		memcpy(buf, prefix, prefix_len);
		n = prefix_len;
	}
	for (const unsigned char *r = p; r < end; r += 5 + get_u32(r + 1)) {
		if (r[0] == 'D') {
			memcpy(buf + n, r + 5, get_u32(r + 1));
			n += get_u32(r + 1);
		}
	}
	*out = buf;
	*outlen = n;
	return 0;
}

/* ---- reader ---- */

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		strlcpy_safe(err, msg, errlen);
}

/* Iterate the fields of a record payload. */
struct field_iter {
	const unsigned char *p;
	size_t left;
};

static int field_next(struct field_iter *it, char *tag, const unsigned char **v,
		      size_t *n)
{
	if (it->left == 0)
		return 0;
	if (it->left < 3)
		return -1;
	size_t len = (size_t)it->p[1] << 8 | it->p[2];
	if (len > it->left - 3)
		return -1;
	*tag = (char)it->p[0];
	*v = it->p + 3;
	*n = len;
	it->p += 3 + len;
	it->left -= 3 + len;
	return 1;
}

/* A string field: no NUL inside, copied. */
static int field_string(char **dst, const unsigned char *v, size_t n)
{
	if (memchr(v, '\0', n))
		return -1;
	free(*dst);
	*dst = xstrndup((const char *)v, n);
	return 0;
}

static int parse_client(struct envelope *env, const unsigned char *p, size_t n)
{
	struct field_iter it = { p, n };
	char tag;
	const unsigned char *v;
	size_t len;
	int rc;
	while ((rc = field_next(&it, &tag, &v, &len)) > 0) {
		char **dst = tag == 'h' ? &env->helo : tag == 'a' ? &env->client_addr
				     : tag == 'p' ? &env->proto : NULL;
		if (dst && field_string(dst, v, len) < 0)
			return -1;
	}
	return rc;
}

static int parse_params(struct envelope *env, const unsigned char *p, size_t n)
{
	struct field_iter it = { p, n };
	char tag;
	const unsigned char *v;
	size_t len;
	int rc;
	while ((rc = field_next(&it, &tag, &v, &len)) > 0) {
		if ((tag == 'u' || tag == 'b' || tag == 'r') && len != 1)
			return -1;
		if (tag == 'u')
			env->smtputf8 = v[0] != 0;
		else if (tag == 'b')
			env->body = v[0];
		else if (tag == 'r')
			env->ret = v[0];
		else if (tag == 'e' && field_string(&env->envid, v, len) < 0)
			return -1;
		else if (tag == 'x' && field_string(&env->auth, v, len) < 0)
			return -1;
	}
	return rc;
}

static int parse_rcpt(struct envelope *env, const unsigned char *p, size_t n)
{
	struct field_iter it = { p, n };
	char tag;
	const unsigned char *v;
	size_t len;
	int rc;
	char *addr = NULL, *orig = NULL, *orcpt = NULL;
	unsigned notify = 0;
	while ((rc = field_next(&it, &tag, &v, &len)) > 0) {
		if (tag == 'a')
			rc = field_string(&addr, v, len);
		else if (tag == 'o')
			rc = field_string(&orig, v, len);
		else if (tag == 'c')
			rc = field_string(&orcpt, v, len);
		else if (tag == 'n') {
			if (len != 1)
				rc = -1;
			else
				notify = v[0];
		}
		if (rc < 0)
			break;
	}
	if (rc == 0 && addr && addr[0])
		envelope_xadd_rcpt(env, addr, orig, orcpt, notify);
	else
		rc = -1;
	free(addr);
	free(orig);
	free(orcpt);
	return rc;
}

/* Buffered sequential reader over a file descriptor. */
struct rbuf {
	int fd;
	off_t off;       /* file offset of buf[pos] */
	unsigned char buf[65536 + 64];
	size_t pos, len;
};

static enum qfile_status rbuf_read(struct rbuf *b, void *dst, size_t n)
{
	unsigned char *d = dst;
	while (n > 0) {
		if (b->pos == b->len) {
			ssize_t r = fsio_pread_all(b->fd, b->buf, sizeof(b->buf), b->off);
			if (r < 0)
				return QFILE_IO;
			if (r == 0)
				return QFILE_CORRUPT;
			b->pos = 0;
			b->len = (size_t)r;
		}
		size_t c = b->len - b->pos < n ? b->len - b->pos : n;
		memcpy(d, b->buf + b->pos, c);
		b->pos += c;
		b->off += (off_t)c;
		d += c;
		n -= c;
	}
	return QFILE_OK;
}

static enum qfile_status check_tail(int fd, off_t *size, uint64_t *content_len,
				    uint32_t *crc, char *err, size_t errlen)
{
	off_t end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return QFILE_IO;
	unsigned char rec[QFILE_END_SIZE];
	if (end < (off_t)QFILE_END_SIZE) {
		set_err(err, errlen, "file too short");
		return QFILE_CORRUPT;
	}
	ssize_t r = fsio_pread_all(fd, rec, sizeof(rec), end - QFILE_END_SIZE);
	if (r < 0)
		return QFILE_IO;
	if (r != QFILE_END_SIZE || rec[0] != 'E' || get_u32(rec + 1) != 12) {
		set_err(err, errlen, "no end record (truncated file)");
		return QFILE_CORRUPT;
	}
	*size = end;
	*content_len = get_u64(rec + 5);
	*crc = get_u32(rec + 13);
	return QFILE_OK;
}

enum qfile_status qfile_read_envelope(int fd, struct envelope *env,
				      off_t *content_off, char *err, size_t errlen)
{
	off_t size;
	uint64_t clen;
	uint32_t crc;
	enum qfile_status st = check_tail(fd, &size, &clen, &crc, err, errlen);
	if (st != QFILE_OK)
		return st;
	env->content_size = clen;

	static _Thread_local struct rbuf rb;
	struct rbuf *b = &rb;
	b->fd = fd;
	b->off = 0;
	b->pos = b->len = 0;
	unsigned char *payload = NULL;
	uint64_t total = 0;
	int index = 0;
	bool have_id = false, have_time = false, have_sender = false;
	st = QFILE_CORRUPT;
	for (;; index++) {
		unsigned char head[5];
		enum qfile_status rs = rbuf_read(b, head, 5);
		if (rs != QFILE_OK) {
			st = rs;
			set_err(err, errlen, "truncated envelope");
			break;
		}
		char type = (char)head[0];
		uint32_t n = get_u32(head + 1);
		total += 5 + (uint64_t)n; /* 64-bit: a length of 0xFFFFFFFF cannot wrap */
		if (n > QFILE_HEADER_MAX || total > QFILE_HEADER_MAX ||
		    (off_t)total > size - QFILE_END_SIZE) {
			set_err(err, errlen, "envelope record too long");
			break;
		}
		free(payload);
		payload = xmalloc(n + 1);
		if ((rs = rbuf_read(b, payload, n)) != QFILE_OK) {
			st = rs;
			set_err(err, errlen, "truncated envelope record");
			break;
		}
		int rc = 0;
		if (index == 0) {
			if (type != 'V' || n != strlen(QFILE_VERSION) ||
			    memcmp(payload, QFILE_VERSION, n) != 0) {
				set_err(err, errlen, "unknown queue file version");
				break;
			}
			continue;
		}
		switch (type) {
		case 'I':
			if (n != QUEUE_ID_LEN || memchr(payload, '\0', n))
				rc = -1;
			else {
				memcpy(env->id, payload, n);
				env->id[n] = '\0';
				have_id = true;
			}
			break;
		case 'T':
			if (n != 8)
				rc = -1;
			else {
				env->arrival_us = (int64_t)get_u64(payload);
				have_time = true;
			}
			break;
		case 'C':
			rc = parse_client(env, payload, n);
			break;
		case 'S':
			rc = field_string(&env->sender, payload, n);
			have_sender = rc == 0;
			break;
		case 'P':
			rc = parse_params(env, payload, n);
			break;
		case 'R':
			rc = parse_rcpt(env, payload, n);
			break;
		case 'M':
			if (n != 0 || !have_id || !have_time || !have_sender ||
			    env->nrcpts == 0) {
				set_err(err, errlen, "incomplete envelope");
				goto out;
			}
			*content_off = b->off;
			st = QFILE_OK;
			goto out;
		default:
			rc = -1;
			break;
		}
		if (rc < 0) {
			char msg[64];
			snprintf(msg, sizeof(msg), "malformed record '%c'",
				 type >= 0x21 && type < 0x7f ? type : '?');
			set_err(err, errlen, msg);
			break;
		}
	}
out:
	free(payload);
	return st;
}

static int pread_full(int fd, void *buf, size_t n, off_t off)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Offset of the F record (the last record before E), -1 when there is
 * none, -2 when the records do not add up (the full read says why). */
static off_t find_prefix(int fd, off_t off, off_t data_end)
{
	while (off < data_end) {
		unsigned char head[5];
		if (data_end - off < 5 || pread_full(fd, head, 5, off) < 0)
			return -2;
		uint32_t n = get_u32(head + 1);
		if (n == 0 || n > QFILE_CHUNK_MAX || (off_t)n > data_end - off - 5)
			return -2;
		if (head[0] == 'F')
			return off + 5 + (off_t)n == data_end ? off : -2;
		if (head[0] != 'D')
			return -2;
		off += 5 + (off_t)n;
	}
	return -1;
}

enum qfile_status qfile_read_content(int fd, off_t content_off,
				     qfile_content_fn fn, void *arg,
				     char *err, size_t errlen)
{
	off_t size;
	uint64_t clen;
	uint32_t want_crc;
	enum qfile_status st = check_tail(fd, &size, &clen, &want_crc, err, errlen);
	if (st != QFILE_OK)
		return st;
	static _Thread_local struct rbuf rb;
	struct rbuf *b = &rb;
	b->fd = fd;
	b->off = 0;
	b->pos = b->len = 0;
	uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
	off_t data_end = size - QFILE_END_SIZE;
	uint64_t seen = 0;
	bool stopped = false;
	st = QFILE_OK;

	/* The envelope part: only checksummed. */
	while (b->off < content_off && st == QFILE_OK) {
		unsigned char tmp[4096];
		size_t n = (size_t)(content_off - b->off) < sizeof(tmp)
				   ? (size_t)(content_off - b->off) : sizeof(tmp);
		st = rbuf_read(b, tmp, n);
		if (st == QFILE_OK)
			crc = (uint32_t)crc32(crc, tmp, (uInt)n);
	}
	static _Thread_local unsigned char chunk[QFILE_CHUNK_MAX];
	/* An F record (octets that go in front of the content) can only be
	 * the last record before E: find it by walking the record headers,
	 * never by looking back from the end (the content is the client's,
	 * and could mimic a record there). */
	off_t prefix_at = find_prefix(fd, content_off, data_end);
	if (prefix_at == -2) {
		set_err(err, errlen, "malformed content record");
		return QFILE_CORRUPT;
	}
	if (prefix_at >= 0) {
		unsigned char head[5];
		if (pread_full(fd, head, 5, prefix_at) < 0 ||
		    pread_full(fd, chunk, get_u32(head + 1), prefix_at + 5) < 0) {
			set_err(err, errlen, "cannot read the prefix record");
			return QFILE_IO;
		}
		if (fn(arg, (const char *)chunk, get_u32(head + 1)) < 0)
			stopped = true;
	}
	while (st == QFILE_OK && b->off < data_end) {
		unsigned char head[5];
		if (data_end - b->off < 5 || (st = rbuf_read(b, head, 5)) != QFILE_OK) {
			st = st == QFILE_OK ? QFILE_CORRUPT : st;
			set_err(err, errlen, "truncated content record");
			break;
		}
		uint32_t n = get_u32(head + 1);
		bool prefix = head[0] == 'F' && b->off - 5 == prefix_at;
		if ((head[0] != 'D' && !prefix) || n == 0 || n > QFILE_CHUNK_MAX ||
		    (off_t)n > data_end - b->off) {
			st = QFILE_CORRUPT;
			set_err(err, errlen, "malformed content record");
			break;
		}
		if ((st = rbuf_read(b, chunk, n)) != QFILE_OK)
			break;
		crc = (uint32_t)crc32(crc, head, 5);
		crc = (uint32_t)crc32(crc, chunk, n);
		if (prefix)
			continue; /* delivered first, above */
		seen += n;
		if (!stopped && fn(arg, (const char *)chunk, n) < 0)
			stopped = true;
	}
	if (st == QFILE_OK && (crc != want_crc || seen != clen)) {
		st = QFILE_CORRUPT;
		set_err(err, errlen, crc != want_crc ? "checksum mismatch"
						     : "content length mismatch");
	}
	if (st == QFILE_OK && stopped) {
		st = QFILE_IO;
		set_err(err, errlen, "content consumer failed");
	}
	return st;
}
