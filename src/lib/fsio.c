/*
 * fsio: durable-I/O wrappers and their fault-injection switch (fsio.h).
 */
#include "lib/fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum fault_op { OP_WRITE, OP_FSYNC, OP_RENAME, OP_LINK, OP_OPEN, OP_COUNT };

static const char *const op_names[OP_COUNT] = { "write", "fsync", "rename",
						"link", "open" };
static int fault_op = -1;
static long fault_after;
static long fault_count; /* 0: every call from fault_after on */
static int fault_errno;
static atomic_long op_calls[OP_COUNT];

static int errno_by_name(const char *s)
{
	static const struct {
		const char *name;
		int value;
	} names[] = { { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		      { "EROFS", EROFS }, { "EACCES", EACCES } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].value;
	return EIO;
}

void fsio_init_faults(void)
{
	fault_op = -1;
	fault_count = 0;
	for (int i = 0; i < OP_COUNT; i++)
		atomic_store(&op_calls[i], 0);
	const char *spec = getenv("FULMAR_FAULT");
	if (spec == NULL || *spec == '\0')
		return;
	char buf[64];
	size_t n = strnlen(spec, sizeof(buf) - 1);
	memcpy(buf, spec, n);
	buf[n] = '\0';
	char *c1 = strchr(buf, ':');
	char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c2 == NULL)
		return;
	char *c3 = strchr(c2 + 1, ':');
	*c1 = '\0';
	*c2 = '\0';
	if (c3 != NULL) {
		*c3 = '\0';
		fault_count = strtol(c3 + 1, NULL, 10);
		if (fault_count < 0)
			fault_count = 0;
	}
	for (int i = 0; i < OP_COUNT; i++)
		if (strcmp(buf, op_names[i]) == 0)
			fault_op = i;
	fault_after = strtol(c1 + 1, NULL, 10);
	fault_errno = errno_by_name(c2 + 1);
}

/* True when this call of op must fail (errno is then set). */
static int inject(enum fault_op op)
{
	if (fault_op != (int)op)
		return 0;
	long n = atomic_fetch_add(&op_calls[op], 1) + 1;
	if (n < fault_after || (fault_count > 0 && n >= fault_after + fault_count))
		return 0;
	errno = fault_errno;
	return 1;
}

int fsio_write_all(int fd, const void *buf, size_t len)
{
	if (inject(OP_WRITE))
		return -1;
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int fsio_fsync(int fd)
{
	if (inject(OP_FSYNC))
		return -1;
	return fsync(fd);
}

int fsio_fsync_dir(const char *path)
{
	if (inject(OP_FSYNC))
		return -1;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int fsio_rename(const char *from, const char *to)
{
	if (inject(OP_RENAME))
		return -1;
	return rename(from, to);
}

int fsio_link(const char *from, const char *to)
{
	if (inject(OP_LINK))
		return -1;
	return link(from, to);
}

int fsio_open(const char *path, int flags, mode_t mode)
{
	if (inject(OP_OPEN))
		return -1;
	return open(path, flags | O_CLOEXEC, mode);
}

ssize_t fsio_pread_all(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int fsio_mkdirs(const char *path, mode_t mode, uid_t owner_uid, gid_t owner_gid)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, mode) == 0) {
			if (owner_uid != (uid_t)-1 && chown(buf, owner_uid, owner_gid) < 0)
				return -1;
		} else if (errno != EEXIST) {
			return -1;
		}
		buf[i] = saved;
	}
	return 0;
}
