/*
 * smtp_cmd: splits one SMTP command line (without its CRLF) into a verb and
 * an argument, and parses the ESMTP parameters of MAIL and RCPT
 * (RFC 5321 4.1.1, RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8,
 * RFC 3461 DSN: RET, ENVID, NOTIFY, ORCPT, RFC 4954 AUTH=).
 *
 * Pure functions over (ptr,len) bytes: no allocation, no I/O.
 */
#ifndef FULMAR_SMTP_CMD_H
#define FULMAR_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_HELP,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	/* Everything after the verb and one separating space ("FROM:<a@b> X=1"
	 * for MAIL); points into the parsed line; may be empty. */
	const char *arg;
	size_t arg_len;
};

/* Verbs are case-insensitive. A line holding a NUL octet or any control
 * character other than HT yields SMTP_VERB_UNKNOWN with *bad_octet set. */
void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out,
		    bool *bad_octet);

/* The verb's name in upper case ("MAIL"), for logs; "?" for unknown. */
const char *smtp_cmd_verb_name(enum smtp_verb verb);

/*
 * Argument of MAIL / RCPT: "FROM:" or "TO:" (case-insensitive), optional
 * spaces, then the path. Returns the offset of '<' within arg, or -1 when
 * the keyword is missing or no '<' follows.
 */
long smtp_cmd_path_offset(const char *arg, size_t len, const char *keyword);

/* Result of parsing parameters: maps onto SMTP replies. */
enum smtp_param_status {
	SMTP_PARAM_OK = 0,
	SMTP_PARAM_SYNTAX,       /* 501 5.5.4: malformed parameter list/value */
	SMTP_PARAM_UNKNOWN,      /* 555 5.5.4: unrecognized or duplicate keyword */
	SMTP_PARAM_SIZE_LIMIT,   /* 552 5.3.4: SIZE= exceeds the caller's limit */
};

enum smtp_body { SMTP_BODY_UNSPEC = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_UNSPEC = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_ENVID_MAX 100   /* RFC 3461 4.4: at most 100 characters */
#define SMTP_ORCPT_MAX 500   /* RFC 3461 4.2: addr-type ";" xtext, at most 500 */
#define SMTP_AUTH_PARAM_MAX 500

struct smtp_mail_params {
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	bool has_envid;
	char envid[SMTP_ENVID_MAX + 1];      /* xtext as received, validated */
	bool has_auth;
	char auth[SMTP_AUTH_PARAM_MAX + 1];  /* xtext or "<>" as received */
};

enum {
	SMTP_NOTIFY_NEVER = 1 << 0,
	SMTP_NOTIFY_SUCCESS = 1 << 1,
	SMTP_NOTIFY_FAILURE = 1 << 2,
	SMTP_NOTIFY_DELAY = 1 << 3,
};

struct smtp_rcpt_params {
	unsigned notify;                     /* 0 when NOTIFY was absent */
	bool has_orcpt;
	char orcpt[SMTP_ORCPT_MAX + 1];      /* "addr-type;xtext" as received */
};

/*
 * Parameters are space-separated "KEYWORD[=value]" items (RFC 5321 4.1.2
 * esmtp-param). Keywords are case-insensitive; each may appear once.
 * max_size: the server's message size limit (0 = none); a SIZE= above it
 * gives SMTP_PARAM_SIZE_LIMIT. allow_utf8: SMTPUTF8 in force (permits
 * UTF-8 in ORCPT's utf-8-addr forms). On error, err receives a short
 * human-readable reason (NUL-ended, truncated to errlen).
 */
enum smtp_param_status smtp_mail_params_parse(const char *s, size_t len,
					      uint64_t max_size,
					      struct smtp_mail_params *out,
					      char *err, size_t errlen);
enum smtp_param_status smtp_rcpt_params_parse(const char *s, size_t len,
					      bool allow_utf8,
					      struct smtp_rcpt_params *out,
					      char *err, size_t errlen);

/* RFC 3461 4 xtext: printable US-ASCII except "+" and "=", with "+XX"
 * (upper-case hex) escapes. True when s[0..len) is valid xtext. */
bool smtp_xtext_valid(const char *s, size_t len);

/*
 * BDAT argument (RFC 3030): "chunk-size [LAST]". Returns false on syntax
 * error. chunk-size is 1 to 20 digits and must fit in uint64_t.
 */
bool smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, bool *last);

#endif
