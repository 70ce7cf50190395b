/*
 * fsio: durable-I/O wrappers (fsio.h); their faults come from lib/fault.
 */
#include "lib/fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fault.h"

void fsio_init_faults(void)
{
	fault_init();
}

int fsio_write_all(int fd, const void *buf, size_t len)
{
	if (fault_inject(FAULT_WRITE))
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
	if (fault_inject(FAULT_FSYNC))
		return -1;
	return fsync(fd);
}

int fsio_fdatasync(int fd)
{
	if (fault_inject(FAULT_FSYNC))
		return -1;
	return fdatasync(fd);
}

int fsio_fsync_dir(const char *path)
{
	if (fault_inject(FAULT_FSYNC))
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

int fsio_fchmod(int fd, mode_t mode)
{
	if (fault_inject(FAULT_CHMOD))
		return -1;
	return fchmod(fd, mode);
}

int fsio_ftruncate(int fd, off_t len)
{
	if (fault_inject(FAULT_TRUNCATE))
		return -1;
	return ftruncate(fd, len);
}

int fsio_rename(const char *from, const char *to)
{
	if (fault_inject(FAULT_RENAME))
		return -1;
	return rename(from, to);
}

int fsio_rename_noreplace(const char *from, const char *to)
{
	if (fault_inject(FAULT_RENAME))
		return -1;
	return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

int fsio_link(const char *from, const char *to)
{
	if (fault_inject(FAULT_LINK))
		return -1;
	return link(from, to);
}

int fsio_open(const char *path, int flags, mode_t mode)
{
	if (fault_inject(FAULT_OPEN))
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
