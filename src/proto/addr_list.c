/*
 * addr_list: header fields and RFC 5322 address lists (addr_list.h).
 *
 * The list is read as tokens (atoms, quoted strings, domain literals and
 * the specials < > : ; @ , .), comments and folding white space skipped
 * between them. Each element up to a ',' is a mailbox (a display name then
 * an angle address, or a bare addr-spec) or the start or end of a group.
 * Lenient where real mail is (empty elements, a group without its ';',
 * ';' between addresses outside a group, a '.' or '@' in a display name),
 * strict where the address itself is.
 */
#include "proto/addr_list.h"

#include <string.h>
#include <strings.h>

enum tok { T_END, T_ATOM, T_QUOTED, T_LITERAL, T_SPECIAL, T_ERROR };

struct token {
	enum tok type;
	char c;        /* T_SPECIAL: the character */
	const char *p; /* the token's octets */
	size_t len;
};

struct lexer {
	const char *s;
	size_t len;
	size_t pos;
};

/* RFC 5322 atext, ASCII part; octets >= 0x80 are UTF-8 (RFC 6532). */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c >= 0x80)
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool addr_list_skip_cfws(const char *s, size_t len, size_t *pos)
{
	size_t depth = 0, i = *pos;
	while (i < len) {
		char c = s[i];
		if (depth == 0 && is_wsp(c)) {
			i++;
		} else if (c == '(') {
			depth++;
			i++;
		} else if (depth == 0) {
			break;
		} else if (c == '\\') {
			i += i + 1 < len ? 2 : 1;
		} else {
			if (c == ')')
				depth--;
			i++;
		}
	}
	*pos = i < len ? i : len;
	return depth == 0;
}

static bool skip_cfws(struct lexer *lx)
{
	return addr_list_skip_cfws(lx->s, lx->len, &lx->pos);
}

/* From an opening quote or bracket to its closing one (quoted pairs
 * skipped); the length through the closing octet, or 0 when it is missing. */
static size_t scan_delimited(const char *s, size_t len, char close)
{
	for (size_t i = 1; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == close)
			return i + 1;
	}
	return 0;
}

static struct token lex(struct lexer *lx)
{
	struct token t = { .type = T_ERROR };
	if (!skip_cfws(lx))
		return t;
	t.p = lx->s + lx->pos;
	size_t left = lx->len - lx->pos;
	if (left == 0) {
		t.type = T_END;
		return t;
	}
	unsigned char c = (unsigned char)t.p[0];
	if (c == '"' || c == '[') {
		t.len = scan_delimited(t.p, left, c == '"' ? '"' : ']');
		if (t.len == 0)
			return t;
		t.type = c == '"' ? T_QUOTED : T_LITERAL;
	} else if (strchr("<>:;@,.", c) != NULL) {
		t.type = T_SPECIAL;
		t.c = (char)c;
		t.len = 1;
	} else if (is_atext(c)) {
		while (t.len < left && is_atext((unsigned char)t.p[t.len]))
			t.len++;
		t.type = T_ATOM;
	} else {
		return t; /* a stray ')', ']', '\', or a control character */
	}
	lx->pos += t.len;
	return t;
}

static bool is_special(const struct token *t, char c)
{
	return t->type == T_SPECIAL && t->c == c;
}

/* Append a token to the address; folding inside a quoted string goes. */
static bool append(char *out, size_t *olen, const struct token *t)
{
	for (size_t i = 0; i < t->len; i++) {
		if (t->p[i] == '\r' || t->p[i] == '\n')
			continue;
		if (*olen >= ADDR_LIST_ADDR_MAX)
			return false;
		out[(*olen)++] = t->p[i];
	}
	out[*olen] = '\0';
	return true;
}

/*
 * An addr-spec: local-part ["@" domain], up to the token `stop` ('>' for
 * an angle address) or the end of the lexer's range (stop 0). The address
 * goes into out; *olen 0 for an empty "<>".
 */
static enum addr_list_status addr_spec(struct lexer *lx, char stop, char *out, size_t *olen)
{
	enum { LOCAL_WORD, LOCAL_DOT, DOMAIN_START, DOMAIN_ATOM, DOMAIN_DOT,
	       DOMAIN_LITERAL } st = LOCAL_WORD;
	*olen = 0;
	out[0] = '\0';
	for (;;) {
		struct token t = lex(lx);
		if (t.type == T_ERROR)
			return ADDR_LIST_SYNTAX;
		if (t.type == T_END || (stop && is_special(&t, stop))) {
			if (stop && t.type == T_END)
				return ADDR_LIST_SYNTAX; /* "<" never closed */
			bool whole = st == LOCAL_DOT || st == DOMAIN_ATOM || st == DOMAIN_LITERAL ||
				     (st == LOCAL_WORD && *olen == 0 && stop);
			return whole ? ADDR_LIST_OK : ADDR_LIST_SYNTAX;
		}
		bool word = t.type == T_ATOM || t.type == T_QUOTED;
		switch (st) {
		case LOCAL_WORD: /* a word must come */
			if (!word)
				return ADDR_LIST_SYNTAX;
			st = LOCAL_DOT;
			break;
		case LOCAL_DOT: /* after a word: '.', '@' */
			if (is_special(&t, '.'))
				st = LOCAL_WORD;
			else if (is_special(&t, '@'))
				st = DOMAIN_START;
			else
				return ADDR_LIST_SYNTAX;
			break;
		case DOMAIN_START:
			if (t.type == T_LITERAL)
				st = DOMAIN_LITERAL;
			else if (t.type == T_ATOM)
				st = DOMAIN_ATOM;
			else
				return ADDR_LIST_SYNTAX;
			break;
		case DOMAIN_ATOM:
			if (!is_special(&t, '.'))
				return ADDR_LIST_SYNTAX;
			st = DOMAIN_DOT;
			break;
		case DOMAIN_DOT:
			if (t.type != T_ATOM)
				return ADDR_LIST_SYNTAX;
			st = DOMAIN_ATOM;
			break;
		case DOMAIN_LITERAL:
			return ADDR_LIST_SYNTAX;
		}
		if (!append(out, olen, &t))
			return ADDR_LIST_TOO_LONG;
	}
}

/* After '<': an optional source route ("@a,@b:"), ignored (RFC 5322 4.4). */
static enum addr_list_status skip_route(struct lexer *lx)
{
	size_t save = lx->pos;
	struct token t = lex(lx);
	if (!is_special(&t, '@')) {
		lx->pos = save;
		return ADDR_LIST_OK;
	}
	for (;;) {
		t = lex(lx);
		if (is_special(&t, ':'))
			return ADDR_LIST_OK;
		if (t.type == T_END || t.type == T_ERROR || is_special(&t, '>') ||
		    is_special(&t, '<') || is_special(&t, ';'))
			return ADDR_LIST_SYNTAX;
	}
}

static enum addr_list_status emit(addr_list_fn fn, void *arg, const char *addr, size_t len)
{
	if (len == 0)
		return ADDR_LIST_OK;
	return fn(arg, addr, len) != 0 ? ADDR_LIST_STOPPED : ADDR_LIST_OK;
}

enum addr_list_status addr_list_parse(const char *s, size_t len, addr_list_fn fn, void *arg)
{
	struct lexer lx = { s, len, 0 };
	char addr[ADDR_LIST_ADDR_MAX + 1];
	size_t alen;
	bool in_group = false;
	for (;;) {
		/* One element: the tokens up to '<', ':', ',', ';' or the end. */
		size_t seg = lx.pos;
		size_t ntok = 0;
		struct token t;
		for (;;) {
			t = lex(&lx);
			if (t.type == T_ATOM || t.type == T_QUOTED || t.type == T_LITERAL ||
			    is_special(&t, '.') || is_special(&t, '@'))
				ntok++;
			else
				break;
		}
		enum addr_list_status st = ADDR_LIST_OK;
		if (t.type == T_ERROR || is_special(&t, '>'))
			return ADDR_LIST_SYNTAX;
		if (is_special(&t, ':')) {
			if (in_group || ntok == 0)
				return ADDR_LIST_SYNTAX; /* groups do not nest */
			in_group = true;
			continue;
		}
		if (is_special(&t, '<')) {
			/* What came before is the display name. */
			st = skip_route(&lx);
			if (st == ADDR_LIST_OK)
				st = addr_spec(&lx, '>', addr, &alen);
			if (st == ADDR_LIST_OK)
				st = emit(fn, arg, addr, alen);
			if (st != ADDR_LIST_OK)
				return st;
			t = lex(&lx);
			if (!(t.type == T_END || is_special(&t, ',') || is_special(&t, ';')))
				return ADDR_LIST_SYNTAX;
		} else if (ntok > 0) {
			/* A bare addr-spec: read its tokens again, up to here. */
			struct lexer sub = { s, (size_t)(t.p - s), seg };
			st = addr_spec(&sub, 0, addr, &alen);
			if (st == ADDR_LIST_OK)
				st = emit(fn, arg, addr, alen);
			if (st != ADDR_LIST_OK)
				return st;
		}
		if (t.type == T_END)
			return ADDR_LIST_OK; /* a group left open is let pass */
		if (is_special(&t, ';') && in_group) {
			in_group = false;
			/* "group: a, b;" is followed by ',' or the end. */
			t = lex(&lx);
			if (t.type == T_END)
				return ADDR_LIST_OK;
			if (!is_special(&t, ','))
				return ADDR_LIST_SYNTAX;
		}
		/* Outside a group, "a@x; b@y" (a common slip) lists two. */
	}
}

/* RFC 5322 ftext: printable ASCII but ':'. */
static bool is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

bool addr_list_next_field(const char *hdr, size_t len, size_t *pos, struct addr_list_field *f)
{
	size_t i = *pos;
	size_t n = i;
	while (n < len && is_ftext((unsigned char)hdr[n]))
		n++;
	if (n == i)
		return false; /* the end, an empty line, or no field name */
	size_t name_end = n;
	while (n < len && (hdr[n] == ' ' || hdr[n] == '\t'))
		n++; /* obs-optional: "Subject : x" */
	if (n >= len || hdr[n] != ':')
		return false;
	size_t value = n + 1;
	size_t value_end, end;
	size_t e = value;
	for (;;) {
		const char *nl = memchr(hdr + e, '\n', len - e);
		if (nl == NULL) {
			value_end = end = len;
			break;
		}
		size_t lf = (size_t)(nl - hdr);
		if (lf + 1 < len && (hdr[lf + 1] == ' ' || hdr[lf + 1] == '\t')) {
			e = lf + 1; /* a continuation line */
			continue;
		}
		value_end = lf > value && hdr[lf - 1] == '\r' ? lf - 1 : lf;
		end = lf + 1;
		break;
	}
	f->name = hdr + i;
	f->name_len = name_end - i;
	f->value = hdr + value;
	f->value_len = value_end - value;
	f->start = i;
	f->end = end;
	*pos = end;
	return true;
}

bool addr_list_field_is(const struct addr_list_field *f, const char *name)
{
	return strlen(name) == f->name_len && strncasecmp(f->name, name, f->name_len) == 0;
}

size_t addr_list_header_len(const char *msg, size_t len)
{
	size_t pos = 0;
	struct addr_list_field f;
	while (addr_list_next_field(msg, len, &pos, &f))
		;
	return pos;
}

enum addr_list_status addr_list_recipients(const char *hdr, size_t len, addr_list_fn fn,
					   void *arg)
{
	size_t pos = 0;
	struct addr_list_field f;
	while (addr_list_next_field(hdr, len, &pos, &f)) {
		if (!addr_list_field_is(&f, "to") && !addr_list_field_is(&f, "cc") &&
		    !addr_list_field_is(&f, "bcc"))
			continue;
		enum addr_list_status st = addr_list_parse(f.value, f.value_len, fn, arg);
		if (st != ADDR_LIST_OK)
			return st;
	}
	return ADDR_LIST_OK;
}
