/*
 * smtp_addr: parser for RFC 5321 section 4.1.2 paths (Reverse-path and
 * Forward-path), as they appear after "MAIL FROM:" and "RCPT TO:".
 *
 * Pure function over bytes: no allocation, no I/O. Accepts the null path
 * "<>", an optional source route ("@a,@b:user@domain", accepted and ignored
 * per RFC 5321 appendix C), dot-atom and quoted-string local parts, domain
 * names and address literals ([192.0.2.1], [IPv6:2001:db8::1]). UTF-8 in
 * the local part or domain is allowed only when the caller says so
 * (SMTPUTF8, RFC 6531). Enforces the limits of RFC 5321 section 4.5.3.1:
 * local part 64 octets, domain 255 octets, path 256 octets.
 */
#ifndef FULMAR_SMTP_ADDR_H
#define FULMAR_SMTP_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_ADDR_LOCAL_MAX 64
#define SMTP_ADDR_DOMAIN_MAX 255
#define SMTP_ADDR_PATH_MAX 256

enum smtp_addr_status {
	SMTP_ADDR_OK = 0,
	SMTP_ADDR_SYNTAX,      /* malformed path: 501 5.1.3 (or 5.1.7 for senders) */
	SMTP_ADDR_TOO_LONG,    /* a limit of 4.5.3.1 exceeded: 501 5.1.3 */
	SMTP_ADDR_NEED_UTF8,   /* 8-bit octets without SMTPUTF8: 553 5.6.7 */
	SMTP_ADDR_NULL_DENIED, /* "<>" where a null path is not allowed */
};

struct smtp_addr {
	bool is_null;           /* the path was "<>" */
	bool local_quoted;      /* the local part was a quoted-string */
	bool domain_literal;    /* the domain is an address literal */
	bool has_utf8;          /* an octet >= 0x80 appeared */
	/* Local part with quotes and backslash escapes removed, NUL-ended. */
	char local[SMTP_ADDR_LOCAL_MAX + 1];
	/* Domain as written (address literal with its brackets), NUL-ended. */
	char domain[SMTP_ADDR_DOMAIN_MAX + 1];
	/* "local@domain" exactly as written on the wire, without the angle
	 * brackets and without any source route; "" for the null path. */
	char text[SMTP_ADDR_PATH_MAX + 1];
};

/*
 * Parse a path that starts at s[0] == '<'. On success *consumed is the
 * number of octets up to and including the closing '>'; the caller parses
 * ESMTP parameters after it. allow_null: accept "<>" (MAIL FROM only).
 * allow_utf8: the session declared SMTPUTF8 on this MAIL command.
 */
enum smtp_addr_status smtp_addr_parse(const char *s, size_t len,
				      bool allow_null, bool allow_utf8,
				      struct smtp_addr *out, size_t *consumed);

/* True when the domain is a syntactically valid dot-separated domain name
 * (letters, digits, hyphens, and UTF-8 U-labels when allow_utf8). */
bool smtp_addr_domain_valid(const char *d, size_t len, bool allow_utf8);

/* Length (2 to 4) of the well-formed UTF-8 sequence that starts at s[0],
 * or 0 when s[0] does not start one (ASCII, a stray continuation octet, an
 * overlong form, a surrogate, a code point above U+10FFFF, or a sequence
 * cut short by len). Shared with smtp_cmd (ORCPT under SMTPUTF8). */
size_t smtp_addr_utf8_len(const char *s, size_t len);

#endif
