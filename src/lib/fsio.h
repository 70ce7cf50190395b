/*
 * fsio: thin wrappers over the file system calls that durability depends
 * on (write, fsync, rename, link, unlink, open). Every queue and Maildir
 * write goes through them, so a test can make any of them fail.
 *
 * Fault injection (lib/fault.h): the environment variable FULMAR_FAULT,
 * read once at start-up, has the form "OP:N:ERRNO[:COUNT]" (for example
 * "fsync:3:EIO" or "write:1:ENOSPC:2"): the Nth call of OP and every later
 * one fail with ERRNO; with COUNT > 0, only COUNT calls fail (N ..
 * N+COUNT-1) and the later ones succeed again, as when space comes back.
 * OP is one of write, fsync (fsio_fsync and fsio_fsync_dir, counted
 * together), rename, link, open, chmod, truncate, or alloc for the fallible
 * allocations of lib/mem.h; ERRNO one of EIO, ENOSPC, EDQUOT, EROFS, EACCES, ENOMEM.
 * Calls are counted process-wide, from every thread, and only for OP.
 * Unset: no faults.
 */
#ifndef FULMAR_FSIO_H
#define FULMAR_FSIO_H

#include <stddef.h>
#include <sys/types.h>

/* Reads FULMAR_FAULT (again: the previous setting and counts are
 * forgotten first), for fsio and mem alike (fault_init()). */
void fsio_init_faults(void);

/* Writes all of buf, retrying short writes and EINTR. 0 or -1 (errno). */
int fsio_write_all(int fd, const void *buf, size_t len);
int fsio_fsync(int fd);
/* The file's octets and what reading them needs (its length, its blocks),
 * not its times: no journal commit for a file written over in place. */
int fsio_fdatasync(int fd);
/* fsync the directory at path. */
int fsio_fsync_dir(const char *path);
int fsio_rename(const char *from, const char *to);
/* rename that never replaces: -1 (EEXIST) when to exists; counted as a
 * rename. */
int fsio_rename_noreplace(const char *from, const char *to);
int fsio_link(const char *from, const char *to);
int fsio_open(const char *path, int flags, mode_t mode);
int fsio_fchmod(int fd, mode_t mode);
int fsio_ftruncate(int fd, off_t len);
/* pread everything asked for unless EOF comes first; returns octets read
 * or -1. */
ssize_t fsio_pread_all(int fd, void *buf, size_t len, off_t off);

/* mkdir -p with the given mode; when owner_uid != (uid_t)-1, directories
 * it creates are chowned to owner_uid:owner_gid. 0 or -1 (errno). */
int fsio_mkdirs(const char *path, mode_t mode, uid_t owner_uid, gid_t owner_gid);

#endif
