/*
 * maildir: Maildir writer (maildir.h).
 */
#include "delivery/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsio.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

int maildir_create(const char *dir)
{
	char path[PATH_MAX];
	if (fsio_mkdirs(dir, 0700, (uid_t)-1, (gid_t)-1) < 0)
		return -1;
	static const char *const subs[] = { "tmp", "new", "cur" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
	}
	return 0;
}

static bool already_delivered(const struct maildir_target *t, bool search_cur)
{
	char path[PATH_MAX];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/new/%s", t->maildir, t->name);
	if (stat(path, &sb) == 0)
		return true;
	if (!search_cur)
		return false;
	/* A reader may have moved it to cur/ as NAME or NAME:2,FLAGS. */
	snprintf(path, sizeof(path), "%s/cur", t->maildir);
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	size_t n = strlen(t->name);
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)) != NULL)
		found = strncmp(e->d_name, t->name, n) == 0 &&
			(e->d_name[n] == '\0' || e->d_name[n] == ':');
	closedir(d);
	return found;
}

/* Streams content to every open target, CR LF -> LF. */
struct copier {
	struct maildir_target *targets;
	size_t n;
	bool pending_cr;
	char *out;
};

static void write_to_all(struct copier *c, const char *p, size_t len)
{
	for (size_t i = 0; i < c->n; i++) {
		struct maildir_target *t = &c->targets[i];
		if (t->fd >= 0 && t->err == 0 && fsio_write_all(t->fd, p, len) < 0)
			t->err = errno ? errno : EIO;
	}
}

size_t maildir_lf_convert(bool *pending_cr, const char *data, size_t len, char *out)
{
	size_t o = 0;
	size_t i = 0;
	if (*pending_cr && len > 0) {
		*pending_cr = false;
		if (data[0] == '\n') {
			out[o++] = '\n';
			i = 1;
		} else {
			out[o++] = '\r';
		}
	}
	while (i < len) {
		const char *cr = memchr(data + i, '\r', len - i);
		size_t run = cr ? (size_t)(cr - (data + i)) : len - i;
		memcpy(out + o, data + i, run);
		o += run;
		i += run;
		if (cr == NULL)
			break;
		if (i + 1 == len) {
			*pending_cr = true; /* decided by the next octet */
			break;
		}
		if (data[i + 1] != '\n')
			out[o++] = '\r'; /* a lone CR stays */
		i++;                      /* the CR of CR LF is dropped */
	}
	return o;
}

static int copy_chunk(void *arg, const char *data, size_t len)
{
	struct copier *c = arg;
	size_t o = maildir_lf_convert(&c->pending_cr, data, len, c->out);
	write_to_all(c, c->out, o);
	return 0;
}

static void tmp_path(const struct maildir_target *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tmp/%s", t->maildir, t->name);
}

int maildir_deliver(int qfd, off_t content_off, const char *return_path,
		    struct maildir_target *targets, size_t n, bool search_cur,
		    bool sync_dirs, char *err, size_t errlen)
{
	char path[PATH_MAX];
	size_t open_count = 0;
	for (size_t i = 0; i < n; i++) {
		struct maildir_target *t = &targets[i];
		t->fd = -1;
		t->err = 0;
		t->duplicate = false;
		if (search_cur && already_delivered(t, true)) {
			t->duplicate = true;
			continue;
		}
		tmp_path(t, path, sizeof(path));
		t->fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (t->fd < 0 && errno == ENOENT && maildir_create(t->maildir) == 0)
			t->fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (t->fd < 0) {
			t->err = errno;
			continue;
		}
		open_count++;
		char head[2048];
		int hn = snprintf(head, sizeof(head), "Return-Path: <%s>\nDelivered-To: %s\n",
				  return_path, t->delivered_to);
		if (hn < 0 || (size_t)hn >= sizeof(head))
			t->err = ENAMETOOLONG;
		else if (fsio_write_all(t->fd, head, (size_t)hn) < 0)
			t->err = errno;
	}
	int rc = 0;
	if (open_count > 0) {
		static _Thread_local char out[QFILE_CHUNK_MAX + 1];
		struct copier c = { targets, n, false, out };
		enum qfile_status st = qfile_read_content(qfd, content_off, copy_chunk, &c,
							  err, errlen);
		if (c.pending_cr)
			write_to_all(&c, "\r", 1);
		if (st != QFILE_OK)
			rc = -1;
	}
	/* Durability of each copy, then publication in new/. */
	bool published = false;
	for (size_t i = 0; i < n; i++) {
		struct maildir_target *t = &targets[i];
		if (t->fd < 0)
			continue;
		if (rc == 0 && t->err == 0 && fsio_fsync(t->fd) < 0)
			t->err = errno;
		if (close(t->fd) < 0 && t->err == 0)
			t->err = errno;
		t->fd = -1;
		tmp_path(t, path, sizeof(path));
		if (rc == 0 && t->err == 0) {
			char dst[PATH_MAX];
			snprintf(dst, sizeof(dst), "%s/new/%s", t->maildir, t->name);
			if (fsio_link(path, dst) < 0) {
				if (errno == EEXIST)
					t->duplicate = true;
				else
					t->err = errno;
			}
			published |= t->err == 0;
		}
		unlink(path);
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			if (!targets[i].duplicate && targets[i].err == 0)
				targets[i].err = EIO;
		return -1;
	}
	if (published && sync_dirs) {
		struct maildir_target **all = xcalloc(n, sizeof(*all));
		for (size_t i = 0; i < n; i++)
			all[i] = &targets[i];
		maildir_sync_new(all, n);
		free(all);
	}
	return 0;
}

void maildir_sync_dirs(const char *const *dirs, size_t n, int *errs)
{
	char path[PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		errs[i] = 0;
		if (dirs[i] == NULL)
			continue;
		size_t first = i; /* the first entry with this directory */
		for (size_t k = 0; k < i && first == i; k++)
			if (dirs[k] && strcmp(dirs[k], dirs[i]) == 0)
				first = k;
		if (first != i) {
			errs[i] = errs[first];
			continue;
		}
		snprintf(path, sizeof(path), "%s/new", dirs[i]);
		if (fsio_fsync_dir(path) < 0)
			errs[i] = errno;
	}
}

void maildir_sync_new(struct maildir_target **targets, size_t n)
{
	const char **dirs = xcalloc(n ? n : 1, sizeof(char *));
	int *errs = xcalloc(n ? n : 1, sizeof(int));
	for (size_t i = 0; i < n; i++)
		if (targets[i]->err == 0 && !targets[i]->duplicate)
			dirs[i] = targets[i]->maildir;
	maildir_sync_dirs(dirs, n, errs);
	for (size_t i = 0; i < n; i++)
		if (errs[i])
			targets[i]->err = errs[i];
	free(errs);
	free(dirs);
}

void maildir_name(char *buf, size_t len, long long arrival_s, const char *queue_id,
		  size_t rcpt_index, const char *host)
{
	char safe[256 * 4 + 1];
	size_t o = 0;
	for (const char *p = host; *p && o + 5 < sizeof(safe); p++) {
		if (*p == '/' || *p == ':')
			o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\%03o", (unsigned char)*p);
		else
			safe[o++] = *p;
	}
	safe[o] = '\0';
	snprintf(buf, len, "%lld.Q%sR%zu.%s", arrival_s, queue_id, rcpt_index, safe);
}
