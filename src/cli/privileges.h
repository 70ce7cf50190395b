/*
 * privileges: start-up as root — prepare what the unprivileged user will
 * need (directories it owns), then drop to that user for good.
 */
#ifndef FULMAR_PRIVILEGES_H
#define FULMAR_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct run_user {
	bool switch_user; /* started as root: switch after binding */
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* Decide who we will run as. -1 with err filled when started as root with
 * no usable server.user. */
int privileges_resolve(const char *user, struct run_user *ru, char *err, size_t errlen);
/* Create path (and parents) and give what is created, plus path itself and
 * everything below it when recursive, to the run user. */
int privileges_prepare_dir(const struct run_user *ru, const char *path, mode_t mode,
			   bool recursive);
/* Drop root: supplementary groups, gid, uid; verifies root cannot be
 * regained. -1 with err filled on failure. */
int privileges_drop(const struct run_user *ru, char *err, size_t errlen);

#endif
