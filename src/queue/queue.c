/*
 * queue: directories, queue ids, the commit pipeline (group commit), the
 * per-recipient journal, and recovery at start-up (queue.h).
 */
#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/fsio.h"
#include "lib/groupsync.h"
#include "lib/log.h"
#include "lib/monotime.h"
#include "lib/mem.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "queue/prepared.h"

#define COMMIT_THREADS 32

struct commit_job;

struct queue {
	struct event_base *base;
	char root[PATH_MAX];
	char incoming[PATH_MAX];
	char active[PATH_MAX];
	char journal[PATH_MAX];
	char corrupt[PATH_MAX];
	struct workpool *pool;
	queue_ready_fn ready;
	void *ready_arg;
	struct qmsg *msgs; /* doubly linked list of committed messages */
	size_t nmsgs;
	unsigned in_flight;        /* loop thread only */
	size_t kept_bytes;         /* qmsg contents kept in memory, in total */
	/* group commit: new files waiting for the directory fsync */
	struct groupsync dirsync;
	struct prepared *prepared; /* files made ahead (prepared.h), or NULL */
	uint32_t id_seq;
};

struct queue_txn {
	struct queue *q;
	struct envelope env;
	queue_prefix_fn prefix_fn;   /* runs on the commit worker, or NULL */
	queue_prefix_free_fn prefix_free;
	void *prefix_arg;
	char path[PATH_MAX];
	off_t content_off;
	bool name_durable;     /* a prepared file: no directory fsync needed */
	off_t old_size;        /* a recycled prepared file's length, else 0 */
	struct qfile_writer w; /* last: large */
};

struct commit_job {
	struct groupsync_item link; /* first: in a directory-sync batch */
	struct queue *q;
	struct queue_txn *txn;
	queue_commit_fn fn;
	void *arg;
	int err;
	char *content;             /* kept for the first delivery, or NULL */
	size_t content_len;
};

static void dirsync_step(struct groupsync_item *batch, void *arg);

/* The next commit of a batch (link is the first member). */
static struct commit_job *next_job(const struct commit_job *j)
{
	return (struct commit_job *)j->link.next;
}

/* A batch made durable (or not) by one directory fsync. */
struct dirsync_batch {
	struct queue *q;
	struct commit_job *jobs;
	int err;
};

/* ---- set-up ---- */

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

struct queue *queue_open(struct event_base *base, const char *state_dir,
			 char *err, size_t errlen)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	q->base = base;
	snprintf(q->root, sizeof(q->root), "%s/queue", state_dir);
	snprintf(q->incoming, sizeof(q->incoming), "%s/incoming", q->root);
	snprintf(q->active, sizeof(q->active), "%s/active", q->root);
	snprintf(q->journal, sizeof(q->journal), "%s/journal", q->root);
	snprintf(q->corrupt, sizeof(q->corrupt), "%s/corrupt", q->root);
	const char *dirs[] = { q->root, q->incoming, q->active, q->journal, q->corrupt };
	if (fsio_mkdirs(state_dir, 0755, (uid_t)-1, (gid_t)-1) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", state_dir,
			 strerror_safe(errno));
		free(q);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (make_dir(dirs[i]) < 0 || access(dirs[i], R_OK | W_OK | X_OK) < 0) {
			snprintf(err, errlen, "cannot use %s: %s", dirs[i],
				 strerror_safe(errno));
			free(q);
			return NULL;
		}
	}
	q->pool = workpool_new(base, COMMIT_THREADS);
	groupsync_init(&q->dirsync, dirsync_step, q);
	return q;
}

void queue_set_ready_hook(struct queue *q, queue_ready_fn fn, void *arg)
{
	q->ready = fn;
	q->ready_arg = arg;
}

void queue_msg_path(const struct queue *q, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", q->active, id);
}

size_t queue_count(const struct queue *q)
{
	return q->nmsgs;
}

unsigned queue_commits_in_flight(const struct queue *q)
{
	return q->in_flight;
}

/* ---- queue ids ---- */

/* 16 upper-case hex digits: seconds (8), microseconds (5), sequence (3)
 * of the moment the id is minted (a prepared file's, before its message
 * arrives: the T record has the arrival); uniqueness is enforced by
 * O_EXCL at creation. */
static void new_id(struct queue *q, char id[QUEUE_ID_LEN + 1], int64_t *now_us)
{
	*now_us = walltime_us();
	q->id_seq = (q->id_seq + 1) & 0xfff;
	snprintf(id, QUEUE_ID_LEN + 1, "%08lX%05lX%03X",
		 (unsigned long)(*now_us / 1000000) & 0xffffffffUL,
		 (unsigned long)(*now_us % 1000000), (unsigned)q->id_seq);
}

void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1], int64_t *now_us)
{
	new_id(q, id, now_us);
}

/* The id of a prepared file (prepared.h): minted when it is made. */
static void mint_id(void *arg, char id[QUEUE_ID_LEN + 1])
{
	int64_t unused;
	new_id(arg, id, &unused);
}

void queue_prepare_files(struct queue *q, size_t n)
{
	if (q->prepared || n == 0)
		return;
	q->prepared = prepared_new(q->base, q->pool, q->active, n, mint_id, q);
	prepared_refill(q->prepared);
}

static bool valid_id(const char *s)
{
	if (strlen(s) != QUEUE_ID_LEN)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
			return false;
	return true;
}

/* ---- receiving ---- */

/* A transaction's memory, with its copies of env's client fields; it is
 * the session's, so it is fallible (lib/mem.h). NULL (errno ENOMEM). */
static struct queue_txn *txn_new(struct queue *q, const struct envelope *env)
{
	struct queue_txn *t = mem_alloc(sizeof(*t));
	if (t == NULL)
		return NULL;
	t->q = q;
	t->prefix_fn = NULL;
	t->prefix_free = NULL;
	t->prefix_arg = NULL;
	envelope_init(&t->env);
	if (envelope_set(&t->env.helo, env->helo) < 0 ||
	    envelope_set(&t->env.client_addr, env->client_addr) < 0 ||
	    envelope_set(&t->env.proto, env->proto) < 0) {
		envelope_free(&t->env);
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	return t;
}

struct queue_txn *queue_txn_begin(struct queue *q, struct envelope *env,
				  char *err, size_t errlen)
{
	struct queue_txn *t = txn_new(q, env);
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int fd = -1;
	t->name_durable = false;
	t->old_size = 0;
	if (q->prepared && prepared_take(q->prepared, t->env.id, &fd, &t->old_size)) {
		t->env.arrival_us = walltime_us();
		snprintf(t->path, sizeof(t->path), "%s/%s", q->active, t->env.id);
		t->name_durable = true;
	}
	for (int tries = 0; tries < 100 && fd < 0; tries++) {
		new_id(q, t->env.id, &t->env.arrival_us);
		snprintf(t->path, sizeof(t->path), "%s/%s", q->active, t->env.id);
		fd = fsio_open(t->path, O_WRONLY | O_CREAT | O_EXCL, QUEUE_MODE_WRITING);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		int saved = errno;
		snprintf(err, errlen, "cannot create queue file: %s", strerror_safe(saved));
		envelope_free(&t->env);
		free(t);
		errno = saved;
		return NULL;
	}
	/* Take over the transaction; leave the client fields as copies. */
	t->env.sender = env->sender;
	t->env.smtputf8 = env->smtputf8;
	t->env.body = env->body;
	t->env.ret = env->ret;
	t->env.envid = env->envid;
	t->env.auth = env->auth;
	t->env.rcpts = env->rcpts;
	t->env.nrcpts = env->nrcpts;
	t->env.cap = env->cap;
	env->sender = env->envid = env->auth = NULL;
	env->rcpts = NULL;
	env->nrcpts = env->cap = 0;
	envelope_reset(env);

	qfile_writer_init(&t->w, fd);
	qfile_write_envelope(&t->w, &t->env);
	t->content_off = (off_t)t->w.file_len;
	if (t->w.error) {
		int saved = t->w.error;
		snprintf(err, errlen, "cannot write queue file: %s",
			 strerror_safe(saved));
		queue_txn_abort(t);
		errno = saved; /* the caller's reply depends on it */
		return NULL;
	}
	return t;
}

const char *queue_txn_id(const struct queue_txn *t)
{
	return t->env.id;
}

void queue_txn_write(struct queue_txn *t, const char *data, size_t len)
{
	qfile_write_content(&t->w, data, len);
}

static void txn_free(struct queue_txn *t)
{
	if (t->prefix_free)
		t->prefix_free(t->prefix_arg);
	envelope_free(&t->env);
	free(t);
}

void queue_txn_set_prefix(struct queue_txn *t, queue_prefix_fn fn, queue_prefix_free_fn fr,
			  void *arg)
{
	t->prefix_fn = fn;
	t->prefix_free = fr;
	t->prefix_arg = arg;
}

void queue_txn_abort(struct queue_txn *t)
{
	if (t->w.fd >= 0)
		close(t->w.fd);
	unlink(t->path);
	txn_free(t);
}

/* ---- commit pipeline ----
 *
 * A commit is one job on a worker: end record, fsync, the committed mark
 * (queue.h), close, then the directory fsync that makes the new name
 * durable, shared by every commit finished meanwhile (group commit,
 * lib/groupsync.h; there is no rename: it cost 10% of the CPU): the
 * syncer hands each batch back to the loop in one post, so a message
 * costs one hand-off to a worker and one back to the loop.
 */

/* A message's content kept in memory for its first delivery round saves
 * reading the file back; small ones only, and a cap on them all. */
#define KEEP_CONTENT_MAX (64u * 1024)
#define KEEP_TOTAL_MAX (32u * 1024 * 1024)

static void keep_content(struct queue *q, struct qmsg *m, struct commit_job *job)
{
	if (job->content && q->kept_bytes + job->content_len <= KEEP_TOTAL_MAX) {
		m->content = job->content;
		m->content_len = job->content_len;
		q->kept_bytes += job->content_len;
	} else {
		free(job->content);
	}
	job->content = NULL;
}

char *queue_msg_take_content(struct queue *q, struct qmsg *m, size_t *len)
{
	char *c = m->content;
	if (c) {
		q->kept_bytes -= m->content_len;
		*len = m->content_len;
		m->content = NULL;
		m->content_len = 0;
	}
	return c;
}

static void drop_content(struct queue *q, struct qmsg *m)
{
	size_t unused;
	free(queue_msg_take_content(q, m, &unused));
}

static void finish_commit(struct commit_job *job, int err)
{
	struct queue *q = job->q;
	struct queue_txn *t = job->txn;
	q->in_flight--;
	if (err == 0) {
		struct qmsg *m = xcalloc(1, sizeof(*m));
		m->env = t->env; /* moves the envelope */
		envelope_init(&t->env);
		m->env.content_size = t->w.content_len;
		m->content_off = t->content_off;
		m->file_size = (off_t)t->w.file_len;
		keep_content(q, m, job);
		m->next = q->msgs;
		if (q->msgs)
			q->msgs->prev = m;
		q->msgs = m;
		q->nmsgs++;
		job->fn(job->arg, 0, m->env.id);
		if (q->ready)
			q->ready(q->ready_arg, m);
	} else {
		job->fn(job->arg, err, t->env.id);
	}
	free(job->content);
	txn_free(t);
	free(job);
}

/* Loop: a commit that failed before its rename. */
static void commit_failed(void *arg)
{
	struct commit_job *job = arg;
	if (job->err != ENOMEM) /* that one is logged as event=oom */
		log_msg(LOG_ERROR, "queue_write_failed", "queue file %s: %s",
			job->txn->env.id, strerror_safe(job->err));
	finish_commit(job, job->err);
}

/* Loop: the outcome of one directory fsync, for every commit it covers. */
static void dirsync_done(void *arg)
{
	struct dirsync_batch *b = arg;
	struct queue *q = b->q;
	if (b->err) {
		/* The renames may not be durable: take them back so a crash
		 * cannot resurrect a message we are about to refuse. */
		for (struct commit_job *k = b->jobs; k; k = next_job(k)) {
			char dst[PATH_MAX];
			snprintf(dst, sizeof(dst), "%s/%s", q->active, k->txn->env.id);
			unlink(dst);
		}
		log_msg(LOG_ERROR, "queue_fsync_failed", "fsync of %s: %s", q->active,
			strerror_safe(b->err));
	}
	for (struct commit_job *j = b->jobs, *next; j; j = next) {
		next = next_job(j);
		finish_commit(j, b->err);
	}
	free(b);
}

/* The syncer (lib/groupsync.h): one directory fsync for a batch of
 * renamed commits, handed to the loop in one post. */
static void dirsync_step(struct groupsync_item *batch, void *arg)
{
	struct queue *q = arg;
	struct dirsync_batch *b = xcalloc(1, sizeof(*b));
	b->q = q;
	b->jobs = (struct commit_job *)batch;
	if (fsio_fsync_dir(q->active) < 0)
		b->err = errno;
	workpool_post(q->pool, dirsync_done, b);
}

/* Worker: end record, fsync, the committed mark, close, directory sync. */
static void commit_work(void *arg)
{
	struct commit_job *job = arg;
	struct queue_txn *t = job->txn;
	if (t->prefix_fn) {
		char *pre = NULL;
		size_t len = 0;
		job->err = t->prefix_fn(t->prefix_arg, &pre, &len);
		if (pre && len > 0 && len <= QFILE_CHUNK_MAX)
			qfile_write_prefix(&t->w, pre, len);
		free(pre);
	}
	/* No prefix (a signature, say) when one was due: no message. */
	if (job->err == 0 && qfile_write_end(&t->w) < 0)
		job->err = t->w.error;
	/* A recycled file: what the message did not cover goes. */
	else if (job->err == 0 && t->old_size > (off_t)t->w.file_len &&
		 fsio_ftruncate(t->w.fd, (off_t)t->w.file_len) < 0)
		job->err = errno;
	else if (job->err == 0 && fsio_fdatasync(t->w.fd) < 0)
		job->err = errno;
	/* Only after the fsync: a file with the mark is whole (queue.h). */
	else if (job->err == 0 && fsio_fchmod(t->w.fd, QUEUE_MODE_COMMITTED) < 0)
		job->err = errno;
	if (close(t->w.fd) < 0 && job->err == 0)
		job->err = errno;
	t->w.fd = -1;
	if (job->err) {
		unlink(t->path);
		workpool_post(job->q->pool, commit_failed, job);
		return;
	}
	if (t->w.content_len <= KEEP_CONTENT_MAX &&
	    qfile_writer_content(&t->w, (size_t)t->content_off, &job->content,
				 &job->content_len) < 0)
		job->content = NULL;
	if (t->name_durable) {
		/* A prepared file: its name was made durable with its batch,
		 * so the file's fsync was the last step. */
		struct dirsync_batch *b = xcalloc(1, sizeof(*b));
		b->q = job->q;
		b->jobs = job;
		job->link.next = NULL;
		workpool_post(job->q->pool, dirsync_done, b);
		return;
	}
	groupsync_join(&job->q->dirsync, &job->link);
}

void queue_txn_commit(struct queue_txn *t, queue_commit_fn fn, void *arg)
{
	struct commit_job *job = xcalloc(1, sizeof(*job));
	job->q = t->q;
	job->txn = t;
	job->fn = fn;
	job->arg = arg;
	t->q->in_flight++;
	t->env.content_size = t->w.content_len;
	workpool_submit(t->q->pool, commit_work, NULL, job);
}

/* ---- journal ---- */

/*
 * A journal record: type octet ('D' delivered, 'F' failed, 'W' deferred;
 * 'H' held and 'U' released, for the whole message, recipient index 0),
 * 2-octet big-endian payload length, payload, CRC-32 of all that (4
 * octets). Payload: recipient index (4), attempts (4), next attempt (8),
 * then the error text. Reading stops at the first bad record: a torn
 * write at the end is simply not applied.
 */
static size_t journal_encode(unsigned char *out, size_t cap, char type,
			     uint32_t idx, uint32_t attempts, int64_t next,
			     const char *text)
{
	size_t tlen = text ? strlen(text) : 0;
	if (tlen > 1000)
		tlen = 1000;
	size_t plen = 16 + tlen;
	if (3 + plen + 4 > cap)
		return 0;
	unsigned char *p = out;
	p[0] = (unsigned char)type;
	p[1] = (unsigned char)(plen >> 8);
	p[2] = (unsigned char)plen;
	unsigned char *v = p + 3;
	for (int i = 0; i < 4; i++)
		v[i] = (unsigned char)(idx >> (24 - 8 * i));
	for (int i = 0; i < 4; i++)
		v[4 + i] = (unsigned char)(attempts >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		v[8 + i] = (unsigned char)((uint64_t)next >> (56 - 8 * i));
	if (tlen)
		memcpy(v + 16, text, tlen);
	uint32_t crc = (uint32_t)crc32(0L, p, (uInt)(3 + plen));
	unsigned char *c = p + 3 + plen;
	c[0] = (unsigned char)(crc >> 24);
	c[1] = (unsigned char)(crc >> 16);
	c[2] = (unsigned char)(crc >> 8);
	c[3] = (unsigned char)crc;
	return 3 + plen + 4;
}

/* Returns whether the journal exists. */
static bool apply_journal(const char *path, struct envelope *env)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	unsigned char head[3];
	unsigned char body[1024 + 16 + 4];
	for (;;) {
		if (read(fd, head, 3) != 3)
			break;
		size_t plen = (size_t)head[1] << 8 | head[2];
		if (plen < 16 || plen > 1016)
			break;
		if (read(fd, body, plen + 4) != (ssize_t)(plen + 4))
			break;
		uint32_t crc = (uint32_t)crc32(0L, head, 3);
		crc = (uint32_t)crc32(crc, body, (uInt)plen);
		uint32_t want = (uint32_t)body[plen] << 24 | (uint32_t)body[plen + 1] << 16 |
				(uint32_t)body[plen + 2] << 8 | body[plen + 3];
		if (crc != want || strchr("DFWHU", head[0]) == NULL || head[0] == '\0')
			break;
		if (head[0] == 'H' || head[0] == 'U') {
			env->held = head[0] == 'H';
			continue;
		}
		uint32_t idx = (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 |
			       (uint32_t)body[2] << 8 | body[3];
		uint32_t attempts = (uint32_t)body[4] << 24 | (uint32_t)body[5] << 16 |
				    (uint32_t)body[6] << 8 | body[7];
		int64_t next = 0;
		for (int i = 0; i < 8; i++)
			next = (int64_t)((uint64_t)next << 8 | body[8 + i]);
		if (idx >= env->nrcpts)
			break;
		struct env_rcpt *r = &env->rcpts[idx];
		r->state = head[0] == 'D' ? RCPT_DELIVERED
			   : head[0] == 'F' ? RCPT_FAILED : RCPT_DEFERRED;
		r->attempts = attempts;
		r->next_attempt = next;
		free(r->last_error);
		r->last_error = plen > 16 ? xstrndup((const char *)body + 16, plen - 16) : NULL;
		if (r->last_error && memchr(body + 16, '\0', plen - 16)) {
			free(r->last_error);
			r->last_error = NULL;
		}
	}
	close(fd);
	return true;
}

void queue_rcpt_update(struct queue *q, struct qmsg *msg, size_t idx,
		       enum rcpt_state state, int64_t next_attempt,
		       const char *error)
{
	struct env_rcpt *r = &msg->env.rcpts[idx];
	r->state = state;
	r->attempts++;
	r->next_attempt = next_attempt;
	envelope_xset(&r->last_error, error);
	char type = state == RCPT_DELIVERED ? 'D' : state == RCPT_FAILED ? 'F' : 'W';
	unsigned char rec[1100];
	size_t n = journal_encode(rec, sizeof(rec), type, (uint32_t)idx, r->attempts,
				  next_attempt, error);
	(void)q;
	msg->jbuf = xrealloc(msg->jbuf, msg->jlen + n);
	memcpy(msg->jbuf + msg->jlen, rec, n);
	msg->jlen += n;
}

/* Append the pending journal records (not fsynced: a lost record only
 * means an attempt is made again, and local delivery is idempotent). */
static void journal_flush(struct queue *q, struct qmsg *msg)
{
	if (msg->jlen == 0)
		return;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", q->journal, msg->env.id);
	int fd = fsio_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0 || fsio_write_all(fd, msg->jbuf, msg->jlen) < 0)
		log_msg(LOG_WARNING, "journal_write_failed", "id=%s: %s", msg->env.id,
			strerror_safe(errno));
	if (fd >= 0) {
		close(fd);
		msg->has_journal = true;
	}
	free(msg->jbuf);
	msg->jbuf = NULL;
	msg->jlen = 0;
}

void queue_msg_set_held(struct queue *q, struct qmsg *msg, bool held)
{
	unsigned char rec[64];
	size_t n = journal_encode(rec, sizeof(rec), held ? 'H' : 'U', 0, 0, 0, NULL);
	msg->env.held = held;
	msg->jbuf = xrealloc(msg->jbuf, msg->jlen + n);
	memcpy(msg->jbuf + msg->jlen, rec, n);
	msg->jlen += n;
	journal_flush(q, msg);
}

struct qmsg *queue_find(const struct queue *q, const char *id)
{
	for (struct qmsg *m = q->msgs; m; m = m->next)
		if (strcmp(m->env.id, id) == 0)
			return m;
	return NULL;
}

struct qmsg *queue_first(const struct queue *q)
{
	return q->msgs;
}

static void msg_free(struct qmsg *m)
{
	if (m->retry)
		event_free(m->retry);
	free(m->jbuf);
	free(m->content);
	envelope_free(&m->env);
	free(m);
}

/* Take msg out of the in-memory list and free it. */
static void msg_forget(struct queue *q, struct qmsg *msg)
{
	if (msg->prev)
		msg->prev->next = msg->next;
	else
		q->msgs = msg->next;
	if (msg->next)
		msg->next->prev = msg->prev;
	q->nmsgs--;
	drop_content(q, msg);
	msg_free(msg);
}

void queue_msg_release(struct queue *q, struct qmsg *msg)
{
	drop_content(q, msg); /* the first round is over */
	if (!envelope_done(&msg->env)) {
		journal_flush(q, msg);
		return;
	}
	queue_msg_remove(q, msg);
}

void queue_msg_remove(struct queue *q, struct qmsg *msg)
{
	char path[PATH_MAX];
	struct log_line l;
	/* Message first, journal second: a crash in between leaves a
	 * journal without a message, which recovery removes. A small file
	 * without a journal is reused (prepared.h) when the pool has room. */
	queue_msg_path(q, msg->env.id, path, sizeof(path));
	bool reused = !msg->has_journal && msg->file_size <= PREPARED_RECYCLE_MAX &&
		      q->prepared && prepared_recycle(q->prepared, msg->env.id, msg->file_size);
	if (!reused && unlink(path) < 0 && errno != ENOENT)
		log_msg(LOG_ERROR, "queue_unlink_failed", "%s: %s", path,
			strerror_safe(errno));
	if (msg->has_journal) {
		snprintf(path, sizeof(path), "%s/%s", q->journal, msg->env.id);
		unlink(path);
	}
	log_begin(&l, LOG_INFO, "removed");
	log_str(&l, "id", msg->env.id);
	log_end(&l);
	msg_forget(q, msg);
}

/* ---- recovery ---- */

static void quarantine(struct queue *q, const char *id, const char *why);

void queue_msg_quarantine(struct queue *q, struct qmsg *msg, const char *why)
{
	quarantine(q, msg->env.id, why);
	msg_forget(q, msg);
}

static void quarantine(struct queue *q, const char *id, const char *why)
{
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/%s", q->active, id);
	snprintf(to, sizeof(to), "%s/%s", q->corrupt, id);
	struct log_line l;
	log_begin(&l, LOG_ERROR, "quarantined");
	log_str(&l, "id", id);
	log_str(&l, "reason", why);
	log_end(&l);
	if (rename(from, to) < 0)
		unlink(from);
	snprintf(from, sizeof(from), "%s/%s", q->journal, id);
	snprintf(to, sizeof(to), "%s/%s.journal", q->corrupt, id);
	rename(from, to);
}

static int skip_content(void *arg, const char *data, size_t len)
{
	(void)arg;
	(void)data;
	(void)len;
	return 0;
}

/* What reading one active file found. */
enum loaded {
	LOADED,
	LOAD_FAILED,   /* err says why */
	LOAD_OTHER_ID, /* well-formed, but its I record names another id */
};

/*
 * Read one active file with its journal. A file without the committed
 * mark must also read back whole, content and CRC: a prepared file being
 * written over (prepared.h) can hold a new envelope in front of the end
 * of an old message.
 */
static enum loaded load_one(const char *active_dir, const char *journal_dir,
			    const char *id, struct envelope *env, off_t *content_off,
			    off_t *size, bool *has_journal, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/%s", active_dir, id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "open: %s", strerror_safe(errno));
		return LOAD_FAILED;
	}
	enum qfile_status st = qfile_read_envelope(fd, env, content_off, err, errlen);
	if (st == QFILE_OK && strcmp(env->id, id) != 0) {
		snprintf(err, errlen, "queue id does not match the file name");
		close(fd);
		return LOAD_OTHER_ID;
	}
	if (st == QFILE_OK && fstat(fd, &sb) < 0) {
		snprintf(err, errlen, "fstat: %s", strerror_safe(errno));
		st = QFILE_IO;
	}
	if (st == QFILE_OK && (sb.st_mode & 0777) != QUEUE_MODE_COMMITTED)
		st = qfile_read_content(fd, *content_off, skip_content, NULL, err, errlen);
	close(fd);
	if (st != QFILE_OK)
		return LOAD_FAILED;
	snprintf(path, sizeof(path), "%s/%s", journal_dir, id);
	bool j = apply_journal(path, env);
	if (has_journal)
		*has_journal = j;
	if (size)
		*size = sb.st_size;
	return LOADED;
}

static void clean_incoming(struct queue *q)
{
	DIR *d = opendir(q->incoming);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", q->incoming, e->d_name);
		unlink(path);
		log_msg(LOG_INFO, "incoming_discarded",
			"%s was never acknowledged; removed", e->d_name);
	}
	closedir(d);
}

/*
 * active/id failed to load. Well-formed under another id, it is a
 * recycled prepared file (prepared.h), marked still when the crash came
 * between its rename and its unmarking: removed, silently. Otherwise,
 * with the committed mark (queue.h) it was whole once: aside to corrupt/.
 * Without it, it was never acknowledged and is removed, with a stray
 * journal of its id: silently when it is empty (an unused new prepared
 * file), logged otherwise (it was being received when the server
 * stopped).
 */
static void set_aside_unloadable(struct queue *q, const char *id, enum loaded how,
				 const char *why)
{
	char path[PATH_MAX];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/%s", q->active, id);
	bool have = stat(path, &sb) == 0;
	if (how != LOAD_OTHER_ID && have && (sb.st_mode & 0777) == QUEUE_MODE_COMMITTED) {
		quarantine(q, id, why);
		return;
	}
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", q->journal, id);
	unlink(path);
	bool unused = how == LOAD_OTHER_ID ||
		      (have && sb.st_size == 0 && (sb.st_mode & 0777) == QUEUE_MODE_WRITING);
	if (!unused)
		log_msg(LOG_INFO, "incoming_discarded",
			"%s was never acknowledged (%s); removed", id, why);
}

void queue_recover(struct queue *q)
{
	clean_incoming(q);
	DIR *d = opendir(q->active);
	if (d == NULL)
		return;
	struct dirent *e;
	size_t loaded = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (!valid_id(e->d_name)) {
			quarantine(q, e->d_name, "not a queue file name");
			continue;
		}
		struct qmsg *m = xcalloc(1, sizeof(*m));
		envelope_init(&m->env);
		char err[128] = "";
		enum loaded how = load_one(q->active, q->journal, e->d_name, &m->env,
					   &m->content_off, &m->file_size, &m->has_journal, err,
					   sizeof(err));
		if (how != LOADED) {
			set_aside_unloadable(q, e->d_name, how, err);
			msg_free(m);
			continue;
		}
		m->recovered = true;
		m->next = q->msgs;
		if (q->msgs)
			q->msgs->prev = m;
		q->msgs = m;
		q->nmsgs++;
		loaded++;
	}
	closedir(d);
	/* Journals whose message is gone. */
	d = opendir(q->journal);
	while (d && (e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat sb;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", q->active, e->d_name);
		if (stat(path, &sb) < 0 && errno == ENOENT) {
			snprintf(path, sizeof(path), "%s/%s", q->journal, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
	log_msg(LOG_INFO, "queue_recovered", "%zu messages in the queue", loaded);
	for (struct qmsg *m = q->msgs, *next; m; m = next) {
		next = m->next;
		if (q->ready)
			q->ready(q->ready_arg, m);
	}
}

void queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	/* Let every commit in flight finish (their callbacks run here). */
	while (q->in_flight > 0)
		event_base_loop(q->base, EVLOOP_ONCE);
	prepared_free(q->prepared);
	workpool_free(q->pool);
	groupsync_destroy(&q->dirsync);
	for (struct qmsg *m = q->msgs, *next; m; m = next) {
		next = m->next;
		msg_free(m);
	}
	free(q);
}

/* ---- offline listing ---- */

long queue_list_dir(const char *state_dir, queue_list_fn fn, void *arg,
		    char *err, size_t errlen)
{
	char active[PATH_MAX], journal[PATH_MAX];
	snprintf(active, sizeof(active), "%s/queue/active", state_dir);
	snprintf(journal, sizeof(journal), "%s/queue/journal", state_dir);
	DIR *d = opendir(active);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", active, strerror_safe(errno));
		return -1;
	}
	struct dirent *e;
	long count = 0;
	while ((e = readdir(d)) != NULL) {
		if (!valid_id(e->d_name))
			continue;
		struct envelope env;
		envelope_init(&env);
		off_t off;
		char why[128];
		if (load_one(active, journal, e->d_name, &env, &off, NULL, NULL, why,
			     sizeof(why)) == LOADED) {
			fn(arg, &env);
			count++;
		}
		envelope_free(&env);
	}
	closedir(d);
	return count;
}
