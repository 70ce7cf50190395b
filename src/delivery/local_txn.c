/*
 * local_txn: deliver-at-receipt for all-local transactions (local_txn.h).
 */
#include "delivery/local_txn.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delivery/maildir.h"
#include "lib/fsio.h"
#include "lib/groupsync.h"
#include "lib/workpool.h"
#include "lib/mem.h"
#include "lib/xalloc.h"

#define COMMIT_THREADS 32
#define STAGE_MAX (64u * 1024)

struct target {
	char *maildir;
	char name[300];
	int fd;
	bool linked;
};

struct local_txn {
	struct groupsync_item link;    /* first: in a directory-sync batch */
	struct local_committer *lc;
	struct target targets[LOCAL_TXN_MAX_TARGETS];
	size_t n;
	bool pending_cr;
	int err;                       /* first error */
	local_commit_fn fn;
	void *arg;
	size_t stage_len;
	char stage[STAGE_MAX + 1];     /* LF-converted octets not yet written */
};

struct local_committer {
	struct event_base *base;
	struct workpool *pool;
	unsigned in_flight;            /* loop thread only */
	struct groupsync sync;         /* published, waiting for the dir fsync */
};

/* The next transaction of a batch (link is the first member). */
static struct local_txn *next_txn(const struct local_txn *t)
{
	return (struct local_txn *)t->link.next;
}

static void sync_step(struct groupsync_item *batch, void *arg);

struct local_committer *local_committer_new(struct event_base *base)
{
	struct local_committer *lc = xcalloc(1, sizeof(*lc));
	lc->base = base;
	lc->pool = workpool_new(base, COMMIT_THREADS);
	groupsync_init(&lc->sync, sync_step, lc);
	return lc;
}

void local_committer_free(struct local_committer *lc)
{
	if (lc == NULL)
		return;
	while (lc->in_flight > 0)
		event_base_loop(lc->base, EVLOOP_ONCE);
	workpool_free(lc->pool);
	groupsync_destroy(&lc->sync);
	free(lc);
}

static void tmp_path(const struct target *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tmp/%s", t->maildir, t->name);
}

static void new_path(const struct target *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s/new/%s", t->maildir, t->name);
}

static void txn_free(struct local_txn *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->targets[i].maildir);
	free(t);
}

/* Take back everything of t: tmp files and links into new/. */
static void rollback(struct local_txn *t)
{
	char path[PATH_MAX];
	for (size_t i = 0; i < t->n; i++) {
		struct target *g = &t->targets[i];
		if (g->fd >= 0) {
			close(g->fd);
			g->fd = -1;
		}
		tmp_path(g, path, sizeof(path));
		unlink(path);
		if (g->linked) {
			new_path(g, path, sizeof(path));
			unlink(path);
			g->linked = false;
		}
	}
}

struct local_txn *local_txn_begin(struct local_committer *lc, const char *sender,
				  const struct local_target_spec *specs, size_t n,
				  long long arrival_s, const char *queue_id, const char *host,
				  char *err, size_t errlen)
{
	if (n == 0 || n > LOCAL_TXN_MAX_TARGETS) {
		snprintf(err, errlen, "%zu mailboxes: not a local transaction", n);
		return NULL;
	}
	/* The session's memory (lib/mem.h): on failure the session sends the
	 * message through the queue instead. */
	struct local_txn *t = mem_alloc(sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->link.next = NULL;
	t->lc = lc;
	t->n = 0;
	t->pending_cr = false;
	t->err = 0;
	t->stage_len = 0;
	char path[PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		struct target *g = &t->targets[t->n];
		if ((g->maildir = mem_strdup(specs[i].maildir)) == NULL) {
			snprintf(err, errlen, "out of memory");
			rollback(t);
			txn_free(t);
			return NULL;
		}
		t->n++;
		g->linked = false;
		maildir_name(g->name, sizeof(g->name), arrival_s, queue_id, i, host);
		tmp_path(g, path, sizeof(path));
		g->fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (g->fd < 0 && errno == ENOENT && maildir_create(g->maildir) == 0)
			g->fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		char head[1024];
		int hn = snprintf(head, sizeof(head), "Return-Path: <%s>\nDelivered-To: %s\n",
				  sender, specs[i].address);
		bool staged = n == 1 && hn >= 0 && (size_t)hn < sizeof(head);
		if (staged) { /* one mailbox: its head goes with the body, one write */
			memcpy(t->stage, head, (size_t)hn);
			t->stage_len = (size_t)hn;
		}
		if (g->fd < 0 || hn < 0 || (size_t)hn >= sizeof(head) ||
		    (!staged && fsio_write_all(g->fd, head, (size_t)hn) < 0)) {
			snprintf(err, errlen, "maildir %s: %s", g->maildir,
				 strerror_safe(errno ? errno : EIO));
			rollback(t);
			txn_free(t);
			return NULL;
		}
	}
	return t;
}

static void flush_stage(struct local_txn *t)
{
	if (t->stage_len == 0)
		return;
	for (size_t i = 0; i < t->n && t->err == 0; i++)
		if (fsio_write_all(t->targets[i].fd, t->stage, t->stage_len) < 0)
			t->err = errno ? errno : EIO;
	t->stage_len = 0;
}

void local_txn_write(struct local_txn *t, const char *data, size_t len)
{
	while (len > 0 && t->err == 0) {
		size_t room = STAGE_MAX - t->stage_len;
		size_t k = len < room ? len : room;
		t->stage_len += maildir_lf_convert(&t->pending_cr, data, k,
						   t->stage + t->stage_len);
		data += k;
		len -= k;
		if (t->stage_len >= STAGE_MAX - 1)
			flush_stage(t);
	}
}

void local_txn_abort(struct local_txn *t)
{
	rollback(t);
	txn_free(t);
}

/*
 * The syncer: rename every copy of the batch into new/, from this one
 * thread (many threads renaming into one directory contend on its lock,
 * and that contention was costing CPU), then fsync each new/ once.
 */
static void publish_batch(struct local_txn *batch)
{
	char from[PATH_MAX], to[PATH_MAX];
	for (struct local_txn *t = batch; t; t = next_txn(t)) {
		for (size_t i = 0; i < t->n && t->err == 0; i++) {
			struct target *g = &t->targets[i];
			tmp_path(g, from, sizeof(from));
			new_path(g, to, sizeof(to));
			/* The name is new (a fresh queue id), so rename cannot
			 * replace anything, and costs one call where link + unlink
			 * cost two. */
			if (fsio_rename(from, to) < 0)
				t->err = errno;
			else
				g->linked = true;
		}
	}
}

/* The syncer: publish the batch, then one fsync per distinct new/; a
 * transaction that failed anywhere is taken back. */
static void sync_batch(struct local_txn *batch)
{
	publish_batch(batch);
	size_t total = 0;
	for (struct local_txn *t = batch; t; t = next_txn(t))
		total += t->n;
	const char **dirs = xcalloc(total ? total : 1, sizeof(char *));
	int *errs = xcalloc(total ? total : 1, sizeof(int));
	size_t k = 0;
	for (struct local_txn *t = batch; t; t = next_txn(t))
		for (size_t i = 0; i < t->n; i++, k++)
			dirs[k] = t->err ? NULL : t->targets[i].maildir;
	maildir_sync_dirs(dirs, total, errs);
	/* A failed directory fsync fails every transaction that used it. */
	for (size_t x = 0; x < total; x++) {
		if (errs[x] == 0)
			continue;
		k = 0;
		for (struct local_txn *t = batch; t; t = next_txn(t))
			for (size_t i = 0; i < t->n; i++, k++)
				if (dirs[k] && strcmp(dirs[k], dirs[x]) == 0 && t->err == 0)
					t->err = errs[x];
	}
	free(errs);
	free(dirs);
	for (struct local_txn *t = batch; t; t = next_txn(t))
		if (t->err)
			rollback(t);
}

/* Loop thread: report each transaction of a list and free it. */
static void finish_list(void *arg)
{
	for (struct local_txn *t = arg, *next; t; t = next) {
		next = next_txn(t);
		t->lc->in_flight--;
		t->fn(t->arg, t->err);
		txn_free(t);
	}
}

/* The syncer (lib/groupsync.h): publish and sync a batch, then hand it to
 * the loop in one post. */
static void sync_step(struct groupsync_item *batch, void *arg)
{
	struct local_committer *lc = arg;
	sync_batch((struct local_txn *)batch);
	workpool_post(lc->pool, finish_list, batch);
}

/* Worker: the rest of the content, fsync, close, then the directory sync.
 * Many run at once: on a journaled file system, concurrent fsyncs share
 * journal commits (one thread doing them in turn was measured slower). */
static void publish_work(void *arg)
{
	struct local_txn *t = arg;
	if (t->pending_cr)
		t->stage[t->stage_len++] = '\r';
	t->pending_cr = false;
	flush_stage(t);
	for (size_t i = 0; i < t->n && t->err == 0; i++) {
		struct target *g = &t->targets[i];
		if (fsio_fsync(g->fd) < 0)
			t->err = errno;
		if (close(g->fd) < 0 && t->err == 0)
			t->err = errno;
		g->fd = -1;
	}
	if (t->err) {
		rollback(t);
		t->link.next = NULL;
		workpool_post(t->lc->pool, finish_list, t);
		return;
	}
	/* The first worker to find no syncer at work becomes it; the others
	 * return at once, their transaction reported with its batch. So a
	 * message costs one hand-off to a worker and one back to the loop. */
	groupsync_join(&t->lc->sync, &t->link);
}

void local_txn_commit(struct local_txn *t, local_commit_fn fn, void *arg)
{
	t->fn = fn;
	t->arg = arg;
	t->lc->in_flight++;
	workpool_submit(t->lc->pool, publish_work, NULL, t);
}
