/*
 * auth_users: the credential store, a local file of "name:hash" lines
 * (crypt(3) hashes, yescrypt for new ones). It owns the file format, the
 * parsing of it, password verification, and the safe rewrite of the file
 * for `fulmar user`. No SMTP or SASL knowledge.
 *
 * File format: one user per line "name:hash"; blank lines and lines that
 * start with '#' are ignored. name: 1..255 octets of printable ASCII
 * without ':' or whitespace, compared in lower case (names are lower-cased
 * when they are added, loaded and looked up). hash: a crypt(3) string that
 * starts with '$' ("$y$" yescrypt, "$gy$", "$7$", "$2b$", "$6$",
 * "$argon2id$", ... whatever libxcrypt knows). Passwords: 1 to
 * AUTH_PASSWORD_MAX octets, no NUL.
 *
 * Ownership: auth_users_load returns a new snapshot that the caller frees
 * with auth_users_free. A snapshot never changes after it is loaded, so
 * any number of threads may read and verify against it at once while the
 * owner keeps it alive. Reloading means loading a new snapshot.
 *
 * Callers: the server loads a snapshot at start-up and reload and runs
 * auth_users_verify in worker threads; the CLI (cli_user.c) edits the
 * file with auth_users_set / auth_users_delete / auth_users_list. Nothing
 * here logs or prints passwords or hashes.
 */
#ifndef FULMAR_AUTH_USERS_H
#define FULMAR_AUTH_USERS_H

#include <stdbool.h>
#include <stddef.h>

/* The longest user name, in octets. */
#define AUTH_NAME_MAX 255
/* The longest password, in octets: libxcrypt refuses phrases of
 * CRYPT_MAX_PASSPHRASE_SIZE (512) octets or more. */
#define AUTH_PASSWORD_MAX 511

struct auth_users; /* an immutable snapshot of the users file */

/* Missing file = no users (not an error). Malformed line -> NULL with
 * "path:line: reason" in err. */
struct auth_users *auth_users_load(const char *path, char *err, size_t errlen);
void auth_users_free(struct auth_users *u);
size_t auth_users_count(const struct auth_users *u);
bool auth_users_exists(const struct auth_users *u, const char *name);

/* Blocking (runs yescrypt, tens of milliseconds): call from a worker
 * thread. Thread-safe on a shared snapshot (crypt_rn with a per-call
 * struct crypt_data). Unknown users still cost one hash computation
 * against a fixed dummy hash, so timing does not tell which names exist;
 * hashes are compared in constant time. False for a wrong, empty or
 * over-long password, an unknown or invalid name, or a hash that crypt
 * cannot compute. */
bool auth_users_verify(const struct auth_users *u, const char *name,
		       const char *password);

/* File edits for the CLI. Each rewrites the whole file safely: an
 * exclusive lock on path.tmp (so concurrent edits serialize), write
 * path.tmp mode 0600 (group read kept if the old file had it; the old
 * file's owner and group kept), fsync, rename over path, fsync the
 * directory. A file with a malformed line is not rewritten. Lines other
 * than the edited one (comments included) are kept as they are.
 *
 * auth_users_set adds NAME or replaces its password with a new yescrypt
 * hash; must_exist / must_not_exist make it fail when NAME is absent /
 * present. 0, or -1 with err. */
int auth_users_set(const char *path, const char *name, const char *password,
		   bool must_exist, bool must_not_exist, char *err, size_t errlen);
/* Removes NAME, which must exist. 0, or -1 with err. */
int auth_users_delete(const char *path, const char *name, char *err, size_t errlen);
/* Names (lower case) in file order, via callback; returns how many. A
 * missing file has none. -1 with err on a read error or a malformed
 * line. */
long auth_users_list(const char *path, void (*fn)(void *arg, const char *name),
		     void *arg, char *err, size_t errlen);

#endif
