/*
 * maildir: writes one queued message into one or more Maildirs
 * (https://cr.yp.to/proto/maildir.html): each copy is written in tmp/,
 * fsynced, linked into new/ under its final name, and new/ is fsynced.
 * Only then is the copy reported delivered.
 *
 * Names are deterministic (the caller derives them from the queue id and
 * the recipient index), so delivering again after a crash finds the copy
 * already in new/ (or, for a recovered message, in cur/) instead of
 * writing a second one: local delivery is exactly-once.
 *
 * The stored copy starts with Return-Path: and Delivered-To: headers, then
 * the message with CR LF line ends turned into LF (Maildir convention).
 *
 * Blocking file I/O: called from delivery worker threads only.
 */
#ifndef FULMAR_MAILDIR_H
#define FULMAR_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct maildir_target {
	/* in */
	const char *maildir;      /* the Maildir's top directory */
	const char *delivered_to; /* Delivered-To: value */
	const char *name;         /* file name in tmp/ and new/ */
	/* out */
	int err;                  /* 0 when delivered, else an errno */
	bool duplicate;           /* the copy was already there */
	/* private */
	int fd;
};

/*
 * Deliver the content of the queue file open on qfd (content records from
 * content_off) to every target. search_cur: also look in cur/ for a copy
 * already delivered (after a crash). Returns 0 when the queue file read
 * back intact (each target's err tells its own fate), -1 when the queue
 * file is corrupt or unreadable (err filled; nothing was delivered).
 */
int maildir_deliver(int qfd, off_t content_off, const char *return_path,
		    struct maildir_target *targets, size_t n, bool search_cur,
		    bool sync_dirs, char *err, size_t errlen);

/*
 * The directory-fsync step on its own, for callers that deliver several
 * messages and then make all their new/ entries durable at once (pass
 * sync_dirs = false to maildir_deliver, then this over every target).
 * A target whose directory cannot be fsynced gets that errno.
 */
void maildir_sync_new(struct maildir_target **targets, size_t n);

/*
 * CR LF -> LF, incrementally: a CR at the end of data is held in
 * *pending_cr until the next call decides it (flush a held CR yourself at
 * the end). out must have room for len + 1 octets. Returns octets written.
 */
size_t maildir_lf_convert(bool *pending_cr, const char *data, size_t len, char *out);

/*
 * The file name of a message's copy for one recipient:
 * "ARRIVAL.QqueueidRindex.HOST", with '/' and ':' in HOST escaped as \057
 * and \072 (Maildir spec). Deterministic, so a repeated delivery finds the
 * copy it made before (see above); unique, since queue ids are.
 */
void maildir_name(char *buf, size_t len, long long arrival_s, const char *queue_id,
		  size_t rcpt_index, const char *host);

/*
 * fsync each distinct "DIR/new" of dirs[0..n) once; errs[i] receives 0 or
 * the errno of the fsync that covers dirs[i]. NULL entries are skipped.
 */
void maildir_sync_dirs(const char *const *dirs, size_t n, int *errs);

/* Create dir, dir/tmp, dir/new and dir/cur (mode 0700) as needed. */
int maildir_create(const char *dir);

#endif
