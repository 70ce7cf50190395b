/*
 * cli_sendmail: `fulmar sendmail [flags] [recipients...]`, also run as
 * `sendmail` (a symlink to fulmar): the sendmail command line that cron,
 * PHP's mail() and scripts expect. It reads a message on standard input,
 * completes it (line ends, a From: field, Bcc: removed with -t) and submits
 * it over SMTP on the server's local socket STATE_DIR/sendmail.sock, where
 * the server adds Message-ID:, Date: and a Received: naming our uid.
 *
 * Nothing read here reaches a shell or a format string; every buffer has
 * a cap taken from the configuration (limits.text_line, message_size,
 * recipients). Exit statuses are those of sysexits.h, as sendmail's.
 */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "lib/xalloc.h"
#include "proto/addr_list.h"
#include "proto/smtp_addr.h"
#include "smtp/smtp_server.h"

#define SYSTEM_CONFIG "/etc/fulmar/fulmar.conf"
#define REPLY_LINE_MAX 1024   /* one reply line from our own server */
#define REPLY_TEXT_MAX 2048   /* what of a reply is kept to show */
#define REPLY_TIMEOUT 300     /* seconds: a commit waits for fsync */
#define FULLNAME_MAX 256      /* octets of -F NAME */
#define ENVID_MAX 100         /* RFC 3461 4.4 */

enum mode { MODE_DELIVER, MODE_SMTP, MODE_LIST, MODE_ALIASES };

struct opts {
	enum mode mode;
	bool from_headers;    /* -t */
	bool ignore_dots;     /* -i, -oi */
	bool verbose;         /* -v */
	const char *sender;   /* -f, -r */
	const char *fullname; /* -F */
	const char *config;   /* -C, --config */
	const char *notify;   /* -N */
	const char *ret;      /* -R */
	const char *envid;    /* -V */
	char **rcpts;         /* the arguments that are not flags */
	size_t nrcpts;
};

/* A byte buffer that never grows past max. */
struct buf {
	char *p;
	size_t len, cap, max;
};

static bool buf_add(struct buf *b, const char *s, size_t n)
{
	if (n > b->max - b->len)
		return false;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if (cap > b->max)
			cap = b->max;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return true;
}

static bool buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "fulmar sendmail: %s\n", why);
	fputs("usage: fulmar sendmail [-t] [-i] [-f SENDER] [-F NAME] [-C FILE] [-N DSN]\n"
	      "                       [-R full|hdrs] [-V ENVID] [-v] [recipient...]\n"
	      "       fulmar sendmail -bs | -bp [-C FILE]\n"
	      "The message is read on standard input. -t: recipients from To:, Cc: and\n"
	      "Bcc: too; -i: a line holding only \".\" does not end the message.\n"
	      "Also run as `sendmail` (a symlink to fulmar).\n",
	      stderr);
	return EX_USAGE;
}

/* ---- the command line ---- */

/* sendmail's flags: single letters, clustered ("-ti"), values attached
 * ("-fme@x") or in the next argument ("-f me@x"); flags and recipients
 * may mix until "--". */
static int parse_args(int argc, char **argv, struct opts *o)
{
	o->rcpts = xcalloc((size_t)argc + 1, sizeof(char *));
	bool flags = true;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!flags || a[0] != '-') {
			o->rcpts[o->nrcpts++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			flags = false;
			continue;
		}
		if (strcmp(a, "-") == 0)
			continue; /* sendmail ignores it */
		if (strcmp(a, "--config") == 0) {
			if (i + 1 >= argc)
				return usage("--config needs a file name");
			o->config = argv[++i];
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0) {
			o->config = a + 9;
			continue;
		}
		if (strcmp(a, "--help") == 0) {
			usage(NULL);
			return -1;
		}
		if (a[1] == '-') {
			fprintf(stderr, "fulmar sendmail: unknown option %s\n", a);
			return usage(NULL);
		}
		for (size_t k = 1; a[k]; k++) {
			char f = a[k];
			const char *rest = a + k + 1;
			const char **value = NULL;
			const char *ignored = NULL;
			switch (f) {
			case 't': o->from_headers = true; continue;
			case 'i': o->ignore_dots = true; continue;
			case 'v': o->verbose = true; continue;
			case 'm': case 'n': case 'U': case 'G': case 's':
				continue; /* me too, no aliasing, initial submission...: harmless */
			case 'f': case 'r': value = &o->sender; break;
			case 'F': value = &o->fullname; break;
			case 'C': value = &o->config; break;
			case 'N': value = &o->notify; break;
			case 'R': value = &o->ret; break;
			case 'V': value = &o->envid; break;
			case 'B': case 'h': case 'L': case 'X': case 'O':
				value = &ignored; /* body type, hop count, log tag... */
				break;
			case 'o': /* -oX[value]: only -oi means something here */
				if (*rest == '\0')
					return usage("-o needs an option letter");
				if (strcmp(rest, "i") == 0)
					o->ignore_dots = true;
				goto next; /* -oem -oee -odb -odi -om ...: accepted, ignored */
			case 'e': case 'A': case 'd':
				goto next; /* -em, -Am, -d...: ignored with their letters */
			case 'b':
				if (strcmp(rest, "m") == 0)
					o->mode = MODE_DELIVER;
				else if (strcmp(rest, "s") == 0)
					o->mode = MODE_SMTP;
				else if (strcmp(rest, "p") == 0)
					o->mode = MODE_LIST;
				else if (strcmp(rest, "i") == 0)
					o->mode = MODE_ALIASES;
				else
					return usage("only -bm, -bs, -bp and -bi are supported");
				goto next;
			case 'q':
				return usage("-q is not supported: the Fulmar server runs its queue "
					     "itself (see `fulmar queue`)");
			default: {
				char why[64];
				snprintf(why, sizeof(why), "unknown option -%c", f);
				return usage(why);
			}
			}
			if (*rest)
				*value = rest;
			else if (i + 1 < argc)
				*value = argv[++i];
			else {
				char why[64];
				snprintf(why, sizeof(why), "option -%c needs a value", f);
				return usage(why);
			}
			(void)ignored;
			break;
		}
	next:;
	}
	return 0;
}

/* The configuration: -C, else $FULMAR_CONFIG, else the system's file when
 * there is one, else the embedded default. */
static struct config *load_config(const char *path, char **used)
{
	if (path == NULL || path[0] == '\0')
		path = getenv("FULMAR_CONFIG");
	if ((path == NULL || path[0] == '\0') && access(SYSTEM_CONFIG, F_OK) == 0)
		path = SYSTEM_CONFIG;
	if (path && path[0] == '\0')
		path = NULL;
	char prog[] = "sendmail", flag[] = "--config";
	char *p = path ? xstrdup(path) : NULL;
	char *av[] = { prog, flag, p, NULL };
	int first, usage_error;
	struct config *cfg = cli_load_config(p ? 3 : 1, av, &first, &usage_error);
	*used = p;
	return cfg;
}

/* ---- addresses ---- */

/* Is addr (without angle brackets) a valid RFC 5321 path? */
static bool addr_valid(const char *addr, bool allow_null, bool *utf8)
{
	char path[SMTP_ADDR_PATH_MAX + 3];
	int n = snprintf(path, sizeof(path), "<%s>", addr);
	if (n < 0 || (size_t)n >= sizeof(path))
		return false;
	struct smtp_addr a;
	size_t used;
	if (smtp_addr_parse(path, (size_t)n, allow_null, true, &a, &used) != SMTP_ADDR_OK ||
	    used != (size_t)n)
		return false;
	*utf8 |= a.has_utf8;
	return true;
}

struct rcpt_list {
	char **items;
	size_t n, max;
	const char *domain; /* for bare names ("root") */
	bool utf8;          /* some address needs SMTPUTF8 */
	char bad[SMTP_ADDR_PATH_MAX * 2]; /* the first refused address */
	bool too_many;
};

static int rcpt_add(void *arg, const char *addr, size_t len)
{
	struct rcpt_list *rl = arg;
	char full[SMTP_ADDR_PATH_MAX * 2];
	if (memchr(addr, '@', len))
		snprintf(full, sizeof(full), "%.*s", (int)len, addr);
	else
		snprintf(full, sizeof(full), "%.*s@%s", (int)len, addr, rl->domain);
	if (!addr_valid(full, false, &rl->utf8)) {
		strlcpy_safe(rl->bad, full, sizeof(rl->bad));
		return 1;
	}
	for (size_t i = 0; i < rl->n; i++)
		if (strcasecmp(rl->items[i], full) == 0)
			return 0;
	if (rl->n >= rl->max) {
		rl->too_many = true;
		return 1;
	}
	rl->items[rl->n++] = xstrdup(full);
	return 0;
}

static void rcpt_list_free(struct rcpt_list *rl)
{
	for (size_t i = 0; i < rl->n; i++)
		free(rl->items[i]);
	free(rl->items);
}

/* The envelope sender: -f (qualified with the host name; "" or "<>" is
 * the null sender), else LOGIN@hostname. NULL when it is not valid. */
static char *make_sender(const char *f, const struct config *cfg, bool *utf8)
{
	char addr[SMTP_ADDR_PATH_MAX * 2];
	if (f) {
		size_t n = strlen(f);
		if (n >= 2 && f[0] == '<' && f[n - 1] == '>') {
			f++;
			n -= 2;
		}
		if (memchr(f, '@', n) || n == 0)
			snprintf(addr, sizeof(addr), "%.*s", (int)n, f);
		else
			snprintf(addr, sizeof(addr), "%.*s@%s", (int)n, f, cfg->hostname);
	} else {
		struct passwd *pw = getpwuid(getuid());
		if (pw == NULL || pw->pw_name == NULL || pw->pw_name[0] == '\0')
			return NULL;
		snprintf(addr, sizeof(addr), "%s@%s", pw->pw_name, cfg->hostname);
	}
	return addr_valid(addr, true, utf8) ? xstrdup(addr) : NULL;
}

/* ---- the message ---- */

/* A display name for From:: as it is when made of atoms, quoted when it
 * holds specials, RFC 2047 encoded words when it holds UTF-8. False when
 * it holds control characters. */
static bool format_name(const char *name, struct buf *out)
{
	bool plain = true, ascii = true;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		if (*p >= 0x80)
			ascii = false;
		else if (!(*p == ' ' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			   (*p >= 'A' && *p <= 'Z') || strchr("!#$%&'*+-/=?^_`{|}~", *p)))
			plain = false;
	}
	if (ascii && plain)
		return buf_str(out, name);
	if (ascii) {
		bool ok = buf_str(out, "\"");
		for (const char *p = name; *p && ok; p++) {
			if (*p == '"' || *p == '\\')
				ok = buf_add(out, "\\", 1);
			ok = ok && buf_add(out, p, 1);
		}
		return ok && buf_str(out, "\"");
	}
	/* Q encoding, whole UTF-8 characters per word, words folded. */
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)name;
	bool ok = true;
	while (*p && ok) {
		ok = buf_str(out, "=?UTF-8?Q?");
		size_t used = 0;
		while (*p && ok) {
			size_t clen = 1;
			if (*p >= 0x80)
				while (p[clen] >= 0x80 && p[clen] < 0xc0 && clen < 4)
					clen++;
			if (used + clen * 3 > 45)
				break;
			for (size_t k = 0; k < clen && ok; k++, p++) {
				bool safe = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
					    (*p >= 'A' && *p <= 'Z');
				char enc[3] = { '=', hex[*p >> 4], hex[*p & 15] };
				ok = *p == ' ' ? buf_add(out, "_", 1)
				     : safe   ? buf_add(out, (const char *)p, 1)
					      : buf_add(out, enc, 3);
				used += safe || *p == ' ' ? 1 : 3;
			}
		}
		ok = ok && buf_str(out, "?=");
		if (*p && ok)
			ok = buf_str(out, "\r\n ");
	}
	return ok;
}

/* The full name for From:: -F, else the first field of the GECOS. */
static const char *full_name(const char *f)
{
	if (f)
		return f;
	struct passwd *pw = getpwuid(getuid());
	if (pw == NULL || pw->pw_gecos == NULL)
		return NULL;
	static char name[FULLNAME_MAX + 1];
	size_t n = strcspn(pw->pw_gecos, ",");
	if (n == 0 || n > FULLNAME_MAX)
		return NULL;
	memcpy(name, pw->pw_gecos, n);
	name[n] = '\0';
	return name;
}

struct reader {
	const struct opts *o;
	struct buf *msg;
	size_t text_line; /* octets per line with CR LF, after dot-stuffing */
	bool first;
	bool done;        /* the "." line was read */
	unsigned long lineno;
	int status;       /* EX_DATAERR once a limit is exceeded */
};

/* One line of input, its LF and trailing CRs removed; a CR left inside
 * it ends a line too (old Mac line ends). */
static void add_line(struct reader *r, const char *s, size_t len)
{
	while (len > 0 && s[len - 1] == '\r')
		len--;
	r->lineno++;
	if (!r->o->ignore_dots && len == 1 && s[0] == '.') {
		r->done = true;
		return;
	}
	if (r->first && len >= 5 && memcmp(s, "From ", 5) == 0) {
		r->first = false; /* an mbox separator, not part of the message */
		return;
	}
	r->first = false;
	for (;;) {
		const char *cr = memchr(s, '\r', len);
		size_t n = cr ? (size_t)(cr - s) : len;
		if (n + (n > 0 && s[0] == '.') + 2 > r->text_line) {
			fprintf(stderr, "fulmar sendmail: line %lu is longer than %zu octets "
					"(limits.text_line): message not sent\n",
				r->lineno, r->text_line - 2);
			r->status = EX_DATAERR;
			return;
		}
		if (!buf_add(r->msg, s, n) || !buf_add(r->msg, "\r\n", 2)) {
			fprintf(stderr, "fulmar sendmail: the message is larger than %zu octets "
					"(limits.message_size): message not sent\n",
				r->msg->max);
			r->status = EX_DATAERR;
			return;
		}
		if (cr == NULL)
			return;
		len -= n + 1;
		s = cr + 1;
	}
}

/* The message from standard input, with CR LF line ends, up to its end or
 * (without -i) a line holding only ".". */
static int read_message(struct reader *r)
{
	struct buf line = { .max = r->text_line * 2 + 64 };
	char chunk[65536];
	while (!r->done && r->status == 0) {
		ssize_t got = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fprintf(stderr, "fulmar sendmail: reading the message: %s\n",
				strerror_safe(errno));
			r->status = EX_IOERR;
			break;
		}
		if (got == 0) {
			if (line.len > 0)
				add_line(r, line.p, line.len);
			break;
		}
		size_t i = 0, n = (size_t)got;
		while (i < n && !r->done && r->status == 0) {
			const char *nl = memchr(chunk + i, '\n', n - i);
			size_t take = nl ? (size_t)(nl - (chunk + i)) : n - i;
			if (!buf_add(&line, chunk + i, take)) {
				fprintf(stderr, "fulmar sendmail: line %lu is longer than %zu octets "
						"(limits.text_line): message not sent\n",
					r->lineno + 1, r->text_line - 2);
				r->status = EX_DATAERR;
				break;
			}
			i += take;
			if (nl) {
				i++;
				add_line(r, line.p, line.len);
				line.len = 0;
			}
		}
	}
	free(line.p);
	return r->status;
}

/* ---- SMTP on the local socket ---- */

struct link {
	int fd;
	bool verbose;
	char in[8192];
	size_t len, pos;
	char out[65536];
	size_t olen;
};

static bool link_flush(struct link *c)
{
	size_t off = 0;
	while (off < c->olen) {
		ssize_t n = write(c->fd, c->out + off, c->olen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	c->olen = 0;
	return true;
}

static bool link_write(struct link *c, const char *p, size_t n)
{
	while (n > 0) {
		if (c->olen == sizeof(c->out) && !link_flush(c))
			return false;
		size_t take = sizeof(c->out) - c->olen;
		if (take > n)
			take = n;
		memcpy(c->out + c->olen, p, take);
		c->olen += take;
		p += take;
		n -= take;
	}
	return true;
}

/* One reply line without its CR LF; false on EOF, timeout or overflow. */
static bool link_line(struct link *c, char *line, size_t cap, size_t *len)
{
	size_t n = 0;
	for (;;) {
		if (c->pos == c->len) {
			ssize_t got = read(c->fd, c->in, sizeof(c->in));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return false;
			c->len = (size_t)got;
			c->pos = 0;
		}
		char ch = c->in[c->pos++];
		if (ch == '\n')
			break;
		if (n + 1 >= cap)
			return false;
		line[n++] = ch;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	*len = n;
	return true;
}

/* A whole reply: its code, or -1 when the connection failed. text gets
 * its lines (joined by newlines) to show the user. */
static int link_reply(struct link *c, char *text, size_t textlen)
{
	char line[REPLY_LINE_MAX];
	size_t n, tl = 0;
	int code = -1;
	text[0] = '\0';
	for (int lines = 0; lines < 100; lines++) {
		if (!link_line(c, line, sizeof(line), &n))
			return -1;
		if (c->verbose)
			fprintf(stderr, "<<< %s\n", line);
		if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-'))
			return -1;
		int lc = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (code >= 0 && lc != code)
			return -1;
		code = lc;
		int w = snprintf(text + tl, textlen - tl, "%s%s", tl ? "\n" : "", line);
		if (w > 0)
			tl = (size_t)w >= textlen - tl ? textlen - 1 : tl + (size_t)w;
		if (n == 3 || line[3] == ' ')
			return code;
	}
	return -1;
}

static int link_cmd(struct link *c, const char *cmd, char *text, size_t textlen)
{
	if (c->verbose)
		fprintf(stderr, ">>> %s\n", cmd);
	if (!link_write(c, cmd, strlen(cmd)) || !link_write(c, "\r\n", 2) || !link_flush(c))
		return -1;
	return link_reply(c, text, textlen);
}

/* Connect to STATE_DIR/sendmail.sock; -1 with the reason printed. */
static int connect_server(const struct config *cfg)
{
	struct sockaddr_un sun;
	socklen_t sl;
	int dirfd = -1;
	int fd = -1, err = 0;
	if (smtp_server_local_address(cfg->state_dir, &sun, &sl, &dirfd) < 0) {
		err = errno;
	} else {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sl) < 0)
			err = errno;
	}
	if (dirfd >= 0)
		close(dirfd);
	if (err == 0) {
		struct timeval tv = { REPLY_TIMEOUT, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		return fd;
	}
	if (fd >= 0)
		close(fd);
	if (err == ENOENT || err == ECONNREFUSED)
		fprintf(stderr, "fulmar sendmail: the Fulmar server is not running (%s/%s): "
				"message not sent\n", cfg->state_dir, SMTP_SERVER_LOCAL_SOCKET);
	else
		fprintf(stderr, "fulmar sendmail: cannot connect to %s/%s: %s: message not sent\n",
			cfg->state_dir, SMTP_SERVER_LOCAL_SOCKET, strerror_safe(err));
	return -1;
}

/* A failed step: the server's reply (or the lost connection) and the
 * exit status it means. */
static int fail(const char *step, int code, const char *text)
{
	if (code < 0) {
		fprintf(stderr, "fulmar sendmail: the connection to the server was lost at %s: "
				"message not sent\n", step);
		return EX_TEMPFAIL;
	}
	fprintf(stderr, "fulmar sendmail: %s refused: %s: message not sent\n", step, text);
	return code >= 500 ? EX_UNAVAILABLE : EX_TEMPFAIL;
}

/* Send lines (each ending in CR LF) dot-stuffed. */
static bool send_lines(struct link *c, const char *p, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t n = nl ? (size_t)(nl - p) + 1 : len;
		if (p[0] == '.' && !link_write(c, ".", 1))
			return false;
		if (!link_write(c, p, n))
			return false;
		p += n;
		len -= n;
	}
	return true;
}

struct submission {
	const char *sender;
	const struct rcpt_list *rcpts;
	const char *mail_params; /* " BODY=8BITMIME SMTPUTF8 ..." or "" */
	const char *rcpt_params; /* " NOTIFY=..." or "" */
	const char *from_field;  /* "From: ...\r\n" to add, or NULL */
	const char *msg;         /* the message, CR LF lines, not stuffed */
	size_t msg_len;
	size_t hdr_len;          /* its header fields */
};

static int submit(struct link *c, const struct submission *m)
{
	char text[REPLY_TEXT_MAX];
	char cmd[SMTP_ADDR_PATH_MAX * 2 + 256];
	int code = link_reply(c, text, sizeof(text));
	if (code != 220)
		return fail("the greeting", code, text);
	code = link_cmd(c, "EHLO localhost", text, sizeof(text));
	if (code != 250)
		return fail("EHLO", code, text);
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>%s", m->sender, m->mail_params);
	code = link_cmd(c, cmd, text, sizeof(text));
	if (code != 250)
		return fail("the sender", code, text);
	size_t ok = 0, temp = 0, perm = 0;
	for (size_t i = 0; i < m->rcpts->n; i++) {
		snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>%s", m->rcpts->items[i], m->rcpt_params);
		code = link_cmd(c, cmd, text, sizeof(text));
		if (code < 0)
			return fail("RCPT", code, text);
		if (code / 100 == 2) {
			ok++;
			continue;
		}
		if (code >= 500)
			perm++;
		else
			temp++;
		fprintf(stderr, "fulmar sendmail: %s: %s\n", m->rcpts->items[i], text);
	}
	if (ok == 0) {
		link_cmd(c, "QUIT", text, sizeof(text));
		fprintf(stderr, "fulmar sendmail: no recipient was accepted: message not sent\n");
		return temp ? EX_TEMPFAIL : EX_NOUSER;
	}
	code = link_cmd(c, "DATA", text, sizeof(text));
	if (code != 354)
		return fail("DATA", code, text);
	/* From: first, then the fields but Bcc:, then the body. */
	bool sent = !m->from_field || link_write(c, m->from_field, strlen(m->from_field));
	size_t pos = 0;
	struct addr_list_field f;
	while (sent && addr_list_next_field(m->msg, m->hdr_len, &pos, &f))
		if (!addr_list_field_is(&f, "bcc") && !addr_list_field_is(&f, "resent-bcc"))
			sent = send_lines(c, m->msg + f.start, f.end - f.start);
	const char *body = m->msg + m->hdr_len;
	size_t blen = m->msg_len - m->hdr_len;
	if (sent && blen > 0 && !(blen >= 2 && body[0] == '\r' && body[1] == '\n'))
		sent = link_write(c, "\r\n", 2); /* the body began without an empty line */
	sent = sent && send_lines(c, body, blen) && link_write(c, ".\r\n", 3) && link_flush(c);
	if (c->verbose)
		fprintf(stderr, ">>> (%zu octets of message)\n>>> .\n", m->msg_len);
	code = sent ? link_reply(c, text, sizeof(text)) : -1;
	if (code != 250)
		return fail("the message", code, text);
	char done[REPLY_TEXT_MAX];
	link_cmd(c, "QUIT", done, sizeof(done));
	if (c->verbose)
		fprintf(stderr, "fulmar sendmail: %s\n", text);
	if (temp || perm)
		fprintf(stderr, "fulmar sendmail: the message went to the %zu other "
				"recipient%s\n", ok, ok == 1 ? "" : "s");
	return temp ? EX_TEMPFAIL : perm ? EX_NOUSER : EX_OK;
}

/* ---- DSN options ---- */

/* -N never | success,failure,delay -> " NOTIFY=..." */
static bool dsn_notify(const char *v, char *out, size_t outlen)
{
	char words[64] = "";
	size_t wl = 0;
	const char *p = v;
	bool never = false, other = false;
	while (*p) {
		size_t n = strcspn(p, ",");
		static const char *const names[] = { "never", "success", "failure", "delay" };
		size_t k = 0;
		while (k < 4 && !(strlen(names[k]) == n && strncasecmp(p, names[k], n) == 0))
			k++;
		if (k == 4)
			return false;
		never |= k == 0;
		other |= k != 0;
		int w = snprintf(words + wl, sizeof(words) - wl, "%s%s", wl ? "," : "",
				 k == 0 ? "NEVER" : k == 1 ? "SUCCESS" : k == 2 ? "FAILURE" : "DELAY");
		if (w < 0 || (size_t)w >= sizeof(words) - wl)
			return false;
		wl += (size_t)w;
		p += n;
		if (*p == ',')
			p++;
	}
	if (wl == 0 || (never && other))
		return false;
	snprintf(out, outlen, " NOTIFY=%s", words);
	return true;
}

/* -V envid -> " ENVID=xtext" (RFC 3461 4). */
static bool dsn_envid(const char *v, char *out, size_t outlen)
{
	size_t n = strlen(v);
	if (n == 0 || n > ENVID_MAX)
		return false;
	size_t o = (size_t)snprintf(out, outlen, " ENVID=");
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			return false;
		if (o + 4 >= outlen)
			return false;
		if (*p == '+' || *p == '=' || *p == ' ')
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", *p);
		else
			out[o++] = (char)*p;
	}
	out[o] = '\0';
	return true;
}

/* ---- modes ---- */

/* -bs: SMTP on standard input and output, relayed to the server. */
static int relay_smtp(const struct config *cfg)
{
	int fd = connect_server(cfg);
	if (fd < 0)
		return EX_TEMPFAIL;
	struct timeval none = { 0, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
	struct pollfd pf[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
				{ .fd = fd, .events = POLLIN } };
	char buf[16384];
	for (;;) {
		/* After the input's end, the replies to what was pipelined still
		 * come: wait for them, and for the server to close after QUIT. */
		int rc = poll(pf, 2, pf[0].fd < 0 ? REPLY_TIMEOUT * 1000 : -1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			break;
		if (pf[1].revents) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break; /* the server closed: the session is over */
			for (ssize_t off = 0, w; off < n; off += w)
				if ((w = write(STDOUT_FILENO, buf + off, (size_t)(n - off))) <= 0)
					goto out;
		}
		if (pf[0].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				pf[0].fd = -1; /* poll ignores it from now on */
				continue;
			}
			for (ssize_t off = 0, w; off < n; off += w)
				if ((w = write(fd, buf + off, (size_t)(n - off))) <= 0)
					goto out;
		}
	}
out:
	close(fd);
	return EX_OK;
}

static int deliver(const struct opts *o, const struct config *cfg)
{
	int status = EX_OK;
	bool utf8 = false;
	char *sender = make_sender(o->sender, cfg, &utf8);
	if (sender == NULL) {
		if (o->sender)
			fprintf(stderr, "fulmar sendmail: bad sender address '%s'\n", o->sender);
		else
			fprintf(stderr, "fulmar sendmail: cannot make a sender address from the "
					"login name (uid %u): use -f\n", (unsigned)getuid());
		return EX_DATAERR;
	}
	char notify[80] = "", envid[ENVID_MAX * 3 + 16] = "", ret[16] = "";
	if (o->notify && !dsn_notify(o->notify, notify, sizeof(notify))) {
		free(sender);
		return usage("-N takes never, or success, failure and delay joined by commas");
	}
	if (o->envid && !dsn_envid(o->envid, envid, sizeof(envid))) {
		free(sender);
		return usage("-V takes up to 100 printable ASCII characters");
	}
	if (o->ret) {
		if (strcasecmp(o->ret, "full") != 0 && strcasecmp(o->ret, "hdrs") != 0) {
			free(sender);
			return usage("-R takes full or hdrs");
		}
		snprintf(ret, sizeof(ret), " RET=%s", strcasecmp(o->ret, "full") == 0 ? "FULL"
											: "HDRS");
	}
	const char *name = full_name(o->fullname);
	if (o->fullname && strlen(o->fullname) > FULLNAME_MAX) {
		free(sender);
		return usage("-F: the name is too long");
	}

	struct rcpt_list rl = { .max = (size_t)cfg->limits.recipients,
				.domain = cfg->ndomains ? cfg->domains[0].name : cfg->hostname };
	rl.items = xcalloc(rl.max + 1, sizeof(char *));
	for (size_t i = 0; i < o->nrcpts && status == EX_OK; i++) {
		enum addr_list_status st = addr_list_parse(o->rcpts[i], strlen(o->rcpts[i]),
							   rcpt_add, &rl);
		if (st != ADDR_LIST_OK && !rl.too_many && !rl.bad[0])
			strlcpy_safe(rl.bad, o->rcpts[i], sizeof(rl.bad));
		if (st != ADDR_LIST_OK)
			status = EX_DATAERR;
	}

	struct buf msg = { .max = (size_t)cfg->limits.message_size };
	struct reader r = { .o = o, .msg = &msg, .text_line = (size_t)cfg->limits.text_line,
			    .first = true };
	if (status == EX_OK)
		status = read_message(&r);
	size_t hdr_len = addr_list_header_len(msg.p, msg.len);
	if (status == EX_OK && o->from_headers) {
		enum addr_list_status st = addr_list_recipients(msg.p, hdr_len, rcpt_add, &rl);
		if (st != ADDR_LIST_OK && !rl.too_many && !rl.bad[0])
			fprintf(stderr, "fulmar sendmail: the To:, Cc: or Bcc: field is not a "
					"list of addresses\n");
		if (st != ADDR_LIST_OK)
			status = EX_DATAERR;
	}
	if (rl.too_many) {
		fprintf(stderr, "fulmar sendmail: more than %zu recipients (limits.recipients)\n",
			rl.max);
		status = EX_DATAERR;
	} else if (rl.bad[0]) {
		fprintf(stderr, "fulmar sendmail: bad recipient address '%s'\n", rl.bad);
		status = EX_DATAERR;
	}
	if (status == EX_OK && rl.n == 0) {
		fprintf(stderr, "fulmar sendmail: no recipients%s\n",
			o->from_headers ? " (none given, none in To:, Cc: or Bcc:)" : " given");
		status = EX_USAGE;
	}

	/* A From: field when the message has none: Name <sender>. */
	struct buf from = { .max = 4096 };
	bool has_from = false;
	size_t pos = 0;
	struct addr_list_field f;
	while (addr_list_next_field(msg.p, hdr_len, &pos, &f))
		has_from |= addr_list_field_is(&f, "from");
	if (status == EX_OK && !has_from) {
		char *fallback = sender[0] ? NULL : make_sender(NULL, cfg, &utf8);
		bool ok = buf_str(&from, "From: ");
		if (name && name[0]) {
			size_t mark = from.len;
			if (!(format_name(name, &from) && buf_str(&from, " "))) {
				if (o->fullname) {
					fprintf(stderr, "fulmar sendmail: -F: control characters in the "
							"name\n");
					status = EX_USAGE;
				}
				from.len = mark; /* a GECOS name that cannot be used: none */
			}
		}
		ok = ok && buf_str(&from, "<") &&
		     buf_str(&from, sender[0] ? sender : fallback ? fallback : "") &&
		     buf_str(&from, ">\r\n") && buf_add(&from, "", 1);
		if (!ok && status == EX_OK)
			status = EX_SOFTWARE;
		free(fallback);
	}

	if (status == EX_OK) {
		bool eight = false;
		for (size_t i = 0; i < msg.len && !eight; i++)
			eight = (unsigned char)msg.p[i] >= 0x80;
		for (size_t i = 0; i < from.len && !eight; i++)
			eight = (unsigned char)from.p[i] >= 0x80;
		char mail_params[ENVID_MAX * 3 + 80];
		snprintf(mail_params, sizeof(mail_params), "%s%s%s%s",
			 eight ? " BODY=8BITMIME" : "", utf8 || rl.utf8 ? " SMTPUTF8" : "", ret,
			 envid);
		struct submission m = {
			.sender = sender, .rcpts = &rl, .mail_params = mail_params,
			.rcpt_params = notify, .from_field = from.len ? from.p : NULL,
			.msg = msg.p ? msg.p : "", .msg_len = msg.len, .hdr_len = hdr_len,
		};
		struct link *c = xcalloc(1, sizeof(*c));
		c->verbose = o->verbose;
		c->fd = connect_server(cfg);
		status = c->fd < 0 ? EX_TEMPFAIL : submit(c, &m);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
	}
	free(from.p);
	free(msg.p);
	rcpt_list_free(&rl);
	free(sender);
	return status;
}

int cmd_sendmail(int argc, char **argv)
{
	struct opts o = { .mode = MODE_DELIVER };
	int rc = parse_args(argc, argv, &o);
	if (rc != 0) {
		free(o.rcpts);
		return rc < 0 ? EX_OK : rc;
	}
	signal(SIGPIPE, SIG_IGN);
	char *path = NULL;
	struct config *cfg = load_config(o.config, &path);
	if (cfg == NULL) {
		free(path);
		free(o.rcpts);
		return EX_CONFIG;
	}
	switch (o.mode) {
	case MODE_SMTP:
		rc = relay_smtp(cfg);
		break;
	case MODE_LIST: {
		char q[] = "queue", list[] = "list", flag[] = "--config";
		char *av[] = { q, list, flag, path, NULL };
		rc = cmd_queue(path ? 4 : 2, av);
		break;
	}
	case MODE_ALIASES:
		puts("fulmar sendmail: aliases live in the Fulmar configuration "
		     "(local.domains ... aliases); `kill -HUP` the server to reload it");
		rc = EX_OK;
		break;
	case MODE_DELIVER:
		rc = deliver(&o, cfg);
		break;
	}
	config_unref(cfg);
	free(path);
	free(o.rcpts);
	return rc;
}
