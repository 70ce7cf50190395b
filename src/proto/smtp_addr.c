/*
 * smtp_addr: the RFC 5321 4.1.2 path parser (with the RFC 6531 UTF-8
 * extensions) and the domain-name syntax check. It owns syntax only:
 * policy (postmaster without a domain, relay tricks such as '%' or a quoted
 * '@', which domains are ours) belongs to the caller, smtp_session.
 * Pure functions over (ptr,len) bytes; anyone may call them.
 */
#include "proto/smtp_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#define DOMAIN_LABEL_MAX 63 /* RFC 1035 2.3.4, for all-ASCII labels */

/* Where the parse stands in s[0..len). */
struct cursor {
	const unsigned char *s;
	size_t len;
	size_t pos;
	bool allow_utf8;
	bool has_utf8;
};

size_t smtp_addr_utf8_len(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf; /* range of the second octet */
	size_t n;

	if (len == 0)
		return 0;
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		n = 2;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		n = 3;
		if (u[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (u[0] == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		n = 4;
		if (u[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (u[0] == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0; /* ASCII, continuation, C0/C1 overlong, F5..FF */
	}
	if (len < n || u[1] < lo || u[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (u[i] < 0x80 || u[i] > 0xbf)
			return 0;
	return n;
}

static bool is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* RFC 5322 atext, ASCII part. */
static bool is_atext(unsigned char c)
{
	if (is_alnum(c))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'':
	case '*': case '+': case '-': case '/': case '=': case '?':
	case '^': case '_': case '`': case '{': case '|': case '}':
	case '~':
		return true;
	default:
		return false;
	}
}

/* An octet >= 0x80 at the cursor: one UTF-8 character, if permitted. */
static enum smtp_addr_status take_utf8(struct cursor *c)
{
	size_t n;

	if (!c->allow_utf8)
		return SMTP_ADDR_NEED_UTF8;
	n = smtp_addr_utf8_len((const char *)c->s + c->pos, c->len - c->pos);
	if (n == 0)
		return SMTP_ADDR_SYNTAX;
	c->pos += n;
	c->has_utf8 = true;
	return SMTP_ADDR_OK;
}

/* Domain = sub-domain *("." sub-domain); stops at the first octet that
 * cannot continue it. */
static enum smtp_addr_status scan_domain(struct cursor *c)
{
	for (;;) {
		size_t start = c->pos;
		bool ascii = true;

		while (c->pos < c->len) {
			unsigned char ch = c->s[c->pos];

			if (is_alnum(ch) || ch == '-') {
				c->pos++;
			} else if (ch >= 0x80) {
				enum smtp_addr_status st = take_utf8(c);

				if (st != SMTP_ADDR_OK)
					return st;
				ascii = false;
			} else {
				break;
			}
		}
		if (c->pos == start || c->s[start] == '-' ||
		    c->s[c->pos - 1] == '-')
			return SMTP_ADDR_SYNTAX;
		if (ascii && c->pos - start > DOMAIN_LABEL_MAX)
			return SMTP_ADDR_SYNTAX;
		if (c->pos >= c->len || c->s[c->pos] != '.')
			return SMTP_ADDR_OK;
		c->pos++; /* a trailing dot leaves an empty label: syntax */
	}
}

static bool ci_prefix(const unsigned char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	if (len < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = s[i], b = (unsigned char)lit[i];

		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b - 'A' + 'a');
		if (a != b)
			return false;
	}
	return true;
}

/* address-literal: "[" IPv4 "]" or "[IPv6:" IPv6 "]". A
 * General-address-literal (any other tag) is refused as syntax. */
static enum smtp_addr_status scan_literal(struct cursor *c)
{
	size_t start = c->pos + 1, end = start, n;
	const unsigned char *t;
	char text[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	int af = AF_INET;

	for (; end < c->len && c->s[end] != ']'; end++) {
		unsigned char ch = c->s[end];

		if (ch >= 0x80)
			return c->allow_utf8 ? SMTP_ADDR_SYNTAX
					     : SMTP_ADDR_NEED_UTF8;
		if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
			return SMTP_ADDR_SYNTAX; /* not dcontent */
	}
	if (end >= c->len)
		return SMTP_ADDR_SYNTAX;
	t = c->s + start;
	n = end - start;
	if (ci_prefix(t, n, "IPv6:")) {
		af = AF_INET6;
		t += 5;
		n -= 5;
	}
	if (n == 0 || n >= sizeof(text))
		return SMTP_ADDR_SYNTAX;
	memcpy(text, t, n);
	text[n] = '\0';
	if (inet_pton(af, text, bin) != 1)
		return SMTP_ADDR_SYNTAX;
	c->pos = end + 1;
	return SMTP_ADDR_OK;
}

/* Dot-string = Atom *("." Atom) */
static enum smtp_addr_status scan_dot_string(struct cursor *c)
{
	for (;;) {
		size_t start = c->pos;

		while (c->pos < c->len) {
			unsigned char ch = c->s[c->pos];

			if (is_atext(ch)) {
				c->pos++;
			} else if (ch >= 0x80) {
				enum smtp_addr_status st = take_utf8(c);

				if (st != SMTP_ADDR_OK)
					return st;
			} else {
				break;
			}
		}
		if (c->pos == start)
			return SMTP_ADDR_SYNTAX;
		if (c->pos >= c->len || c->s[c->pos] != '.')
			return SMTP_ADDR_OK;
		c->pos++;
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE, cursor on the first quote. */
static enum smtp_addr_status scan_quoted(struct cursor *c)
{
	c->pos++;
	while (c->pos < c->len) {
		unsigned char ch = c->s[c->pos];

		if (ch == '"') {
			c->pos++;
			return SMTP_ADDR_OK;
		}
		if (ch == '\\') { /* quoted-pairSMTP = "\" %d32-126 */
			if (c->pos + 1 >= c->len)
				return SMTP_ADDR_SYNTAX;
			ch = c->s[c->pos + 1];
			if (ch >= 0x80)
				return c->allow_utf8 ? SMTP_ADDR_SYNTAX
						     : SMTP_ADDR_NEED_UTF8;
			if (ch < 32 || ch > 126)
				return SMTP_ADDR_SYNTAX;
			c->pos += 2;
		} else if (ch >= 0x80) {
			enum smtp_addr_status st = take_utf8(c);

			if (st != SMTP_ADDR_OK)
				return st;
		} else if (ch < 32 || ch > 126) {
			return SMTP_ADDR_SYNTAX;
		} else {
			c->pos++;
		}
	}
	return SMTP_ADDR_SYNTAX;
}

/* A-d-l ":" = At-domain *("," At-domain) ":", accepted and ignored. */
static enum smtp_addr_status scan_route(struct cursor *c)
{
	for (;;) {
		enum smtp_addr_status st;

		if (c->pos >= c->len || c->s[c->pos] != '@')
			return SMTP_ADDR_SYNTAX;
		c->pos++;
		st = scan_domain(c);
		if (st != SMTP_ADDR_OK)
			return st;
		if (c->pos >= c->len)
			return SMTP_ADDR_SYNTAX;
		if (c->s[c->pos] == ':') {
			c->pos++;
			return SMTP_ADDR_OK;
		}
		if (c->s[c->pos] != ',')
			return SMTP_ADDR_SYNTAX;
		c->pos++;
	}
}

/* Copy the local part without its quotes and backslashes. The decoded
 * form is never longer than the written one, which was checked. */
static void decode_local(const unsigned char *s, size_t len, bool quoted,
			 char *out)
{
	size_t o = 0;

	if (quoted) {
		for (size_t i = 1; i + 1 < len; i++) {
			if (s[i] == '\\')
				i++;
			out[o++] = (char)s[i];
		}
	} else {
		memcpy(out, s, len);
		o = len;
	}
	out[o] = '\0';
}

enum smtp_addr_status smtp_addr_parse(const char *s, size_t len,
				      bool allow_null, bool allow_utf8,
				      struct smtp_addr *out, size_t *consumed)
{
	struct cursor c = { (const unsigned char *)s, len, 1, allow_utf8,
			    false };
	size_t local_start, local_end, domain_start, domain_end;
	bool quoted = false, literal = false;
	enum smtp_addr_status st;

	memset(out, 0, sizeof(*out));
	*consumed = 0;
	if (len < 2 || s[0] != '<')
		return SMTP_ADDR_SYNTAX;
	if (s[1] == '>') {
		if (!allow_null)
			return SMTP_ADDR_NULL_DENIED;
		out->is_null = true;
		*consumed = 2;
		return SMTP_ADDR_OK;
	}
	if (s[1] == '@') {
		st = scan_route(&c);
		if (st != SMTP_ADDR_OK)
			return st;
	}

	local_start = c.pos;
	if (c.pos < len && s[c.pos] == '"') {
		quoted = true;
		st = scan_quoted(&c);
	} else {
		st = scan_dot_string(&c);
	}
	if (st != SMTP_ADDR_OK)
		return st;
	local_end = c.pos;
	if (c.pos >= len || s[c.pos] != '@')
		return SMTP_ADDR_SYNTAX;
	c.pos++;

	domain_start = c.pos;
	if (c.pos < len && s[c.pos] == '[') {
		literal = true;
		st = scan_literal(&c);
	} else {
		st = scan_domain(&c);
	}
	if (st != SMTP_ADDR_OK)
		return st;
	domain_end = c.pos;
	if (c.pos >= len || s[c.pos] != '>')
		return SMTP_ADDR_SYNTAX;

	if (local_end - local_start > SMTP_ADDR_LOCAL_MAX ||
	    domain_end - domain_start > SMTP_ADDR_DOMAIN_MAX ||
	    domain_end - local_start > SMTP_ADDR_PATH_MAX)
		return SMTP_ADDR_TOO_LONG;

	out->local_quoted = quoted;
	out->domain_literal = literal;
	out->has_utf8 = c.has_utf8;
	decode_local(c.s + local_start, local_end - local_start, quoted,
		     out->local);
	memcpy(out->domain, s + domain_start, domain_end - domain_start);
	out->domain[domain_end - domain_start] = '\0';
	memcpy(out->text, s + local_start, domain_end - local_start);
	out->text[domain_end - local_start] = '\0';
	*consumed = c.pos + 1;
	return SMTP_ADDR_OK;
}

bool smtp_addr_domain_valid(const char *d, size_t len, bool allow_utf8)
{
	struct cursor c = { (const unsigned char *)d, len, 0, allow_utf8,
			    false };

	if (len == 0 || len > SMTP_ADDR_DOMAIN_MAX)
		return false;
	return scan_domain(&c) == SMTP_ADDR_OK && c.pos == len;
}
