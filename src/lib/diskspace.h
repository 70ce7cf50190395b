/*
 * diskspace: the free space of the file system that holds a directory,
 * for refusing new mail before the disk is full (queue.min_free, as
 * Postfix's queue_minfree). statvfs is asked at most once per interval;
 * in between the last figure is used.
 *
 * Ownership: the caller owns the struct (static or embedded, zeroed
 * before first use); it holds no resources. Not thread-safe: one owner
 * thread (the SMTP sessions' event loop).
 */
#ifndef FULMAR_DISKSPACE_H
#define FULMAR_DISKSPACE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define DISKSPACE_INTERVAL_MS 1000

struct diskspace {
	char dir[PATH_MAX];  /* the directory the figure is for */
	bool valid;
	int64_t checked_ms;  /* CLOCK_MONOTONIC of the last statvfs */
	uint64_t avail;      /* f_bavail * f_frsize then */
	int err;             /* errno of the last statvfs, 0 if it worked */
};

/* Octets available to unprivileged users on dir's file system, at most
 * DISKSPACE_INTERVAL_MS old (a new dir is asked at once). 0 with *avail
 * set, or -1 with errno when statvfs fails (also cached). */
int diskspace_avail(struct diskspace *ds, const char *dir, uint64_t *avail);

#endif
