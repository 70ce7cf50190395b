/*
 * smtp_reply: a bounded, incremental parser of SMTP server replies
 * (RFC 5321 §4.2), for the SMTP client. Pure: bytes in, replies out; no
 * I/O. A hostile server cannot make it grow memory or lose its place:
 * lines, the kept text and the number of continuation lines are capped,
 * and anything malformed (bad code, mixed codes in one reply, a bare LF or
 * bare CR, an over-long line, too many lines) is a protocol error after
 * which the parser stays in error.
 *
 * Ownership: the caller owns struct smtp_reply_parser (no heap inside).
 */
#ifndef FULMAR_SMTP_REPLY_H
#define FULMAR_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 2048   /* octets per line, CRLF included */
#define SMTP_REPLY_LINES_MAX 100   /* lines per reply */
#define SMTP_REPLY_TEXT_MAX 1024   /* octets of text kept per reply */

struct smtp_reply {
	int code;            /* 200..599 */
	char enh[16];        /* "5.1.1" when the first line carried one, else "" */
	/* Text of every line without code, separator and enhanced code, joined
	 * with "\n" (the first line's text first), NUL-ended, truncated to
	 * SMTP_REPLY_TEXT_MAX - 1 octets; control characters replaced by '?'. */
	char text[SMTP_REPLY_TEXT_MAX];
	size_t nlines;
	/* The EHLO keywords are the text lines: see smtp_reply_has_keyword. */
};

enum smtp_reply_status {
	SMTP_REPLY_MORE = 0, /* need more input */
	SMTP_REPLY_DONE,     /* *out holds a complete reply */
	SMTP_REPLY_ERROR,    /* protocol error; see smtp_reply_parser.error */
};

struct smtp_reply_parser {
	struct smtp_reply cur;
	size_t line_len;     /* octets of the current line seen so far */
	bool in_reply;       /* a continuation line was seen */
	bool failed;
	const char *error;   /* static text when failed */
	/* internal scratch for the current line */
	char line[SMTP_REPLY_LINE_MAX];
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);

/*
 * Consume input from buf (len octets). Stops after the first complete
 * reply (DONE, *out filled, *used = octets consumed up to and including
 * its last CRLF), when the input is used up (MORE, *used = len: partial
 * lines are kept inside the parser), or on a protocol error (ERROR).
 * Call again with the rest of the input for pipelined replies.
 * *out is written only on DONE. On ERROR, *used counts the octets up to and
 * including the one found wrong; once failed, every call returns ERROR with
 * *used = 0 (start again with smtp_reply_parser_init on a new connection).
 * A line is 3 digits (200..599) then ' ', '-' or the end of the line
 * ("250\r\n" is a last line with empty text).
 */
enum smtp_reply_status smtp_reply_parse(struct smtp_reply_parser *p, const char *buf,
					size_t len, size_t *used, struct smtp_reply *out);

/* For EHLO replies: does a line of r's text start with the keyword kw
 * (case-insensitive, followed by end of line or a space)? If so and arg
 * is not NULL, *arg points at the rest of that line within r->text (after
 * the space) and *arglen is its length (arglen may be NULL too). The first
 * line is the server's domain and greeting (RFC 5321 4.1.1.1), so it is
 * never taken for a keyword. Lines cut by the text cap are seen as cut. */
bool smtp_reply_has_keyword(const struct smtp_reply *r, const char *kw,
			    const char **arg, size_t *arglen);

/* "250 2.0.0 text" style one-line rendering for logs and DSNs: code, the
 * enhanced code when present, the text with "\n" turned into " ".
 * Always NUL-ends buf when len > 0, truncating what does not fit. */
void smtp_reply_format(const struct smtp_reply *r, char *buf, size_t len);

#endif
