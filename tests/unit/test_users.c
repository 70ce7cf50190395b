/*
 * Unit tests for auth_users on temporary files: a missing file has no
 * users; add, passwd and delete round trips keep the other lines (comments
 * too) where they were; verify takes the right password only; malformed
 * lines are reported as "path:line: reason"; new files are mode 0600 with
 * yescrypt hashes, salted differently each time; names are lower-cased;
 * four threads verify at once on one snapshot; concurrent edits from
 * four processes all land; a failed rename leaves the file as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/users.h"
#include "lib/fsio.h"

static char tmpdir[PATH_MAX];
static char path[PATH_MAX + 32];
static int nfiles;
static char err[512];

static int group_setup(void **state)
{
	(void)state;
	char t[] = "/tmp/fulmar-test-users-XXXXXX";
	if (mkdtemp(t) == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", t);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char p[PATH_MAX + 32];
	for (int i = 0; i < nfiles; i++) {
		snprintf(p, sizeof(p), "%s/u%d", tmpdir, i);
		unlink(p);
		snprintf(p, sizeof(p), "%s/u%d.tmp", tmpdir, i);
		unlink(p);
	}
	return rmdir(tmpdir);
}

/* A fresh file name in `path` (the file is not created). */
static void new_path(void)
{
	snprintf(path, sizeof(path), "%s/u%d", tmpdir, nfiles++);
}

/* A new file with text; its name is left in `path`. */
static void write_file(const char *text)
{
	new_path();
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* The contents of `path` (static buffer). */
static const char *slurp(void)
{
	static char buf[16384];
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static bool tmp_exists(void)
{
	char t[PATH_MAX + 64];
	snprintf(t, sizeof(t), "%s.tmp", path);
	return access(t, F_OK) == 0;
}

static int add(const char *name, const char *pw)
{
	return auth_users_set(path, name, pw, false, true, err, sizeof(err));
}

static struct auth_users *load_ok(void)
{
	struct auth_users *u = auth_users_load(path, err, sizeof(err));
	if (u == NULL)
		fail_msg("load: %s", err);
	return u;
}

struct names {
	char text[1024];
	size_t n;
};

static void collect(void *arg, const char *name)
{
	struct names *ns = arg;
	size_t len = strlen(ns->text);
	snprintf(ns->text + len, sizeof(ns->text) - len, "%s%s", ns->n ? "," : "", name);
	ns->n++;
}

static void test_missing_file(void **state)
{
	(void)state;
	new_path();
	struct auth_users *u = load_ok();
	assert_int_equal(auth_users_count(u), 0);
	assert_false(auth_users_exists(u, "alice@example.test"));
	assert_false(auth_users_verify(u, "alice@example.test", "secret"));
	auth_users_free(u);
	struct names ns = { 0 };
	assert_int_equal(auth_users_list(path, collect, &ns, err, sizeof(err)), 0);
	assert_int_equal(auth_users_delete(path, "alice@example.test", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no user alice@example.test"));
	assert_int_equal(auth_users_set(path, "alice@example.test", "pw", true, false, err,
					sizeof(err)),
			 -1);
	assert_int_equal(access(path, F_OK), -1); /* failed edits create nothing */
	assert_false(tmp_exists());
	/* An empty file and one of comments are no users either. */
	write_file("");
	u = load_ok();
	assert_int_equal(auth_users_count(u), 0);
	auth_users_free(u);
	write_file("# users\n\n   \n#alice:$y$x\n");
	u = load_ok();
	assert_int_equal(auth_users_count(u), 0);
	auth_users_free(u);
}

static void test_round_trip(void **state)
{
	(void)state;
	new_path();
	assert_int_equal(add("alice@example.test", "correct horse"), 0);
	assert_int_equal(add("bob@example.test", "battery staple"), 0);
	assert_int_equal(add("alice@example.test", "other"), -1);
	assert_non_null(strstr(err, "already exists"));

	struct auth_users *u = load_ok();
	assert_int_equal(auth_users_count(u), 2);
	assert_true(auth_users_exists(u, "alice@example.test"));
	assert_true(auth_users_exists(u, "bob@example.test"));
	assert_false(auth_users_exists(u, "carol@example.test"));
	assert_true(auth_users_verify(u, "alice@example.test", "correct horse"));
	assert_true(auth_users_verify(u, "bob@example.test", "battery staple"));
	assert_false(auth_users_verify(u, "alice@example.test", "battery staple"));
	assert_false(auth_users_verify(u, "alice@example.test", "correct horse "));
	assert_false(auth_users_verify(u, "alice@example.test", ""));
	assert_false(auth_users_verify(u, "carol@example.test", "correct horse"));
	assert_false(auth_users_verify(u, "", "correct horse"));
	assert_false(auth_users_verify(u, NULL, "x"));
	assert_false(auth_users_verify(u, "alice@example.test", NULL));
	auth_users_free(u);

	/* passwd: only an existing user; the old password stops working. */
	assert_int_equal(auth_users_set(path, "carol@example.test", "x", true, false, err,
					sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "no user carol@example.test"));
	assert_int_equal(auth_users_set(path, "alice@example.test", "new one", true, false,
					err, sizeof(err)),
			 0);
	u = load_ok();
	assert_int_equal(auth_users_count(u), 2);
	assert_false(auth_users_verify(u, "alice@example.test", "correct horse"));
	assert_true(auth_users_verify(u, "alice@example.test", "new one"));
	auth_users_free(u);

	/* list in file order: passwd kept alice first. */
	assert_int_equal(add("aaron@example.test", "pw"), 0);
	struct names ns = { 0 };
	assert_int_equal(auth_users_list(path, collect, &ns, err, sizeof(err)), 3);
	assert_string_equal(ns.text, "alice@example.test,bob@example.test,aaron@example.test");

	assert_int_equal(auth_users_delete(path, "bob@example.test", err, sizeof(err)), 0);
	assert_int_equal(auth_users_delete(path, "bob@example.test", err, sizeof(err)), -1);
	u = load_ok();
	assert_int_equal(auth_users_count(u), 2);
	assert_false(auth_users_exists(u, "bob@example.test"));
	assert_false(auth_users_verify(u, "bob@example.test", "battery staple"));
	assert_true(auth_users_verify(u, "aaron@example.test", "pw"));
	auth_users_free(u);
	assert_false(tmp_exists());
}

static void test_mode_hash_salt(void **state)
{
	(void)state;
	new_path();
	assert_int_equal(add("a@example.test", "same password"), 0);
	assert_int_equal(add("b@example.test", "same password"), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	const char *text = slurp();
	assert_true(strncmp(text, "a@example.test:$y$", 18) == 0);
	const char *b = strstr(text, "\nb@example.test:$y$");
	assert_non_null(b);
	/* Different salts, so different hashes of the same password. */
	const char *ha = text + strlen("a@example.test:");
	const char *hb = b + 1 + strlen("b@example.test:");
	size_t la = strcspn(ha, "\n"), lb = strcspn(hb, "\n");
	assert_true(la > 20 && lb > 20);
	assert_false(la == lb && memcmp(ha, hb, la) == 0);
	struct auth_users *u = load_ok();
	assert_true(auth_users_verify(u, "a@example.test", "same password"));
	assert_true(auth_users_verify(u, "b@example.test", "same password"));
	auth_users_free(u);

	/* A file the admin made group-readable stays so (never more). */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(add("c@example.test", "pw"), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
}

static void test_case_of_names(void **state)
{
	(void)state;
	new_path();
	assert_int_equal(add("Alice@Example.TEST", "pw1"), 0);
	assert_true(strncmp(slurp(), "alice@example.test:$y$", 22) == 0);
	assert_int_equal(add("alice@example.test", "pw2"), -1);
	struct auth_users *u = load_ok();
	assert_true(auth_users_exists(u, "ALICE@example.test"));
	assert_true(auth_users_verify(u, "alice@EXAMPLE.test", "pw1"));
	auth_users_free(u);
	/* A hand-edited upper-case line is found in lower case too. */
	char hash[CRYPT_OUTPUT_SIZE];
	const char *line = strchr(slurp(), ':');
	snprintf(hash, sizeof(hash), "%.*s", (int)strcspn(line + 1, "\n"), line + 1);
	char text[600];
	snprintf(text, sizeof(text), "Bob@Example.Test:%s\n", hash);
	write_file(text);
	u = load_ok();
	assert_true(auth_users_verify(u, "bob@example.test", "pw1"));
	auth_users_free(u);
	assert_int_equal(auth_users_delete(path, "BOB@example.test", err, sizeof(err)), 0);
	assert_string_equal(slurp(), "");
}

static void test_keeps_other_lines(void **state)
{
	(void)state;
	char text[2048];
	write_file("");
	assert_int_equal(add("x@example.test", "pw"), 0);
	char hash[CRYPT_OUTPUT_SIZE];
	const char *h = strchr(slurp(), ':') + 1;
	snprintf(hash, sizeof(hash), "%.*s", (int)strcspn(h, "\n"), h);
	/* A comment, a blank line, and a last line without its newline. */
	snprintf(text, sizeof(text),
		 "# Fulmar users\n\nbob@example.test:%s\n# carol left\nx@example.test:%s", hash,
		 hash);
	write_file(text);
	assert_int_equal(add("new@example.test", "pw"), 0);
	const char *now = slurp();
	assert_true(strncmp(now, text, strlen(text)) == 0);
	assert_true(strncmp(now + strlen(text), "\nnew@example.test:$y$", 21) == 0);
	/* passwd replaces the line in place. */
	assert_int_equal(auth_users_set(path, "bob@example.test", "pw2", true, false, err,
					sizeof(err)),
			 0);
	now = slurp();
	assert_true(strncmp(now, "# Fulmar users\n\nbob@example.test:$y$", 36) == 0);
	assert_non_null(strstr(now, "\n# carol left\nx@example.test:"));
	assert_int_equal(auth_users_delete(path, "x@example.test", err, sizeof(err)), 0);
	assert_int_equal(auth_users_delete(path, "bob@example.test", err, sizeof(err)), 0);
	now = slurp();
	assert_true(strncmp(now, "# Fulmar users\n\n# carol left\nnew@example.test:$y$", 48) ==
		    0);
	struct names ns = { 0 };
	assert_int_equal(auth_users_list(path, collect, &ns, err, sizeof(err)), 1);
	assert_string_equal(ns.text, "new@example.test");
}

static void test_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int line;
		const char *reason;
	} cases[] = {
		{ "alice@example.test\n", 1, "no ':'" },
		{ "# ok\n\nalice@example.test $y$abc\n", 3, "no ':'" },
		{ ":$y$abc\n", 1, "empty user name" },
		{ "a b:$y$abc\n", 1, "user name with a space" },
		{ "a\tb:$y$abc\n", 1, "user name with a space" },
		{ " alice:$y$abc\n", 1, "user name with a space" },
		{ "alice:\n", 1, "empty password hash" },
		{ "alice:secret\n", 1, "does not start with '$'" },
		{ "alice:$y$ab c\n", 1, "password hash with a space" },
		{ "alice:$y$abc\r\n", 1, "password hash with a space" },
		{ "alice:$y$abc\nbob:$y$abc\nALICE:$y$def\n", 3,
		  "listed again (first on line 1)" },
		{ "\xc3\xa9:$y$abc\n", 1, "non-printable" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(cases[i].text);
		err[0] = '\0';
		struct auth_users *u = auth_users_load(path, err, sizeof(err));
		assert_null(u);
		char want[PATH_MAX + 64];
		snprintf(want, sizeof(want), "%s:%d: ", path, cases[i].line);
		if (strncmp(err, want, strlen(want)) != 0 ||
		    strstr(err, cases[i].reason) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, err, want,
				 cases[i].reason);
		/* The editors refuse to rewrite it, and list reports it too. */
		assert_int_equal(add("z@example.test", "pw"), -1);
		assert_true(strncmp(err, want, strlen(want)) == 0);
		assert_false(tmp_exists());
		assert_string_equal(slurp(), cases[i].text);
		assert_int_equal(auth_users_list(path, collect, &(struct names){ 0 }, err,
						 sizeof(err)),
				 -1);
	}
	/* A long name and a long line. */
	char text[2200];
	memset(text, 'n', 256);
	snprintf(text + 256, sizeof(text) - 256, ":$y$abc\n");
	write_file(text);
	assert_null(auth_users_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: user name longer than 255 octets"));
	snprintf(text, sizeof(text), "a:$");
	memset(text + 3, 'h', 1100);
	text[1103] = '\0';
	write_file(text);
	assert_null(auth_users_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: line longer than"));
	/* A hash crypt cannot use matches no password. */
	write_file("a:$y$nonsense\n");
	struct auth_users *u = load_ok();
	assert_false(auth_users_verify(u, "a", "x"));
	auth_users_free(u);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	new_path();
	static const char *const names[] = { "", "a b", "a:b", "tab\there", "\x7f" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(add(names[i], "pw"), -1);
		assert_non_null(strstr(err, "invalid user name"));
	}
	char longname[300];
	memset(longname, 'a', 256);
	longname[256] = '\0';
	assert_int_equal(add(longname, "pw"), -1);
	longname[255] = '\0';
	assert_int_equal(add(longname, "pw"), 0);
	assert_int_equal(add("p@example.test", ""), -1);
	assert_non_null(strstr(err, "empty password"));
	char pw[AUTH_PASSWORD_MAX + 2];
	memset(pw, 'p', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	assert_int_equal(add("p@example.test", pw), -1);
	assert_non_null(strstr(err, "password longer than"));
	pw[AUTH_PASSWORD_MAX] = '\0'; /* exactly the maximum */
	assert_int_equal(add("p@example.test", pw), 0);
	struct auth_users *u = load_ok();
	assert_true(auth_users_verify(u, "p@example.test", pw));
	assert_true(auth_users_exists(u, longname));
	pw[AUTH_PASSWORD_MAX] = 'p';
	assert_false(auth_users_verify(u, "p@example.test", pw));
	auth_users_free(u);
	assert_int_equal(auth_users_count(NULL), 0);
	auth_users_free(NULL);
}

/* Other crypt(3) schemes verify too. */
static void test_other_schemes(void **state)
{
	(void)state;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	assert_non_null(cd);
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	assert_non_null(crypt_gensalt_rn("$6$", 0, NULL, 0, setting, sizeof(setting)));
	const char *h = crypt_rn("sha512 pw", setting, cd, sizeof(*cd));
	assert_non_null(h);
	char text[600];
	snprintf(text, sizeof(text), "old@example.test:%s\n", h);
	free(cd);
	write_file(text);
	struct auth_users *u = load_ok();
	assert_true(auth_users_verify(u, "old@example.test", "sha512 pw"));
	assert_false(auth_users_verify(u, "old@example.test", "sha512 pX"));
	auth_users_free(u);
	/* passwd moves it to yescrypt. */
	assert_int_equal(auth_users_set(path, "old@example.test", "new", true, false, err,
					sizeof(err)),
			 0);
	assert_true(strncmp(slurp(), "old@example.test:$y$", 20) == 0);
}

struct verifier {
	const struct auth_users *u;
	int index;
	int good;
};

static void *verify_thread(void *arg)
{
	struct verifier *v = arg;
	char name[64], pw[64];
	snprintf(name, sizeof(name), "user%d@example.test", v->index);
	snprintf(pw, sizeof(pw), "password %d", v->index);
	for (int k = 0; k < 2; k++) {
		v->good += auth_users_verify(v->u, name, pw);
		v->good -= auth_users_verify(v->u, name, "wrong") ? 10 : 0;
		v->good -= auth_users_verify(v->u, "nobody@example.test", pw) ? 10 : 0;
	}
	return NULL;
}

static void test_threads_share_a_snapshot(void **state)
{
	(void)state;
	new_path();
	for (int i = 0; i < 4; i++) {
		char name[64], pw[64];
		snprintf(name, sizeof(name), "user%d@example.test", i);
		snprintf(pw, sizeof(pw), "password %d", i);
		assert_int_equal(add(name, pw), 0);
	}
	struct auth_users *u = load_ok();
	pthread_t t[4];
	struct verifier v[4];
	for (int i = 0; i < 4; i++) {
		v[i] = (struct verifier){ .u = u, .index = i };
		assert_int_equal(pthread_create(&t[i], NULL, verify_thread, &v[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(v[i].good, 2);
	}
	auth_users_free(u);
}

/* Four processes add a user each at once: the lock on path.tmp makes
 * them take turns, so none of the four is lost. */
static void test_concurrent_edits(void **state)
{
	(void)state;
	new_path();
	pid_t pids[4];
	for (int i = 0; i < 4; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char name[64];
			snprintf(name, sizeof(name), "p%d@example.test", i);
			_exit(add(name, "pw") == 0 ? 0 : 1);
		}
	}
	for (int i = 0; i < 4; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	struct auth_users *u = load_ok();
	assert_int_equal(auth_users_count(u), 4);
	for (int i = 0; i < 4; i++) {
		char name[64];
		snprintf(name, sizeof(name), "p%d@example.test", i);
		assert_true(auth_users_exists(u, name));
	}
	auth_users_free(u);
	assert_false(tmp_exists());
}

/* Last: the injected fault stays on for the rest of the process. */
static void test_failed_rename_keeps_the_file(void **state)
{
	(void)state;
	new_path();
	assert_int_equal(add("keep@example.test", "pw"), 0);
	char before[16384];
	snprintf(before, sizeof(before), "%s", slurp());
	setenv("FULMAR_FAULT", "rename:1:EIO", 1);
	fsio_init_faults();
	assert_int_equal(add("lost@example.test", "pw"), -1);
	assert_non_null(strstr(err, "cannot rename"));
	assert_string_equal(slurp(), before);
	assert_false(tmp_exists());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_mode_hash_salt),
		cmocka_unit_test(test_case_of_names),
		cmocka_unit_test(test_keeps_other_lines),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_other_schemes),
		cmocka_unit_test(test_threads_share_a_snapshot),
		cmocka_unit_test(test_concurrent_edits),
		cmocka_unit_test(test_failed_rename_keeps_the_file),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
