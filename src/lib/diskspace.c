/*
 * diskspace: cached free-space figure of a directory's file system
 * (diskspace.h).
 */
#include "lib/diskspace.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

#include "lib/monotime.h"
#include "lib/xalloc.h"

int diskspace_avail(struct diskspace *ds, const char *dir, uint64_t *avail)
{
	int64_t now = (int64_t)(monotime() * 1000);
	if (!ds->valid || strcmp(ds->dir, dir) != 0 ||
	    now - ds->checked_ms >= DISKSPACE_INTERVAL_MS) {
		struct statvfs sv;
		strlcpy_safe(ds->dir, dir, sizeof(ds->dir));
		ds->valid = true;
		ds->checked_ms = now;
		if (statvfs(dir, &sv) < 0) {
			ds->err = errno;
			ds->avail = 0;
		} else {
			ds->err = 0;
			ds->avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
		}
	}
	if (ds->err) {
		errno = ds->err;
		return -1;
	}
	*avail = ds->avail;
	return 0;
}
