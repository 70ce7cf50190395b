/*
 * qfile: the on-disk format of a queue file, and its writer and reader.
 *
 * A queue file is a sequence of records: one type octet, a 4-octet
 * big-endian length, then that many octets of payload.
 *
 *   'V' "FULMAR1"                 format version, always first
 *   'I' queue id
 *   'T' arrival time, 8 octets big-endian microseconds
 *   'C' client: fields (see below) h=helo, a=address, p=protocol word
 *   'S' reverse-path text ("" for <>)
 *   'P' parameters: fields u=SMTPUTF8 (1 octet), b=BODY, r=RET, e=ENVID, x=AUTH
 *   'R' one per recipient: fields a=address, o=original, c=ORCPT, n=NOTIFY
 *   'M' start of content (empty payload)
 *   'D' content octets, any number of records, each at most QFILE_CHUNK_MAX
 *   'F' optional, last before 'E': octets that go in front of the content
 *       when it is read (a DKIM-Signature made once the body was seen);
 *       at most QFILE_CHUNK_MAX, not counted in the content length
 *   'E' end: 8 octets content length, 4 octets CRC-32 of every octet of the
 *       file before this record. Always last; nothing may follow it.
 *
 * Fields inside 'C', 'P' and 'R' are: one tag octet, a 2-octet big-endian
 * length, the value. Unknown tags are skipped (forward compatibility);
 * unknown record types before 'M' make the file corrupt.
 *
 * A file is valid only if it is entirely well-formed, ends with 'E', and the
 * CRC and length match. Files are read back as untrusted input: every length
 * is checked against what remains and against fixed caps.
 */
#ifndef FULMAR_QFILE_H
#define FULMAR_QFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue/envelope.h"

#define QFILE_CHUNK_MAX 65536
#define QFILE_HEADER_MAX (8u << 20) /* envelope records, in total */
#define QFILE_END_SIZE 17           /* 'E' record: 1 + 4 + 8 + 4 */

#define QFILE_OUT_MAX (128u * 1024) /* writer buffer: one write(2) per fill */

/* Writer: records are encoded into buf and written when it fills, so a
 * typical message costs one or two write(2) calls. The caller owns fd. */
struct qfile_writer {
	int fd;
	uint32_t crc;          /* of every octet written so far */
	uint64_t content_len;
	uint64_t file_len;     /* octets written or buffered */
	int error;             /* first errno seen; 0 when fine */
	size_t buflen;
	long open_d;           /* offset in buf of the open D record's header, or -1 */
	bool whole;            /* after qfile_write_end: buf holds the whole file */
	unsigned char buf[QFILE_OUT_MAX];
};

/* Start writing to an open, empty file. */
void qfile_writer_init(struct qfile_writer *w, int fd);
/* Envelope records (V, I, T, C, S, P, R..., M). */
void qfile_write_envelope(struct qfile_writer *w, const struct envelope *env);
/* Content octets (buffered into D records). */
void qfile_write_content(struct qfile_writer *w, const char *data, size_t len);
/* The F record: octets delivered in front of the content (after every
 * qfile_write_content, before qfile_write_end; 1..QFILE_CHUNK_MAX). */
void qfile_write_prefix(struct qfile_writer *w, const char *data, size_t len);
/* Flush and write the E record. Returns 0, or -1 with w->error set. */
int qfile_write_end(struct qfile_writer *w);
/* After a successful qfile_write_end that wrote the whole file at once
 * (w->whole): the octets a delivery sends (the F record's, then the
 * content), in one new buffer (free()). -1 when the file was written in
 * several fills, or memory is short. */
int qfile_writer_content(const struct qfile_writer *w, size_t content_off,
			 char **out, size_t *outlen);

/* Reader results. */
enum qfile_status {
	QFILE_OK = 0,
	QFILE_IO,      /* read error: errno tells */
	QFILE_CORRUPT, /* malformed, truncated, no E record, bad CRC */
};

/*
 * Read the envelope (records up to 'M') of the file open on fd into env
 * (initialized by the caller). *content_off receives the offset of the
 * first record after 'M'. Checks that the file ends with a well-formed E
 * record, but not the CRC (see qfile_read_content).
 */
enum qfile_status qfile_read_envelope(int fd, struct envelope *env,
				      off_t *content_off, char *err, size_t errlen);

/* Receives content octets; returns 0 or -1 to stop. */
typedef int (*qfile_content_fn)(void *arg, const char *data, size_t len);

/*
 * Stream the content (the F record's octets first, when there is one,
 * then the D records) from content_off to the E record through fn,
 * verifying the CRC of the whole file and the content length. Returns
 * QFILE_OK only when all is consistent; on QFILE_CORRUPT some content may
 * already have gone to fn, which the caller must discard.
 */
enum qfile_status qfile_read_content(int fd, off_t content_off,
				     qfile_content_fn fn, void *arg,
				     char *err, size_t errlen);

#endif
