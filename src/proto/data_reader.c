/*
 * data_reader: the incremental reader of message content for DATA
 * (dot-stuffed, ended by CR LF "." CR LF) and BDAT (raw chunks). It owns
 * the end-marker rule, dot-unstuffing and the content checks (bare CR,
 * bare LF, line length, size); the caller, smtp_session, owns the socket
 * and the reply. Pure state machine: no allocation, no I/O.
 *
 * Each call scans line by line with memchr and hands the sink one
 * contiguous run per call, split only where an octet is dropped (a
 * stuffed dot) or held back (a CR at the end of the buffer, whose meaning
 * depends on the next octet). The octets sent are the same whatever the
 * split of the input, errors included: the sink gets exactly the content
 * that precedes the first offending octet.
 */
#include "proto/data_reader.h"

#include <stdlib.h>
#include <string.h>

enum reader_state {
	RS_BOL = 0, /* at the start of a line */
	RS_TEXT,    /* inside a line, the previous octet was not CR */
	RS_CR,      /* inside a line, the previous feed ended with a CR */
	RS_DOT,     /* DATA: a line began with ".", which was dropped */
	RS_DOT_CR,  /* DATA: a line began with "." CR */
	RS_DONE,    /* DATA: the end marker was consumed */
};

static void fail(struct data_reader *r, enum data_error e)
{
	if (r->error == DATA_ERR_NONE)
		r->error = e;
}

/* Send content to the sink, unless an error came first. A run that would
 * exceed size_max is cut at the limit. */
static void emit(struct data_reader *r, const char *p, size_t n,
		 data_sink_fn sink, void *arg)
{
	bool too_big = false;

	if (r->error != DATA_ERR_NONE || n == 0)
		return;
	if (r->size_max != 0 && (uint64_t)n > r->size_max - r->size) {
		n = (size_t)(r->size_max - r->size);
		too_big = true;
	}
	if (n > 0) {
		if (sink != NULL && sink(arg, p, n) != 0) {
			fail(r, DATA_ERR_SINK);
			return;
		}
		r->size += n;
	}
	if (too_big)
		fail(r, DATA_ERR_TOO_BIG);
}

/*
 * RS_TEXT at buf[i]: take the rest of the line (through its LF), or the
 * rest of the buffer when no LF is in it. Returns the new position;
 * *run is the start of the octets not yet sent.
 */
static size_t scan_text(struct data_reader *r, const char *buf, size_t len,
			size_t i, size_t *run, data_sink_fn sink, void *arg)
{
	const char *p = buf + i;
	size_t avail = len - i;
	const char *nl = memchr(p, '\n', avail);
	size_t seg = nl != NULL ? (size_t)(nl - p) : avail; /* before LF */
	bool crlf = nl != NULL && seg > 0 && p[seg - 1] == '\r';
	bool cr_held = nl == NULL && p[seg - 1] == '\r';

	if (r->error == DATA_ERR_NONE) {
		/* The first offending octet of this stretch, if any. On a tie
		 * the line length wins: a split input must give the same
		 * error, and a held CR is judged only in the next feed. */
		size_t plain = seg - (crlf || cr_held ? 1 : 0);
		const char *cr = memchr(p, '\r', plain);
		size_t bad = SIZE_MAX;
		enum data_error why = DATA_ERR_NONE;

		if (cr != NULL) {
			bad = (size_t)(cr - p);
			why = DATA_ERR_BARE_CR;
		} else if (nl != NULL && !crlf) {
			bad = seg;
			why = DATA_ERR_BARE_LF;
		}
		if (r->text_line_max != 0) {
			size_t room = r->line_len >= r->text_line_max
				? 0 : r->text_line_max - r->line_len;
			size_t last = nl != NULL ? seg : seg - 1;

			if (room <= last && room <= bad) {
				bad = room;
				why = DATA_ERR_LINE_TOO_LONG;
			}
		}
		if (why != DATA_ERR_NONE) {
			emit(r, buf + *run, i + bad - *run, sink, arg);
			fail(r, why);
		}
	}

	if (nl != NULL) {
		r->line_len += seg + 1;
		/* A bare LF ends no line: "\n.\n" and the like stay content. */
		r->state = crlf ? RS_BOL : RS_TEXT;
		return i + seg + 1;
	}
	r->line_len += seg;
	if (cr_held) {
		emit(r, buf + *run, len - 1 - *run, sink, arg);
		*run = len;
		r->state = RS_CR;
	}
	return len;
}

void data_reader_init(struct data_reader *r, bool dot_mode,
		      size_t text_line_max, uint64_t size_max)
{
	memset(r, 0, sizeof(*r));
	r->dot_mode = dot_mode;
	r->text_line_max = text_line_max;
	r->size_max = size_max;
	r->state = RS_BOL;
}

size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len,
			data_sink_fn sink, void *arg, bool *done)
{
	size_t i = 0, run = 0;

	*done = false;
	if (r->state == RS_DONE) {
		*done = true;
		return 0;
	}
	if (len == 0)
		return 0;
	while (i < len) {
		switch (r->state) {
		case RS_BOL:
			r->line_len = 0;
			r->state = RS_TEXT;
			if (r->dot_mode && buf[i] == '.') {
				emit(r, buf + run, i - run, sink, arg);
				r->line_len = 1;
				r->state = RS_DOT;
				run = ++i;
			}
			break;
		case RS_DOT:
			r->state = RS_TEXT;
			if (buf[i] == '\r') {
				/* Held: the end marker, or else a bare CR. */
				r->line_len = 2;
				r->state = RS_DOT_CR;
				run = ++i;
			}
			break;
		case RS_DOT_CR:
			if (buf[i] == '\n') {
				r->state = RS_DONE;
				*done = true;
				return i + 1; /* what follows is the next command */
			}
			fail(r, DATA_ERR_BARE_CR);
			r->state = RS_TEXT;
			break;
		case RS_CR:
			/* Only ever at i == 0: the CR ended the previous feed. */
			if (buf[i] != '\n') {
				fail(r, DATA_ERR_BARE_CR);
				r->state = RS_TEXT;
				break;
			}
			emit(r, buf + run, i - run, sink, arg);
			emit(r, "\r", 1, sink, arg);
			run = i;
			if (r->text_line_max != 0 &&
			    r->line_len >= r->text_line_max)
				fail(r, DATA_ERR_LINE_TOO_LONG);
			r->line_len++;
			r->state = RS_BOL;
			i++;
			break;
		case RS_TEXT:
			i = scan_text(r, buf, len, i, &run, sink, arg);
			break;
		default: /* RS_DONE returned above; anything else is a bug */
			abort();
		}
	}
	emit(r, buf + run, i - run, sink, arg);
	return i;
}

enum data_error data_reader_finish(struct data_reader *r)
{
	if (r->state == RS_CR) {
		fail(r, DATA_ERR_BARE_CR);
		r->state = RS_TEXT;
	}
	return r->error;
}
