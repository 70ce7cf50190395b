/*
 * dkim_canon: the simple and relaxed canonicalizations of RFC 6376 §3.4
 * and the header section parser (see dkim_canon.h). It owns the
 * incremental body state machine, the split of a header section into
 * fields and the §5.4.2 selection of fields by name. Pure: no I/O; the
 * only allocation is the field array of struct dkim_hdrs (fallible,
 * lib/mem.h). The signer (dkim_sign.c) and the verifier (dkim_verify.c)
 * are its callers.
 */
#include "signer/dkim_canon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* What may stand between a field name and its colon: SP, HTAB, a fold. */
static bool is_name_trail(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* ---- body ---------------------------------------------------------- */

static void body_flush(struct dkim_body_canon *c)
{
	if (c->olen == 0)
		return;
	c->out(c->arg, c->obuf, c->olen);
	c->written += c->olen;
	c->olen = 0;
}

static void body_put(struct dkim_body_canon *c, const unsigned char *p, size_t n)
{
	while (n > 0) {
		size_t room = sizeof(c->obuf) - c->olen, k;

		if (room == 0) {
			body_flush(c);
			room = sizeof(c->obuf);
		}
		k = n < room ? n : room;
		memcpy(c->obuf + c->olen, p, k);
		c->olen += k;
		p += k;
		n -= k;
	}
}

/* Content is coming on the current line: the empty lines held back were
 * not trailing after all, and a run of WSP before the content is one SP
 * (relaxed; under simple c->wsp is never set). */
static void body_content(struct dkim_body_canon *c)
{
	static const unsigned char crlf[2] = { '\r', '\n' };
	static const unsigned char sp = ' ';

	for (; c->held_crlf > 0; c->held_crlf--)
		body_put(c, crlf, 2);
	if (c->wsp) {
		body_put(c, &sp, 1);
		c->wsp = false;
	}
	c->content = true;
}

/* A CRLF: WSP at the end of the line goes; an empty line is held back. */
static void body_end_line(struct dkim_body_canon *c)
{
	static const unsigned char crlf[2] = { '\r', '\n' };

	c->wsp = false;
	if (c->content) {
		body_put(c, crlf, 2);
		c->content = false;
	} else {
		c->held_crlf++;
	}
}

void dkim_body_canon_init(struct dkim_body_canon *c, enum dkim_canon_alg alg,
			  dkim_canon_out_fn out, void *arg)
{
	memset(c, 0, offsetof(struct dkim_body_canon, obuf));
	c->alg = alg;
	c->out = out;
	c->arg = arg;
}

void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len)
{
	static const unsigned char cr = '\r';
	const unsigned char *p = data, *end = p + len;
	bool relaxed = c->alg == DKIM_CANON_RELAXED;

	if (c->finished)
		abort();
	while (p < end) {
		const unsigned char *q = p;

		if (c->cr) {
			c->cr = false;
			if (*p == '\n') {
				body_end_line(c);
				p++;
				continue;
			}
			body_content(c); /* a bare CR is content */
			body_put(c, &cr, 1);
		}
		/* A run of octets that are all content as they are. */
		while (q < end && *q != '\r' && !(relaxed && is_wsp(*q)))
			q++;
		if (q > p) {
			body_content(c);
			body_put(c, p, (size_t)(q - p));
			p = q;
		} else if (*p == '\r') {
			c->cr = true;
			p++;
		} else {
			c->wsp = true;
			p++;
		}
	}
}

void dkim_body_canon_finish(struct dkim_body_canon *c)
{
	static const unsigned char crlf[2] = { '\r', '\n' };
	static const unsigned char cr = '\r';

	if (c->finished)
		abort();
	if (c->cr) {
		body_content(c);
		body_put(c, &cr, 1);
		c->cr = false;
	}
	/* The last line as if its CRLF were there. */
	c->wsp = false;
	if (c->content) {
		body_put(c, crlf, 2);
		c->content = false;
	}
	c->held_crlf = 0;
	if (c->alg == DKIM_CANON_SIMPLE && c->written + c->olen == 0)
		body_put(c, crlf, 2);
	body_flush(c);
	c->finished = true;
}

/* ---- header section ------------------------------------------------ */

static int hdrs_fail(struct dkim_hdrs *out, char *err, size_t errlen, int code,
		     const char *why)
{
	dkim_hdrs_free(out);
	snprintf(err, errlen, "%s", why);
	errno = code;
	return -1;
}

int dkim_hdrs_parse(const char *buf, size_t len, struct dkim_hdrs *out, char *err,
		    size_t errlen)
{
	size_t cap = 0, i = 0;

	out->f = NULL;
	out->n = 0;
	if (len > DKIM_HDRS_MAX_BYTES)
		return hdrs_fail(out, err, errlen, E2BIG, "header section over 1 MiB");
	while (i < len) {
		size_t start = i, j = i;
		struct dkim_hfield *f;
		const char *colon;

		/* The field's lines: up to a CRLF not followed by SP/HTAB. */
		for (;;) {
			const char *lf = memchr(buf + j, '\n', len - j);

			if (lf == NULL) {
				j = len;
				break;
			}
			j = (size_t)(lf - buf) + 1;
			if (j - 1 == start || buf[j - 2] != '\r')
				continue; /* a bare LF is an octet of the line */
			if (j < len && is_wsp((unsigned char)buf[j]))
				continue;
			break;
		}
		if (out->n == DKIM_HDRS_MAX_FIELDS)
			return hdrs_fail(out, err, errlen, E2BIG,
					 "more than 1000 header fields");
		if (out->n == cap) {
			cap = cap == 0 ? 32 : cap * 2;
			if (cap > DKIM_HDRS_MAX_FIELDS)
				cap = DKIM_HDRS_MAX_FIELDS;
			struct dkim_hfield *f2 = mem_realloc(out->f, cap * sizeof(*out->f));
			if (f2 == NULL)
				return hdrs_fail(out, err, errlen, ENOMEM, "out of memory");
			out->f = f2;
		}
		f = &out->f[out->n++];
		f->raw = buf + start;
		f->raw_len = j - start;
		colon = memchr(f->raw, ':', f->raw_len);
		if (colon == NULL) {
			f->colon = f->raw_len;
			f->name_len = 0;
		} else {
			f->colon = (size_t)(colon - f->raw);
			f->name_len = f->colon;
			while (f->name_len > 0 && is_name_trail(f->raw[f->name_len - 1]))
				f->name_len--;
		}
		i = j;
	}
	return 0;
}

void dkim_hdrs_free(struct dkim_hdrs *h)
{
	free(h->f);
	h->f = NULL;
	h->n = 0;
}

static bool same_name(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

bool dkim_hfield_is(const struct dkim_hfield *f, const char *name, size_t len)
{
	return f->name_len > 0 && same_name(f->raw, f->name_len, name, len);
}

size_t dkim_hdrs_count(const struct dkim_hdrs *h, const char *name, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n; i++)
		if (dkim_hfield_is(&h->f[i], name, len))
			n++;
	return n;
}

void dkim_hdrs_select(const struct dkim_hdrs *h, const char *const *names, size_t nnames,
		      long *idx)
{
	for (size_t i = 0; i < nnames; i++) {
		size_t nlen = strlen(names[i]), earlier = 0;

		for (size_t k = 0; k < i; k++)
			if (same_name(names[k], strlen(names[k]), names[i], nlen))
				earlier++;
		idx[i] = -1;
		for (size_t j = h->n; j-- > 0;) {
			if (!dkim_hfield_is(&h->f[j], names[i], nlen))
				continue;
			if (earlier == 0) {
				idx[i] = (long)j;
				break;
			}
			earlier--;
		}
	}
}

/* ---- one header field ---------------------------------------------- */

/* Output gathered in a small buffer: one call of out per 512 octets. */
struct sink {
	dkim_canon_out_fn out;
	void *arg;
	size_t n;
	unsigned char buf[512];
};

static void sink_flush(struct sink *s)
{
	if (s->n > 0)
		s->out(s->arg, s->buf, s->n);
	s->n = 0;
}

static void sink_put(struct sink *s, unsigned char c)
{
	if (s->n == sizeof(s->buf))
		sink_flush(s);
	s->buf[s->n++] = c;
}

/* raw[0..len) without CRLFs, runs of SP/HTAB as one SP, none at either
 * end. */
static void relaxed_value(struct sink *s, const char *raw, size_t len)
{
	bool wsp = false, any = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)raw[i];

		if (c == '\r' && i + 1 < len && raw[i + 1] == '\n') {
			i++;
			continue;
		}
		if (is_wsp(c)) {
			wsp = true;
			continue;
		}
		if (wsp && any)
			sink_put(s, ' ');
		wsp = false;
		any = true;
		sink_put(s, c);
	}
}

void dkim_canon_header(enum dkim_canon_alg alg, const char *raw, size_t len, bool crlf,
		       dkim_canon_out_fn out, void *arg)
{
	struct sink s = { .out = out, .arg = arg };
	const char *colon;

	if (len >= 2 && raw[len - 2] == '\r' && raw[len - 1] == '\n')
		len -= 2;
	if (alg == DKIM_CANON_SIMPLE) {
		if (len > 0)
			out(arg, (const unsigned char *)raw, len);
	} else if ((colon = memchr(raw, ':', len)) == NULL) {
		relaxed_value(&s, raw, len);
	} else {
		size_t c = (size_t)(colon - raw), nlen = c;

		while (nlen > 0 && is_name_trail(raw[nlen - 1]))
			nlen--;
		for (size_t i = 0; i < nlen; i++)
			sink_put(&s, lower((unsigned char)raw[i]));
		sink_put(&s, ':');
		relaxed_value(&s, raw + c + 1, len - c - 1);
	}
	if (crlf) {
		sink_put(&s, '\r');
		sink_put(&s, '\n');
	}
	sink_flush(&s);
}
