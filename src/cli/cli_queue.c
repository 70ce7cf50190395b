/*
 * cli_queue: `fulmar queue list|show|flush|hold|release|delete|bounce`.
 * Each asks the running server through its control socket
 * (STATE_DIR/control.sock, see control/control_proto.h). When no server
 * runs, `list` reads the queue directory directly (queue files are
 * immutable once committed; the journal is append-only); the other
 * commands need the server and say so.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "control/control_proto.h"
#include "lib/xalloc.h"
#include "queue/queue.h"

#define REPLY_LINE_MAX (1u << 20)  /* one reply line, at most */
#define REPLY_TIMEOUT 60           /* seconds without a reply octet */

static int usage(void)
{
	fputs("usage: fulmar queue list [--config FILE]\n"
	      "       fulmar queue show ID [--config FILE]\n"
	      "       fulmar queue flush [ID] [--config FILE]\n"
	      "       fulmar queue hold|release|delete|bounce ID [--config FILE]\n",
	      stderr);
	return 2;
}

static const struct {
	const char *name;
	enum control_cmd cmd;
	int nargs; /* 0 none, 1 an id, -1 an optional id */
	const char *done; /* printed after success */
} subcommands[] = {
	{ "list", CONTROL_LIST, 0, NULL },
	{ "show", CONTROL_SHOW, 1, NULL },
	{ "flush", CONTROL_FLUSH, -1, "flushed: deferred recipients are retried now" },
	{ "hold", CONTROL_HOLD, 1, "held" },
	{ "release", CONTROL_RELEASE, 1, "released" },
	{ "delete", CONTROL_DELETE, 1, "deleted" },
	{ "bounce", CONTROL_BOUNCE, 1, "bounced" },
};

/* ---- offline listing ------------------------------------------------- */

static void print_buffer(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	if (n > 0)
		fwrite(evbuffer_pullup(b, (ev_ssize_t)n), 1, n, stdout);
	evbuffer_drain(b, n);
}

static void print_offline(void *arg, const struct envelope *env)
{
	struct evbuffer *b = arg;
	control_proto_format(b, env, env->held, NULL, false, (int64_t)time(NULL));
	print_buffer(b);
}

static int list_offline(const char *state_dir)
{
	char err[256] = "";
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		xfatal("out of memory");
	long n = queue_list_dir(state_dir, print_offline, b, err, sizeof(err));
	evbuffer_free(b);
	if (n < 0) {
		fprintf(stderr, "fulmar: %s\n", err);
		return 1;
	}
	if (n == 0)
		fprintf(stderr, "queue is empty\n");
	return 0;
}

/* ---- the control socket ---------------------------------------------- */

/* Connect to the server. -1 with errno: ENOENT or ECONNREFUSED when no
 * server runs. */
static int ctl_connect(const char *path)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strlcpy_safe(sa.sun_path, path, sizeof(sa.sun_path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { REPLY_TIMEOUT, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* A line from the server, made safe for a terminal (the server escapes
 * what it sends; this holds even if it did not). */
static void print_line(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('\n');
}

/* Next reply line into *line (malloc'd, without "\n"). 1, 0 at EOF, -1
 * on error (message printed). */
static int read_line(int fd, struct evbuffer *in, char **line, size_t *len)
{
	for (;;) {
		*line = evbuffer_readln(in, len, EVBUFFER_EOL_LF);
		if (*line)
			return 1;
		if (evbuffer_get_length(in) > REPLY_LINE_MAX) {
			fprintf(stderr, "fulmar: the server sent an over-long line\n");
			return -1;
		}
		char buf[16384];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "fulmar: reading from the server: %s\n",
				errno == EAGAIN ? "no reply in time" : strerror_safe(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		evbuffer_add(in, buf, (size_t)n);
	}
}

/* Send one request and print the reply's payload. Returns the exit
 * status; *payload_lines counts what was printed. */
static int ctl_request(int fd, enum control_cmd cmd, const char *id, long *payload_lines)
{
	char req[CONTROL_LINE_MAX];
	int n = snprintf(req, sizeof(req), "%s%s%s\n", control_proto_cmd_name(cmd),
			 id ? " " : "", id ? id : "");
	const char *p = req;
	size_t left = (size_t)n;
	while (left > 0) {
		ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "fulmar: sending to the server: %s\n", strerror_safe(errno));
			return 1;
		}
		p += w;
		left -= (size_t)w;
	}
	struct evbuffer *in = evbuffer_new();
	if (in == NULL)
		xfatal("out of memory");
	int rc = 1;
	bool status_seen = false, ok = false;
	*payload_lines = 0;
	for (;;) {
		char *line;
		size_t len;
		int r = read_line(fd, in, &line, &len);
		if (r < 0)
			break;
		if (r == 0) {
			fprintf(stderr, "fulmar: the server closed the connection before the end "
					"of its reply\n");
			break;
		}
		if (len == 1 && line[0] == '.') {
			free(line);
			rc = ok ? 0 : 1;
			break;
		}
		if (!status_seen) {
			status_seen = true;
			ok = strcmp(line, "ok") == 0;
			if (!ok) {
				const char *text = strncmp(line, "error: ", 7) == 0 ? line + 7 : line;
				fputs("fulmar: ", stderr);
				fflush(stdout);
				for (const char *q = text; *q; q++)
					fputc((unsigned char)*q < 0x20 || *q == 0x7f ? '?' : *q, stderr);
				fputc('\n', stderr);
			}
		} else {
			print_line(line, len);
			(*payload_lines)++;
		}
		free(line);
	}
	evbuffer_free(in);
	return rc;
}

int cmd_queue(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	size_t k = 0;
	const size_t nsub = sizeof(subcommands) / sizeof(subcommands[0]);
	while (k < nsub && strcmp(argv[1], subcommands[k].name) != 0)
		k++;
	if (k == nsub) {
		fprintf(stderr, "fulmar: unknown queue command '%s'\n", argv[1]);
		return usage();
	}
	char *config_file = NULL;
	const char *id = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "fulmar: %s needs a file name\n", a);
				return 2;
			}
			config_file = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			config_file = argv[i] + 9;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "fulmar: unknown option '%s'\n", a);
			return usage();
		} else if (id == NULL && subcommands[k].nargs != 0) {
			id = a;
		} else {
			fprintf(stderr, "fulmar: unexpected argument '%s'\n", a);
			return usage();
		}
	}
	if (subcommands[k].nargs == 1 && id == NULL) {
		fprintf(stderr, "fulmar: queue %s needs a queue id\n", subcommands[k].name);
		return usage();
	}
	char uid[QUEUE_ID_LEN + 1] = "";
	if (id != NULL) {
		if (!control_proto_is_id(id, strlen(id))) {
			fprintf(stderr, "fulmar: '%s' is not a queue id (%d hex digits)\n", id,
				QUEUE_ID_LEN);
			return 1;
		}
		for (size_t i = 0; i < QUEUE_ID_LEN; i++)
			uid[i] = (id[i] >= 'a' && id[i] <= 'f') ? (char)(id[i] - 'a' + 'A') : id[i];
	}

	char *cargv[3] = { argv[0], "--config", config_file };
	int first, usage_error;
	struct config *cfg = cli_load_config(config_file ? 3 : 1, cargv, &first, &usage_error);
	if (usage_error)
		return 2;
	if (cfg == NULL)
		return 1;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, CONTROL_SOCKET_NAME);
	int rc;
	int fd = ctl_connect(path);
	if (fd < 0 && (errno == ENOENT || errno == ECONNREFUSED)) {
		if (subcommands[k].cmd == CONTROL_LIST) {
			fprintf(stderr, "fulmar: server not running; reading %s/queue directly\n",
				cfg->state_dir);
			rc = list_offline(cfg->state_dir);
		} else {
			fprintf(stderr, "fulmar: the server is not running (nothing answers on "
					"%s): queue %s needs it\n",
				path, subcommands[k].name);
			rc = 1;
		}
	} else if (fd < 0) {
		fprintf(stderr, "fulmar: cannot reach the server at %s: %s%s\n", path,
			strerror_safe(errno),
			errno == EACCES || errno == EPERM ? " (run as root or as server.user)" : "");
		rc = 1;
	} else {
		long lines = 0;
		rc = ctl_request(fd, subcommands[k].cmd, id ? uid : NULL, &lines);
		close(fd);
		if (rc == 0 && subcommands[k].cmd == CONTROL_LIST && lines == 0)
			fprintf(stderr, "queue is empty\n");
		else if (rc == 0 && subcommands[k].done)
			printf("%s%s%s\n", id ? uid : "", id ? ": " : "", subcommands[k].done);
	}
	config_unref(cfg);
	return rc;
}
