/*
 * smtp_cmd: the syntax of one SMTP command line: the verb table, the split
 * into verb and argument, the "FROM:"/"TO:" prefix of MAIL and RCPT, the
 * ESMTP parameters of MAIL and RCPT, xtext, and the BDAT argument.
 * Policy (which extensions are advertised, what the limits are) belongs to
 * the caller, smtp_session. Pure functions over (ptr,len) bytes.
 */
#include "proto/smtp_cmd.h"

#include "proto/smtp_addr.h"

#include <string.h>

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = "?",
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",
};

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* s[0..len) equals the NUL-ended constant lit, ignoring ASCII case. */
static bool ci_eq(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
			return false;
	return true;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	size_t n;

	if (err == NULL || errlen == 0)
		return;
	n = strlen(msg);
	if (n >= errlen)
		n = errlen - 1;
	memcpy(err, msg, n);
	err[n] = '\0';
}

void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out,
		    bool *bad_octet)
{
	size_t vlen = 0, start, end;

	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = line;
	out->arg_len = 0;
	*bad_octet = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*bad_octet = true;
			return;
		}
	}
	if (len == 0)
		return;

	while (vlen < len && line[vlen] != ' ')
		vlen++;
	for (int v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		if (ci_eq(line, vlen, verb_names[v])) {
			out->verb = (enum smtp_verb)v;
			break;
		}
	}
	start = vlen < len ? vlen + 1 : len; /* exactly one space */
	end = len;
	while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	out->arg = line + start;
	out->arg_len = end - start;
}

const char *smtp_cmd_verb_name(enum smtp_verb verb)
{
	if ((int)verb <= SMTP_VERB_UNKNOWN || verb >= SMTP_VERB_COUNT)
		return verb_names[SMTP_VERB_UNKNOWN];
	return verb_names[verb];
}

long smtp_cmd_path_offset(const char *arg, size_t len, const char *keyword)
{
	size_t klen = strlen(keyword), i;

	/* The keyword may be given with its colon ("FROM:") or without. */
	if (len < klen || !ci_eq(arg, klen, keyword))
		return -1;
	i = klen;
	if (klen == 0 || keyword[klen - 1] != ':') {
		if (i >= len || arg[i] != ':')
			return -1;
		i++;
	}
	while (i < len && (arg[i] == ' ' || arg[i] == '\t'))
		i++;
	if (i >= len || arg[i] != '<')
		return -1;
	return (long)i;
}

/* xtext, optionally with raw UTF-8 characters (ORCPT under SMTPUTF8). */
static bool xtext_check(const char *s, size_t len, bool allow_utf8)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			for (size_t k = 1; k <= 2; k++) {
				unsigned char h;

				if (i + k >= len)
					return false;
				h = (unsigned char)s[i + k];
				if (!is_digit(h) && !(h >= 'A' && h <= 'F'))
					return false;
			}
			i += 3;
		} else if (c >= 33 && c <= 126 && c != '=') {
			i++;
		} else if (c >= 0x80 && allow_utf8) {
			size_t n = smtp_addr_utf8_len(s + i, len - i);

			if (n == 0)
				return false;
			i += n;
		} else {
			return false;
		}
	}
	return true;
}

bool smtp_xtext_valid(const char *s, size_t len)
{
	return xtext_check(s, len, false);
}

/* 1 to 20 digits that fit in uint64_t. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (!is_digit((unsigned char)s[i]))
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

bool smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, bool *last)
{
	size_t n = 0;

	*size = 0;
	*last = false;
	while (n < len && arg[n] != ' ')
		n++;
	if (!parse_u64(arg, n, size))
		return false;
	if (n == len)
		return true;
	if (!ci_eq(arg + n, len - n, " LAST")) {
		*size = 0;
		return false;
	}
	*last = true;
	return true;
}

/* One esmtp-param: keyword ["=" value]. */
struct param {
	const char *kw;
	size_t kw_len;
	const char *val; /* NULL when there was no "=" */
	size_t val_len;
};

/* The next space-separated item of s[*pos..len), into p. Returns false at
 * the end of the list. Several spaces between items are tolerated. */
static bool next_item(const char *s, size_t len, size_t *pos, struct param *p)
{
	size_t i = *pos, start, eq;

	while (i < len && s[i] == ' ')
		i++;
	if (i >= len)
		return false;
	start = i;
	while (i < len && s[i] != ' ')
		i++;
	*pos = i;
	for (eq = start; eq < i && s[eq] != '='; eq++)
		;
	p->kw = s + start;
	p->kw_len = eq - start;
	p->val = eq < i ? s + eq + 1 : NULL;
	p->val_len = eq < i ? i - eq - 1 : 0;
	return true;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool keyword_valid(const struct param *p)
{
	if (p->kw_len == 0 || !is_alnum((unsigned char)p->kw[0]))
		return false;
	for (size_t i = 1; i < p->kw_len; i++)
		if (!is_alnum((unsigned char)p->kw[i]) && p->kw[i] != '-')
			return false;
	return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus 8-bit octets, which each
 * keyword's own check then refuses or validates as UTF-8. */
static bool value_valid(const struct param *p)
{
	if (p->val == NULL || p->val_len == 0)
		return false;
	for (size_t i = 0; i < p->val_len; i++) {
		unsigned char c = (unsigned char)p->val[i];

		if (c < 33 || c == '=' || c == 127)
			return false;
	}
	return true;
}

/* Look the keyword up in names[0..n); -1 when unknown. */
static int lookup(const struct param *p, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (ci_eq(p->kw, p->kw_len, names[i]))
			return i;
	return -1;
}

static void copy_value(char *dst, const struct param *p)
{
	memcpy(dst, p->val, p->val_len);
	dst[p->val_len] = '\0';
}

enum mail_kw { MAIL_SIZE, MAIL_BODY, MAIL_SMTPUTF8, MAIL_RET, MAIL_ENVID,
	       MAIL_AUTH, MAIL_KW_COUNT };
static const char *const mail_kw_names[MAIL_KW_COUNT] = {
	"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH",
};

/* The value of one known MAIL keyword; NULL when fine, else the reason. */
static const char *mail_value(enum mail_kw kw, const struct param *p,
			      struct smtp_mail_params *out)
{
	switch (kw) {
	case MAIL_SMTPUTF8:
		if (p->val != NULL)
			return "SMTPUTF8 takes no value";
		out->smtputf8 = true;
		return NULL;
	case MAIL_SIZE:
		if (!value_valid(p) || !parse_u64(p->val, p->val_len, &out->size))
			return "invalid SIZE value";
		out->has_size = true;
		return NULL;
	case MAIL_BODY:
		if (p->val != NULL && ci_eq(p->val, p->val_len, "7BIT"))
			out->body = SMTP_BODY_7BIT;
		else if (p->val != NULL && ci_eq(p->val, p->val_len, "8BITMIME"))
			out->body = SMTP_BODY_8BITMIME;
		else
			return "invalid BODY value";
		return NULL;
	case MAIL_RET:
		if (p->val != NULL && ci_eq(p->val, p->val_len, "FULL"))
			out->ret = SMTP_RET_FULL;
		else if (p->val != NULL && ci_eq(p->val, p->val_len, "HDRS"))
			out->ret = SMTP_RET_HDRS;
		else
			return "invalid RET value";
		return NULL;
	case MAIL_ENVID:
		if (!value_valid(p) || p->val_len > SMTP_ENVID_MAX ||
		    !smtp_xtext_valid(p->val, p->val_len))
			return "invalid ENVID value";
		copy_value(out->envid, p);
		out->has_envid = true;
		return NULL;
	case MAIL_AUTH:
		/* "<>" is valid xtext, so one check covers both forms. */
		if (!value_valid(p) || p->val_len > SMTP_AUTH_PARAM_MAX ||
		    !smtp_xtext_valid(p->val, p->val_len))
			return "invalid AUTH value";
		copy_value(out->auth, p);
		out->has_auth = true;
		return NULL;
	case MAIL_KW_COUNT:
		break;
	}
	return "invalid parameter";
}

enum smtp_param_status smtp_mail_params_parse(const char *s, size_t len,
					      uint64_t max_size,
					      struct smtp_mail_params *out,
					      char *err, size_t errlen)
{
	struct param p;
	size_t pos = 0;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	set_err(err, errlen, "");
	while (next_item(s, len, &pos, &p)) {
		const char *why;
		int kw;

		if (!keyword_valid(&p)) {
			set_err(err, errlen, "invalid parameter syntax");
			return SMTP_PARAM_SYNTAX;
		}
		kw = lookup(&p, mail_kw_names, MAIL_KW_COUNT);
		if (kw < 0) {
			set_err(err, errlen, "unknown parameter");
			return SMTP_PARAM_UNKNOWN;
		}
		if (seen & (1u << kw)) {
			set_err(err, errlen, "duplicate parameter");
			return SMTP_PARAM_UNKNOWN;
		}
		seen |= 1u << kw;
		why = mail_value((enum mail_kw)kw, &p, out);
		if (why != NULL) {
			set_err(err, errlen, why);
			return SMTP_PARAM_SYNTAX;
		}
	}
	/* Checked last, so that a malformed command gets 501, not 552. */
	if (out->has_size && max_size != 0 && out->size > max_size) {
		set_err(err, errlen, "message size exceeds fixed maximum");
		return SMTP_PARAM_SIZE_LIMIT;
	}
	return SMTP_PARAM_OK;
}

/* NOTIFY = "NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY") */
static bool parse_notify(const char *s, size_t len, unsigned *out)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE",
					     "DELAY" };
	static const unsigned bits[] = { SMTP_NOTIFY_NEVER, SMTP_NOTIFY_SUCCESS,
					 SMTP_NOTIFY_FAILURE,
					 SMTP_NOTIFY_DELAY };
	unsigned got = 0;
	size_t i = 0;

	for (;;) {
		size_t start = i;
		unsigned bit = 0;

		while (i < len && s[i] != ',')
			i++;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (ci_eq(s + start, i - start, names[k]))
				bit = bits[k];
		if (bit == 0 || (got & bit))
			return false;
		got |= bit;
		if (i == len)
			break;
		i++; /* the comma; an empty item after it fails above */
	}
	if ((got & SMTP_NOTIFY_NEVER) && got != SMTP_NOTIFY_NEVER)
		return false;
	*out = got;
	return true;
}

/* RFC 5322 atext, less "=" which an esmtp-value cannot hold. */
static bool is_atom_char(unsigned char c)
{
	if (is_alnum(c))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'':
	case '*': case '+': case '-': case '/': case '?': case '^':
	case '_': case '`': case '{': case '|': case '}': case '~':
		return true;
	default:
		return false;
	}
}

/* ORCPT = addr-type ";" xtext, addr-type an atom ("rfc822", "utf-8"). */
static bool orcpt_valid(const char *s, size_t len, bool allow_utf8)
{
	size_t semi = 0;

	if (len > SMTP_ORCPT_MAX)
		return false;
	while (semi < len && s[semi] != ';')
		semi++;
	if (semi == 0 || semi + 1 >= len)
		return false;
	for (size_t i = 0; i < semi; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!is_atom_char(c))
			return false;
	}
	return xtext_check(s + semi + 1, len - semi - 1, allow_utf8);
}

enum rcpt_kw { RCPT_NOTIFY, RCPT_ORCPT, RCPT_KW_COUNT };
static const char *const rcpt_kw_names[RCPT_KW_COUNT] = { "NOTIFY", "ORCPT" };

enum smtp_param_status smtp_rcpt_params_parse(const char *s, size_t len,
					      bool allow_utf8,
					      struct smtp_rcpt_params *out,
					      char *err, size_t errlen)
{
	struct param p;
	size_t pos = 0;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	set_err(err, errlen, "");
	while (next_item(s, len, &pos, &p)) {
		int kw;

		if (!keyword_valid(&p)) {
			set_err(err, errlen, "invalid parameter syntax");
			return SMTP_PARAM_SYNTAX;
		}
		kw = lookup(&p, rcpt_kw_names, RCPT_KW_COUNT);
		if (kw < 0) {
			set_err(err, errlen, "unknown parameter");
			return SMTP_PARAM_UNKNOWN;
		}
		if (seen & (1u << kw)) {
			set_err(err, errlen, "duplicate parameter");
			return SMTP_PARAM_UNKNOWN;
		}
		seen |= 1u << kw;
		if (kw == RCPT_NOTIFY) {
			if (!value_valid(&p) ||
			    !parse_notify(p.val, p.val_len, &out->notify)) {
				set_err(err, errlen, "invalid NOTIFY value");
				return SMTP_PARAM_SYNTAX;
			}
		} else {
			if (!value_valid(&p) ||
			    !orcpt_valid(p.val, p.val_len, allow_utf8)) {
				set_err(err, errlen, "invalid ORCPT value");
				return SMTP_PARAM_SYNTAX;
			}
			copy_value(out->orcpt, &p);
			out->has_orcpt = true;
		}
	}
	return SMTP_PARAM_OK;
}
