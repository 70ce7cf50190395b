/*
 * privileges: see privileges.h.
 */
#define _XOPEN_SOURCE 700
#include "cli/privileges.h"

#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/fsio.h"
#include "lib/xalloc.h"

int privileges_resolve(const char *user, struct run_user *ru, char *err, size_t errlen)
{
	memset(ru, 0, sizeof(*ru));
	ru->uid = (uid_t)-1;
	ru->gid = (gid_t)-1;
	if (geteuid() != 0)
		return 0;
	if (user == NULL || user[0] == '\0') {
		snprintf(err, errlen, "started as root but server.user is not set: "
				      "Fulmar will not serve as root");
		return -1;
	}
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "server.user '%s' does not exist (create it with "
				      "`useradd --system --no-create-home %s`)", user, user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "server.user '%s' is root: choose an unprivileged user",
			 user);
		return -1;
	}
	ru->switch_user = true;
	ru->uid = pw->pw_uid;
	ru->gid = pw->pw_gid;
	strlcpy_safe(ru->name, user, sizeof(ru->name));
	return 0;
}

static uid_t tree_uid;
static gid_t tree_gid;

static int chown_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (lchown(path, tree_uid, tree_gid) < 0)
		return -1;
	return 0;
}

int privileges_prepare_dir(const struct run_user *ru, const char *path, mode_t mode,
			   bool recursive)
{
	if (fsio_mkdirs(path, mode, ru->uid, ru->gid) < 0)
		return -1;
	if (!ru->switch_user)
		return 0;
	if (!recursive)
		return chown(path, ru->uid, ru->gid);
	tree_uid = ru->uid;
	tree_gid = ru->gid;
	return nftw(path, chown_entry, 16, FTW_PHYS);
}

int privileges_drop(const struct run_user *ru, char *err, size_t errlen)
{
	if (!ru->switch_user)
		return 0;
	if (setgroups(0, NULL) < 0 || setgid(ru->gid) < 0 || setuid(ru->uid) < 0) {
		snprintf(err, errlen, "cannot switch to user %s: %s", ru->name,
			 strerror_safe(errno));
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0) {
		snprintf(err, errlen, "root privileges could be regained after switching to %s",
			 ru->name);
		return -1;
	}
	return 0;
}
