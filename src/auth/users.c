/*
 * auth_users: the users file, its immutable snapshot, password checks
 * with libxcrypt, and the locked, durable rewrite of the file (users.h).
 */
#include "auth/users.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsio.h"
#include "lib/xalloc.h"

#define USERS_FILE_MAX (16u << 20) /* a larger file is refused */
#define USERS_LINE_MAX 1024        /* "name:hash" needs at most 255+1+383 */
#define LOCK_TRIES 100

/* What unknown names are checked against, so that they cost one yescrypt
 * computation at the default cost like a known name does. No password
 * hashes to it that anyone knows, and it is never reported as a match. */
static const char dummy_hash[] =
	"$y$j9T$UeDmDOu4rmir1iFJ7DEpW1$z1MdqfMQZu1ND55x3EcZ8bcYhS1kKtxRA5ZQ4qDbYI2";

struct user {
	char *name; /* lower case */
	char *hash;
	unsigned line;
	size_t off, len; /* the line's place in the file, its newline included */
};

struct auth_users {
	struct user *v; /* sorted by name */
	size_t n;
};

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen,
							 const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void free_secret(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

/* ---- pure parsing: names, hashes and the file's text ---- */

/* Checks the name s[0..n) and writes its lower-case form, NUL-terminated,
 * to canon (AUTH_NAME_MAX + 1 octets). NULL, or why the name is invalid. */
static const char *name_canon(const char *s, size_t n, char *canon)
{
	if (n == 0)
		return "empty user name";
	if (n > AUTH_NAME_MAX)
		return "user name longer than 255 octets";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f)
			return "user name with a space or a non-printable character";
		if (c == ':')
			return "user name with ':'";
		canon[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
	}
	canon[n] = '\0';
	return NULL;
}

/* NULL, or why s[0..n) is not a crypt(3) hash we accept. */
static const char *hash_check(const char *s, size_t n)
{
	if (n == 0)
		return "empty password hash";
	if (s[0] != '$')
		return "password hash does not start with '$'";
	if (n >= CRYPT_OUTPUT_SIZE)
		return "password hash too long";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f)
			return "password hash with a space or a non-printable character";
	}
	return NULL;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

static void users_free_array(struct user *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		if (v[i].hash)
			free_secret(v[i].hash, strlen(v[i].hash));
	}
	free(v);
}

static int user_cmp(const void *a, const void *b)
{
	const struct user *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

/* Parses the text of the users file buf[0..len) into users (*out, *nout),
 * in file order or, when sorted, by name. Every name must appear once.
 * 0, or -1 with "path:line: reason" in err. */
static int users_parse(const char *path, const char *buf, size_t len, bool sorted,
		       struct user **out, size_t *nout, char *err, size_t errlen)
{
	struct user *v = NULL;
	size_t n = 0, cap = 0;
	unsigned lineno = 0;
	for (size_t pos = 0; pos < len;) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t linelen = nl ? (size_t)(nl - line) : len - pos;
		size_t span = nl ? linelen + 1 : linelen;
		size_t off = pos;
		pos += span;
		lineno++;
		if (linelen > USERS_LINE_MAX) {
			seterr(err, errlen, "%s:%u: line longer than %d octets", path, lineno,
			       USERS_LINE_MAX);
			goto fail;
		}
		if (blank(line, linelen) || line[0] == '#')
			continue;
		const char *colon = memchr(line, ':', linelen);
		if (colon == NULL) {
			seterr(err, errlen, "%s:%u: no ':' between user name and hash", path,
			       lineno);
			goto fail;
		}
		char canon[AUTH_NAME_MAX + 1];
		const char *why = name_canon(line, (size_t)(colon - line), canon);
		if (why == NULL)
			why = hash_check(colon + 1, linelen - (size_t)(colon - line) - 1);
		if (why != NULL) {
			seterr(err, errlen, "%s:%u: %s", path, lineno, why);
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = (struct user){ .name = xstrdup(canon),
					.hash = xstrndup(colon + 1,
							 linelen - (size_t)(colon - line) - 1),
					.line = lineno,
					.off = off,
					.len = span };
	}
	/* Duplicates: adjacent once sorted by name, then line. */
	struct user *s = n ? xmalloc(n * sizeof(*s)) : NULL;
	if (n)
		memcpy(s, v, n * sizeof(*s));
	if (n > 1)
		qsort(s, n, sizeof(*s), user_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(s[i - 1].name, s[i].name) == 0) {
			seterr(err, errlen, "%s:%u: user %s listed again (first on line %u)",
			       path, s[i].line, s[i].name, s[i - 1].line);
			free(s);
			goto fail;
		}
	}
	if (sorted) {
		free(v);
		v = s;
	} else {
		free(s);
	}
	*out = v;
	*nout = n;
	return 0;
fail:
	users_free_array(v, n);
	return -1;
}

/* ---- file I/O ---- */

/* Reads all of path into *buf (NUL-terminated; *len octets; *st its
 * status). 1 read, 0 the file does not exist (*buf is then ""), -1 with
 * err. */
static int read_file(const char *path, char **buf, size_t *len, struct stat *st,
		     char *err, size_t errlen)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT) {
			*buf = xcalloc(1, 1);
			return 0;
		}
		seterr(err, errlen, "%s: %s", path, strerror_safe(errno));
		return -1;
	}
	if (fstat(fd, st) < 0) {
		seterr(err, errlen, "%s: %s", path, strerror_safe(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		seterr(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	size_t cap = st->st_size < (off_t)USERS_FILE_MAX ? (size_t)st->st_size + 1
							 : USERS_FILE_MAX + 1;
	char *b = xmalloc(cap + 1);
	size_t n = 0;
	for (;;) {
		if (n == cap) {
			if (cap > USERS_FILE_MAX)
				break;
			size_t ncap = cap * 2;
			if (ncap > USERS_FILE_MAX + 1)
				ncap = USERS_FILE_MAX + 1;
			char *nb = xmalloc(ncap + 1);
			memcpy(nb, b, n);
			free_secret(b, cap + 1);
			b = nb;
			cap = ncap;
		}
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			seterr(err, errlen, "%s: %s", path, strerror_safe(errno));
			free_secret(b, cap + 1);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n > USERS_FILE_MAX) {
		seterr(err, errlen, "%s: larger than %u octets", path, USERS_FILE_MAX);
		free_secret(b, cap + 1);
		return -1;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 1;
}

/* ---- the snapshot ---- */

struct auth_users *auth_users_load(const char *path, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	struct stat st;
	int r = read_file(path, &buf, &len, &st, err, errlen);
	if (r < 0)
		return NULL;
	struct auth_users *u = xcalloc(1, sizeof(*u));
	int rc = users_parse(path, buf, len, true, &u->v, &u->n, err, errlen);
	free_secret(buf, len);
	if (rc < 0) {
		free(u);
		return NULL;
	}
	return u;
}

void auth_users_free(struct auth_users *u)
{
	if (u == NULL)
		return;
	users_free_array(u->v, u->n);
	free(u);
}

size_t auth_users_count(const struct auth_users *u)
{
	return u ? u->n : 0;
}

static const struct user *find(const struct auth_users *u, const char *canon)
{
	if (u == NULL || u->n == 0)
		return NULL;
	size_t lo = 0, hi = u->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(canon, u->v[mid].name);
		if (c == 0)
			return &u->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

bool auth_users_exists(const struct auth_users *u, const char *name)
{
	char canon[AUTH_NAME_MAX + 1];
	if (name == NULL || name_canon(name, strnlen(name, AUTH_NAME_MAX + 1), canon))
		return false;
	return find(u, canon) != NULL;
}

bool auth_users_verify(const struct auth_users *u, const char *name,
		       const char *password)
{
	if (name == NULL || password == NULL)
		return false;
	/* Independent of the name, so no timing difference between names. */
	size_t plen = strnlen(password, AUTH_PASSWORD_MAX + 1);
	if (plen == 0 || plen > AUTH_PASSWORD_MAX)
		return false;
	char canon[AUTH_NAME_MAX + 1];
	const struct user *usr = NULL;
	if (name_canon(name, strnlen(name, AUTH_NAME_MAX + 1), canon) == NULL)
		usr = find(u, canon);
	const char *hash = usr ? usr->hash : dummy_hash;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	bool match = false;
	const char *out = crypt_rn(password, hash, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] == '$') {
		size_t hl = strlen(hash);
		match = strlen(out) == hl && CRYPTO_memcmp(out, hash, hl) == 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return match && usr != NULL;
}

/* ---- edits ---- */

/* A new yescrypt hash of password into out. 0, or -1 with err. */
static int make_hash(const char *password, char *out, size_t outlen, char *err,
		     size_t errlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL) {
		seterr(err, errlen, "cannot make a salt: %s", strerror_safe(errno));
		return -1;
	}
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_rn(password, setting, cd, (int)sizeof(*cd));
	int rc = -1;
	if (h == NULL || h[0] != '$' || strlen(h) >= outlen)
		seterr(err, errlen, "cannot hash the password: %s",
		       strerror_safe(errno ? errno : EINVAL));
	else {
		memcpy(out, h, strlen(h) + 1);
		rc = 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

struct edit {
	const char *path;
	char tmp[PATH_MAX];
	char dir[PATH_MAX];
	int fd;
	bool renamed;
};

/* Opens path.tmp and holds an exclusive lock on it: the lock that
 * serializes edits. A holder renames path.tmp away, so a waiter that then
 * gets the lock on the old inode sees that path.tmp is no longer it and
 * starts over. 0, or -1 with err. */
static int edit_begin(struct edit *e, const char *path, char *err, size_t errlen)
{
	e->path = path;
	e->fd = -1;
	e->renamed = false;
	size_t n = strlen(path);
	if (n == 0 || snprintf(e->tmp, sizeof(e->tmp), "%s.tmp", path) >= (int)sizeof(e->tmp)) {
		seterr(err, errlen, "%s: bad path for the users file", path);
		return -1;
	}
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(e->dir, sizeof(e->dir), ".");
	else if (slash == path)
		snprintf(e->dir, sizeof(e->dir), "/");
	else
		snprintf(e->dir, sizeof(e->dir), "%.*s", (int)(slash - path), path);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		seterr(err, errlen, "%s: a symbolic link; edit the file it points to", path);
		return -1;
	}
	for (int tries = 0; tries < LOCK_TRIES; tries++) {
		int fd = fsio_open(e->tmp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY, 0600);
		if (fd < 0) {
			seterr(err, errlen, "cannot create %s: %s", e->tmp,
			       strerror_safe(errno));
			return -1;
		}
		int rc;
		while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
			;
		if (rc < 0) {
			seterr(err, errlen, "cannot lock %s: %s", e->tmp, strerror_safe(errno));
			close(fd);
			return -1;
		}
		struct stat a, b;
		if (fstat(fd, &a) == 0 && lstat(e->tmp, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			e->fd = fd;
			return 0;
		}
		close(fd);
	}
	seterr(err, errlen, "cannot lock %s: too many concurrent edits", e->tmp);
	return -1;
}

/* Writes data as the new contents of path through path.tmp. old: the
 * status of the file it replaces, or NULL for a new file. 0, or -1 with
 * err. */
static int edit_commit(struct edit *e, const char *data, size_t len,
		       const struct stat *old, char *err, size_t errlen)
{
	const char *what = "write";
	mode_t mode = 0600;
	if (ftruncate(e->fd, 0) < 0)
		goto fail;
	if (old != NULL) {
		mode |= old->st_mode & 0040;
		if ((old->st_uid != geteuid() || old->st_gid != getegid()) &&
		    fchown(e->fd, old->st_uid, old->st_gid) < 0) {
			seterr(err, errlen, "cannot keep the owner and group of %s: %s",
			       e->path, strerror_safe(errno));
			return -1;
		}
	}
	if (fchmod(e->fd, mode) < 0 || fsio_write_all(e->fd, data, len) < 0)
		goto fail;
	what = "fsync";
	if (fsio_fsync(e->fd) < 0)
		goto fail;
	if (fsio_rename(e->tmp, e->path) < 0) {
		seterr(err, errlen, "cannot rename %s to %s: %s", e->tmp, e->path,
		       strerror_safe(errno));
		return -1;
	}
	e->renamed = true;
	if (fsio_fsync_dir(e->dir) < 0) {
		seterr(err, errlen, "%s written, but fsync of %s failed: %s", e->path, e->dir,
		       strerror_safe(errno));
		return -1;
	}
	return 0;
fail:
	seterr(err, errlen, "cannot %s %s: %s", what, e->tmp, strerror_safe(errno));
	return -1;
}

/* Releases the lock; path.tmp is removed unless it became path. */
static void edit_end(struct edit *e)
{
	if (e->fd < 0)
		return;
	if (!e->renamed)
		unlink(e->tmp);
	close(e->fd);
	e->fd = -1;
}

/* Sets (password != NULL) or deletes NAME in the file at path. */
static int users_edit(const char *path, const char *name, const char *password,
		      bool must_exist, bool must_not_exist, char *err, size_t errlen)
{
	char canon[AUTH_NAME_MAX + 1];
	const char *why = name ? name_canon(name, strnlen(name, AUTH_NAME_MAX + 1), canon)
			       : "no user name";
	if (why != NULL) {
		seterr(err, errlen, "invalid user name: %s", why);
		return -1;
	}
	if (password != NULL) {
		size_t plen = strnlen(password, AUTH_PASSWORD_MAX + 1);
		if (plen == 0) {
			seterr(err, errlen, "empty password");
			return -1;
		}
		if (plen > AUTH_PASSWORD_MAX) {
			seterr(err, errlen, "password longer than %d octets",
			       AUTH_PASSWORD_MAX);
			return -1;
		}
	}
	struct edit e;
	if (edit_begin(&e, path, err, errlen) < 0)
		return -1;
	int rc = -1;
	char *buf = NULL, *out = NULL;
	size_t len = 0, outlen = 0, n = 0;
	struct user *v = NULL;
	struct stat st;
	char line[AUTH_NAME_MAX + CRYPT_OUTPUT_SIZE + 3];
	size_t linelen = 0;
	int r = read_file(path, &buf, &len, &st, err, errlen);
	if (r < 0 || users_parse(path, buf, len, false, &v, &n, err, errlen) < 0)
		goto done;
	const struct user *old = NULL;
	for (size_t i = 0; i < n && old == NULL; i++)
		if (strcmp(v[i].name, canon) == 0)
			old = &v[i];
	if (old == NULL && must_exist) {
		seterr(err, errlen, "no user %s in %s", canon, path);
		goto done;
	}
	if (old != NULL && must_not_exist) {
		seterr(err, errlen, "user %s already exists in %s", canon, path);
		goto done;
	}
	if (password != NULL) {
		char hash[CRYPT_OUTPUT_SIZE];
		if (make_hash(password, hash, sizeof(hash), err, errlen) < 0)
			goto done;
		linelen = (size_t)snprintf(line, sizeof(line), "%s:%s\n", canon, hash);
		explicit_bzero(hash, sizeof(hash));
	}
	/* The file with the old line replaced (or removed), or the new line
	 * appended. */
	size_t at = old ? old->off : len, skip = old ? old->len : 0;
	bool addnl = old == NULL && len > 0 && buf[len - 1] != '\n';
	outlen = at + (addnl ? 1 : 0) + linelen + (len - at - skip);
	out = xmalloc(outlen + 1);
	size_t p = 0;
	memcpy(out, buf, at);
	p += at;
	if (addnl)
		out[p++] = '\n';
	memcpy(out + p, line, linelen);
	p += linelen;
	memcpy(out + p, buf + at + skip, len - at - skip);
	rc = edit_commit(&e, out, outlen, r > 0 ? &st : NULL, err, errlen);
done:
	edit_end(&e);
	explicit_bzero(line, sizeof(line));
	free_secret(out, outlen);
	free_secret(buf, len);
	users_free_array(v, n);
	return rc;
}

int auth_users_set(const char *path, const char *name, const char *password,
		   bool must_exist, bool must_not_exist, char *err, size_t errlen)
{
	if (password == NULL) {
		seterr(err, errlen, "no password");
		return -1;
	}
	return users_edit(path, name, password, must_exist, must_not_exist, err, errlen);
}

int auth_users_delete(const char *path, const char *name, char *err, size_t errlen)
{
	return users_edit(path, name, NULL, true, false, err, errlen);
}

long auth_users_list(const char *path, void (*fn)(void *arg, const char *name),
		     void *arg, char *err, size_t errlen)
{
	char *buf;
	size_t len, n = 0;
	struct stat st;
	struct user *v = NULL;
	if (read_file(path, &buf, &len, &st, err, errlen) < 0)
		return -1;
	int rc = users_parse(path, buf, len, false, &v, &n, err, errlen);
	free_secret(buf, len);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		fn(arg, v[i].name);
	users_free_array(v, n);
	return (long)n;
}
