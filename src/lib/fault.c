/*
 * fault: the FULMAR_FAULT switch (fault.h).
 */
#include "lib/fault.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static const char *const op_names[FAULT_OP_COUNT] = { "write", "fsync", "rename", "link",
						      "open",  "alloc", "chmod", "truncate" };
static int fault_op = -1;
static long fault_after;
static long fault_count; /* 0: every call from fault_after on */
static int fault_errno;
static atomic_long op_calls[FAULT_OP_COUNT];

static const struct {
	const char *name;
	int value;
} errno_names[] = { { "EIO", EIO },   { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		    { "EROFS", EROFS }, { "EACCES", EACCES }, { "ENOMEM", ENOMEM } };

#define NERRNO (sizeof(errno_names) / sizeof(errno_names[0]))

static int errno_by_name(const char *s)
{
	for (size_t i = 0; i < NERRNO; i++)
		if (strcmp(s, errno_names[i].name) == 0)
			return errno_names[i].value;
	return EIO;
}

static const char *errno_name(int value)
{
	for (size_t i = 0; i < NERRNO; i++)
		if (errno_names[i].value == value)
			return errno_names[i].name;
	return "?";
}

void fault_init(void)
{
	fault_op = -1;
	fault_count = 0;
	for (int i = 0; i < FAULT_OP_COUNT; i++)
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
	for (int i = 0; i < FAULT_OP_COUNT; i++)
		if (strcmp(buf, op_names[i]) == 0)
			fault_op = i;
	fault_after = strtol(c1 + 1, NULL, 10);
	fault_errno = errno_by_name(c2 + 1);
}

bool fault_inject(enum fault_op op)
{
	if (fault_op != (int)op)
		return false;
	long n = atomic_fetch_add(&op_calls[op], 1) + 1;
	if (n < fault_after || (fault_count > 0 && n >= fault_after + fault_count))
		return false;
	/* log.c writes from a stack buffer: no allocation, no recursion. */
	struct log_line l;
	log_begin(&l, LOG_WARNING, "fault_injected");
	log_str(&l, "op", op_names[op]);
	log_int(&l, "call", n);
	log_str(&l, "errno", errno_name(fault_errno));
	log_end(&l);
	errno = fault_errno;
	return true;
}
