/*
 * dsn: delivery status notification builder (dsn.h). Pure text assembly:
 * a growing buffer local to this file, no I/O, no locale (day and month
 * names are ours, dates are UTC). Everything taken from the report that
 * lands in a header or a status field is cleaned first (no control
 * characters, no 8-bit octets, bounded length) and folded, so a hostile
 * remote reply cannot add a header line or an over-long line.
 */
#include "delivery/dsn.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/xalloc.h"

#define LINE_MAX_OCTETS 998 /* RFC 5322 2.1.1, CR LF not counted */
#define FOLD_AT 78          /* where header fields are folded when possible */
#define TEXT_WIDTH 76       /* where the human-readable part is wrapped */
#define TEXT_INDENT "    "  /* continuation lines of a wrapped recipient line */
#define HOST_MAX 255        /* host names and queue ids, after cleaning */
#define ADDR_MAX 900        /* addresses, ENVID: one token fits on a line */
#define DIAG_MAX 4096       /* diagnostic text kept per recipient */

/* ---- growing buffer ---- */

struct dbuf {
	char *p;
	size_t len;
	size_t cap;
};

static void dbuf_reserve(struct dbuf *b, size_t more)
{
	if (more <= b->cap - b->len)
		return;
	if (more > SIZE_MAX / 2 - b->len)
		xfatal("dsn: buffer size overflow");
	size_t cap = b->cap ? b->cap : 1024;
	while (cap - b->len < more)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void dbuf_put(struct dbuf *b, const char *s, size_t n)
{
	if (n == 0)
		return;
	dbuf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void dbuf_puts(struct dbuf *b, const char *s)
{
	dbuf_put(b, s, strlen(s));
}

static void dbuf_putc(struct dbuf *b, char c)
{
	dbuf_reserve(b, 1);
	b->p[b->len++] = c;
}

static void dbuf_printf(struct dbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		xfatal("dsn: bad format");
	dbuf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- cleaning of inserted values ---- */

/*
 * A copy of (s, n) fit for one header field value or one line of text:
 * CR, LF, TAB and spaces become single spaces (none leading or trailing),
 * other control characters, DEL and 8-bit octets become '?', and the
 * result is cut to cap octets (ending in "..." when cut). Heap, NUL-ended.
 */
static char *clean_n(const char *s, size_t n, size_t cap)
{
	char *out = xmalloc(cap + 1);
	size_t o = 0;
	bool space = false;
	bool cut = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true;
			continue;
		}
		if (c < 0x20 || c >= 0x7f)
			c = '?';
		if (o + (space && o > 0) + 1 > cap) {
			cut = true;
			break;
		}
		if (space && o > 0)
			out[o++] = ' ';
		space = false;
		out[o++] = (char)c;
	}
	if (cut && cap >= 3) {
		memcpy(out + cap - 3, "...", 3);
		o = cap;
	}
	out[o] = '\0';
	return out;
}

static char *clean(const char *s, size_t cap)
{
	return s ? clean_n(s, strlen(s), cap) : clean_n("", 0, cap);
}

/* Only the characters of a host name, or of an address literal when it
 * starts with '[' (for From:, Message-ID: and Reporting-MTA:);
 * "localhost" when nothing is left. */
static char *host_token(const char *s)
{
	char *out = clean(s, HOST_MAX);
	const char *extra = out[0] == '[' ? ".-_[]:" : ".-_";
	size_t o = 0;
	for (const char *p = out; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(extra, c) != NULL)
			out[o++] = (char)c;
	}
	out[o] = '\0';
	if (o == 0) {
		free(out);
		out = xstrdup("localhost");
	}
	return out;
}

/* Letters and digits only, at most max (queue id in a boundary, a
 * Message-ID); "0" when nothing is left. */
static char *alnum_token(const char *s, size_t max)
{
	char *out = xmalloc(max + 2);
	size_t o = 0;
	for (; s && *s && o < max; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			out[o++] = (char)c;
	}
	if (o == 0)
		out[o++] = '0';
	out[o] = '\0';
	return out;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10; /* RFC 3461 says upper case; accept both */
	return -1;
}

/*
 * The value of Original-Recipient: for ORCPT "rfc822;xtext", "rfc822;" and
 * the decoded address (RFC 3461 4: "+HH" is the octet HH; xchars are '!'
 * to '~' but '+' and '='). Any other address type, or malformed xtext, is
 * output as received. Cleaned either way.
 */
static char *orcpt_value(const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	if (semi == NULL || (size_t)(semi - orcpt) != 6 || strncasecmp(orcpt, "rfc822", 6) != 0)
		return clean(orcpt, ADDR_MAX);
	const unsigned char *x = (const unsigned char *)semi + 1;
	size_t n = strlen((const char *)x);
	char *dec = xmalloc(n + 8);
	memcpy(dec, "rfc822;", 7);
	size_t o = 7;
	for (size_t i = 0; i < n; i++) {
		if (x[i] == '+') {
			int hi = i + 2 < n ? hexval(x[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(x[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				free(dec);
				return clean(orcpt, ADDR_MAX);
			}
			dec[o++] = (char)(hi << 4 | lo);
			i += 2;
			continue;
		}
		if (x[i] < '!' || x[i] > '~' || x[i] == '=') {
			free(dec);
			return clean(orcpt, ADDR_MAX);
		}
		dec[o++] = (char)x[i];
	}
	char *out = clean_n(dec, o, ADDR_MAX);
	free(dec);
	return out;
}

/* "x.y.z" with x in 2, 4, 5 and 1-3 digits for y and z (RFC 3463). */
static bool status_valid(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (s[d] >= '0' && s[d] <= '9')
			d++;
		if (d < 1 || d > 3)
			return false;
		s += d;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* ---- dates ---- */

/* RFC 5322 date of t in UTC, "Mon, 02 Jan 2006 15:04:05 +0000". buf holds
 * at least 40 octets. Out-of-range times are clamped. */
static void rfc5322_date(char *buf, size_t len, int64_t t)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	if (t < 0)
		t = 0;
	if (t > INT64_C(253402300799)) /* 9999-12-31T23:59:59Z */
		t = INT64_C(253402300799);
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}

/* ---- fields and text ---- */

/*
 * "Name: value" CR LF, value already cleaned (single spaces). Folded at a
 * space before FOLD_AT when possible; a token that would pass
 * LINE_MAX_OCTETS is split with CR LF SP.
 */
static void put_field(struct dbuf *b, const char *name, const char *value)
{
	dbuf_puts(b, name);
	dbuf_puts(b, ":");
	size_t col = strlen(name) + 1;
	const char *p = value;
	while (*p) {
		size_t tok = strcspn(p, " ");
		if (col + 1 + tok > FOLD_AT && col > strlen(name) + 1) {
			dbuf_puts(b, "\r\n");
			col = 0;
		}
		dbuf_putc(b, ' ');
		col++;
		while (tok > 0) {
			size_t room = LINE_MAX_OCTETS - col;
			size_t n = tok < room ? tok : room;
			dbuf_put(b, p, n);
			col += n;
			p += n;
			tok -= n;
			if (tok > 0) {
				dbuf_puts(b, "\r\n ");
				col = 1;
			}
		}
		while (*p == ' ')
			p++;
	}
	dbuf_puts(b, "\r\n");
}

/* A field whose value is prefix (a type, "dns;") and a cleaned value. */
static void put_typed_field(struct dbuf *b, const char *name, const char *type,
			    const char *value)
{
	struct dbuf v = { 0 };
	dbuf_puts(&v, type);
	dbuf_puts(&v, " ");
	dbuf_puts(&v, value);
	dbuf_putc(&v, '\0');
	put_field(b, name, v.p);
	free(v.p);
}

/* One line of the human-readable part (cleaned text), wrapped at
 * TEXT_WIDTH on spaces, continuation lines indented. */
static void put_text(struct dbuf *b, const char *text)
{
	const size_t indent = strlen(TEXT_INDENT);
	const char *p = text;
	size_t n = strlen(p);
	bool first = true;
	for (;;) {
		size_t width = first ? TEXT_WIDTH : TEXT_WIDTH - indent;
		size_t hard = first ? LINE_MAX_OCTETS : LINE_MAX_OCTETS - indent;
		size_t take = n;
		size_t skip = 0;
		if (n > width) {
			size_t s = width;
			while (s > 0 && p[s] != ' ')
				s--;
			if (s == 0) { /* one long word: up to its end, at most hard */
				s = width;
				while (s < n && s < hard && p[s] != ' ')
					s++;
			}
			take = s;
			skip = s < n && p[s] == ' ';
		}
		if (!first)
			dbuf_puts(b, TEXT_INDENT);
		dbuf_put(b, p, take);
		dbuf_puts(b, "\r\n");
		p += take + skip;
		n -= take + skip;
		if (n == 0)
			break;
		first = false;
	}
}

/* ---- the report ---- */

/* failed > delayed > delivered, relayed. Unknown actions count as failed. */
static int severity(enum dsn_action a)
{
	switch (a) {
	case DSN_DELIVERED:
	case DSN_RELAYED:
		return 1;
	case DSN_DELAYED:
		return 2;
	case DSN_FAILED:
	default:
		return 3;
	}
}

static const char *action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	case DSN_FAILED:
	default:
		return "failed";
	}
}

/* Text for a status code when the recipient has no diagnostic
 * (RFC 3463 subjects and details, the common ones). */
static const char *status_reason(const char *status)
{
	static const struct {
		const char *sd; /* "subject.detail" */
		const char *text;
	} reasons[] = {
		{ "1.0", "address error" },
		{ "1.1", "bad destination mailbox address" },
		{ "1.2", "bad destination system address" },
		{ "1.3", "bad destination mailbox address syntax" },
		{ "1.6", "destination mailbox has moved" },
		{ "1.10", "recipient address has null MX" },
		{ "2.0", "mailbox status error" },
		{ "2.1", "mailbox disabled, not accepting messages" },
		{ "2.2", "mailbox full" },
		{ "2.3", "message length exceeds administrative limit" },
		{ "3.0", "mail system error" },
		{ "3.1", "mail system full" },
		{ "3.4", "message too big for system" },
		{ "4.0", "network or routing error" },
		{ "4.1", "no answer from host" },
		{ "4.2", "bad connection" },
		{ "4.3", "directory server failure" },
		{ "4.4", "unable to route" },
		{ "4.6", "routing loop detected" },
		{ "4.7", "delivery time expired" },
		{ "5.0", "protocol error" },
		{ "6.0", "message content error" },
		{ "7.0", "security or policy status" },
		{ "7.1", "delivery not authorized, message refused" },
	};
	const char *sd = status + 2; /* status_valid() */
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (strcmp(reasons[i].sd, sd) == 0)
			return reasons[i].text;
	switch (status[0]) {
	case '2':
		return "success";
	case '4':
		return "temporary failure";
	default:
		return "permanent failure";
	}
}

/* A recipient's values, cleaned once for both parts. */
struct rcpt_text {
	enum dsn_action action;
	char *addr;
	char *orcpt;   /* or NULL */
	char status[16];
	char *remote;  /* or NULL */
	char *diag;    /* or NULL */
};

static void rcpt_text_init(struct rcpt_text *t, const struct dsn_rcpt *rc)
{
	t->action = rc->action;
	if (severity(rc->action) == 3)
		t->action = DSN_FAILED;
	t->addr = clean(rc->final_rcpt, ADDR_MAX);
	t->orcpt = rc->orcpt ? orcpt_value(rc->orcpt) : NULL;
	if (status_valid(rc->status) && strlen(rc->status) < sizeof(t->status))
		snprintf(t->status, sizeof(t->status), "%s", rc->status);
	else
		snprintf(t->status, sizeof(t->status), "%s",
			 t->action == DSN_FAILED ? "5.0.0" :
			 t->action == DSN_DELAYED ? "4.0.0" : "2.0.0");
	t->remote = NULL;
	if (rc->remote_mta && rc->remote_mta[0]) {
		t->remote = clean(rc->remote_mta, HOST_MAX);
		if (t->remote[0] == '\0') {
			free(t->remote);
			t->remote = NULL;
		}
	}
	t->diag = NULL;
	if (rc->diagnostic) {
		t->diag = clean(rc->diagnostic, DIAG_MAX);
		if (t->diag[0] == '\0') {
			free(t->diag);
			t->diag = NULL;
		}
	}
}

static void rcpt_text_free(struct rcpt_text *t)
{
	free(t->addr);
	free(t->orcpt);
	free(t->remote);
	free(t->diag);
}

/* "<addr>: host H said: DIAG" and its variants. */
static void put_rcpt_line(struct dbuf *b, const struct rcpt_text *t)
{
	struct dbuf l = { 0 };
	dbuf_printf(&l, "<%s>: ", t->addr);
	switch (t->action) {
	case DSN_DELIVERED:
	case DSN_RELAYED:
		if (t->remote && t->diag)
			dbuf_printf(&l, "delivery via %s: %s", t->remote, t->diag);
		else if (t->remote)
			dbuf_printf(&l, "relayed to %s", t->remote);
		else if (t->diag)
			dbuf_puts(&l, t->diag);
		else if (t->action == DSN_DELIVERED)
			dbuf_puts(&l, "delivered to mailbox");
		else
			dbuf_puts(&l, "relayed to a system that does not report delivery status");
		break;
	case DSN_FAILED:
	case DSN_DELAYED:
	default:
		if (t->remote && t->diag)
			dbuf_printf(&l, "host %s said: %s", t->remote, t->diag);
		else if (t->diag)
			dbuf_puts(&l, t->diag);
		else if (t->remote)
			dbuf_printf(&l, "host %s: %s (%s)", t->remote, status_reason(t->status),
				    t->status);
		else
			dbuf_printf(&l, "%s (%s)", status_reason(t->status), t->status);
		break;
	}
	dbuf_putc(&l, '\0');
	put_text(b, l.p);
	free(l.p);
}

static const char failed_intro[] =
	"I'm sorry to have to inform you that your message could not\r\n"
	"be delivered to one or more recipients. It's attached below.\r\n"
	"\r\n"
	"For further assistance, please send mail to postmaster.\r\n"
	"\r\n"
	"If you do so, please include this problem report. You can\r\n"
	"delete your own text from the attached returned message.\r\n"
	"\r\n";

static const char delayed_intro[] =
	"####################################################################\r\n"
	"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
	"####################################################################\r\n"
	"\r\n"
	"Your message could not be delivered yet to one or more recipients.\r\n";

static const char delivered_intro[] =
	"Your message was successfully delivered to the destination(s)\r\n"
	"listed below. If the message was delivered to mailbox you will\r\n"
	"receive no further notifications. Otherwise you may still receive\r\n"
	"notifications of mail delivery errors from other systems.\r\n"
	"\r\n";

/* The text/plain part's content. */
static void put_human(struct dbuf *b, const char *host, const struct rcpt_text *t, size_t n,
		      const struct dsn_report *r)
{
	bool have[4] = { false, false, false, false }; /* by severity */
	int64_t until = 0;
	for (size_t i = 0; i < n; i++) {
		have[severity(t[i].action)] = true;
		if (t[i].action == DSN_DELAYED && r->rcpts[i].will_retry_until > until)
			until = r->rcpts[i].will_retry_until;
	}
	struct dbuf l = { 0 };
	dbuf_printf(&l, "This is the mail system at host %s.", host);
	dbuf_putc(&l, '\0');
	put_text(b, l.p);
	free(l.p);
	dbuf_puts(b, "\r\n");
	if (have[3])
		dbuf_puts(b, failed_intro);
	if (have[2]) {
		dbuf_puts(b, delayed_intro);
		if (until > 0) {
			char date[64];
			rfc5322_date(date, sizeof(date), until);
			dbuf_printf(b, "The mail system will keep trying to deliver it until\r\n"
				       "%s.\r\n", date);
		} else {
			dbuf_puts(b, "The mail system will keep trying to deliver it.\r\n");
		}
		dbuf_puts(b, "You will be notified if delivery finally fails.\r\n\r\n");
	}
	if (have[1])
		dbuf_puts(b, delivered_intro);
	dbuf_puts(b, "                   The mail system\r\n");
	int kinds = have[1] + have[2] + have[3];
	static const char *const heading[4] = {
		NULL, "Delivered:", "Delayed, still being retried:", "Could not be delivered:"
	};
	for (int sev = 3; sev >= 1; sev--) {
		if (!have[sev])
			continue;
		dbuf_puts(b, "\r\n");
		if (kinds > 1) {
			dbuf_puts(b, heading[sev]);
			dbuf_puts(b, "\r\n\r\n");
		}
		for (size_t i = 0; i < n; i++)
			if (severity(t[i].action) == sev)
				put_rcpt_line(b, &t[i]);
	}
}

/* The message/delivery-status part's content. */
static void put_status(struct dbuf *b, const char *host, const struct rcpt_text *t, size_t n,
		       const struct dsn_report *r)
{
	char date[64];
	put_typed_field(b, "Reporting-MTA", "dns;", host);
	char *qid = clean(r->queue_id, HOST_MAX);
	put_field(b, "X-Fulmar-Queue-ID", qid);
	free(qid);
	if (r->envid) {
		char *envid = clean(r->envid, ADDR_MAX);
		put_field(b, "Original-Envelope-Id", envid);
		free(envid);
	}
	rfc5322_date(date, sizeof(date), r->arrival);
	put_field(b, "Arrival-Date", date);
	for (size_t i = 0; i < n; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		dbuf_puts(b, "\r\n");
		put_typed_field(b, "Final-Recipient", "rfc822;", t[i].addr);
		if (t[i].orcpt)
			put_field(b, "Original-Recipient", t[i].orcpt);
		put_field(b, "Action", action_name(t[i].action));
		put_field(b, "Status", t[i].status);
		if (t[i].remote)
			put_typed_field(b, "Remote-MTA", "dns;", t[i].remote);
		if (t[i].diag)
			put_typed_field(b, "Diagnostic-Code", "smtp;", t[i].diag);
		if (rc->last_attempt != 0) {
			rfc5322_date(date, sizeof(date), rc->last_attempt);
			put_field(b, "Last-Attempt-Date", date);
		}
		if (t[i].action == DSN_DELAYED && rc->will_retry_until != 0) {
			rfc5322_date(date, sizeof(date), rc->will_retry_until);
			put_field(b, "Will-Retry-Until", date);
		}
	}
}

/* Length of the original's header section: up to (not including) the
 * first empty line, or all of it when there is none. A bare LF or CR
 * counts as a line end. */
static size_t header_section_len(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (p[i] == '\n' || p[i] == '\r')
			return i; /* an empty line starts here */
		while (i < n && p[i] != '\n' && p[i] != '\r')
			i++;
		if (i < n && p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		if (i < n)
			i++;
	}
	return n;
}

/*
 * Appends (p, n) with every line end made CR LF (a bare LF or CR is one
 * line end) and a line longer than LINE_MAX_OCTETS broken with CR LF SP,
 * as Postfix's smtp_line_length_limit does; ends with CR LF even when the
 * original did not. Stored originals came through the SMTP reader, which
 * refuses bare line ends and (configured) over-long lines, so this copies
 * them as they are.
 */
static void put_original(struct dbuf *b, const char *p, size_t n)
{
	size_t col = 0;
	size_t i = 0;
	while (i < n) {
		size_t run = 0;
		while (i + run < n && p[i + run] != '\r' && p[i + run] != '\n' &&
		       col + run < LINE_MAX_OCTETS)
			run++;
		dbuf_put(b, p + i, run);
		col += run;
		i += run;
		if (i == n)
			break;
		if (p[i] == '\r' || p[i] == '\n') {
			if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
				i++;
			i++;
			dbuf_puts(b, "\r\n");
			col = 0;
		} else {
			dbuf_puts(b, "\r\n ");
			col = 1;
		}
	}
	if (col > 0)
		dbuf_puts(b, "\r\n");
}

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

static bool contains(const struct dbuf *b, const char *s)
{
	return b->len > 0 && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

char *dsn_build(const struct dsn_report *r, size_t *len)
{
	char *host = host_token(r->reporting_mta);
	char *qid = alnum_token(r->queue_id, 32);
	char *sender = clean(r->sender, ADDR_MAX);
	const char *orig = r->original ? r->original : "";
	size_t orig_len = r->original ? r->original_len : 0;
	size_t n = r->rcpts ? r->nrcpts : 0;

	struct rcpt_text *t = xcalloc(n, sizeof(*t));
	int worst = 0;
	for (size_t i = 0; i < n; i++) {
		rcpt_text_init(&t[i], &r->rcpts[i]);
		if (severity(t[i].action) > worst)
			worst = severity(t[i].action);
	}

	struct dbuf human = { 0 };
	struct dbuf status = { 0 };
	put_human(&human, host, t, n, r);
	put_status(&status, host, t, n, r);

	size_t ret_len = r->headers_only ? header_section_len(orig, orig_len) : orig_len;

	/* The boundary: queue id and time, varied until it occurs nowhere in
	 * what the parts carry. */
	char boundary[80];
	snprintf(boundary, sizeof(boundary), "=_%s.%lld", qid, (long long)r->now);
	for (unsigned v = 1;
	     contains(&human, boundary) || contains(&status, boundary) ||
	     (ret_len > 0 && memmem(orig, ret_len, boundary, strlen(boundary)) != NULL);
	     v++)
		snprintf(boundary, sizeof(boundary), "=_%s.%lld.%u", qid, (long long)r->now, v);

	const char *cte = has_8bit(orig, ret_len) ? "8bit" : "7bit";
	const char *subject = worst == 3 ? "Undelivered Mail Returned to Sender" :
			      worst == 2 ? "Delayed Mail (still being retried)" :
					   "Successful Mail Delivery Report";
	const char *what = worst == 3 ? "Undelivered" : worst == 2 ? "Delayed" : "Delivered";
	char date[64];
	rfc5322_date(date, sizeof(date), r->now);

	struct dbuf b = { 0 };
	dbuf_reserve(&b, human.len + status.len + ret_len + 2048);
	dbuf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host);
	struct dbuf to = { 0 };
	dbuf_printf(&to, "<%s>", sender);
	dbuf_putc(&to, '\0');
	put_field(&b, "To", to.p);
	free(to.p);
	dbuf_printf(&b, "Subject: %s\r\n", subject);
	dbuf_printf(&b, "Date: %s\r\n", date);
	dbuf_printf(&b, "Message-ID: <dsn.%s.%lld@%s>\r\n", qid, (long long)r->now, host);
	dbuf_puts(&b, "Auto-Submitted: auto-replied\r\n"
		      "MIME-Version: 1.0\r\n"
		      "Content-Type: multipart/report; report-type=delivery-status;\r\n");
	dbuf_printf(&b, "\tboundary=\"%s\"\r\n", boundary);
	dbuf_printf(&b, "Content-Transfer-Encoding: %s\r\n", cte);
	dbuf_puts(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	dbuf_printf(&b, "--%s\r\n", boundary);
	dbuf_puts(&b, "Content-Description: Notification\r\n"
		      "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	dbuf_put(&b, human.p, human.len);

	dbuf_printf(&b, "\r\n--%s\r\n", boundary);
	dbuf_puts(&b, "Content-Description: Delivery report\r\n"
		      "Content-Type: message/delivery-status\r\n\r\n");
	dbuf_put(&b, status.p, status.len);

	dbuf_printf(&b, "\r\n--%s\r\n", boundary);
	if (r->headers_only)
		dbuf_printf(&b, "Content-Description: %s Message Headers\r\n"
				"Content-Type: text/rfc822-headers\r\n", what);
	else
		dbuf_printf(&b, "Content-Description: %s Message\r\n"
				"Content-Type: message/rfc822\r\n", what);
	dbuf_printf(&b, "Content-Transfer-Encoding: %s\r\n\r\n", cte);
	put_original(&b, orig, ret_len);
	dbuf_printf(&b, "\r\n--%s--\r\n", boundary);
	dbuf_putc(&b, '\0');

	for (size_t i = 0; i < n; i++)
		rcpt_text_free(&t[i]);
	free(t);
	free(human.p);
	free(status.p);
	free(host);
	free(qid);
	free(sender);
	*len = b.len - 1;
	return b.p;
}
