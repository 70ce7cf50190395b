/*
 * data_reader: the incremental reader of message content, for DATA
 * (dot-terminated, dot-stuffed, RFC 5321 4.5.2) and for BDAT chunks
 * (RFC 3030, raw octets).
 *
 * Feed it whatever the socket delivered; it copies the message octets out
 * through a sink callback, byte-exactly (dot-unstuffed for DATA), and tells
 * when DATA's end marker was reached. Only CR LF "." CR LF ends DATA; the
 * CR LF before the dot belongs to the message. A bare LF or a bare CR
 * (anything but CR immediately followed by LF) anywhere in the content is
 * an error (SMTP smuggling, CVE-2023-51764) but never ends or splits the
 * message: the reader keeps consuming until the real end and reports the
 * error then. Likewise for a line longer than the text line limit and for
 * a message larger than the size limit. After the first error nothing more
 * is sent to the sink.
 *
 * Pure state machine: no allocation, no I/O. Resumes after a partial read
 * at any octet boundary.
 */
#ifndef FULMAR_DATA_READER_H
#define FULMAR_DATA_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum data_error {
	DATA_ERR_NONE = 0,
	DATA_ERR_BARE_LF,      /* 550 5.5.2? see smtp_session: bare LF/CR */
	DATA_ERR_BARE_CR,
	DATA_ERR_LINE_TOO_LONG, /* 500 5.5.2? longer than text_line_max */
	DATA_ERR_TOO_BIG,       /* 552 5.3.4 */
	DATA_ERR_SINK,          /* the sink returned an error (I/O) */
};

/* Receives message octets; returns 0, or -1 to report an I/O failure. */
typedef int (*data_sink_fn)(void *arg, const char *buf, size_t len);

struct data_reader {
	/* configuration, set by data_reader_init */
	bool dot_mode;            /* true for DATA, false for BDAT */
	size_t text_line_max;     /* octets per line including CR LF; 0 = none */
	uint64_t size_max;        /* octets of content; 0 = none */
	/* state: private */
	int state;
	size_t line_len;
	uint64_t size;            /* content octets accepted so far */
	enum data_error error;    /* first error seen */
};

void data_reader_init(struct data_reader *r, bool dot_mode,
		      size_t text_line_max, uint64_t size_max);

/*
 * Consume up to len octets. Returns how many were consumed; *done becomes
 * true when (DATA mode only) the end marker was consumed, in which case
 * octets after it were not consumed and belong to the next command.
 * In BDAT mode every octet is consumed and *done stays false.
 */
size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len,
			data_sink_fn sink, void *arg, bool *done);

/*
 * BDAT mode: call after the LAST chunk. Settles a CR left pending at the
 * end of the content (it is a bare CR). Returns the reader's error.
 */
enum data_error data_reader_finish(struct data_reader *r);

/* Content octets sent to the sink so far (after unstuffing). */
static inline uint64_t data_reader_size(const struct data_reader *r)
{
	return r->size;
}

#endif
