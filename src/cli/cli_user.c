/*
 * cli_user: `fulmar user add|passwd|del|list [--config FILE]
 * [--users-file PATH] [NAME]` — edits the users file (auth/users.h). The
 * file is --users-file, or else the configuration's auth.users_file.
 * Passwords come from the terminal (asked twice, not echoed) or from one
 * line of standard input; they are never printed.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/users.h"
#include "cli/cli.h"
#include "config/config.h"
#include "lib/xalloc.h"

/* A password buffer: AUTH_PASSWORD_MAX octets, one more to notice a
 * longer one, and the NUL. */
#define PW_BUF (AUTH_PASSWORD_MAX + 2)

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

/* Reads one line from fd into buf (PW_BUF octets) without its newline. 0,
 * or -1 with a message printed. */
static int read_line(int fd, char *buf)
{
	size_t n = 0;
	bool too_long = false, nul = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0) {
			if (errno == EINTR && !interrupted)
				continue;
			if (!interrupted)
				fprintf(stderr, "fulmar: cannot read the password: %s\n",
					strerror_safe(errno));
			return -1;
		}
		if (r == 0 || c == '\n')
			break;
		if (c == '\0')
			nul = true;
		if (n < PW_BUF - 1)
			buf[n++] = c;
		else
			too_long = true;
	}
	buf[n] = '\0';
	if (nul) {
		fprintf(stderr, "fulmar: the password contains a NUL octet\n");
		return -1;
	}
	if (too_long || n > AUTH_PASSWORD_MAX) {
		fprintf(stderr, "fulmar: password longer than %d octets\n", AUTH_PASSWORD_MAX);
		return -1;
	}
	if (n == 0) {
		fprintf(stderr, "fulmar: empty password\n");
		return -1;
	}
	return 0;
}

/* Prompts on the terminal at fd with echo off. An interrupt restores the
 * terminal before it takes effect. 0, or -1 with a message printed. */
static int prompt_tty(int fd, const char *prompt, char *buf)
{
	struct termios old, quiet;
	if (tcgetattr(fd, &old) < 0) {
		fprintf(stderr, "fulmar: cannot read the terminal: %s\n", strerror_safe(errno));
		return -1;
	}
	struct sigaction sa = { 0 }, saved[3];
	static const int sigs[3] = { SIGINT, SIGTERM, SIGQUIT };
	sa.sa_handler = on_signal; /* no SA_RESTART: read() returns EINTR */
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &saved[i]);
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	fputs(prompt, stderr);
	fflush(stderr);
	int rc = -1;
	if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0)
		fprintf(stderr, "\nfulmar: cannot turn off echo: %s\n", strerror_safe(errno));
	else {
		rc = read_line(fd, buf);
		tcsetattr(fd, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &saved[i], NULL);
	if (interrupted) {
		explicit_bzero(buf, PW_BUF);
		raise(interrupted);
		return -1;
	}
	return rc;
}

/* The new password into pw (PW_BUF octets). 0, or -1 with a message. */
static int read_password(char *pw)
{
	if (!isatty(STDIN_FILENO)) {
		/* One line; read_line drops its newline. */
		return read_line(STDIN_FILENO, pw);
	}
	char again[PW_BUF];
	int rc = -1;
	if (prompt_tty(STDIN_FILENO, "New password: ", pw) == 0 &&
	    prompt_tty(STDIN_FILENO, "Repeat the new password: ", again) == 0) {
		if (strcmp(pw, again) == 0)
			rc = 0;
		else
			fprintf(stderr, "fulmar: the passwords do not match\n");
	}
	explicit_bzero(again, sizeof(again));
	return rc;
}

static void print_name(void *arg, const char *name)
{
	(void)arg;
	printf("%s\n", name);
}

/* The rule of users.h, checked before a password is asked for. */
static bool name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > AUTH_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c >= 0x7f || c == ':')
			return false;
	}
	return true;
}

static int usage(void)
{
	fprintf(stderr, "usage: fulmar user add|passwd|del NAME [--config FILE] "
			"[--users-file PATH]\n"
			"       fulmar user list [--config FILE] [--users-file PATH]\n");
	return 2;
}

int cmd_user(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *sub = argv[1];
	bool list = strcmp(sub, "list") == 0;
	if (!list && strcmp(sub, "add") != 0 && strcmp(sub, "passwd") != 0 &&
	    strcmp(sub, "del") != 0)
		return usage();
	char *config_file = NULL;
	const char *users_file = NULL, *name = NULL;
	for (int i = 2; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
			if (i + 1 >= argc)
				return usage();
			config_file = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			config_file = a + 9;
		} else if (strcmp(a, "--users-file") == 0) {
			if (i + 1 >= argc)
				return usage();
			users_file = argv[++i];
		} else if (strncmp(a, "--users-file=", 13) == 0) {
			users_file = a + 13;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "fulmar: unknown option '%s'\n", a);
			return usage();
		} else if (name == NULL && !list) {
			name = a;
		} else {
			fprintf(stderr, "fulmar: unexpected argument '%s'\n", a);
			return usage();
		}
	}
	if (!list && name == NULL)
		return usage();
	if (!list && !name_ok(name)) {
		fprintf(stderr, "fulmar: invalid user name: 1 to %d printable characters, "
				"no spaces and no ':'\n",
			AUTH_NAME_MAX);
		return 1;
	}
	if (users_file != NULL && users_file[0] == '\0') {
		fprintf(stderr, "fulmar: --users-file needs a path\n");
		return 2;
	}

	struct config *cfg = NULL;
	if (users_file == NULL) {
		char *cargv[3] = { argv[0], "--config", config_file };
		int first, usage_error;
		cfg = cli_load_config(config_file ? 3 : 1, cargv, &first, &usage_error);
		if (usage_error)
			return 2;
		if (cfg == NULL)
			return 1;
		users_file = cfg->auth.users_file;
		if (users_file == NULL) {
			fprintf(stderr, "fulmar: %s sets no auth.users_file; set it or pass "
					"--users-file PATH\n",
				cfg->source);
			config_unref(cfg);
			return 1;
		}
	}

	char err[512];
	int rc = 0;
	if (list) {
		if (auth_users_list(users_file, print_name, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "fulmar: %s\n", err);
			rc = 1;
		} else if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "fulmar: cannot write the list: %s\n",
				strerror_safe(errno));
			rc = 1;
		}
	} else if (strcmp(sub, "del") == 0) {
		if (auth_users_delete(users_file, name, err, sizeof(err)) < 0) {
			fprintf(stderr, "fulmar: %s\n", err);
			rc = 1;
		} else {
			fprintf(stderr, "fulmar: deleted user %s\n", name);
		}
	} else {
		bool add = strcmp(sub, "add") == 0;
		/* Fail before asking for a password when the answer is known. */
		struct auth_users *u = auth_users_load(users_file, err, sizeof(err));
		if (u == NULL) {
			fprintf(stderr, "fulmar: %s\n", err);
			rc = 1;
		} else if (add && auth_users_exists(u, name)) {
			fprintf(stderr, "fulmar: user %s already exists in %s\n", name,
				users_file);
			rc = 1;
		} else if (!add && !auth_users_exists(u, name)) {
			fprintf(stderr, "fulmar: no user %s in %s\n", name, users_file);
			rc = 1;
		}
		auth_users_free(u);
		char pw[PW_BUF];
		if (rc == 0 && read_password(pw) < 0)
			rc = 1;
		/* The file may have changed meanwhile: set checks again. */
		if (rc == 0 &&
		    auth_users_set(users_file, name, pw, !add, add, err, sizeof(err)) < 0) {
			fprintf(stderr, "fulmar: %s\n", err);
			rc = 1;
		}
		explicit_bzero(pw, sizeof(pw));
		if (rc == 0)
			fprintf(stderr, "fulmar: %s user %s\n",
				add ? "added" : "changed the password of", name);
		/* Run as root for a daemon that runs as server.user: the file must
		 * stay readable by the daemon, which rereads it on SIGHUP. */
		struct passwd *pw_user = rc == 0 && geteuid() == 0 && cfg && cfg->user
						 ? getpwnam(cfg->user) : NULL;
		if (pw_user && chown(users_file, pw_user->pw_uid, pw_user->pw_gid) < 0)
			fprintf(stderr, "fulmar: warning: cannot give %s to %s: %s\n", users_file,
				cfg->user, strerror_safe(errno));
	}
	if (cfg != NULL)
		config_unref(cfg);
	return rc;
}
