/*
 * fault: the fault-injection switch that the wrappers of the operations
 * tests must be able to make fail share: fsio (file system calls) and mem
 * (fallible allocation). Nothing else calls it.
 *
 * The environment variable FULMAR_FAULT, read by fault_init() (through
 * fsio_init_faults() at start-up), has the form "OP:N:ERRNO[:COUNT]": the
 * Nth call of OP and every later one fail with ERRNO; with COUNT > 0 only
 * calls N .. N+COUNT-1 fail and the later ones succeed again. OP is one of
 * write, fsync, rename, link, open, chmod, truncate (see fsio.h) or alloc
 * (see mem.h);
 * ERRNO one of EIO, ENOSPC, EDQUOT, EROFS, EACCES, ENOMEM (an unknown name
 * is EIO). Calls are counted process-wide, from every thread, and only for
 * OP. Unset or malformed: no faults. Every injected failure is logged
 * (event=fault_injected), so a test can tell whether its fault landed.
 */
#ifndef FULMAR_FAULT_H
#define FULMAR_FAULT_H

#include <stdbool.h>

enum fault_op {
	FAULT_WRITE,
	FAULT_FSYNC,
	FAULT_RENAME,
	FAULT_LINK,
	FAULT_OPEN,
	FAULT_ALLOC,
	FAULT_CHMOD,
	FAULT_TRUNCATE,
	FAULT_OP_COUNT
};

/* Reads FULMAR_FAULT (again: the previous setting and counts are
 * forgotten first). Not thread-safe: call it before the workers start. */
void fault_init(void);

/* Counts this call of op; true when it must fail (errno is then set to
 * the spec's ERRNO). */
bool fault_inject(enum fault_op op);

#endif
