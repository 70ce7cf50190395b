/*
 * dkim_canon: DKIM canonicalization (RFC 6376 §3.4) and the bounded
 * parser of a message's header section, shared by the signer and, later,
 * the verifier. Pure: bytes in, canonical bytes out through a callback;
 * no I/O.
 *
 * - The body canonicalizer is incremental: feed the body in chunks of any
 *   size (a CRLF may be split across two chunks); trailing empty lines are
 *   held back until a line with content shows they were not trailing, so
 *   memory is constant whatever the body.
 * - A line ends only at CRLF. A bare CR or a bare LF is an ordinary octet
 *   (the queue holds messages with CRLF line ends; SMTP rejects bare LF).
 * - A body whose last line has no CRLF is canonicalized as if the CRLF
 *   were there (the transport adds it), so a signature made before the
 *   message is sent verifies after.
 * - The header parser splits a header section into fields, each with its
 *   folded continuation lines, keeps every field (duplicates in order, for
 *   the bottom-up selection of §5.4.2), and caps the section at
 *   DKIM_HDRS_MAX_BYTES octets and DKIM_HDRS_MAX_FIELDS fields.
 *
 * Ownership: the caller owns every struct here. struct dkim_hdrs points
 * into the caller's buffer (which must outlive it) and owns its field
 * array: free it with dkim_hdrs_free.
 */
#ifndef FULMAR_DKIM_CANON_H
#define FULMAR_DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIM_HDRS_MAX_FIELDS 1000
#define DKIM_HDRS_MAX_BYTES (1024 * 1024)

enum dkim_canon_alg {
	DKIM_CANON_SIMPLE = 0,
	DKIM_CANON_RELAXED,
};

/* Where canonical octets go (a hash update, a buffer in the tests). */
typedef void (*dkim_canon_out_fn)(void *arg, const unsigned char *data, size_t len);

/* Canonical output is gathered in this many octets before each call of
 * the output function. */
#define DKIM_CANON_OUTBUF 4096

struct dkim_body_canon {
	enum dkim_canon_alg alg;
	dkim_canon_out_fn out;
	void *arg;
	uint64_t held_crlf;   /* empty lines seen and not yet written */
	uint64_t written;     /* canonical octets handed to out so far */
	bool cr;              /* the last octet fed was a CR, not yet placed */
	bool wsp;             /* relaxed: a run of SP/HTAB not yet placed */
	bool content;         /* the current line has content */
	bool finished;
	size_t olen;
	unsigned char obuf[DKIM_CANON_OUTBUF];
};

void dkim_body_canon_init(struct dkim_body_canon *c, enum dkim_canon_alg alg,
			  dkim_canon_out_fn out, void *arg);
/* Any number of chunks of the body (the octets after the empty line that
 * ends the header section), of any size, zero included. */
void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len);
/* End of the body: drops the trailing empty lines, adds the CRLF a last
 * line lacks, writes "\r\n" for an empty body under simple, and hands
 * out what is still gathered. Feeding after this is a bug (abort). */
void dkim_body_canon_finish(struct dkim_body_canon *c);

/* One header field: raw[0..raw_len) is the field as it appears, its
 * continuation lines and its final CRLF included (the last field of a
 * section may lack the CRLF). The name is raw[0..name_len) (the octets
 * before the colon, without the SP, HTAB, CR and LF before the colon);
 * colon is the offset of the first ':', or raw_len when there is none
 * (then name_len is 0 and the field matches no name). */
struct dkim_hfield {
	const char *raw;
	size_t raw_len;
	size_t name_len;
	size_t colon;
};

struct dkim_hdrs {
	struct dkim_hfield *f;
	size_t n;
};

/*
 * Split the header section buf[0..len) into fields. The section is the
 * octets before the empty line that ends it (the CRLF of its last field
 * included, the empty line's CRLF not). A line that starts with SP or
 * HTAB continues the field before it (the first line always starts a
 * field). 0 on success, -1 with err filled when the section is over
 * DKIM_HDRS_MAX_BYTES or has more than DKIM_HDRS_MAX_FIELDS fields (errno
 * E2BIG) or memory ran out for the field array (errno ENOMEM; lib/mem.h);
 * out is then empty. out must be freed with dkim_hdrs_free either way.
 */
int dkim_hdrs_parse(const char *buf, size_t len, struct dkim_hdrs *out, char *err,
		    size_t errlen);
void dkim_hdrs_free(struct dkim_hdrs *h);

/* Does field f carry the name name[0..len) (ASCII case-insensitive)? */
bool dkim_hfield_is(const struct dkim_hfield *f, const char *name, size_t len);
/* How many fields of h carry that name. */
size_t dkim_hdrs_count(const struct dkim_hdrs *h, const char *name, size_t len);

/*
 * The §5.4.2 selection for a list of names (an h= tag): the i-th name
 * picks, of the fields with that name, the last one not picked by an
 * earlier instance of the same name in the list. idx[i] is the index of
 * that field in h, or -1 when there is none left (an oversigned name).
 * idx has room for nnames entries.
 */
void dkim_hdrs_select(const struct dkim_hdrs *h, const char *const *names, size_t nnames,
		      long *idx);

/*
 * Canonical form of one header field, written to out: raw[0..len) is the
 * field (a final CRLF, when present, is not part of the canonical text
 * and is ignored). With crlf, the canonical CRLF ends the output (every
 * signed field); without (the DKIM-Signature field itself, §3.7) it does
 * not.
 * simple: the field unchanged.
 * relaxed: the name lower-cased, WSP and line breaks around the colon
 * removed, the value unfolded (every CRLF removed), each run of SP/HTAB
 * made one SP, leading and trailing SP/HTAB of the value removed.
 * A field with no colon (never selected by name) is written as a value
 * alone.
 */
void dkim_canon_header(enum dkim_canon_alg alg, const char *raw, size_t len, bool crlf,
		       dkim_canon_out_fn out, void *arg);

#endif
