/*
 * addr_list: the header fields at the start of a message (RFC 5322 2.2)
 * and the address lists in them (RFC 5322 3.4): display names, quoted
 * strings, comments, groups ("undisclosed-recipients:;"), folded lines,
 * source routes, and UTF-8 (RFC 6532). Used by `fulmar sendmail -t` to find
 * the recipients in To:, Cc: and Bcc:.
 *
 * Pure functions over (ptr,len) bytes: no allocation, no I/O. Anyone may
 * call them. Lines may end in LF or CR LF.
 */
#ifndef FULMAR_ADDR_LIST_H
#define FULMAR_ADDR_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/smtp_addr.h"

#define ADDR_LIST_ADDR_MAX SMTP_ADDR_PATH_MAX

enum addr_list_status {
	ADDR_LIST_OK = 0,
	ADDR_LIST_SYNTAX,   /* not an address list */
	ADDR_LIST_TOO_LONG, /* an address longer than ADDR_LIST_ADDR_MAX */
	ADDR_LIST_STOPPED,  /* the callback asked to stop */
};

/*
 * One address of a list: the addr-spec with comments and folding white
 * space removed, a quoted local part kept as written (quotes included),
 * NUL-ended (len excludes the NUL). A bare local name ("root") comes
 * without '@': the caller qualifies it. Syntax beyond the structure of
 * the list (which characters a domain may hold) is the caller's to check,
 * e.g. with smtp_addr_parse. Return non-zero to stop.
 */
typedef int (*addr_list_fn)(void *arg, const char *addr, size_t len);

/* Call fn for each address of the list s[0..len) (a field's value). An
 * empty list, or a group with no members, calls it never. */
enum addr_list_status addr_list_parse(const char *s, size_t len, addr_list_fn fn,
				      void *arg);

/* One header field: "name: value" with its continuation lines. */
struct addr_list_field {
	const char *name;  /* without the colon and white space before it */
	size_t name_len;
	const char *value; /* after the colon, through its last line without
			    * the final line end (inner line ends kept) */
	size_t value_len;
	size_t start, end; /* the whole field in the header: [start, end),
			    * its final line end included */
};

/*
 * The next field of the header section hdr[0..len) at *pos, which it
 * advances. False at the end of the fields: the end of hdr, an empty line,
 * or a line that is neither a field nor a continuation (*pos is left at
 * it).
 */
bool addr_list_next_field(const char *hdr, size_t len, size_t *pos,
			  struct addr_list_field *f);

/* Past white space, folding and (nested) comments from *pos in
 * s[0..len) (RFC 5322 3.2.2 CFWS); false when a comment never ends. */
bool addr_list_skip_cfws(const char *s, size_t len, size_t *pos);

/* Is the field's name `name` (ASCII, any case)? */
bool addr_list_field_is(const struct addr_list_field *f, const char *name);

/* Length of the fields at the start of msg (where addr_list_next_field
 * stops); the empty line after them, if any, is not included. */
size_t addr_list_header_len(const char *msg, size_t len);

/*
 * Every address in the To:, Cc: and Bcc: fields of the header section
 * hdr[0..len), in order. A field that is not an address list gives its
 * status (the fields before it were reported).
 */
enum addr_list_status addr_list_recipients(const char *hdr, size_t len, addr_list_fn fn,
					   void *arg);

#endif
