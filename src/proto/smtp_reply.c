/*
 * smtp_reply: the parser of SMTP server replies used by the client
 * (RFC 5321 4.2, enhanced status codes of RFC 3463). It owns the split of
 * the input into CRLF lines inside a fixed buffer, the checks on each
 * line, and the struct smtp_reply handed out per complete reply. Pure:
 * bytes in, replies out; no I/O and no allocation. Any caller may use it;
 * the SMTP client is the one that does.
 */
#include "proto/smtp_reply.h"

#include <stdio.h>
#include <string.h>

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static enum smtp_reply_status fail(struct smtp_reply_parser *p,
				   const char *why)
{
	p->failed = true;
	p->error = why;
	return SMTP_REPLY_ERROR;
}

/*
 * The length of the enhanced status code at s[0..len) (RFC 3463:
 * class "." 1*3digit "." 1*3digit, class 2, 4 or 5), followed by a space
 * or the end of the line; 0 when there is none.
 */
static size_t enh_len(const char *s, size_t len)
{
	size_t i = 1;

	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t start = ++i;

		while (i < len && i - start < 3 &&
		       is_digit((unsigned char)s[i]))
			i++;
		if (i == start)
			return 0;
		if (part == 0 && (i >= len || s[i] != '.'))
			return 0;
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* Append s[0..n) to r->text (of length *tlen), dropping what does not fit
 * and replacing control characters; 8-bit octets are kept as they are. */
static void text_append(struct smtp_reply *r, size_t *tlen, const char *s,
			size_t n)
{
	for (size_t i = 0; i < n && *tlen < SMTP_REPLY_TEXT_MAX - 1; i++) {
		unsigned char c = (unsigned char)s[i];

		r->text[(*tlen)++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
	}
	r->text[*tlen] = '\0';
}

/*
 * One complete line, line[0..n) without its CRLF, into p->cur.
 * Returns SMTP_REPLY_DONE after the last line of a reply, SMTP_REPLY_MORE
 * after a continuation line, SMTP_REPLY_ERROR on a malformed line.
 */
static enum smtp_reply_status take_line(struct smtp_reply_parser *p,
					const char *line, size_t n)
{
	struct smtp_reply *r = &p->cur;
	const char *text;
	size_t tlen, text_len, el;
	bool last;
	int code;

	if (n < 3 || line[0] < '2' || line[0] > '5' ||
	    !is_digit((unsigned char)line[1]) ||
	    !is_digit((unsigned char)line[2]))
		return fail(p, "malformed reply code");
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (n == 3)
		last = true;
	else if (line[3] == ' ')
		last = true;
	else if (line[3] == '-')
		last = false;
	else
		return fail(p, "malformed reply line");
	if (r->nlines == 0)
		r->code = code;
	else if (r->code != code)
		return fail(p, "reply code changed within one reply");
	if (r->nlines >= SMTP_REPLY_LINES_MAX)
		return fail(p, "too many lines in one reply");

	text = n > 4 ? line + 4 : line + n;
	text_len = n > 4 ? n - 4 : 0;
	el = enh_len(text, text_len);
	if (r->nlines == 0 && el > 0 && text[0] == line[0]) {
		memcpy(r->enh, text, el);
		r->enh[el] = '\0';
	}
	if (r->enh[0] != '\0' && el == strlen(r->enh) &&
	    memcmp(text, r->enh, el) == 0) {
		/* The code and the space after it, when there is one. */
		el += el < text_len ? 1 : 0;
		text += el;
		text_len -= el;
	}

	tlen = strlen(r->text);
	if (r->nlines > 0 && tlen < SMTP_REPLY_TEXT_MAX - 1) {
		r->text[tlen++] = '\n';
		r->text[tlen] = '\0';
	}
	text_append(r, &tlen, text, text_len);
	r->nlines++;
	p->in_reply = !last;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_MORE;
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

enum smtp_reply_status smtp_reply_parse(struct smtp_reply_parser *p,
					const char *buf, size_t len,
					size_t *used, struct smtp_reply *out)
{
	*used = 0;
	if (p->failed)
		return SMTP_REPLY_ERROR;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		enum smtp_reply_status st;

		*used = i + 1;
		if (p->line_len > 0 && p->line[p->line_len - 1] == '\r') {
			if (c != '\n')
				return fail(p, "bare CR in reply");
			st = take_line(p, p->line, p->line_len - 1);
			p->line_len = 0;
			if (st == SMTP_REPLY_ERROR)
				return st;
			if (st == SMTP_REPLY_DONE) {
				*out = p->cur;
				memset(&p->cur, 0, sizeof(p->cur));
				return st;
			}
			continue;
		}
		if (c == '\n')
			return fail(p, "bare LF in reply");
		/* Room for c and, later, the CRLF: at most LINE_MAX octets. */
		if (c != '\r' && p->line_len + 3 > SMTP_REPLY_LINE_MAX)
			return fail(p, "reply line too long");
		p->line[p->line_len++] = c;
	}
	return SMTP_REPLY_MORE;
}

bool smtp_reply_has_keyword(const struct smtp_reply *r, const char *kw,
			    const char **arg, size_t *arglen)
{
	size_t klen = kw != NULL ? strlen(kw) : 0;
	const char *s = strchr(r->text, '\n');

	if (klen == 0)
		return false;
	/* The first line is the server's name and greeting, never a keyword. */
	while (s != NULL) {
		const char *line = s + 1, *end = strchr(line, '\n');
		size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
		size_t i = 0;

		while (i < klen && i < n && lower((unsigned char)line[i]) ==
						 lower((unsigned char)kw[i]))
			i++;
		if (i == klen && (n == klen || line[klen] == ' ')) {
			if (arg != NULL)
				*arg = n == klen ? line + n : line + klen + 1;
			if (arglen != NULL)
				*arglen = n == klen ? 0 : n - klen - 1;
			return true;
		}
		s = end;
	}
	return false;
}

void smtp_reply_format(const struct smtp_reply *r, char *buf, size_t len)
{
	int n;
	size_t pos;

	if (buf == NULL || len == 0)
		return;
	if (r->enh[0] != '\0')
		n = snprintf(buf, len, "%d %.*s", r->code, (int)sizeof(r->enh),
			     r->enh);
	else
		n = snprintf(buf, len, "%d", r->code);
	if (n < 0) {
		buf[0] = '\0';
		return;
	}
	pos = (size_t)n;
	if (pos >= len - 1 || r->text[0] == '\0')
		return;
	buf[pos++] = ' ';
	for (size_t i = 0; pos < len - 1 && i < sizeof(r->text) &&
			   r->text[i] != '\0'; i++)
		buf[pos++] = r->text[i] == '\n' ? ' ' : r->text[i];
	buf[pos] = '\0';
}
